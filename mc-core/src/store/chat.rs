//! Storage of chat sessions, their messages, and the activity feed.

use async_trait::async_trait;

use super::{Page, Paged, StoreResult};
use crate::ids::{GatewayId, MessageId, OrgId, SessionId, UserId};
use crate::model::{
    ActivityEvent, ChatSession, DeliveryState, Message, NewMessage, SessionStatus, Timestamp,
};

/// Sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session. `NotFound` if its user, agent or gateway does not exist;
    /// `Conflict(SessionOrigin)` if the user already has a session with the same
    /// `origin_client_msg_id` (then [`find_session_by_origin`](Self::find_session_by_origin)
    /// finds it).
    async fn create_session(&self, session: &ChatSession) -> StoreResult<()>;
    /// The session with this id.
    async fn get_session(&self, id: SessionId) -> StoreResult<Option<ChatSession>>;
    /// The user's session started by the client message `client_msg_id`.
    async fn find_session_by_origin(
        &self,
        user: UserId,
        client_msg_id: uuid::Uuid,
    ) -> StoreResult<Option<ChatSession>>;
    /// The user's sessions, newest first (descending id; the cursor continues to older ones).
    async fn list_user_sessions(&self, user: UserId, page: Page)
    -> StoreResult<Paged<ChatSession>>;
    /// Sets the session's status. `NotFound` if it does not exist.
    async fn set_session_status(
        &self,
        id: SessionId,
        status: SessionStatus,
        at: Timestamp,
    ) -> StoreResult<ChatSession>;
}

/// The result of [`MessageStore::append_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The message was stored with the next seq.
    New(Message),
    /// The session already had a message with that client message id; this is it, unchanged,
    /// and nothing was written.
    Existing(Message),
}

impl Appended {
    /// The stored message, new or existing.
    pub fn message(&self) -> &Message {
        match self {
            Appended::New(m) | Appended::Existing(m) => m,
        }
    }

    /// The stored message, new or existing.
    pub fn into_message(self) -> Message {
        match self {
            Appended::New(m) | Appended::Existing(m) => m,
        }
    }
}

/// A user message's delivery moving to `state`. Stores apply it only if `state` comes after
/// the stored one ([`DeliveryState::rank`]), so late or repeated updates never move a message
/// backwards; an update for a message that does not exist changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryUpdate {
    /// The message's session.
    pub session_id: SessionId,
    /// The message's seq.
    pub seq: u64,
    /// The new state.
    pub state: DeliveryState,
}

/// A user message whose delivery is pending, with its session: what a relay needs to hand it
/// to the gateway again after a link loss or a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// The message.
    pub message: Message,
    /// Its session.
    pub session: ChatSession,
}

impl PendingDelivery {
    /// Pairs each of `messages` with its session, read from `sessions` once per session; a
    /// message whose session vanished meanwhile is left out.
    pub async fn with_sessions(
        messages: Vec<Message>,
        sessions: &(impl SessionStore + ?Sized),
    ) -> StoreResult<Vec<PendingDelivery>> {
        let mut known: std::collections::HashMap<SessionId, ChatSession> =
            std::collections::HashMap::new();
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            let session = match known.get(&message.session_id) {
                Some(session) => session.clone(),
                None => match sessions.get_session(message.session_id).await? {
                    Some(session) => {
                        known.insert(session.id, session.clone());
                        session
                    }
                    None => continue,
                },
            };
            pending.push(PendingDelivery { message, session });
        }
        Ok(pending)
    }
}

/// A page of a session's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    /// The messages, in ascending seq.
    pub messages: Vec<Message>,
    /// Whether older messages exist before the first one here.
    pub has_more: bool,
}

/// Messages.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Appends a message with the session's next seq and updates the session's `last_seq` and
    /// `last_message_at`, atomically: concurrent appends get distinct, gapless seqs. If the
    /// session already has a message with the same `client_msg_id`, returns it as
    /// [`Appended::Existing`] and writes nothing. `NotFound` if the session does not exist.
    async fn append_message(&self, message: &NewMessage) -> StoreResult<Appended>;
    /// One group commit: appends `messages` in order, with the guarantees of
    /// [`append_message`] for each (a later message of the batch sees the earlier ones: a
    /// repeated client id is `Existing`), then applies `deliveries` in order. One result per
    /// message: a failing message does not fail the others. A store should do this in one
    /// transaction (so a reply and its request's `answered` are stored together); the default
    /// writes one by one.
    ///
    /// [`append_message`]: Self::append_message
    async fn write_batch(
        &self,
        messages: &[NewMessage],
        deliveries: &[DeliveryUpdate],
    ) -> Vec<StoreResult<Appended>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.append_message(message).await);
        }
        for update in deliveries {
            // Best effort: a message that cannot be marked stays pending and is handed to
            // its gateway again, which the idempotency key makes harmless.
            let _ = self.set_delivery(*update).await;
        }
        results
    }
    /// How many [`write_batch`] calls the store commits at once to advantage: the relay's
    /// writer keeps that many group-commit loops, each session's writes on one of them
    /// (default 1: one batch at a time, right for a single-writer database).
    ///
    /// [`write_batch`]: Self::write_batch
    fn write_lanes(&self) -> usize {
        1
    }
    /// Applies one delivery update; `true` if it changed the stored state.
    async fn set_delivery(&self, update: DeliveryUpdate) -> StoreResult<bool>;
    /// Up to `limit` user messages whose delivery is pending (`stored`, `sent`, `started`),
    /// of the gateway's sessions (all gateways' if `None`), in message id order (UUID v7:
    /// oldest first), starting after the message `after` when given: the next page is asked
    /// for with the last id of this one.
    async fn pending_deliveries(
        &self,
        gateway: Option<GatewayId>,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>>;
    /// The newest `limit` messages with seq below `before_seq` (all if `None`), returned in
    /// ascending seq. `limit` is clamped to `1..=MAX_PAGE_LIMIT`.
    async fn list_messages(
        &self,
        session: SessionId,
        before_seq: Option<u64>,
        limit: u32,
    ) -> StoreResult<MessagePage>;
    /// The message with this client message id in any session of `user` (so a retried
    /// message that started a new session finds that session again).
    async fn find_user_message(
        &self,
        user: UserId,
        client_msg_id: uuid::Uuid,
    ) -> StoreResult<Option<Message>>;
    /// Up to `limit` messages with seq above `after_seq`, ascending (for `resume`).
    /// `limit` is clamped to `1..=MAX_PAGE_LIMIT`.
    async fn messages_after(
        &self,
        session: SessionId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;
}

/// The activity feed.
#[async_trait]
pub trait ActivityStore: Send + Sync {
    /// Stores an event. `NotFound` if its organization does not exist.
    async fn record_activity(&self, event: &ActivityEvent) -> StoreResult<()>;
    /// The organization's events, newest first (descending id; the cursor continues to older
    /// ones).
    async fn list_activity(&self, org: OrgId, page: Page) -> StoreResult<Paged<ActivityEvent>>;
}
