//! A real relay HTTP server on 127.0.0.1:0 over an in-memory SQLite store, with a manual
//! clock, and a small JSON client for it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::TimeDelta;
use mc_core::auth::{AuthConfig, JwtKey, PasswordParams};
use mc_core::bus::InProcessBus;
use mc_core::registry::RegistryConfig;
use mc_core::relay::{Relay, RelayLimits};
use mc_core::*;
use mc_store_sqlite::SqliteStore;
pub use mc_transport_ws::server::HttpConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";
pub const PASSWORD: &str = "correct horse battery";

/// Cheap Argon2 parameters so most tests run fast; timing tests use the OWASP defaults.
pub fn cheap_passwords() -> PasswordParams {
    PasswordParams { memory_kib: 1024, iterations: 1, parallelism: 1 }
}

pub struct TestServer {
    pub base: String,
    pub services: Services,
    pub relay: Relay,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub org: Organization,
    pub admin: User,
    pub admin_token: String,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|c| c.password_params(cheap_passwords())).await
    }

    pub async fn start_with(configure: impl FnOnce(AuthConfig) -> AuthConfig) -> Self {
        Self::start_full(configure, RegistryConfig::default()).await
    }

    pub async fn start_full(
        configure: impl FnOnce(AuthConfig) -> AuthConfig,
        registry: RegistryConfig,
    ) -> Self {
        Self::start_relay(configure, registry, RelayLimits::default()).await
    }

    pub async fn start_relay(
        configure: impl FnOnce(AuthConfig) -> AuthConfig,
        registry: RegistryConfig,
        limits: RelayLimits,
    ) -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        Self::start_on(store, configure, registry, limits, HttpConfig::default()).await
    }

    pub async fn start_on(
        store: Arc<dyn Store>,
        configure: impl FnOnce(AuthConfig) -> AuthConfig,
        registry: RegistryConfig,
        limits: RelayLimits,
        http: HttpConfig,
    ) -> Self {
        let clock = Arc::new(ManualClock::starting_now());
        let auth = configure(AuthConfig::new(JwtKey::new(SECRET).unwrap()));
        let services =
            Services::builder(store, auth).clock(clock.clone()).registry(registry).build().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let relay = Relay::new(services.clone(), Arc::new(InProcessBus::new()), limits);
        let app = mc_transport_ws::server::app_with(relay.clone(), http);
        tokio::spawn(mc_transport_ws::server::serve(listener, app, std::future::pending()));

        let org = Organization { id: OrgId::new(), name: "acme".into(), created_at: clock.now() };
        services.store().create_org(&org).await.unwrap();
        let mut server = Self {
            base,
            services,
            relay,
            clock,
            http: {
                // reqwest has no TLS provider of its own here (see testkit::http_client).
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::new()
            },
            org,
            admin: dummy_user(),
            admin_token: String::new(),
        };
        let admin = server.create_user(server.org.id, "admin", Role::Admin).await;
        server.admin_token =
            server.login_ok("admin", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
        server.admin = admin;
        server
    }

    /// A user created straight in the store, with password [`PASSWORD`].
    pub async fn create_user(&self, org: OrgId, username: &str, role: Role) -> User {
        let now = self.clock.now();
        let user = User {
            id: UserId::new(),
            organization_id: org,
            username: username.into(),
            email: None,
            phone: None,
            password_hash: self.services.auth().passwords().hash(PASSWORD).await.unwrap(),
            display_name: None,
            avatar_url: None,
            role,
            status: UserStatus::Active,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        };
        self.services.store().create_user(&user).await.unwrap();
        user
    }

    /// A gateway with one agent in `org`, created straight in the store.
    pub async fn create_agent(&self, org: OrgId) -> Agent {
        let now = self.clock.now();
        let gateway = Gateway {
            id: GatewayId::new(),
            organization_id: org,
            name: format!("gw-{}", uuid::Uuid::now_v7().simple()),
            url: None,
            workspace_root: None,
            version: None,
            capabilities: vec![],
            status: GatewayStatus::Online,
            relay_token_hash: SecretHash::of("relay"),
            last_heartbeat_at: None,
            connection_info: ConnectionInfo::default(),
            auto_registered: true,
            created_at: now,
            updated_at: now,
        };
        self.services.store().create_gateway(&gateway).await.unwrap();
        let agent = Agent {
            id: AgentId::new(),
            gateway_id: gateway.id,
            agent_key: "main".into(),
            name: "Main".into(),
            status: AgentStatus::Active,
            created_at: now,
        };
        self.services.store().create_agent(&agent).await.unwrap();
        agent
    }

    /// Assigns an agent to a user, straight in the store.
    pub async fn assign(&self, user: UserId, agent: AgentId) {
        let assignment = Assignment {
            user_id: user,
            agent_id: agent,
            role: AssignmentRole::User,
            board_name: None,
            assigned_by: None,
            assigned_at: self.clock.now(),
        };
        self.services.store().create_assignment(&assignment).await.unwrap();
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_response(request.send().await.unwrap()).await
    }

    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .bearer_auth(&self.admin_token)
            .body(body);
        into_response(request.send().await.unwrap()).await
    }

    /// A registration token issued through the API; returns its secret.
    pub async fn registration_token(&self, body: Value) -> String {
        let r = self.post("/api/v1/registration-tokens", Some(&self.admin_token), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Registers a gateway through the API; returns the answer's body.
    pub async fn register_gateway(&self, token: &str, name: &str, agents: Value) -> Response {
        self.reregister_gateway(token, name, agents, None).await
    }

    /// Registers a gateway, proving it holds `relay_token` when given (a name it has).
    pub async fn reregister_gateway(
        &self,
        token: &str,
        name: &str,
        agents: Value,
        relay_token: Option<&str>,
    ) -> Response {
        let mut body = json!({
            "organization_id": self.org.id,
            "registration_token": token,
            "name": name,
            "version": "2026.9.6",
            "capabilities": ["chat"],
            "agents": agents,
        });
        if let Some(relay_token) = relay_token {
            body["relay_token"] = json!(relay_token);
        }
        self.post("/api/v1/gateway-registry/register", None, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.send(Method::PATCH, path, Some(token), Some(body)).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        let body = json!({ "organization": "acme", "username": username, "password": password });
        self.post("/api/v1/auth/login", None, body).await
    }

    pub async fn login_ok(&self, username: &str, password: &str) -> Value {
        let r = self.login(username, password).await;
        assert_eq!(r.status, StatusCode::OK, "login {username}: {}", r.body);
        r.body
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post("/api/v1/auth/refresh", None, json!({ "refresh_token": refresh_token })).await
    }
}

async fn into_response(response: reqwest::Response) -> Response {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Response { status, headers, body }
}

fn dummy_user() -> User {
    let now = SystemClock.now();
    User {
        id: UserId::new(),
        organization_id: OrgId::new(),
        username: String::new(),
        email: None,
        phone: None,
        password_hash: String::new(),
        display_name: None,
        avatar_url: None,
        role: Role::Member,
        status: UserStatus::Active,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    }
}

/// Median of durations in milliseconds.
pub fn median_ms(samples: &mut [std::time::Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

pub mod engine;
pub mod ws;

/// A relay with one registered gateway (agent `main`) and a user `alice` assigned to it.
pub struct ChatFixture {
    pub s: TestServer,
    pub gateway_id: String,
    pub relay_token: String,
    pub agent_id: String,
    pub user: User,
    pub token: String,
}

impl ChatFixture {
    pub async fn new() -> Self {
        Self::with_limits(RelayLimits::default()).await
    }

    pub async fn with_limits(limits: RelayLimits) -> Self {
        Self::with(limits, HttpConfig::default()).await
    }

    /// A fixture whose sockets follow `http`.
    pub async fn with_http(http: HttpConfig) -> Self {
        Self::with(RelayLimits::default(), http).await
    }

    pub async fn with(limits: RelayLimits, http: HttpConfig) -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
        Self::on_with(store, limits, http).await
    }

    pub async fn on(store: Arc<dyn Store>, limits: RelayLimits) -> Self {
        Self::on_with(store, limits, HttpConfig::default()).await
    }

    pub async fn on_with(store: Arc<dyn Store>, limits: RelayLimits, http: HttpConfig) -> Self {
        let s = TestServer::start_on(
            store,
            |c| c.password_params(cheap_passwords()),
            RegistryConfig::default(),
            limits,
            http,
        )
        .await;
        let reg = s.registration_token(json!({})).await;
        let r =
            s.register_gateway(&reg, "gw", json!([{ "agent_key": "main", "name": "Main" }])).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let gateway_id = r.body["gateway_id"].as_str().unwrap().to_owned();
        let relay_token = r.body["relay_token"].as_str().unwrap().to_owned();
        let gw: GatewayId = gateway_id.parse().unwrap();
        let agent = s.services.store().list_gateway_agents(gw).await.unwrap().remove(0);
        let user = s.create_user(s.org.id, "alice", Role::Member).await;
        s.assign(user.id, agent.id).await;
        let token =
            s.login_ok("alice", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
        Self { s, gateway_id, relay_token, agent_id: agent.id.to_string(), user, token }
    }

    pub async fn gateway(&self, mode: ws::Mode) -> ws::TestGateway {
        let gw =
            ws::TestGateway::connect(&self.s.base, &self.gateway_id, &self.relay_token, mode).await;
        // Linked once the relay marks it online.
        for _ in 0..200 {
            if self.s.relay.gateway_count() > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        gw
    }

    pub async fn client(&self) -> (ws::Client, Value) {
        ws::Client::authed(&self.s.base, &self.token).await
    }

    /// Another user of the organization, assigned to the agent; returns their token.
    pub async fn another_user(&self, name: &str) -> (User, String) {
        let user = self.s.create_user(self.s.org.id, name, Role::Member).await;
        self.s.assign(user.id, self.agent_id.parse().unwrap()).await;
        let token =
            self.s.login_ok(name, PASSWORD).await["access_token"].as_str().unwrap().to_owned();
        (user, token)
    }

    /// Stored messages of a session, in order: (seq, role, content).
    pub async fn history(&self, session: &str) -> Vec<(u64, String, String)> {
        let page = self
            .s
            .services
            .store()
            .list_messages(session.parse().unwrap(), None, 500)
            .await
            .unwrap();
        page.messages.into_iter().map(|m| (m.seq, m.role.to_string(), m.content)).collect()
    }
}

/// The next relay event that is not an activity-feed entry (those accompany most changes).
pub fn next_event(events: &mut tokio::sync::broadcast::Receiver<RelayEvent>) -> RelayEvent {
    loop {
        match events.try_recv().expect("an event") {
            RelayEvent::Activity(_) => continue,
            other => return other,
        }
    }
}
