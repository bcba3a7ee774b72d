//! [`OpenClawConnection`]: one client connection to an OpenClaw gateway, kept up by its own
//! task: connect, handshake (challenge, signed `connect`, `hello-ok`), calls matched to their
//! answers by id with a deadline, events handed to the owner, the `tick` watchdog, and
//! reconnection with exponential backoff and full jitter. Every call in flight when the
//! socket is lost fails at once; every write has a deadline, so a gateway that stops reading
//! is dropped and dialled again.
//!
//! - `options`: [`OpenClawOptions`] (how to reach and authenticate) and [`loggable_url`];
//! - `socket`: dialling at an address the policy allows, reading and writing within deadlines.

mod options;
mod socket;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub use self::options::{OpenClawOptions, loggable_url};
use self::socket::{MAX_FRAME_BYTES, Socket, close_socket, dial, next_text, write};
use crate::backoff::Backoff;
use crate::event::Event;
use crate::frame::{EventFrame, Frame, Payload, Request};
use crate::handshake::{CONNECT, ConnectFailure, HelloOk};
use crate::method::Method;
use crate::rpc::{CallError, Calls, params_of, result_of};

/// Frames queued towards the gateway before callers wait.
const WRITE_QUEUE: usize = 256;
/// A connection that held this long starts the backoff over when lost.
const HELD: Duration = Duration::from_secs(30);
/// The close code the tick watchdog uses (as OpenClaw's own client does).
const TICK_TIMEOUT_CLOSE: u16 = 4000;
/// Normal closure.
const NORMAL_CLOSE: u16 = 1000;
/// A frame over the limit.
const FRAME_TOO_BIG: u16 = 1009;

/// Where the connection is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting (or waiting to reconnect).
    Connecting,
    /// Connected and authenticated.
    Online {
        /// What the gateway said.
        hello: Box<HelloOk>,
    },
    /// The last attempt was refused; retrying.
    Refused(ConnectFailure),
    /// Closed for good.
    Closed,
}

/// What the connection reports to its owner.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Connected and authenticated.
    Up(Box<HelloOk>),
    /// The socket was lost (reconnecting).
    Down(String),
    /// An attempt failed before the handshake finished: the gateway cannot be reached, or
    /// closed the socket without answering `connect` (retrying).
    Unreachable(String),
    /// A `connect` was refused (retrying as the failure says).
    Refused(ConnectFailure),
    /// The gateway issued a device token: keep it for the next connect. (Its `Debug` shows
    /// no token.)
    DeviceToken(DeviceToken),
    /// An event the gateway pushed (not `tick`, not `connect.challenge`).
    Event(EventFrame),
}

/// A device token the gateway issued; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(pub String);

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}

struct Shared {
    options: Mutex<OpenClawOptions>,
    state: watch::Sender<ConnectionState>,
    writer: Mutex<Option<mpsc::Sender<String>>>,
    calls: Calls,
    closed: AtomicBool,
    close_now: Notify,
    last_frame: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection to an OpenClaw gateway, kept up by its task. Cheap to clone; the task ends
/// when [`close`](Self::close) is called or every clone is dropped.
#[derive(Clone)]
pub struct OpenClawConnection {
    shared: Arc<Shared>,
    _owner: Arc<CloseOnDrop>,
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        close(&self.0);
    }
}

fn close(shared: &Shared) {
    shared.closed.store(true, Ordering::SeqCst);
    shared.calls.fail_all();
    shared.close_now.notify_waiters();
    shared.close_now.notify_one();
}

impl std::fmt::Debug for OpenClawConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClawConnection")
            .field("url", &lock(&self.shared.options).url)
            .field("state", &*self.shared.state.borrow())
            .finish_non_exhaustive()
    }
}

impl OpenClawConnection {
    /// Starts connecting (inside a tokio runtime); what happens is sent to `events`.
    pub fn start(options: OpenClawOptions, events: mpsc::UnboundedSender<ConnectionEvent>) -> Self {
        let shared = Arc::new(Shared {
            options: Mutex::new(options),
            state: watch::channel(ConnectionState::Connecting).0,
            writer: Mutex::new(None),
            calls: Calls::new("mc"),
            closed: AtomicBool::new(false),
            close_now: Notify::new(),
            last_frame: Mutex::new(None),
        });
        tokio::spawn(run(shared.clone(), events));
        Self { _owner: Arc::new(CloseOnDrop(shared.clone())), shared }
    }

