//! The [`Bus`]: how the router delivers to users and gateways, wherever their sockets are.
//!
//! Every delivery goes through a topic (README, "Several instances"): `ws:route:user:{id}` for a user's
//! connections, `ws:route:gateway:{id}` for the instance holding a gateway's link,
//! `ws:events:org:{id}` for admins' live events. An instance subscribes to the topics of the
//! users and gateways it holds. [`InProcessBus`] is the single-instance default; a Redis bus
//! implements the same trait for several instances.
//!
//! Handlers run on the publisher's task: they must not block (the router's handlers only
//! push into bounded queues or spawn).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{AgentId, GatewayId, MessageId, OrgId, SessionId, UserId};
use crate::protocol::Topic;

/// Identifies one user connection on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnectionId(pub u64);

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BusTopic {
    /// Every connection of a user.
    User(UserId),
    /// The instance holding a gateway's link.
    Gateway(GatewayId),
    /// Admins of an organization.
    Org(OrgId),
}

impl BusTopic {
    /// The channel name (README, "Several instances").
    pub fn channel(&self) -> String {
        match self {
            BusTopic::User(id) => format!("ws:route:user:{id}"),
            BusTopic::Gateway(id) => format!("ws:route:gateway:{id}"),
            BusTopic::Org(id) => format!("ws:events:org:{id}"),
        }
    }
}

/// A chat message to hand to a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSend {
    /// The session.
    pub session_id: SessionId,
    /// Its user.
    pub user_id: UserId,
    /// Its agent.
    pub agent_id: AgentId,
    /// OpenClaw's session key.
    pub session_key: String,
    /// The stored message (its id is the run id and idempotency key).
    pub message_id: MessageId,
    /// Its seq in the session (where its delivery state is recorded).
    pub seq: u64,
    /// The client's id for it (the id of error replies).
    pub client_id: uuid::Uuid,
    /// The text.
    pub content: String,
}

/// Work for the instance holding a gateway's link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GatewayCommand {
    /// Deliver a stored chat message (`chat.send`).
    ChatSend {
        /// The message.
        send: ChatSend,
        /// The user sent it again after being told it failed: accept it even if it finished
        /// a moment ago.
        retry: bool,
    },
    /// Stop a session's run (`chat.abort`).
    Abort {
        /// The session.
        session_id: SessionId,
        /// OpenClaw's session key.
        session_key: String,
        /// The run, if the client named one.
        run_id: Option<String>,
        /// Who asked.
        user_id: UserId,
        /// On which connection.
        connection: ConnectionId,
        /// The request id.
        request_id: Option<String>,
    },
    /// Send a connection the text streamed so far of the session's run, if one is running.
    CatchUp {
        /// The session.
        session_id: SessionId,
        /// Its user.
        user_id: UserId,
        /// The connection resuming.
        connection: ConnectionId,
    },
    /// Close the link (its credentials were revoked).
    Close,
    /// The gateway linked to the instance `by`: any other instance still holding it (away,
    /// or linked on a socket it has not yet seen drop) lets go and hands what it has pending
    /// for it to the new holder, without failing anything.
    TakenOver {
        /// The new holder's instance id ([`Bus::instance_id`]).
        by: String,
    },
}

/// A message on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BusMessage {
    /// A rendered frame for a user's connections: all, only one, or all but one.
    ToUser {
        /// The JSON text.
        frame: Arc<str>,
        /// Only this connection.
        only: Option<ConnectionId>,
        /// Not this connection (the sender of a message its other devices should see).
        except: Option<ConnectionId>,
    },
    /// Close every socket of the user with this code.
    CloseUser {
        /// The WebSocket close code.
        code: u16,
        /// Why.
        reason: String,
    },
    /// The user's assignments changed: forget cached ones.
    InvalidateUser,
    /// Work for a gateway's holder.
    ToGateway(GatewayCommand),
    /// An admin event for an organization's subscribed admins.
    OrgEvent {
        /// Its topic.
        topic: Topic,
        /// The rendered `event` frame.
        frame: Arc<str>,
    },
}

/// Receives the messages of a subscription. Must not block.
pub trait BusHandler: Send + Sync {
    /// Handles one message.
    fn handle(&self, message: BusMessage);
}

