//! The relay end to end over real sockets: a port-0 server with SQLite, users on `/ws/chat`,
//! and a test gateway speaking OpenClaw frames on `/ws/gateway/{id}/relay`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::ws::{Client, Ended, Mode};
use common::{ChatFixture, HttpConfig};
use futures_util::SinkExt;
use mc_core::relay::RelayLimits;
use mc_core::socket::SocketLimits;
use serde_json::{Value, json};

#[tokio::test]
async fn auth_ok_lists_assignments() {
    let f = ChatFixture::new().await;
    let (_client, ok) = f.client().await;
    assert_eq!(ok["user_id"], f.user.id.to_string());
    assert_eq!(ok["protocol"], 1);
    assert_eq!(ok["heartbeat_interval_seconds"], 30);
    let a = &ok["assignments"][0];
    assert_eq!(
        (a["agent_id"].as_str(), a["agent_name"].as_str(), a["status"].as_str()),
        (Some(f.agent_id.as_str()), Some("Main"), Some("pending"))
    );
    let _gw = f.gateway(Mode::Echo).await;
    let (_client, ok) = f.client().await;
    assert_eq!(ok["assignments"][0]["status"], "online");

    // The same list over HTTP, for a member who has no socket yet (and under /h5).
    for path in ["/api/v1/me/agents", "/api/v1/h5/me/agents"] {
        let mine = f.s.get(path, &f.token).await;
        assert_eq!(mine.status, reqwest::StatusCode::OK, "{}", mine.body);
        assert_eq!(mine.body["agents"], ok["assignments"], "{path}");
    }
    let anonymous = f.s.send(reqwest::Method::GET, "/api/v1/me/agents", None, None).await;
    assert_eq!(anonymous.status, reqwest::StatusCode::UNAUTHORIZED);
    let theirs = f.s.get("/api/v1/me/agents", &f.s.admin_token).await;
    assert_eq!(theirs.body["agents"], json!([]), "the admin has no agent assigned");
}

#[tokio::test]
async fn auth_failures_close_the_socket() {
    let f = ChatFixture::new().await;
    let mut c = Client::connect(&f.s.base).await;
    c.send(json!({ "type": "auth", "payload": { "token": "not-a-token" } })).await;
    assert_eq!(c.expect("auth_error").await["payload"]["reason"], "invalid_token");
    assert_eq!(c.closed().await, Ended::Closed(4001));

    // Expired.
    let mut c = Client::connect(&f.s.base).await;
    f.s.advance(16 * 60);
    c.send(json!({ "type": "auth", "payload": { "token": f.token } })).await;
    assert_eq!(c.expect("auth_error").await["payload"]["reason"], "expired_token");
    assert_eq!(c.closed().await, Ended::Closed(4001));
    f.s.advance(-(16 * 60));

    // A frame before auth is refused, then auth still works.
    let mut c = Client::connect(&f.s.base).await;
    c.send(json!({ "type": "sessions", "id": "s1" })).await;
    let e = c.expect("error").await;
    assert_eq!(
        (e["id"].as_str(), e["payload"]["code"].as_str()),
        (Some("s1"), Some("UNAUTHENTICATED"))
    );
    c.send_text("garbage").await;
    assert_eq!(c.expect("error").await["payload"]["code"], "BAD_REQUEST");
    c.send(json!({ "type": "auth", "payload": { "token": f.token } })).await;
    c.expect("auth_ok").await;

    // Suspended: 4003, and an open socket of a user who gets suspended is closed with 4003.
    let (mut open, _) = f.client().await;
    f.s.patch(
        &format!("/api/v1/users/{}", f.user.id),
        &f.s.admin_token,
        json!({ "status": "suspended" }),
    )
    .await;
    assert_eq!(open.closed().await, Ended::Closed(4003));
    let mut c = Client::connect(&f.s.base).await;
    c.send(json!({ "type": "auth", "payload": { "token": f.token } })).await;
    assert_eq!(c.expect("auth_error").await["payload"]["reason"], "suspended");
    assert_eq!(c.closed().await, Ended::Closed(4003));
}

