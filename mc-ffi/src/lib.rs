//! # mc-ffi
//!
//! The client SDK ([`mc_transport_ws::client::McClient`]) for iOS, Android and Python,
//! through uniffi: an object with async methods (they run on the SDK's own tokio runtime,
//! so the app's UI thread never blocks), a callback interface for the listener, records for
//! messages, sessions and agents, and one flat error enum with the relay's error codes.
//!
//! `generate-bindings.sh OUT_DIR` builds the library and writes the Kotlin, Swift and Python
//! bindings; `mc-ffi/README.md` shows how Android and iOS apps use them.
//!
//! - [`McClient`]: the object apps hold.
//! - [`McListener`]: what the app implements to hear messages, reply text and events.
//! - [`types`]: the records, enums and [`McError`].

pub mod types;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use mc_core::{AgentId, SessionId};
use mc_transport_ws::client as sdk;

pub use types::{
    Agent, ClientState, CloseReason, HistoryPage, McError, Message, SendReceipt, Session,
    SystemEvent,
};

uniffi::setup_scaffolding!();

/// How long `connect` waits for the connection to be authenticated.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SDK's runtime: two worker threads shared by every client of the process.
fn runtime() -> Result<&'static tokio::runtime::Runtime, McError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("mc-ffi")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| McError::Internal(format!("cannot start the SDK's runtime: {e}")))
}

/// Runs `future` on the SDK's runtime and waits for it (from any executor: Kotlin
/// coroutines, Swift tasks, asyncio).
async fn on_runtime<T: Send + 'static>(
    future: impl Future<Output = Result<T, sdk::ClientError>> + Send + 'static,
) -> Result<T, McError> {
    runtime()?
        .spawn(future)
        .await
        .map_err(|e| McError::Internal(format!("the SDK's task failed: {e}")))?
        .map_err(McError::from)
}

fn parse<T: FromStr>(field: &str, text: &str) -> Result<T, McError> {
    text.trim().parse().map_err(|_| McError::InvalidInput(format!("{field}: not a valid id")))
}

/// What the app implements to hear from the client. Called from the SDK's threads (post to
/// the UI thread yourself), never while the SDK holds a lock.
#[uniffi::export(callback_interface)]
pub trait McListener: Send + Sync {
    /// The connection state changed.
    fn on_state(&self, state: ClientState);
    /// A stored message arrived (an agent's reply, a system message, or the user's own from
    /// another device); each once.
    fn on_message(&self, message: Message);
    /// The reply text so far of a run still streaming.
    fn on_reply_text(&self, session_id: String, run_id: String, text: String);
    /// An agent came online, went offline, or reports what it is doing.
    fn on_system(&self, event: SystemEvent);
    /// New tokens (after sign-in or a refresh): keep them in the Keychain / Keystore.
    fn on_tokens(&self, access: String, refresh: String);
    /// How many sent messages wait for their ack.
    fn on_outbox(&self, pending: u32);
}

struct Bridge(Box<dyn McListener>);

impl sdk::Listener for Bridge {
    fn on_state(&self, state: &sdk::ConnectionState) {
        self.0.on_state(state.clone().into());
    }
    fn on_message(&self, message: &mc_core::protocol::ChatMessage) {
        self.0.on_message(message.clone().into());
    }
    fn on_reply_text(&self, session_id: SessionId, run_id: &str, text: &str) {
        self.0.on_reply_text(session_id.to_string(), run_id.to_owned(), text.to_owned());
    }
    fn on_system(&self, event: &sdk::SystemEvent) {
        self.0.on_system(event.into());
    }
    fn on_tokens(&self, tokens: &sdk::Tokens) {
        self.0.on_tokens(tokens.access.clone(), tokens.refresh.clone());
    }
    fn on_outbox(&self, pending: usize) {
        self.0.on_outbox(u32::try_from(pending).unwrap_or(u32::MAX));
    }
}

/// A user's client of one relay.
#[derive(uniffi::Object)]
pub struct McClient {
    client: Arc<sdk::McClient>,
}

impl std::fmt::Debug for McClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.client.fmt(f)
    }
}

#[uniffi::export]
impl McClient {
    /// A client of the relay at `server_url` (`https://…`).
    #[uniffi::constructor]
    pub fn new(server_url: String) -> Result<Arc<Self>, McError> {
        Self::build(&server_url, sdk::ClientOptions::default())
    }

    /// A client that also trusts the CA certificates in `ca_pem` (a private CA, or a
    /// self-signed server certificate).
    #[uniffi::constructor]
    pub fn with_ca(server_url: String, ca_pem: String) -> Result<Arc<Self>, McError> {
        Self::build(&server_url, sdk::ClientOptions { ca_pem: Some(ca_pem) })
    }

