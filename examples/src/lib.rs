//! Shared code of the example binaries (`mc-server`, `mc-gateway`, `mc-chat`, `mc-bench`,
//! `embed`). Binaries own configuration, logging and the process; the relay itself is in the
//! library crates.
//!
//! - [`bench`]: `mc-bench`: the relay against `nats-server` and a bare echo server, the
//!   store's group commit, and chat during a sign-in storm.
//! - [`echo`]: the demo echo agent that streams its reply word by word.
//! - [`bridge`]: the gateway side of the relay link: connect, authenticate, serve requests,
//!   heartbeat with process metrics, reconnect forever with jittered backoff.
//! - [`forward`]: the bridge's forwarding to a local OpenClaw gateway.
//! - [`process`]: the process metrics heartbeats carry.
//! - [`proxy`]: a real nginx reverse proxy on loopback, for tests.
//! - [`files`]: secret files written owner-only (0600).
//! - [`servers`]: private Redis and PostgreSQL servers on loopback, for tests and benchmarks.
//! - [`server`]: `mc-server`: settings (flags, environment, TOML), the admin commands, the
//!   demo, metrics, serving and shutdown.
//! - [`testbed`]: a fake streaming model and real OpenClaw gateways, for the real-gateway
//!   tests.

pub mod bench;
pub mod bridge;
pub mod echo;
pub mod files;
pub mod forward;
pub mod process;
pub mod proxy;
pub mod server;
pub mod servers;
pub mod testbed;

/// An HTTP client for `http://` and `https://` (Mozilla roots). reqwest is built without a
/// TLS crypto provider of its own (so mc-ffi links only `ring`); this installs `ring` as the
/// process's default first.
pub fn http_client() -> reqwest::Client {
    // Already installed (by an earlier call) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(bytes)
}

/// A random password of `n` bytes of entropy, hex-encoded.
pub fn random_password() -> anyhow::Result<String> {
    Ok(random_bytes::<12>()?.iter().map(|b| format!("{b:02x}")).collect())
}
