//! The wire protocols as data: frames in, frames out, no sockets, no clock.
//!
//! - [`close_code`]: the sockets' close codes.
//! - [`ClientFrame`] (module `client`): what users send on their sockets (docs/protocol.md),
//!   and [`decode_client_frame`].
//! - [`ServerFrame`] (module `server`): what the relay sends them; [`decode_server_frame`]
//!   reads it back (for clients).
//! - [`GatewayToRelay`] / [`RelayToGateway`] (module `gateway_link`): the gateway link: the
//!   relay's `auth`, `auth_ok`, `auth_error` and
//!   `heartbeat` frames around OpenClaw's (typed in `mc-openclaw`), both ways.

mod client;
pub mod close_code;
mod gateway_link;
mod server;
mod server_decode;

pub use client::{
    ClientFrame, ClientRequest, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, MAX_ID_LEN,
    MAX_RESUME_SESSIONS, PROTOCOL_VERSION, ResumePoint, Topic, decode_client_frame,
};
pub use gateway_link::{
    GatewayToRelay, RelayToGateway, SocketHeartbeat, decode_gateway_frame, decode_relay_frame,
};
pub use server::{
    AssignmentInfo, AuthFailure, ChatMessage, ErrorCode, SERVER_HEARTBEAT_PREFIX, ServerFrame,
    SessionInfo, answers_server_heartbeat,
};
pub use server_decode::decode_server_frame;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The frame's id, when it could be read (echoed in the error reply).
    pub id: Option<String>,
    /// What is wrong, naming the field.
    pub message: String,
}
