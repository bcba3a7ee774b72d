//! The wire protocols as data: frames in, frames out, no sockets, no clock.
//!
//! - [`client`]: the users' socket (SPEC §6).
//! - [`gateway`]: the gateway link (SPEC §7.1): the relay's auth and heartbeat frames, then
//!   OpenClaw protocol v4.

pub mod client;
pub mod gateway;

pub use client::{
    AssignmentInfo, AuthFailure, ChatMessage, ClientFrame, ClientRequest, ErrorCode, ResumePoint,
    ServerFrame, SessionInfo, Topic, decode_client_frame,
};
pub use gateway::{ChatEvent, ChatState, GatewayInbound, decode_gateway_frame};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The frame's id, when it could be read (echoed in the error reply).
    pub id: Option<String>,
    /// What is wrong, naming the field.
    pub message: String,
}
