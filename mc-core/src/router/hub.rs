//! What this instance holds: user connections (with per-user caches and rate limiters), admin
//! subscriptions, and gateway links, each subscribed to its bus topic while held here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

use super::limits::RateLimiter;
use super::{Router, UserConnection, UserSession, close_code};
use crate::auth::Principal;
use crate::bus::{BusMessage, BusTopic, ConnectionId, GatewayCommand, Subscription};
use crate::ids::{AgentId, GatewayId, OrgId, SessionId, UserId};
use crate::link::GatewayLink;
use crate::model::{AgentStatus, SessionStatus};
use crate::protocol::server::assignment_status;
use crate::protocol::{AssignmentInfo, ServerFrame};
use crate::store::AssignedAgent;

/// Why a connection was not attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectRefusal {
    /// The user already holds the maximum number of sockets.
    #[error("too many connections for this user (at most {0})")]
    TooManyForUser(usize),
    /// The user's assignments could not be loaded.
    #[error("the relay cannot serve this connection right now")]
    Unavailable,
}

impl ConnectRefusal {
    /// The close code to send.
    pub fn close_code(&self) -> u16 {
        close_code::OVERLOADED
    }
}

/// What a session's messages need, cached per connected user.
#[derive(Debug, Clone)]
pub(crate) struct SessionMeta {
    pub(crate) agent_id: AgentId,
    pub(crate) gateway_id: GatewayId,
    pub(crate) session_key: String,
    pub(crate) status: SessionStatus,
}

/// A user with at least one connection here.
struct LocalUser {
    generation: u64,
    connections: Vec<Arc<UserConnection>>,
    assignments: Option<HashMap<AgentId, AssignedAgent>>,
    sessions: HashMap<SessionId, SessionMeta>,
    limiter: RateLimiter,
    subscription: Option<Subscription>,
}

struct LocalOrg {
    generation: u64,
    admins: Vec<Arc<UserConnection>>,
    subscription: Option<Subscription>,
}

pub(crate) struct LocalGateway {
    pub(crate) generation: u64,
    pub(crate) link: Arc<dyn GatewayLink>,
    pub(crate) subscription: Option<Subscription>,
}

/// Most sessions cached per connected user.
const SESSION_CACHE: usize = 1024;

#[derive(Default)]
pub(crate) struct Hub {
    users: Mutex<HashMap<UserId, LocalUser>>,
    orgs: Mutex<HashMap<OrgId, LocalOrg>>,
    pub(crate) gateways: Mutex<HashMap<GatewayId, LocalGateway>>,
    next_id: AtomicU64,
    connections: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub(crate) fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn gateway_count(&self) -> usize {
        lock(&self.gateways).len()
    }

    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn detach_user(&self, connection: &Arc<UserConnection>) {
        let user = connection.principal.user_id;
        let mut users = lock(&self.users);
        if let Some(local) = users.get_mut(&user) {
            let before = local.connections.len();
            local.connections.retain(|c| c.id != connection.id);
            if local.connections.len() < before {
                self.connections.fetch_sub(1, Ordering::Relaxed);
            }
            if local.connections.is_empty() {
                users.remove(&user);
            }
        }
        drop(users);
        if connection.topics.load(Ordering::Relaxed) != 0 {
            self.remove_admin(connection);
        }
    }

    fn remove_admin(&self, connection: &Arc<UserConnection>) {
        let org = connection.principal.organization_id;
        let mut orgs = lock(&self.orgs);
        if let Some(local) = orgs.get_mut(&org) {
            local.admins.retain(|c| c.id != connection.id);
            if local.admins.is_empty() {
                orgs.remove(&org);
            }
        }
    }

    /// Delivers a bus message for a user to its connections here.
    fn deliver_user(&self, user: UserId, message: BusMessage) {
        let mut users = lock(&self.users);
        let Some(local) = users.get_mut(&user) else { return };
        match message {
            BusMessage::ToUser { frame, only, except } => {
                for c in &local.connections {
                    if only.is_none_or(|o| o == c.id) && except != Some(c.id) {
                        c.send(frame.clone());
                    }
                }
            }
            BusMessage::CloseUser { code, .. } => {
                for c in &local.connections {
                    c.kick(code);
                }
            }
            BusMessage::InvalidateUser => {
                local.assignments = None;
            }
            BusMessage::ToGateway(_) | BusMessage::OrgEvent { .. } => {}
        }
    }

