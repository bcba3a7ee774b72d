//! The socket pump: the one I/O loop of every relay socket, users' and gateways'. It reads
//! frames, writes what its [`Peer`] queues (everything queued, up to [`WRITE_BATCH`] frames,
//! with one flush), sends heartbeats and closes, and applies [`SocketRules`] (mc-core's socket
//! rules, which decide what is due). Every write, flush and close has a deadline
//! ([`SocketLimits::write_timeout`]): a peer that stops reading is dropped when it passes, so
//! its place (unauthenticated, or among the instance's sockets) is freed.
//!
//! A socket's life is [`Pump::authenticate`] (its frames until the `auth` frame is accepted)
//! and then [`Pump::serve`] (until it closes). Both are the same for every kind of socket;
//! what a frame means is the peer's.
//!
//! For memory: an idle socket's task is this loop waiting, so each arm's work is a boxed
//! future of its own and only the waiting is kept in the task (see `ws_user`).

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mc_core::socket::{Close, Due, SocketLimits, SocketRules};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::read_budget::BudgetSpent;

/// Most frames written to a socket with one flush.
pub(crate) const WRITE_BATCH: u64 = 32;

/// What reading a socket gave.
pub(crate) enum Read {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary,
    /// A ping or a pong (the peer is alive).
    Control,
    /// The peer closed, or the connection failed.
    Gone,
    /// A frame over the size limit.
    TooBig,
}

/// What the peer wants written next.
pub(crate) enum Outgoing {
    /// This frame.
    Frame(Message),
    /// Close the socket.
    Close(Close),
    /// Nothing ever again: the peer's side ended (the socket just closes).
    Ended,
}

/// What handling a frame leads to.
pub(crate) enum Flow {
    /// Go on.
    Continue,
    /// Close: write what is queued (see [`Peer::farewell`]), then `last` if any, then the close.
    Close(Close, Option<Message>),
    /// The peer is gone: nothing more is written.
    Gone,
}

/// What a frame before authentication is.
pub(crate) enum PreAuth<T> {
    /// The `auth` frame, accepted.
    Accepted(T),
    /// A frame that is not `auth`: answer it (a violation).
    Answer(Message),
    /// Refused: write `last` if any, then close.
    Refuse(Option<Message>, Close),
}

/// What a socket's owner does with its frames: the pump does the I/O.
pub(crate) trait Peer: Send {
    /// The next thing to write; waited on while the socket is idle.
    fn outgoing(&mut self) -> impl Future<Output = Outgoing> + Send;
    /// A frame already queued behind the one being written.
    fn queued(&mut self) -> Option<Message>;
    /// Whether to read now (a peer stops reading while its replies back up).
    fn reading(&self) -> bool {
        true
    }
    /// Something arrived (any frame, a ping or a pong).
    fn heard(&mut self) {}
    /// A text frame arrived.
    fn on_text(
        &mut self,
        text: Utf8Bytes,
        rules: &mut SocketRules,
    ) -> impl Future<Output = Flow> + Send;
    /// A binary frame arrived.
    fn on_binary(&mut self, rules: &mut SocketRules) -> Flow;
    /// Heartbeat `n` is due: what to send.
    fn heartbeat(&mut self, n: u64) -> impl Future<Output = Message> + Send;
    /// Before closing with `close`: whether to write what is queued first (not for a reader
    /// too slow to take it).
    fn farewell(&self, close: &Close) -> bool;
    /// The frame explaining a close the rules decided (e.g. a user's expired token), if any.
    fn last_words(&self, _close: &Close) -> Option<Message> {
        None
    }
    /// Counts frames written (for metrics).
    fn wrote(&self, _frames: u64) {}
}

