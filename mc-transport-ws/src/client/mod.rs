//! The users' client SDK: [`McClient`] signs in over HTTP(S), keeps one socket to
//! the relay through drops, and hands the app stored messages, reply text and events through
//! a [`Listener`]. `mc-ffi` gives it to Kotlin, Swift and Python; `mc-chat` is built on it.
//!
//! What it promises:
//! - **Nothing sent is lost.** `send_message` puts the message in an outbox with its client
//!   id; it goes out at once when connected, again after every reconnect until the relay
//!   acks it (the relay answers a repeated id with the same ack, never a second message),
//!   and the call resolves with the ack's receipt or the relay's error for that message. A
//!   message refused with `AGENT_UNAVAILABLE` (nothing stored) waits for its agent: it is
//!   sent again on `agent_online` or every 2 s, for up to 30 s after it was queued.
//!   Cancelling the call does not withdraw the message.
//! - **Nothing received is missed or doubled.** After every reconnect the client `resume`s
//!   each session it knows from the last seq below which it has seen everything, and skips
//!   any stored message it already delivered.
//! - **Reconnects on its own**: backoff with full jitter from 0.5 s to 20 s, reset by
//!   [`McClient::network_changed`]; close 4001 → one token refresh, then reconnect (a second
//!   4001 → [`ConnectionState::Closed`] with [`CloseReason::AuthFailed`]); 4003 → closed;
//!   1012, 1013 and drops → reconnect.
//! - Tokens live in memory only; the app stores what [`Listener::on_tokens`] gives it.
//! - The listener is called from the SDK's task, never while a lock is held.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mc_transport_ws::client::ClientError> {
//! use mc_transport_ws::client::McClient;
//! let client = McClient::new("https://relay.example")?;
//! client.sign_in("", "alice", "secret").await?;
//! client.connect()?;
//! let agent = client.wait_for_agents(std::time::Duration::from_secs(10)).await?[0].agent_id;
//! let receipt = client.send_message(agent, None, "hello").await?;
//! println!("stored as #{} in {}", receipt.seq, receipt.session_id);
//! # Ok(()) }
//! ```

mod driver;
mod frames;
mod http;
mod net;
mod state;
mod tracker;
mod types;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mc_core::protocol::{
    AssignmentInfo, ChatMessage, ClientFrame, ClientRequest, ServerFrame, SessionInfo,
};
use mc_core::{AgentId, SessionId};
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc, oneshot};

pub use types::{
    ClientError, CloseReason, ConnectionState, Listener, SendReceipt, SystemEvent, Tokens,
};

use net::Backend;
pub use net::tls_config;
use state::{Command, Pending, Request, Shared};

/// How long `history`, `sessions` and `abort` wait (for a connection, then the answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings beyond the server's address.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM certificates to trust besides the Mozilla roots: a private CA, or a self-signed
    /// server certificate.
    pub ca_pem: Option<String>,
}

/// A page of a session's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Whether older ones exist.
    pub has_more: bool,
}

/// A message in the outbox: resolves with its receipt once acked, or with the relay's error
/// for it.
#[derive(Debug)]
pub struct QueuedMessage {
    receiver: oneshot::Receiver<Result<SendReceipt, ClientError>>,
}

impl Future for QueuedMessage {
    type Output = Result<SendReceipt, ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.receiver).poll(cx).map(|answer| {
            answer
                .unwrap_or_else(|_| Err(ClientError::NotConnected("the client was dropped".into())))
        })
    }
}

