//! Chat sessions and their messages.

use uuid::Uuid;

use super::{Timestamp, string_enum};
use crate::ids::{AgentId, GatewayId, MessageId, SessionId, UserId};

string_enum!(
    /// Whether a session takes new messages.
    SessionStatus, "session status" {
        /// Open.
        Active => "active",
        /// Closed by the user, an admin or the agent.
        Closed => "closed",
    }
);

/// A conversation between one user and one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSession {
    /// Its id.
    pub id: SessionId,
    /// Who chats.
    pub user_id: UserId,
    /// With which agent.
    pub agent_id: AgentId,
    /// Through which gateway.
    pub gateway_id: GatewayId,
    /// What the gateway calls it: `agent:<agent_key>:mc-<session id>`.
    pub session_key: String,
    /// Open or closed.
    pub status: SessionStatus,
    /// The seq of its newest message; 0 when empty.
    pub last_seq: u64,
    /// When its newest message was stored.
    pub last_message_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The client message id of the message that started it, if a client message did: a
    /// user has at most one session per such id, so two sockets sending the same first
    /// message at once share one session.
    pub origin_client_msg_id: Option<Uuid>,
}

impl ChatSession {
    /// OpenClaw's canonical session key for an agent key and a relay session id.
    pub fn session_key_for(agent_key: &str, id: SessionId) -> String {
        format!("agent:{agent_key}:mc-{id}")
    }

    /// Whether `key` is a session key the relay makes ([`ChatSession::session_key_for`]):
    /// `agent:<agent key>:mc-<session id>`. The bridge forwards only these sessions.
    pub fn is_relay_session_key(key: &str) -> bool {
        let mut parts = key.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("agent"), Some(agent), Some(rest)) if !agent.is_empty() => {
                rest.strip_prefix("mc-").is_some_and(|id| id.parse::<SessionId>().is_ok())
            }
            _ => false,
        }
    }
}

string_enum!(
    /// How far a user message got on its way to the agent (ARCHITECTURE.md, "Delivery").
    ///
    /// A message moves forward only: `stored → sent → started → answered`, or to `failed` from
    /// any state before `answered` (a failed message that is retried and then answered becomes
    /// `answered`). `stored`, `sent` and `started` are *pending*: after a link loss or a restart
    /// the relay hands such a message to its gateway again (the message id is OpenClaw's
    /// idempotency key, so a message the gateway already has is not run twice).
    DeliveryState, "delivery state" {
        /// Durably stored; not yet handed to a gateway link.
        Stored => "stored",
        /// `chat.send` went out on a link; no answer yet.
        Sent => "sent",
        /// The gateway accepted it: its run is streaming.
        Started => "started",
        /// The agent's reply is stored.
        Answered => "answered",
        /// The user was told it failed (a stored `system` message and an `error` frame).
        Failed => "failed",
    }
);

impl DeliveryState {
    /// Whether the message still has to reach, or be answered by, its gateway.
    pub fn is_pending(&self) -> bool {
        matches!(self, DeliveryState::Stored | DeliveryState::Sent | DeliveryState::Started)
    }

    /// The order of states: a stored state is only ever replaced by a later one.
    pub fn rank(&self) -> u8 {
        match self {
            DeliveryState::Stored => 0,
            DeliveryState::Sent => 1,
            DeliveryState::Started => 2,
            DeliveryState::Failed => 3,
            DeliveryState::Answered => 4,
        }
    }

    /// The states `self` may replace (those of lower rank).
    pub fn replaces(&self) -> impl Iterator<Item = DeliveryState> + '_ {
        DeliveryState::ALL.iter().copied().filter(move |s| s.rank() < self.rank())
    }
}

string_enum!(
    /// Who wrote a message.
    MessageRole, "message role" {
        /// The end user.
        User => "user",
        /// The agent's reply.
        Agent => "agent",
        /// The relay (e.g. a failed run).
        System => "system",
    }
);

/// A stored message. `seq` runs 1, 2, 3… per session with no gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// The session it belongs to.
    pub session_id: SessionId,
    /// Its position in the session.
    pub seq: u64,
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// The id the client gave it; retries with the same id are idempotent.
    pub client_msg_id: Option<Uuid>,
    /// The agent run that produced (or was started by) it.
    pub run_id: Option<String>,
    /// When it was stored.
    pub created_at: Timestamp,
    /// For user messages, how far it got towards the agent; `None` for agent and system
    /// messages.
    pub delivery: Option<DeliveryState>,
}

/// What makes a message the same as one stored earlier in its session, so that storing it again
/// gives back the first copy: a user message's client id (the client retried), or the run an
/// agent reply answers (one reply per run, however often the run's end is reported or its
/// write retried). Stores keep each unique per session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdempotencyKey {
    /// The client's id for a message.
    Client(Uuid),
    /// The run an agent reply answers.
    Reply(String),
}

impl IdempotencyKey {
    fn of(client: Option<Uuid>, role: MessageRole, run: Option<&String>) -> Option<Self> {
        match (client, role, run) {
            (Some(client), _, _) => Some(IdempotencyKey::Client(client)),
            (None, MessageRole::Agent, Some(run)) => Some(IdempotencyKey::Reply(run.clone())),
            _ => None,
        }
    }
}

impl Message {
    /// Its idempotency key, if it has one.
    pub fn idempotency_key(&self) -> Option<IdempotencyKey> {
        IdempotencyKey::of(self.client_msg_id, self.role, self.run_id.as_ref())
    }
}

/// A message to append; the store assigns `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Its id.
    pub id: MessageId,
    /// The session to append to.
    pub session_id: SessionId,
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// The client's id for it, if any.
    pub client_msg_id: Option<Uuid>,
    /// The agent run, if any.
    pub run_id: Option<String>,
    /// When it was received.
    pub created_at: Timestamp,
}

impl NewMessage {
    /// Its idempotency key, if it has one: appending it where a message with the same key is
    /// stored gives back that message.
    pub fn idempotency_key(&self) -> Option<IdempotencyKey> {
        IdempotencyKey::of(self.client_msg_id, self.role, self.run_id.as_ref())
    }

    /// The delivery state a store gives the message when it appends it: `stored` for user
    /// messages, none for the others.
    pub fn initial_delivery(&self) -> Option<DeliveryState> {
        (self.role == MessageRole::User).then_some(DeliveryState::Stored)
    }

    /// The message as stored at `seq` in its session.
    pub fn stored_at(&self, seq: u64) -> Message {
        Message {
            id: self.id,
            session_id: self.session_id,
            seq,
            role: self.role,
            content: self.content.clone(),
            client_msg_id: self.client_msg_id,
            run_id: self.run_id.clone(),
            created_at: self.created_at,
            delivery: self.initial_delivery(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relays_session_keys_are_recognised() {
        let id = SessionId::new();
        assert!(ChatSession::is_relay_session_key(&ChatSession::session_key_for("main", id)));
        for other in [
            "agent:main:main".to_owned(),
            "agent:main:mc-".to_owned(),
            "agent:main:mc-not-an-id".to_owned(),
            format!("agent::mc-{id}"),
            format!("global:main:mc-{id}"),
            format!("mc-{id}"),
            String::new(),
        ] {
            assert!(!ChatSession::is_relay_session_key(&other), "{other:?}");
        }
    }
}
