//! `mc-bench`: relay throughput, latency and memory, against a bare WebSocket echo baseline
//! (SPEC §15).
//!
//! ```sh
//! cargo run --release -p examples --bin mc-bench -- --users 100 --messages 50 --idle 10000
//! ```
//!
//! It starts two child processes (itself, with hidden subcommands): a relay on a SQLite file in
//! a temporary directory, and a plain tokio-tungstenite echo server. In this process run the
//! echo gateway (linked to the relay like any gateway) and the clients. It reports, for the
//! relay and the baseline: round trips per second, latency p50/p99/max, the server process's
//! CPU seconds and peak RSS; then the relay's resident memory per idle authenticated socket.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use mc_core::auth::{AuthConfig, JwtKey, NewAccount, PasswordParams};
use mc_core::{
    Assignment, AssignmentRole, InProcessBus, OrgId, Organization, Principal, Relay, RelayLimits,
    Role, Services, Store,
};
use mc_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Benchmark the relay against a bare WebSocket echo server")]
struct Args {
    /// Concurrent users.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Messages each user sends (one at a time, waiting for the reply).
    #[arg(long, default_value_t = 50)]
    messages: usize,
    /// Idle authenticated sockets to hold for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// The relay's database: a SQLite file in a temporary directory by default; or
    /// `sqlite::memory:`, or a `postgres://` URL.
    #[arg(long)]
    database: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    child: Option<ChildRole>,
}

#[derive(Subcommand)]
enum ChildRole {
    /// (internal) Run the relay for the benchmark.
    #[command(hide = true)]
    ServeRelay {
        #[arg(long)]
        users: usize,
        #[arg(long)]
        database: Option<String>,
    },
    /// (internal) Run the baseline echo server.
    #[command(hide = true)]
    ServeEcho,
}

const PER_USER_SOCKETS: usize = 8;

// Same allocator as mc-server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.child {
        Some(ChildRole::ServeRelay { users, database }) => {
            runtime.block_on(serve_relay(users, database))
        }
        Some(ChildRole::ServeEcho) => runtime.block_on(serve_echo()),
        None => runtime.block_on(bench(&args)),
    }
}

