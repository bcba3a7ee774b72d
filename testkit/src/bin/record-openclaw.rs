//! `record-openclaw OUT.jsonl`: records the frames of a real OpenClaw gateway (the test bed,
//! with the fake model) as they cross the socket, one JSON frame per line, both ways
//! (`{"dir":"in"|"out","frame":…}`), for `mc-openclaw`'s round-trip tests. It connects as
//! the relay does (`gateway-client`/`backend`, shared token, on loopback), then: `health`,
//! `status`, `agents.list`, `sessions.list`, `cron.list`, `cron.status`, `cron.runs`,
//! `usage.cost`, `sessions.usage`, a streamed chat and its `chat.history`, the same
//! `chat.send` again, a slow chat stopped by `chat.abort`, `artifacts.list`, and an unknown
//! method. Secrets (the gateway token, device tokens) are replaced by `<token>`.
//!
//! Refresh the fixtures with:
//! `cargo run -p testkit --bin record-openclaw -- mc-openclaw/tests/fixtures/openclaw-2026.9.6.jsonl`

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use testkit::openclaw::{FakeModel, Gateway, GatewayOptions};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The socket and every frame that crossed it.
struct Recorder {
    socket: Socket,
    lines: Vec<String>,
    secrets: Vec<String>,
    next: u32,
}

impl Recorder {
    fn record(&mut self, dir: &str, text: &str) -> anyhow::Result<Value> {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<token>");
        }
        let frame: Value = serde_json::from_str(&text)?;
        self.lines.push(json!({ "dir": dir, "frame": frame }).to_string());
        Ok(frame)
    }

    async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        let text = frame.to_string();
        self.record("out", &text)?;
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next frame from the gateway (recorded).
    async fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(90), self.socket.next())
                .await
                .context("no frame in 90 s")?
                .context("the socket ended")??;
            let Message::Text(text) = message else { continue };
            let frame: Value = serde_json::from_str(&text)?;
            if let Some(token) = frame.pointer("/payload/auth/deviceToken").and_then(Value::as_str)
            {
                self.secrets.push(token.to_owned());
            }
            return self.record("in", &text);
        }
    }

    /// Calls `method`; returns its `res` (events that arrive meanwhile are recorded).
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next += 1;
        let id = format!("rec-{}", self.next);
        eprintln!("record-openclaw: {method}");
        self.send(json!({ "type": "req", "id": id, "method": method, "params": params })).await?;
        loop {
            let frame = self.next().await?;
            if frame["type"] == "res" && frame["id"] == id.as_str() {
                return Ok(frame);
            }
            eprintln!("record-openclaw:   {}", frame["event"]);
        }
    }

    /// Records whatever arrives for `time`.
    async fn drain(&mut self, time: Duration) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + time;
        while tokio::time::timeout_at(until, self.next()).await.is_ok() {}
        Ok(())
    }

    /// Reads frames until run `run`'s first terminal `chat` event.
    async fn until_run_ends(&mut self, run: &str) -> anyhow::Result<()> {
        loop {
            let frame = self.next().await?;
            let payload = &frame["payload"];
            if frame["event"] == "chat"
                && payload["runId"] == run
                && matches!(payload["state"].as_str(), Some("final" | "error" | "aborted"))
            {
                return Ok(());
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).context("usage: record-openclaw OUT.jsonl")?;
    if !testkit::openclaw::installed() {
        bail!("the OpenClaw test bed is not installed: run scripts/openclaw-testbed install");
    }
    let model = FakeModel::start()?;
    let gateway = tokio::task::spawn_blocking(move || {
        let gateway = Gateway::start(&model, GatewayOptions::default());
        (gateway, model)
    })
    .await?;
    let (gateway, model) = (gateway.0?, gateway.1);
    let (socket, _) = tokio_tungstenite::connect_async(gateway.url()).await?;
    let mut rec =
        Recorder { socket, lines: vec![], secrets: vec![gateway.token().to_owned()], next: 0 };
    rec.next().await?; // connect.challenge
    let connect = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": { "id": "gateway-client", "version": "0.1.0", "platform": "linux", "mode": "backend", "displayName": "recorder" },
        "role": "operator", "scopes": ["operator.read", "operator.write"], "caps": [],
        "auth": { "token": gateway.token() }, "userAgent": "mission-control-relay/0.1.0",
    });
    rec.send(json!({ "type": "req", "id": "connect", "method": "connect", "params": connect }))
        .await?;
    while rec.next().await?["type"] != "res" {}

    for (method, params) in [
        ("health", json!({})),
        ("status", json!({})),
        ("agents.list", json!({})),
        ("sessions.list", json!({ "limit": 5 })),
        ("cron.list", json!({})),
        ("cron.status", json!({})),
        ("cron.runs", json!({})),
        ("usage.cost", json!({})),
        ("sessions.usage", json!({})),
    ] {
        rec.call(method, params).await?;
    }

    let run = "0194f4a0-7b1c-7000-8000-00000000c0de";
    let send = json!({ "sessionKey": "agent:main:mc-fixture", "message": "Hi there, relay! [pace:30]", "idempotencyKey": run });
    rec.call("chat.send", send.clone()).await?;
    rec.until_run_ends(run).await?;
    rec.call("chat.send", send).await?;
    rec.call("chat.history", json!({ "sessionKey": "agent:main:mc-fixture", "limit": 10 })).await?;
    rec.call("artifacts.list", json!({ "sessionKey": "agent:main:mc-fixture" })).await?;

    model.set_chunk_delay(Duration::from_millis(800));
    let slow = "0194f4a0-7b1c-7000-8000-0000000ab027";
    let params = json!({ "sessionKey": "agent:main:mc-fixture-abort", "message": "a slow one to stop", "idempotencyKey": slow });
    rec.call("chat.send", params).await?;
    loop {
        let frame = rec.next().await?;
        if frame["event"] == "chat" && frame["payload"]["state"] == "delta" {
            break;
        }
    }
    rec.call("chat.abort", json!({ "sessionKey": "agent:main:mc-fixture-abort", "runId": slow }))
        .await?;
    rec.drain(Duration::from_secs(3)).await?;
    rec.call("no.such.method", json!({})).await?;
    rec.call("chat.send", json!({ "sessionKey": "agent:main:mc-fixture" })).await?;

    let mut file = std::fs::File::create(&out).with_context(|| format!("create {out}"))?;
    for line in &rec.lines {
        writeln!(file, "{line}")?;
    }
    println!("{} frames recorded in {out}", rec.lines.len());
    gateway.stop();
    Ok(())
}
