//! `mc-bench`: the relay's round trips, latency, CPU and memory, side by side with
//! `nats-server` and a bare WebSocket echo server; also the store's group-commit appends and
//! chat latency during a sign-in storm. See the `mc_bench` library and BENCHMARKS.md.
//!
//! ```sh
//! cargo build --release -p mc-bench
//! ./target/release/mc-bench --users 64 --messages 200 --runs 3
//! ./target/release/mc-bench store
//! ./target/release/mc-bench storm
//! ```

use clap::Parser;

// Same allocator as mc-server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Quiet unless MC_LOG asks (warnings of the relay child or the store show up there).
    let filter = tracing_subscriber::EnvFilter::try_from_env("MC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = mc_bench::Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(mc_bench::main(args))
}
