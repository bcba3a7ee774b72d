//! `mc-bench instances`: the price of crossing instances. Two relay instances (child
//! processes) on one PostgreSQL database and a private `redis-server`; every user's socket is
//! on instance A (two sets of users, one per load). Agent 1's gateway is linked to A (a round trip stays within one instance,
//! though the instance still runs the Redis bus: presence, user fan-out); agent 2's gateway
//! is linked to B (every `chat` crosses to B over Redis and every chunk and reply crosses
//! back). Both loads run on the same sockets, interleaved, `runs` times each; the median run
//! of each is reported with cross ÷ single, and the CPU Redis and PostgreSQL spent per
//! 1 000 round trips per second.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use super::figures::{RunFigures, ratios};
use super::procs::ChildProcess;
use super::{Args, relay, start_relay_with};
use testkit::servers::PrivateRedis;

/// What one kind of load cost, summed over its runs.
#[derive(Default)]
struct Load {
    runs: Vec<RunFigures>,
    round_trips: usize,
    redis_cpu: f64,
    postgres_cpu: f64,
}

impl Load {
    /// CPU seconds per 1 000 round trips: at 1 000 rt/s, the share of one core.
    fn per_thousand(&self, cpu: f64) -> f64 {
        if self.round_trips == 0 { 0.0 } else { cpu * 1000.0 / self.round_trips as f64 }
    }
}

// The two-instance benchmark's script, top to bottom, like `round_trips::run`.
/// Runs `mc-bench instances`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let Some(database) = args.database.as_deref().filter(|d| d.starts_with("postgres")) else {
        bail!("mc-bench instances needs --database postgres://… (the instances share it)");
    };
    let redis = PrivateRedis::start()?;
    let redis_pid = redis.pid().context("redis-server is not running")?;
    let redis_cpu = || super::procs::cpu_seconds_of(redis_pid);
    let secret: String = crate::random_bytes::<32>()?.iter().map(|b| format!("{b:02x}")).collect();
    let shared = |id: &str| {
        vec![
            "--redis".to_owned(),
            redis.url(),
            "--instance-id".into(),
            id.into(),
            "--jwt-secret".into(),
            secret.clone(),
        ]
    };
    let mut first = shared("bench-a");
    first.extend(["--gateways".to_owned(), "2".into()]);
    // Users of their own for each load: a user's reply reaches all of their sockets.
    let a = start_relay_with(args, args.users * 2, 0, &first)?;
    let mut joined = vec!["serve-relay".to_owned(), "--users".into(), "0".into()];
    joined.extend(["--database".to_owned(), database.to_owned(), "--join".into()]);
    joined.extend(shared("bench-b"));
    let mut b = ChildProcess::itself(&joined)?;
    let b_base = b.line()?.strip_prefix("READY ").context("instance B's READY")?.to_owned();

    let [(gw_single, token_single, agent_single), (gw_cross, token_cross, agent_cross)] =
        &a.gateways[..]
    else {
        bail!("instance A registered {} gateways, not 2", a.gateways.len());
    };
    let _single =
        relay::echo_gateway(&a.base, gw_single, token_single, args.first_deltas()).await?;
    let _cross = relay::echo_gateway(&b_base, gw_cross, token_cross, args.first_deltas()).await?;
    let mut on_single = Vec::with_capacity(args.users);
    for token in &a.tokens[..args.users] {
        on_single.push((relay::user_socket(&a.base, token).await?, None));
    }
    let mut on_cross = Vec::with_capacity(args.users);
    for token in &a.tokens[args.users..args.users * 2] {
        on_cross.push((relay::user_socket(&a.base, token).await?, None));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = (args.messages / 10).max(5);
    on_single = relay::run(on_single, agent_single, warm).await?.2;
    on_cross = relay::run(on_cross, agent_cross, warm).await?.2;

    let (mut single, mut cross) = (Load::default(), Load::default());
    for _ in 0..args.runs.max(1) {
        for (load, sockets, agent) in
            [(&mut single, &mut on_single, agent_single), (&mut cross, &mut on_cross, agent_cross)]
        {
            let cpu = a.process.cpu_seconds() + b.cpu_seconds();
            let (redis_before, pg_before) =
                (redis_cpu(), super::procs::command_cpu_seconds("postgres"));
            let (latencies, elapsed, back) =
                relay::run(std::mem::take(sockets), agent, args.messages).await?;
            *sockets = back;
            let used = a.process.cpu_seconds() + b.cpu_seconds() - cpu;
            load.redis_cpu += redis_cpu() - redis_before;
            load.postgres_cpu += super::procs::command_cpu_seconds("postgres") - pg_before;
            load.round_trips += latencies.len();
            let peak = a.process.peak_rss_kib() + b.peak_rss_kib();
            load.runs.push(RunFigures::new(latencies, elapsed, used, peak));
        }
    }
    let single_median = RunFigures::median(single.runs.clone()).context("no single run")?;
    let cross_median = RunFigures::median(cross.runs.clone()).context("no cross run")?;
    let ratio = cross_median.round_trips_per_sec / single_median.round_trips_per_sec;
    if args.json {
        let report = json!({
            "users": args.users, "messages": args.messages, "runs": args.runs,
            "single": single_median, "cross": cross_median, "cross_over_single": ratio,
            "redis_cpu_per_1000_rt_per_s": { "single": single.per_thousand(single.redis_cpu), "cross": cross.per_thousand(cross.redis_cpu) },
            "postgres_cpu_per_1000_rt_per_s": { "single": single.per_thousand(single.postgres_cpu), "cross": cross.per_thousand(cross.postgres_cpu) },
            "all_runs": { "single": single.runs, "cross": cross.runs },
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "{} users x {} messages, median of {} runs; two instances on PostgreSQL + Redis, every user on A",
        args.users, args.messages, args.runs
    );
    println!("{}  (CPU s: both instances)", RunFigures::header());
    println!("{}", single_median.row("single"));
    println!("{}", cross_median.row("cross"));
    println!("cross / single: {}", ratios(&cross_median, &single_median));
    let each = |runs: &[RunFigures]| {
        runs.iter().map(|r| format!("{:.0}", r.round_trips_per_sec)).collect::<Vec<_>>().join(", ")
    };
    println!("runs (rt/s): single {}; cross {}", each(&single.runs), each(&cross.runs));
    println!(
        "per 1 000 rt/s: Redis {:.1}% of a core within one instance, {:.1}% across; PostgreSQL {:.1}% / {:.1}% (all its processes)",
        single.per_thousand(single.redis_cpu) * 100.0,
        cross.per_thousand(cross.redis_cpu) * 100.0,
        single.per_thousand(single.postgres_cpu) * 100.0,
        cross.per_thousand(cross.postgres_cpu) * 100.0,
    );
    Ok(())
}
