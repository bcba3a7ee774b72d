//! Socket-level test helpers: a user client, and a test gateway speaking the relay's gateway
//! link (auth, then OpenClaw v4 `req`/`res`/`event` frames as captured in docs/openclaw.md).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long tests wait for an expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn ws_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.replacen("http://", "ws://", 1))
}

/// A user's socket.
pub struct Client {
    pub socket: Socket,
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl Client {
    pub async fn connect(base: &str) -> Self {
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(ws_url(base, "/ws/chat"), None, true)
                .await
                .unwrap();
        Self { socket }
    }

    /// Connects and authenticates; returns the client and its `auth_ok` payload.
    pub async fn authed(base: &str, token: &str) -> (Self, Value) {
        let mut c = Self::connect(base).await;
        c.send(json!({ "type": "auth", "payload": { "token": token } })).await;
        let ok = c.expect("auth_ok").await;
        (c, ok["payload"].clone())
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.to_owned().into())).await.unwrap();
    }

    /// The next JSON frame (the server's own heartbeats, `srv-…`, skipped), or how the socket
    /// ended. Every frame must also decode with the clients' decoder
    /// (`decode_server_frame`), so the relay never sends what the SDK cannot read.
    pub async fn next(&mut self) -> Result<Value, Ended> {
        loop {
            let msg =
                tokio::time::timeout(WAIT, self.socket.next()).await.expect("a frame in time");
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let decoded = mc_core::protocol::decode_server_frame(&text)
                        .unwrap_or_else(|e| panic!("a frame clients cannot read ({e}): {text}"));
                    if let mc_core::protocol::ServerFrame::Heartbeat { id } = &decoded
                        && mc_core::protocol::answers_server_heartbeat(id.as_deref())
                    {
                        continue;
                    }
                    return Ok(serde_json::from_str(&text).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Ended::Closed(frame.map_or(1005, |f| f.code.into())));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// The next frame, which must be of `kind`.
    /// (Agent presence announcements, `system` frames, are delivered asynchronously and may
    /// land anywhere: unless a `system` frame is what is expected, they are skipped.)
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self
                .next()
                .await
                .unwrap_or_else(|e| panic!("expected {kind}, socket ended: {e:?}"));
            if kind != "system" && frame["type"] == "system" {
                continue;
            }
            assert_eq!(frame["type"], kind, "expected {kind}, got {frame}");
            return frame;
        }
    }

    /// Frames until one of `kind` (returned with those before it).
    pub async fn until(&mut self, kind: &str) -> (Value, Vec<Value>) {
        let mut before = vec![];
        loop {
            let frame = self
                .next()
                .await
                .unwrap_or_else(|e| panic!("waiting for {kind}: {e:?}; saw {before:?}"));
            if frame["type"] == kind {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// Waits for the socket to close; returns the close code.
    pub async fn closed(&mut self) -> Ended {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(end) => return end,
            }
        }
    }

    /// Sends a chat; returns the ack.
    pub async fn chat(&mut self, agent: &str, content: &str, session: Option<&str>) -> Value {
        let id = uuid::Uuid::now_v7().to_string();
        self.send_chat(&id, agent, content, session).await;
        let (ack, _) = self.until("ack").await;
        assert_eq!(ack["id"], id.as_str());
        ack
    }

    pub async fn send_chat(&mut self, id: &str, agent: &str, content: &str, session: Option<&str>) {
        let mut payload = json!({ "agent_id": agent, "content": content });
        if let Some(s) = session {
            payload["session_id"] = json!(s);
        }
        self.send(json!({ "type": "chat", "id": id, "payload": payload })).await;
    }

    pub async fn close(mut self) {
        let _ =
            self.socket.close(Some(CloseFrame { code: 1000.into(), reason: "bye".into() })).await;
    }
}