/// The state the client and its connection task share.
pub(crate) struct Inner {
    shared: Mutex<Shared>,
    /// Wakes the connection task when something waits to be written.
    wake: Notify,
    backend: Arc<dyn Backend>,
    http: Option<http::HttpApi>,
    runtime: Handle,
    epochs: std::sync::atomic::AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere never leaves this state half-changed in a way that matters more
        // than stopping the app would: keep going with it.
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn epoch(&self) -> u64 {
        self.epochs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    fn access_token(&self) -> Option<String> {
        self.lock().tokens.as_ref().map(|t| t.access.clone())
    }

    fn set_state(&self, state: ConnectionState) {
        let listener = {
            let mut s = self.lock();
            if s.state == state {
                return;
            }
            s.state = state.clone();
            s.listener.clone()
        };
        if let Some(l) = listener {
            l.on_state(&state);
        }
    }

    /// Connection task `run` ends: in `state`, failing what waits with `err` when it is
    /// final. A task replaced by a newer `connect` leaves the newer one's state alone.
    fn stopped(&self, run: u64, state: ConnectionState, err: Option<ClientError>) {
        let emptied = {
            let mut s = self.lock();
            if s.run != run {
                return;
            }
            s.commands = None;
            match err {
                Some(err) => {
                    let had = !s.outbox.is_empty();
                    s.fail_all(&err);
                    had
                }
                None => false,
            }
        };
        self.set_state(state);
        if emptied && let Some(l) = self.lock().listener.clone() {
            l.on_outbox(0);
        }
    }

    fn set_tokens(&self, tokens: Tokens) {
        let listener = {
            let mut s = self.lock();
            s.tokens = Some(tokens.clone());
            s.listener.clone()
        };
        if let Some(l) = listener {
            l.on_tokens(&tokens);
        }
    }

    /// Refreshes the tokens with the refresh token.
    async fn refresh(&self) -> Result<(), ClientError> {
        let refresh = self.lock().tokens.as_ref().map(|t| t.refresh.clone());
        let Some(refresh) = refresh else {
            return Err(ClientError::Unauthenticated("no refresh token".into()));
        };
        let tokens = self.backend.refresh(&refresh).await?;
        self.set_tokens(tokens);
        Ok(())
    }
}

/// A user's client of one relay. Create it, sign in (or restore tokens), set a listener,
/// `connect`. Dropping it disconnects.
pub struct McClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for McClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McClient").field("state", &self.state()).finish_non_exhaustive()
    }
}

/// `http[s]://host[:port][/prefix]` → the HTTP base and the socket URL.
fn endpoints(server_url: &str) -> Result<(String, reqwest::Url), ClientError> {
    let url = reqwest::Url::parse(server_url.trim())
        .map_err(|e| ClientError::InvalidInput(format!("server_url: {e}")))?;
    let ws_scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => {
            return Err(ClientError::InvalidInput(format!(
                "server_url: use http:// or https://, not {other}://"
            )));
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ClientError::InvalidInput("server_url: no host".into()));
    }
    let base = url.as_str().trim_end_matches('/').to_owned();
    let ws = reqwest::Url::parse(&format!("{ws_scheme}{}/ws/chat", &base[url.scheme().len()..]))
        .map_err(|e| ClientError::InvalidInput(format!("server_url: {e}")))?;
    Ok((base, ws))
}

impl McClient {
    /// A client of the relay at `server_url` (`https://…`, or `http://` on a trusted
    /// network), running on the current tokio runtime.
    pub fn new(server_url: &str) -> Result<Self, ClientError> {
        Self::with_options(server_url, ClientOptions::default())
    }

    /// [`McClient::new`] with options, on the current tokio runtime.
    pub fn with_options(server_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let runtime = Handle::try_current()
            .map_err(|_| ClientError::InvalidInput("McClient needs a tokio runtime".into()))?;
        Self::on_runtime(server_url, options, runtime)
    }

    /// [`McClient::with_options`] whose connection task runs on `runtime`.
    pub fn on_runtime(
        server_url: &str,
        options: ClientOptions,
        runtime: Handle,
    ) -> Result<Self, ClientError> {
        let (base, ws_url) = endpoints(server_url)?;
        let tls = net::tls_config(options.ca_pem.as_deref())?;
        let http = http::HttpApi::new(base, tls.clone())?;
        let backend = net::NetBackend { http: http.clone(), ws_url, tls: Arc::new(tls) };
        Ok(Self::from_parts(Arc::new(backend), Some(http), runtime))
    }

