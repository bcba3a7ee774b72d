//! `mc-bench soak`: users chatting and reconnecting at random for minutes while the gateway's
//! link drops every minute; then every acked message is looked up: stored exactly once, and
//! every session's history gapless. The relay's RSS at the start and the end tells whether
//! memory stays flat.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::relay::{Ws, echo_gateway, user_socket};

/// What one user did.
#[derive(Debug, Default)]
pub struct UserTally {
    /// Contents of the messages the relay acked.
    pub acked: Vec<String>,
    /// Of those, how many got the agent's reply (the others were reported failed, or the
    /// socket dropped before the reply arrived).
    pub answered: usize,
    /// `error` frames for a message, by code.
    pub errors: HashMap<String, usize>,
    /// Reconnects.
    pub reconnects: usize,
    /// The user's session.
    pub session: Option<String>,
}

/// A random number in `0..n` (from the OS: these only decide when to drop a socket).
fn chance(n: u128) -> u128 {
    crate::random_bytes::<16>().map_or(1, |b| u128::from_le_bytes(b) % n)
}

/// The next JSON frame within `wait` (server heartbeats answered), or `None` when the socket
/// ended or stayed silent.
async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(wait, ws.next()).await.ok()??.ok()?;
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                return None;
            }
            continue;
        };
        let frame: Value = serde_json::from_str(&text).ok()?;
        if frame["type"] == "heartbeat" {
            if frame["id"].as_str().is_some_and(|id| id.starts_with("srv-")) {
                let answer = json!({ "type": "heartbeat", "id": frame["id"] }).to_string();
                ws.send(Message::Text(answer.into())).await.ok()?;
            }
            continue;
        }
        return Some(frame);
    }
}

/// One user until `deadline`: chat, one message at a time; drop the socket at random (about
/// one message in 30) and reconnect; a message whose ack did not arrive is sent again with the
/// same client id.
pub async fn user(
    base: String,
    token: String,
    agent: String,
    i: usize,
    deadline: Instant,
) -> UserTally {
    let mut tally = UserTally::default();
    let mut pending: Option<(String, String)> = None;
    let mut m = 0usize;
    'connect: while Instant::now() < deadline {
        let Ok(mut ws) = user_socket(&base, &token).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            if Instant::now() >= deadline {
                break 'connect;
            }
            if chance(30) == 0 {
                tally.reconnects += 1;
                continue 'connect;
            }
            let (id, content) = pending.take().unwrap_or_else(|| {
                m += 1;
                (uuid::Uuid::now_v7().to_string(), format!("soak user {i} message {m}"))
            });
            let mut payload = json!({ "agent_id": agent, "content": content });
            if let Some(session) = &tally.session {
                payload["session_id"] = json!(session);
            }
            let frame = json!({ "type": "chat", "id": id, "payload": payload }).to_string();
            if ws.send(Message::Text(frame.into())).await.is_err() {
                pending = Some((id, content));
                continue 'connect;
            }
            let mut acked = false;
            loop {
                let Some(frame) = next_frame(&mut ws, Duration::from_secs(30)).await else {
                    if !acked {
                        pending = Some((id, content));
                    }
                    tally.reconnects += 1;
                    continue 'connect;
                };
                match frame["type"].as_str() {
                    Some("ack") if frame["id"] == id.as_str() && !acked => {
                        acked = true;
                        tally.acked.push(content.clone());
                        tally.session = frame["payload"]["session_id"].as_str().map(str::to_owned);
                    }
                    Some("chat") if frame["payload"]["role"] == "agent" => {
                        tally.answered += usize::from(acked);
                        break;
                    }
                    Some("error") if frame["id"] == id.as_str() => {
                        let code = frame["payload"]["code"].as_str().unwrap_or("?").to_owned();
                        *tally.errors.entry(code).or_default() += 1;
                        if frame["payload"]["code"] == "AGENT_UNAVAILABLE" {
                            // Nothing was stored: send it again in a moment.
                            pending = Some((id, content));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    tally
}

/// The echo gateway, linked and dropped every `every` until `deadline`; how many times.
pub async fn flapping_gateway(
    base: String,
    gateway_id: String,
    relay_token: String,
    every: Duration,
    deadline: Instant,
) -> usize {
    let mut drops = 0;
    while Instant::now() < deadline {
        let Ok(link) = echo_gateway(&base, &gateway_id, &relay_token, Default::default()).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
        link.abort();
        drops += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drops
}

/// What the histories showed.
#[derive(Debug, Default)]
pub struct Check {
    /// Messages stored in all.
    pub stored: usize,
    /// Acked messages not found in their session.
    pub lost: usize,
    /// Acked messages found more than once.
    pub duplicated: usize,
    /// Sessions whose seqs are not 1, 2, … without a gap.
    pub gapped: usize,
}

/// Reads every session's whole history and checks it against what was acked.
pub async fn check(base: &str, tokens: &[String], tallies: &[UserTally]) -> anyhow::Result<Check> {
    let mut out = Check::default();
    for (token, tally) in tokens.iter().zip(tallies) {
        let Some(session) = &tally.session else {
            out.lost += tally.acked.len();
            continue;
        };
        let mut ws = user_socket(base, token).await?;
        let mut messages: Vec<Value> = vec![];
        let mut before: Option<u64> = None;
        loop {
            let mut payload = json!({ "session_id": session, "limit": 200 });
            if let Some(seq) = before {
                payload["before_seq"] = json!(seq);
            }
            let frame = json!({ "type": "history", "id": "h", "payload": payload }).to_string();
            ws.send(Message::Text(frame.into())).await?;
            let page = loop {
                let Some(frame) = next_frame(&mut ws, Duration::from_secs(30)).await else {
                    bail!("no history answer");
                };
                if frame["type"] == "history" {
                    break frame;
                }
            };
            let got = page["payload"]["messages"].as_array().cloned().unwrap_or_default();
            before = got.first().and_then(|m| m["seq"].as_u64());
            let more = page["payload"]["has_more"] == true;
            messages.splice(0..0, got);
            if !more || before.is_none() {
                break;
            }
        }
        out.stored += messages.len();
        let seqs: Vec<u64> = messages.iter().filter_map(|m| m["seq"].as_u64()).collect();
        if seqs.iter().enumerate().any(|(k, seq)| *seq != k as u64 + 1) {
            out.gapped += 1;
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for m in &messages {
            if m["role"] == "user"
                && let Some(content) = m["content"].as_str()
            {
                *counts.entry(content).or_default() += 1;
            }
        }
        for content in &tally.acked {
            match counts.get(content.as_str()).copied().unwrap_or(0) {
                0 => out.lost += 1,
                1 => {}
                _ => out.duplicated += 1,
            }
        }
    }
    Ok(out)
}
