//! [`Connections`]: the user sockets this instance holds, what it knows about their users, and
//! the fan-out of frames to them.
//!
//! A user with at least one socket here is a *local user*: this instance subscribes to the
//! user's bus topic, caches the user's assignments and sessions, and delivers every frame
//! published for the user to each of the user's sockets. Admins' sockets with event topics
//! are listed per organization, which subscribes this instance to the organization's topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::queue::{FrameQueue, Pushed};
use crate::auth::Principal;
use crate::bus::{BusMessage, ConnectionId, Subscription};
use crate::ids::{AgentId, GatewayId, OrgId, SessionId, UserId};
use crate::model::SessionStatus;
use crate::protocol::close_code;
use crate::protocol::{ServerFrame, Topic};
use crate::store::AssignedAgent;

/// Why a connection was not attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectRefusal {
    /// The user already holds the maximum number of sockets.
    #[error("too many connections for this user (at most {0})")]
    TooManyForUser(usize),
    /// The user's assignments could not be loaded, or the bus refused the subscription.
    #[error("the relay cannot serve this connection right now")]
    Unavailable,
}

impl ConnectRefusal {
    /// The close code to send.
    pub fn close_code(&self) -> u16 {
        close_code::OVERLOADED
    }
}

/// One user socket as the relay sees it: who it is, what waits to be written to it, and
/// whether the relay asked to close it.
#[derive(Debug)]
pub struct UserConnection {
    id: ConnectionId,
    principal: Principal,
    queue: FrameQueue,
    /// The close code the relay asked for (0: none); the queue's signal wakes the writer.
    kick_code: AtomicU16,
    topics: AtomicU8,
}

impl UserConnection {
    /// Its id on this instance.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Who is connected.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Asks the transport to close this socket with `code` (the first code asked wins); its
    /// writer learns it from [`UserSession::next_outgoing`](super::UserSession::next_outgoing).
    pub fn kick(&self, code: u16) {
        if self.kick_code.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.queue.wake();
        }
    }

    /// The code the relay asked to close this socket with, if it did.
    pub fn close_code(&self) -> Option<u16> {
        match self.kick_code.load(Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }

    /// Queues a reply to this socket's own request.
    pub(crate) fn reply(&self, frame: &ServerFrame) {
        self.queue.push_reply(frame.to_json().into());
    }

    /// Queues a live frame; a socket that cannot keep up is closed with 1013.
    pub(crate) fn deliver(&self, frame: Arc<str>) {
        if self.queue.push_live(frame) == Pushed::Full {
            tracing::info!(connection = self.id.0, user = %self.principal.user_id, "client too slow: closing");
            self.kick(close_code::OVERLOADED);
        }
    }

    pub(crate) fn queue(&self) -> &FrameQueue {
        &self.queue
    }

    pub(crate) fn topics(&self) -> u8 {
        self.topics.load(Ordering::Relaxed)
    }

    fn subscribed(&self, topic: Topic) -> bool {
        self.topics() & topic.bit() != 0
    }
}

/// What the relay needs to know about one of a user's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionMeta {
    pub(crate) agent_id: AgentId,
    pub(crate) gateway_id: GatewayId,
    pub(crate) session_key: String,
    pub(crate) status: SessionStatus,
}

/// Most sessions cached per local user.
const SESSION_CACHE: usize = 1024;

struct LocalUser {
    generation: u64,
    sockets: Vec<Arc<UserConnection>>,
    subscription: Option<Subscription>,
    assignments: Option<HashMap<AgentId, AssignedAgent>>,
    sessions: HashMap<SessionId, SessionMeta>,
}

struct LocalOrg {
    generation: u64,
    admins: Vec<Arc<UserConnection>>,
    subscription: Option<Subscription>,
}

/// A socket just attached; `subscribe` is set when this instance must now subscribe to the
/// user's topic (it is the user's first socket here), with the generation to hand back.
pub(crate) struct Attached {
    pub(crate) connection: Arc<UserConnection>,
    pub(crate) subscribe: Option<u64>,
}

/// The user sockets of this instance.
pub(crate) struct Connections {
    users: Mutex<HashMap<UserId, LocalUser>>,
    orgs: Mutex<HashMap<OrgId, LocalOrg>>,
    next_id: AtomicU64,
    count: AtomicUsize,
}

