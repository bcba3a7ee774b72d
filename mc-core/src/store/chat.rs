//! Storage of chat sessions, their messages, and the activity feed.

use async_trait::async_trait;

use super::{Page, Paged, StoreResult};
use crate::ids::{OrgId, SessionId, UserId};
use crate::model::{ActivityEvent, ChatSession, Message, NewMessage, SessionStatus, Timestamp};

/// Sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session. `NotFound` if its user, agent or gateway does not exist.
    async fn create_session(&self, session: &ChatSession) -> StoreResult<()>;
    /// The session with this id.
    async fn get_session(&self, id: SessionId) -> StoreResult<Option<ChatSession>>;
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
    /// Appends several messages, in order, with the guarantees of [`append_message`] for each
    /// (a later message of the batch sees the earlier ones: a repeated client id is
    /// `Existing`). One result per message: a failing message does not fail the others. A
    /// store may do this in one transaction; the default appends one by one.
    ///
    /// [`append_message`]: Self::append_message
    async fn append_messages(&self, messages: &[NewMessage]) -> Vec<StoreResult<Appended>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.append_message(message).await);
        }
        results
    }
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
