//! The relay's sockets at their edges, over real sockets: connection caps, unauthenticated
//! places, origins, the gateway socket's checks before and after `auth`, bad upgrades, slow
//! consumers, fuzzed frames, token expiry and sign-outs closing sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::ws::{Client, Ended, Mode};
use common::{ChatFixture, HttpConfig, PASSWORD, TestServer};
use futures_util::{SinkExt, StreamExt};
use mc_core::Role;
use mc_core::relay::RelayLimits;
use mc_core::socket::SocketLimits;
use serde_json::{Value, json};

#[tokio::test]
async fn connection_limits() {
    let f = ChatFixture::with(
        RelayLimits::default().with_max_connections_per_user(2),
        HttpConfig::default().with_max_connections(4),
    )
    .await;
    let (_a, _) = f.client().await;
    let (_b, _) = f.client().await;
    let mut third = Client::connect(&f.s.base).await;
    third.send(json!({ "type": "auth", "payload": { "token": f.token } })).await;
    assert_eq!(third.expect("error").await["payload"]["code"], "RATE_LIMITED");
    assert_eq!(third.closed().await, Ended::Closed(1013));

    let (_bob, token) = f.another_user("bob").await;
    let (_c, _) = Client::authed(&f.s.base, &token).await;
    let (_d, _) = Client::authed(&f.s.base, &token).await;
    // The instance is full (4 sockets): the next one is closed with 1013 once it signs in
    // (unauthenticated sockets have places of their own).
    let mut over = Client::connect(&f.s.base).await;
    over.send(json!({ "type": "auth", "payload": { "token": token } })).await;
    assert_eq!(over.closed().await, Ended::Closed(1013));
}

/// Idle unauthenticated sockets have their own caps (in all and per address): they cannot
/// take signed-in users' places, and a socket that signs in frees its place.
#[tokio::test]
async fn unauthenticated_sockets_cannot_crowd_out_users() {
    let f = ChatFixture::with_http(
        HttpConfig::default()
            .with_max_connections(4)
            .with_max_unauthenticated(3)
            .with_max_unauthenticated_per_ip(2),
    )
    .await;
    let idle_a = Client::connect(&f.s.base).await;
    let mut idle_b = Client::connect(&f.s.base).await;
    let url = common::ws::ws_url(&f.s.base, "/ws/chat");
    let err = tokio_tungstenite::connect_async(url.as_str()).await.unwrap_err();
    assert!(err.to_string().contains("503"), "two per address: {err}");
    // One signs in: its place is free again, and it counts among the instance's sockets.
    idle_b.send(json!({ "type": "auth", "payload": { "token": f.token } })).await;
    idle_b.expect("auth_ok").await;
    let (mut user, _) = f.client().await;
    user.send(json!({ "type": "heartbeat", "id": "ok" })).await;
    assert_eq!(user.expect("heartbeat").await["id"], "ok");
    // Gateways' sockets take the same places until they authenticate.
    let gateway_url = common::ws::ws_url(&f.s.base, &format!("/ws/gateway/{}/relay", f.gateway_id));
    let _idle_gateway = tokio_tungstenite::connect_async(gateway_url.as_str()).await.unwrap();
    let err = tokio_tungstenite::connect_async(url.as_str()).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    drop(idle_a);
}

