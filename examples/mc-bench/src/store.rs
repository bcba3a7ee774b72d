//! The store micro-benchmark: durable appends per second through the relay's group-commit
//! writer ([`MessageWriter`]), with `writers` concurrent appenders (each a user chatting in its
//! own session, one message at a time, as a relay's users do), on a SQLite file or a
//! PostgreSQL database. Every message is committed before its append returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mc_core::relay::MessageWriter;
use mc_core::testing::fixtures;
use mc_core::*;

use super::figures::join_latencies;

/// What one store run measured.
#[derive(Debug, serde::Serialize)]
pub struct StoreFigures {
    /// Messages appended.
    pub messages: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Appends per second.
    pub messages_per_sec: f64,
    /// Append latency, median (ms).
    pub p50_ms: f64,
    /// Append latency, 99th percentile (ms).
    pub p99_ms: f64,
}

/// Creates an organization, a gateway with an agent, and `sessions` users with a session each.
async fn world(store: &Arc<dyn Store>, sessions: usize) -> anyhow::Result<Vec<SessionId>> {
    let org = fixtures::org();
    store.create_org(&org).await?;
    let gateway = fixtures::gateway(org.id);
    store.create_gateway(&gateway).await?;
    let agent = fixtures::agent(gateway.id);
    store.create_agent(&agent).await?;
    let mut ids = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let user = fixtures::user(org.id);
        store.create_user(&user).await?;
        let session = fixtures::session(user.id, &agent);
        store.create_session(&session).await?;
        ids.push(session.id);
    }
    Ok(ids)
}

/// Appends `messages` in all through one writer from `writers` concurrent appenders.
pub async fn run(
    store: Arc<dyn Store>,
    writers: usize,
    messages: usize,
) -> anyhow::Result<StoreFigures> {
    let sessions = world(&store, writers).await?;
    let (writer, _task) = MessageWriter::start(store);
    let per_writer = messages.div_ceil(writers);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for session in sessions {
        let writer = writer.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(per_writer);
            for m in 0..per_writer {
                let t = Instant::now();
                let message = NewMessage {
                    id: MessageId::new(),
                    session_id: session,
                    role: MessageRole::User,
                    content: format!("message {m} of a user chatting with the relay"),
                    client_msg_id: Some(uuid::Uuid::now_v7()),
                    run_id: None,
                    created_at: SystemClock.now(),
                };
                writer.append(message, None).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = join_latencies(tasks).await?;
    let elapsed = started.elapsed();
    latencies.sort();
    let q = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    Ok(StoreFigures {
        messages: latencies.len(),
        seconds: elapsed.as_secs_f64(),
        messages_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
    })
}
