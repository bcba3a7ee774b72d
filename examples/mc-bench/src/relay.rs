//! The relay under test: a child process serving `mc-server`'s app on a store, with users
//! assigned to one agent; in this process, its echo gateway (OpenClaw frames: `res`, one
//! `delta`, `final`, written in one go) and the users' closed loop (`chat` → `ack` → `chunk` →
//! the stored reply).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use mc_core::auth::Principal;
use mc_core::auth::{AuthConfig, JwtKey, NewAccount, PasswordParams, Passwords};
use mc_core::bus::InProcessBus;
use mc_core::relay::{Relay, RelayLimits};
use mc_core::{
    Assignment, AssignmentRole, OrgId, Organization, Role, Services, Store, User, UserId,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use mc_core::protocol::{GatewayToRelay, RelayToGateway, decode_relay_frame};
use mc_openclaw::chat::{ChatSendParams, ChatSendResult, SendStatus, TranscriptMessage};
use mc_openclaw::method::{ChatSend, Method};
use mc_openclaw::{ChatEvent, ChatState, Event, Frame, Response};

use super::procs::until_stdin_closes;

/// A client socket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The password of the users a sign-in storm signs in with.
pub const STORM_PASSWORD: &str = "storm-password-1";

/// What the relay child is told.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayChild {
    /// Users to create (load and idle users).
    #[arg(long)]
    pub users: usize,
    /// Users for a sign-in storm, with OWASP-strength password hashes.
    #[arg(long, default_value_t = 0)]
    pub storm_users: usize,
    /// The store's URL (default: a SQLite file in a temporary directory).
    #[arg(long)]
    pub database: Option<String>,
    /// SQLite's synchronous setting: `normal` or `full`.
    #[arg(long, default_value = "normal")]
    pub synchronous: String,
    /// The page cache of each SQLite connection, KiB (the store's default when absent).
    #[arg(long)]
    pub sqlite_cache_kib: Option<u32>,
    /// PostgreSQL's write lanes (the store's default when absent).
    #[arg(long)]
    pub pg_write_lanes: Option<usize>,
    /// Run as one of several instances on this Redis (`mc-bench instances`).
    #[arg(long)]
    pub redis: Option<String>,
    /// This instance's id on the bus.
    #[arg(long, default_value = "bench")]
    pub instance_id: String,
    /// The JWT secret, hex (instances that share users share it); random by default.
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// Gateways to register (one echo agent each; every user is assigned to all of them).
    /// Each is printed as `GATEWAY <id> <relay token> <agent id>`.
    #[arg(long, default_value_t = 1)]
    pub gateways: usize,
    /// Create nothing: serve the accounts another instance created (prints `READY <base>`).
    #[arg(long)]
    pub join: bool,
}

fn hex_secret(hex: &str) -> anyhow::Result<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--jwt-secret: not hex");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(Into::into))
        .collect()
}

/// How the bench opens a relay's store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// SQLite's synchronous setting: `normal` or `full`.
    pub synchronous: String,
    /// SQLite's page cache per connection, KiB.
    pub sqlite_cache_kib: Option<u32>,
    /// PostgreSQL's write lanes.
    pub pg_write_lanes: Option<usize>,
}

/// Opens the store at `url` (a `postgres://` URL or a SQLite one).
pub async fn open_store(url: &str, options: &StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    Ok(if url.starts_with("postgres") {
        let mut pg = mc_store_postgres::PgStoreOptions::from_url(url)?;
        if let Some(lanes) = options.pg_write_lanes {
            pg = pg.write_lanes(lanes);
        }
        Arc::new(mc_store_postgres::PgStore::connect_with(pg).await?)
    } else {
        let sync = match options.synchronous.as_str() {
            "full" => mc_store_sqlite::Synchronous::Full,
            _ => mc_store_sqlite::Synchronous::Normal,
        };
        let mut sqlite = mc_store_sqlite::SqliteStoreOptions::new(url).synchronous(sync);
        if let Some(kib) = options.sqlite_cache_kib {
            sqlite = sqlite.page_cache_kib(kib);
        }
        Arc::new(mc_store_sqlite::SqliteStore::open_with(sqlite).await?)
    })
}

/// The relay's limits under load: no rate limit.
fn bench_limits() -> RelayLimits {
    RelayLimits::default()
        .with_rate_per_sec(0)
        .with_rate_burst(0)
        .with_heartbeat_interval(Duration::from_secs(3600))
}

/// The sockets' settings under load: every benchmark client comes from 127.0.0.1.
fn bench_http() -> mc_transport_ws::server::HttpConfig {
    mc_transport_ws::server::HttpConfig::default()
        .with_max_connections(60_000)
        .with_max_unauthenticated(60_000)
        .with_max_unauthenticated_per_ip(60_000)
}

