//! `mc-bench`: the relay measured against the floor and the bar, side by side in one run
//! (BENCHMARKS.md).
//!
//! - `mc-bench` (round trips, [`round_trips`]): `users` clients in a closed loop, each sending
//!   a chat and waiting for the answer, against four systems on the same 2 cores — the relay
//!   (its own process; every message stored before its ack; the echo gateway answering with
//!   OpenClaw frames), the floor ([`floor`]: the relay's frames and nothing else), a
//!   `nats-server` over WebSocket (request/reply through one responder, nothing stored), and a
//!   bare tokio-tungstenite echo server (one hop, nothing stored). Each system runs `runs`
//!   times, interleaved; the median run of each is reported with the ratios between them, and
//!   every run's CPU per round trip (server, its SQLite writer thread, PostgreSQL, this
//!   process). Optionally the relay's memory per idle authenticated socket.
//! - `mc-bench store`: durable appends per second through the group-commit writer.
//! - `mc-bench storm`: the relay's chat p99 while 200 users sign in at once (Argon2id at OWASP
//!   strength), against its quiet p99.
//! - `mc-bench instances`: round trips through one instance against round trips that cross
//!   two (users on one, the gateway on the other, over Redis), in one run on PostgreSQL, with
//!   Redis's and PostgreSQL's CPU per 1 000 round trips per second.
//! - `mc-bench soak`: users chatting and reconnecting at random for minutes while the
//!   gateway's link drops every minute; every acked message must be stored once, every history
//!   gapless; the relay's RSS from start to end.

pub mod echo;
pub mod figures;
pub mod floor;
pub mod instances;
pub mod nats;
pub mod procs;
pub mod relay;
pub mod round_trips;
pub mod soak;
pub mod store;

use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};
use serde_json::json;

use figures::{CpuMeter, RunFigures};
use procs::ChildProcess;

/// Idle users hold this many sockets each (the per-user limit).
pub const SOCKETS_PER_IDLE_USER: usize = 8;

/// `mc-bench`'s command line.
#[derive(Parser)]
#[command(
    about = "Benchmark the relay against its floor, nats-server and a bare WebSocket echo server"
)]
pub struct Args {
    /// Concurrent users.
    #[arg(long, default_value_t = 64, global = true)]
    pub users: usize,
    /// Messages each user sends per run (one at a time, waiting for the reply).
    #[arg(long, default_value_t = 200, global = true)]
    pub messages: usize,
    /// Runs per system (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Idle authenticated sockets to hold for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// The relay's database: a SQLite file in a temporary directory by default; or
    /// `sqlite::memory:`, or a `postgres://` URL.
    #[arg(long, global = true)]
    pub database: Option<String>,
    /// SQLite's synchronous setting for the relay's file: `normal` (default) or `full`.
    #[arg(long, default_value = "normal", global = true)]
    pub synchronous: String,
    /// The page cache of each of the relay's SQLite connections, KiB (the store's default
    /// when absent: 32 MiB per reader, 64 MiB for the writer).
    #[arg(long, global = true)]
    pub sqlite_cache_kib: Option<u32>,
    /// How many batches the relay's writer commits at once on PostgreSQL (the store's default
    /// when absent).
    #[arg(long, global = true)]
    pub pg_write_lanes: Option<usize>,
    /// Skip the NATS row (when `nats-server` is not installed).
    #[arg(long)]
    pub no_nats: bool,
    /// How many streamed pieces each reply comes in (the gateway's deltas; NATS's responder
    /// publishes as many messages before its answer): one round-trip workload per value,
    /// comma-separated; the other benchmarks use the first.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 20], global = true)]
    pub deltas: Vec<usize>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to measure (round trips when absent).
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Args {
    /// The first workload's deltas, as the benchmarks other than round trips use it.
    pub fn first_deltas(&self) -> round_trips::Deltas {
        let first = self.deltas.first().copied().unwrap_or(1).max(1);
        std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(first))
    }

    /// How the relay's store is opened.
    fn store_options(&self) -> relay::StoreOptions {
        relay::StoreOptions {
            synchronous: self.synchronous.clone(),
            sqlite_cache_kib: self.sqlite_cache_kib,
            pg_write_lanes: self.pg_write_lanes,
        }
    }
}

