//! # mc-openclaw
//!
//! OpenClaw's gateway protocol (version 4), typed both ways, and the client connection to an
//! OpenClaw gateway. It is the only code in the relay that reads or writes OpenClaw's JSON:
//! everything else sees these types.
//!
//! - [`frame`]: the three frames (`req`, `res`, `event`), the error shape, and [`Payload`]
//!   (a frame's JSON kept as text until a type is asked for);
//! - [`method`]: [`Method`], an OpenClaw method as a type (name, parameters, result), and the
//!   methods typed here;
//! - [`event`]: [`Event`], the typed view of an event frame; unknown events pass through;
//! - [`chat`]: `chat.send`, `chat.history`, `chat.abort`, the `chat` event and the one rule
//!   for what a delta does to a reply's text ([`ChatEvent::text_update`]);
//! - [`agent`]: the `agent` event and `agents.list`;
//! - [`handshake`]: `connect.challenge`, `connect`, `hello-ok` with its policy, and what a
//!   refused `connect` means ([`ConnectFailure`]);
//! - [`approval`]: exec and plugin approvals, and questions;
//! - [`artifact`]: the files an agent produced;
//! - [`operator`]: health, sessions, cron and usage;
//! - [`address`]: which addresses a connection may dial (never link-local);
//! - [`backoff`]: reconnect delays with full jitter, shared by every reconnecting client here;
//! - `rpc` (feature `rpc`): calls matched to their answers by id, with a deadline;
//! - `device`, `connection` (feature `connection`): the Ed25519 device identity and
//!   [`OpenClawConnection`](connection::OpenClawConnection), kept up by its own task.
//!
//! Unknown fields are kept (every type has an `extra` map), so a frame read and written again
//! loses nothing.
//!
//! | feature | adds |
//! |---|---|
//! | `rpc` | `rpc`: the calls a link has in flight (tokio) |
//! | `connection` | `device` and `connection`: a client connection on tokio-tungstenite |
//!
//! ```
//! use mc_openclaw::{Frame, Event, method::{self, ChatSend, Method}, chat::ChatSendParams};
//!
//! let params = ChatSendParams {
//!     session_key: "agent:main:mc-1".into(),
//!     message: "Hi".into(),
//!     idempotency_key: "run-1".into(),
//!     ..Default::default()
//! };
//! let request = mc_openclaw::Request::of::<ChatSend>("1", &params).unwrap();
//! let text = Frame::Request(request).to_json();
//! let Frame::Request(again) = Frame::decode(&text).unwrap() else { unreachable!() };
//! assert_eq!(again.params_of::<ChatSend>().unwrap(), params);
//!
//! let event = r#"{"type":"event","event":"chat","payload":{"runId":"run-1","sessionKey":"agent:main:mc-1","state":"delta","deltaText":"Echo"}}"#;
//! let Frame::Event(frame) = Frame::decode(event).unwrap() else { unreachable!() };
//! assert!(matches!(frame.decode().unwrap(), Event::Chat(_)));
//! ```

pub mod address;
pub mod agent;
pub mod approval;
pub mod artifact;
pub mod backoff;
pub mod chat;
#[cfg(feature = "connection")]
pub mod connection;
#[cfg(feature = "connection")]
pub mod device;
pub mod event;
pub mod frame;
pub mod handshake;
pub mod method;
pub mod operator;
#[cfg(feature = "rpc")]
pub mod rpc;

pub use backoff::Backoff;
pub use chat::{ChatEvent, ChatState, TextUpdate};
pub use event::Event;
pub use frame::{ErrorShape, EventFrame, Frame, PROTOCOL_VERSION, Payload, Request, Response};
pub use handshake::{ConnectFailure, HelloOk};
pub use method::Method;

/// Why a frame or payload could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not JSON.
    #[error("not a JSON frame: {0}")]
    NotJson(String),
    /// A frame whose `type` is not `req`, `res` or `event`.
    #[error("type: not an OpenClaw frame type '{0}'")]
    UnknownType(String),
    /// JSON, but not the shape expected; the message names the field.
    #[error("{0}")]
    Malformed(String),
    /// A value could not be written as JSON.
    #[error("cannot write the frame: {0}")]
    Encode(String),
}

/// Declares an enum of the wire strings OpenClaw sends, with `Other` for strings this crate
/// does not know, so none is lost.
#[macro_export]
#[doc(hidden)]
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A value this crate does not know.
            Other(String),
        }

        impl $name {
            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)*
                    $name::Other(other) => other,
                }
            }
        }

        impl From<String> for $name {
            fn from(wire: String) -> Self {
                match wire.as_str() {
                    $($wire => $name::$variant,)*
                    _ => $name::Other(wire),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                match value {
                    $name::Other(other) => other,
                    known => known.as_str().to_owned(),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
