//! A user's WebSocket as the end-to-end tests use it: sign in, open, read frames (answering the
//! server's heartbeats), wait for a kind of frame, chat.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mc_core::protocol::{
    ClientFrame, ClientRequest, SERVER_HEARTBEAT_PREFIX, ServerFrame, decode_server_frame,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A client WebSocket (plain or TLS).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Signs `username` in to organization `acme`; returns the access token.
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

/// Opens `/ws/chat` and authenticates with `token`; returns the socket and `auth_ok`'s payload.
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

/// Reads frames until one of type `kind`; returns it and the frames before it.
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

/// Sends a `chat` and waits for its `ack` and the streamed reply; returns (ack, reply).
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
