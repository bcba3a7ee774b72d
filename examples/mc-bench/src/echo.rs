//! The floor: a bare tokio-tungstenite echo server (one hop, nothing stored), and its
//! closed-loop clients sending the same frames the relay's users send.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::figures::join_latencies;
use super::procs::until_stdin_closes;

/// Serves the echo server; prints `READY ws://…`.
pub async fn serve() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("READY ws://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    until_stdin_closes().await
}

/// One closed-loop run of `users` clients, `messages` each.
pub async fn run(
    url: &str,
    users: usize,
    messages: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let mut sockets = Vec::with_capacity(users);
    for _ in 0..users {
        sockets.push(tokio_tungstenite::connect_async_with_config(url, None, true).await?.0);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            for m in 0..messages {
                let t = Instant::now();
                ws.send(Message::Text(super::chat_frame(i, m, None).into())).await?;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(_))) => break,
                        Some(Ok(_)) => continue,
                        _ => anyhow::bail!("the echo server went away"),
                    }
                }
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    Ok((join_latencies(tasks).await?, started.elapsed()))
}