    fn deliver_org(&self, org: OrgId, message: BusMessage) {
        let BusMessage::OrgEvent { topic, frame } = message else { return };
        let orgs = lock(&self.orgs);
        if let Some(local) = orgs.get(&org) {
            for admin in local.admins.iter().filter(|a| a.subscribed(topic)) {
                admin.send(frame.clone());
            }
        }
    }

    pub(crate) fn kick_all(&self, code: u16) {
        for local in lock(&self.users).values() {
            for c in &local.connections {
                c.kick(code);
            }
        }
        for local in lock(&self.gateways).values() {
            local.link.close(code);
        }
    }

    /// Takes a rate-limit token for the user, or says how long to wait.
    pub(crate) fn take_token(
        &self,
        user: UserId,
        rate: u32,
        burst: u32,
    ) -> Result<(), std::time::Duration> {
        match lock(&self.users).get_mut(&user) {
            Some(local) => local.limiter.take(rate, burst, Instant::now()),
            None => Ok(()),
        }
    }

    pub(crate) fn cached_assignments(
        &self,
        user: UserId,
    ) -> Option<HashMap<AgentId, AssignedAgent>> {
        lock(&self.users).get(&user).and_then(|l| l.assignments.clone())
    }

    pub(crate) fn cache_assignments(
        &self,
        user: UserId,
        assignments: HashMap<AgentId, AssignedAgent>,
    ) {
        if let Some(local) = lock(&self.users).get_mut(&user) {
            local.assignments = Some(assignments);
        }
    }

    pub(crate) fn cached_session(&self, user: UserId, session: SessionId) -> Option<SessionMeta> {
        lock(&self.users).get(&user).and_then(|l| l.sessions.get(&session).cloned())
    }

    pub(crate) fn cache_session(&self, user: UserId, session: SessionId, meta: SessionMeta) {
        if let Some(local) = lock(&self.users).get_mut(&user) {
            if local.sessions.len() >= SESSION_CACHE {
                local.sessions.clear();
            }
            local.sessions.insert(session, meta);
        }
    }

    /// Sets the admin topics of a connection, joining or leaving its organization's list.
    pub(crate) async fn set_topics(router: &Router, connection: &Arc<UserConnection>, topics: u8) {
        let hub = &router.inner.hub;
        connection.topics.store(topics, Ordering::Relaxed);
        if topics == 0 {
            hub.remove_admin(connection);
            return;
        }
        let org = connection.principal.organization_id;
        let subscribe_generation = {
            let mut orgs = lock(&hub.orgs);
            let local = orgs.entry(org).or_insert_with(|| LocalOrg {
                generation: hub.next(),
                admins: Vec::new(),
                subscription: None,
            });
            if !local.admins.iter().any(|a| a.id == connection.id) {
                local.admins.push(connection.clone());
            }
            local.subscription.is_none().then_some(local.generation)
        };
        if let Some(generation) = subscribe_generation {
            let weak = router.downgrade();
            let handler = Arc::new(move |message: BusMessage| {
                if let Some(inner) = weak.upgrade() {
                    inner.hub.deliver_org(org, message);
                }
            });
            match router.inner.bus.subscribe(BusTopic::Org(org), handler).await {
                Ok(sub) => {
                    let mut orgs = lock(&hub.orgs);
                    if let Some(local) = orgs
                        .get_mut(&org)
                        .filter(|l| l.generation == generation && l.subscription.is_none())
                    {
                        local.subscription = Some(sub);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, %org, "cannot subscribe to organization events")
                }
            }
        }
    }

    /// Registers a gateway link here; returns its generation and any link it replaces.
    pub(crate) fn put_gateway(
        &self,
        gateway: GatewayId,
        link: Arc<dyn GatewayLink>,
    ) -> (u64, Option<LocalGateway>) {
        let generation = self.next();
        let old = lock(&self.gateways)
            .insert(gateway, LocalGateway { generation, link, subscription: None });
        (generation, old)
    }

    pub(crate) fn set_gateway_subscription(
        &self,
        gateway: GatewayId,
        generation: u64,
        sub: Subscription,
    ) {
        if let Some(local) =
            lock(&self.gateways).get_mut(&gateway).filter(|g| g.generation == generation)
        {
            local.subscription = Some(sub);
        }
    }

    /// Removes the gateway's link if it is still `generation`.
    pub(crate) fn take_gateway(&self, gateway: GatewayId, generation: u64) -> Option<LocalGateway> {
        let mut gateways = lock(&self.gateways);
        if gateways.get(&gateway).is_some_and(|g| g.generation == generation) {
            gateways.remove(&gateway)
        } else {
            None
        }
    }