impl<F: Fn(BusMessage) + Send + Sync> BusHandler for F {
    fn handle(&self, message: BusMessage) {
        self(message)
    }
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    /// A subscription that runs `guard`'s `Drop` when dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self { _guard: Box::new(guard) }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

/// Publish/subscribe between relay instances (or within one).
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Publishes to a topic; returns how many subscribers (instances) received it.
    async fn publish(&self, topic: BusTopic, message: BusMessage) -> Result<usize>;
    /// Subscribes `handler` to a topic until the returned [`Subscription`] is dropped.
    async fn subscribe(
        &self,
        topic: BusTopic,
        handler: Arc<dyn BusHandler>,
    ) -> Result<Subscription>;
    /// Whether any instance subscribes to the topic (e.g. holds the gateway's link).
    async fn has_subscribers(&self, topic: BusTopic) -> Result<bool>;
    /// This instance's id: in logs, metrics and presence; unique among the instances.
    fn instance_id(&self) -> &str;
    /// Counts a new socket of `user` against `limit` sockets on all instances together;
    /// `false` when the user already holds `limit`. Each `true` is matched by one
    /// [`leave_user`](Self::leave_user). A single instance counts its own sockets, so the
    /// default accepts.
    async fn join_user(&self, user: UserId, limit: usize) -> Result<bool> {
        let _ = (user, limit);
        Ok(true)
    }
    /// A socket counted by [`join_user`](Self::join_user) closed.
    fn leave_user(&self, user: UserId) {
        let _ = user;
    }
    /// A counter that moves each time messages published by other instances may have been
    /// lost (the bus's connection dropped and came back): the relay then asks its clients to
    /// resume and sends its gateways what is pending again. `None`: the bus never loses any.
    fn gaps(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Whether the bus works right now (readiness); a single instance's always does.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
    /// Whether this bus serves one instance only (the in-process bus): the relay then hands
    /// a message for a gateway or a user straight to its link or sockets, without publishing.
    fn single_instance(&self) -> bool {
        false
    }
}

type Handlers = HashMap<BusTopic, Vec<(u64, Arc<dyn BusHandler>)>>;

struct Inner {
    instance: String,
    handlers: RwLock<Handlers>,
    next: std::sync::atomic::AtomicU64,
}

/// The single-instance bus: a map from topic to handlers, called inline. Also the local
/// half of a bus between instances (handlers on this instance).
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::with_instance_id(format!("local-{}", uuid::Uuid::now_v7().simple()))
    }
}

impl InProcessBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty bus reporting `instance` as its [`Bus::instance_id`].
    pub fn with_instance_id(instance: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                instance: instance.into(),
                handlers: RwLock::default(),
                next: Default::default(),
            }),
        }
    }

    /// Whether a handler on this instance subscribes to the topic.
    pub fn has_local(&self, topic: BusTopic) -> bool {
        self.inner.handlers.read().unwrap_or_else(|p| p.into_inner()).contains_key(&topic)
    }
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessBus")
    }
}

struct Unsubscribe {
    inner: Weak<Inner>,
    topic: BusTopic,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else { return };
        let mut handlers = inner.handlers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = handlers.get_mut(&self.topic) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                handlers.remove(&self.topic);
            }
        }
    }
}

#[async_trait]
impl Bus for InProcessBus {
    fn single_instance(&self) -> bool {
        true
    }

    async fn publish(&self, topic: BusTopic, message: BusMessage) -> Result<usize> {
        let targets: Vec<Arc<dyn BusHandler>> = {
            let handlers = self.inner.handlers.read().unwrap_or_else(|p| p.into_inner());
            match handlers.get(&topic) {
                Some(list) => list.iter().map(|(_, h)| h.clone()).collect(),
                None => return Ok(0),
            }
        };
        let n = targets.len();
        if let Some((last, rest)) = targets.split_last() {
            for handler in rest {
                handler.handle(message.clone());
            }
            last.handle(message);
        }
        Ok(n)
    }

    async fn subscribe(
        &self,
        topic: BusTopic,
        handler: Arc<dyn BusHandler>,
    ) -> Result<Subscription> {
        let id = self.inner.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(topic)
            .or_default()
            .push((id, handler));
        Ok(Subscription::new(Unsubscribe { inner: Arc::downgrade(&self.inner), topic, id }))
    }

    async fn has_subscribers(&self, topic: BusTopic) -> Result<bool> {
        Ok(self.has_local(topic))
    }

    fn instance_id(&self) -> &str {
        &self.inner.instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn publish_reaches_subscribers_until_dropped() {
        let bus = InProcessBus::new();
        let topic = BusTopic::User(UserId::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let sub = bus
            .subscribe(topic, Arc::new(move |m: BusMessage| sink.lock().unwrap().push(m)))
            .await
            .unwrap();
        assert!(bus.has_subscribers(topic).await.unwrap());
        assert_eq!(bus.publish(topic, BusMessage::InvalidateUser).await.unwrap(), 1);
        assert_eq!(
            bus.publish(BusTopic::User(UserId::new()), BusMessage::InvalidateUser).await.unwrap(),
            0
        );
        drop(sub);
        assert!(!bus.has_subscribers(topic).await.unwrap());
        assert_eq!(bus.publish(topic, BusMessage::InvalidateUser).await.unwrap(), 0);
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(
            BusTopic::Org(OrgId::new()).channel().split(':').take(3).collect::<Vec<_>>(),
            ["ws", "events", "org"]
        );
    }
}
