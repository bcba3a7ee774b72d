//! The relay router (SPEC §6, §7.1, §9): decides what to store and whom to send what. It knows
//! nothing of sockets: transports attach user connections and gateway links, feed it decoded
//! frames, and write out what it queues for them.
//!
//! - [`Router::connect_user`] attaches an authenticated user connection; its frames go to
//!   [`Router::handle_user`]; what the user must receive arrives on the connection's queue.
//! - [`Router::attach_gateway`] attaches a gateway's [`GatewayLink`]; its pushed events go to
//!   [`Router::gateway_event`]; [`Router::detach_gateway`] when the link ends.
//! - Every delivery to a user or gateway goes through the [`Bus`], so the user or gateway may
//!   be held by another instance.

mod hub;
mod limits;
mod pump;
mod runs;
mod user;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};

use tokio::sync::{Notify, mpsc};

pub use hub::ConnectRefusal;
pub use limits::RelayLimits;

use crate::Relay;
use crate::auth::Principal;
use crate::bus::{Bus, BusMessage, BusTopic, ConnectionId};
use crate::ids::{GatewayId, UserId};
use crate::link::GatewayLink;
use crate::protocol::{ClientFrame, ErrorCode, ServerFrame, Topic};

/// WebSocket close codes the relay uses (SPEC §6).
pub mod close_code {
    /// Unauthorized: refresh the token, then reconnect.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Forbidden (suspended user, refused origin): do not retry.
    pub const FORBIDDEN: u16 = 4003;
    /// Too many protocol violations.
    pub const VIOLATIONS: u16 = 4008;
    /// Frame too big.
    pub const TOO_BIG: u16 = 1009;
    /// Server restarting: reconnect elsewhere.
    pub const RESTARTING: u16 = 1012;
    /// Overloaded (too slow, too many connections): back off.
    pub const OVERLOADED: u16 = 1013;
}

/// One user connection as the router sees it.
#[derive(Debug)]
pub struct UserConnection {
    id: ConnectionId,
    principal: Principal,
    tx: mpsc::Sender<Arc<str>>,
    kick_code: AtomicU16,
    kicked: Notify,
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

    /// Queues a frame; a full queue means the client cannot keep up: it is closed with 1013.
    pub(crate) fn send(&self, frame: Arc<str>) {
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(connection = self.id.0, user = %self.principal.user_id, "client too slow: closing");
                self.kick(close_code::OVERLOADED);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub(crate) fn send_frame(&self, frame: &ServerFrame) {
        self.send(frame.to_json().into());
    }

    /// Queues a frame of a long answer, waiting while the queue is full (the socket loop keeps
    /// draining it); a client that reads nothing for 30 s is closed with 1013. `false` once the
    /// connection is gone.
    pub(crate) async fn send_waiting(&self, frame: &ServerFrame) -> bool {
        match tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.tx.send(frame.to_json().into()),
        )
        .await
        {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.kick(close_code::OVERLOADED);
                false
            }
        }
    }

    /// Asks the transport to close this socket with `code` (the first code asked wins).
    pub fn kick(&self, code: u16) {
        if self.kick_code.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.kicked.notify_one();
        }
    }

    /// Resolves when the router asked to close this socket; gives the close code.
    pub async fn kicked(&self) -> u16 {
        loop {
            let code = self.kick_code.load(Ordering::SeqCst);
            if code != 0 {
                return code;
            }
            self.kicked.notified().await;
        }
    }

    fn subscribed(&self, topic: Topic) -> bool {
        self.topics.load(Ordering::Relaxed) & topic.bit() != 0
    }
}

/// An attached user connection. Dropping it detaches the connection.
#[derive(Debug)]
pub struct UserSession {
    router: Router,
    connection: Arc<UserConnection>,
    outbound: mpsc::Receiver<Arc<str>>,
}

impl UserSession {
    /// The connection.
    pub fn connection(&self) -> &Arc<UserConnection> {
        &self.connection
    }

    /// The next frame to write to the socket; `None` once detached.
    pub async fn next_frame(&mut self) -> Option<Arc<str>> {
        self.outbound.recv().await
    }

    /// Frames already queued, without waiting.
    pub fn try_next_frame(&mut self) -> Option<Arc<str>> {
        self.outbound.try_recv().ok()
    }

    /// Handles one decoded frame from the socket.
    pub async fn handle(&self, frame: ClientFrame) {
        self.router.handle_user(&self.connection, frame).await;
    }
}

