//! # testkit
//!
//! What the workspace's test suites share (not published):
//!
//! - this module: [`free_port`], [`wait_for_port`], [`program`] (the path of a workspace
//!   program built beside the running test), [`http_client`];
//! - [`servers`]: private `redis-server` and PostgreSQL clusters on free ports, and fresh
//!   databases on a shared PostgreSQL;
//! - [`nginx`]: a real nginx on loopback in front of an upstream, or the shipped
//!   `deploy/nginx` configuration in front of several instances;
//! - [`openclaw`]: the OpenClaw test bed: a fake streaming model and real OpenClaw gateways;
//! - [`processes`]: `mc-server` and `mc-gateway` as processes, and the admin commands;
//! - [`ws`]: a user's socket: sign in, open, read frames, wait for a kind, chat;
//! - [`docs`]: documentation rendered from the code (the programs' command lines), checked by
//!   tests.
//!
//! The end-to-end suites start the programs the workspace builds (`mc-server`, `mc-gateway`,
//! `mc-chat`); `cargo test --workspace` builds them all before any suite runs. A suite run
//! alone (`cargo nextest run -p mc-server --test e2e`) uses the programs as last built:
//! build them first (`cargo build -p mc-server -p mc-gateway -p mc-chat`).

// Test helpers: a failed step is the test's failure, reported where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod docs;
pub mod nginx;
pub mod openclaw;
pub mod processes;
pub mod servers;
pub mod ws;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;

/// A free TCP port on 127.0.0.1 (free when asked; another process may take it later).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The path of the workspace program `name` (`mc-server`, `mc-gateway`, `mc-chat`), built in
/// the same target directory as the running test. Panics, saying how to build it, when it is
/// not there.
pub fn program(name: &str) -> PathBuf {
    // A test runs as target/<profile>/deps/<test>-<hash>; the programs are in target/<profile>.
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("a target directory");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build -p {name}` (or the tests with --workspace)",
        path.display()
    );
    path
}

/// An HTTP client for `http://` and `https://` (Mozilla roots). reqwest is built without a
/// TLS crypto provider of its own (so mc-ffi links only `ring`); this installs `ring` as the
/// process's default first.
pub fn http_client() -> reqwest::Client {
    // Already installed (by an earlier call) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