    fn from_parts(backend: Arc<dyn Backend>, http: Option<http::HttpApi>, runtime: Handle) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared::default()),
                wake: Notify::new(),
                backend,
                http,
                runtime,
                epochs: Default::default(),
            }),
        }
    }

    fn http(&self) -> Result<&http::HttpApi, ClientError> {
        self.inner.http.as_ref().ok_or_else(|| ClientError::InvalidInput("no HTTP API".into()))
    }

    /// Signs in (an empty `organization` means the server's only one); the listener gets
    /// the tokens.
    pub async fn sign_in(
        &self,
        organization: &str,
        username: &str,
        password: &str,
    ) -> Result<Tokens, ClientError> {
        let tokens = self.http()?.sign_in(organization, username, password).await?;
        self.inner.set_tokens(tokens.clone());
        Ok(tokens)
    }

    /// Creates an account; returns whether the relay also signed it in (self-registration).
    pub async fn register(
        &self,
        organization: &str,
        username: &str,
        password: &str,
    ) -> Result<bool, ClientError> {
        match self.http()?.register(organization, username, password).await? {
            Some(tokens) => {
                self.inner.set_tokens(tokens);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Uses tokens the app kept from an earlier run.
    pub fn restore_tokens(&self, access: &str, refresh: &str) {
        self.inner.lock().tokens =
            Some(Tokens { access: access.to_owned(), refresh: refresh.to_owned() });
    }

    /// The current tokens.
    pub fn tokens(&self) -> Option<Tokens> {
        self.inner.lock().tokens.clone()
    }

    /// Refreshes the tokens now (the SDK also does it by itself when the relay asks).
    pub async fn refresh_tokens(&self) -> Result<(), ClientError> {
        self.inner.refresh().await
    }

    /// Signs out: ends the refresh token's family on the relay, forgets the tokens and
    /// disconnects.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.disconnect();
        let refresh = self.inner.lock().tokens.take().map(|t| t.refresh);
        match refresh {
            Some(refresh) => self.http()?.logout(&refresh).await,
            None => Ok(()),
        }
    }

    /// Who hears about messages, states and events (replaces the previous listener).
    pub fn set_listener(&self, listener: Arc<dyn Listener>) {
        self.inner.lock().listener = Some(listener);
    }

    /// Starts the connection (and keeps it up); no-op when already running.
    pub fn connect(&self) -> Result<(), ClientError> {
        let receiver = {
            let mut s = self.inner.lock();
            if s.tokens.is_none() {
                return Err(ClientError::Unauthenticated("sign in or restore tokens first".into()));
            }
            if s.commands.is_some() {
                return Ok(());
            }
            let (sender, receiver) = mpsc::unbounded_channel();
            s.commands = Some(sender);
            s.run += 1;
            (s.run, receiver)
        };
        self.inner.runtime.spawn(driver::run(self.inner.clone(), receiver.0, receiver.1));
        Ok(())
    }

    /// Closes the socket and stops reconnecting; the outbox is kept for the next `connect`.
    pub fn disconnect(&self) {
        if let Some(commands) = self.inner.lock().commands.take() {
            let _ = commands.send(Command::Stop);
        }
    }

    /// The network came back or changed: reconnect now instead of after the backoff, or
    /// check that a connected socket still works.
    pub fn network_changed(&self) {
        if let Some(commands) = &self.inner.lock().commands {
            let _ = commands.send(Command::NetworkChanged);
        }
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.inner.lock().state.clone()
    }

    /// The user's agents as the relay last listed them (empty before the first connection),
    /// with their status kept current by `agent_online`/`agent_offline` events.
    pub fn agents(&self) -> Vec<AssignmentInfo> {
        self.inner.lock().assignments.clone()
    }

    /// [`McClient::agents`], waiting up to `timeout` for the connection to be authenticated.
    /// Fails with why the relay refused it for good (`Unauthenticated`: sign in again;
    /// `Forbidden`: the account may not connect), `NotConnected` when `connect` was not
    /// called, or `Timeout` (the connection keeps trying in the background).
    pub async fn wait_for_agents(
        &self,
        timeout: Duration,
    ) -> Result<Vec<AssignmentInfo>, ClientError> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let (state, agents, running) = {
                let s = self.inner.lock();
                (s.state.clone(), s.assignments.clone(), s.commands.is_some())
            };
            match state {
                ConnectionState::Connected => return Ok(agents),
                ConnectionState::Closed { reason: CloseReason::AuthFailed } => {
                    let why = "the relay refused the tokens, even refreshed: sign in again";
                    return Err(ClientError::Unauthenticated(why.into()));
                }
                ConnectionState::Closed { reason: CloseReason::Forbidden } => {
                    let why = "the account is suspended or may not connect";
                    return Err(ClientError::Forbidden(why.into()));
                }
                _ if !running => {
                    return Err(ClientError::NotConnected("call connect first".into()));
                }
                _ if tokio::time::Instant::now() >= until => return Err(ClientError::Timeout),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Starts the connection ([`McClient::connect`]) and waits up to `timeout` until it is
    /// authenticated, so [`McClient::agents`] is filled when it returns them. Fails as
    /// [`McClient::wait_for_agents`] does.
    pub async fn connect_and_wait(
        &self,
        timeout: Duration,
    ) -> Result<Vec<AssignmentInfo>, ClientError> {
        self.connect()?;
        self.wait_for_agents(timeout).await
    }

    /// How many sent messages wait for their ack.
    pub fn outbox_len(&self) -> usize {
        self.inner.lock().outbox.len()
    }

    /// Sends `content` to `agent_id` in `session_id` (`None` starts a session). Resolves
    /// with the receipt once the relay stored the message, or with its error for it.
    pub async fn send_message(
        &self,
        agent_id: AgentId,
        session_id: Option<SessionId>,
        content: &str,
    ) -> Result<SendReceipt, ClientError> {
        self.queue_message(agent_id, session_id, content)?.await
    }

    /// Puts the message in the outbox now (messages go out in the order they are queued)
    /// and returns what resolves with its receipt: [`McClient::send_message`] in two steps,
    /// for callers that must fix the order before they wait.
    pub fn queue_message(
        &self,
        agent_id: AgentId,
        session_id: Option<SessionId>,
        content: &str,
    ) -> Result<QueuedMessage, ClientError> {
        if content.trim().is_empty() {
            return Err(ClientError::InvalidInput("content: must not be empty".into()));
        }
        let (sender, receiver) = oneshot::channel();
        let (pending, listener) = {
            let mut s = self.inner.lock();
            s.outbox.push_back(Pending {
                client_id: uuid::Uuid::now_v7(),
                agent_id,
                session_id,
                content: content.to_owned(),
                sent_on: None,
                queued_at: tokio::time::Instant::now(),
                parked_until: None,
                waiter: Some(sender),
            });
            (s.outbox.len(), s.listener.clone())
        };
        if let Some(l) = listener {
            l.on_outbox(pending);
        }
        self.inner.wake.notify_one();
        Ok(QueuedMessage { receiver })
    }

    async fn request(
        &self,
        request: ClientRequest,
        answered: bool,
    ) -> Result<Option<ServerFrame>, ClientError> {
        let (sender, receiver) = oneshot::channel();
        let id = {
            let mut s = self.inner.lock();
            if s.commands.is_none() {
                return Err(ClientError::NotConnected("call connect first".into()));
            }
            s.next_request += 1;
            let id = format!("q-{}", s.next_request);
            let frame = ClientFrame::with_id(id.clone(), request).to_json();
            s.requests.insert(
                id.clone(),
                Request { frame, answered, sent_on: None, waiter: Some(sender) },
            );
            s.request_order.push_back(id.clone());
            id
        };
        self.inner.wake.notify_one();
        match tokio::time::timeout(REQUEST_TIMEOUT, receiver).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ClientError::NotConnected("the client was dropped".into())),
            Err(_) => {
                self.inner.lock().take_request(&id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// A page of `session_id`'s stored messages before `before_seq` (the newest when
    /// `None`), at most `limit` (1–200).
    pub async fn history(
        &self,
        session_id: SessionId,
        before_seq: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, ClientError> {
        if !(1..=mc_core::protocol::MAX_HISTORY_LIMIT).contains(&limit) {
            return Err(ClientError::InvalidInput("limit: must be from 1 to 200".into()));
        }
        match self.request(ClientRequest::History { session_id, before_seq, limit }, true).await? {
            Some(ServerFrame::History { messages, has_more, .. }) => {
                Ok(HistoryPage { messages, has_more })
            }
            other => Err(ClientError::Protocol(format!("expected history, got {other:?}"))),
        }
    }

    /// The user's sessions.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, ClientError> {
        match self.request(ClientRequest::Sessions, true).await? {
            Some(ServerFrame::Sessions { sessions, .. }) => Ok(sessions),
            other => Err(ClientError::Protocol(format!("expected sessions, got {other:?}"))),
        }
    }

    /// Asks the agent to stop the run in `session_id` (the current one if `run_id` is
    /// `None`); resolves once the request is written.
    pub async fn abort(
        &self,
        session_id: SessionId,
        run_id: Option<String>,
    ) -> Result<(), ClientError> {
        self.request(ClientRequest::Abort { session_id, run_id }, false).await.map(drop)
    }

    /// Tells the client which sessions the app already has up to which seq (e.g. from its
    /// own database after a restart), so the next connection resumes them from there.
    pub fn track_session(&self, session_id: SessionId, after_seq: u64) {
        self.inner.lock().tracker.know(session_id, after_seq);
    }
}

impl Drop for McClient {
    fn drop(&mut self) {
        self.disconnect();
    }
}

#[cfg(test)]
mod frames_fuzz;
#[cfg(test)]
mod tests;
