//! Several instances as real processes on loopback (README, "Several instances"): two `mc-server serve
//! --redis` on one PostgreSQL and one Redis, the shipped nginx configuration in front of them,
//! the echo bridge as its own process, users on WebSockets. Chat, admin events, devices and
//! the per-user socket limit across instances; an instance killed with SIGKILL (the user's,
//! then the gateway's) and nothing lost or duplicated; an instance drained with SIGTERM handing
//! its gateway over; Redis and PostgreSQL restarted under the instances and everything
//! recovering by itself.
//!
//! Needs `MC_TEST_POSTGRES_URL` (a fresh database is created per test), `redis-server`,
//! `initdb` and nginx; skipped without them, except under CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::{Cluster, Database, ready, reconnect};
use serde_json::{Value, json};
use testkit::ws::*;

/// Waits for the `chat` frame of `role` with `content`; returns the frames before it.
async fn until_message(ws: &mut Ws, role: &str, content: &str) -> Vec<Value> {
    let mut before = vec![];
    loop {
        let (frame, skipped) = until(ws, "chat").await;
        before.extend(skipped);
        if frame["payload"]["role"] == role && frame["payload"]["content"] == content {
            return before;
        }
        before.push(frame);
    }
}

/// Sends a chat and waits for its ack and the agent's reply; an `error` frame fails the test
/// (`common::chat` would wait past it).
async fn chat_strict(ws: &mut Ws, agent: &str, text: &str, session: Option<&str>) -> Value {
    send_chat(ws, agent, text, session).await;
    within(30, "no reply", async {
        loop {
            let frame = next(ws).await.unwrap();
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "chat" && frame["payload"]["role"] == "agent" {
                return frame;
            }
        }
    })
    .await
}

/// Runs `work`, failing the test with `what` if it takes more than `secs` seconds (frames such
/// as heartbeats may keep a per-frame timeout from ever firing).
async fn within<T>(secs: u64, what: &str, work: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), work).await {
        Ok(done) => done,
        Err(_) => panic!("{what} (within {secs} s)"),
    }
}

