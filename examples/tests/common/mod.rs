//! What the end-to-end tests share: the example binaries as processes, the admin CLI, and a
//! user's WebSocket.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mc_core::protocol::{
    ClientFrame, ClientRequest, SERVER_HEARTBEAT_PREFIX, ServerFrame, decode_server_frame,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub const SERVER: &str = env!("CARGO_BIN_EXE_mc-server");
pub const GATEWAY: &str = env!("CARGO_BIN_EXE_mc-gateway");
pub const CHAT: &str = env!("CARGO_BIN_EXE_mc-chat");

/// Runs `mc-server admin --database <db> <args>`; returns (exit code, stdout, stderr).
pub fn admin(db: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(SERVER).args(["admin", "--database", db]).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

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

pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
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
    let mut child = Command::new(SERVER)
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
    let child = Command::new(GATEWAY)
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

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn login(http: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "organization": "acme", "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "login {username}: {}", r.status());
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// `GET {base}{path}` as `token`'s holder, as JSON.
pub async fn get_json(http: &reqwest::Client, base: &str, path: &str, token: &str) -> Value {
    let r = http.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

pub async fn socket(base: &str, token: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("{}/ws/chat", base.replacen("http", "ws", 1)),
        None,
        true,
    )
    .await
    .unwrap();
    ws.send(Message::Text(
        json!({ "type": "auth", "payload": { "token": token } }).to_string().into(),
    ))
    .await
    .unwrap();
    let ok = next(&mut ws).await.unwrap();
    assert_eq!(ok["type"], "auth_ok", "{ok}");
    (ws, ok["payload"].clone())
}

/// The next frame, or the close code. The server's heartbeats are answered (as a client
/// must, or it is closed after three silent intervals) and skipped.
pub async fn next(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(t))) => {
                // Read with the clients' decoder: the relay must never send what it cannot read.
                let decoded = decode_server_frame(&t)
                    .unwrap_or_else(|e| panic!("a frame clients cannot read ({e}): {t}"));
                if let ServerFrame::Heartbeat { id: Some(id) } = &decoded
                    && id.starts_with(SERVER_HEARTBEAT_PREFIX)
                {
                    let answer = ClientFrame::with_id(id.clone(), ClientRequest::Heartbeat);
                    let _ = ws.send(Message::Text(answer.to_json().into())).await;
                    continue;
                }
                return Ok(serde_json::from_str(&t).unwrap());
            }
            Some(Ok(Message::Close(c))) => return Err(c.map_or(1005, |c| c.code.into())),
            Some(Ok(_)) => continue,
            _ => return Err(1006),
        }
    }
}

pub async fn until(ws: &mut Ws, kind: &str) -> (Value, Vec<Value>) {
    let mut before = vec![];
    loop {
        let frame = next(ws)
            .await
            .unwrap_or_else(|code| panic!("closed {code} waiting for {kind}: {before:?}"));
        if frame["type"] == kind {
            return (frame, before);
        }
        before.push(frame);
    }
}

/// Waits for a `system` frame with this event (presence announcements may arrive late).
pub async fn system_event(ws: &mut Ws, event: &str) {
    loop {
        let (frame, _) = until(ws, "system").await;
        if frame["payload"]["event"] == event {
            return;
        }
    }
}

/// Sends a text frame.
pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// Sends a `chat` (in `session` if given); returns its client id.
pub async fn send_chat(ws: &mut Ws, agent: &str, text: &str, session: Option<&str>) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let mut payload = json!({ "agent_id": agent, "content": text });
    if let Some(s) = session {
        payload["session_id"] = json!(s);
    }
    send(ws, json!({ "type": "chat", "id": id, "payload": payload })).await;
    id
}

pub async fn chat(ws: &mut Ws, agent: &str, text: &str, session: Option<&str>) -> (Value, Value) {
    send_chat(ws, agent, text, session).await;
    let ack = loop {
        let frame =
            next(ws).await.unwrap_or_else(|code| panic!("closed {code} waiting for the ack"));
        assert_ne!(frame["type"], "error", "the chat was refused: {frame}");
        if frame["type"] == "ack" {
            break frame;
        }
    };
    let (reply, chunks) = until(ws, "chat").await;
    assert!(chunks.iter().filter(|c| c["type"] == "chunk").count() >= 2, "streamed: {chunks:?}");
    (ack, reply)
}
