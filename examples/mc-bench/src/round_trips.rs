//! `mc-bench` round trips: the same closed loop against the relay, its floor, `nats-server`
//! and a bare echo server, interleaved, with every run's CPU per round trip; once per
//! workload of `--deltas` (each reply streamed in that many pieces: 1 and 20 by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use serde_json::{Value, json};

use super::RelayProcess;
use super::figures::{CpuMeter, RunFigures, ratios};
use super::procs::ChildProcess;
use super::relay::Ws;
use super::{Args, SOCKETS_PER_IDLE_USER, echo, nats, relay, start_relay};

/// How many pieces each reply streams in, shared with the gateways and the responder.
pub type Deltas = Arc<AtomicUsize>;

/// Every system, started once, its connections open.
struct Systems {
    relay: RelayProcess,
    floor: ChildProcess,
    nats: Option<nats::NatsServer>,
    echo: ChildProcess,
    echo_url: String,
    sockets: Vec<(Ws, Option<String>)>,
    floor_sockets: Vec<(Ws, Option<String>)>,
    deltas: Deltas,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The median run of each system for one workload.
struct Medians {
    deltas: usize,
    relay: RunFigures,
    floor: RunFigures,
    nats: Option<RunFigures>,
    echo: RunFigures,
    runs: [Vec<RunFigures>; 4],
}

/// Runs the round-trip benchmark (`mc-bench` without a subcommand).
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let mut systems = start(args).await?;
    let mut workloads = Vec::new();
    for &deltas in &args.deltas {
        workloads.push(measure(&mut systems, args, deltas.max(1)).await?);
    }
    let phases = relay::PHASES.take();
    let idle = match args.idle {
        0 => None,
        n => Some(
            relay::idle_bytes_per_socket(
                &systems.relay.base,
                &systems.relay.tokens[args.users..],
                n,
                || systems.relay.process.rss_kib(),
            )
            .await?,
        ),
    };
    if args.json {
        let report: Vec<Value> = workloads.iter().map(Medians::json).collect();
        let idle = idle.map(|i| i.2);
        println!(
            "{}",
            json!({ "users": args.users, "messages": args.messages, "runs": args.runs,
            "workloads": report, "idle_sockets": args.idle, "idle_bytes_per_socket": idle })
        );
        return Ok(());
    }
    let db = args.database.as_deref().unwrap_or("SQLite file");
    println!(
        "{} users x {} messages, median of {} runs; relay on {db} (synchronous={}), every message stored before its ack",
        args.users, args.messages, args.runs, args.synchronous
    );
    for workload in &workloads {
        workload.print();
    }
    println!(
        "relay round trip: {:.0}% until the ack (stored, handed over), {:.0}% ack to chunk (the gateway), {:.0}% chunk to the stored reply",
        phases[0] * 100.0,
        phases[1] * 100.0,
        phases[2] * 100.0
    );
    println!("summary:");
    for w in &workloads {
        let nats = w.nats.as_ref().map_or_else(String::new, |n| {
            format!(", relay / nats {:.2}x", w.relay.round_trips_per_sec / n.round_trips_per_sec)
        });
        let floor = w.relay.round_trips_per_sec / w.floor.round_trips_per_sec;
        println!("  {:>2} deltas: relay / floor {floor:.2}x{nats}", w.deltas);
    }
    if let Some((before, after, per)) = idle {
        println!(
            "idle: {} authenticated sockets, relay RSS {before} -> {after} KiB = {per:.0} bytes per socket",
            args.idle
        );
    }
    Ok(())
}

/// Starts every system and opens its users' connections.
async fn start(args: &Args) -> anyhow::Result<Systems> {
    let deltas: Deltas = Arc::new(AtomicUsize::new(1));
    let idle_users = args.idle.div_ceil(SOCKETS_PER_IDLE_USER);
    let relay = start_relay(args, args.users + idle_users, 0)?;
    let gateway =
        relay::echo_gateway(&relay.base, &relay.gateway_id, &relay.relay_token, deltas.clone())
            .await?;
    let mut sockets = Vec::with_capacity(args.users);
    for token in &relay.tokens[..args.users] {
        sockets.push((relay::user_socket(&relay.base, token).await?, None));
    }
    let mut floor = ChildProcess::itself(&["serve-floor".into()])?;
    let floor_base = floor.line()?.strip_prefix("READY ").context("floor READY")?.to_owned();
    let floor_gateway = relay::echo_gateway(&floor_base, "floor", "floor", deltas.clone()).await?;
    let mut floor_sockets = Vec::with_capacity(args.users);
    for _ in 0..args.users {
        floor_sockets.push((relay::user_socket(&floor_base, "floor").await?, None));
    }
    let nats = if args.no_nats { None } else { Some(nats::start().await?) };
    let mut tasks = vec![gateway, floor_gateway];
    if let Some(server) = &nats {
        tasks.push(nats::responder(&server.url, deltas.clone()).await?);
    }
    let mut echo = ChildProcess::itself(&["serve-echo".into()])?;
    let echo_url = echo.line()?.strip_prefix("READY ").context("echo READY")?.to_owned();
    Ok(Systems {
        relay,
        floor,
        nats,
        echo,
        echo_url,
        sockets,
        floor_sockets,
        deltas,
        _tasks: tasks,
    })
}

