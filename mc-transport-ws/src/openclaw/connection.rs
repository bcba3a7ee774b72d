//! [`OpenClawConnection`]: one client connection to an OpenClaw gateway, kept up by its own
//! task: connect, handshake (challenge, signed `connect`, `hello-ok`), requests matched to
//! answers by id with a timeout, events handed to the owner, the `tick` watchdog, and
//! reconnection with exponential backoff and full jitter. Every request pending when the
//! socket is lost fails at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mc_core::protocol::gateway::GatewayErrorShape;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::device::DeviceIdentity;
use super::handshake::{
    Challenge, ClientInfo, ConnectFailure, Credentials, HelloOk, connect_request,
};

/// How to reach and authenticate to a gateway.
#[derive(Clone)]
pub struct OpenClawOptions {
    /// `ws://host:port` of the gateway.
    pub url: String,
    /// The gateway's shared token, if it uses one.
    pub token: Option<String>,
    /// The device key, for gateways that pair devices (remote ones do).
    pub device: Option<DeviceIdentity>,
    /// A device token issued earlier to this device.
    pub device_token: Option<String>,
    /// Who the client says it is.
    pub client: ClientInfo,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// Time for the socket to open and the handshake to finish.
    pub handshake_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_base: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for OpenClawOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClawOptions")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("device", &self.device)
            .field("device_token", &self.device_token.as_ref().map(|_| "<redacted>"))
            .field("client", &self.client)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl OpenClawOptions {
    /// Options for `url` with the relay's defaults: `gateway-client`/`backend`,
    /// `operator.read` + `operator.write`, 15 s handshake, reconnects 1 s → 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            device: None,
            device_token: None,
            client: ClientInfo::default(),
            scopes: vec!["operator.read".into(), "operator.write".into()],
            handshake_timeout: Duration::from_secs(15),
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
        }
    }

    /// The gateway's shared token.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The device key to sign challenges with.
    pub fn device(mut self, device: Option<DeviceIdentity>) -> Self {
        self.device = device;
        self
    }

    /// A device token issued earlier.
    pub fn device_token(mut self, token: Option<String>) -> Self {
        self.device_token = token;
        self
    }
}

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
    /// The gateway issued a device token: keep it for the next connect.
    DeviceToken(mc_core::Secret),
    /// An event the gateway pushed (not `tick`, not `connect.challenge`).
    Event {
        /// Its name: `chat`, `agent`, …
        name: String,
        /// Its payload.
        payload: Value,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Not connected, or the socket was lost before the answer.
    #[error("the gateway connection is down")]
    Closed,
    /// No answer in time.
    #[error("the gateway did not answer in time")]
    Timeout,
    /// The gateway answered with an error.
    #[error("the gateway answered {}: {}", .0.code, .0.message)]
    Remote(GatewayErrorShape),
}

type Pending = HashMap<String, oneshot::Sender<Result<Value, GatewayErrorShape>>>;

struct Shared {
    options: Mutex<OpenClawOptions>,
    state: watch::Sender<ConnectionState>,
    writer: Mutex<Option<mpsc::UnboundedSender<String>>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
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
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            close_now: Notify::new(),
            last_frame: Mutex::new(None),
        });
        tokio::spawn(run(shared.clone(), events));
        Self { _owner: Arc::new(CloseOnDrop(shared.clone())), shared }
    }

    /// Calls `method` and waits at most `timeout` for the answer's payload.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let writer = lock(&self.shared.writer).clone().ok_or(CallError::Closed)?;
        let id = format!("mc{}", self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id.clone(), tx);
        let frame =
            serde_json::json!({ "type": "req", "id": id, "method": method, "params": params });
        if writer.send(frame.to_string()).is_err() {
            lock(&self.shared.pending).remove(&id);
            return Err(CallError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer.map_err(CallError::Remote),
            Ok(Err(_)) => Err(CallError::Closed),
            Err(_) => {
                lock(&self.shared.pending).remove(&id);
                Err(CallError::Timeout)
            }
        }
    }

    /// The state now, and its changes.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// Requests waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        lock(&self.shared.pending).len()
    }

    /// When the last frame arrived.
    pub fn last_frame(&self) -> Option<Instant> {
        *lock(&self.shared.last_frame)
    }

    /// Uses `token` as the device token from the next connect on.
    pub fn set_device_token(&self, token: Option<String>) {
        lock(&self.shared.options).device_token = token;
    }

    /// Closes the connection for good; pending requests fail.
    pub fn close(&self) {
        close(&self.shared);
    }
}

