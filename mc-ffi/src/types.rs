//! The records, enums and error the bindings see, and their conversions from the SDK's.
//! Ids cross as UUID strings, times as milliseconds since the Unix epoch.

use mc_core::protocol::{AssignmentInfo, ChatMessage, ErrorCode, SessionInfo};
use mc_transport_ws::client as sdk;

/// One flat error: the relay's error codes, and the SDK's own failures. The message says
/// what happened.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum McError {
    /// Unparseable or invalid request.
    #[error("{0}")]
    BadRequest(String),
    /// Not signed in, or the tokens were refused: sign in again.
    #[error("{0}")]
    Unauthenticated(String),
    /// Wrong organization, username or password.
    #[error("{0}")]
    InvalidCredentials(String),
    /// Suspended, or not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The agent is not assigned to this user.
    #[error("{0}")]
    NotAssigned(String),
    /// The agent's gateway is not connected (nothing was stored).
    #[error("{0}")]
    AgentUnavailable(String),
    /// No such session.
    #[error("{0}")]
    SessionNotFound(String),
    /// Too many messages or sign-ins: retry later.
    #[error("{0}")]
    RateLimited(String),
    /// The message is too long.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The agent's gateway failed the run.
    #[error("{0}")]
    GatewayError(String),
    /// The agent's gateway did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A failure inside the relay or the SDK.
    #[error("{0}")]
    Internal(String),
    /// The relay cannot be reached.
    #[error("{0}")]
    Network(String),
    /// No answer in time.
    #[error("{0}")]
    Timeout(String),
    /// Not connected: call `connect` first.
    #[error("{0}")]
    NotConnected(String),
    /// An argument is invalid; the message says which.
    #[error("{0}")]
    InvalidInput(String),
}

impl From<sdk::ClientError> for McError {
    fn from(err: sdk::ClientError) -> Self {
        let text = err.to_string();
        match err {
            sdk::ClientError::Relay { code, .. } => match code {
                ErrorCode::BadRequest => McError::BadRequest(text),
                ErrorCode::Unauthenticated => McError::Unauthenticated(text),
                ErrorCode::Forbidden => McError::Forbidden(text),
                ErrorCode::NotAssigned => McError::NotAssigned(text),
                ErrorCode::AgentUnavailable => McError::AgentUnavailable(text),
                ErrorCode::SessionNotFound => McError::SessionNotFound(text),
                ErrorCode::RateLimited => McError::RateLimited(text),
                ErrorCode::PayloadTooLarge => McError::PayloadTooLarge(text),
                ErrorCode::GatewayError => McError::GatewayError(text),
                ErrorCode::GatewayTimeout => McError::GatewayTimeout(text),
                ErrorCode::Internal => McError::Internal(text),
            },
            sdk::ClientError::InvalidCredentials => McError::InvalidCredentials(text),
            sdk::ClientError::Unauthenticated(_) => McError::Unauthenticated(text),
            sdk::ClientError::Forbidden(_) => McError::Forbidden(text),
            sdk::ClientError::Http { status: 404, .. } => McError::InvalidInput(text),
            sdk::ClientError::Http { status, .. } if status >= 500 => McError::Internal(text),
            sdk::ClientError::Http { .. } => McError::BadRequest(text),
            sdk::ClientError::Network(_) => McError::Network(text),
            sdk::ClientError::Timeout => McError::Timeout(text),
            sdk::ClientError::NotConnected(_) => McError::NotConnected(text),
            sdk::ClientError::InvalidInput(_) => McError::InvalidInput(text),
            sdk::ClientError::Protocol(_) => McError::Internal(text),
        }
    }
}

