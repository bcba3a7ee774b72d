//! Against a REAL OpenClaw gateway (npm openclaw@2026.9.6 on Node 24, started through
//! `scripts/openclaw-testbed`) and a fake streaming model: the outbound connection, the relay's
//! and `mc-gateway` forwarding, end to end. Slow (each gateway takes ~15-25 s
//! to start), so it is a test binary of its own.
//!
//! Skipped, with a printed line, when the test bed is not installed; `MC_REQUIRE_OPENCLAW=1`
//! (set by `.ci/run`, which installs it) makes that a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testkit::processes::*;
use testkit::ws::*;

use mc_openclaw::chat::{ChatHistoryParams, ChatSendParams, SendStatus};
use mc_openclaw::connection::{
    ConnectionEvent, ConnectionState, OpenClawConnection, OpenClawOptions,
};
use mc_openclaw::method::{AgentsList, ChatHistory, ChatSend};
use mc_openclaw::{ChatState, Event};
use serde_json::{Value, json};
use testkit::openclaw::{self as testbed, FakeModel, Gateway, GatewayOptions};
use tokio::sync::mpsc;

/// The fake model every gateway of this binary uses.
fn model() -> &'static FakeModel {
    static MODEL: OnceLock<FakeModel> = OnceLock::new();
    MODEL.get_or_init(|| FakeModel::start().expect("the fake model starts"))
}

/// Whether to run: the test bed is installed (or required, which fails if it is not).
fn testbed_ready() -> bool {
    if testbed::installed() {
        return true;
    }
    if std::env::var("MC_REQUIRE_OPENCLAW").is_ok_and(|v| v == "1") {
        panic!(
            "MC_REQUIRE_OPENCLAW=1 but the OpenClaw test bed is not installed (scripts/openclaw-testbed install)"
        );
    }
    println!("skipped: the OpenClaw test bed is not installed (scripts/openclaw-testbed install)");
    false
}

