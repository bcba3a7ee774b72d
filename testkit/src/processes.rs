//! The programs as processes: `mc-server serve` on a free port, its admin commands, and the
//! `mc-gateway` bridge with a config of its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::program;

/// Runs `mc-server admin --database <db> <args>`; returns (exit code, stdout, stderr).
pub fn admin(db: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program("mc-server"))
        .args(["admin", "--database", db])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// Runs `mc-server admin`, asserting it succeeds; returns its output.
pub fn admin_ok(db: &str, args: &[&str]) -> String {
    let (code, out, err) = admin(db, args);
    assert_eq!(code, 0, "admin {args:?}: {err}");
    out
}

/// Creates user `name` (password `{name}-password`) with `role` in `org`; returns the CLI's
/// output (the user id).
pub fn create_user(db: &str, org: &str, name: &str, role: &str) -> String {
    let password = format!("{name}-password");
    admin_ok(
        db,
        &["create-user", "--org", org, "--username", name, "--password", &password, "--role", role],
    )
}

/// A child process, killed when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Sends it signal `name` (`TERM`, `KILL`, `STOP`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    /// Waits up to `within` for it to exit; its exit code, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mc-server serve` on a free port (offline grace 1 s); returns it and its base URL.
pub fn start_server(db: &str) -> (Proc, String) {
    start_server_with(db, &["--offline-grace-secs", "1"])
}

/// Starts `mc-server serve` on a free port with extra flags; returns it and its base URL.
pub fn start_server_with(db: &str, extra: &[&str]) -> (Proc, String) {
    start_server_env(db, extra, &[])
}

/// Starts `mc-server serve` on a free port with extra flags and environment variables.
pub fn start_server_env(db: &str, extra: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    // Any free port, unless the caller names one.
    let listen =
        if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] };
    let mut child = Command::new(program("mc-server"))
        .args(["serve", "--database", db])
        .args(listen)
        .args(extra)
        .args(["--heartbeat-interval-secs", "5", "--shutdown-timeout-secs", "5"])
        .env("MC_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("the server prints its address").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (Proc { child }, base)
}

/// Writes the bridge's YAML config for gateway `name` of organization `org` reaching the relay at
/// `base` (fast reconnects); returns (config path, state path) in `dir`.
pub fn bridge_config(
    dir: &Path,
    name: &str,
    base: &str,
    org: &str,
    registration_token: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "mission_control:\n  api_server: \"{base}\"\n  organization_id: \"{org}\"\n  registration_token: \"{registration_token}\"\n\
             gateway:\n  name: \"{name}\"\n  workspace_root: \"/tmp\"\n  reconnect_max_retries: -1\n  reconnect_base_interval_seconds: 0.2\n  reconnect_max_interval_seconds: 1\n"
        ),
    )
    .unwrap();
    (config, dir.join(format!("{name}.state.json")))
}

/// Starts `mc-gateway ARGS --config CONFIG --state STATE`.
pub fn start_bridge(args: &[&str], config: &Path, state: &Path) -> Proc {
    let child = Command::new(program("mc-gateway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--state")
        .arg(state)
        .env("MC_LOG", "warn")
        .spawn()
        .unwrap();
    Proc { child }
}
