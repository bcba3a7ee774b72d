//! [`GatewayLink`]: what the relay engine needs from a connection to a gateway, whichever side
//! dialled: OpenClaw calls and a close. [`FrameLink`] implements it for any transport that
//! moves frames (the relay's side of a gateway's socket): the transport writes the frames it
//! is given and hands back every `res` it reads. [`call_method`] is the typed call every part
//! of the engine makes.

use std::time::Duration;

use async_trait::async_trait;
use mc_openclaw::rpc::{CallError, Calls, params_of, result_of};
use mc_openclaw::{Method, Payload, Response};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A request/response link to a gateway (OpenClaw `req` → `res`).
#[async_trait]
pub trait GatewayLink: Send + Sync + std::fmt::Debug {
    /// Calls `method` with `params` and waits at most `timeout` for the answer's payload.
    async fn call(
        &self,
        method: &str,
        params: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError>;

    /// Closes the link with a WebSocket close `code` (`close_code::UNAUTHORIZED`: credentials
    /// revoked; `close_code::RESTARTING`: the relay is restarting); calls in flight and later
    /// ones fail with [`CallError::Closed`].
    fn close(&self, code: u16);
}

/// Calls method `M` on `link` and reads its result, all within `timeout`; while the gateway
/// says it is starting (`UNAVAILABLE`, retryable) the call is made again after the delay it
/// asks for.
pub async fn call_method<M: Method>(
    link: &dyn GatewayLink,
    params: &M::Params,
    timeout: Duration,
) -> Result<M::Result, CallError> {
    let params = params_of::<M>(params)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CallError::Timeout);
        }
        match link.call(M::NAME, params.clone(), left).await {
            Err(CallError::Remote(e)) if e.is_starting() => {
                let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(250).clamp(50, 5_000));
                if Instant::now() + wait >= deadline {
                    return Err(CallError::Remote(e));
                }
                tokio::time::sleep(wait).await;
            }
            other => return result_of::<M>(other?),
        }
    }
}

/// What a [`FrameLink`] asks its transport to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkWrite {
    /// Send this text frame.
    Frame(String),
    /// Close the connection with this code.
    Close(u16),
}

/// A [`GatewayLink`] over frames: it queues requests for the transport (waiting when the
/// queue is full: backpressure) and matches responses by id.
#[derive(Debug)]
pub struct FrameLink {
    tx: mpsc::Sender<LinkWrite>,
    calls: Calls,
}

impl FrameLink {
    /// A link whose frames to write the transport reads from the returned receiver.
    pub fn new(queue: usize) -> (Self, mpsc::Receiver<LinkWrite>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (Self { tx, calls: Calls::new("r") }, rx)
    }

    /// Delivers a `res` frame. Answers to unknown (e.g. timed-out) ids are dropped.
    pub fn resolve(&self, response: Response) {
        self.calls.resolve(response);
    }

    /// Marks the link closed (the transport's socket ended): every call in flight fails now.
    pub fn shutdown(&self) {
        self.calls.close();
    }

    /// Calls waiting for their answer.
    pub fn pending_requests(&self) -> usize {
        self.calls.in_flight()
    }

    /// Whether the link is closed.
    pub fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }
}

#[async_trait]
impl GatewayLink for FrameLink {
    async fn call(
        &self,
        method: &str,
        params: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError> {
        let send = |frame| async move { self.tx.send(LinkWrite::Frame(frame)).await.is_ok() };
        self.calls.call(method, params, timeout, send).await
    }

    fn close(&self, code: u16) {
        self.shutdown();
        let _ = self.tx.try_send(LinkWrite::Close(code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_openclaw::chat::{ChatSendParams, ChatSendResult, SendStatus};
    use mc_openclaw::method::ChatSend;
    use mc_openclaw::{ErrorShape, Frame};

    fn sent(frame: LinkWrite) -> mc_openclaw::Request {
        let LinkWrite::Frame(text) = frame else { panic!("{frame:?}") };
        let Frame::Request(request) = Frame::decode(&text).unwrap() else { panic!("{text}") };
        request
    }

    #[tokio::test]
    async fn typed_calls_are_matched_by_id_retried_while_starting_and_closed() {
        let (link, mut rx) = FrameLink::new(8);
        let link = std::sync::Arc::new(link);
        let caller = link.clone();
        let params = ChatSendParams {
            session_key: "k".into(),
            message: "hi".into(),
            idempotency_key: "run".into(),
            ..Default::default()
        };
        let call = tokio::spawn(async move {
            call_method::<ChatSend>(caller.as_ref(), &params, Duration::from_secs(5)).await
        });
        let first = sent(rx.recv().await.unwrap());
        assert_eq!(first.method, "chat.send");
        let starting = ErrorShape::new("UNAVAILABLE", "starting").retry_after(50);
        link.resolve(Response::error(first.id, starting));
        let again = sent(rx.recv().await.unwrap());
        assert_eq!(again.params_of::<ChatSend>().unwrap().idempotency_key, "run");
        let started = ChatSendResult::new("run", SendStatus::Started);
        link.resolve(Response::of::<ChatSend>(again.id, &started).unwrap());
        assert_eq!(call.await.unwrap().unwrap().status, SendStatus::Started);

        let caller = link.clone();
        let pending =
            tokio::spawn(
                async move { caller.call("y", Payload::null(), Duration::from_secs(5)).await },
            );
        rx.recv().await.unwrap();
        link.close(4001);
        assert_eq!(pending.await.unwrap().unwrap_err(), CallError::Closed);
        assert_eq!(rx.recv().await, Some(LinkWrite::Close(4001)));
        let late = link.call("z", Payload::null(), Duration::from_secs(1)).await;
        assert_eq!(late.unwrap_err(), CallError::Closed);
    }

    #[tokio::test]
    async fn an_answer_that_is_not_the_result_is_malformed() {
        let (link, mut rx) = FrameLink::new(8);
        let link = std::sync::Arc::new(link);
        let caller = link.clone();
        let call = tokio::spawn(async move {
            call_method::<ChatSend>(
                caller.as_ref(),
                &ChatSendParams::default(),
                Duration::from_secs(5),
            )
            .await
        });
        let request = sent(rx.recv().await.unwrap());
        link.resolve(Response::ok(request.id, Payload::encode(&[1]).unwrap()));
        assert!(matches!(call.await.unwrap(), Err(CallError::Malformed(_))));
    }
}
