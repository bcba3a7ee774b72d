//! Load and memory figures for the relay, printed (run with `--nocapture`), never asserted
//! as timings: the assertions are about correctness under load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ChatFixture;
use common::ws::{Client, Mode};
use mc_core::Store;
use mc_core::relay::RelayLimits;
use mc_store_sqlite::SqliteStore;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0
}

/// 100 users × 50 messages through one gateway, the store a SQLite file (WAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_users_fifty_messages_each() {
    const USERS: usize = 100;
    const MESSAGES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("load.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    let f = ChatFixture::on(store, RelayLimits::default().with_rate_per_sec(0).with_rate_burst(0))
        .await;
    let _gw = f.gateway(Mode::Quick).await;
    let mut tokens = vec![];
    for i in 0..USERS {
        tokens.push(f.another_user(&format!("load{i}")).await.1);
    }
    let mut clients = vec![];
    for token in &tokens {
        clients.push(Client::authed(&f.s.base, token).await.0);
    }

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let agent = f.agent_id.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(MESSAGES);
            let mut session: Option<String> = None;
            for m in 0..MESSAGES {
                let t = Instant::now();
                let content = format!("user {i} message {m}");
                let ack = client.chat(&agent, &content, session.as_deref()).await;
                session = Some(ack["payload"]["session_id"].as_str().unwrap().to_owned());
                let (reply, _) = client.until("chat").await;
                assert_eq!(reply["payload"]["content"], format!("Echo: {content}"));
                latencies.push(t.elapsed());
            }
            (session.unwrap(), latencies)
        });
    }
    let mut sessions = vec![];
    let mut latencies = vec![];
    while let Some(done) = tasks.join_next().await {
        let (session, l) = done.unwrap();
        sessions.push(session);
        latencies.extend(l);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    for session in &sessions {
        let history = f.history(session).await;
        let seqs: Vec<u64> = history.iter().map(|h| h.0).collect();
        assert_eq!(seqs, (1..=(2 * MESSAGES) as u64).collect::<Vec<_>>(), "gapless history");
    }
    let total = USERS * MESSAGES;
    println!(
        "relay load: {USERS} users x {MESSAGES} messages = {total} round trips (ack + streamed reply stored) \
         in {:.2} s = {:.0} round trips/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (SQLite file, debug build)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}

/// Runs a relay in this process for [`idle_connection_memory`], which starts the test binary
/// again with `--ignored --exact child_relay_server`. Not a test on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for idle_connection_memory"]
async fn child_relay_server() {
    let users: usize =
        std::env::var("MC_CHILD_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if users == 0 {
        return;
    }
    let limits = RelayLimits::default().with_heartbeat_interval(Duration::from_secs(3600));
    let http = common::HttpConfig::default()
        .with_max_connections(20_000)
        .with_max_unauthenticated_per_ip(20_000);
    let f = ChatFixture::with(limits, http).await;
    let mut out = std::io::stdout().lock();
    for i in 0..users {
        let user = f.s.create_user(f.s.org.id, &format!("idle{i}"), mc_core::Role::Member).await;
        let principal = mc_core::auth::Principal {
            user_id: user.id,
            organization_id: f.s.org.id,
            role: mc_core::Role::Member,
        };
        let token =
            f.s.services
                .auth()
                .tokens()
                .issue(&principal, None, mc_core::Clock::now(f.s.clock.as_ref()))
                .unwrap()
                .token;
        writeln!(out, "TOKEN {token}").unwrap();
    }
    writeln!(out, "READY {}", f.s.base).unwrap();
    out.flush().unwrap();
    drop(out);
    // Serve until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    })
    .await;
}

/// 10 000 idle authenticated sockets on a relay in another process; prints its resident
/// memory per socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_memory() {
    const SOCKETS: usize = 10_000;
    const PER_USER: usize = 8;
    const WARM: usize = 50;
    let users = (SOCKETS + WARM).div_ceil(PER_USER) + 1;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_relay_server", "--nocapture", "--test-threads", "1"])
        .env("MC_CHILD_USERS", users.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut tokens = vec![];
    let base = loop {
        let line = lines.next().expect("the child relay starts").unwrap();
        // (libtest may print the test's name before the first line.)
        if let Some(at) = line.find("TOKEN ") {
            tokens.push(line[at + 6..].to_owned());
        } else if let Some(at) = line.find("READY ") {
            break line[at + 6..].to_owned();
        }
    };
    // Warm up (first connections allocate the runtime's and allocator's pools), then measure.
    let mut warm = vec![];
    for i in 0..WARM {
        warm.push(Client::authed(&base, &tokens[i % tokens.len()]).await.0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);

    let started = Instant::now();
    let mut sockets: Vec<Client> = Vec::with_capacity(SOCKETS);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while sockets.len() < SOCKETS {
        while pending.len() < 200 && next < SOCKETS {
            let token = tokens[(next + WARM) % tokens.len()].clone();
            let base = base.clone();
            pending.spawn(async move { Client::authed(&base, &token).await.0 });
            next += 1;
        }
        sockets.push(pending.join_next().await.unwrap().unwrap());
    }
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / SOCKETS as f64;
    println!(
        "idle sockets: {SOCKETS} authenticated in {:.2} s; relay RSS {before} KiB -> {after} KiB: {:.0} bytes ({:.2} KiB) per idle socket (debug build)",
        connect_time.as_secs_f64(),
        per,
        per / 1024.0
    );
    drop(sockets);
    drop(warm);
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
}
