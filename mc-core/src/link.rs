//! [`GatewayLink`]: what the router needs from a connection to a gateway, whichever side
//! dialled. [`FrameLink`] implements it over OpenClaw frames for any transport: the transport
//! sends the frames it is given and feeds back every `res` it receives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::gateway::{GatewayErrorShape, encode_request};

/// Why a gateway call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The link is closed (the gateway went away).
    #[error("the gateway link is closed")]
    Closed,
    /// No answer in time.
    #[error("the gateway did not answer in time")]
    Timeout,
    /// The gateway answered with an error.
    #[error("the gateway answered {}: {}", .0.code, .0.message)]
    Remote(GatewayErrorShape),
}

/// A request/response link to a gateway (OpenClaw `req` → `res`).
#[async_trait]
pub trait GatewayLink: Send + Sync + std::fmt::Debug {
    /// Calls `method` with `params` and waits at most `timeout` for the answer's payload.
    async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, LinkError>;
    /// Closes the link with a WebSocket close `code` (4001: credentials revoked; 1012: the
    /// relay is restarting); pending and later calls fail with [`LinkError::Closed`].
    fn close(&self, code: u16);
}

/// What a [`FrameLink`] asks its transport to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutbound {
    /// Send this text frame.
    Frame(String),
    /// Close the connection with this code.
    Close(u16),
}

type Pending = HashMap<String, oneshot::Sender<Result<Value, GatewayErrorShape>>>;

/// A [`GatewayLink`] over frames: it numbers requests, queues them for the transport
/// (waiting when the queue is full: backpressure), and matches responses by id.
#[derive(Debug)]
pub struct FrameLink {
    tx: mpsc::Sender<LinkOutbound>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl FrameLink {
    /// A link whose outbound frames the transport reads from the returned receiver.
    pub fn new(queue: usize) -> (Self, mpsc::Receiver<LinkOutbound>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let link = Self {
            tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        };
        (link, rx)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers a `res` frame. Answers to unknown (e.g. timed-out) ids are dropped.
    pub fn resolve(&self, id: &str, ok: bool, payload: Value, error: Option<GatewayErrorShape>) {
        if let Some(waiter) = self.pending().remove(id) {
            let result = if ok {
                Ok(payload)
            } else {
                Err(error.unwrap_or_else(|| GatewayErrorShape {
                    code: "UNKNOWN".into(),
                    message: "the gateway answered ok:false without an error".into(),
                    ..Default::default()
                }))
            };
            let _ = waiter.send(result);
        }
    }

    /// Marks the link closed (the transport's socket ended): every pending call fails now.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pending().clear();
    }

    /// Requests waiting for their answer.
    pub fn pending_requests(&self) -> usize {
        self.pending().len()
    }

    /// Whether the link is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl GatewayLink for FrameLink {
    async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, LinkError> {
        if self.is_closed() {
            return Err(LinkError::Closed);
        }
        let id = format!("r{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id.clone(), tx);
        let frame = encode_request(&id, method, &params);
        let result = tokio::time::timeout(timeout, async {
            self.tx.send(LinkOutbound::Frame(frame)).await.map_err(|_| LinkError::Closed)?;
            rx.await.map_err(|_| LinkError::Closed)?.map_err(LinkError::Remote)
        })
        .await;
        match result {
            Ok(answer) => answer,
            Err(_) => {
                self.pending().remove(&id);
                Err(LinkError::Timeout)
            }
        }
    }

    fn close(&self, code: u16) {
        self.shutdown();
        let _ = self.tx.try_send(LinkOutbound::Close(code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_matched_by_id_and_time_out() {
        let (link, mut rx) = FrameLink::new(8);
        let link = std::sync::Arc::new(link);
        let caller = link.clone();
        let call = tokio::spawn(async move {
            caller.call("chat.send", serde_json::json!({"a":1}), Duration::from_secs(5)).await
        });
        let LinkOutbound::Frame(frame) = rx.recv().await.unwrap() else { panic!() };
        let sent: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(sent["method"], "chat.send");
        link.resolve("unknown", true, Value::Null, None);
        link.resolve(
            sent["id"].as_str().unwrap(),
            true,
            serde_json::json!({"status":"started"}),
            None,
        );
        assert_eq!(call.await.unwrap().unwrap()["status"], "started");

        let err = link.call("x", Value::Null, Duration::from_millis(20)).await.unwrap_err();
        assert_eq!(err, LinkError::Timeout);
        let caller = link.clone();
        let pending =
            tokio::spawn(
                async move { caller.call("y", Value::Null, Duration::from_secs(5)).await },
            );
        tokio::task::yield_now().await;
        while link.pending().is_empty() {
            tokio::task::yield_now().await;
        }
        link.close(4001);
        assert_eq!(pending.await.unwrap().unwrap_err(), LinkError::Closed);
        assert_eq!(
            link.call("z", Value::Null, Duration::from_secs(1)).await.unwrap_err(),
            LinkError::Closed
        );
    }
}