/// Why the client stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CloseReason {
    /// The tokens were refused even after a refresh: sign in again.
    AuthFailed,
    /// The account is suspended or may not connect: do not retry.
    Forbidden,
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ClientState {
    /// Not connected (before `connect`, after `disconnect`, or waiting to reconnect).
    Disconnected,
    /// Opening and authenticating.
    Connecting,
    /// Messages flow.
    Connected,
    /// Stopped for good.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

impl From<sdk::ConnectionState> for ClientState {
    fn from(state: sdk::ConnectionState) -> Self {
        match state {
            sdk::ConnectionState::Disconnected => ClientState::Disconnected,
            sdk::ConnectionState::Connecting => ClientState::Connecting,
            sdk::ConnectionState::Connected => ClientState::Connected,
            sdk::ConnectionState::Closed { reason } => ClientState::Closed {
                reason: match reason {
                    sdk::CloseReason::AuthFailed => CloseReason::AuthFailed,
                    sdk::CloseReason::Forbidden => CloseReason::Forbidden,
                },
            },
        }
    }
}

/// An agent assigned to the user.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Agent {
    /// Its id.
    pub agent_id: String,
    /// Its name.
    pub agent_name: String,
    /// `online`, `offline`, `pending`, `error` or `gone`.
    pub status: String,
}

impl From<AssignmentInfo> for Agent {
    fn from(a: AssignmentInfo) -> Self {
        Agent { agent_id: a.agent_id.to_string(), agent_name: a.agent_name, status: a.status }
    }
}

/// A stored message.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Message {
    /// Its id.
    pub message_id: String,
    /// Its session.
    pub session_id: String,
    /// The session's agent.
    pub agent_id: String,
    /// `user`, `agent` or `system`.
    pub role: String,
    /// The text.
    pub content: String,
    /// Its position in the session.
    pub seq: u64,
    /// The agent run it ends, if any.
    pub run_id: Option<String>,
    /// When it was stored (ms since the Unix epoch).
    pub created_at_ms: i64,
}

impl From<ChatMessage> for Message {
    fn from(m: ChatMessage) -> Self {
        Message {
            message_id: m.id.to_string(),
            session_id: m.session_id.to_string(),
            agent_id: m.agent_id.to_string(),
            role: m.role.as_str().to_owned(),
            content: m.content,
            seq: m.seq,
            run_id: m.run_id,
            created_at_ms: m.created_at.timestamp_millis(),
        }
    }
}

/// A session of the user.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Session {
    /// Its id.
    pub session_id: String,
    /// Its agent.
    pub agent_id: String,
    /// Its newest seq.
    pub last_seq: u64,
    /// When its newest message was stored (ms since the Unix epoch).
    pub last_message_at_ms: Option<i64>,
    /// `active` or `closed`.
    pub status: String,
}

impl From<SessionInfo> for Session {
    fn from(s: SessionInfo) -> Self {
        Session {
            session_id: s.session_id.to_string(),
            agent_id: s.agent_id.to_string(),
            last_seq: s.last_seq,
            last_message_at_ms: s.last_message_at.map(|t| t.timestamp_millis()),
            status: s.status.as_str().to_owned(),
        }
    }
}

/// What `send_message` resolves to.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SendReceipt {
    /// The session (new if none was given).
    pub session_id: String,
    /// The stored message's id.
    pub message_id: String,
    /// Its seq.
    pub seq: u64,
}

impl From<sdk::SendReceipt> for SendReceipt {
    fn from(r: sdk::SendReceipt) -> Self {
        SendReceipt {
            session_id: r.session_id.to_string(),
            message_id: r.message_id.to_string(),
            seq: r.seq,
        }
    }
}

/// A page of history.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Whether older ones exist.
    pub has_more: bool,
}

/// A `system` event: `agent_online`, `agent_offline`, `agent_status` (with `phase`), …
#[derive(Debug, Clone, uniffi::Record)]
pub struct SystemEvent {
    /// What happened.
    pub event: String,
    /// The agent.
    pub agent_id: Option<String>,
    /// The session.
    pub session_id: Option<String>,
    /// The run (for `agent_status`).
    pub run_id: Option<String>,
    /// `preparing`, `thinking`, `typing` or `tool_use` (for `agent_status`).
    pub phase: Option<String>,
    /// OpenClaw's own words for the phase.
    pub detail: Option<String>,
}

impl From<&sdk::SystemEvent> for SystemEvent {
    fn from(e: &sdk::SystemEvent) -> Self {
        SystemEvent {
            event: e.event.clone(),
            agent_id: e.agent_id.map(|a| a.to_string()),
            session_id: e.session_id.map(|s| s.to_string()),
            run_id: e.run_id.clone(),
            phase: e.phase.clone(),
            detail: e.detail.clone(),
        }
    }
}
