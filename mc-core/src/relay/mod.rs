//! The relay engine (docs/protocol.md; docs/gateway-link.md): [`Relay`] decides what to store and whom to send what.
//! It knows no sockets: transports attach user connections ([`Relay::connect_user`] gives a
//! [`UserSession`]) and gateway links ([`Relay::attach_gateway`] with any
//! [`GatewayLink`]), feed it decoded frames, and write out what it queues.
//!
//! # Follow one message
//! 1. The user's socket hands a decoded `chat` to [`UserSession::handle`], which charges the
//!    user's request budget (`limits`) and calls `Engine::chat` (`chat.rs`): check the content,
//!    the assignment and that some instance holds the gateway; find or create the session
//!    (one per first client id); store the message through the group-commit `writer`; show
//!    it to the user's other devices; queue the `ack`; hand the message over as a bus command
//!    to the gateway's holder.
//! 2. On the holder (`replies.rs`, `on_gateway_command`), the message enters the `outbox` and
//!    the link's `driver` sends `chat.send`.
//! 3. The gateway answers (`on_outcome`: the run started) and streams `chat` events
//!    (`on_gateway_event`): each delta updates the run's text (`run_text`) and goes to the
//!    user as a `chunk`; the first terminal event takes the delivery out of the outbox — a
//!    `final` stores the reply together with the request's `answered` state and sends it;
//!    an `error` stores a failure notice (with `failed`) and sends an `error`.
//! 4. Every frame for a user crosses the bus to the instances holding the user's sockets
//!    (`connections`), which queue it for each socket (`queue`: one policy for every frame).
//!
//! If the link drops (`links.rs`) the gateway is *away*: its runs and messages wait for the
//! grace period and are picked up by the next link; past it they fail. See ARCHITECTURE.md.

mod chat;
mod connections;
mod control;
mod driver;
mod engine;
mod gateways;
mod limits;
mod links;
mod outbox;
mod queue;
mod reads;
mod recent;
mod replies;
mod resume;
mod run_text;
mod tasks;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use connections::{ConnectRefusal, UserConnection};
pub use limits::RelayLimits;
pub use writer::MessageWriter;

use self::chat::ChatRequest;
use self::engine::Engine;
use self::resume::Resume;
use crate::Services;
use crate::auth::Principal;
use crate::bus::{Bus, BusMessage, BusTopic};
use crate::ids::GatewayId;
use crate::link::GatewayLink;
use crate::protocol::{AssignmentInfo, ClientFrame, ClientRequest, ErrorCode, ServerFrame};

/// The relay engine of one instance. Cheap to clone; its background tasks stop when the last
/// clone (and the last [`UserSession`]) is dropped.
#[derive(Debug, Clone)]
pub struct Relay {
    engine: Arc<Engine>,
}

