//! [`Calls`]: the requests a link has in flight, each matched to its `res` by id and bounded
//! by a deadline. Every link that makes OpenClaw calls goes through [`Calls::call`]: the
//! relay's side of a gateway's socket and the client connection alike.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::frame::{ErrorShape, Frame, Payload, Request, Response};
use crate::method::{self, Method};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The link is closed, or was lost before the answer.
    #[error("the gateway link is closed")]
    Closed,
    /// No answer in time.
    #[error("the gateway did not answer in time")]
    Timeout,
    /// The gateway answered with an error.
    #[error("the gateway answered {}: {}", .0.code, .0.message)]
    Remote(Box<ErrorShape>),
    /// The gateway answered something that is not the method's result.
    #[error("the gateway's answer cannot be read: {0}")]
    Malformed(String),
}

type Waiters = HashMap<String, oneshot::Sender<Result<Payload, Box<ErrorShape>>>>;

/// Calls in flight on one link.
#[derive(Debug)]
pub struct Calls {
    prefix: &'static str,
    waiting: Mutex<Waiters>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Calls {
    /// No calls yet; request ids are `prefix` and a counter.
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `method` with `params`: the request frame is handed to `send` (which may wait,
    /// e.g. for room in a queue, and fails when the link is gone), then the answer awaited,
    /// all within `timeout`.
    pub async fn call<S, F>(
        &self,
        method: &str,
        params: Payload,
        timeout: Duration,
        send: S,
    ) -> Result<Payload, CallError>
    where
        S: FnOnce(String) -> F,
        F: Future<Output = bool>,
    {
        if self.is_closed() {
            return Err(CallError::Closed);
        }
        let id = format!("{}{}", self.prefix, self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(id.clone(), tx);
        let frame = Frame::Request(Request::new(id.clone(), method, params)).to_json();
        let answer = tokio::time::timeout(timeout, async {
            if !send(frame).await {
                return Err(CallError::Closed);
            }
            rx.await.map_err(|_| CallError::Closed)?.map_err(CallError::Remote)
        })
        .await;
        let answer = answer.unwrap_or(Err(CallError::Timeout));
        if answer.is_err() {
            self.waiting().remove(&id);
        }
        answer
    }

    /// Hands a `res` to its caller; `false` if none waits for it (timed out, or unknown).
    pub fn resolve(&self, response: Response) -> bool {
        let Some(waiter) = self.waiting().remove(&response.id) else { return false };
        waiter.send(response.into_answer()).is_ok()
    }

    /// Fails every call in flight (the link was lost); later calls still go out.
    pub fn fail_all(&self) {
        self.waiting().clear();
    }

    /// Closes for good: calls in flight and later ones fail with [`CallError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.fail_all();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Calls waiting for their answers.
    pub fn in_flight(&self) -> usize {
        self.waiting().len()
    }
}

/// Method `M`'s parameters as a payload; a value that cannot be written is
/// [`CallError::Malformed`].
pub fn params_of<M: Method>(params: &M::Params) -> Result<Payload, CallError> {
    method::params::<M>(params).map_err(|e| CallError::Malformed(e.to_string()))
}

/// Reads a call's answer as method `M`'s result.
pub fn result_of<M: Method>(answer: Payload) -> Result<M::Result, CallError> {
    method::result::<M>(&answer).map_err(|e| CallError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn calls_are_matched_by_id_time_out_and_close() {
        let calls = Arc::new(Calls::new("r"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let caller = calls.clone();
        let sender = tx.clone();
        let call = tokio::spawn(async move {
            let params = Payload::encode(&serde_json::json!({ "a": 1 })).unwrap();
            caller
                .call("chat.send", params, Duration::from_secs(5), |f| async move {
                    sender.send(f).is_ok()
                })
                .await
        });
        let Frame::Request(sent) = Frame::decode(&rx.recv().await.unwrap()).unwrap() else {
            panic!()
        };
        assert_eq!(sent.method, "chat.send");
        assert!(!calls.resolve(Response::ok("unknown", Payload::null())));
        let answer = Payload::encode(&serde_json::json!({ "status": "started" })).unwrap();
        assert!(calls.resolve(Response::ok(sent.id, answer.clone())));
        assert_eq!(call.await.unwrap().unwrap(), answer);

        let timed_out =
            calls.call("x", Payload::null(), Duration::from_millis(20), |_| async { true }).await;
        assert_eq!(timed_out, Err(CallError::Timeout));
        assert_eq!(calls.in_flight(), 0, "a timed-out call leaves nothing behind");
        let refused =
            calls.call("x", Payload::null(), Duration::from_secs(1), |_| async { false }).await;
        assert_eq!(refused, Err(CallError::Closed));

        let caller = calls.clone();
        let pending = tokio::spawn(async move {
            caller.call("y", Payload::null(), Duration::from_secs(5), |_| async { true }).await
        });
        while calls.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        calls.close();
        assert_eq!(pending.await.unwrap(), Err(CallError::Closed));
        let after = calls.call("z", Payload::null(), Duration::from_secs(1), |_| async { true });
        assert_eq!(after.await, Err(CallError::Closed));
    }
}