    /// Signs in (an empty `organization` means the server's only one).
    pub async fn sign_in(
        &self,
        organization: String,
        username: String,
        password: String,
    ) -> Result<(), McError> {
        let client = self.client.clone();
        on_runtime(
            async move { client.sign_in(&organization, &username, &password).await.map(drop) },
        )
        .await
    }

    /// Creates an account; returns whether the relay also signed it in.
    pub async fn register(
        &self,
        organization: String,
        username: String,
        password: String,
    ) -> Result<bool, McError> {
        let client = self.client.clone();
        on_runtime(async move { client.register(&organization, &username, &password).await }).await
    }

    /// Uses tokens kept from an earlier run.
    pub fn restore_tokens(&self, access: String, refresh: String) {
        self.client.restore_tokens(&access, &refresh);
    }

    /// Signs out and disconnects.
    pub async fn logout(&self) -> Result<(), McError> {
        let client = self.client.clone();
        on_runtime(async move { client.logout().await }).await
    }

    /// Who hears about messages and events.
    pub fn set_listener(&self, listener: Box<dyn McListener>) {
        self.client.set_listener(Arc::new(Bridge(listener)));
    }

    /// Starts the connection (and keeps it up), and resolves once it is authenticated, with
    /// the user's agents (`agents()` has them from then on). Fails with why the relay refused
    /// it for good (`Unauthenticated`: sign in again; `Forbidden`: the account may not
    /// connect), or `Timeout` after 30 s without reaching the relay: the connection keeps
    /// trying meanwhile, and messages sent wait in the outbox.
    pub async fn connect(&self) -> Result<Vec<Agent>, McError> {
        let client = self.client.clone();
        let agents = on_runtime(async move { client.connect_and_wait(CONNECT_TIMEOUT).await });
        Ok(agents.await?.into_iter().map(Agent::from).collect())
    }

    /// Closes the connection; messages not yet acked stay queued for the next `connect`.
    pub fn disconnect(&self) {
        self.client.disconnect();
    }

    /// The network came back or changed: reconnect now.
    pub fn network_changed(&self) {
        self.client.network_changed();
    }

    /// The connection state.
    pub fn state(&self) -> ClientState {
        self.client.state().into()
    }

    /// The user's agents (known once connected), with live status.
    pub fn agents(&self) -> Vec<Agent> {
        self.client.agents().into_iter().map(Agent::from).collect()
    }

    /// How many sent messages wait for their ack.
    pub fn outbox_len(&self) -> u32 {
        u32::try_from(self.client.outbox_len()).unwrap_or(u32::MAX)
    }

    /// Sends `content` to `agent_id`; an empty `session_id` starts a session. Resolves once
    /// the relay stored the message (it is queued while offline). Messages go out in the
    /// order of these calls.
    pub async fn send_message(
        &self,
        agent_id: String,
        session_id: Option<String>,
        content: String,
    ) -> Result<SendReceipt, McError> {
        let agent: AgentId = parse("agent_id", &agent_id)?;
        let session: Option<SessionId> = match session_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse("session_id", text)?),
        };
        // Queued before the first await: messages go out in the order the app sent them.
        let queued = self.client.queue_message(agent, session, &content)?;
        on_runtime(queued).await.map(SendReceipt::from)
    }

    /// Up to `limit` (1–200) messages of `session_id` before `before_seq` (the newest when
    /// absent).
    pub async fn history(
        &self,
        session_id: String,
        before_seq: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, McError> {
        let session: SessionId = parse("session_id", &session_id)?;
        let client = self.client.clone();
        let page =
            on_runtime(async move { client.history(session, before_seq, limit).await }).await?;
        Ok(HistoryPage {
            messages: page.messages.into_iter().map(Message::from).collect(),
            has_more: page.has_more,
        })
    }

    /// The user's sessions.
    pub async fn sessions(&self) -> Result<Vec<Session>, McError> {
        let client = self.client.clone();
        let sessions = on_runtime(async move { client.sessions().await }).await?;
        Ok(sessions.into_iter().map(Session::from).collect())
    }

    /// Asks the agent to stop its run in `session_id`.
    pub async fn abort(&self, session_id: String) -> Result<(), McError> {
        let session: SessionId = parse("session_id", &session_id)?;
        let client = self.client.clone();
        on_runtime(async move { client.abort(session, None).await }).await
    }
}

impl McClient {
    fn build(server_url: &str, options: sdk::ClientOptions) -> Result<Arc<Self>, McError> {
        let handle = runtime()?.handle().clone();
        let client = sdk::McClient::on_runtime(server_url, options, handle)?;
        Ok(Arc::new(Self { client: Arc::new(client) }))
    }
}