    /// Calls `method` with `params` and waits at most `timeout` for the answer.
    pub async fn call(
        &self,
        method: &str,
        params: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(CallError::Closed);
        }
        let writer = lock(&self.shared.writer).clone().ok_or(CallError::Closed)?;
        let send = |frame: String| async move { writer.send(frame).await.is_ok() };
        self.shared.calls.call(method, params, timeout, send).await
    }

    /// Calls method `M` and reads its result.
    pub async fn call_method<M: Method>(
        &self,
        params: &M::Params,
        timeout: Duration,
    ) -> Result<M::Result, CallError> {
        result_of::<M>(self.call(M::NAME, params_of::<M>(params)?, timeout).await?)
    }

    /// The state now, and its changes.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// Calls waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.shared.calls.in_flight()
    }

    /// When the last frame arrived.
    pub fn last_frame(&self) -> Option<Instant> {
        *lock(&self.shared.last_frame)
    }

    /// Uses `token` as the device token from the next connect on.
    pub fn set_device_token(&self, token: Option<String>) {
        lock(&self.shared.options).device_token = token;
    }

    /// Closes the connection for good; calls in flight fail.
    pub fn close(&self) {
        close(&self.shared);
    }
}

/// How a session ended.
enum Ended {
    Closed,
    /// The socket was lost after being up this long (or never came up: zero).
    Lost(Duration, String),
    /// The gateway refused the connect.
    Refused(ConnectFailure),
}