/// What the test gateway does with `chat.send`.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Answers `started`, streams the echo word by word (cumulative `message`), ends with
    /// `final`, then sends a late second terminal `error` for the same run.
    Echo,
    /// Like `Echo`, with `pause` between deltas.
    Slow(Duration),
    /// Never answers.
    Hang,
    /// Answers `started`, then the run fails (twice, like the real gateway).
    Fail,
    /// Answers `started`, streams two deltas, then drops the socket.
    DropMidStream,
    /// Answers with `ok:false`.
    Refuse,
    /// Streams `n` deltas of `size` bytes each as fast as it can, then `final`.
    Flood { n: usize, size: usize },
    /// Answers `started`, one delta with the whole echo, `final` (for load tests).
    Quick,
}

/// A gateway on the relay's gateway socket.
pub struct TestGateway {
    pub mode: Arc<Mutex<Mode>>,
    pub requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    pub async fn connect(base: &str, gateway_id: &str, relay_token: &str, mode: Mode) -> Self {
        let url = ws_url(base, &format!("/ws/gateway/{gateway_id}/relay"));
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(url, None, true).await.unwrap();
        socket
            .send(Message::Text(
                json!({ "type": "auth", "payload": { "relay_token": relay_token } })
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        let ok = tokio::time::timeout(WAIT, socket.next()).await.unwrap().unwrap().unwrap();
        let ok: Value = serde_json::from_str(ok.to_text().unwrap()).unwrap();
        assert_eq!(ok["type"], "auth_ok", "{ok}");
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(socket, mode.clone(), requests.clone()));
        Self { mode, requests, task }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn methods(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r["method"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Drops the connection abruptly.
    pub fn kill(self) {
        self.task.abort();
    }

    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Drops the gateway's socket (its task ends without a close frame).
    pub fn stop(&self) {
        self.task.abort();
    }
}

fn event(payload: Value) -> Message {
    Message::Text(
        json!({ "type": "event", "event": "chat", "payload": payload }).to_string().into(),
    )
}

fn delta(run: &str, key: &str, seq: u64, delta: &str, text: &str) -> Message {
    event(json!({
        "runId": run, "sessionKey": key, "agentId": "main", "seq": seq, "state": "delta", "deltaText": delta,
        "message": { "role": "assistant", "content": [{ "type": "text", "text": text }], "timestamp": 1 },
    }))
}

async fn serve(mut socket: Socket, mode: Arc<Mutex<Mode>>, requests: Arc<Mutex<Vec<Value>>>) {
    // Runs in progress, to answer chat.abort.
    let mut live: Vec<(String, String, String)> = vec![];
    while let Some(Ok(msg)) = socket.next().await {
        let Message::Text(text) = msg else { continue };
        let req: Value = serde_json::from_str(&text).unwrap();
        if req["type"] != "req" {
            continue;
        }
        requests.lock().unwrap().push(req.clone());
        let id = req["id"].clone();
        let params = &req["params"];
        match req["method"].as_str().unwrap_or("") {
            "chat.send" => {
                let run = params["idempotencyKey"].as_str().unwrap().to_owned();
                let key = params["sessionKey"].as_str().unwrap().to_owned();
                let message = params["message"].as_str().unwrap().to_owned();
                let mode = mode.lock().unwrap().clone();
                if mode == Mode::Hang {
                    continue;
                }
                if mode == Mode::Refuse {
                    let res = json!({ "type": "res", "id": id, "ok": false, "error": { "code": "INVALID_REQUEST", "message": "refused by test" } });
                    socket.send(Message::Text(res.to_string().into())).await.unwrap();
                    continue;
                }
                let res = json!({ "type": "res", "id": id, "ok": true, "payload": { "runId": run, "status": "started" } });
                socket.send(Message::Text(res.to_string().into())).await.unwrap();
                let status = json!({ "runId": run, "sessionKey": key, "seq": 1, "state": "status", "phase": "preparing_context" });
                socket.send(event(status)).await.unwrap();
                match mode {
                    Mode::Quick => {
                        let reply = format!("Echo: {message}");
                        socket.send(delta(&run, &key, 2, &reply, &reply)).await.unwrap();
                        let fin = json!({ "runId": run, "sessionKey": key, "seq": 3, "state": "final",
                            "message": { "role": "assistant", "content": [{ "type": "text", "text": reply }] } });
                        socket.send(event(fin)).await.unwrap();
                    }
                    Mode::Fail => {
                        for (seq, text) in [
                            (5, "No route-compatible authentication source"),
                            (1, "⚠️ Agent failed before reply"),
                        ] {
                            let e = json!({ "runId": run, "sessionKey": key, "seq": seq, "state": "error", "errorMessage": text });
                            socket.send(event(e)).await.unwrap();
                        }
                    }
                    Mode::DropMidStream => {
                        socket.send(delta(&run, &key, 2, "Echo:", "Echo:")).await.unwrap();
                        socket
                            .send(delta(&run, &key, 3, " partial", "Echo: partial"))
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                    Mode::Flood { n, size } => {
                        let piece = "x".repeat(size);
                        let mut text = String::new();
                        for i in 0..n {
                            text.push_str(&piece);
                            // deltaText only (no cumulative message) to keep frames small.
                            let e = json!({ "runId": run, "sessionKey": key, "seq": i + 2, "state": "delta", "deltaText": piece });
                            if socket.send(event(e)).await.is_err() {
                                return;
                            }
                        }
                        let fin = json!({ "runId": run, "sessionKey": key, "seq": n + 2, "state": "final", "message": { "role": "assistant", "content": "done" } });
                        let _ = socket.send(event(fin)).await;
                    }
                    Mode::Echo | Mode::Slow(_) => {
                        let pause = if let Mode::Slow(p) = mode { p } else { Duration::ZERO };
                        live.push((run.clone(), key.clone(), String::new()));
                        let reply = format!("Echo: {message}");
                        let mut text = String::new();
                        let mut seq = 2;
                        for (i, word) in reply.split(' ').enumerate() {
                            let piece = if i == 0 { word.to_owned() } else { format!(" {word}") };
                            text.push_str(&piece);
                            socket.send(delta(&run, &key, seq, &piece, &text)).await.unwrap();
                            seq += 1;
                            if !pause.is_zero() {
                                // While pausing, answer an abort for this run.
                                if let Ok(Some(Ok(Message::Text(t)))) =
                                    tokio::time::timeout(pause, socket.next()).await
                                {
                                    let r: Value = serde_json::from_str(&t).unwrap();
                                    requests.lock().unwrap().push(r.clone());
                                    if r["method"] == "chat.abort" {
                                        let aborted = json!({ "runId": run, "sessionKey": key, "seq": seq, "state": "aborted", "stopReason": "rpc",
                                            "message": { "role": "assistant", "content": [{ "type": "text", "text": text }] } });
                                        socket.send(event(aborted)).await.unwrap();
                                        let res = json!({ "type": "res", "id": r["id"], "ok": true, "payload": { "ok": true, "aborted": true, "runIds": [run] } });
                                        socket
                                            .send(Message::Text(res.to_string().into()))
                                            .await
                                            .unwrap();
                                        live.retain(|(r, _, _)| *r != run);
                                        text.clear();
                                        break;
                                    }
                                }
                            }
                        }
                        if text.is_empty() {
                            continue;
                        }
                        let fin = json!({ "runId": run, "sessionKey": key, "seq": seq, "state": "final", "stopReason": "stop",
                            "message": { "role": "assistant", "content": [{ "type": "text", "text": text }] } });
                        socket.send(event(fin)).await.unwrap();
                        // A late, second terminal event for the same run must be ignored.
                        let late = json!({ "runId": run, "sessionKey": key, "seq": 1, "state": "error", "errorMessage": "late duplicate" });
                        socket.send(event(late)).await.unwrap();
                        live.retain(|(r, _, _)| *r != run);
                    }
                    Mode::Hang | Mode::Refuse => {}
                }
            }
            "chat.abort" => {
                let res = json!({ "type": "res", "id": id, "ok": true, "payload": { "ok": true, "aborted": false, "runIds": [] } });
                socket.send(Message::Text(res.to_string().into())).await.unwrap();
            }
            other => {
                let res = json!({ "type": "res", "id": id, "ok": false, "error": { "code": "INVALID_REQUEST", "message": format!("unknown method: {other}") } });
                socket.send(Message::Text(res.to_string().into())).await.unwrap();
            }
        }
    }
}
