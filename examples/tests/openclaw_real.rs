//! Against a REAL OpenClaw gateway (npm openclaw@2026.9.6 on Node 24, started through
//! `scripts/openclaw-testbed`) and a fake streaming model: the outbound connection, the relay's
//! outbound gateways, and `mc-gateway` forwarding, end to end. Slow (each gateway takes ~15-25 s
//! to start), so it is a test binary of its own.
//!
//! Skipped, with a printed line, when the test bed is not installed; `MC_REQUIRE_OPENCLAW=1`
//! (set by `.ci/run`, which installs it) makes that a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::time::Duration;

use examples::testbed::{self, FakeModel, Gateway, GatewayOptions};
use mc_transport_ws::openclaw::{
    ConnectionEvent, ConnectionState, OpenClawConnection, OpenClawOptions,
};
use serde_json::{Value, json};
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
    let agents = connection.call("agents.list", json!({}), Duration::from_secs(10)).await.unwrap();
    assert_eq!(agents["defaultId"], "main", "{agents}");

    let run = uuid::Uuid::now_v7().to_string();
    let sent = connection
        .call(
            "chat.send",
            json!({ "sessionKey": "agent:main:mc-smoke", "message": "Hi there, relay!", "idempotencyKey": run }),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        (sent["runId"].as_str(), sent["status"].as_str()),
        (Some(run.as_str()), Some("started"))
    );
    let mut deltas = 0;
    let text = loop {
        let event =
            tokio::time::timeout(Duration::from_secs(60), events.recv()).await.unwrap().unwrap();
        let ConnectionEvent::Event { name, payload } = event else { continue };
        if name != "chat" || payload["runId"] != run.as_str() {
            continue;
        }
        match payload["state"].as_str() {
            Some("delta") => deltas += 1,
            Some("final") => {
                break payload["message"]["content"][0]["text"].as_str().unwrap().to_owned();
            }
            Some("error") => panic!("the run failed: {payload}"),
            _ => {}
        }
    };
    assert_eq!(text, "Echo: Hi there, relay!");
    assert!(deltas > 1, "it streamed");
    // The same key again: no second run.
    let again = connection
        .call("chat.send", json!({ "sessionKey": "agent:main:mc-smoke", "message": "Hi there, relay!", "idempotencyKey": run }), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again["status"], "ok");
    let history: Value = connection
        .call(
            "chat.history",
            json!({ "sessionKey": "agent:main:mc-smoke", "limit": 10 }),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let last = history["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "assistant", "{history}");
    println!("assistant row of chat.history: {last}");
    connection.close();
}