impl Relay {
    /// A relay over `services`, delivering through `bus`. Must be created inside a tokio
    /// runtime: it starts its writer, its event handler and its sweeper.
    pub fn new(services: Services, bus: Arc<dyn Bus>, limits: RelayLimits) -> Self {
        let feed = services.events().attach_feed();
        let (writer, _writer_task) = writer::MessageWriter::start(services.store().clone());
        let engine = Arc::new_cyclic(|me| Engine {
            limiter: limits::Limiter::new(limits.rate_per_sec(), limits.rate_burst()),
            services,
            single_instance: bus.single_instance(),
            bus,
            limits,
            connections: connections::Connections::default(),
            gateways: gateways::Gateways::default(),
            outbox: outbox::Outbox::default(),
            writer,
            tasks: tasks::Tasks::default(),
            me: me.clone(),
        });
        control::start(&engine, feed);
        control::watch_bus_gaps(&engine);
        let every = (engine.limits.offline_grace().min(engine.limits.run_idle_timeout()) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        links::start_sweeper(&engine, every);
        Relay { engine }
    }

    /// The services the relay runs on.
    pub fn services(&self) -> &Services {
        &self.engine.services
    }

    /// The limits.
    pub fn limits(&self) -> &RelayLimits {
        &self.engine.limits
    }

    /// This instance's id (the bus's), as logs, metrics and presence show it.
    pub fn instance_id(&self) -> &str {
        self.engine.bus.instance_id()
    }

    /// Whether the bus works (readiness): always with one instance; Redis answering with
    /// several.
    pub async fn ping_bus(&self) -> crate::Result<()> {
        self.engine.bus.ping().await
    }

    /// User sockets attached to this instance.
    pub fn connection_count(&self) -> usize {
        self.engine.connections.count()
    }

    /// Gateway links attached to this instance.
    pub fn gateway_count(&self) -> usize {
        self.engine.gateways.linked()
    }

    /// Messages accepted for gateways held here and not yet answered or failed.
    pub fn pending_deliveries(&self) -> usize {
        self.engine.outbox.len()
    }

    /// Attaches an authenticated user socket; returns it with its `auth_ok` frame.
    pub async fn connect_user(
        &self,
        principal: Principal,
    ) -> Result<(UserSession, ServerFrame), ConnectRefusal> {
        let engine = &self.engine;
        let user = principal.user_id;
        let organization = principal.organization_id;
        let assignments = engine.load_assignments(user).await.map_err(|err| {
            tracing::warn!(error = %err, %user, "cannot load assignments");
            ConnectRefusal::Unavailable
        })?;
        let infos = AssignmentInfo::list(assignments.values());
        let max_per_user = engine.limits.max_connections_per_user();
        match engine.bus.join_user(user, max_per_user).await {
            Ok(true) => {}
            Ok(false) => return Err(ConnectRefusal::TooManyForUser(max_per_user)),
            Err(err) => {
                tracing::warn!(error = %err, %user, "cannot count the user's sockets");
                return Err(ConnectRefusal::Unavailable);
            }
        }
        let attached = match engine.connections.attach(
            principal,
            assignments,
            max_per_user,
            engine.limits.live_queue(),
        ) {
            Ok(attached) => attached,
            Err(refusal) => {
                engine.bus.leave_user(user);
                return Err(refusal);
            }
        };
        let session = UserSession {
            engine: engine.clone(),
            connection: attached.connection,
            resume: Resume::default(),
        };
        if let Some(generation) = attached.subscribe {
            let me = engine.me.clone();
            let handler = Arc::new(move |message: BusMessage| {
                if let Some(engine) = me.upgrade() {
                    engine.connections.deliver(user, message);
                }
            });
            match engine.bus.subscribe(BusTopic::User(user), handler).await {
                Ok(subscription) => engine.connections.subscribed(user, generation, subscription),
                Err(err) => {
                    tracing::warn!(error = %err, %user, "cannot subscribe to the user's topic");
                    return Err(ConnectRefusal::Unavailable);
                }
            }
        }
        let auth_ok = ServerFrame::AuthOk {
            user_id: user,
            organization_id: organization,
            heartbeat_interval_seconds: engine.limits.heartbeat_interval().as_secs(),
            assignments: infos,
        };
        Ok((session, auth_ok))
    }

    /// Attaches a gateway's link (its socket authenticated); marks it online and sends it
    /// what is pending. Returns the link's generation, for [`detach_gateway`](Self::detach_gateway).
    pub async fn attach_gateway(
        &self,
        gateway: GatewayId,
        link: Arc<dyn GatewayLink>,
    ) -> crate::Result<u64> {
        self.engine.attach(gateway, link).await
    }

    /// Detaches the link `generation` of a gateway (its socket ended). Its runs and messages
    /// wait for the offline grace period; past it they fail and its agents go offline.
    pub fn detach_gateway(&self, gateway: GatewayId, generation: u64) {
        self.engine.detach(gateway, generation);
    }

    /// Handles an event a gateway pushed: the relay's runs' `chat` and `agent` events become
    /// its users' chunks, statuses and stored replies; other events are not its business.
    pub async fn gateway_event(&self, gateway: GatewayId, event: &mc_openclaw::EventFrame) {
        self.engine.on_gateway_event(gateway, event).await;
    }

    /// Closes every user socket and gateway link on this instance with `code` (shutdown: 1012).
    pub fn close_all(&self, code: u16) {
        self.engine.connections.kick_all(code);
        self.engine.gateways.close_all(code);
    }

    /// Writes every delivery state the relay holds back to batch (`sent` and `started`, for
    /// up to 50 ms) and waits for the commit. At shutdown, call it after the sockets have
    /// finished and before the store is closed, or those states are lost.
    pub async fn flush(&self) {
        self.engine.writer.flush().await;
    }
}

/// What a socket's writer does next ([`UserSession::next_outgoing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Write this frame.
    Frame(Arc<str>),
    /// Close the socket with this code: the relay asked to (a suspension, a sign-out, a
    /// client too slow, a restart).
    Close(u16),
}

/// An attached user socket, as its transport drives it: read a frame when
/// [`wants_input`](Self::wants_input), [`handle`](Self::handle) it, and do what
/// [`next_outgoing`](Self::next_outgoing) says (write a frame, or close).
/// Dropping it detaches the socket.
#[derive(Debug)]
pub struct UserSession {
    engine: Arc<Engine>,
    connection: Arc<UserConnection>,
    resume: Resume,
}

impl UserSession {
    /// The connection.
    pub fn connection(&self) -> &Arc<UserConnection> {
        &self.connection
    }

