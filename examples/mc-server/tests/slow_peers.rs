//! Peers that never read, against a real `mc-server`: before authenticating and after, such a
//! socket is closed once a write waits past the write deadline, and its place (an
//! unauthenticated one, or one of the user's sockets) is free again; a thousand of them from
//! sixteen addresses leave room for a user from another address to connect and chat.
//!
//! The peers shrink their receive buffer (`SO_RCVBUF`) before connecting, so the relay's
//! answers fill the connection after a few dozen frames, as they would, later, for any peer
//! that stops reading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use testkit::processes::Proc;
use testkit::ws::{Ws, chat, socket};
use tokio::net::TcpSocket;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

/// The write deadline the server runs with in these tests.
const WRITE_TIMEOUT_SECS: u64 = 2;

/// Starts `mc-server serve --demo` on a free port with `extra` flags; returns it, its address
/// and alice's password.
fn demo_server(dir: &std::path::Path, extra: &[&str]) -> (Proc, SocketAddr, String) {
    let db = format!("sqlite://{}", dir.join("demo.db").display());
    let mut child = Command::new(testkit::program("mc-server"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--database", &db])
        .args(["--write-timeout-secs", &WRITE_TIMEOUT_SECS.to_string()])
        .args(extra)
        .env("MC_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut password, mut address) = (None, None);
    while password.is_none() || address.is_none() {
        let line = lines.next().expect("the demo prints its address and passwords").unwrap();
        if let Some(rest) = line.trim().strip_prefix("alice / ") {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(url) = line.strip_prefix("listening on http://") {
            address = Some(url.parse().unwrap());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Proc { child }, address.unwrap(), password.unwrap())
}

/// A socket from `from` that reads nothing: its receive buffer is as small as the kernel
/// allows. `Err` carries the HTTP refusal (e.g. 503) when the upgrade is refused.
async fn deaf_socket(server: SocketAddr, from: Ipv4Addr) -> Result<Ws, String> {
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(2048).unwrap();
    tcp.bind(SocketAddr::from((from, 0))).unwrap();
    let stream = tcp.connect(server).await.map_err(|e| e.to_string())?;
    let url = format!("ws://{server}/ws/chat");
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Sends `n` frames the relay answers, each answer echoing a 128-character id (before `auth`
/// each is also a violation). Gives up after a few seconds: a relay that stops reading lets
/// the sender block.
async fn flood(ws: &mut Ws, n: usize) {
    let id = "i".repeat(128);
    let frame = json!({ "type": "sessions", "id": id }).to_string();
    let sending = async {
        for _ in 0..n {
            if ws.feed(Message::Text(frame.clone().into())).await.is_err() {
                return;
            }
        }
        let _ = ws.flush().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), sending).await;
}

/// Floods every socket at once with `n` frames, each in a task of its own.
fn flood_all(sockets: Vec<Ws>, n: usize) -> Vec<tokio::task::JoinHandle<Ws>> {
    sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                flood(&mut ws, n).await;
                ws
            })
        })
        .collect()
}

/// Retries `attempt` until it succeeds or `within` passes; how long it took.
async fn eventually<T, F: std::future::Future<Output = Result<T, String>>>(
    within: Duration,
    mut attempt: impl FnMut() -> F,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(done) => return (done, started.elapsed()),
            Err(why) => {
                assert!(started.elapsed() < within, "not within {within:?}: {why}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_closed_and_its_place_freed() {
    let dir = tempfile::tempdir().unwrap();
    // A long auth deadline and bad frames tolerated: only the write deadline can free the
    // places.
    let flags = [
        "--auth-timeout-secs",
        "60",
        "--max-violations-per-minute",
        "1000000",
        "--max-unauthenticated-per-ip",
        "8",
        "--max-connections-per-user",
        "1",
    ];
    let (_server, address, password) = demo_server(dir.path(), &flags);
    let from = Ipv4Addr::new(127, 0, 0, 2);

    // Before authenticating: eight deaf sockets take the address's eight places, then flood.
    let mut deaf = Vec::new();
    for _ in 0..8 {
        deaf.push(deaf_socket(address, from).await.unwrap());
    }
    assert!(deaf_socket(address, from).await.unwrap_err().contains("503"), "the places are taken");
    let flooding = flood_all(deaf, 50_000);
    let within = Duration::from_secs(WRITE_TIMEOUT_SECS + 8);
    let (_ninth, took) = eventually(within, || deaf_socket(address, from)).await;
    println!("a place before auth freed {took:?} after the floods began");
    assert!(took >= Duration::from_secs(WRITE_TIMEOUT_SECS) / 2, "not before a write waited");

    // After authenticating: a deaf socket holds the user's one socket until a write times out.
    let base = format!("http://{address}");
    let http = testkit::http_client();
    let token = login_demo(&http, &base, &password).await;
    let (first, _) = socket(&base, &token).await;
    let flooding_too = flood_all(vec![first], 50_000);
    let second = || async { try_socket(&base, &token).await };
    let ((mut second, hello), took) = eventually(within, second).await;
    println!("a user's place freed {took:?} after the flood began");
    assert!(took >= Duration::from_secs(WRITE_TIMEOUT_SECS) / 2, "not before a write waited");
    let agent = hello["assignments"][0]["agent_id"].as_str().unwrap().to_owned();
    let (_, reply) = chat(&mut second, &agent, "still here", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: still here");
    drop((flooding, flooding_too));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deaf_sockets_leave_room_for_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, address, password) = demo_server(dir.path(), &[]);
    let mut deaf = Vec::new();
    let mut refused = 0;
    for i in 0..1024u32 {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (i % 16) as u8);
        match deaf_socket(address, from).await {
            Ok(ws) => deaf.push(ws),
            Err(_) => refused += 1,
        }
    }
    println!("{} deaf sockets open, {refused} refused", deaf.len());
    assert!(deaf.len() >= 990, "they fill the unauthenticated places: {}", deaf.len());
    assert!(refused > 0, "the places are all taken");
    // Each floods past the bad frames tolerated (100 a minute) and never reads.
    let flooding = flood_all(deaf, 2_000);

    let base = format!("http://{address}");
    let http = testkit::http_client();
    let token = login_demo(&http, &base, &password).await;
    let within = Duration::from_secs(WRITE_TIMEOUT_SECS + 15);
    let ((mut ws, hello), took) = eventually(within, || try_socket(&base, &token)).await;
    println!("a user from 127.0.0.1 connected after {took:?}");
    let agent = hello["assignments"][0]["agent_id"].as_str().unwrap().to_owned();
    let (_, reply) = chat(&mut ws, &agent, "room for me", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: room for me");
    drop(flooding);
}

/// Signs alice of the demo organization in.
async fn login_demo(http: &reqwest::Client, base: &str, password: &str) -> String {
    let body = json!({ "organization": "demo", "username": "alice", "password": password });
    let r = http.post(format!("{base}/api/v1/auth/login")).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// Opens and authenticates a socket (with `auth_ok`'s payload); the refusal when the relay has
/// no place for it.
async fn try_socket(base: &str, token: &str) -> Result<(Ws, serde_json::Value), String> {
    let url = format!("{}/ws/chat", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
    let auth = json!({ "type": "auth", "payload": { "token": token } });
    ws.send(Message::Text(auth.to_string().into())).await.map_err(|e| e.to_string())?;
    match testkit::ws::next(&mut ws).await {
        Ok(frame) if frame["type"] == "auth_ok" => Ok((ws, frame["payload"].clone())),
        Ok(frame) => Err(format!("{frame}")),
        Err(code) => Err(format!("closed {code}")),
    }
}