/// A delay with full jitter: uniformly random in `[0, min(max, base · 2^attempt)]`.
pub fn jittered(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(max);
    let mut bytes = [0u8; 8];
    let r = getrandom::fill(&mut bytes).map(|()| u64::from_le_bytes(bytes)).unwrap_or(u64::MAX / 2);
    ceiling.mul_f64((r as f64) / (u64::MAX as f64))
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
    let mut attempt = 0u32;
    loop {
        if shared.closed.load(Ordering::SeqCst) {
            break;
        }
        shared.state.send_replace(ConnectionState::Connecting);
        let ended = session(&shared, &events).await;
        fail_pending(&shared);
        *lock(&shared.writer) = None;
        let options = lock(&shared.options).clone();
        let wait = match ended {
            Ended::Closed => break,
            Ended::Lost(lasted, why) => {
                if lasted > Duration::ZERO {
                    let _ = events.send(ConnectionEvent::Down(why.clone()));
                } else {
                    let _ = events.send(ConnectionEvent::Unreachable(why.clone()));
                }
                if lasted > Duration::from_secs(30) {
                    attempt = 0;
                }
                tracing::info!(url = %options.url, reason = %why, "OpenClaw gateway connection down; reconnecting");
                jittered(options.reconnect_base, options.reconnect_max, attempt)
            }
            Ended::Refused(failure) => {
                if matches!(failure, ConnectFailure::Starting { .. }) {
                    tracing::debug!(url = %options.url, %failure, "OpenClaw gateway starting");
                } else {
                    tracing::warn!(url = %options.url, %failure, "OpenClaw gateway refused the connection");
                }
                shared.state.send_replace(ConnectionState::Refused(failure.clone()));
                let wait = failure.retry_after();
                let _ = events.send(ConnectionEvent::Refused(failure));
                wait.unwrap_or_else(|| {
                    jittered(options.reconnect_base, options.reconnect_max, attempt)
                })
            }
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
            () = shared.close_now.notified() => {}
        }
    }
    shared.state.send_replace(ConnectionState::Closed);
}

fn fail_pending(shared: &Shared) {
    lock(&shared.pending).clear();
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the socket and completes the handshake.
async fn handshake(
    shared: &Shared,
    events: &mpsc::UnboundedSender<ConnectionEvent>,
) -> Result<(Socket, HelloOk), Ended> {
    let options = lock(&shared.options).clone();
    let lost = |why: String| Ended::Lost(Duration::ZERO, why);
    let (mut socket, _) = tokio_tungstenite::connect_async(options.url.as_str())
        .await
        .map_err(|e| lost(format!("cannot connect to {}: {e}", options.url)))?;
    let challenge = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(challenge) = Challenge::parse(&frame) {
                    break challenge;
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(lost("closed before the challenge".into()));
            }
            Some(Err(e)) => return Err(lost(format!("socket error before the challenge: {e}"))),
            Some(Ok(_)) => {}
        }
    };
    let credentials = Credentials {
        token: options.token.as_deref(),
        device_token: options.device_token.as_deref(),
        device: options.device.as_ref(),
    };
    let request =
        connect_request("connect", &options.client, &options.scopes, &credentials, &challenge);
    socket
        .send(Message::Text(request.into()))
        .await
        .map_err(|e| lost(format!("cannot send connect: {e}")))?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if frame.get("type").and_then(Value::as_str) != Some("res")
                    || frame.get("id").and_then(Value::as_str) != Some("connect")
                {
                    continue;
                }
                if frame.get("ok").and_then(Value::as_bool) == Some(true) {
                    let payload = frame.get("payload").cloned().unwrap_or(Value::Null);
                    let hello = HelloOk::parse(&payload)
                        .ok_or_else(|| lost("a hello-ok that cannot be read".into()))?;
                    if let Some(token) = &hello.auth.device_token {
                        lock(&shared.options).device_token = Some(token.clone());
                        let _ = events.send(ConnectionEvent::DeviceToken(token.clone().into()));
                    }
                    return Ok((socket, hello));
                }
                let error: GatewayErrorShape = frame
                    .get("error")
                    .cloned()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_default();
                return Err(Ended::Refused(ConnectFailure::classify(&error)));
            }
            Some(Ok(Message::Close(close))) => {
                let why = close
                    .map_or_else(String::new, |c| format!("{} {}", u16::from(c.code), c.reason));
                return Err(lost(format!("closed during the handshake: {why}")));
            }
            None => return Err(lost("closed during the handshake".into())),
            Some(Err(e)) => return Err(lost(format!("socket error during the handshake: {e}"))),
            Some(Ok(_)) => {}
        }
    }
}