    /// Whether the transport should read the next request: `false` while too many replies
    /// are unwritten (the client sends faster than it reads).
    pub fn wants_input(&self) -> bool {
        self.connection.queue().accepts_requests()
    }

    /// What the socket's writer does next: close, if the relay asked to ([`Outgoing::Close`],
    /// before anything else); otherwise write the next frame: replies and live frames in the
    /// order they were queued, then (when there are none) the next page of a resume. Waits
    /// until there is one; cancel-safe. One wait for both, so an idle socket's task keeps one
    /// waiter, not two.
    pub async fn next_outgoing(&mut self) -> Outgoing {
        loop {
            if let Some(code) = self.connection.close_code() {
                return Outgoing::Close(code);
            }
            if let Some(frame) = self.try_next_frame() {
                return Outgoing::Frame(frame);
            }
            if !self.resume.is_idle() {
                // Boxed: a fetch reads the store and is rare; every idle socket waits here.
                Box::pin(self.resume.fetch(&self.engine)).await;
                continue;
            }
            self.connection.queue().changed().await;
        }
    }

    /// The next frame already there, without waiting (nothing is fetched).
    pub fn try_next_frame(&mut self) -> Option<Arc<str>> {
        if let Some(frame) = self.connection.queue().pop() {
            return Some(frame);
        }
        self.resume.next_buffered(&self.engine, &self.connection)
    }

    /// Takes a fresh `auth` on the open socket (which the transport carries out: two reads of
    /// the store) from the user's rate limit, as [`UserSession::handle`] does for the other
    /// requests. When the user is out of turns it is answered with `RATE_LIMITED` (and when
    /// to retry) and `false` is returned: it must not be carried out.
    pub fn admit_fresh_auth(&self, id: &Option<String>) -> bool {
        self.admit(id, limits::FRESH_AUTH_COST)
    }

    /// Takes `cost` from the user's rate limit, or answers `RATE_LIMITED` and returns false.
    fn admit(&self, id: &Option<String>, cost: f64) -> bool {
        let user = self.connection.principal().user_id;
        let Err(wait) = self.engine.limiter.take(user, cost, Instant::now()) else {
            return true;
        };
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        self.connection.reply(&ServerFrame::Error {
            id: id.clone(),
            code: ErrorCode::RateLimited,
            message: format!("too many requests; retry in {ms} ms"),
            retry_after_ms: Some(ms),
        });
        false
    }

    /// Handles one decoded frame from the socket.
    pub async fn handle(&mut self, frame: ClientFrame) {
        if !self.admit(&frame.id, limits::cost(&frame.request)) {
            return;
        }
        let ClientFrame { id, request } = frame;
        let engine = &self.engine;
        let conn = &self.connection;
        let result = match request {
            ClientRequest::Auth { .. } => {
                Err(engine::Failure::new(ErrorCode::BadRequest, "already authenticated"))
            }
            ClientRequest::Chat { client_id, agent_id, content, session_id } => {
                engine.chat(conn, ChatRequest { client_id, agent_id, content, session_id }).await
            }
            ClientRequest::History { session_id, before_seq, limit } => {
                engine.history(conn, id.clone(), session_id, before_seq, limit).await
            }
            ClientRequest::Resume { sessions } => {
                self.resume.plan(engine, conn, id.clone(), sessions).await
            }
            ClientRequest::Sessions => engine.sessions(conn, id.clone()).await,
            ClientRequest::Abort { session_id, run_id } => {
                engine.abort(conn, id.clone(), session_id, run_id).await
            }
            ClientRequest::Heartbeat => {
                // An answer to the relay's own heartbeat is not answered again.
                if !crate::protocol::answers_server_heartbeat(id.as_deref()) {
                    conn.reply(&ServerFrame::Heartbeat { id: id.clone() });
                }
                Ok(())
            }
            ClientRequest::Subscribe { topics } => {
                engine.set_topics(conn, Engine::topics_after(conn, &topics, true)).await
            }
            ClientRequest::Unsubscribe { topics } => {
                engine.set_topics(conn, Engine::topics_after(conn, &topics, false)).await
            }
        };
        if let Err(failure) = result {
            conn.reply(&failure.frame(id));
        }
    }

    /// Queues a reply the transport produced itself (e.g. `auth_extended`).
    pub fn reply(&self, frame: &ServerFrame) {
        self.connection.reply(frame);
    }

    /// Answers a frame that could not be decoded (or a binary frame) with an `error`.
    pub fn reply_error(&self, id: Option<String>, code: ErrorCode, message: String) {
        self.connection.reply(&ServerFrame::Error { id, code, message, retry_after_ms: None });
    }
}

impl Drop for UserSession {
    fn drop(&mut self) {
        self.engine.connections.detach(&self.connection);
        self.engine.bus.leave_user(self.connection.principal().user_id);
    }
}