#[tokio::test]
async fn auth_timeout_closes_with_4001() {
    let sockets = SocketLimits::default().with_auth_timeout(Duration::from_millis(200));
    let f = ChatFixture::with_http(HttpConfig::default().with_socket_limits(sockets)).await;
    let mut c = Client::connect(&f.s.base).await;
    assert_eq!(c.expect("auth_error").await["payload"]["reason"], "timeout");
    assert_eq!(c.closed().await, Ended::Closed(4001));
}

#[tokio::test]
async fn chat_streams_stores_and_ignores_a_late_terminal_event() {
    let f = ChatFixture::new().await;
    let gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    let ack = c.chat(&f.agent_id, "Hi there, relay!", None).await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(ack["payload"]["seq"], 1);

    let (reply, before) = c.until("chat").await;
    let chunks: Vec<&Value> = before.iter().filter(|f| f["type"] == "chunk").collect();
    assert_eq!(chunks.len(), 4, "{before:?}");
    let mut text = String::new();
    for chunk in &chunks {
        let p = &chunk["payload"];
        assert_eq!(p["offset"].as_u64().unwrap() as usize, text.len(), "appending offsets");
        assert_eq!(p["session_id"], session.as_str());
        text.push_str(p["delta"].as_str().unwrap());
    }
    assert_eq!(text, "Echo: Hi there, relay!");
    let p = &reply["payload"];
    assert_eq!(
        (p["role"].as_str(), p["content"].as_str(), p["seq"].as_u64()),
        (Some("agent"), Some(text.as_str()), Some(2))
    );
    assert_eq!(p["run_id"], ack["payload"]["message_id"], "the run id is the user message's id");

    // The late `error` after `final` produced nothing: the next frame is the next answer.
    c.send(json!({ "type": "heartbeat", "id": "hb" })).await;
    assert_eq!(c.expect("heartbeat").await["id"], "hb");
    assert_eq!(
        f.history(&session).await,
        vec![
            (1, "user".into(), "Hi there, relay!".into()),
            (2, "agent".into(), "Echo: Hi there, relay!".into()),
        ]
    );
    let sent = gw.requests.lock().unwrap()[0].clone();
    assert_eq!(sent["method"], "chat.send");
    assert_eq!(sent["params"]["idempotencyKey"], ack["payload"]["message_id"]);
    assert!(sent["params"]["sessionKey"].as_str().unwrap().starts_with("agent:main:mc-"));

    // A second message continues the session.
    let ack = c.chat(&f.agent_id, "again", Some(&session)).await;
    assert_eq!(ack["payload"]["seq"], 3);
    let (reply, _) = c.until("chat").await;
    assert_eq!(reply["payload"]["seq"], 4);
}

#[tokio::test]
async fn every_device_of_the_user_gets_the_session() {
    let f = ChatFixture::new().await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut phone, _) = f.client().await;
    let (mut laptop, _) = f.client().await;
    let ack = phone.chat(&f.agent_id, "from my phone", None).await;
    let (reply, _) = phone.until("chat").await;
    // The laptop sees the user's message, the stream and the reply.
    let (echo, _) = laptop.until("chat").await;
    assert_eq!(
        (echo["payload"]["role"].as_str(), echo["payload"]["content"].as_str()),
        (Some("user"), Some("from my phone"))
    );
    assert_eq!(echo["payload"]["session_id"], ack["payload"]["session_id"]);
    let (laptop_reply, chunks) = laptop.until("chat").await;
    // What the agent is doing, then the stream.
    let streamed =
        |c: &&serde_json::Value| c["type"] == "chunk" || c["payload"]["event"] == "agent_status";
    assert!(chunks.iter().all(|c| streamed(&c)), "{chunks:?}");
    assert!(chunks.iter().any(|c| c["type"] == "chunk"), "{chunks:?}");
    assert_eq!(laptop_reply, reply);
}