async fn run(shared: Arc<Shared>, events: mpsc::UnboundedSender<ConnectionEvent>) {
    let mut backoff = {
        let options = lock(&shared.options);
        Backoff::new(options.reconnect_first, options.reconnect_max)
    };
    while !shared.closed.load(Ordering::SeqCst) {
        shared.state.send_replace(ConnectionState::Connecting);
        let ended = session(&shared, &events).await;
        shared.calls.fail_all();
        *lock(&shared.writer) = None;
        let url = loggable_url(&lock(&shared.options).url);
        let wait = match ended {
            Ended::Closed => break,
            Ended::Lost(lasted, why) => {
                let event = if lasted.is_zero() {
                    ConnectionEvent::Unreachable(why.clone())
                } else {
                    ConnectionEvent::Down(why.clone())
                };
                let _ = events.send(event);
                if lasted > HELD {
                    backoff.reset();
                }
                tracing::info!(url = %url, reason = %why, "OpenClaw gateway connection down; reconnecting");
                backoff.next_delay()
            }
            Ended::Refused(failure) => {
                if matches!(failure, ConnectFailure::Starting { .. }) {
                    tracing::debug!(url = %url, %failure, "OpenClaw gateway starting");
                } else {
                    tracing::warn!(url = %url, %failure, "OpenClaw gateway refused the connection");
                }
                shared.state.send_replace(ConnectionState::Refused(failure.clone()));
                let wait = failure.retry_after().unwrap_or_else(|| backoff.next_delay());
                let _ = events.send(ConnectionEvent::Refused(failure));
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
            () = shared.close_now.notified() => {}
        }
    }
    shared.state.send_replace(ConnectionState::Closed);
}

/// Opens the socket and completes the handshake.
async fn handshake(
    shared: &Shared,
    events: &mpsc::UnboundedSender<ConnectionEvent>,
) -> Result<(Socket, HelloOk), Ended> {
    let options = lock(&shared.options).clone();
    let lost = |why: String| Ended::Lost(Duration::ZERO, why);
    let mut socket = dial(&options).await.map_err(lost)?;
    let challenge = loop {
        let text = next_text(&mut socket)
            .await
            .map_err(|why| lost(format!("{why}, before the challenge")))?;
        if let Ok(Frame::Event(frame)) = Frame::decode(&text)
            && let Ok(Event::ConnectChallenge(challenge)) = frame.decode()
        {
            break challenge;
        }
    };
    let params = Payload::encode(&options.connect_params(&challenge))
        .map_err(|e| lost(format!("cannot write connect: {e}")))?;
    let request = Frame::Request(Request::new(CONNECT, CONNECT, params)).to_json();
    write(&mut socket, Message::Text(request.into()), options.write_timeout)
        .await
        .map_err(|e| lost(format!("cannot send connect: {e}")))?;
    loop {
        let text = next_text(&mut socket)
            .await
            .map_err(|why| lost(format!("{why}, during the handshake")))?;
        let Ok(Frame::Response(response)) = Frame::decode(&text) else { continue };
        if response.id != CONNECT {
            continue;
        }
        let payload =
            response.into_answer().map_err(|e| Ended::Refused(ConnectFailure::classify(&e)))?;
        let hello: HelloOk = payload
            .decode("hello-ok")
            .ok()
            .filter(HelloOk::is_hello)
            .ok_or_else(|| lost("a hello-ok that cannot be read".into()))?;
        if let Some(token) = &hello.auth.device_token {
            lock(&shared.options).device_token = Some(token.clone());
            let _ = events.send(ConnectionEvent::DeviceToken(DeviceToken(token.clone())));
        }
        return Ok((socket, hello));
    }
}

async fn session(shared: &Shared, events: &mpsc::UnboundedSender<ConnectionEvent>) -> Ended {
    let (timeout, write_timeout) = {
        let options = lock(&shared.options);
        (options.handshake_timeout, options.write_timeout)
    };
    let opened = tokio::select! {
        opened = tokio::time::timeout(timeout, handshake(shared, events)) => opened,
        () = shared.close_now.notified() => return Ended::Closed,
    };
    let (mut socket, hello) = match opened {
        Ok(Ok(ok)) => ok,
        Ok(Err(ended)) => return ended,
        Err(_) => return Ended::Lost(Duration::ZERO, "handshake timed out".into()),
    };
    let since = Instant::now();
    let silence = hello.silence_limit();
    // The gateway's own frame limit (hello-ok's policy), within what the socket reads at all.
    let max_payload = usize::try_from(hello.policy.max_payload)
        .ok()
        .filter(|n| *n > 0)
        .map_or(MAX_FRAME_BYTES, |n| n.min(MAX_FRAME_BYTES));
    *lock(&shared.last_frame) = Some(since);
    let (writer, mut outgoing) = mpsc::channel::<String>(WRITE_QUEUE);
    *lock(&shared.writer) = Some(writer);
    shared.state.send_replace(ConnectionState::Online { hello: Box::new(hello.clone()) });
    let _ = events.send(ConnectionEvent::Up(Box::new(hello)));
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    let lost = |why: String| Ended::Lost(since.elapsed().max(Duration::from_millis(1)), why);
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) if text.len() > max_payload => {
                    close_socket(&mut socket, FRAME_TOO_BIG, "frame too big", write_timeout).await;
                    return lost(format!("the gateway sent a frame over its own limit of {max_payload} bytes"));
                }
                Some(Ok(Message::Text(text))) => {
                    *lock(&shared.last_frame) = Some(Instant::now());
                    on_frame(shared, events, &text);
                }
                Some(Ok(Message::Close(close))) => {
                    // The code only: the reason is the gateway's text.
                    let why = close.map_or_else(String::new, |c| format!(" (code {})", u16::from(c.code)));
                    return lost(format!("closed by the gateway{why}"));
                }
                Some(Ok(_)) => *lock(&shared.last_frame) = Some(Instant::now()),
                None => return lost("the socket ended".into()),
                Some(Err(e)) => return lost(format!("socket error: {e}")),
            },
            Some(frame) = outgoing.recv() => {
                if let Err(why) = write(&mut socket, Message::Text(frame.into()), write_timeout).await {
                    return lost(format!("cannot send: {why}"));
                }
            }
            _ = watchdog.tick() => {
                let quiet = lock(&shared.last_frame).map_or(Duration::ZERO, |t| t.elapsed());
                if quiet > silence {
                    close_socket(&mut socket, TICK_TIMEOUT_CLOSE, "tick timeout", write_timeout).await;
                    return lost(format!("no frame for {} s (tick watchdog)", quiet.as_secs()));
                }
            }
            () = shared.close_now.notified() => {
                close_socket(&mut socket, NORMAL_CLOSE, "closing", write_timeout).await;
                return Ended::Closed;
            }
        }
    }
}

fn on_frame(shared: &Shared, events: &mpsc::UnboundedSender<ConnectionEvent>, text: &str) {
    match Frame::decode(text) {
        Ok(Frame::Response(response)) => {
            shared.calls.resolve(response);
        }
        Ok(Frame::Event(event)) => {
            if !matches!(event.event.as_str(), "tick" | "connect.challenge") {
                let _ = events.send(ConnectionEvent::Event(event));
            }
        }
        Ok(Frame::Request(_)) => tracing::debug!("a request from the OpenClaw gateway ignored"),
        Err(err) => {
            tracing::debug!(error = %err, "undecodable frame from the OpenClaw gateway ignored")
        }
    }
}
