//! The relay engine driven directly, with no socket: an in-memory SQLite store holding one
//! user assigned to one agent, `UserSession`s standing for users' sockets, and a
//! `FrameLink` standing for a gateway's link, whose requests the test reads and answers the
//! way OpenClaw does (docs/openclaw.md). The answers are written by hand in each test: this is
//! the one test double here, because the cases (a link dropping mid-run, a gateway that
//! finished a run while the relay was away) must happen at exact points; the real OpenClaw
//! gateway is exercised by its own suite.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use mc_core::auth::Principal;
use mc_core::auth::{AuthConfig, JwtKey};
use mc_core::bus::{Bus, InProcessBus};
use mc_core::link::FrameLink;
use mc_core::link::LinkWrite;
use mc_core::protocol::{ClientFrame, ClientRequest};
use mc_core::relay::{Outgoing, Relay, RelayLimits, UserSession};
use mc_core::testing::fixtures::ChatWorld;
use mc_core::*;
use mc_openclaw::{ErrorShape, EventFrame, Payload, Response};
use mc_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen at once.
pub const SOON: Duration = Duration::from_secs(5);

/// A relay over a store with one user, one gateway, one agent.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub services: Services,
    pub relay: Relay,
    pub world: Arc<ChatWorld>,
}

impl Engine {
    /// A fresh store and a relay with `limits`.
    pub async fn new(limits: RelayLimits) -> Self {
        Self::with_bus(limits, Arc::new(InProcessBus::new())).await
    }

    /// A fresh store and a relay with `limits` on `bus`.
    pub async fn with_bus(limits: RelayLimits, bus: Arc<dyn Bus>) -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        let world = Arc::new(ChatWorld::create(&store).await);
        Self::on(store, world, limits, bus)
    }

    /// A relay on an existing store and world (a restart).
    pub fn on(
        store: Arc<dyn Store>,
        world: Arc<ChatWorld>,
        limits: RelayLimits,
        bus: Arc<dyn Bus>,
    ) -> Self {
        let auth = AuthConfig::new(
            JwtKey::new(b"engine-test-secret-engine-test-secret".to_vec()).unwrap(),
        );
        let services = Services::builder(store.clone(), auth).build().unwrap();
        let relay = Relay::new(services.clone(), bus, limits);
        Self { store, services, relay, world }
    }

    /// The same store and world with a new relay, as after a restart.
    pub fn restart(&self, limits: RelayLimits) -> Self {
        Self::on(self.store.clone(), self.world.clone(), limits, Arc::new(InProcessBus::new()))
    }

    pub fn gateway(&self) -> GatewayId {
        self.world.gateway.id
    }

    pub fn agent(&self) -> AgentId {
        self.world.agent.id
    }

    pub fn principal(&self) -> Principal {
        Principal {
            user_id: self.world.user.id,
            organization_id: self.world.org.id,
            role: self.world.user.role,
        }
    }

    /// A socket of the user.
    pub async fn connect(&self) -> UserSession {
        self.relay.connect_user(self.principal()).await.unwrap().0
    }

    /// A new link of the gateway.
    pub async fn link(&self) -> (FakeGateway, u64) {
        let gateway = FakeGateway::new();
        let generation =
            self.relay.attach_gateway(self.gateway(), gateway.link.clone()).await.unwrap();
        (gateway, generation)
    }

    /// The stored messages of a session: (seq, role, content, delivery).
    pub async fn history(
        &self,
        session: SessionId,
    ) -> Vec<(u64, String, String, Option<DeliveryState>)> {
        let page = self.store.list_messages(session, None, 200).await.unwrap();
        page.messages
            .into_iter()
            .map(|m| (m.seq, m.role.to_string(), m.content, m.delivery))
            .collect()
    }

    /// Sends the gateway's `chat` event for a run.
    pub async fn event(&self, run: &str, key: &str, state: &str, extra: Value) {
        let mut payload = json!({ "runId": run, "sessionKey": key, "state": state });
        payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        self.gateway_event("chat", payload).await;
    }

    /// Pushes the gateway event `name` with `payload`, as the gateway's link would.
    pub async fn gateway_event(&self, name: &str, payload: Value) {
        let frame = EventFrame::new(name, Payload::encode(&payload).unwrap());
        self.relay.gateway_event(self.gateway(), &frame).await;
    }
}