async fn session(shared: &Shared, events: &mpsc::UnboundedSender<ConnectionEvent>) -> Ended {
    let timeout = lock(&shared.options).handshake_timeout;
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
    *lock(&shared.last_frame) = Some(since);
    let (writer, mut outgoing) = mpsc::unbounded_channel::<String>();
    *lock(&shared.writer) = Some(writer);
    shared.state.send_replace(ConnectionState::Online { hello: Box::new(hello.clone()) });
    let _ = events.send(ConnectionEvent::Up(Box::new(hello)));
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    let lost = |why: String| Ended::Lost(since.elapsed().max(Duration::from_millis(1)), why);
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    *lock(&shared.last_frame) = Some(Instant::now());
                    on_frame(shared, events, &text);
                }
                Some(Ok(Message::Close(close))) => {
                    let why = close.map_or_else(String::new, |c| format!("{} {}", u16::from(c.code), c.reason));
                    return lost(format!("closed by the gateway: {why}"));
                }
                Some(Ok(_)) => *lock(&shared.last_frame) = Some(Instant::now()),
                None => return lost("the socket ended".into()),
                Some(Err(e)) => return lost(format!("socket error: {e}")),
            },
            Some(frame) = outgoing.recv() => {
                if let Err(e) = socket.send(Message::Text(frame.into())).await {
                    return lost(format!("cannot send: {e}"));
                }
            }
            _ = watchdog.tick() => {
                let quiet = lock(&shared.last_frame).map_or(Duration::ZERO, |t| t.elapsed());
                if quiet > silence {
                    let close = CloseFrame { code: 4000.into(), reason: "tick timeout".into() };
                    let _ = socket.close(Some(close)).await;
                    return lost(format!("no frame for {} s (tick watchdog)", quiet.as_secs()));
                }
            }
            () = shared.close_now.notified() => {
                let close = CloseFrame { code: 1000.into(), reason: "closing".into() };
                let _ = socket.close(Some(close)).await;
                return Ended::Closed;
            }
        }
    }
}

fn on_frame(shared: &Shared, events: &mpsc::UnboundedSender<ConnectionEvent>, text: &str) {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        tracing::debug!("undecodable frame from the OpenClaw gateway ignored");
        return;
    };
    match frame.get("type").and_then(Value::as_str) {
        Some("res") => {
            let Some(id) = frame.get("id").and_then(Value::as_str) else { return };
            let Some(waiter) = lock(&shared.pending).remove(id) else { return };
            let answer = if frame.get("ok").and_then(Value::as_bool) == Some(true) {
                Ok(frame.get("payload").cloned().unwrap_or(Value::Null))
            } else {
                Err(frame
                    .get("error")
                    .cloned()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_default())
            };
            let _ = waiter.send(answer);
        }
        Some("event") => {
            let name = frame.get("event").and_then(Value::as_str).unwrap_or_default();
            if matches!(name, "tick" | "connect.challenge") {
                return;
            }
            let payload = frame.get("payload").cloned().unwrap_or(Value::Null);
            let _ = events.send(ConnectionEvent::Event { name: name.to_owned(), payload });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(30));
        for attempt in 0..20 {
            let d = jittered(base, max, attempt);
            assert!(d <= max && d <= base * 2u32.pow(attempt.min(5)));
        }
        let samples: Vec<Duration> = (0..20).map(|_| jittered(base, max, 6)).collect();
        assert!(samples.iter().any(|d| *d != samples[0]), "jittered");
    }

    #[test]
    fn options_never_show_secrets() {
        let options = OpenClawOptions::new("ws://127.0.0.1:18789")
            .token(Some("shared-secret".into()))
            .device_token(Some("device-secret".into()));
        let shown = format!("{options:?}");
        assert!(!shown.contains("shared-secret") && !shown.contains("device-secret"), "{shown}");
    }
}