/// One workload: every system warmed up, then `runs` interleaved runs of each.
async fn measure(s: &mut Systems, args: &Args, deltas: usize) -> anyhow::Result<Medians> {
    s.deltas.store(deltas, Ordering::SeqCst);
    let agent = s.relay.agent.clone();
    let warm = (args.messages / 10).max(5);
    s.sockets = relay::run(std::mem::take(&mut s.sockets), &agent, warm).await?.2;
    s.floor_sockets = relay::run(std::mem::take(&mut s.floor_sockets), &agent, warm).await?.2;
    if let Some(server) = &s.nats {
        nats::run(&server.url, args.users, warm, deltas).await?;
    }
    echo::run(&s.echo_url, args.users, warm).await?;

    let on_postgres = args.database.as_deref().is_some_and(|d| d.starts_with("postgres"));
    let relay_cpu = CpuMeter { server: s.relay.process.pid(), database: on_postgres };
    let floor_cpu = CpuMeter { server: s.floor.pid(), database: false };
    let nats_cpu = s.nats.as_ref().map(|n| CpuMeter { server: n.process.pid(), database: false });
    let echo_cpu = CpuMeter { server: s.echo.pid(), database: false };
    let mut runs: [Vec<RunFigures>; 4] = Default::default();
    for _ in 0..args.runs.max(1) {
        let before = relay_cpu.read();
        let (latencies, elapsed, back) =
            relay::run(std::mem::take(&mut s.sockets), &agent, args.messages).await?;
        s.sockets = back;
        let peak = s.relay.process.peak_rss_kib();
        runs[0].push(relay_cpu.figures(before, latencies, elapsed, peak));

        let before = floor_cpu.read();
        let (latencies, elapsed, back) =
            relay::run(std::mem::take(&mut s.floor_sockets), &agent, args.messages).await?;
        s.floor_sockets = back;
        runs[1].push(floor_cpu.figures(before, latencies, elapsed, s.floor.peak_rss_kib()));

        if let (Some(server), Some(meter)) = (&s.nats, &nats_cpu) {
            let before = meter.read();
            let (latencies, elapsed) =
                nats::run(&server.url, args.users, args.messages, deltas).await?;
            runs[2].push(meter.figures(before, latencies, elapsed, server.process.peak_rss_kib()));
        }

        let before = echo_cpu.read();
        let (latencies, elapsed) = echo::run(&s.echo_url, args.users, args.messages).await?;
        runs[3].push(echo_cpu.figures(before, latencies, elapsed, s.echo.peak_rss_kib()));
    }
    Ok(Medians {
        deltas,
        relay: RunFigures::median(runs[0].clone()).context("no relay run")?,
        floor: RunFigures::median(runs[1].clone()).context("no floor run")?,
        nats: RunFigures::median(runs[2].clone()),
        echo: RunFigures::median(runs[3].clone()).context("no echo run")?,
        runs,
    })
}

impl Medians {
    fn systems(&self) -> Vec<(&'static str, &RunFigures)> {
        [
            Some(("relay", &self.relay)),
            Some(("floor", &self.floor)),
            self.nats.as_ref().map(|n| ("nats", n)),
            Some(("echo", &self.echo)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn print(&self) {
        println!("\n-- each reply in {} delta(s) --", self.deltas);
        println!("{}", RunFigures::header());
        for (name, figures) in self.systems() {
            println!("{}", figures.row(name));
        }
        if let Some(n) = &self.nats {
            println!("relay / nats: {}", ratios(&self.relay, n));
            println!("floor / nats: {}", ratios(&self.floor, n));
        }
        println!("relay / floor: {}", ratios(&self.relay, &self.floor));
        println!("relay / echo: {}", ratios(&self.relay, &self.echo));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!(
            "CPU per round trip, everything on this machine's {cores} cores (CPU-bound: the rt/s they could give at that cost):"
        );
        println!("{}", RunFigures::cpu_header());
        for (name, figures) in self.systems() {
            println!("{}", figures.cpu_row(name, cores));
        }
        let each = |runs: &[RunFigures]| {
            let rates: Vec<String> =
                runs.iter().map(|r| format!("{:.0}", r.round_trips_per_sec)).collect();
            rates.join(", ")
        };
        let [relay, floor, nats, echo] = &self.runs;
        println!(
            "runs (rt/s): relay {}; floor {}; nats {}; echo {}",
            each(relay),
            each(floor),
            each(nats),
            each(echo)
        );
    }

    fn json(&self) -> Value {
        let [relay, floor, nats, echo] = &self.runs;
        json!({ "deltas": self.deltas, "relay": self.relay, "floor": self.floor, "nats": self.nats,
            "echo": self.echo, "all_runs": { "relay": relay, "floor": floor, "nats": nats, "echo": echo } })
    }
}
