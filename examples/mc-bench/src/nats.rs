//! The bar: Debian's `nats-server` (a tuned Go broker that stores nothing) with a WebSocket
//! listener on loopback, driven by the same closed loop: each user publishes a request with a
//! reply inbox and waits for the answer; one responder connection (as the relay has one
//! gateway) answers every request.
//!
//! The clients speak NATS's text protocol (`CONNECT`, `SUB`, `PUB`, `MSG`, `PING`/`PONG`) over
//! tokio-tungstenite, the WebSocket library the relay's clients use, so both systems' clients
//! cost the same: the few lines of protocol framing below are the benchmark's own and make no
//! claim to be a NATS client.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::figures::join_latencies;
use super::procs::ChildProcess;
use testkit::free_port;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running `nats-server`, stopped when dropped.
pub struct NatsServer {
    /// The process.
    pub process: ChildProcess,
    /// Its WebSocket URL.
    pub url: String,
    _dir: std::path::PathBuf,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// Starts `nats-server` with a WebSocket listener on a free loopback port.
pub async fn start() -> anyhow::Result<NatsServer> {
    let ws_port = free_port()?;
    let dir = std::env::temp_dir().join(format!("mc-bench-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:-1\"\nwebsocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n}}\n"
        ),
    )?;
    let process =
        ChildProcess::program("nats-server", &["-c".into(), config.display().to_string()])
            .context("nats-server (Debian package nats-server) must be installed")?;
    tokio::task::spawn_blocking(move || testkit::wait_for_port(ws_port, Duration::from_secs(5)))
        .await??;
    Ok(NatsServer { process, url: format!("ws://127.0.0.1:{ws_port}"), _dir: dir })
}

/// A NATS message as delivered.
struct Msg {
    reply: Option<String>,
    payload: Vec<u8>,
}

/// One NATS connection over WebSocket.
struct Conn {
    ws: Ws,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        let mut conn = Self { ws, buf: Vec::with_capacity(4096) };
        conn.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nPING\r\n")
            .await?;
        loop {
            let line = conn.control_line().await?;
            if line.starts_with(b"PONG") {
                return Ok(conn);
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(bytes.to_vec().into())).await?;
        Ok(())
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    self.buf.extend_from_slice(&b);
                    return Ok(());
                }
                Some(Ok(Message::Text(t))) => {
                    self.buf.extend_from_slice(t.as_bytes());
                    return Ok(());
                }
                Some(Ok(_)) => continue,
                _ => bail!("nats-server closed the connection"),
            }
        }
    }

    /// The next protocol line (without CRLF), answering `PING`s.
    async fn control_line(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                if line.starts_with(b"PING") {
                    self.send(b"PONG\r\n").await?;
                    continue;
                }
                if line.starts_with(b"-ERR") {
                    bail!("nats-server: {}", String::from_utf8_lossy(&line));
                }
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    /// The next `MSG`.
    async fn next_msg(&mut self) -> anyhow::Result<Msg> {
        loop {
            let line = self.control_line().await?;
            if !line.starts_with(b"MSG ") {
                continue; // +OK, INFO
            }
            let text = String::from_utf8(line)?;
            let parts: Vec<&str> = text.split(' ').collect();
            let (reply, size) = match parts[..] {
                [_, _, _, reply, size] => (Some(reply.to_owned()), size),
                [_, _, _, size] => (None, size),
                _ => bail!("bad MSG line: {text}"),
            };
            let size: usize = size.parse()?;
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            let payload: Vec<u8> = self.buf.drain(..size + 2).take(size).collect();
            return Ok(Msg { reply, payload });
        }
    }

    async fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        self.send(&pub_frame(subject, reply, payload)).await
    }
}

/// A `PUB` of `payload` to `subject`.
fn pub_frame(subject: &str, reply: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let mut frame = match reply {
        Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()).into_bytes(),
        None => format!("PUB {subject} {}\r\n", payload.len()).into_bytes(),
    };
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

const SUBJECT: &str = "bench.echo";

/// The responder: answers every request with its payload, first in `deltas` pieces, then
/// whole (as the relay's gateway streams a reply, then ends it), every message of one answer
/// written with one flush. Runs until the server goes.
pub async fn responder(
    url: &str,
    deltas: super::round_trips::Deltas,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut conn = Conn::connect(url).await?;
    conn.send(format!("SUB {SUBJECT} 1\r\nPING\r\n").as_bytes()).await?;
    while !conn.control_line().await?.starts_with(b"PONG") {}
    Ok(tokio::spawn(async move {
        while let Ok(msg) = conn.next_msg().await {
            let Some(reply) = msg.reply else { continue };
            let n = deltas.load(std::sync::atomic::Ordering::Relaxed).max(1);
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            let mut frames = Vec::new();
            for piece in super::relay::pieces(&text, n) {
                frames.extend(pub_frame(&reply, None, piece.as_bytes()));
            }
            frames.extend(pub_frame(&reply, None, &msg.payload));
            if conn.send(&frames).await.is_err() {
                return;
            }
        }
    }))
}

/// One closed-loop run of `users` requesters, `messages` each, every answer in `deltas`
/// pieces and then whole.
pub async fn run(
    url: &str,
    users: usize,
    messages: usize,
    deltas: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let mut conns = Vec::with_capacity(users);
    for i in 0..users {
        let mut conn = Conn::connect(url).await?;
        let inbox = format!("_INBOX.bench.{}.{i}", std::process::id());
        conn.send(format!("SUB {inbox} 1\r\nPING\r\n").as_bytes()).await?;
        while !conn.control_line().await?.starts_with(b"PONG") {}
        conns.push((conn, inbox));
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut conn, inbox)) in conns.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            for m in 0..messages {
                let t = Instant::now();
                let payload = super::chat_frame(i, m, None);
                conn.publish(SUBJECT, Some(&inbox), payload.as_bytes()).await?;
                // The pieces, then the whole answer.
                for _ in 0..=deltas.max(1).min(payload.chars().count()) {
                    conn.next_msg().await?;
                }
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    Ok((join_latencies(tasks).await?, started.elapsed()))
}