// The benchmark relay's set-up, top to bottom (store, services, bus, accounts, gateways, the
// lines the parent reads): one script of steps, in the order the parent expects their output.
/// Serves a relay; prints `TOKEN …` lines, `GATEWAY …` lines, then `READY <base> <org>
/// <gateway_id> <relay_token> <agent_id>` (the first gateway).
pub async fn serve(child: RelayChild) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url =
        child.database.unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display()));
    let store = open_store(
        &url,
        &StoreOptions {
            synchronous: child.synchronous.clone(),
            sqlite_cache_kib: child.sqlite_cache_kib,
            pg_write_lanes: child.pg_write_lanes,
        },
    )
    .await?;
    let secret = match &child.jwt_secret {
        Some(hex) => hex_secret(hex)?,
        None => crate::random_bytes::<32>()?.to_vec(),
    };
    // Cheap hashes for the load users (created here); the storm users get real ones below.
    let auth = AuthConfig::new(JwtKey::new(secret)?).password_params(PasswordParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    });
    let services = Services::builder(store.clone(), auth).build()?;
    let bus: Arc<dyn mc_core::bus::Bus> = match &child.redis {
        Some(url) => Arc::new(
            mc_bus_redis::RedisBus::connect(
                mc_bus_redis::RedisBusConfig::new(url).with_instance_id(&child.instance_id),
            )
            .await?,
        ),
        None => Arc::new(InProcessBus::new()),
    };
    if child.join {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let relay = Relay::new(services, bus, bench_limits());
        let app = mc_transport_ws::server::app_with(relay, bench_http());
        println!("READY http://{}", listener.local_addr()?);
        tokio::spawn(mc_transport_ws::server::serve(listener, app, std::future::pending()));
        return until_stdin_closes().await;
    }
    let now = services.clock().now();
    // A fresh organization per run, so a database reused across runs holds each run's
    // accounts apart.
    let org_id = OrgId::new();
    let org = Organization { id: org_id, name: format!("bench-{org_id}"), created_at: now };
    store.create_org(&org).await?;
    let admin = Principal { user_id: UserId::new(), organization_id: org.id, role: Role::Admin };
    let mut gateways = vec![];
    for g in 0..child.gateways.max(1) {
        let issued =
            services.registry().create_registration_token(&admin, None, None, None).await?;
        let registration = services
            .registry()
            .register(
                mc_core::registry::GatewayRegistration {
                    organization_id: org.id,
                    registration_token: issued.secret,
                    name: format!("bench-gw-{g}"),
                    url: None,
                    workspace_root: None,
                    version: None,
                    capabilities: vec![],
                    agents: Some(vec![mc_core::AgentReport {
                        agent_key: "main".into(),
                        name: "Echo".into(),
                    }]),
                    relay_token: None,
                },
                None,
            )
            .await?;
        let agent = store.list_gateway_agents(registration.gateway_id).await?.remove(0);
        gateways.push((registration, agent));
    }
    let (registration, agent) = &gateways[0];
    let mut out = std::io::stdout().lock();
    for i in 0..child.users {
        let account = NewAccount {
            username: format!("user{i}"),
            password: "bench-password".into(),
            ..Default::default()
        };
        let user = services.auth().create_account(org.id, account, "mc-bench").await?;
        for (_, agent) in &gateways {
            let assignment = Assignment {
                user_id: user.id,
                agent_id: agent.id,
                role: AssignmentRole::User,
                board_name: None,
                assigned_by: None,
                assigned_at: now,
            };
            store.create_assignment(&assignment).await?;
        }
        let principal = Principal { user_id: user.id, organization_id: org.id, role: Role::Member };
        writeln!(out, "TOKEN {}", services.auth().tokens().issue(&principal, None, now)?.token)?;
    }
    if child.storm_users > 0 {
        // One OWASP-strength hash, shared: every sign-in of the storm verifies at full cost.
        let hash = Passwords::new(PasswordParams::default(), 1)?.hash(STORM_PASSWORD).await?;
        for i in 0..child.storm_users {
            let user = User {
                username: format!("storm{i}"),
                password_hash: hash.clone(),
                ..mc_core::testing::fixtures::user(org.id)
            };
            store.create_user(&user).await?;
        }
    }
    for (registration, agent) in &gateways {
        writeln!(
            out,
            "GATEWAY {} {} {}",
            registration.gateway_id, registration.relay_token, agent.id
        )?;
    }
    let relay = Relay::new(services, bus, bench_limits());
    let app = mc_transport_ws::server::app_with(relay, bench_http());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    writeln!(
        out,
        "READY http://{} {} {} {} {}",
        listener.local_addr()?,
        org.name,
        registration.gateway_id,
        registration.relay_token,
        agent.id
    )?;
    out.flush()?;
    drop(out);
    tokio::spawn(mc_transport_ws::server::serve(listener, app, std::future::pending()));
    until_stdin_closes().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(_))) | None => bail!("socket closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// An authenticated user socket.
pub async fn user_socket(base: &str, token: &str) -> anyhow::Result<Ws> {
    let url = format!("{}/ws/chat", base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let auth = json!({ "type": "auth", "payload": { "token": token } }).to_string();
    ws.send(Message::Text(auth.into())).await?;
    let ok = next_text(&mut ws).await?;
    if !ok.starts_with(r#"{"type":"auth_ok""#) {
        bail!("authentication failed: {ok}");
    }
    Ok(ws)
}

/// The echo gateway: answers `chat.send` like OpenClaw (`res`, then the reply "Echo: <message>"
/// in `deltas` deltas, the first carrying the cumulative snapshot, then `final`), the frames
/// of one answer written with one flush.
pub async fn echo_gateway(
    base: &str,
    gateway_id: &str,
    relay_token: &str,
    deltas: super::round_trips::Deltas,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let url = format!("{}/ws/gateway/{gateway_id}/relay", base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let auth = GatewayToRelay::Auth { relay_token: relay_token.into() };
    ws.send(Message::Text(auth.to_json().into())).await?;
    if !matches!(decode_relay_frame(&next_text(&mut ws).await?), Ok(RelayToGateway::AuthOk { .. }))
    {
        bail!("the echo gateway was refused");
    }
    Ok(tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        // Pings are answered by tungstenite as the stream is read; only text frames matter.
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else { continue };
            let Ok(RelayToGateway::OpenClaw(Frame::Request(request))) = decode_relay_frame(&text)
            else {
                continue;
            };
            if request.method != ChatSend::NAME {
                continue;
            }
            let Ok(params) = request.params_of::<ChatSend>() else { continue };
            let deltas = deltas.load(std::sync::atomic::Ordering::Relaxed).max(1);
            for frame in echo_answer(&request.id, &params, deltas) {
                if sink.feed(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    }))
}

/// The frames answering one `chat.send`: the `res`, the deltas, the `final`.
fn echo_answer(id: &str, params: &ChatSendParams, deltas: usize) -> Vec<String> {
    let run = params.idempotency_key.as_str();
    let key = params.session_key.as_str();
    let reply = format!("Echo: {}", params.message);
    let started = ChatSendResult::new(run, SendStatus::Started);
    let mut frames = Vec::with_capacity(deltas + 2);
    if let Ok(response) = Response::of::<ChatSend>(id, &started) {
        frames.push(Frame::Response(response).to_json());
    }
    let mut events = vec![];
    for (i, piece) in pieces(&reply, deltas).into_iter().enumerate() {
        let mut delta = ChatEvent::new(run, key, ChatState::Delta);
        delta.seq = Some(i as u64 + 1);
        if i == 0 {
            delta.message = Some(TranscriptMessage::assistant(piece));
        }
        delta.delta_text = Some(piece.to_owned());
        events.push(delta);
    }
    let mut done = ChatEvent::new(run, key, ChatState::Final);
    done.seq = Some(events.len() as u64 + 1);
    done.message = Some(TranscriptMessage::assistant(reply.as_str()));
    events.push(done);
    for event in events {
        if let Ok(frame) = Event::frame(event) {
            frames.push(Frame::Event(frame).to_json());
        }
    }
    frames
}

/// `text` cut into `n` pieces of about equal length (their lengths differ by at most one
/// character), on character boundaries; as many pieces as characters when it has fewer.
pub fn pieces(text: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let count = n.max(1).min(bounds.len());
    let (base, extra) = (bounds.len() / count.max(1), bounds.len() % count.max(1));
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    for k in 0..count {
        let chars = base + usize::from(k < extra);
        let end = bounds.get(start + chars).copied().unwrap_or(text.len());
        out.push(&text[bounds[start]..end]);
        start += chars;
    }
    out
}

/// One closed-loop run: `sockets`' users each send `messages` chats, one at a time, waiting
/// for the stored reply. Returns the sockets for the next run.
pub async fn run(
    sockets: Vec<(Ws, Option<String>)>,
    agent: &str,
    messages: usize,
) -> anyhow::Result<(Vec<Duration>, Duration, Vec<(Ws, Option<String>)>)> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut ws, mut session)) in sockets.into_iter().enumerate() {
        let agent = agent.to_owned();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            let mut phases = [Duration::ZERO; 3];
            for m in 0..messages {
                let t = Instant::now();
                let frame = super::chat_frame(i, m, Some((&agent, session.as_deref())));
                ws.send(Message::Text(frame.into())).await?;
                let (mut acked, mut chunked) = (t, t);
                loop {
                    let text = next_text(&mut ws).await?;
                    if text.starts_with(r#"{"type":"ack""#) {
                        acked = Instant::now();
                        if session.is_none() {
                            let v: Value = serde_json::from_str(&text)?;
                            session = v["payload"]["session_id"].as_str().map(str::to_owned);
                        }
                    } else if text.starts_with(r#"{"type":"chunk""#) {
                        chunked = Instant::now();
                    } else if text.starts_with(r#"{"type":"chat""#)
                        && text.contains(r#""role":"agent""#)
                    {
                        break;
                    } else if text.starts_with(r#"{"type":"error""#) {
                        bail!("relay error: {text}");
                    }
                }
                let done = Instant::now();
                phases[0] += acked - t;
                phases[1] += chunked.saturating_duration_since(acked);
                phases[2] += done - chunked.max(acked);
                latencies.push(done - t);
            }
            PHASES.with_phases(phases);
            anyhow::Ok((latencies, (ws, session)))
        });
    }
    let mut latencies = vec![];
    let mut sockets = vec![];
    while let Some(done) = tasks.join_next().await {
        let (l, s) = done??;
        latencies.extend(l);
        sockets.push(s);
    }
    Ok((latencies, started.elapsed(), sockets))
}