#[tokio::test]
async fn origins_outside_the_allowlist_are_refused() {
    let f = ChatFixture::with_http(
        HttpConfig::default().with_allowed_origins(vec!["https://app.example.com".into()]),
    )
    .await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = common::ws::ws_url(&f.s.base, "/ws/chat").into_client_request().unwrap();
    request.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut request = common::ws::ws_url(&f.s.base, "/ws/chat").into_client_request().unwrap();
    request.headers_mut().insert("origin", "https://app.example.com".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

#[tokio::test]
async fn logout_closes_the_users_sockets_with_4001() {
    let f = ChatFixture::new().await;
    let session = f.s.login_ok("alice", PASSWORD).await;
    let (mut c, _) = Client::authed(&f.s.base, session["access_token"].as_str().unwrap()).await;
    f.s.post("/api/v1/auth/logout", None, json!({ "refresh_token": session["refresh_token"] }))
        .await;
    assert_eq!(c.closed().await, Ended::Closed(4001));
}

#[tokio::test]
async fn the_gateway_socket_checks_its_relay_token() {
    let f = ChatFixture::new().await;
    let url = common::ws::ws_url(&f.s.base, &format!("/ws/gateway/{}/relay", f.gateway_id));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut gw = Client {
        socket: {
            socket
                .send(tokio_tungstenite::tungstenite::Message::Text(
                    json!({"type":"auth","payload":{"relay_token":"gw_relay_wrong"}})
                        .to_string()
                        .into(),
                ))
                .await
                .unwrap();
            socket
        },
    };
    assert_eq!(gw.expect("auth_error").await["payload"]["reason"], "invalid_token");
    assert_eq!(gw.closed().await, Ended::Closed(4001));
    let unknown =
        common::ws::ws_url(&f.s.base, &format!("/ws/gateway/{}/relay", mc_core::GatewayId::new()));
    assert!(
        tokio_tungstenite::connect_async(&unknown).await.unwrap_err().to_string().contains("404")
    );
    // Re-registration revokes the old token: its socket is closed.
    let gw = f.gateway(Mode::Echo).await;
    let reg = f.s.registration_token(json!({})).await;
    let agents = json!([{ "agent_key": "main", "name": "Main" }]);
    let r = f.s.reregister_gateway(&reg, "gw", agents, Some(&f.relay_token)).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.body);
    for _ in 0..100 {
        if !gw.is_running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!gw.is_running(), "the old link was closed");
}

/// Before its `auth` frame is checked a gateway's socket may send only a few KiB: a 1 MiB
/// first frame ends the connection unread with 1009 (no `auth_error`: the frame was never
/// decoded).
/// Once authenticated the same socket takes frames of megabytes.
#[tokio::test]
async fn a_gateway_socket_reads_little_before_it_authenticates() {
    use tokio_tungstenite::tungstenite::Message;
    let f = ChatFixture::new().await;
    let url = common::ws::ws_url(&f.s.base, &format!("/ws/gateway/{}/relay", f.gateway_id));
    let big = format!(r#"{{"type":"event","event":"chat","payload":"{}"}}"#, "x".repeat(1 << 20));

    let (mut stranger, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // The relay stops reading mid-frame, so this send may fail; what it answers is the point.
    let _ = stranger.send(Message::Text(big.clone().into())).await;
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stranger.next().await {
                Some(Ok(Message::Text(text))) => return Err(text.to_string()),
                Some(Ok(Message::Close(close))) => return Ok(close.map(|c| u16::from(c.code))),
                Some(Err(err)) => return Err(err.to_string()),
                None => return Err("no close frame".into()),
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("the relay ends the connection");
    // Not decoded (no `auth_error`), and closed as too big, not cut off (1006).
    assert_eq!(answered, Ok(Some(1009)), "the oversized first frame is refused with 1009");

    let (mut gateway, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let auth = json!({ "type": "auth", "payload": { "relay_token": f.relay_token } });
    gateway.send(Message::Text(auth.to_string().into())).await.unwrap();
    let text = |m: Option<Result<Message, _>>| match m {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    };
    assert_eq!(text(gateway.next().await)["type"], "auth_ok");
    gateway.send(Message::Text(big.into())).await.unwrap();
    let ask = json!({ "type": "req", "id": "after-big", "method": "nothing.here" });
    gateway.send(Message::Text(ask.to_string().into())).await.unwrap();
    let answer = loop {
        let frame = text(gateway.next().await);
        if frame["type"] == "res" {
            break frame;
        }
    };
    assert_eq!(answer["id"], "after-big", "the socket lived through the 1 MiB frame");
    assert_eq!(answer["error"]["code"], "INVALID_REQUEST");
}

/// The relay upgrades sockets itself: a request that is not a WebSocket version 13 upgrade,
/// or names no gateway it knows, gets a JSON error and takes no unauthenticated place, on the
/// users' socket as on the gateways'.
#[tokio::test]
async fn bad_upgrade_requests_get_a_json_error_and_take_no_place() {
    let f = ChatFixture::with_http(HttpConfig::default().with_max_unauthenticated_per_ip(1)).await;
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let without = |name: &str| upgrade.iter().copied().filter(|(h, _)| *h != name).collect();
    let with = |name: &'static str, value: &'static str| {
        let mut headers: Vec<_> = without(name);
        headers.push((name, value));
        headers
    };
    type Headers = Vec<(&'static str, &'static str)>;
    let mut cases: Vec<(String, String, Headers, u16, &str)> = Vec::new();
    for path in [format!("/ws/gateway/{}/relay", f.gateway_id), "/ws/chat".into()] {
        let header_cases: [(&str, Headers, &str); 5] = [
            ("a plain GET", vec![], "Connection: upgrade"),
            ("no Upgrade header", without("upgrade"), "Upgrade: websocket"),
            ("another protocol", with("upgrade", "h2c"), "Upgrade: websocket"),
            ("version 8", with("sec-websocket-version", "8"), "version 13"),
            ("no key", without("sec-websocket-key"), "Sec-WebSocket-Key"),
        ];
        for (what, headers, says) in header_cases {
            cases.push((format!("{path}: {what}"), path.clone(), headers, 400, says));
        }
    }
    cases.push((
        "a bad gateway id".into(),
        "/ws/gateway/nope/relay".into(),
        upgrade.to_vec(),
        400,
        "gateway id",
    ));
    cases.push((
        "an unknown gateway".into(),
        format!("/ws/gateway/{}/relay", mc_core::GatewayId::new()),
        upgrade.to_vec(),
        404,
        "not found",
    ));
    for (what, path, headers, status, says) in cases {
        let mut request = f.s.http.get(format!("{}{path}", f.s.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "{what}");
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {body}");
    }
    // None of them kept a place: the one place this address has still admits the gateway,
    // then (the gateway authenticated, its place freed) a user.
    let gw = f.gateway(Mode::Echo).await;
    let (_alice, _) = Client::authed(&f.s.base, &f.token).await;
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_1013_and_others_are_unaffected() {
    let f = ChatFixture::with_limits(RelayLimits::default().with_live_queue(8)).await;
    let gw = f.gateway(Mode::Echo).await;
    let (_bob, bob_token) = f.another_user("bob").await;
    let (mut bob, _) = Client::authed(&f.s.base, &bob_token).await;

    // Alice's socket barely reads: a 4 KiB receive buffer, and she never polls it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = f.s.base.trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = common::ws::ws_url(&f.s.base, "/ws/chat");
    let (socket, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let mut alice = Client { socket };
    alice.send(json!({ "type": "auth", "payload": { "token": f.token } })).await;
    alice.expect("auth_ok").await;
    gw.set_mode(Mode::Flood { n: 400, size: 8 * 1024 });
    alice.send_chat(&uuid::Uuid::now_v7().to_string(), &f.agent_id, "flood me", None).await;

    // Meanwhile Bob chats normally and is answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.set_mode(Mode::Echo);
    let ack = bob.chat(&f.agent_id, "am I affected?", None).await;
    let (reply, _) = bob.until("chat").await;
    assert_eq!(reply["payload"]["content"], "Echo: am I affected?");
    assert_eq!(reply["payload"]["session_id"], ack["payload"]["session_id"]);

    // Alice was cut off with 1013 (after whatever the kernel had buffered).
    assert_eq!(alice.closed().await, Ended::Closed(1013));
    // She reconnects and resumes: the flood's final reply is stored.
    let (mut again, _) = f.client().await;
    let sessions =
        f.s.services.store().list_user_sessions(f.user.id, mc_core::Page::first(5)).await.unwrap();
    let session = sessions.items[0].id.to_string();
    again.send(json!({ "type": "resume", "payload": { "sessions": [{ "session_id": session, "after_seq": 0 }] } })).await;
    let (resumed, messages) = again.until("resumed").await;
    assert_eq!(resumed["payload"]["last_seq"], 2);
    assert_eq!(messages.len(), 2);
}

/// A few thousand random and mutated frames: every one gets an answer or is ignored, the
/// server never falls over, and the socket (or a fresh one) still works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_frames_never_take_the_server_down() {
    let f = ChatFixture::with(
        RelayLimits::default().with_rate_per_sec(0).with_rate_burst(0),
        HttpConfig::default()
            .with_socket_limits(SocketLimits::default().with_max_violations_per_minute(100_000)),
    )
    .await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    let session = c.chat(&f.agent_id, "seed", None).await["payload"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.until("chat").await;
    let seeds = [
        json!({ "type": "chat", "id": uuid::Uuid::now_v7(), "payload": { "agent_id": f.agent_id, "content": "hi", "session_id": session } }),
        json!({ "type": "history", "id": "h", "payload": { "session_id": session, "before_seq": 3, "limit": 10 } }),
        json!({ "type": "resume", "id": "r", "payload": { "sessions": [{ "session_id": session, "after_seq": 0 }] } }),
        json!({ "type": "abort", "id": "a", "payload": { "session_id": session } }),
        json!({ "type": "sessions", "id": "s" }),
        json!({ "type": "subscribe", "id": "t", "payload": { "topics": ["activity"] } }),
        json!({ "type": "heartbeat", "id": "b" }),
    ];
    // A small deterministic generator (xorshift), so a failure is reproducible.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "null",
        "true",
        "-1",
        "1e999",
        "18446744073709551616",
        "\"type\"",
        "\"chat\"",
        "\"payload\"",
        "\\u0000",
        "é",
        "😀",
        " ",
    ];
    let mut sent = 0;
    for i in 0..3000 {
        let text = match i % 3 {
            // Mutate a valid frame: flip, drop or insert characters.
            0 | 1 => {
                let mut bytes: Vec<char> =
                    seeds[(rand() % seeds.len() as u64) as usize].to_string().chars().collect();
                for _ in 0..(1 + rand() % 4) {
                    let at = (rand() % bytes.len().max(1) as u64) as usize;
                    match rand() % 3 {
                        0 if !bytes.is_empty() => {
                            bytes.remove(at.min(bytes.len() - 1));
                        }
                        1 => bytes.insert(
                            at,
                            pieces[(rand() % pieces.len() as u64) as usize]
                                .chars()
                                .next()
                                .unwrap_or('x'),
                        ),
                        _ if !bytes.is_empty() => {
                            let j = at.min(bytes.len() - 1);
                            bytes[j] = char::from_u32((rand() % 0x7f) as u32).unwrap_or('?');
                        }
                        _ => {}
                    }
                }
                bytes.into_iter().collect::<String>()
            }
            // Random concatenations of JSON-ish pieces.
            _ => (0..(rand() % 12))
                .map(|_| pieces[(rand() % pieces.len() as u64) as usize])
                .collect(),
        };
        if c.socket.send(tokio_tungstenite::tungstenite::Message::Text(text.into())).await.is_err()
        {
            break;
        }
        sent += 1;
        // Drain what came back so far without waiting.
        use futures_util::StreamExt;
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(0), c.socket.next()).await
        {}
    }
    assert_eq!(sent, 3000);
    // The server is up and the socket still answers.
    c.send(json!({ "type": "heartbeat", "id": "still-here" })).await;
    let (hb, _) = c.until("heartbeat").await;
    assert_eq!(hb["id"], "still-here");
    let health = f.s.send(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, reqwest::StatusCode::OK);
    let (mut fresh, _) = f.client().await;
    fresh.chat(&f.agent_id, "after the storm", None).await;
    let (reply, _) = fresh.until("chat").await;
    assert_eq!(reply["payload"]["content"], "Echo: after the storm");
}

#[tokio::test]
async fn a_resume_larger_than_the_socket_queue_arrives_whole() {
    let f = ChatFixture::with_limits(
        RelayLimits::default().with_live_queue(8).with_rate_per_sec(0).with_rate_burst(0),
    )
    .await;
    let _gw = f.gateway(Mode::Quick).await;
    let (mut c, _) = f.client().await;
    let session =
        c.chat(&f.agent_id, "0", None).await["payload"]["session_id"].as_str().unwrap().to_owned();
    c.until("chat").await;
    for i in 1..30 {
        c.chat(&f.agent_id, &i.to_string(), Some(&session)).await;
        c.until("chat").await;
    }
    let (mut back, _) = f.client().await;
    back.send(json!({ "type": "resume", "payload": { "sessions": [{ "session_id": session, "after_seq": 0 }] } })).await;
    let (resumed, messages) = back.until("resumed").await;
    assert_eq!(messages.len(), 60, "60 messages through a queue of 8");
    assert_eq!(resumed["payload"]["last_seq"], 60);
}

#[tokio::test]
async fn a_failing_store_gives_internal_and_keeps_the_socket() {
    let sqlite = mc_store_sqlite::SqliteStore::open_in_memory().await.unwrap();
    let f = ChatFixture::on(std::sync::Arc::new(sqlite.clone()), RelayLimits::default()).await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    sqlite.close().await;
    c.send_chat(&uuid::Uuid::now_v7().to_string(), &f.agent_id, "into the void", None).await;
    let e = c.expect("error").await;
    assert_eq!(e["payload"]["code"], "INTERNAL", "{e}");
    assert!(!e["payload"]["message"].as_str().unwrap().contains("sqlx"), "no internals leak: {e}");
    c.send(json!({ "type": "heartbeat", "id": "still" })).await;
    assert_eq!(c.expect("heartbeat").await["id"], "still");
}

#[tokio::test]
async fn admins_read_their_users_chats_over_http() {
    let f = ChatFixture::new().await;
    let _gw = f.gateway(Mode::Echo).await;
    let (mut c, _) = f.client().await;
    let session = c.chat(&f.agent_id, "for the record", None).await["payload"]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.until("chat").await;

    let listed =
        f.s.get(&format!("/api/v1/sessions?user_id={}", f.user.id), &f.s.admin_token).await;
    assert_eq!(listed.status, reqwest::StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["sessions"][0]["id"], session.as_str());
    assert_eq!(listed.body["sessions"][0]["last_seq"], 2);
    let messages =
        f.s.get(&format!("/api/v1/sessions/{session}/messages?limit=1"), &f.s.admin_token).await;
    assert_eq!(messages.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(messages.body["messages"][0]["content"], "Echo: for the record");
    assert_eq!(messages.body["has_more"], true);
    let older =
        f.s.get(&format!("/api/v1/sessions/{session}/messages?before_seq=2"), &f.s.admin_token)
            .await;
    assert_eq!(older.body["messages"][0]["content"], "for the record");

    for (path, status) in [
        ("/api/v1/sessions".to_owned(), reqwest::StatusCode::BAD_REQUEST),
        ("/api/v1/sessions?user_id=nope".to_owned(), reqwest::StatusCode::BAD_REQUEST),
        (
            format!("/api/v1/sessions?user_id={}", mc_core::UserId::new()),
            reqwest::StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/sessions/{}/messages", mc_core::SessionId::new()),
            reqwest::StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/sessions/{session}/messages?before_seq=-1"),
            reqwest::StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(f.s.get(&path, &f.s.admin_token).await.status, status, "{path}");
    }
    // Members and other organizations' admins see nothing.
    assert_eq!(
        f.s.get(&format!("/api/v1/sessions/{session}/messages"), &f.token).await.status,
        reqwest::StatusCode::FORBIDDEN
    );
    let other = mc_core::Organization {
        id: mc_core::OrgId::new(),
        name: "globex".into(),
        created_at: mc_core::Clock::now(f.s.clock.as_ref()),
    };
    f.s.services.store().create_org(&other).await.unwrap();
    f.s.create_user(other.id, "boss", mc_core::Role::Admin).await;
    let boss =
        f.s.post(
            "/api/v1/auth/login",
            None,
            json!({ "organization": "globex", "username": "boss", "password": PASSWORD }),
        )
        .await
        .body["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(
        f.s.get(&format!("/api/v1/sessions/{session}/messages"), &boss).await.status,
        reqwest::StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.s.get(&format!("/api/v1/sessions?user_id={}", f.user.id), &boss).await.status,
        reqwest::StatusCode::NOT_FOUND
    );
}

/// A fresh `auth` on an open socket reads the store twice: it costs from the user's rate limit
/// like any request, so a flood of them is refused (`RATE_LIMITED`) instead of served.
#[tokio::test]
async fn fresh_auths_on_an_open_socket_are_rate_limited() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "val", Role::Member).await;
    let token = s.login_ok("val", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let (mut c, _) = Client::authed(&s.base, &token).await;
    for i in 0..200 {
        c.send(json!({ "type": "auth", "id": format!("a{i}"), "payload": { "token": token } }))
            .await;
    }
    c.send(json!({ "type": "heartbeat", "id": "last" })).await;
    let (_, answers) = c.until("heartbeat").await;
    let extended = answers.iter().filter(|a| a["type"] == "auth_extended").count();
    let limited = answers.iter().filter(|a| a["payload"]["code"] == "RATE_LIMITED").count();
    assert_eq!(extended + limited, 200, "{answers:?}");
    assert!(limited >= 150 && extended <= 50, "{extended} served, {limited} refused");
}

/// A socket lasts as long as its access token: a fresh `auth` on the open socket extends it
/// (`auth_extended`); without one it closes with `auth_error expired_token` and 4001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_lasts_as_long_as_its_token_unless_given_a_fresh_one() {
    let s = TestServer::start_with(|c| {
        c.password_params(common::cheap_passwords()).access_token_ttl(Duration::from_secs(3))
    })
    .await;
    s.create_user(s.org.id, "tia", Role::Member).await;
    let first = s.login_ok("tia", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let (mut c, _) = Client::authed(&s.base, &first).await;
    // Two seconds later a fresh token (tokens carry whole seconds: the first expires within
    // 2–3 s, the fresh one within 4–5 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.advance(2);
    let fresh = s.login_ok("tia", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    c.send(json!({ "type": "auth", "id": "again", "payload": { "token": fresh } })).await;
    let extended = c.expect("auth_extended").await;
    assert_eq!(extended["id"], "again");
    assert!(extended["payload"]["expires_at"].is_string(), "{extended}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.send(json!({ "type": "heartbeat", "id": "alive" })).await;
    assert_eq!(c.expect("heartbeat").await["id"], "alive", "past the first token's expiry");
    let (frame, _) = c.until("auth_error").await;
    assert_eq!(frame["payload"]["reason"], "expired_token");
    assert_eq!(c.closed().await, Ended::Closed(4001));

    // Another user's token on an open socket: refused, closed.
    s.create_user(s.org.id, "uma", Role::Member).await;
    let other = s.login_ok("uma", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let mine = s.login_ok("tia", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let (mut c, _) = Client::authed(&s.base, &mine).await;
    c.send(json!({ "type": "auth", "id": "swap", "payload": { "token": other } })).await;
    assert_eq!(c.expect("error").await["payload"]["code"], "FORBIDDEN");
    assert_eq!(c.closed().await, Ended::Closed(4001));
}

/// A role change and a password change close the user's sockets (4001), so they reconnect
/// authorised as the account is now.
#[tokio::test]
async fn role_and_password_changes_close_the_users_sockets() {
    let f = ChatFixture::new().await;
    let (mut c, _) = f.client().await;
    let r =
        f.s.patch(
            &format!("/api/v1/users/{}", f.user.id),
            &f.s.admin_token,
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    assert_eq!(c.closed().await, Ended::Closed(4001));

    let session = f.s.login_ok("alice", PASSWORD).await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let (mut c, _) = Client::authed(&f.s.base, &token).await;
    let change = json!({ "password": "a brand new password", "current_password": PASSWORD });
    let r = f.s.patch("/api/v1/auth/me", &token, change).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    assert_eq!(c.closed().await, Ended::Closed(4001));
    // The session that changed it goes on: its token still opens a socket.
    let (_again, _) = Client::authed(&f.s.base, &token).await;
}