impl Drop for UserSession {
    fn drop(&mut self) {
        self.router.inner.hub.detach_user(&self.connection);
    }
}

pub(crate) struct Inner {
    relay: Relay,
    bus: Arc<dyn Bus>,
    limits: RelayLimits,
    hub: hub::Hub,
    runs: runs::Runs,
    writer: writer::Writer,
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("bus", &self.bus)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The relay router of one instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl Router {
    /// A router for `relay`, delivering through `bus`. Must be created inside a tokio runtime:
    /// it starts its background tasks (relay events → bus, idle-run reaper), which stop when
    /// the last clone is dropped.
    pub fn new(relay: Relay, bus: Arc<dyn Bus>, limits: RelayLimits) -> Self {
        let (writer, writer_task) = writer::Writer::start(relay.store().clone());
        let inner = Arc::new(Inner {
            relay,
            bus,
            limits,
            hub: hub::Hub::default(),
            runs: runs::Runs::default(),
            writer,
            tasks: std::sync::Mutex::new(vec![writer_task.abort_handle()]),
        });
        let router = Router { inner };
        pump::start(&router);
        runs::start_reaper(&router);
        router
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Router { inner }
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn own_task(&self, handle: tokio::task::JoinHandle<()>) {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(handle.abort_handle());
    }

    /// The relay's services.
    pub fn relay(&self) -> &Relay {
        &self.inner.relay
    }

    /// The limits.
    pub fn limits(&self) -> &RelayLimits {
        &self.inner.limits
    }

    /// User connections attached to this instance.
    pub fn connection_count(&self) -> usize {
        self.inner.hub.connection_count()
    }

    /// Gateway links attached to this instance.
    pub fn gateway_count(&self) -> usize {
        self.inner.hub.gateway_count()
    }

    /// Attaches an authenticated user connection and returns it with its `auth_ok` frame.
    pub async fn connect_user(
        &self,
        principal: Principal,
    ) -> Result<(UserSession, ServerFrame), ConnectRefusal> {
        hub::connect_user(self, principal).await
    }

    /// Handles a decoded frame of a user connection.
    pub async fn handle_user(&self, connection: &Arc<UserConnection>, frame: ClientFrame) {
        user::handle(self, connection, frame).await;
    }

    /// Sends an `error` frame for a request that could not be decoded or served.
    pub fn reply_error(
        &self,
        connection: &UserConnection,
        id: Option<String>,
        code: ErrorCode,
        message: String,
    ) {
        connection.send_frame(&ServerFrame::Error { id, code, message, retry_after_ms: None });
    }

    /// Attaches a gateway's link (its socket authenticated); marks it online.
    pub async fn attach_gateway(
        &self,
        gateway: GatewayId,
        link: Arc<dyn GatewayLink>,
    ) -> crate::Result<u64> {
        runs::attach_gateway(self, gateway, link).await
    }

    /// Detaches the link `generation` of a gateway (its socket ended): its runs fail, and
    /// unless it comes back within the grace period its agents are announced offline.
    pub async fn detach_gateway(&self, gateway: GatewayId, generation: u64) {
        runs::detach_gateway(self, gateway, generation).await;
    }

    /// Handles an event a gateway pushed (`{type:"event", event, payload}`).
    pub async fn gateway_event(
        &self,
        gateway: GatewayId,
        event: &str,
        payload: &serde_json::Value,
    ) {
        runs::gateway_event(self, gateway, event, payload).await;
    }

    /// Closes every user socket and gateway link on this instance with `code` (shutdown: 1012).
    pub fn close_all(&self, code: u16) {
        self.inner.hub.kick_all(code);
    }

    /// Appends a message through the group-commit writer.
    pub(crate) async fn append(
        &self,
        message: crate::model::NewMessage,
    ) -> crate::StoreResult<crate::store::Appended> {
        self.inner.writer.append(message).await
    }

    pub(crate) async fn publish_user(&self, user: UserId, message: BusMessage) {
        if let Err(err) = self.inner.bus.publish(BusTopic::User(user), message).await {
            tracing::warn!(error = %err, %user, "bus publish to user failed");
        }
    }

    pub(crate) async fn publish_frame(&self, user: UserId, frame: &ServerFrame) {
        self.publish_user(
            user,
            BusMessage::ToUser { frame: frame.to_json().into(), only: None, except: None },
        )
        .await;
    }
}