/// Where a round trip's time goes, summed over every user: until the `ack`, from it to the
/// `chunk`, from the chunk to the stored reply.
pub struct Phases(std::sync::Mutex<[Duration; 3]>);

impl Phases {
    fn with_phases(&self, add: [Duration; 3]) {
        let mut total = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (t, a) in total.iter_mut().zip(add) {
            *t += a;
        }
    }

    /// Takes the sums so far, as fractions of their total.
    pub fn take(&self) -> [f64; 3] {
        let mut total = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let sum: f64 = total.iter().map(Duration::as_secs_f64).sum::<f64>().max(1e-9);
        let out = total.map(|d| d.as_secs_f64() / sum);
        *total = [Duration::ZERO; 3];
        out
    }
}

/// The phases of the runs so far.
pub static PHASES: Phases = Phases(std::sync::Mutex::new([Duration::ZERO; 3]));

/// `n` sign-ins at once of the storm users, over HTTP; the time they all took.
pub async fn sign_in_storm(base: &str, org: &str, n: usize) -> anyhow::Result<Duration> {
    let http = testkit::http_client();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (http, url, org) = (http.clone(), format!("{base}/api/v1/auth/login"), org.to_owned());
        tasks.spawn(async move {
            let body = json!({ "organization": org, "username": format!("storm{i}"), "password": STORM_PASSWORD });
            let status = http.post(url).json(&body).send().await?.status();
            anyhow::ensure!(status.is_success(), "sign-in answered {status}");
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Resident memory per idle authenticated socket: opens `n` sockets of the `tokens`' users
/// (8 per user at most) and compares the relay's RSS before and after.
pub async fn idle_bytes_per_socket(
    base: &str,
    tokens: &[String],
    n: usize,
    rss_kib: impl Fn() -> u64,
) -> anyhow::Result<(u64, u64, f64)> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib();
    let mut held = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while held.len() < n {
        while pending.len() < 200 && next < n {
            let token = tokens[next / super::SOCKETS_PER_IDLE_USER].clone();
            let base = base.to_owned();
            pending.spawn(async move { user_socket(&base, &token).await });
            next += 1;
        }
        if let Some(done) = pending.join_next().await {
            held.push(done??);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    drop(held);
    Ok((before, after, after.saturating_sub(before) as f64 * 1024.0 / n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_cut_into_pieces_of_about_equal_length() {
        assert_eq!(pieces("Echo: hi", 3), ["Ech", "o: ", "hi"]);
        assert_eq!(pieces(&"x".repeat(101), 20).len(), 20, "exactly n pieces");
        assert_eq!(pieces(&"x".repeat(101), 20).concat(), "x".repeat(101));
        assert_eq!(pieces("Echo: hi", 1), ["Echo: hi"]);
        assert_eq!(pieces("ab", 20), ["a", "b"]);
        assert_eq!(pieces("héé", 2), ["hé", "é"]);
        assert_eq!(pieces("", 3), Vec::<&str>::new());
    }
}
