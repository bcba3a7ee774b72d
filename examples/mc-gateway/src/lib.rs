//! # mc-gateway
//!
//! The program that links an OpenClaw gateway to a Mission Control relay, as a library so
//! that `mc-server --demo` can run the same echo gateway in-process.
//!
//! - [`bridge`]: the gateway side of the relay link: connect, authenticate, serve requests,
//!   heartbeat with process metrics, reconnect forever with jittered backoff.
//! - [`echo`]: the demo echo agent that streams its reply word by word.
//! - [`forward`]: the bridge's forwarding to a local OpenClaw gateway.
//! - [`process`]: the process metrics heartbeats carry.
//! - [`files`]: secret files written owner-only (0600), which `mc-server` uses too.
//!
//! The binary (`src/main.rs`) owns the YAML config, the state file, logging and signals.

pub mod bridge;
pub mod echo;
pub mod files;
pub mod forward;
pub mod process;

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(bytes)
}