#[tokio::test]
async fn resume_returns_exactly_the_missed_messages() {
    let f = ChatFixture::new().await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    let session = c.chat(&f.agent_id, "one", None).await["payload"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.until("chat").await;
    c.close().await;

    // While this device is away, another sends two more messages.
    let (mut other, _) = f.client().await;
    other.chat(&f.agent_id, "two", Some(&session)).await;
    other.until("chat").await;
    other.chat(&f.agent_id, "three", Some(&session)).await;
    other.until("chat").await;

    let (mut back, _) = f.client().await;
    back.send(json!({ "type": "resume", "id": "r1", "payload": { "sessions": [{ "session_id": session, "after_seq": 2 }] } })).await;
    let (resumed, missed) = back.until("resumed").await;
    let seqs: Vec<u64> = missed.iter().map(|m| m["payload"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![3, 4, 5, 6]);
    assert!(missed.iter().all(|m| m["type"] == "chat"));
    assert_eq!(missed[0]["payload"]["content"], "two");
    assert_eq!(resumed["payload"], json!({ "session_id": session, "last_seq": 6 }));
    assert_eq!(resumed["id"], "r1");

    // History pages backwards.
    back.send(json!({ "type": "history", "id": "h", "payload": { "session_id": session, "before_seq": 5, "limit": 2 } })).await;
    let h = back.expect("history").await;
    let seqs: Vec<u64> = h["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((seqs, h["payload"]["has_more"].as_bool()), (vec![3, 4], Some(true)));
    back.send(json!({ "type": "sessions", "id": "s" })).await;
    let s = back.expect("sessions").await;
    assert_eq!(s["payload"]["sessions"][0]["session_id"], session.as_str());
    assert_eq!(s["payload"]["sessions"][0]["last_seq"], 6);
}

#[tokio::test]
async fn resume_catches_up_a_run_still_streaming() {
    let f = ChatFixture::new().await;
    let _gw = f.gateway(Mode::Slow(Duration::from_millis(300))).await;
    let (mut c, _) = f.client().await;
    let session = c.chat(&f.agent_id, "a b c d e f", None).await["payload"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.expect("chunk").await;
    c.expect("chunk").await;
    c.close().await;

    let (mut back, _) = f.client().await;
    back.send(json!({ "type": "resume", "payload": { "sessions": [{ "session_id": session, "after_seq": 1 }] } })).await;
    back.expect("resumed").await;
    let catch_up = back.expect("chunk").await;
    assert_eq!(catch_up["payload"]["offset"], 0, "{catch_up}");
    let so_far = catch_up["payload"]["delta"].as_str().unwrap().to_owned();
    assert!(so_far.starts_with("Echo: a"), "{so_far}");
    // Then the stream goes on from there, and the reply is stored and sent.
    let (reply, chunks) = back.until("chat").await;
    let mut text = so_far;
    for chunk in chunks {
        assert_eq!(chunk["payload"]["offset"].as_u64().unwrap() as usize, text.len());
        text.push_str(chunk["payload"]["delta"].as_str().unwrap());
    }
    assert_eq!(text, "Echo: a b c d e f");
    assert_eq!(reply["payload"]["content"], text.as_str());
}

#[tokio::test]
async fn the_same_client_id_twice_stores_one_message() {
    let f = ChatFixture::new().await;
    let gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    let id = uuid::Uuid::now_v7().to_string();
    c.send_chat(&id, &f.agent_id, "only once", None).await;
    let (first, _) = c.until("ack").await;
    c.until("chat").await;
    // The retry (as after a lost ack) names no session either.
    c.send_chat(&id, &f.agent_id, "only once", None).await;
    let second = c.expect("ack").await;
    assert_eq!(first, second, "the same ack");
    let session = first["payload"]["session_id"].as_str().unwrap();
    // And with the session named.
    c.send_chat(&id, &f.agent_id, "only once", Some(session)).await;
    assert_eq!(c.expect("ack").await, first);
    assert_eq!(f.history(session).await.len(), 2, "one user message, one reply");
    assert_eq!(gw.methods(), vec!["chat.send"], "handed to the gateway once");
}

#[tokio::test]
async fn a_hanging_gateway_gives_gateway_timeout() {
    let f = ChatFixture::with_limits(
        RelayLimits::default().with_gateway_timeout(Duration::from_millis(300)),
    )
    .await;
    let _gw = f.gateway(Mode::Hang).await;
    let (mut c, _) = f.client().await;
    let ack = c.chat(&f.agent_id, "hello?", None).await;
    let (error, before) = c.until("error").await;
    assert_eq!(error["payload"]["code"], "GATEWAY_TIMEOUT");
    assert_eq!(error["id"], ack["id"], "the error names the message");
    let system = before.iter().find(|f| f["type"] == "chat").expect("the stored system message");
    assert_eq!(system["payload"]["role"], "system");
    let session = ack["payload"]["session_id"].as_str().unwrap();
    let history = f.history(session).await;
    assert_eq!(history.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(), ["user", "system"]);
}

#[tokio::test]
async fn a_gateway_dropping_mid_stream_stores_nothing_half_done() {
    // The gateway does not come back within the grace period: the run fails, with the
    // message's id, and nothing half done is stored.
    let limits = RelayLimits::default().with_offline_grace(Duration::from_millis(300));
    let f = ChatFixture::with_limits(limits).await;
    let _gw = f.gateway(Mode::DropMidStream).await;
    let (mut c, _) = f.client().await;
    let client_id = uuid::Uuid::now_v7().to_string();
    c.send_chat(&client_id, &f.agent_id, "tell me everything", None).await;
    let (ack, _) = c.until("ack").await;
    let (error, before) = c.until("error").await;
    assert_eq!(error["payload"]["code"], "GATEWAY_ERROR", "{error}");
    assert_eq!(error["id"], client_id.as_str(), "the error names the message");
    assert!(before.iter().any(|f| f["type"] == "chunk"), "it had started streaming");
    let session = ack["payload"]["session_id"].as_str().unwrap();
    let history = f.history(session).await;
    assert_eq!(history.len(), 2);
    assert_eq!((history[0].1.as_str(), history[1].1.as_str()), ("user", "system"));
    assert!(!history.iter().any(|h| h.2.contains("partial")), "no half reply stored: {history:?}");
}

#[tokio::test]
async fn a_failed_run_is_one_error_despite_two_error_events() {
    let f = ChatFixture::new().await;
    let _gw = f.gateway(Mode::Fail).await;
    let (mut c, _) = f.client().await;
    let ack = c.chat(&f.agent_id, "fail please", None).await;
    let (error, _) = c.until("error").await;
    assert_eq!(error["payload"]["code"], "GATEWAY_ERROR");
    assert!(
        error["payload"]["message"].as_str().unwrap().contains("No route-compatible"),
        "the first terminal event wins"
    );
    c.send(json!({ "type": "heartbeat", "id": "x" })).await;
    assert_eq!(c.expect("heartbeat").await["id"], "x", "no second error");
    let session = ack["payload"]["session_id"].as_str().unwrap();
    assert_eq!(f.history(session).await.len(), 2);
}

#[tokio::test]
async fn a_refused_message_is_a_gateway_error() {
    let f = ChatFixture::new().await;
    let _gw = f.gateway(Mode::Refuse).await;
    let (mut c, _) = f.client().await;
    c.chat(&f.agent_id, "x", None).await;
    let (error, _) = c.until("error").await;
    assert_eq!(error["payload"]["code"], "GATEWAY_ERROR");
    assert!(error["payload"]["message"].as_str().unwrap().contains("refused by test"));
}

#[tokio::test]
async fn no_gateway_means_agent_unavailable_and_nothing_stored() {
    let f = ChatFixture::new().await;
    let (mut c, _) = f.client().await;
    c.send_chat(&uuid::Uuid::now_v7().to_string(), &f.agent_id, "anyone?", None).await;
    let e = c.expect("error").await;
    assert_eq!(e["payload"]["code"], "AGENT_UNAVAILABLE");
    let sessions =
        f.s.services.store().list_user_sessions(f.user.id, mc_core::Page::first(10)).await.unwrap();
    assert!(sessions.items.is_empty(), "not even a session was created");
}

#[tokio::test]
async fn requests_about_things_not_yours_are_refused() {
    let f = ChatFixture::new().await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    let session = c.chat(&f.agent_id, "mine", None).await["payload"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.until("chat").await;

    let unassigned = mc_core::AgentId::new().to_string();
    c.send_chat(&uuid::Uuid::now_v7().to_string(), &unassigned, "x", None).await;
    assert_eq!(c.expect("error").await["payload"]["code"], "NOT_ASSIGNED");
    let random = mc_core::SessionId::new().to_string();
    c.send_chat(&uuid::Uuid::now_v7().to_string(), &f.agent_id, "x", Some(&random)).await;
    assert_eq!(c.expect("error").await["payload"]["code"], "SESSION_NOT_FOUND");
    for frame in [
        json!({ "type": "history", "id": "h", "payload": { "session_id": random } }),
        json!({ "type": "resume", "id": "r", "payload": { "sessions": [{ "session_id": random, "after_seq": 0 }] } }),
        json!({ "type": "abort", "id": "a", "payload": { "session_id": random } }),
    ] {
        c.send(frame.clone()).await;
        let e = c.expect("error").await;
        assert_eq!(e["payload"]["code"], "SESSION_NOT_FOUND", "{frame}");
    }

    // Bob, assigned to the same agent, cannot read or write Alice's session.
    let (_bob, bob_token) = f.another_user("bob").await;
    let (mut b, _) = Client::authed(&f.s.base, &bob_token).await;
    b.send(json!({ "type": "history", "id": "h", "payload": { "session_id": session } })).await;
    assert_eq!(b.expect("error").await["payload"]["code"], "SESSION_NOT_FOUND");
    b.send_chat(&uuid::Uuid::now_v7().to_string(), &f.agent_id, "intrude", Some(&session)).await;
    assert_eq!(b.expect("error").await["payload"]["code"], "SESSION_NOT_FOUND");
    assert_eq!(f.history(&session).await.len(), 2);
    // Members cannot subscribe to admin events.
    b.send(json!({ "type": "subscribe", "id": "s", "payload": { "topics": ["activity"] } })).await;
    assert_eq!(b.expect("error").await["payload"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn rate_and_size_limits() {
    // Every request costs a token, a refused one too: the burst of 3 covers the refused
    // message and two more.
    let limits =
        RelayLimits::default().with_rate_per_sec(1).with_rate_burst(3).with_max_content_bytes(100);
    let f = ChatFixture::with(limits, HttpConfig::default().with_max_frame_bytes(1024)).await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    let e = {
        c.send_chat(&uuid::Uuid::now_v7().to_string(), &f.agent_id, &"x".repeat(101), None).await;
        c.expect("error").await
    };
    assert_eq!(e["payload"]["code"], "PAYLOAD_TOO_LARGE");
    let session =
        c.chat(&f.agent_id, "1", None).await["payload"]["session_id"].as_str().unwrap().to_owned();
    c.chat(&f.agent_id, "2", Some(&session)).await;
    c.send_chat(&uuid::Uuid::now_v7().to_string(), &f.agent_id, "3", Some(&session)).await;
    let (e, _) = c.until("error").await;
    assert_eq!(e["payload"]["code"], "RATE_LIMITED");
    let wait = e["payload"]["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 0 && wait <= 1000, "{wait}");

    // A frame over the limit closes the socket with 1009.
    c.send_text(&format!(r#"{{"type":"heartbeat","id":"{}"}}"#, "x".repeat(2000))).await;
    assert_eq!(c.closed().await, Ended::Closed(1009));
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_socket_stays_usable() {
    let f = ChatFixture::new().await;
    let (mut c, _) = f.client().await;
    let agent = &f.agent_id;
    let cases = [
        r#"not json"#.to_owned(),
        r#"[1,2,3]"#.to_owned(),
        r#""a string""#.to_owned(),
        r#"{}"#.to_owned(),
        r#"{"type":42}"#.to_owned(),
        r#"{"type":"teleport"}"#.to_owned(),
        r#"{"type":"chat","payload":{"agent_id":"x","content":"y"}}"#.to_owned(),
        r#"{"type":"chat","id":"not-a-uuid","payload":{}}"#.to_owned(),
        format!(r#"{{"type":"chat","id":"{}","payload":{{"content":"y"}}}}"#, uuid::Uuid::now_v7()),
        format!(r#"{{"type":"chat","id":"{}","payload":{{"agent_id":"{agent}","content":7}}}}"#, uuid::Uuid::now_v7()),
        format!(r#"{{"type":"chat","id":"{}","payload":{{"agent_id":"{agent}","content":"   "}}}}"#, uuid::Uuid::now_v7()),
        r#"{"type":"history","payload":{"session_id":"01a20000-0000-7000-8000-000000000000","limit":100000000000000000000}}"#.to_owned(),
        r#"{"type":"history","payload":{"session_id":"01a20000-0000-7000-8000-000000000000","before_seq":-5}}"#.to_owned(),
        r#"{"type":"resume","payload":{"sessions":"all"}}"#.to_owned(),
        r#"{"type":"abort","payload":{}}"#.to_owned(),
        r#"{"type":"subscribe","payload":{"topics":["weather"]}}"#.to_owned(),
        r#"{"type":"heartbeat","id":12}"#.to_owned(),
        // (An `auth` with a bad token on an open socket closes it: see
        // a_socket_lasts_as_long_as_its_token_unless_given_a_fresh_one.)
        r#"{"type":"auth","payload":{}}"#.to_owned(),
    ];
    for case in &cases {
        c.send_text(case).await;
        let e = c.expect("error").await;
        assert_eq!(e["payload"]["code"], "BAD_REQUEST", "{case} → {e}");
        assert!(!e["payload"]["message"].as_str().unwrap().is_empty());
    }
    c.socket
        .send(tokio_tungstenite::tungstenite::Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let e = c.expect("error").await;
    assert!(e["payload"]["message"].as_str().unwrap().contains("binary"));
    // Still usable.
    c.send(json!({ "type": "heartbeat", "id": "alive" })).await;
    assert_eq!(c.expect("heartbeat").await["id"], "alive");
}

#[tokio::test]
async fn too_many_violations_close_with_4008() {
    let sockets = SocketLimits::default().with_max_violations_per_minute(5);
    let f = ChatFixture::with_http(HttpConfig::default().with_socket_limits(sockets)).await;
    let (mut c, _) = f.client().await;
    for _ in 0..6 {
        c.send_text("{").await;
    }
    assert_eq!(c.closed().await, Ended::Closed(4008));
}

#[tokio::test]
async fn heartbeats_both_ways_and_silence_closes() {
    let f = ChatFixture::with_limits(
        RelayLimits::default().with_heartbeat_interval(Duration::from_millis(200)),
    )
    .await;
    let (mut c, ok) = f.client().await;
    assert_eq!(ok["heartbeat_interval_seconds"], 0);
    // The server's own heartbeat arrives with an id (read raw: `next` skips it).
    use futures_util::StreamExt;
    let raw = tokio::time::timeout(Duration::from_secs(2), c.socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let beat: Value = serde_json::from_str(raw.to_text().unwrap()).unwrap();
    assert_eq!(beat["type"], "heartbeat");
    let id = beat["id"].as_str().expect("the server's heartbeat has an id").to_owned();
    assert!(id.starts_with("srv-"), "{beat}");
    // Answering it keeps the socket open and is not answered again; a client's own
    // heartbeat is.
    c.send(json!({ "type": "heartbeat", "id": id })).await;
    c.send(json!({ "type": "heartbeat", "id": "mine" })).await;
    assert_eq!(c.expect("heartbeat").await["id"], "mine", "the answer was not answered");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.send(json!({ "type": "heartbeat", "id": "srv-1" })).await;
    }
    c.send(json!({ "type": "heartbeat", "id": "still" })).await;
    assert_eq!(c.expect("heartbeat").await["id"], "still", "answers kept it alive");
    // Silent for three intervals: closed.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(matches!(c.closed().await, Ended::Closed(1001) | Ended::Dropped));
}

#[tokio::test]
async fn abort_stops_the_run() {
    let f = ChatFixture::new().await;
    let gw = f.gateway(Mode::Slow(Duration::from_millis(400))).await;
    let (mut c, _) = f.client().await;
    let session = c.chat(&f.agent_id, "a long story to tell", None).await["payload"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.expect("chunk").await;
    c.send(json!({ "type": "abort", "id": "ab", "payload": { "session_id": session } })).await;
    let (error, _) = c.until("error").await;
    assert_eq!(error["payload"]["code"], "GATEWAY_ERROR");
    assert!(error["payload"]["message"].as_str().unwrap().contains("stopped"));
    assert!(gw.methods().contains(&"chat.abort".to_owned()));
    let history = f.history(&session).await;
    assert_eq!(history.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(), ["user", "system"]);
}

#[tokio::test]
async fn users_hear_when_their_agent_goes_offline_and_back() {
    let f = ChatFixture::with_limits(
        RelayLimits::default().with_offline_grace(Duration::from_millis(100)),
    )
    .await;
    let (mut c, _) = f.client().await;
    let gw = f.gateway(Mode::Echo).await;
    let on = c.expect("system").await;
    assert_eq!(on["payload"], json!({ "event": "agent_online", "agent_id": f.agent_id }));
    gw.kill();
    let off = c.expect("system").await;
    assert_eq!(off["payload"], json!({ "event": "agent_offline", "agent_id": f.agent_id }));
    let _gw = f.gateway(Mode::Echo).await;
    let on = c.expect("system").await;
    assert_eq!(on["payload"], json!({ "event": "agent_online", "agent_id": f.agent_id }));
    c.chat(&f.agent_id, "welcome back", None).await;
    c.until("chat").await;
}

#[tokio::test]
async fn admins_subscribe_to_their_organization_events() {
    let f = ChatFixture::new().await;
    let (mut admin, _) = Client::authed(&f.s.base, &f.s.admin_token).await;
    admin.send(json!({ "type": "subscribe", "id": "s", "payload": { "topics": ["gateway.status", "session.created", "activity"] } })).await;
    // Make sure the subscription is in place before things happen.
    admin.send(json!({ "type": "heartbeat", "id": "sync" })).await;
    admin.expect("heartbeat").await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    c.chat(&f.agent_id, "hi", None).await;
    let mut topics = vec![];
    while topics.len() < 4 {
        let e = admin.expect("event").await;
        topics.push(e["payload"]["topic"].as_str().unwrap().to_owned());
        if e["payload"]["topic"] == "gateway.status" {
            assert_eq!(e["payload"]["payload"]["status"], "online");
        }
    }
    assert!(
        topics.contains(&"gateway.status".to_owned())
            && topics.contains(&"session.created".to_owned()),
        "{topics:?}"
    );
    assert!(topics.contains(&"activity".to_owned()));
    admin.send(json!({ "type": "unsubscribe", "payload": { "topics": ["gateway.status", "session.created", "activity"] } })).await;
    admin.send(json!({ "type": "heartbeat", "id": "sync2" })).await;
    let (_, rest) = admin.until("heartbeat").await;
    let _ = rest;
    c.chat(&f.agent_id, "second", None).await;
    admin.send(json!({ "type": "heartbeat", "id": "after" })).await;
    let (hb, between) = admin.until("heartbeat").await;
    assert_eq!(hb["id"], "after");
    assert!(
        between.iter().all(|e| e["type"] != "event"),
        "no events after unsubscribing: {between:?}"
    );
}