/// What to run.
#[derive(Subcommand)]
pub enum Command {
    /// Durable appends per second through the group-commit writer.
    Store {
        /// Concurrent appenders.
        #[arg(long, default_value_t = 64)]
        writers: usize,
        /// Messages in all.
        #[arg(long, default_value_t = 200_000)]
        total: usize,
    },
    /// Chat p99 during a sign-in storm, against quiet p99.
    Storm {
        /// Sign-ins at once.
        #[arg(long, default_value_t = 200)]
        sign_ins: usize,
    },
    /// Users chatting and reconnecting while the gateway's link drops every minute; checks
    /// that nothing acked is lost or duplicated.
    Soak {
        /// How long.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Seconds between the gateway's drops.
        #[arg(long, default_value_t = 60)]
        drop_every_secs: u64,
    },
    /// Round trips within one instance against round trips across two, on PostgreSQL + a
    /// private Redis (needs `--database postgres://…` and `redis-server`).
    Instances,
    /// (internal) Run the relay for the benchmark.
    #[command(hide = true)]
    ServeRelay(relay::RelayChild),
    /// (internal) Run the baseline echo server.
    #[command(hide = true)]
    ServeEcho,
    /// (internal) Run the relay's floor: its frames, nothing stored.
    #[command(hide = true)]
    ServeFloor,
}

/// The chat frame user `i` sends as message `m` (to `agent`, in `session` if known).
pub fn chat_frame(i: usize, m: usize, to: Option<(&str, Option<&str>)>) -> String {
    let id = uuid::Uuid::now_v7();
    let content = format!("user {i} message {m}");
    match to {
        Some((agent, Some(session))) => json!({ "type": "chat", "id": id, "payload": { "agent_id": agent, "content": content, "session_id": session } }),
        Some((agent, None)) => json!({ "type": "chat", "id": id, "payload": { "agent_id": agent, "content": content } }),
        None => json!({ "type": "chat", "id": id, "payload": { "content": content } }),
    }
    .to_string()
}

/// Runs `mc-bench`.
pub async fn main(args: Args) -> anyhow::Result<()> {
    match &args.command {
        Some(Command::ServeRelay(child)) => relay::serve(child.clone()).await,
        Some(Command::ServeEcho) => echo::serve().await,
        Some(Command::ServeFloor) => floor::serve().await,
        Some(Command::Store { writers, total }) => store_bench(&args, *writers, *total).await,
        Some(Command::Storm { sign_ins }) => storm(&args, *sign_ins).await,
        Some(Command::Soak { minutes, drop_every_secs }) => {
            soak_run(&args, *minutes, Duration::from_secs(*drop_every_secs)).await
        }
        Some(Command::Instances) => instances::run(&args).await,
        None => round_trips::run(&args).await,
    }
}

/// A relay child and what it printed.
pub struct RelayProcess {
    process: ChildProcess,
    tokens: Vec<String>,
    /// Every gateway: (id, relay token, agent id).
    gateways: Vec<(String, String, String)>,
    base: String,
    org: String,
    gateway_id: String,
    relay_token: String,
    agent: String,
}

fn start_relay(args: &Args, users: usize, storm_users: usize) -> anyhow::Result<RelayProcess> {
    start_relay_with(args, users, storm_users, &[])
}

fn start_relay_with(
    args: &Args,
    users: usize,
    storm_users: usize,
    extra: &[String],
) -> anyhow::Result<RelayProcess> {
    let mut child_args = vec![
        "serve-relay".to_owned(),
        "--users".into(),
        users.to_string(),
        "--storm-users".into(),
        storm_users.to_string(),
        "--synchronous".into(),
        args.synchronous.clone(),
    ];
    if let Some(db) = &args.database {
        child_args.extend(["--database".to_owned(), db.clone()]);
    }
    if let Some(kib) = args.sqlite_cache_kib {
        child_args.extend(["--sqlite-cache-kib".to_owned(), kib.to_string()]);
    }
    if let Some(lanes) = args.pg_write_lanes {
        child_args.extend(["--pg-write-lanes".to_owned(), lanes.to_string()]);
    }
    child_args.extend_from_slice(extra);
    let mut process = ChildProcess::itself(&child_args)?;
    let mut tokens = vec![];
    let mut gateways = vec![];
    let ready = loop {
        let line = process.line()?;
        if let Some(token) = line.strip_prefix("TOKEN ") {
            tokens.push(token.to_owned());
        } else if let Some(gateway) = line.strip_prefix("GATEWAY ") {
            let parts: Vec<&str> = gateway.split_whitespace().collect();
            let [id, token, agent] = parts[..] else { bail!("bad GATEWAY line: {gateway}") };
            gateways.push((id.to_owned(), token.to_owned(), agent.to_owned()));
        } else if let Some(ready) = line.strip_prefix("READY ") {
            break ready.to_owned();
        }
    };
    let parts: Vec<&str> = ready.split_whitespace().collect();
    let [base, org, gateway_id, relay_token, agent] = parts[..] else {
        bail!("bad READY line: {ready}")
    };
    Ok(RelayProcess {
        base: base.into(),
        org: org.into(),
        gateway_id: gateway_id.into(),
        relay_token: relay_token.into(),
        agent: agent.into(),
        process,
        tokens,
        gateways,
    })
}

