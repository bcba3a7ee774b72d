//! `mc-bench` round trips: the same closed loop against the relay, its floor, `nats-server`
//! and a bare echo server, interleaved, with every run's CPU per round trip.

use anyhow::Context;
use serde_json::json;

use super::figures::{CpuMeter, RunFigures, ratios};
use super::procs::ChildProcess;
use super::{Args, SOCKETS_PER_IDLE_USER, echo, nats, relay, start_relay};

/// Runs the round-trip benchmark (`mc-bench` without a subcommand).
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let idle_users = args.idle.div_ceil(SOCKETS_PER_IDLE_USER);
    let relay = start_relay(args, args.users + idle_users, 0)?;
    let _gateway =
        relay::echo_gateway(&relay.base, &relay.gateway_id, &relay.relay_token, args.deltas)
            .await?;
    let mut sockets = Vec::with_capacity(args.users);
    for token in &relay.tokens[..args.users] {
        sockets.push((relay::user_socket(&relay.base, token).await?, None));
    }
    let mut floor = ChildProcess::itself(&["serve-floor".into()])?;
    let floor_base = floor.line()?.strip_prefix("READY ").context("floor READY")?.to_owned();
    let _floor_gateway = relay::echo_gateway(&floor_base, "floor", "floor", args.deltas).await?;
    let mut floor_sockets = Vec::with_capacity(args.users);
    for _ in 0..args.users {
        floor_sockets.push((relay::user_socket(&floor_base, "floor").await?, None));
    }
    let nats = if args.no_nats { None } else { Some(nats::start().await?) };
    let _responder = match &nats {
        Some(server) => Some(nats::responder(&server.url).await?),
        None => None,
    };
    let mut echo = ChildProcess::itself(&["serve-echo".into()])?;
    let echo_url = echo.line()?.strip_prefix("READY ").context("echo READY")?.to_owned();

    // Warm up every system once (connections, sessions, caches), then measure.
    let warm = (args.messages / 10).max(5);
    sockets = relay::run(sockets, &relay.agent, warm).await?.2;
    floor_sockets = relay::run(floor_sockets, &relay.agent, warm).await?.2;
    if let Some(server) = &nats {
        nats::run(&server.url, args.users, warm).await?;
    }
    echo::run(&echo_url, args.users, warm).await?;

    let on_postgres = args.database.as_deref().is_some_and(|d| d.starts_with("postgres"));
    let relay_cpu = CpuMeter { server: relay.process.pid(), database: on_postgres };
    let floor_cpu = CpuMeter { server: floor.pid(), database: false };
    let nats_cpu = nats.as_ref().map(|n| CpuMeter { server: n.process.pid(), database: false });
    let echo_cpu = CpuMeter { server: echo.pid(), database: false };
    let (mut relay_runs, mut floor_runs, mut nats_runs, mut echo_runs) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..args.runs.max(1) {
        let before = relay_cpu.read();
        let (latencies, elapsed, back) = relay::run(sockets, &relay.agent, args.messages).await?;
        sockets = back;
        let peak = relay.process.peak_rss_kib();
        relay_runs.push(relay_cpu.figures(before, latencies, elapsed, peak));

        let before = floor_cpu.read();
        let (latencies, elapsed, back) =
            relay::run(floor_sockets, &relay.agent, args.messages).await?;
        floor_sockets = back;
        floor_runs.push(floor_cpu.figures(before, latencies, elapsed, floor.peak_rss_kib()));

        if let (Some(server), Some(meter)) = (&nats, &nats_cpu) {
            let before = meter.read();
            let (latencies, elapsed) = nats::run(&server.url, args.users, args.messages).await?;
            let peak = server.process.peak_rss_kib();
            nats_runs.push(meter.figures(before, latencies, elapsed, peak));
        }

        let before = echo_cpu.read();
        let (latencies, elapsed) = echo::run(&echo_url, args.users, args.messages).await?;
        echo_runs.push(echo_cpu.figures(before, latencies, elapsed, echo.peak_rss_kib()));
    }
    drop(echo);
    drop(floor);
    let phases = relay::PHASES.take();
    let relay_median = RunFigures::median(relay_runs.clone()).context("no relay run")?;
    let floor_median = RunFigures::median(floor_runs.clone()).context("no floor run")?;
    let nats_median = RunFigures::median(nats_runs.clone());
    let echo_median = RunFigures::median(echo_runs.clone()).context("no echo run")?;

    let idle = if args.idle > 0 {
        Some(
            relay::idle_bytes_per_socket(
                &relay.base,
                &relay.tokens[args.users..],
                args.idle,
                || relay.process.rss_kib(),
            )
            .await?,
        )
    } else {
        None
    };

    let db = args.database.as_deref().unwrap_or("SQLite file");
    if args.json {
        let report = json!({
            "users": args.users, "messages": args.messages, "runs": args.runs, "database": db,
            "relay": relay_median, "floor": floor_median, "nats": nats_median, "echo": echo_median,
            "all_runs": { "relay": relay_runs, "floor": floor_runs, "nats": nats_runs, "echo": echo_runs },
            "idle_sockets": args.idle, "idle_bytes_per_socket": idle.map(|i| i.2),
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "{} users x {} messages, median of {} runs; relay on {db} (synchronous={}), every message stored before its ack",
        args.users, args.messages, args.runs, args.synchronous
    );
    let systems: Vec<(&str, &RunFigures)> = [
        Some(("relay", &relay_median)),
        Some(("floor", &floor_median)),
        nats_median.as_ref().map(|n| ("nats", n)),
        Some(("echo", &echo_median)),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!("{}", RunFigures::header());
    for (name, figures) in &systems {
        println!("{}", figures.row(name));
    }
    if let Some(n) = &nats_median {
        println!("relay / nats: {}", ratios(&relay_median, n));
        println!("floor / nats: {}", ratios(&floor_median, n));
    }
    println!("relay / floor: {}", ratios(&relay_median, &floor_median));
    println!("relay / echo: {}", ratios(&relay_median, &echo_median));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "CPU per round trip, everything on this machine's {cores} cores (CPU-bound: the rt/s they could give at that cost):"
    );
    println!("{}", RunFigures::cpu_header());
    for (name, figures) in &systems {
        println!("{}", figures.cpu_row(name, cores));
    }
    let each = |runs: &[RunFigures]| {
        runs.iter().map(|r| format!("{:.0}", r.round_trips_per_sec)).collect::<Vec<_>>().join(", ")
    };
    println!(
        "runs (rt/s): relay {}; floor {}; nats {}; echo {}",
        each(&relay_runs),
        each(&floor_runs),
        each(&nats_runs),
        each(&echo_runs)
    );
    println!(
        "relay round trip: {:.0}% until the ack (stored, handed over), {:.0}% ack to chunk (the gateway), {:.0}% chunk to the stored reply",
        phases[0] * 100.0,
        phases[1] * 100.0,
        phases[2] * 100.0
    );
    if let Some((before, after, per)) = idle {
        println!(
            "idle: {} authenticated sockets, relay RSS {before} -> {after} KiB = {per:.0} bytes per socket",
            args.idle
        );
    }
    Ok(())
}