impl Default for Connections {
    /// Connection ids start at a random point of the 64-bit space, so ids from different
    /// instances (which meet on the bus: `only`/`except` of a frame) do not collide.
    fn default() -> Self {
        let (_, random) = uuid::Uuid::now_v7().as_u64_pair();
        Self {
            users: Mutex::default(),
            orgs: Mutex::default(),
            next_id: AtomicU64::new((random & 0xFFFF_FFFF) << 32),
            count: AtomicUsize::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connections {
    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sockets held.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Attaches a socket of `principal`, whose assignments were just loaded.
    pub(crate) fn attach(
        &self,
        principal: Principal,
        assignments: HashMap<AgentId, AssignedAgent>,
        max_per_user: usize,
        live_limit: usize,
    ) -> Result<Attached, ConnectRefusal> {
        let user = principal.user_id;
        let connection = Arc::new(UserConnection {
            id: ConnectionId(self.next()),
            principal,
            queue: FrameQueue::new(live_limit),
            kick_code: AtomicU16::new(0),
            topics: AtomicU8::new(0),
        });
        let mut users = lock(&self.users);
        let local = users.entry(user).or_insert_with(|| LocalUser {
            generation: self.next(),
            sockets: Vec::new(),
            subscription: None,
            assignments: None,
            sessions: HashMap::new(),
        });
        if local.sockets.len() >= max_per_user {
            return Err(ConnectRefusal::TooManyForUser(max_per_user));
        }
        local.sockets.push(connection.clone());
        local.assignments = Some(assignments);
        self.count.fetch_add(1, Ordering::Relaxed);
        let subscribe = local.subscription.is_none().then_some(local.generation);
        Ok(Attached { connection, subscribe })
    }

    /// Keeps the user's bus subscription, if the user is still local in that generation.
    pub(crate) fn subscribed(&self, user: UserId, generation: u64, subscription: Subscription) {
        if let Some(local) = lock(&self.users)
            .get_mut(&user)
            .filter(|l| l.generation == generation && l.subscription.is_none())
        {
            local.subscription = Some(subscription);
        }
    }

    /// Detaches a socket; the user's last socket ends the user's subscription and caches.
    pub(crate) fn detach(&self, connection: &Arc<UserConnection>) {
        let user = connection.principal.user_id;
        let removed = {
            let mut users = lock(&self.users);
            let Some(local) = users.get_mut(&user) else { return };
            let before = local.sockets.len();
            local.sockets.retain(|c| c.id != connection.id);
            let removed = local.sockets.len() < before;
            if local.sockets.is_empty() {
                users.remove(&user);
            }
            removed
        };
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        if connection.topics() != 0 {
            self.leave_org(connection);
        }
    }

    /// Delivers a bus message of a user's topic to the user's sockets here.
    pub(crate) fn deliver(&self, user: UserId, message: BusMessage) {
        let mut users = lock(&self.users);
        let Some(local) = users.get_mut(&user) else { return };
        match message {
            BusMessage::ToUser { frame, only, except } => {
                for socket in &local.sockets {
                    if only.is_none_or(|o| o == socket.id) && except != Some(socket.id) {
                        socket.deliver(frame.clone());
                    }
                }
            }
            BusMessage::CloseUser { code, .. } => {
                for socket in &local.sockets {
                    socket.kick(code);
                }
            }
            BusMessage::InvalidateUser => {
                local.assignments = None;
                local.sessions.clear();
            }
            BusMessage::ToGateway(_) | BusMessage::OrgEvent { .. } => {}
        }
    }

    /// Delivers an admin event to the organization's subscribed admins here.
    pub(crate) fn deliver_org(&self, org: OrgId, message: BusMessage) {
        let BusMessage::OrgEvent { topic, frame } = message else { return };
        if let Some(local) = lock(&self.orgs).get(&org) {
            for admin in local.admins.iter().filter(|a| a.subscribed(topic)) {
                admin.deliver(frame.clone());
            }
        }
    }

    /// Asks every socket to close with `code`.
    pub(crate) fn kick_all(&self, code: u16) {
        for local in lock(&self.users).values() {
            for socket in &local.sockets {
                socket.kick(code);
            }
        }
    }

    /// The user's assignment of `agent`: `None` if the assignments are not cached,
    /// `Some(None)` if cached and the agent is not among them.
    pub(crate) fn assignment(&self, user: UserId, agent: AgentId) -> Option<Option<AssignedAgent>> {
        let users = lock(&self.users);
        let cached = users.get(&user)?.assignments.as_ref()?;
        Some(cached.get(&agent).cloned())
    }

    /// Caches the user's assignments (if the user is local).
    pub(crate) fn cache_assignments(
        &self,
        user: UserId,
        assignments: HashMap<AgentId, AssignedAgent>,
    ) {
        if let Some(local) = lock(&self.users).get_mut(&user) {
            local.assignments = Some(assignments);
        }
    }

    /// A cached session of the user.
    pub(crate) fn session(&self, user: UserId, session: SessionId) -> Option<SessionMeta> {
        lock(&self.users).get(&user).and_then(|l| l.sessions.get(&session).cloned())
    }

    /// Caches a session of the user (if the user is local).
    pub(crate) fn cache_session(&self, user: UserId, session: SessionId, meta: SessionMeta) {
        if let Some(local) = lock(&self.users).get_mut(&user) {
            if local.sessions.len() >= SESSION_CACHE {
                local.sessions.clear();
            }
            local.sessions.insert(session, meta);
        }
    }

    /// Sets a socket's admin topics, joining or leaving its organization's list. Returns the
    /// generation to subscribe the organization's topic with, when this is its first admin.
    pub(crate) fn set_topics(&self, connection: &Arc<UserConnection>, topics: u8) -> Option<u64> {
        connection.topics.store(topics, Ordering::Relaxed);
        if topics == 0 {
            self.leave_org(connection);
            return None;
        }
        let mut orgs = lock(&self.orgs);
        let local = orgs.entry(connection.principal.organization_id).or_insert_with(|| LocalOrg {
            generation: self.next(),
            admins: Vec::new(),
            subscription: None,
        });
        if !local.admins.iter().any(|a| a.id == connection.id) {
            local.admins.push(connection.clone());
        }
        local.subscription.is_none().then_some(local.generation)
    }

    /// Keeps the organization's bus subscription, if it still has admins in that generation.
    pub(crate) fn org_subscribed(&self, org: OrgId, generation: u64, subscription: Subscription) {
        if let Some(local) = lock(&self.orgs)
            .get_mut(&org)
            .filter(|l| l.generation == generation && l.subscription.is_none())
        {
            local.subscription = Some(subscription);
        }
    }

    fn leave_org(&self, connection: &Arc<UserConnection>) {
        let org = connection.principal.organization_id;
        let mut orgs = lock(&self.orgs);
        if let Some(local) = orgs.get_mut(&org) {
            local.admins.retain(|c| c.id != connection.id);
            if local.admins.is_empty() {
                orgs.remove(&org);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    fn principal(user: UserId) -> Principal {
        Principal { user_id: user, organization_id: OrgId::new(), role: Role::Member }
    }

    #[test]
    fn sockets_of_a_user_share_one_subscription_and_a_cap() {
        let connections = Connections::default();
        let user = UserId::new();
        let first = connections.attach(principal(user), HashMap::new(), 2, 8).unwrap();
        assert!(first.subscribe.is_some(), "the first socket subscribes");
        connections.subscribed(user, first.subscribe.unwrap_or_default(), Subscription::new(()));
        let second = connections.attach(principal(user), HashMap::new(), 2, 8).unwrap();
        assert!(second.subscribe.is_none());
        let refused = connections.attach(principal(user), HashMap::new(), 2, 8);
        assert_eq!(refused.err(), Some(ConnectRefusal::TooManyForUser(2)));
        assert_eq!(connections.count(), 2);

        connections.deliver(
            user,
            BusMessage::ToUser {
                frame: Arc::from("x"),
                only: None,
                except: Some(first.connection.id),
            },
        );
        assert!(first.connection.queue().is_empty());
        assert_eq!(second.connection.queue().pop().as_deref(), Some("x"));

        connections.detach(&first.connection);
        connections.detach(&second.connection);
        connections.detach(&second.connection);
        assert_eq!(connections.count(), 0, "a double detach counts once");
        assert!(connections.assignment(user, AgentId::new()).is_none(), "caches go with the user");
    }
}