async fn store_bench(args: &Args, writers: usize, total: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mc-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("store.db").display()));
    let store = relay::open_store(&url, &args.store_options()).await?;
    let lanes = store.write_lanes();
    let on_postgres = url.starts_with("postgres");
    let cpu = CpuMeter { server: std::process::id(), database: on_postgres };
    let before = cpu.read();
    let figures = store::run(store, writers, total).await?;
    let after = cpu.read();
    let (own, writer, database) = (after.0 - before.0, after.1 - before.1, after.3 - before.3);
    let _ = std::fs::remove_dir_all(&dir);
    let db = if on_postgres { "PostgreSQL" } else { "SQLite file" };
    if args.json {
        println!(
            "{}",
            json!({ "database": db, "writers": writers, "write_lanes": lanes, "figures": figures,
                    "process_cpu_seconds": own, "writer_thread_cpu_seconds": writer,
                    "database_cpu_seconds": database })
        );
    } else {
        let per = |seconds: f64| seconds * 1e6 / figures.messages.max(1) as f64;
        println!(
            "store ({db}, synchronous={}, {lanes} write lane(s)): {} appends by {writers} writers in {:.2} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms; CPU per append: this process {:.1} µs (its SQLite writer thread {:.1}), PostgreSQL {:.1} µs",
            args.synchronous,
            figures.messages,
            figures.seconds,
            figures.messages_per_sec,
            figures.p50_ms,
            figures.p99_ms,
            per(own),
            per(writer),
            per(database),
        );
    }
    Ok(())
}