/// A gateway link whose frames the test reads and answers by hand.
pub struct FakeGateway {
    pub link: Arc<FrameLink>,
    out: mpsc::Receiver<LinkWrite>,
}

impl FakeGateway {
    pub fn new() -> Self {
        let (link, out) = FrameLink::new(64);
        Self { link: Arc::new(link), out }
    }

    /// The next request the relay sent.
    pub async fn request(&mut self) -> Value {
        match tokio::time::timeout(SOON, self.out.recv()).await.expect("a request").unwrap() {
            LinkWrite::Frame(text) => serde_json::from_str(&text).unwrap(),
            LinkWrite::Close(code) => panic!("link closed with {code}"),
        }
    }

    /// The next request of `method`, skipping others.
    pub async fn request_of(&mut self, method: &str) -> Value {
        loop {
            let req = self.request().await;
            if req["method"] == method {
                return req;
            }
        }
    }

    /// A request already sent, without waiting (after letting the relay run a moment).
    pub async fn try_request(&mut self) -> Option<Value> {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        match self.out.try_recv() {
            Ok(LinkWrite::Frame(text)) => Some(serde_json::from_str(&text).unwrap()),
            _ => None,
        }
    }

    pub fn answer(&self, request: &Value, payload: Value) {
        let id = request["id"].as_str().unwrap();
        self.link.resolve(Response::ok(id, Payload::encode(&payload).unwrap()));
    }

    pub fn refuse(&self, request: &Value, code: &str, message: &str) {
        let id = request["id"].as_str().unwrap();
        self.link.resolve(Response::error(id, ErrorShape::new(code, message)));
    }
}

/// The next frame the socket's writer gets (fails the test if the relay closes it instead).
pub async fn next_frame(session: &mut UserSession) -> Arc<str> {
    match session.next_outgoing().await {
        Outgoing::Frame(frame) => frame,
        Outgoing::Close(code) => panic!("the relay closed the socket with {code}"),
    }
}

/// The code the relay asks to close the socket with, if it does within `wait`.
pub async fn closed_within(session: &UserSession, wait: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(code) = session.connection().close_code() {
            return Some(code);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The next frame for the socket, skipping agent presence announcements.
pub async fn frame(session: &mut UserSession) -> Value {
    loop {
        let text = tokio::time::timeout(SOON, next_frame(session)).await.expect("a frame");
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] != "system" {
            return value;
        }
    }
}

/// The next frame of `kind`, with the frames before it.
pub async fn until(session: &mut UserSession, kind: &str) -> (Value, Vec<Value>) {
    let mut before = vec![];
    loop {
        let f = frame(session).await;
        if f["type"] == kind {
            return (f, before);
        }
        before.push(f);
    }
}

/// Frames already queued (after letting the relay run a moment), skipping `system` ones.
pub async fn queued(session: &mut UserSession) -> Vec<Value> {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    std::iter::from_fn(|| session.try_next_frame())
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .filter(|v| v["type"] != "system")
        .collect()
}

/// A `chat` frame with a fresh client id; returns it and the id.
pub fn chat(
    agent: AgentId,
    content: &str,
    session: Option<SessionId>,
) -> (ClientFrame, uuid::Uuid) {
    let client_id = uuid::Uuid::now_v7();
    (chat_with_id(client_id, agent, content, session), client_id)
}

/// A `chat` frame with a given client id.
pub fn chat_with_id(
    client_id: uuid::Uuid,
    agent: AgentId,
    content: &str,
    session: Option<SessionId>,
) -> ClientFrame {
    ClientFrame {
        id: Some(client_id.to_string()),
        request: ClientRequest::Chat {
            client_id,
            agent_id: agent,
            content: content.into(),
            session_id: session,
        },
    }
}

/// A request frame with an id.
pub fn request(id: &str, request: ClientRequest) -> ClientFrame {
    ClientFrame { id: Some(id.into()), request }
}

/// The cumulative assistant message OpenClaw puts in `delta` and `final` events.
pub fn text(t: &str) -> Value {
    json!({ "message": { "role": "assistant", "content": [{ "type": "text", "text": t }] } })
}

/// The run id and session key of a `chat.send`.
pub fn run_of(request: &Value) -> (String, String) {
    (
        request["params"]["idempotencyKey"].as_str().unwrap().to_owned(),
        request["params"]["sessionKey"].as_str().unwrap().to_owned(),
    )
}
