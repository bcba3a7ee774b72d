//! What a benchmark run measured, and the table comparing systems.

use std::time::Duration;

/// One closed-loop run against one system.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunFigures {
    /// Round trips completed.
    pub round_trips: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Round trips per second.
    pub round_trips_per_sec: f64,
    /// Latency percentiles and maximum (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Slowest (ms).
    pub max_ms: f64,
    /// CPU seconds the server process used.
    pub server_cpu_seconds: f64,
    /// Round trips per server CPU-second.
    pub round_trips_per_cpu_second: f64,
    /// The server's peak resident memory (KiB).
    pub server_peak_rss_kib: u64,
    /// CPU seconds the bench process used meanwhile: the users, and the gateway or responder.
    pub client_cpu_seconds: f64,
    /// CPU seconds of the server's store writer thread (part of `server_cpu_seconds`; the
    /// relay on a SQLite file only).
    pub writer_cpu_seconds: f64,
    /// CPU seconds of the database server's processes (the relay on PostgreSQL only).
    pub database_cpu_seconds: f64,
}

impl RunFigures {
    /// Figures of a run from its latencies.
    pub fn new(mut latencies: Vec<Duration>, elapsed: Duration, cpu: f64, peak: u64) -> Self {
        latencies.sort();
        let q = |q: f64| {
            latencies
                .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let n = latencies.len();
        Self {
            round_trips: n,
            seconds: elapsed.as_secs_f64(),
            round_trips_per_sec: n as f64 / elapsed.as_secs_f64(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: q(1.0),
            server_cpu_seconds: cpu,
            round_trips_per_cpu_second: if cpu > 0.0 { n as f64 / cpu } else { 0.0 },
            server_peak_rss_kib: peak,
            ..Self::default()
        }
    }

    /// With the CPU the run cost outside the server process: the bench's own (`clients`) and
    /// the database server's.
    pub fn with_cpu(mut self, clients: f64, writer: f64, database: f64) -> Self {
        self.client_cpu_seconds = clients;
        self.writer_cpu_seconds = writer;
        self.database_cpu_seconds = database;
        self
    }

    /// Microseconds of CPU per round trip.
    fn per_round_trip(&self, seconds: f64) -> f64 {
        if self.round_trips == 0 { 0.0 } else { seconds * 1e6 / self.round_trips as f64 }
    }

    /// Every CPU microsecond a round trip cost on this machine: server, database and clients.
    pub fn total_us_per_round_trip(&self) -> f64 {
        self.per_round_trip(
            self.server_cpu_seconds + self.database_cpu_seconds + self.client_cpu_seconds,
        )
    }

    /// One row of the CPU table.
    pub fn cpu_row(&self, name: &str, cores: f64) -> String {
        let total = self.total_us_per_round_trip();
        format!(
            "{name:10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>11.0}",
            self.per_round_trip(self.server_cpu_seconds),
            self.per_round_trip(self.writer_cpu_seconds),
            self.per_round_trip(self.database_cpu_seconds),
            self.per_round_trip(self.client_cpu_seconds),
            total,
            if total > 0.0 { cores * 1e6 / total } else { 0.0 },
        )
    }

    /// The CPU table's header.
    pub fn cpu_header() -> String {
        format!(
            "{:10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
            "µs per rt", "server", "(writer)", "database", "clients", "total", "CPU-bound"
        )
    }

    /// The run whose throughput is the median of `runs` (odd counts take the middle one).
    pub fn median(mut runs: Vec<RunFigures>) -> Option<RunFigures> {
        runs.sort_by(|a, b| a.round_trips_per_sec.total_cmp(&b.round_trips_per_sec));
        let middle = runs.len().checked_sub(1)? / 2;
        runs.into_iter().nth(middle)
    }

    /// One row of the table.
    pub fn row(&self, name: &str) -> String {
        format!(
            "{name:10} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>11.0} {:>9}",
            self.round_trips_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.server_cpu_seconds,
            self.round_trips_per_cpu_second,
            self.server_peak_rss_kib,
        )
    }

    /// The table's header.
    pub fn header() -> String {
        format!(
            "{:10} {:>9} {:>8} {:>8} {:>8} {:>9} {:>11} {:>9}",
            "system", "rt/s", "p50 ms", "p99 ms", "max ms", "CPU s", "rt/CPU-s", "peak KiB"
        )
    }
}

/// `relay ÷ other` on throughput, p99 and efficiency.
pub fn ratios(relay: &RunFigures, other: &RunFigures) -> String {
    format!(
        "throughput {:.2}x, p99 {:.2}x, rt per CPU-second {:.2}x",
        relay.round_trips_per_sec / other.round_trips_per_sec,
        relay.p99_ms / other.p99_ms,
        relay.round_trips_per_cpu_second / other.round_trips_per_cpu_second
    )
}

/// Every task's latencies, once all are done; the first failure wins.
pub async fn join_latencies(
    mut tasks: tokio::task::JoinSet<anyhow::Result<Vec<Duration>>>,
) -> anyhow::Result<Vec<Duration>> {
    let mut all = vec![];
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// The CPU a run costs on this machine: the server process (and its store writer thread),
/// this process (users, gateway or responder) and, for the relay on PostgreSQL, the database.
pub struct CpuMeter {
    /// The server process.
    pub server: u32,
    /// Whether PostgreSQL's processes count.
    pub database: bool,
}

/// CPU seconds so far: server, its writer thread, this process, the database.
pub type CpuReading = (f64, f64, f64, f64);

impl CpuMeter {
    /// CPU seconds so far.
    pub fn read(&self) -> CpuReading {
        (
            super::procs::cpu_seconds_of(self.server),
            super::procs::thread_cpu_seconds(self.server, "mc-sqlite-write"),
            super::procs::cpu_seconds_of(std::process::id()),
            if self.database { super::procs::command_cpu_seconds("postgres") } else { 0.0 },
        )
    }

    /// A run's figures, from its latencies and the reading taken before it.
    pub fn figures(
        &self,
        before: CpuReading,
        latencies: Vec<Duration>,
        elapsed: Duration,
        peak_kib: u64,
    ) -> RunFigures {
        let after = self.read();
        RunFigures::new(latencies, elapsed, after.0 - before.0, peak_kib).with_cpu(
            after.2 - before.2,
            after.1 - before.1,
            after.3 - before.3,
        )
    }
}