async fn soak_run(args: &Args, minutes: u64, drop_every: Duration) -> anyhow::Result<()> {
    let relay = start_relay(args, args.users, 0)?;
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(minutes * 60);
    let gateway = tokio::spawn(soak::flapping_gateway(
        relay.base.clone(),
        relay.gateway_id.clone(),
        relay.relay_token.clone(),
        drop_every,
        deadline,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut users = tokio::task::JoinSet::new();
    for (i, token) in relay.tokens[..args.users].iter().enumerate() {
        let (base, token, agent) = (relay.base.clone(), token.clone(), relay.agent.clone());
        users.spawn(async move { (i, soak::user(base, token, agent, i, deadline).await) });
    }
    // RSS once the load runs (after 30 s), then every 30 s.
    let (mut rss, mut anon) = (vec![], vec![]);
    while std::time::Instant::now() + Duration::from_secs(30) < deadline {
        tokio::time::sleep(Duration::from_secs(30)).await;
        rss.push(relay.process.rss_kib());
        anon.push(relay.process.anon_rss_kib());
    }
    let mut tallies: Vec<(usize, soak::UserTally)> = vec![];
    while let Some(done) = users.join_next().await {
        tallies.push(done?);
    }
    tallies.sort_by_key(|(i, _)| *i);
    let tallies: Vec<soak::UserTally> = tallies.into_iter().map(|(_, t)| t).collect();
    let drops = gateway.await?;
    let end_rss = relay.process.rss_kib();
    let end_anon = relay.process.anon_rss_kib();
    let check = soak::check(&relay.base, &relay.tokens[..args.users], &tallies).await?;
    let acked: usize = tallies.iter().map(|t| t.acked.len()).sum();
    let answered: usize = tallies.iter().map(|t| t.answered).sum();
    let mut errors: std::collections::BTreeMap<&str, usize> = Default::default();
    for (code, n) in tallies.iter().flat_map(|t| t.errors.iter()) {
        *errors.entry(code.as_str()).or_default() += n;
    }
    let reconnects: usize = tallies.iter().map(|t| t.reconnects).sum();
    let report = json!({
        "users": args.users, "minutes": minutes, "gateway_drops": drops,
        "acked": acked, "answered": answered, "errors": errors, "reconnects": reconnects,
        "stored": check.stored, "lost": check.lost, "duplicated": check.duplicated,
        "gapped_sessions": check.gapped,
        "rss_kib_first": rss.first().copied().unwrap_or(end_rss), "rss_kib_end": end_rss,
        "rss_kib_samples": rss.clone(),
        "anon_rss_kib_first": anon.first().copied().unwrap_or(end_anon), "anon_rss_kib_end": end_anon,
        "anon_rss_kib_samples": anon.clone(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "soak: {} users, {minutes} min, gateway dropped {drops}×, {reconnects} reconnects\n\
             acked {acked} (answered {answered}); errors by code {errors:?}; stored {} messages\n\
             lost {}, duplicated {}, sessions with gaps {}\n\
             relay RSS {} KiB after 30 s → {} KiB at the end (samples {:?})\n\
             of it anonymous (heap, stacks) {} KiB → {} KiB (samples {:?})",
            args.users,
            check.stored,
            check.lost,
            check.duplicated,
            check.gapped,
            report["rss_kib_first"],
            end_rss,
            rss,
            report["anon_rss_kib_first"],
            end_anon,
            anon,
        );
    }
    if check.lost + check.duplicated + check.gapped > 0 {
        bail!("the soak lost, duplicated or gapped messages");
    }
    Ok(())
}

async fn storm(args: &Args, sign_ins: usize) -> anyhow::Result<()> {
    let relay = start_relay(args, args.users, sign_ins)?;
    let _gateway = relay::echo_gateway(
        &relay.base,
        &relay.gateway_id,
        &relay.relay_token,
        args.first_deltas(),
    )
    .await?;
    let mut sockets = Vec::with_capacity(args.users);
    for token in &relay.tokens[..args.users] {
        sockets.push((relay::user_socket(&relay.base, token).await?, None));
    }
    sockets = relay::run(sockets, &relay.agent, 10).await?.2;
    let (quiet, elapsed, back) = relay::run(sockets, &relay.agent, args.messages).await?;
    let quiet = RunFigures::new(quiet, elapsed, 0.0, 0);
    // The same load while the storm runs: as many messages as fit in the storm's duration.
    let storm = relay::sign_in_storm(&relay.base, &relay.org, sign_ins);
    let chats = async {
        let mut all = vec![];
        let mut sockets = back;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let (latencies, _, back) = relay::run(sockets, &relay.agent, 10).await?;
            sockets = back;
            all.extend(latencies);
            if STORM_DONE.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
        anyhow::Ok((all, started.elapsed()))
    };
    let storm = async {
        let took = storm.await;
        STORM_DONE.store(true, std::sync::atomic::Ordering::SeqCst);
        took
    };
    let (took, chats) = tokio::join!(storm, chats);
    let took = took?;
    let (during, elapsed) = chats?;
    let during = RunFigures::new(during, elapsed, 0.0, 0);
    if args.json {
        println!(
            "{}",
            json!({ "sign_ins": sign_ins, "storm_seconds": took.as_secs_f64(), "quiet": quiet, "during": during, "p99_ratio": during.p99_ms / quiet.p99_ms })
        );
    } else {
        println!(
            "{sign_ins} sign-ins at once took {:.2} s ({:.0}/s); chat p99 quiet {:.2} ms, during the storm {:.2} ms ({:.2}x; p50 {:.2} -> {:.2} ms, {:.0} -> {:.0} rt/s)",
            took.as_secs_f64(),
            sign_ins as f64 / took.as_secs_f64(),
            quiet.p99_ms,
            during.p99_ms,
            during.p99_ms / quiet.p99_ms,
            quiet.p50_ms,
            during.p50_ms,
            quiet.round_trips_per_sec,
            during.round_trips_per_sec
        );
    }
    Ok(())
}

static STORM_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(bytes)
}