async fn up(events: &mut mpsc::UnboundedReceiver<ConnectionEvent>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("connected in time")
        {
            Some(ConnectionEvent::Up(_)) => return,
            Some(ConnectionEvent::Refused(failure)) => panic!("refused: {failure}"),
            Some(_) => {}
            None => panic!("the connection ended"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_speaks_to_a_real_gateway() {
    if !testbed_ready() {
        return;
    }
    let gateway =
        tokio::task::spawn_blocking(|| Gateway::start(model(), GatewayOptions::default()))
            .await
            .unwrap()
            .unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let options = OpenClawOptions::new(gateway.url()).token(Some(gateway.token().to_owned()));
    let connection = OpenClawConnection::start(options, tx);
    up(&mut events).await;
    assert!(matches!(*connection.state().borrow(), ConnectionState::Online { .. }));
    let agents = connection
        .call_method::<AgentsList>(&Default::default(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(agents.default_id.as_deref(), Some("main"), "{agents:?}");

    let run = uuid::Uuid::now_v7().to_string();
    let params = ChatSendParams {
        session_key: "agent:main:mc-smoke".into(),
        message: "Hi there, relay!".into(),
        idempotency_key: run.clone(),
        ..Default::default()
    };
    let sent = connection.call_method::<ChatSend>(&params, Duration::from_secs(30)).await.unwrap();
    assert_eq!((sent.run_id.as_str(), &sent.status), (run.as_str(), &SendStatus::Started));
    let mut deltas = 0;
    let text = loop {
        let event =
            tokio::time::timeout(Duration::from_secs(60), events.recv()).await.unwrap().unwrap();
        let ConnectionEvent::Event(frame) = event else { continue };
        let Ok(Event::Chat(chat)) = frame.decode() else { continue };
        if chat.run_id != run {
            continue;
        }
        match chat.state {
            ChatState::Delta => deltas += 1,
            ChatState::Final => break chat.text().unwrap(),
            ChatState::Error => panic!("the run failed: {chat:?}"),
            _ => {}
        }
    };
    assert_eq!(text, "Echo: Hi there, relay!");
    assert!(deltas > 1, "it streamed");
    // The same key again: no second run.
    let again = connection.call_method::<ChatSend>(&params, Duration::from_secs(10)).await.unwrap();
    assert_eq!(again.status, SendStatus::Ok);
    let history = ChatHistoryParams {
        session_key: "agent:main:mc-smoke".into(),
        limit: Some(10),
        ..Default::default()
    };
    let history =
        connection.call_method::<ChatHistory>(&history, Duration::from_secs(10)).await.unwrap();
    let reply = history.reply_of(&run).expect("the reply in chat.history");
    assert_eq!(reply.text().as_deref(), Some("Echo: Hi there, relay!"));
    assert!(reply.usage.is_some(), "chat.history carries the reply's usage");
    connection.close();
}

/// A relay process with an organization, an admin and a user `alice`.
struct TestRelay {
    dir: tempfile::TempDir,
    db: String,
    server: Proc,
    extra: Vec<String>,
    base: String,
    org: String,
    alice: String,
    http: reqwest::Client,
    admin_token: String,
}

async fn relay(extra: &[&str]) -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mc.db").display());
    let org = admin_ok(&db, &["create-org", "acme"]);
    create_user(&db, &org, "admin", "admin");
    let alice: Value = serde_json::from_str(&admin_ok(
        &db,
        &[
            "--json",
            "create-user",
            "--org",
            &org,
            "--username",
            "alice",
            "--password",
            "alice-password",
        ],
    ))
    .unwrap();
    let (server, base) = start_server_with(&db, extra);
    let http = testkit::http_client();
    let admin_token = login(&http, &base, "admin", "admin-password").await;
    TestRelay {
        dir,
        db,
        server,
        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        base,
        org,
        alice: alice["id"].as_str().unwrap().to_owned(),
        http,
        admin_token,
    }
}

impl TestRelay {
    /// `mc-gateway` forwarding to `gateway`, registered as `name`.
    fn bridge(&self, gateway: &Gateway, name: &str) -> Proc {
        let token = admin_ok(
            &self.db,
            &["create-registration-token", "--org", &self.org, "--expires-in", "1h"],
        );
        let config: PathBuf = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "mission_control:\n  api_server: \"{}\"\n  organization_id: \"{}\"\n  registration_token: \"{token}\"\n\
                 gateway:\n  name: \"{name}\"\n  reconnect_base_interval_seconds: 0.2\n  reconnect_max_interval_seconds: 1\n\
                 openclaw:\n  url: \"{}\"\n",
                self.base, self.org, gateway.url()
            ),
        )
        .unwrap();
        let state = self.dir.path().join(format!("{name}.state.json"));
        let child = std::process::Command::new(testkit::program("mc-gateway"))
            .arg("--config")
            .arg(&config)
            .arg("--state")
            .arg(&state)
            .env("OPENCLAW_GATEWAY_TOKEN", gateway.token())
            .env("MC_LOG", "warn")
            .spawn()
            .unwrap();
        Proc { child }
    }

    /// Waits until a gateway named `name` is online with an agent `main`; assigns it to alice.
    async fn agent_of(&self, name: &str) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let gateways =
                get_json(&self.http, &self.base, "/api/v1/gateways", &self.admin_token).await;
            let found = gateways["gateways"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["name"] == name)
                .cloned();
            if let Some(gw) = found.filter(|g| g["status"] == "online") {
                let id = gw["id"].as_str().unwrap().to_owned();
                let agents =
                    get_json(&self.http, &self.base, "/api/v1/agents", &self.admin_token).await;
                let agent = agents["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["gateway_id"] == id.as_str() && a["agent_key"] == "main")
                    .cloned();
                if let Some(agent) = agent {
                    let agent_id = agent["id"].as_str().unwrap().to_owned();
                    let (code, _, err) =
                        admin(&self.db, &["assign", "--user", &self.alice, "--agent", &agent_id]);
                    assert!(code == 0 || err.contains("already assigned"), "assign: {err}");
                    return (agent_id, id);
                }
            }
            assert!(Instant::now() < deadline, "gateway {name} did not come online: {gateways}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn alice(&self) -> Ws {
        let token = login(&self.http, &self.base, "alice", "alice-password").await;
        socket(&self.base, &token).await.0
    }
}

/// The session's stored messages: (role, content).
async fn history(ws: &mut Ws, session: &str) -> Vec<(String, String)> {
    send(
        ws,
        json!({ "type": "history", "id": "h", "payload": { "session_id": session, "limit": 200 } }),
    )
    .await;
    loop {
        let (frame, _) = until(ws, "history").await;
        if frame["id"] == "h" {
            return frame["payload"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap().to_owned(),
                        m["content"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
        }
    }
}

/// Starts a real gateway off the async threads (it takes ~15-25 s).
async fn start_gateway_blocking(options: GatewayOptions) -> Gateway {
    tokio::task::spawn_blocking(move || Gateway::start(model(), options)).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_mc_gateway_a_user_chats_stops_a_run_and_resumes() {
    if !testbed_ready() {
        return;
    }
    let started = Instant::now();
    let gateway = start_gateway_blocking(GatewayOptions::default()).await;
    let relay = relay(&["--offline-grace-secs", "10"]).await;
    let _bridge = relay.bridge(&gateway, "office");
    let (agent, _) = relay.agent_of("office").await;
    let mut ws = relay.alice().await;

    // A streamed reply, with what the agent is doing along the way.
    model().set_chunk_delay(Duration::from_millis(40));
    send_chat(&mut ws, &agent, "Hi there, relay!", None).await;
    let (ack, _) = until(&mut ws, "ack").await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    let (reply, before) = until(&mut ws, "chat").await;
    assert_eq!(reply["payload"]["content"], "Echo: Hi there, relay!");
    assert_eq!(reply["payload"]["role"], "agent");
    let chunks: Vec<&Value> = before.iter().filter(|f| f["type"] == "chunk").collect();
    assert!(!chunks.is_empty(), "streamed: {before:?}");
    let phases: Vec<&str> = before
        .iter()
        .filter(|f| f["payload"]["event"] == "agent_status")
        .map(|f| f["payload"]["phase"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"thinking") && phases.contains(&"typing"), "agent_status: {phases:?}");
    println!("first turn done after {:?}", started.elapsed());

    // A slow run, stopped: aborted at the gateway, GATEWAY_ERROR to the user, nothing half done.
    model().set_chunk_delay(Duration::from_millis(1500));
    let stopped_id =
        send_chat(&mut ws, &agent, "please stop me now, this is long", Some(&session)).await;
    let (chunk, _) = until(&mut ws, "chunk").await;
    let run = chunk["payload"]["run_id"].as_str().unwrap().to_owned();
    send(&mut ws, json!({ "type": "abort", "id": "stop", "payload": { "session_id": session, "run_id": run } })).await;
    let (error, _) = until(&mut ws, "error").await;
    assert_eq!(
        (error["id"].as_str(), error["payload"]["code"].as_str()),
        (Some(stopped_id.as_str()), Some("GATEWAY_ERROR")),
        "{error}"
    );
    let stored = history(&mut ws, &session).await;
    let roles: Vec<&str> = stored.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, vec!["user", "agent", "user", "system"], "{stored:?}");

    // A reply resumed on a new socket mid-way: the text so far, then the rest and the reply.
    model().set_chunk_delay(Duration::from_millis(700));
    send_chat(&mut ws, &agent, "one two three four five six", Some(&session)).await;
    until(&mut ws, "chunk").await;
    drop(ws);
    let mut back = relay.alice().await;
    send(&mut back, json!({ "type": "resume", "id": "r", "payload": { "sessions": [{ "session_id": session, "after_seq": 0 }] } })).await;
    until(&mut back, "resumed").await;
    let so_far = loop {
        let (chunk, _) = until(&mut back, "chunk").await;
        if chunk["payload"]["offset"] == 0 {
            break chunk["payload"]["delta"].as_str().unwrap().to_owned();
        }
    };
    assert!(
        so_far.starts_with("Echo:") && so_far.len() < "Echo: one two three four five six".len(),
        "{so_far}"
    );
    let (reply, _) = until(&mut back, "chat").await;
    assert_eq!(reply["payload"]["content"], "Echo: one two three four five six");
    model().set_chunk_delay(Duration::from_millis(40));
    println!("done after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_model_takes_the_error_path_once() {
    if !testbed_ready() {
        return;
    }
    let gateway =
        start_gateway_blocking(GatewayOptions { no_model: true, ..Default::default() }).await;
    let relay = relay(&[]).await;
    let _bridge = relay.bridge(&gateway, "no-model");
    let (agent, _) = relay.agent_of("no-model").await;
    let mut ws = relay.alice().await;
    let id = send_chat(&mut ws, &agent, "anyone home?", None).await;
    let (ack, _) = until(&mut ws, "ack").await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        let frame = next(&mut ws).await.unwrap();
        if frame["type"] == "error" {
            break frame;
        }
        assert!(Instant::now() < deadline, "no error in time");
    };
    assert_eq!(
        (error["id"].as_str(), error["payload"]["code"].as_str()),
        (Some(id.as_str()), Some("GATEWAY_ERROR")),
        "{error}"
    );
    // OpenClaw sends two error events for such a run; the user hears of it once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = history(&mut ws, &session).await;
    assert_eq!(
        stored.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        vec!["user", "system"],
        "{stored:?}"
    );
    assert!(stored[1].1.contains("failed"), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_restarting_mid_conversation() {
    if !testbed_ready() {
        return;
    }
    let gateway = std::sync::Arc::new(start_gateway_blocking(GatewayOptions::default()).await);
    let relay = relay(&["--offline-grace-secs", "3"]).await;
    let _bridge = relay.bridge(&gateway, "restarts");
    let (agent, _) = relay.agent_of("restarts").await;
    let mut ws = relay.alice().await;
    model().set_chunk_delay(Duration::from_millis(40));
    let (ack, reply) = chat(&mut ws, &agent, "before the restart", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: before the restart");
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();

    // A run in flight when the gateway crashes and restarts ends with a clear error for that
    // message, never in silence. (A graceful restart lets the run finish first: its reply is
    // stored; that is accepted too.)
    model().set_chunk_delay(Duration::from_millis(1500));
    let id = send_chat(&mut ws, &agent, "caught in the restart, a long one", Some(&session)).await;
    let (ack, _) = until(&mut ws, "ack").await;
    let message_id = ack["payload"]["message_id"].as_str().unwrap().to_owned();
    until(&mut ws, "chunk").await;
    let restarting = {
        let gateway = gateway.clone();
        tokio::task::spawn_blocking(move || gateway.crash_and_restart())
    };
    let ended = loop {
        let frame = next(&mut ws).await.unwrap();
        if frame["type"] == "error" && frame["id"] == id.as_str() {
            assert_eq!(frame["payload"]["code"], "GATEWAY_ERROR", "{frame}");
            break "a clear error";
        }
        if frame["type"] == "chat"
            && frame["payload"]["role"] == "agent"
            && frame["payload"]["run_id"] == message_id.as_str()
        {
            assert_eq!(frame["payload"]["content"], "Echo: caught in the restart, a long one");
            break "its reply";
        }
    };
    println!("the run in flight across the restart ended with {ended}");
    model().set_chunk_delay(Duration::from_millis(40));

    // The bridge and the relay find the gateway again by themselves; the next message works.
    system_event(&mut ws, "agent_offline").await;
    system_event(&mut ws, "agent_online").await;
    restarting.await.unwrap().unwrap();

    // In the interrupted session OpenClaw first recovers the turn the crash cut off, and may
    // fold a new message into that recovery: the message then ends with its reply or a clear
    // error, never an empty reply or silence.
    let id = send_chat(&mut ws, &agent, "after the restart", Some(&session)).await;
    let (ack, _) = until(&mut ws, "ack").await;
    let run = ack["payload"]["message_id"].as_str().unwrap().to_owned();
    let ended = loop {
        let frame = next(&mut ws).await.unwrap();
        if frame["type"] == "error" && frame["id"] == id.as_str() {
            assert_eq!(frame["payload"]["code"], "GATEWAY_ERROR", "{frame}");
            break format!("a clear error: {}", frame["payload"]["message"]);
        }
        if frame["type"] == "chat"
            && frame["payload"]["role"] == "agent"
            && frame["payload"]["run_id"] == run.as_str()
        {
            assert_eq!(frame["payload"]["content"], "Echo: after the restart", "{frame}");
            break "its reply".to_owned();
        }
    };
    println!("the first message in the interrupted session ended with {ended}");

    // A new conversation with the agent just works.
    let (_, reply) = chat(&mut ws, &agent, "a fresh start", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: a fresh start");
}

mod outbound;

/// A user's text reaches the agent as text: no OpenClaw slash command, directive or inline
/// shortcut in it runs with the relay's scopes (without the relay's care, `/status` answered
/// with the gateway's status card and `hello /status` reached the model as `hello`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_in_a_users_text_never_run_on_the_gateway() {
    if !testbed_ready() {
        return;
    }
    let gateway = start_gateway_blocking(GatewayOptions::default()).await;
    let relay = relay(&[]).await;
    let _bridge = relay.bridge(&gateway, "office");
    let (agent, _) = relay.agent_of("office").await;
    let mut ws = relay.alice().await;
    for text in ["/status", " /help", "hello /status", "/model fake/other -g", "! ls /"] {
        send_chat(&mut ws, &agent, text, None).await;
        let (reply, _) = until(&mut ws, "chat").await;
        let content = reply["payload"]["content"].as_str().unwrap().replace('\u{2060}', "");
        assert_eq!(content, format!("Echo: {}", text.trim_start()), "{text:?} ran as a command");
    }
}
