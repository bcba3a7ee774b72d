//! The wire protocols as data: frames in, frames out, no sockets, no clock.
//!
//! - [`client`]: what users send on their sockets (SPEC §6), and its decoder.
//! - [`server`]: what the relay sends them; [`server_decode`] reads it back (for clients).
//! - [`gateway`]: the gateway link (SPEC §7.1): the relay's auth and heartbeat frames, then
//!   OpenClaw protocol v4; [`gateway_relay`]: the same link from the gateway's side.

pub mod client;
pub mod gateway;
pub mod gateway_relay;
pub mod server;
pub mod server_decode;

pub use client::{ClientFrame, ClientRequest, ResumePoint, Topic, decode_client_frame};
pub use gateway::{ChatEvent, ChatState, GatewayInbound, decode_gateway_frame};
pub use gateway_relay::{RelayToGateway, decode_relay_frame, encode_response};
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
