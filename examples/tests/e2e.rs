//! End to end with real processes on loopback: `mc-server serve`, bootstrapped with
//! `mc-server admin`, `mc-gateway --echo` as a separate process, and a user on a WebSocket;
//! the gateway killed and restarted; the server stopped with SIGTERM and restarted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SERVER: &str = env!("CARGO_BIN_EXE_mc-server");
const GATEWAY: &str = env!("CARGO_BIN_EXE_mc-gateway");
const CHAT: &str = env!("CARGO_BIN_EXE_mc-chat");

/// Runs `mc-server admin --database <db> <args>`; returns (exit code, stdout, stderr).
fn admin(db: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(SERVER).args(["admin", "--database", db]).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

fn admin_ok(db: &str, args: &[&str]) -> String {
    let (code, out, err) = admin(db, args);
    assert_eq!(code, 0, "admin {args:?}: {err}");
    out
}

struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
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

/// Starts `mc-server serve` on a free port; returns it and its base URL.
fn start_server(db: &str) -> (Proc, String) {
    let mut child = Command::new(SERVER)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", db, "--offline-grace-secs", "1"])
        .args(["--heartbeat-interval-secs", "5", "--shutdown-timeout-secs", "5"])
        .env("MC_LOG", "warn")
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

fn start_gateway(config: &Path, state: &Path) -> Proc {
    let child = Command::new(GATEWAY)
        .args(["--echo", "--echo-word-delay-ms", "5", "--config"])
        .arg(config)
        .arg("--state")
        .arg(state)
        .env("MC_LOG", "warn")
        .spawn()
        .unwrap();
    Proc { child }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn login(http: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
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
async fn get_json(http: &reqwest::Client, base: &str, path: &str, token: &str) -> Value {
    let r = http.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

async fn socket(base: &str, token: &str) -> (Ws, Value) {
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

/// The next frame (server heartbeats skipped), or the close code.
async fn next(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "heartbeat" {
                    continue;
                }
                return Ok(v);
            }
            Some(Ok(Message::Close(c))) => return Err(c.map_or(1005, |c| c.code.into())),
            Some(Ok(_)) => continue,
            _ => return Err(1006),
        }
    }
}

async fn until(ws: &mut Ws, kind: &str) -> (Value, Vec<Value>) {
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
async fn system_event(ws: &mut Ws, event: &str) {
    loop {
        let (frame, _) = until(ws, "system").await;
        if frame["payload"]["event"] == event {
            return;
        }
    }
}

async fn chat(ws: &mut Ws, agent: &str, text: &str, session: Option<&str>) -> (Value, Value) {
    let mut payload = json!({ "agent_id": agent, "content": text });
    if let Some(s) = session {
        payload["session_id"] = json!(s);
    }
    let id = uuid::Uuid::now_v7().to_string();
    ws.send(Message::Text(
        json!({ "type": "chat", "id": id, "payload": payload }).to_string().into(),
    ))
    .await
    .unwrap();
    let (ack, _) = until(ws, "ack").await;
    let (reply, chunks) = until(ws, "chat").await;
    assert!(chunks.iter().filter(|c| c["type"] == "chunk").count() >= 2, "streamed: {chunks:?}");
    (ack, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gateway_and_user_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mc.db").display());

    // Bootstrap with the admin CLI.
    let org = admin_ok(&db, &["create-org", "acme"]);
    assert!(org.parse::<uuid::Uuid>().is_ok(), "{org}");
    admin_ok(
        &db,
        &[
            "create-user",
            "--org",
            &org,
            "--username",
            "admin",
            "--password",
            "admin-password",
            "--role",
            "admin",
        ],
    );
    let alice: Value = serde_json::from_str(&admin_ok(
        &db,
        &[
            "--json",
            "create-user",
            "--org",
            "acme",
            "--username",
            "alice",
            "--password",
            "alice-password",
        ],
    ))
    .unwrap();
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    let token = admin_ok(
        &db,
        &["create-registration-token", "--org", &org, "--label", "e2e", "--expires-in", "1h"],
    );
    assert!(token.starts_with("gw_reg_"));

    let (mut server, base) = start_server(&db);
    let secret = dir.path().join("mc.db.jwt-secret");
    assert_eq!(
        examples::files::mode(&secret),
        Some(0o600),
        "the generated JWT secret is owner-only"
    );

    let config = dir.path().join("gateway-config.yaml");
    std::fs::write(
        &config,
        format!(
            "mission_control:\n  api_server: \"{base}\"\n  organization_id: \"{org}\"\n  registration_token: \"{token}\"\n\
             gateway:\n  name: \"e2e-gateway\"\n  workspace_root: \"/tmp\"\n  reconnect_max_retries: -1\n  reconnect_base_interval_seconds: 0.2\n  reconnect_max_interval_seconds: 1\n"
        ),
    )
    .unwrap();
    let state = dir.path().join("gateway-state.json");
    let mut gateway = start_gateway(&config, &state);

    // The gateway registers and links; the admin CLI assigns its agent to alice.
    let http = reqwest::Client::new();
    let admin_token = login(&http, &base, "admin", "admin-password").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (agent_id, gateway_id) = loop {
        let agents = get_json(&http, &base, "/api/v1/agents", &admin_token).await;
        if let Some(a) = agents["agents"].as_array().and_then(|a| a.first()) {
            let path = format!("/api/v1/gateways/{}", a["gateway_id"].as_str().unwrap());
            let gw = get_json(&http, &base, &path, &admin_token).await;
            if gw["status"] == "online" {
                break (
                    a["id"].as_str().unwrap().to_owned(),
                    gw["id"].as_str().unwrap().to_owned(),
                );
            }
        }
        assert!(Instant::now() < deadline, "the gateway did not come online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(examples::files::mode(&state), Some(0o600), "the relay token is kept owner-only");
    admin_ok(&db, &["assign", "--user", &alice_id, "--agent", &agent_id]);

    // Alice chats: the reply streams and is stored.
    let alice_token = login(&http, &base, "alice", "alice-password").await;
    let (mut ws, hello) = socket(&base, &alice_token).await;
    assert_eq!(hello["assignments"][0]["status"], "online");
    let (ack, reply) = chat(&mut ws, &agent_id, "hello from e2e", None).await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(reply["payload"]["content"], "Echo: hello from e2e");
    assert_eq!(reply["payload"]["seq"], 2);

    // SIGKILL the gateway: alice hears agent_offline; restart it: agent_online, same id.
    gateway.child.kill().unwrap();
    gateway.child.wait().unwrap();
    system_event(&mut ws, "agent_offline").await;
    let mut gateway = start_gateway(&config, &state);
    system_event(&mut ws, "agent_online").await;
    let gateways = get_json(&http, &base, "/api/v1/gateways", &admin_token).await;
    assert_eq!(gateways["gateways"].as_array().unwrap().len(), 1);
    assert_eq!(gateways["gateways"][0]["id"], gateway_id.as_str(), "the same gateway id");
    let (_, reply) = chat(&mut ws, &agent_id, "back again", Some(&session)).await;
    assert_eq!(reply["payload"]["seq"], 4);

    // The bridge heartbeats with its real process metrics; /metrics shows the relay's figures.
    let metrics =
        get_json(&http, &base, &format!("/api/v1/gateways/{gateway_id}/metrics"), &admin_token)
            .await;
    assert!(metrics["metrics"]["memory_mb"].as_f64().unwrap() > 1.0, "{metrics}");
    assert_eq!(metrics["metrics"]["agent_count"], 1);
    let prometheus =
        http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "mc_connections{kind=\"user\"} 1",
        "mc_connections{kind=\"gateway\"} 1",
        "mc_gateways{status=\"online\"} 1",
        "mc_messages_stored_total{role=\"agent\"} 2",
        "mc_round_trip_seconds_count 2",
        "mc_frames_total{kind=\"user\",direction=\"in\"}",
    ] {
        assert!(prometheus.contains(needle), "{needle} in\n{prometheus}");
    }

    // mc-chat, the terminal client, as a user would run it.
    let mut chat_proc = Command::new(CHAT)
        .args([
            "--server",
            &base,
            "--org",
            "acme",
            "--username",
            "alice",
            "--password",
            "alice-password",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = chat_proc.stdin.take().unwrap();
    writeln!(input, "from the terminal").unwrap();
    let mut output = BufReader::new(chat_proc.stdout.take().unwrap()).lines();
    let echoed =
        (&mut output).map_while(Result::ok).find(|l| l.contains("Echo: from the terminal"));
    assert!(echoed.is_some(), "mc-chat printed the streamed reply");
    writeln!(input, "/quit").unwrap();
    assert!(chat_proc.wait().unwrap().success());

    // SIGTERM the server with alice connected: she gets 1012, the process exits 0.
    server.signal("TERM");
    let code = loop {
        match next(&mut ws).await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(code, 1012);
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0), "exit 0 within the bound");
    gateway.signal("TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0));

    // Restarted, nothing acked is lost.
    let (_server, base) = start_server(&db);
    let alice_token = login(&http, &base, "alice", "alice-password").await;
    let (mut ws, _) = socket(&base, &alice_token).await;
    ws.send(Message::Text(
        json!({ "type": "history", "id": "h", "payload": { "session_id": session } })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let (history, _) = until(&mut ws, "history").await;
    let contents: Vec<&str> = history["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["hello from e2e", "Echo: hello from e2e", "back again", "Echo: back again"]
    );
}

#[test]
fn bad_settings_exit_2_and_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mc.db").display());
    for (args, name) in [
        (vec!["serve", "--listen", "nowhere"], "MC_LISTEN"),
        (vec!["serve", "--database", "mysql://x"], "MC_DATABASE_URL"),
        (vec!["serve", "--jwt-secret", "short"], "MC_JWT_SECRET"),
        (vec!["serve", "--max-frame-bytes", "0"], "MC_MAX_FRAME_BYTES"),
        (vec!["serve", "--redis", "redis://127.0.0.1:6379"], "MC_REDIS_URL"),
        (vec!["serve", "--no-such-flag"], "--no-such-flag"),
    ] {
        let out = Command::new(SERVER).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{args:?}: {stderr}");
    }
    let out =
        Command::new(SERVER).args(["serve"]).env("MC_RATE_LIMIT_PER_SEC", "lots").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MC_RATE_LIMIT_PER_SEC")
            || String::from_utf8_lossy(&out.stderr).contains("rate-limit-per-sec")
    );

    let (code, _, err) = admin(
        &db,
        &["create-user", "--org", "nope", "--username", "x_y_z", "--password", "long enough"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--org"), "{err}");
    let org = admin_ok(&db, &["create-org", "acme"]);
    let (code, _, err) =
        admin(&db, &["create-user", "--org", &org, "--username", "a", "--password", "long enough"]);
    assert_eq!((code, err.contains("username")), (2, true), "{err}");
    let (code, _, err) = admin(
        &db,
        &[
            "create-user",
            "--org",
            &org,
            "--username",
            "abc",
            "--password",
            "long enough",
            "--role",
            "king",
        ],
    );
    assert_eq!((code, err.contains("--role")), (2, true), "{err}");
    let (code, _, err) =
        admin(&db, &["create-registration-token", "--org", &org, "--expires-in", "soon"]);
    assert_eq!((code, err.contains("--expires-in")), (2, true), "{err}");
    admin_ok(
        &db,
        &["create-user", "--org", &org, "--username", "abc", "--password", "long enough"],
    );
    let (code, _, err) = admin(
        &db,
        &["create-user", "--org", &org, "--username", "ABC", "--password", "long enough"],
    );
    assert_eq!(code, 1, "a conflict is not a usage error: {err}");

    // The gateway bridge.
    let config = dir.path().join("gw.yaml");
    std::fs::write(&config, "mission_control:\n  api_server: \"ftp://x\"\n  organization_id: \"x\"\n  registration_token: \"x\"\ngateway:\n  name: \"g\"\n").unwrap();
    let out = Command::new(GATEWAY).args(["--echo", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mission_control.api_server"));
    std::fs::write(&config, format!("mission_control:\n  api_server: \"http://127.0.0.1:1\"\n  organization_id: \"{org}\"\n  registration_token: \"gw_reg_x\"\ngateway:\n  name: \"g\"\n  colour: blue\n")).unwrap();
    let out = Command::new(GATEWAY).args(["--echo", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("colour"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&config, format!("mission_control:\n  api_server: \"http://127.0.0.1:1\"\n  organization_id: \"{org}\"\n  registration_token: \"gw_reg_x\"\ngateway:\n  name: \"g\"\n")).unwrap();
    let out = Command::new(GATEWAY).args(["--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "without --echo");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not built yet"));
}
