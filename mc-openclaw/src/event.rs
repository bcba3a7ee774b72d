//! [`Event`]: the typed view of an [`EventFrame`]. Events this crate does not type are
//! [`Event::Other`], their payload untouched, so whoever forwards them passes them on as they
//! came.

use crate::Error;
use crate::agent::AgentEvent;
use crate::approval::{ApprovalRequested, ApprovalResolved, QuestionRequested, QuestionResolved};
use crate::chat::ChatEvent;
use crate::frame::{EventFrame, Payload};
use crate::handshake::Challenge;
use crate::operator::{HealthResult, SessionsChanged, Shutdown, Untyped};

/// Declares [`Event`] with one variant per typed event name.
macro_rules! events {
    ($($(#[$doc:meta])* $variant:ident($ty:ty) = $name:literal,)*) => {
        /// An event the gateway pushed, by name.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        // An event is decoded, matched and consumed at once: boxing the large variants would
        // cost an allocation per `chat` delta for no memory kept.
        #[allow(clippy::large_enum_variant)]
        pub enum Event {
            $($(#[$doc])* $variant($ty),)*
            /// Any other event, as it came.
            Other {
                /// Its name.
                name: String,
                /// Its payload.
                payload: Option<Payload>,
            },
        }

        impl Event {
            /// The event's wire name.
            pub fn name(&self) -> &str {
                match self {
                    $(Event::$variant(_) => $name,)*
                    Event::Other { name, .. } => name,
                }
            }

            fn decode(name: &str, payload: Option<&Payload>) -> Result<Self, Error> {
                let payload_of = |what: &str| {
                    payload.ok_or_else(|| Error::Malformed(format!("{what} event: payload is required")))
                };
                Ok(match name {
                    $($name => Event::$variant(payload_of($name)?.decode(concat!($name, " event"))?),)*
                    _ => Event::Other { name: name.to_owned(), payload: payload.cloned() },
                })
            }

            /// The event as a frame (`seq` unset).
            pub fn to_frame(&self) -> Result<EventFrame, Error> {
                let payload = match self {
                    $(Event::$variant(inner) => Some(Payload::encode(inner)?),)*
                    Event::Other { payload, .. } => payload.clone(),
                };
                Ok(EventFrame { event: self.name().to_owned(), payload, seq: None, extra: Default::default() })
            }
        }
    };
}

events! {
    /// A run's reply streaming (`chat`).
    Chat(ChatEvent) = "chat",
    /// What a run is doing (`agent`).
    Agent(AgentEvent) = "agent",
    /// The first frame: what the client's device signs (`connect.challenge`).
    ConnectChallenge(Challenge) = "connect.challenge",
    /// Keepalive (`tick`, `{ts}`).
    Tick(Untyped) = "tick",
    /// The gateway's health (`health`).
    Health(HealthResult) = "health",
    /// The gateway is stopping (`shutdown`).
    Shutdown(Shutdown) = "shutdown",
    /// The session index changed (`sessions.changed`).
    SessionsChanged(SessionsChanged) = "sessions.changed",
    /// A scheduled job ran or changed (`cron`).
    Cron(Untyped) = "cron",
    /// An exec approval waits (`exec.approval.requested`).
    ExecApprovalRequested(ApprovalRequested) = "exec.approval.requested",
    /// An exec approval was decided (`exec.approval.resolved`).
    ExecApprovalResolved(ApprovalResolved) = "exec.approval.resolved",
    /// A plugin approval waits (`plugin.approval.requested`).
    PluginApprovalRequested(ApprovalRequested) = "plugin.approval.requested",
    /// A plugin approval was decided (`plugin.approval.resolved`).
    PluginApprovalResolved(ApprovalResolved) = "plugin.approval.resolved",
    /// The agent asks its user (`question.requested`).
    QuestionRequested(QuestionRequested) = "question.requested",
    /// The question was answered, cancelled or expired (`question.resolved`).
    QuestionResolved(QuestionResolved) = "question.resolved",
}

impl EventFrame {
    /// The typed view of this event; an event of a known name whose payload does not read is
    /// [`Error::Malformed`].
    pub fn decode(&self) -> Result<Event, Error> {
        Event::decode(&self.event, self.payload.as_ref())
    }
}

impl Event {
    /// An event frame of `event` (e.g. a [`ChatEvent`] the echo agent sends).
    pub fn frame(event: impl Into<Event>) -> Result<EventFrame, Error> {
        event.into().to_frame()
    }
}

impl From<ChatEvent> for Event {
    fn from(event: ChatEvent) -> Self {
        Event::Chat(event)
    }
}

impl From<AgentEvent> for Event {
    fn from(event: AgentEvent) -> Self {
        Event::Agent(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatState;
    use crate::frame::Frame;

    #[test]
    fn events_are_typed_by_name_and_others_pass_through() {
        let Frame::Event(frame) = Frame::decode(r#"{"type":"event","event":"chat","payload":{"runId":"r","sessionKey":"k","seq":5,"state":"error","errorMessage":"No route"},"seq":12}"#).unwrap() else { panic!() };
        let Event::Chat(chat) = frame.decode().unwrap() else { panic!() };
        assert!(chat.state.is_terminal());
        assert_eq!(chat.error_message.as_deref(), Some("No route"));
        let Frame::Event(frame) =
            Frame::decode(r#"{"type":"event","event":"presence","payload":{"a":[1]}}"#).unwrap()
        else {
            panic!()
        };
        let other = frame.decode().unwrap();
        assert_eq!(other.name(), "presence");
        assert_eq!(other.to_frame().unwrap().payload, frame.payload);
        let Frame::Event(frame) =
            Frame::decode(r#"{"type":"event","event":"chat","payload":{"state":"final"}}"#)
                .unwrap()
        else {
            panic!()
        };
        assert!(frame.decode().unwrap_err().to_string().contains("chat event"));
        let Frame::Event(frame) = Frame::decode(r#"{"type":"event","event":"chat"}"#).unwrap()
        else {
            panic!()
        };
        assert!(frame.decode().is_err(), "a chat event needs its payload");
        let made = Event::frame(ChatEvent::new("r", "k", ChatState::Final)).unwrap();
        assert_eq!(made.event, "chat");
    }
}
