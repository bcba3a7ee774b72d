//! What the SDK hands the app: states, events, receipts, tokens, errors, and the listener.

use mc_core::protocol::{ChatMessage, ErrorCode};
use mc_core::{AgentId, MessageId, SessionId};

/// Where the socket is. `Closed` is final until the app signs in again (or restores tokens)
/// and calls `connect`; `Disconnected` is waiting to reconnect, or stopped by `disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConnectionState {
    /// Not connected: before `connect`, after `disconnect`, or between reconnect attempts.
    #[default]
    Disconnected,
    /// Opening the socket and authenticating.
    Connecting,
    /// Authenticated: messages flow.
    Connected,
    /// Stopped for good; the reason says what the app must do.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why the client stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The tokens were refused even after a refresh: sign in again.
    AuthFailed,
    /// The account is suspended or may not connect (close 4003): do not retry.
    Forbidden,
}

/// A `system` event: an agent came online or went offline, what it is doing in a run
/// (`agent_status` with `phase`), a session closed, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemEvent {
    /// `agent_online`, `agent_offline`, `agent_status`, `session_closed`, …
    pub event: String,
    /// The agent concerned.
    pub agent_id: Option<AgentId>,
    /// The session concerned.
    pub session_id: Option<SessionId>,
    /// The run, for `agent_status`.
    pub run_id: Option<String>,
    /// `preparing`, `thinking`, `typing` or `tool_use`, for `agent_status`.
    pub phase: Option<String>,
    /// OpenClaw's own words for the phase.
    pub detail: Option<String>,
}

/// What `send_message` resolves to: the message is stored and on its way to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendReceipt {
    /// The session (new if none was given).
    pub session_id: SessionId,
    /// The stored message's id.
    pub message_id: MessageId,
    /// Its seq in the session.
    pub seq: u64,
}

/// An access token and its refresh token. The SDK keeps them in memory only; the app stores
/// them (Keychain, Keystore) and hands them back with `restore_tokens`.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The access token (a JWT).
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

/// What the app hears. Every method has an empty default; the SDK calls them from its own
/// task, never while holding a lock, so a listener may call back into the client.
pub trait Listener: Send + Sync {
    /// The connection state changed.
    fn on_state(&self, _state: &ConnectionState) {}
    /// A stored message arrived: an agent's final reply, a `system` message (a failed run),
    /// or the user's own message sent from another device. Each is delivered once.
    fn on_message(&self, _message: &ChatMessage) {}
    /// The reply text of a run still streaming, so far (chunks already assembled).
    fn on_reply_text(&self, _session_id: SessionId, _run_id: &str, _text: &str) {}
    /// An agent came online or went offline, or reports what it is doing.
    fn on_system(&self, _event: &SystemEvent) {}
    /// The tokens changed (signed in, or refreshed): store them.
    fn on_tokens(&self, _tokens: &Tokens) {}
    /// How many sent messages wait for their `ack`.
    fn on_outbox(&self, _pending: usize) {}
}

/// Why a call failed. `Relay` carries the relay's own error code (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The relay refused the request.
    #[error("the relay refused it ({code:?}): {message}")]
    Relay {
        /// The relay's code.
        code: ErrorCode,
        /// What it said.
        message: String,
        /// For `RATE_LIMITED`: when to retry.
        retry_after_ms: Option<u64>,
    },
    /// Sign-in failed: wrong organization, username or password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// No valid tokens (never signed in, or the refresh token was refused): sign in again.
    #[error("not signed in: {0}")]
    Unauthenticated(String),
    /// The account is suspended or may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An HTTP call failed with a status the SDK has no variant for.
    #[error("the relay answered {status} {code}: {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The relay's error code.
        code: String,
        /// What it said.
        message: String,
    },
    /// The relay could not be reached, or the connection broke.
    #[error("cannot reach the relay: {0}")]
    Network(String),
    /// No answer in time.
    #[error("the relay did not answer in time")]
    Timeout,
    /// The client is not connected (call `connect` first), or it was closed.
    #[error("not connected: {0}")]
    NotConnected(String),
    /// An argument is invalid; the message says which.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
    /// The relay sent something this client cannot read.
    #[error("unexpected answer from the relay: {0}")]
    Protocol(String),
}