/// A socket's I/O, every write bounded by a deadline.
pub(crate) struct Pump<S> {
    ws: WebSocketStream<S>,
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Pump<S> {
    /// The pump of `ws`.
    pub(crate) fn new(ws: WebSocketStream<S>, limits: &SocketLimits) -> Self {
        Self { ws, write_timeout: limits.write_timeout() }
    }

    /// The next frame.
    pub(crate) async fn read(&mut self) -> Read {
        read_of(self.ws.next().await)
    }

    /// Writes `first` and what `more` yields (at most [`WRITE_BATCH`] frames), then flushes,
    /// within the write deadline; the frames written, or `None` if the peer is gone or too
    /// slow.
    pub(crate) async fn write(
        &mut self,
        first: Message,
        mut more: impl FnMut() -> Option<Message> + Send,
    ) -> Option<u64> {
        let ws = &mut self.ws;
        let written = async move {
            let mut written = 1;
            ws.feed(first).await.ok()?;
            while written < WRITE_BATCH {
                let Some(next) = more() else { break };
                ws.feed(next).await.ok()?;
                written += 1;
            }
            ws.flush().await.ok()?;
            Some(written)
        };
        tokio::time::timeout(self.write_timeout, written).await.ok().flatten()
    }

    /// Writes one frame within the write deadline; `false` if the peer is gone or too slow.
    pub(crate) async fn send(&mut self, message: Message) -> bool {
        self.write(message, || None).await.is_some()
    }

    /// Writes `frames`, then the close frame, all within the write deadline (a peer that does
    /// not read is simply dropped).
    pub(crate) async fn close(&mut self, frames: impl IntoIterator<Item = Message>, close: Close) {
        let ws = &mut self.ws;
        let closing = async move {
            for frame in frames {
                ws.feed(frame).await.ok()?;
            }
            let frame = CloseFrame { code: close.code.into(), reason: close.reason.into() };
            ws.feed(Message::Close(Some(frame))).await.ok()?;
            ws.flush().await.ok()
        };
        let _ = tokio::time::timeout(self.write_timeout, closing).await;
    }

    /// Reads frames until `judge` accepts one as the `auth` frame, within the rules' auth
    /// deadline; others are answered (and counted as violations) or refused. On timeout,
    /// `timed_out` is written before the close. `None` when the socket was closed instead.
    pub(crate) async fn authenticate<T, F, J>(
        &mut self,
        rules: &mut SocketRules,
        timed_out: Message,
        mut judge: J,
    ) -> Option<T>
    where
        J: FnMut(Result<Utf8Bytes, Read>) -> F + Send,
        F: Future<Output = PreAuth<T>> + Send,
    {
        let deadline = rules.deadline();
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                let text = match self.read().await {
                    Read::Text(text) => Ok(text),
                    Read::Control => continue,
                    Read::Gone => return Err(None),
                    Read::TooBig => return Err(Some((None, Close::TOO_BIG))),
                    other @ Read::Binary => Err(other),
                };
                rules.heard(Instant::now());
                match judge(text).await {
                    PreAuth::Accepted(accepted) => return Ok(accepted),
                    PreAuth::Refuse(last, close) => return Err(Some((last, close))),
                    PreAuth::Answer(answer) => {
                        if !self.send(answer).await {
                            return Err(None);
                        }
                        if let Some(close) = rules.violation(Instant::now()) {
                            return Err(Some((None, close)));
                        }
                    }
                }
            }
        })
        .await;
        let (last, close) = match waited {
            Ok(Ok(accepted)) => return Some(accepted),
            Ok(Err(None)) => return None,
            Ok(Err(Some(refusal))) => refusal,
            Err(_) => (Some(timed_out), Close::AUTH_TIMEOUT),
        };
        self.close(last, close).await;
        None
    }

    /// Serves an authenticated socket until it closes: frames in to `peer`, what it queues
    /// out, heartbeats and closes as `rules` say.
    pub(crate) async fn serve<P: Peer>(&mut self, peer: &mut P, rules: &mut SocketRules) {
        let timer = tokio::time::sleep_until(rules.deadline());
        tokio::pin!(timer);
        loop {
            let flow = tokio::select! {
                () = &mut timer => Box::pin(self.on_timer(peer, rules)).await,
                incoming = self.ws.next(), if peer.reading() => {
                    Box::pin(self.on_read(peer, rules, read_of(incoming))).await
                }
                outgoing = peer.outgoing() => match outgoing {
                    // Boxed: the write's deadline timer is not kept by every idle socket.
                    Outgoing::Frame(first) => match Box::pin(self.write(first, || peer.queued())).await {
                        Some(written) => {
                            peer.wrote(written);
                            Flow::Continue
                        }
                        None => Flow::Gone,
                    },
                    Outgoing::Close(close) => Flow::Close(close, None),
                    Outgoing::Ended => Flow::Gone,
                },
            };
            match flow {
                Flow::Continue => {}
                Flow::Gone => return,
                Flow::Close(close, last) => {
                    return Box::pin(self.close_serving(peer, close, last)).await;
                }
            }
            let wake = rules.deadline();
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
        }
    }

    async fn on_timer<P: Peer>(&mut self, peer: &mut P, rules: &mut SocketRules) -> Flow {
        match rules.on_timer(Instant::now()) {
            Due::Nothing => Flow::Continue,
            Due::Close(close) => Flow::Close(close, peer.last_words(&close)),
            Due::Heartbeat(n) => {
                let beat = peer.heartbeat(n).await;
                if self.send(beat).await { Flow::Continue } else { Flow::Gone }
            }
        }
    }

    async fn on_read<P: Peer>(
        &mut self,
        peer: &mut P,
        rules: &mut SocketRules,
        read: Read,
    ) -> Flow {
        match read {
            Read::Text(text) => {
                rules.heard(Instant::now());
                peer.heard();
                peer.on_text(text, rules).await
            }
            Read::Binary => {
                peer.heard();
                peer.on_binary(rules)
            }
            Read::Control => {
                rules.heard(Instant::now());
                peer.heard();
                Flow::Continue
            }
            Read::Gone => Flow::Gone,
            Read::TooBig => Flow::Close(Close::TOO_BIG, None),
        }
    }

    async fn close_serving<P: Peer>(&mut self, peer: &mut P, close: Close, last: Option<Message>) {
        let mut frames = Vec::new();
        if peer.farewell(&close) {
            while let Some(frame) = peer.queued() {
                frames.push(frame);
            }
        }
        frames.extend(last);
        self.close(frames, close).await;
    }
}

fn read_of(incoming: Option<Result<Message, tungstenite::Error>>) -> Read {
    match incoming {
        Some(Ok(Message::Text(text))) => Read::Text(text),
        Some(Ok(Message::Binary(_))) => Read::Binary,
        // (A raw `Frame` is only ever written, never read.)
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Read::Control,
        Some(Err(tungstenite::Error::Capacity(_))) => Read::TooBig,
        // A gateway's first frame larger than what it may send before its `auth` is checked.
        Some(Err(tungstenite::Error::Io(err))) if BudgetSpent::caused(&err) => Read::TooBig,
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Read::Gone,
    }
}