    pub(crate) fn gateway_link(&self, gateway: GatewayId) -> Option<Arc<dyn GatewayLink>> {
        lock(&self.gateways).get(&gateway).map(|g| g.link.clone())
    }

    pub(crate) fn has_gateway(&self, gateway: GatewayId) -> bool {
        lock(&self.gateways).contains_key(&gateway)
    }
}

/// Builds the gateway topic's handler: commands for a link held here.
pub(crate) fn gateway_handler(
    router: &Router,
    gateway: GatewayId,
) -> Arc<dyn crate::bus::BusHandler> {
    let weak = router.downgrade();
    Arc::new(move |message: BusMessage| {
        let (Some(inner), BusMessage::ToGateway(command)) = (weak.upgrade(), message) else {
            return;
        };
        super::runs::on_command(&Router::from_inner(inner), gateway, command);
    })
}

fn assignment_infos(assignments: &HashMap<AgentId, AssignedAgent>) -> Vec<AssignmentInfo> {
    let mut infos: Vec<AssignmentInfo> = assignments
        .values()
        .map(|a| AssignmentInfo {
            agent_id: a.agent.id,
            agent_name: a.agent.name.clone(),
            gateway_id: a.agent.gateway_id,
            status: assignment_status(a.agent.status == AgentStatus::Gone, a.gateway_status),
            board_name: a.assignment.board_name.clone(),
        })
        .collect();
    infos.sort_by_key(|i| i.agent_id);
    infos
}

pub(crate) async fn load_assignments(
    router: &Router,
    user: UserId,
) -> crate::Result<HashMap<AgentId, AssignedAgent>> {
    let list = router.relay().store().list_user_assignments(user).await?;
    Ok(list.into_iter().map(|a| (a.agent.id, a)).collect())
}

pub(crate) async fn connect_user(
    router: &Router,
    principal: Principal,
) -> Result<(UserSession, ServerFrame), ConnectRefusal> {
    let hub = &router.inner.hub;
    let limits = &router.inner.limits;
    let user = principal.user_id;
    let assignments = load_assignments(router, user).await.map_err(|err| {
        tracing::warn!(error = %err, %user, "cannot load assignments");
        ConnectRefusal::Unavailable
    })?;
    let (tx, outbound) = mpsc::channel(limits.outbound_queue.max(1));
    let connection = Arc::new(UserConnection {
        id: ConnectionId(hub.next()),
        principal,
        tx,
        kick_code: AtomicU16::new(0),
        kicked: Notify::new(),
        topics: AtomicU8::new(0),
    });
    let subscribe_generation = {
        let mut users = lock(&hub.users);
        let local = users.entry(user).or_insert_with(|| LocalUser {
            generation: hub.next(),
            connections: Vec::new(),
            assignments: None,
            sessions: HashMap::new(),
            limiter: RateLimiter::new(limits.rate_burst),
            subscription: None,
        });
        if local.connections.len() >= limits.max_connections_per_user {
            return Err(ConnectRefusal::TooManyForUser(limits.max_connections_per_user));
        }
        local.connections.push(connection.clone());
        local.assignments = Some(assignments.clone());
        hub.connections.fetch_add(1, Ordering::Relaxed);
        local.subscription.is_none().then_some(local.generation)
    };
    let session = UserSession { router: router.clone(), connection, outbound };
    if let Some(generation) = subscribe_generation {
        let weak = router.downgrade();
        let handler = Arc::new(move |message: BusMessage| {
            if let Some(inner) = weak.upgrade() {
                inner.hub.deliver_user(user, message);
            }
        });
        match router.inner.bus.subscribe(BusTopic::User(user), handler).await {
            Ok(sub) => {
                let mut users = lock(&hub.users);
                if let Some(local) = users
                    .get_mut(&user)
                    .filter(|l| l.generation == generation && l.subscription.is_none())
                {
                    local.subscription = Some(sub);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, %user, "cannot subscribe to the user's topic");
                return Err(ConnectRefusal::Unavailable);
            }
        }
    }
    let auth_ok = ServerFrame::AuthOk {
        user_id: user,
        organization_id: principal.organization_id,
        heartbeat_interval_seconds: limits.heartbeat_interval.as_secs(),
        assignments: assignment_infos(&assignments),
    };
    Ok((session, auth_ok))
}

/// Sends a gateway command to whichever instance holds the link; returns how many received it.
pub(crate) async fn to_gateway(
    router: &Router,
    gateway: GatewayId,
    command: GatewayCommand,
) -> crate::Result<usize> {
    router.inner.bus.publish(BusTopic::Gateway(gateway), BusMessage::ToGateway(command)).await
}