/// Serves a relay; prints `TOKEN …` lines then `READY <base> <gateway_id> <relay_token> <agent_id>`.
async fn serve_relay(users: usize, database: Option<String>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = database.unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display()));
    let store: Arc<dyn Store> = if url.starts_with("postgres") {
        Arc::new(mc_store_postgres::PgStore::connect(&url).await?)
    } else {
        Arc::new(SqliteStore::open(&url).await?)
    };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("{e}"))?;
    let auth = AuthConfig::new(JwtKey::new(secret.to_vec())?).password_params(PasswordParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    });
    let relay = Services::builder(store.clone(), auth).build()?;
    let now = relay.clock().now();
    // A fresh organization per run, so a database reused across runs holds each
    // run's accounts apart instead of colliding on the organization's name.
    let org_id = OrgId::new();
    let org = Organization { id: org_id, name: format!("bench-{org_id}"), created_at: now };
    store.create_org(&org).await?;
    let admin =
        Principal { user_id: mc_core::UserId::new(), organization_id: org.id, role: Role::Admin };
    let issued = relay.registry().create_registration_token(&admin, None, None, None).await?;
    let registration = relay
        .registry()
        .register(
            mc_core::registry::GatewayRegistration {
                organization_id: org.id,
                registration_token: issued.secret,
                name: "bench-gw".into(),
                url: None,
                workspace_root: None,
                version: None,
                capabilities: vec![],
                agents: Some(vec![mc_core::AgentReport {
                    agent_key: "main".into(),
                    name: "Echo".into(),
                }]),
            },
            None,
        )
        .await?;
    let agent = store.list_gateway_agents(registration.gateway_id).await?.remove(0);
    let mut out = std::io::stdout().lock();
    for i in 0..users {
        let account = NewAccount {
            username: format!("user{i}"),
            password: "bench-password".into(),
            ..Default::default()
        };
        let user = relay.auth().create_account(org.id, account, "mc-bench").await?;
        let assignment = Assignment {
            user_id: user.id,
            agent_id: agent.id,
            role: AssignmentRole::User,
            board_name: None,
            assigned_by: None,
            assigned_at: now,
        };
        store.create_assignment(&assignment).await?;
        let principal = Principal { user_id: user.id, organization_id: org.id, role: Role::Member };
        writeln!(out, "TOKEN {}", relay.auth().tokens().issue(&principal, None, now)?.token)?;
    }
    let limits = RelayLimits::default()
        .rate_per_sec(0)
        .rate_burst(0)
        .max_connections(60_000)
        .heartbeat_interval(Duration::from_secs(3600));
    let relay = Relay::new(relay, Arc::new(InProcessBus::new()), limits);
    let app = mc_transport_ws::server::app(relay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    writeln!(
        out,
        "READY http://{} {} {} {}",
        listener.local_addr()?,
        registration.gateway_id,
        registration.relay_token,
        agent.id
    )?;
    out.flush()?;
    drop(out);
    tokio::spawn(mc_transport_ws::server::serve(listener, app, std::future::pending()));
    // Serve until the parent closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    })
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A bare WebSocket echo server: the baseline.
async fn serve_echo() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("READY ws://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    })
    .await?;
    Ok(())
}

struct ChildProcess {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl ChildProcess {
    fn start(args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("start a child process")?;
        let lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        Ok(Self { child, lines })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self) -> anyhow::Result<String> {
        Ok(self.lines.next().context("the child exited")??)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Reads a field (in KiB) of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

#[derive(Debug, Default, serde::Serialize)]
struct RunFigures {
    round_trips: usize,
    seconds: f64,
    round_trips_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_cpu_seconds: f64,
    server_peak_rss_kib: u64,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration, cpu: f64, peak: u64) -> RunFigures {
    latencies.sort();
    let q = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    RunFigures {
        round_trips: latencies.len(),
        seconds: elapsed.as_secs_f64(),
        round_trips_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: q(1.0),
        server_cpu_seconds: cpu,
        server_peak_rss_kib: peak,
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(_))) | None => bail!("socket closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

async fn user_socket(base: &str, token: &str) -> anyhow::Result<Ws> {
    let url = format!("{}/ws/chat", base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    ws.send(Message::Text(
        json!({ "type": "auth", "payload": { "token": token } }).to_string().into(),
    ))
    .await?;
    let ok = next_json(&mut ws).await?;
    if ok["type"] != "auth_ok" {
        bail!("authentication failed: {ok}");
    }
    Ok(ws)
}

/// The echo gateway: answers `chat.send` like OpenClaw (`res`, one delta, `final`).
async fn echo_gateway(
    base: &str,
    gateway_id: &str,
    relay_token: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let url = format!("{}/ws/gateway/{gateway_id}/relay", base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    ws.send(Message::Text(
        json!({ "type": "auth", "payload": { "relay_token": relay_token } }).to_string().into(),
    ))
    .await?;
    if next_json(&mut ws).await?["type"] != "auth_ok" {
        bail!("the echo gateway was refused");
    }
    Ok(tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        while let Some(Ok(Message::Text(text))) = stream.next().await {
            let Ok(req) = serde_json::from_str::<Value>(&text) else { continue };
            if req["type"] != "req" || req["method"] != "chat.send" {
                continue;
            }
            let p = &req["params"];
            let (run, key) = (p["idempotencyKey"].clone(), p["sessionKey"].clone());
            let reply = format!("Echo: {}", p["message"].as_str().unwrap_or_default());
            let message =
                json!({ "role": "assistant", "content": [{ "type": "text", "text": reply }] });
            let frames = [
                json!({ "type": "res", "id": req["id"], "ok": true, "payload": { "runId": run, "status": "started" } }),
                json!({ "type": "event", "event": "chat", "payload": { "runId": run, "sessionKey": key, "seq": 1, "state": "delta", "deltaText": reply, "message": message } }),
                json!({ "type": "event", "event": "chat", "payload": { "runId": run, "sessionKey": key, "seq": 2, "state": "final", "message": message } }),
            ];
            for frame in frames {
                if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }))
}

async fn relay_run(
    base: &str,
    agent: &str,
    tokens: &[String],
    messages: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let mut sockets = Vec::with_capacity(tokens.len());
    for token in tokens {
        sockets.push(user_socket(base, token).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let agent = agent.to_owned();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            let mut session: Option<String> = None;
            for m in 0..messages {
                let t = Instant::now();
                let id = uuid::Uuid::now_v7().to_string();
                let mut payload =
                    json!({ "agent_id": agent, "content": format!("user {i} message {m}") });
                if let Some(s) = &session {
                    payload["session_id"] = json!(s);
                }
                ws.send(Message::Text(
                    json!({ "type": "chat", "id": id, "payload": payload }).to_string().into(),
                ))
                .await?;
                loop {
                    let frame = next_json(&mut ws).await?;
                    match frame["type"].as_str() {
                        Some("ack") => {
                            session = frame["payload"]["session_id"].as_str().map(str::to_owned)
                        }
                        Some("chat") if frame["payload"]["role"] == "agent" => break,
                        Some("error") => bail!("relay error: {frame}"),
                        _ => {}
                    }
                }
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    Ok((join_latencies(tasks).await?, started.elapsed()))
}

/// Every user's round-trip latencies, once all users are done; the first failure wins.
async fn join_latencies(
    mut tasks: tokio::task::JoinSet<anyhow::Result<Vec<Duration>>>,
) -> anyhow::Result<Vec<Duration>> {
    let mut all = vec![];
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

async fn baseline_run(
    url: &str,
    users: usize,
    messages: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let mut sockets = Vec::with_capacity(users);
    for _ in 0..users {
        sockets.push(tokio_tungstenite::connect_async_with_config(url, None, true).await?.0);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            for m in 0..messages {
                let t = Instant::now();
                let frame = json!({ "type": "chat", "id": uuid::Uuid::now_v7().to_string(), "payload": { "content": format!("user {i} message {m}") } });
                ws.send(Message::Text(frame.to_string().into())).await?;
                let _echo = next_json(&mut ws).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    Ok((join_latencies(tasks).await?, started.elapsed()))
}

async fn bench(args: &Args) -> anyhow::Result<()> {
    // The load users, then idle users with at most 8 sockets each.
    let users_needed = args.users + args.idle.div_ceil(PER_USER_SOCKETS);
    let mut child_args = vec!["serve-relay".to_owned(), "--users".into(), users_needed.to_string()];
    if let Some(db) = &args.database {
        child_args.extend(["--database".to_owned(), db.clone()]);
    }
    let mut relay = ChildProcess::start(&child_args)?;
    let mut tokens = vec![];
    let ready = loop {
        let line = relay.line()?;
        if let Some(token) = line.strip_prefix("TOKEN ") {
            tokens.push(token.to_owned());
        } else if let Some(ready) = line.strip_prefix("READY ") {
            break ready.to_owned();
        }
    };
    let parts: Vec<&str> = ready.split_whitespace().collect();
    let [base, gateway_id, relay_token, agent] = parts[..] else {
        bail!("bad READY line: {ready}")
    };
    let _gateway = echo_gateway(base, gateway_id, relay_token).await?;

    let cpu0 = cpu_seconds(relay.pid());
    let (latencies, elapsed) = relay_run(base, agent, &tokens[..args.users], args.messages).await?;
    let relay_figures = figures(
        latencies,
        elapsed,
        cpu_seconds(relay.pid()) - cpu0,
        status_kib(relay.pid(), "VmHWM:"),
    );

    let mut echo = ChildProcess::start(&["serve-echo".into()])?;
    let echo_url = echo.line()?.strip_prefix("READY ").context("echo READY")?.to_owned();
    let cpu0 = cpu_seconds(echo.pid());
    let (latencies, elapsed) = baseline_run(&echo_url, args.users, args.messages).await?;
    let base_figures = figures(
        latencies,
        elapsed,
        cpu_seconds(echo.pid()) - cpu0,
        status_kib(echo.pid(), "VmHWM:"),
    );
    drop(echo);

    let mut idle_per_socket = None;
    if args.idle > 0 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = status_kib(relay.pid(), "VmRSS:");
        let mut held = Vec::with_capacity(args.idle);
        let mut pending = tokio::task::JoinSet::new();
        let mut next = 0;
        while held.len() < args.idle {
            while pending.len() < 200 && next < args.idle {
                let token = tokens[args.users + next / PER_USER_SOCKETS].clone();
                let base = base.to_owned();
                pending.spawn(async move { user_socket(&base, &token).await });
                next += 1;
            }
            if let Some(done) = pending.join_next().await {
                held.push(done??);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = status_kib(relay.pid(), "VmRSS:");
        idle_per_socket = Some((
            before,
            after,
            (after.saturating_sub(before)) as f64 * 1024.0 / args.idle as f64,
        ));
        drop(held);
    }

    let ratio = relay_figures.round_trips_per_sec / base_figures.round_trips_per_sec;
    if args.json {
        let report = json!({
            "users": args.users, "messages": args.messages,
            "relay": relay_figures, "baseline": base_figures, "relay_to_baseline": ratio,
            "idle_sockets": args.idle,
            "idle_bytes_per_socket": idle_per_socket.map(|i| i.2),
        });
        println!("{report}");
    } else {
        let line = |name: &str, f: &RunFigures| {
            println!(
                "{name:9} {:>6} round trips in {:>6.2} s = {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  server CPU {:>5.2} s  peak RSS {:>7} KiB",
                f.round_trips,
                f.seconds,
                f.round_trips_per_sec,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.server_cpu_seconds,
                f.server_peak_rss_kib
            )
        };
        let db = args.database.as_deref().unwrap_or("SQLite file");
        println!(
            "{} users x {} messages (relay: {db}, echo gateway; baseline: bare WebSocket echo)",
            args.users, args.messages
        );
        line("relay", &relay_figures);
        line("baseline", &base_figures);
        println!("relay/baseline throughput: {ratio:.2}");
        if let Some((before, after, per)) = idle_per_socket {
            println!(
                "idle: {} authenticated sockets, relay RSS {before} -> {after} KiB = {per:.0} bytes per socket",
                args.idle
            );
        }
    }
    Ok(())
}