/// A socket that authenticates, or the refusal: (error frame, close code).
async fn try_socket(base: &str, token: &str) -> Result<Ws, (Value, u16)> {
    let url = format!("{}/ws/chat", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    send(&mut ws, json!({ "type": "auth", "payload": { "token": token } })).await;
    let first = next(&mut ws).await.unwrap();
    if first["type"] == "auth_ok" {
        return Ok(ws);
    }
    let code = loop {
        match next(&mut ws).await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    Err((first, code))
}

/// The stored messages of `session`, as (seq, role, content).
async fn history(ws: &mut Ws, session: &str) -> Vec<(u64, String, String)> {
    let id = uuid::Uuid::now_v7().to_string();
    send(
        ws,
        json!({ "type": "history", "id": id, "payload": { "session_id": session, "limit": 200 } }),
    )
    .await;
    loop {
        let (frame, _) = until(ws, "history").await;
        if frame["id"] == id.as_str() {
            return frame["payload"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["seq"].as_u64().unwrap(),
                        m["role"].as_str().unwrap().to_owned(),
                        m["content"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
        }
    }
}

/// Asserts `stored` holds each of `sent` once as a user message and its echo once as the
/// agent's reply, with gapless seqs from 1, and nothing else.
fn assert_each_once(stored: &[(u64, String, String)], sent: &[&str]) {
    let seqs: Vec<u64> = stored.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>(), "gapless: {stored:?}");
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (_, role, content) in stored {
        *counts.entry((role.clone(), content.clone())).or_default() += 1;
    }
    let mut wanted = BTreeMap::new();
    for text in sent {
        wanted.insert(("user".to_owned(), (*text).to_owned()), 1);
        wanted.insert(("agent".to_owned(), format!("Echo: {text}")), 1);
    }
    assert_eq!(counts, wanted, "each message once, each reply once: {stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_chat_admin_events_devices_and_the_socket_limit() {
    if !ready(&Database::Shared) {
        return;
    }
    let cluster = Cluster::new(Database::Shared);
    let http = cluster.http.clone();
    let alice = cluster.user("alice");
    let a = cluster.instance("relay-a", &["--max-connections-per-user", "3"]);
    let b = cluster.instance("relay-b", &["--max-connections-per-user", "3"]);

    // An admin on A subscribes before the gateway links to B.
    let admin_token = login(&http, &a.base, "admin", "admin-password").await;
    let (mut admin, _) = socket(&a.base, &admin_token).await;
    send(&mut admin, json!({ "type": "subscribe", "id": "s", "payload": { "topics": ["gateway.status", "activity"] } })).await;
    send(&mut admin, json!({ "type": "heartbeat", "id": "sync" })).await;
    until(&mut admin, "heartbeat").await;
    let _bridge = cluster.bridge("gw-b", &b.base, 20);
    let (agent, gateway) = cluster.agent_online(&a.base, &[&alice]).await;
    loop {
        let (event, _) = until(&mut admin, "event").await;
        if event["payload"]["topic"] == "gateway.status"
            && event["payload"]["payload"]["status"] == "online"
        {
            break;
        }
    }
    let path = format!("/api/v1/gateways/{gateway}/connections");
    let on_b = get_json(&http, &b.base, &path, &admin_token).await;
    assert_eq!(on_b["instance"], "relay-b", "{on_b}");
    assert_eq!(on_b["connections"].as_array().map(Vec::len), Some(1), "{on_b}");
    let on_a = get_json(&http, &a.base, &path, &admin_token).await;
    assert_eq!(on_a["instance"], "relay-a", "{on_a}");

    // Alice's phone on A chats with the agent whose gateway is on B: the reply streams across.
    let token = login(&http, &a.base, "alice", "alice-password").await;
    let (mut phone, hello) = socket(&a.base, &token).await;
    assert_eq!(hello["assignments"][0]["status"], "online", "{hello}");
    let (mut laptop, _) = socket(&b.base, &token).await;
    let (ack, reply) = chat(&mut phone, &agent, "hello from relay a", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: hello from relay a");
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    // Her laptop on B sees the message and the reply.
    until_message(&mut laptop, "user", "hello from relay a").await;
    let streamed = until_message(&mut laptop, "agent", "Echo: hello from relay a").await;
    assert!(streamed.iter().any(|f| f["type"] == "chunk"), "{streamed:?}");
    // The other way: the laptop on B writes in the same session; the phone on A follows.
    let (_, reply) = chat(&mut laptop, &agent, "and from relay b", Some(&session)).await;
    assert_eq!(reply["payload"]["seq"], 4);
    until_message(&mut phone, "user", "and from relay b").await;
    let streamed = until_message(&mut phone, "agent", "Echo: and from relay b").await;
    assert!(streamed.iter().any(|f| f["type"] == "chunk"), "{streamed:?}");
    // The admin on A saw the activity of B's runs.
    loop {
        let (event, _) = until(&mut admin, "event").await;
        if event["payload"]["topic"] == "activity" {
            break;
        }
    }

    // The per-user limit (3) counts sockets on both instances: two open, a third on A, and a
    // fourth on B is refused; once one closes, B lets one in.
    let third = try_socket(&a.base, &token).await.expect("a third socket");
    let (refusal, code) = match try_socket(&b.base, &token).await {
        Ok(_) => panic!("a fourth socket across instances was let in"),
        Err(refused) => refused,
    };
    assert_eq!(refusal["payload"]["code"], "RATE_LIMITED", "{refusal}");
    assert_eq!(code, 1013);
    drop(third);
    let deadline = Instant::now() + Duration::from_secs(10);
    while try_socket(&b.base, &token).await.is_err() {
        assert!(Instant::now() < deadline, "the closed socket was never counted out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_users_instance_loses_and_duplicates_nothing() {
    if !ready(&Database::Shared) {
        return;
    }
    let cluster = Cluster::new(Database::Shared);
    let http = cluster.http.clone();
    let alice = cluster.user("alice");
    let metrics = ["--metrics-token", "metrics-token-0123456789"];
    let a = cluster.instance("relay-a", &metrics);
    let b = cluster.instance("relay-b", &metrics);
    let nginx = cluster.nginx(&[&a, &b]);
    let front = nginx.http_url();
    // nginx is sticky by source address: every client here is 127.0.0.1, so all of them reach
    // one instance (X) while it lives; the gateway links to the other (Y) directly.
    let (status, body) = cluster.readyz(&front).await;
    assert_eq!(status, 200, "{body}");
    // The instances' /metrics are for a scraper on the private side, never through nginx.
    for (base, want) in [(&a.base, 200), (&front, 404)] {
        let scraped = http.get(format!("{base}/metrics")).bearer_auth(metrics[1]).send().await;
        assert_eq!(scraped.unwrap().status(), want, "{base}");
    }
    let (mut x, y) = if body["instance"] == a.id.as_str() { (a, b) } else { (b, a) };
    let _bridge = cluster.bridge("gw", &y.base, 60);
    let (agent, _) = cluster.agent_online(&y.base, &[&alice]).await;

    let mut ws = reconnect(&http, &front, "alice", "alice-password", Duration::from_secs(10)).await;
    let (ack, _) = chat(&mut ws, &agent, "first message", None).await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    // Three more, each acked by X; their replies are still streaming when X dies.
    let more = ["second message of four words", "third message of four", "fourth and last message"];
    for text in more {
        send_chat(&mut ws, &agent, text, Some(&session)).await;
        until(&mut ws, "ack").await;
    }
    x.kill();

    // The client reconnects through nginx (to Y now) and resumes from the start.
    let mut back =
        reconnect(&http, &front, "alice", "alice-password", Duration::from_secs(30)).await;
    assert_eq!(cluster.readyz(&front).await.1["instance"], y.id.as_str());
    send(&mut back, json!({ "type": "resume", "id": "r", "payload": { "sessions": [{ "session_id": session, "after_seq": 0 }] } })).await;
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    within(30, "not everything came back", async {
        while seen.len() < 8 {
            let frame = next(&mut back).await.unwrap();
            if frame["type"] == "chat" {
                *seen.entry(frame["payload"]["seq"].as_u64().unwrap()).or_default() += 1;
            }
        }
    })
    .await;
    assert!(seen.values().all(|n| *n == 1), "a message came twice: {seen:?}");
    let stored = history(&mut back, &session).await;
    let mut sent = vec!["first message"];
    sent.extend(more);
    assert_each_once(&stored, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_gateways_instance_moves_its_runs() {
    if !ready(&Database::Shared) {
        return;
    }
    let cluster = Cluster::new(Database::Shared);
    let http = cluster.http.clone();
    let alice = cluster.user("alice");
    let a = cluster.instance("relay-a", &[]);
    let b = cluster.instance("relay-b", &[]);
    let nginx = cluster.nginx(&[&a, &b]);
    let front = nginx.http_url();
    // The bridge reaches the relay through nginx (so X, the instance it sticks to); the user
    // is on the other one (Y) directly.
    let (_, body) = cluster.readyz(&front).await;
    let (mut x, y) = if body["instance"] == a.id.as_str() { (a, b) } else { (b, a) };
    let _bridge = cluster.bridge("gw", &front, 150);
    let (agent, gateway) = cluster.agent_online(&y.base, &[&alice]).await;
    let token = login(&http, &y.base, "alice", "alice-password").await;
    let (mut ws, _) = socket(&y.base, &token).await;
    let (ack, _) = chat(&mut ws, &agent, "before the loss", None).await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();

    // A slow reply is streaming through X when X dies.
    let slow = "one two three four five six seven eight nine ten eleven twelve";
    let id = send_chat(&mut ws, &agent, slow, Some(&session)).await;
    let (ack, _) = until(&mut ws, "ack").await;
    assert_eq!(ack["id"], id.as_str());
    until(&mut ws, "chunk").await;
    x.kill();

    // The run ends on Y, completed or with a clear error naming the message; never silence.
    let ended = within(90, "the run in flight never ended", async {
        loop {
            let frame = next(&mut ws).await.unwrap();
            let agent_reply = frame["type"] == "chat"
                && frame["payload"]["role"] == "agent"
                && frame["payload"]["content"] == format!("Echo: {slow}");
            let error = frame["type"] == "error"
                && frame["payload"]["message_id"] == ack["payload"]["message_id"];
            if agent_reply || error {
                break frame;
            }
        }
    })
    .await;
    println!("the run in flight ended with {ended}");
    // The bridge is linked to Y now, and the next message works.
    let path = format!("/api/v1/gateways/{gateway}/connections");
    let admin = login(&http, &y.base, "admin", "admin-password").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(&http, &y.base, &path, &admin).await["connections"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "the bridge did not link to the other instance");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, reply) = chat(&mut ws, &agent, "after the loss", Some(&session)).await;
    assert_eq!(reply["payload"]["content"], "Echo: after the loss");
    // Stored once each: the run in flight has exactly one outcome (a reply or a notice)
    // between its message and the next one.
    let stored = history(&mut ws, &session).await;
    let roles: Vec<&str> = stored.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(roles.len(), 6, "{stored:?}");
    assert_eq!(
        [roles[0], roles[1], roles[2], roles[4], roles[5]],
        ["user", "agent", "user", "user", "agent"],
        "{stored:?}"
    );
    assert_ne!(roles[3], "user", "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_hands_its_gateway_over() {
    if !ready(&Database::Shared) {
        return;
    }
    let cluster = Cluster::new(Database::Shared);
    let http = cluster.http.clone();
    let alice = cluster.user("alice");
    let a = cluster.instance("relay-a", &[]);
    let b = cluster.instance("relay-b", &[]);
    let nginx = cluster.nginx(&[&a, &b]);
    let front = nginx.http_url();
    let (_, body) = cluster.readyz(&front).await;
    let (mut x, y) = if body["instance"] == a.id.as_str() { (a, b) } else { (b, a) };
    let _bridge = cluster.bridge("gw", &front, 100);
    let (agent, _) = cluster.agent_online(&y.base, &[&alice]).await;
    let token = login(&http, &y.base, "alice", "alice-password").await;
    let (mut ws, _) = socket(&y.base, &token).await;

    // SIGTERM while a reply streams through X: X closes the link with 1012 and exits; the
    // bridge links to Y through nginx and the run completes there.
    let words = "the reply of a run that outlives its instance";
    send_chat(&mut ws, &agent, words, None).await;
    until(&mut ws, "chunk").await;
    x.proc.signal("TERM");
    assert_eq!(x.proc.wait_exit(Duration::from_secs(15)), Some(0), "a clean exit");
    let reply = within(60, "the run did not complete after the drain", async {
        loop {
            let frame = next(&mut ws).await.unwrap();
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "chat" && frame["payload"]["role"] == "agent" {
                break frame;
            }
        }
    })
    .await;
    assert_eq!(reply["payload"]["content"], format!("Echo: {words}"));
    let session = reply["payload"]["session_id"].as_str().unwrap().to_owned();
    let reply = chat_strict(&mut ws, &agent, "and the next one", Some(&session)).await;
    assert_eq!(reply["payload"]["content"], "Echo: and the next one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_postgres_restarts_recover_by_themselves() {
    if !ready(&Database::Private) {
        return;
    }
    let mut cluster = Cluster::new(Database::Private);
    let http = cluster.http.clone();
    let alice = cluster.user("alice");
    let mut a = cluster.instance("relay-a", &[]);
    let mut b = cluster.instance("relay-b", &[]);
    let _bridge = cluster.bridge("gw-b", &b.base, 100);
    let (agent, _) = cluster.agent_online(&a.base, &[&alice]).await;
    let token = login(&http, &a.base, "alice", "alice-password").await;
    let (mut ws, _) = socket(&a.base, &token).await;
    let (ack, _) = chat(&mut ws, &agent, "before redis goes", None).await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();

    // Redis dies while a reply streams from B to A: what B publishes meanwhile is lost.
    let words = "one two three four five six seven eight nine ten";
    send_chat(&mut ws, &agent, words, Some(&session)).await;
    until(&mut ws, "ack").await;
    until(&mut ws, "chunk").await;
    cluster.redis.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.readyz(&a.base).await.0 != 503 {
        assert!(Instant::now() < deadline, "/readyz stayed ready without Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.redis.start_again().unwrap();
    // Both instances come back by themselves; A asks its clients to resume (1012).
    let deadline = Instant::now() + Duration::from_secs(30);
    for base in [&a.base, &b.base] {
        while cluster.readyz(base).await.0 != 200 {
            assert!(Instant::now() < deadline, "{base} did not recover from the Redis restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    loop {
        match next(&mut ws).await {
            Ok(_) => continue,
            Err(code) => {
                assert_eq!(code, 1012, "closed so that the client resumes");
                break;
            }
        }
    }
    let (mut ws, _) = socket(&a.base, &token).await;
    send(&mut ws, json!({ "type": "resume", "id": "r", "payload": { "sessions": [{ "session_id": session, "after_seq": 2 }] } })).await;
    within(30, "the reply lost with Redis never came", async {
        loop {
            let (frame, _) = until(&mut ws, "chat").await;
            if frame["payload"]["content"] == format!("Echo: {words}") {
                break;
            }
        }
    })
    .await;
    let reply = chat_strict(&mut ws, &agent, "after redis came back", Some(&session)).await;
    assert_eq!(reply["payload"]["content"], "Echo: after redis came back");

    // PostgreSQL stops: HTTP answers 503-style errors, a chat gets an error frame, nobody
    // panics; once it is back everything works again without a restart.
    cluster.postgres.as_mut().unwrap().stop_immediately().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.readyz(&a.base).await.0 != 503 {
        assert!(Instant::now() < deadline, "/readyz stayed ready without PostgreSQL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http.get(format!("{}/api/v1/agents", a.base)).bearer_auth(&token).send().await.unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string() || body["code"].is_string(), "a JSON error: {body}");
    send_chat(&mut ws, &agent, "while postgres is down", Some(&session)).await;
    let (error, _) = until(&mut ws, "error").await;
    assert!(
        ["INTERNAL", "AGENT_UNAVAILABLE", "UNAVAILABLE"]
            .contains(&error["payload"]["code"].as_str().unwrap_or_default()),
        "{error}"
    );
    cluster.postgres.as_mut().unwrap().start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for base in [&a.base, &b.base] {
        while cluster.readyz(base).await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "{base} did not recover from the PostgreSQL restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The first store calls after the restart may still fail while the pool reconnects: a
    // refused chat is retried (on a new socket if it was closed), for at most 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let (mut fresh, _) = socket(&a.base, &token).await;
        send_chat(&mut fresh, &agent, "after postgres came back", Some(&session)).await;
        let answer = within(30, "no answer to a chat", async {
            loop {
                match next(&mut fresh).await {
                    Ok(f) if f["type"] == "error" => break None,
                    Ok(f) if f["type"] == "chat" && f["payload"]["role"] == "agent" => {
                        break Some(f);
                    }
                    Ok(_) => continue,
                    Err(_) => break None,
                }
            }
        })
        .await;
        if let Some(reply) = answer {
            break reply;
        }
        assert!(Instant::now() < deadline, "chat did not recover after the PostgreSQL restart");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(reply["payload"]["content"], "Echo: after postgres came back");
    for instance in [&mut a, &mut b] {
        assert!(instance.proc.child.try_wait().unwrap().is_none(), "{} exited", instance.id);
    }
    drop(ws);
}
