//! [`OpenClawBackend`]: the bridge's forwarding to its local OpenClaw gateway (docs/gateway-link.md). The
//! relay's requests are made on the local gateway as they come (each answered with the
//! relay's request id); the gateway's `chat` and `agent` events go to the relay as they
//! come. The agents come from `agents.list`, read again at every (re)connection.
//!
//! The bridge holds the local gateway's operator scopes, so it forwards only what the relay
//! needs: the methods it uses (`chat.send`, `chat.abort`, `chat.history`) on the sessions it
//! made (`agent:<key>:mc-<session id>`), and only those sessions' events. A run's end
//! (`chat` final, error, aborted, and `agent` lifecycle) is never dropped: the relay's link
//! takes it as soon as it has room; streamed pieces may be dropped when the link lags (the
//! end carries the whole reply).
//!
//! While the local gateway is down the bridge holds no relay link (the relay then treats the
//! gateway as away, and fails its runs if it stays away past the grace period); when the
//! gateway is back, the bridge links again and the relay sends what is pending, with the same
//! idempotency keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_core::{AgentReport, ChatSession};
use mc_openclaw::chat::{ChatAbortParams, ChatHistoryParams, ChatSendParams};
use mc_openclaw::connection::{ConnectionEvent, OpenClawConnection, OpenClawOptions};
use mc_openclaw::method::AgentsList;
use mc_openclaw::rpc::CallError;
use mc_openclaw::{ConnectFailure, ErrorShape, Event, EventFrame, Frame, Request, Response};
use tokio::sync::{mpsc, watch};

/// Time a forwarded request may take (the relay applies its own timeout too).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a run's end waits for room on the relay's link.
const RUN_END_WAIT: Duration = Duration::from_secs(30);
/// When the relay may try again while the local gateway is away.
const LOCAL_RETRY_MS: u64 = 1000;

/// The local OpenClaw gateway, as the bridge's backend.
#[derive(Debug)]
pub struct OpenClawBackend {
    connection: OpenClawConnection,
    up: watch::Receiver<bool>,
    agents: Mutex<Vec<AgentReport>>,
    to_relay: Mutex<Option<mpsc::Sender<String>>>,
    in_flight: AtomicUsize,
}

/// An OpenClaw agent as the relay knows it: its id is the agent key, its name (if any) the name.
impl OpenClawBackend {
    /// Connects to the local gateway (and keeps connecting); see [`ready`](Self::ready).
    pub fn start(options: OpenClawOptions) -> Arc<Self> {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let connection = OpenClawConnection::start(options, events_tx);
        let (up_tx, up) = watch::channel(false);
        let backend = Arc::new(Self {
            connection,
            up,
            agents: Mutex::new(Vec::new()),
            to_relay: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&backend);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let Some(backend) = weak.upgrade() else { return };
                match event {
                    ConnectionEvent::Up(hello) => {
                        tracing::info!(version = %hello.server.version, "linked to the local OpenClaw gateway");
                        match backend
                            .connection
                            .call_method::<AgentsList>(&Default::default(), Duration::from_secs(15))
                            .await
                        {
                            Ok(list) => {
                                let agents = AgentReport::from_agents_list(&list);
                                tracing::info!(agents = agents.len(), "OpenClaw agents");
                                *backend.agents.lock().unwrap_or_else(|p| p.into_inner()) = agents;
                            }
                            Err(err) => tracing::warn!(error = %err, "agents.list failed"),
                        }
                        let _ = up_tx.send(true);
                    }
                    ConnectionEvent::Down(why) => {
                        tracing::warn!(reason = %why, "the local OpenClaw gateway went away");
                        let _ = up_tx.send(false);
                    }
                    ConnectionEvent::Refused(failure) => {
                        if matches!(failure, ConnectFailure::Starting { .. }) {
                            tracing::info!(%failure, "the local OpenClaw gateway is starting");
                        } else {
                            tracing::error!(%failure, "the local OpenClaw gateway refused the bridge");
                        }
                        let _ = up_tx.send(false);
                    }
                    ConnectionEvent::Event(event) => {
                        if let Some(must_arrive) = relay_event(&event) {
                            backend.to_relay(Frame::Event(event).to_json(), must_arrive).await;
                        }
                    }
                    ConnectionEvent::DeviceToken(_) => {}
                    _ => {}
                }
            }
        });
        backend
    }

    /// Whether the local gateway is connected (and its agents read), and its changes.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.clone()
    }

    /// The agents the local gateway reports.
    pub fn agents(&self) -> Vec<AgentReport> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests being forwarded.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Sends the gateway's frames to `relay` (the current relay link), or to nobody.
    pub fn set_relay(&self, relay: Option<mpsc::Sender<String>>) {
        *self.to_relay.lock().unwrap_or_else(|p| p.into_inner()) = relay;
    }

    /// Sends an event to the relay's link: one that `must_arrive` waits for room, others are
    /// dropped when the link lags.
    async fn to_relay(&self, frame: String, must_arrive: bool) {
        let relay = self.to_relay.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(relay) = relay else { return };
        if must_arrive {
            // Fails only when the link is gone or stuck past the bound: the relay then reads
            // the run's end from chat.history.
            if tokio::time::timeout(RUN_END_WAIT, relay.send(frame)).await.is_err() {
                tracing::warn!(
                    "the relay's link took no event for {RUN_END_WAIT:?}: a run's end is left to chat.history"
                );
            }
        } else if relay.try_send(frame).is_err() {
            tracing::debug!("the relay's link lags: a streamed piece is dropped");
        }
    }

    /// Forwards one relay request as it came and sends the answer, under the relay's id, to
    /// `out`; a request outside what the relay uses is refused without reaching the gateway.
    pub fn forward(self: &Arc<Self>, request: Request, out: mpsc::Sender<String>) {
        if let Err(refusal) = in_scope(&request) {
            tracing::warn!(method = %request.method, "refused a request outside the bridge's scope");
            let refused = Response::error(request.id, *refusal);
            tokio::spawn(async move { out.send(Frame::Response(refused).to_json()).await });
            return;
        }
        let backend = self.clone();
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let answer =
                backend.connection.call(&request.method, request.params, FORWARD_TIMEOUT).await;
            backend.in_flight.fetch_sub(1, Ordering::Relaxed);
            let response = match answer {
                Ok(payload) => Response::ok(request.id, payload),
                Err(CallError::Remote(error)) => Response::error(request.id, *error),
                Err(CallError::Timeout) => Response::error(
                    request.id,
                    ErrorShape::new(
                        "UNAVAILABLE",
                        "the local OpenClaw gateway did not answer in time",
                    ),
                ),
                Err(_) => Response::error(
                    request.id,
                    ErrorShape::new("UNAVAILABLE", "the local OpenClaw gateway is not connected")
                        .retry_after(LOCAL_RETRY_MS),
                ),
            };
            let _ = out.send(Frame::Response(response).to_json()).await;
        });
    }

    /// Closes the connection to the local gateway.
    pub fn close(&self) {
        self.connection.close();
    }
}

/// Whether the bridge forwards `request`: a method the relay uses, on a session the relay
/// made. The refusal says what is allowed.
fn in_scope(request: &Request) -> Result<(), Box<ErrorShape>> {
    let params = &request.params;
    let key = match request.method.as_str() {
        "chat.send" => params.decode::<ChatSendParams>("chat.send").map(|p| p.session_key),
        "chat.abort" => params.decode::<ChatAbortParams>("chat.abort").map(|p| p.session_key),
        "chat.history" => params.decode::<ChatHistoryParams>("chat.history").map(|p| p.session_key),
        other => {
            let message = format!(
                "the bridge forwards chat.send, chat.abort and chat.history only, not {other:?}"
            );
            return Err(Box::new(ErrorShape::new("INVALID_REQUEST", message)));
        }
    };
    match key {
        Ok(key) if ChatSession::is_relay_session_key(&key) => Ok(()),
        Ok(_) => Err(Box::new(ErrorShape::new(
            "INVALID_REQUEST",
            "the bridge forwards the relay's sessions only (agent:<key>:mc-<session id>)",
        ))),
        Err(err) => Err(Box::new(ErrorShape::new("INVALID_REQUEST", err.to_string()))),
    }
}

/// Whether an event of the local gateway goes to the relay: `Some(must_arrive)` for `chat`
/// and `agent` events of the relay's sessions (`must_arrive` for a run's end), `None` for
/// anything else.
fn relay_event(event: &EventFrame) -> Option<bool> {
    match event.decode() {
        Ok(Event::Chat(chat)) if ChatSession::is_relay_session_key(&chat.session_key) => {
            Some(chat.state.is_terminal())
        }
        Ok(Event::Agent(agent))
            if agent.session_key.as_deref().is_some_and(ChatSession::is_relay_session_key) =>
        {
            Some(agent.stream == "lifecycle")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use mc_core::SessionId;
    use mc_openclaw::Payload;
    use serde_json::json;

    use super::*;

    fn request(method: &str, params: serde_json::Value) -> Request {
        Request::new("r1", method, Payload::encode(&params).unwrap())
    }

    fn event(name: &str, payload: serde_json::Value) -> EventFrame {
        EventFrame::new(name, Payload::encode(&payload).unwrap())
    }

    #[test]
    fn only_the_relays_methods_on_the_relays_sessions_are_forwarded() {
        let ours = ChatSession::session_key_for("main", SessionId::new());
        let send = json!({ "sessionKey": ours, "message": "hi", "idempotencyKey": "k1" });
        assert!(in_scope(&request("chat.send", send)).is_ok());
        assert!(in_scope(&request("chat.history", json!({ "sessionKey": ours }))).is_ok());
        let abort = json!({ "sessionKey": ours, "runId": "k1" });
        assert!(in_scope(&request("chat.abort", abort)).is_ok());

        let theirs =
            json!({ "sessionKey": "agent:main:main", "message": "hi", "idempotencyKey": "k" });
        let refused = in_scope(&request("chat.send", theirs)).unwrap_err();
        assert!(refused.message.contains("relay's sessions"), "{refused:?}");
        for method in ["config.apply", "sessions.delete", "exec.approval.resolve", "agents.list"] {
            let refused = in_scope(&request(method, json!({}))).unwrap_err();
            assert_eq!(refused.code, "INVALID_REQUEST", "{method}");
        }
        assert!(in_scope(&request("chat.send", json!({ "message": "no key" }))).is_err());
    }

    #[test]
    fn only_the_relays_sessions_events_go_to_the_relay_and_a_runs_end_must_arrive() {
        let ours = ChatSession::session_key_for("main", SessionId::new());
        let chat = |key: &str, state: &str| {
            event("chat", json!({ "runId": "r", "sessionKey": key, "state": state }))
        };
        assert_eq!(relay_event(&chat(&ours, "delta")), Some(false));
        assert_eq!(relay_event(&chat(&ours, "final")), Some(true));
        assert_eq!(relay_event(&chat(&ours, "error")), Some(true));
        assert_eq!(relay_event(&chat("agent:main:main", "final")), None, "not the relay's");
        let agent = |key: &str, stream: &str| {
            event("agent", json!({ "runId": "r", "sessionKey": key, "stream": stream, "data": {} }))
        };
        assert_eq!(relay_event(&agent(&ours, "lifecycle")), Some(true));
        assert_eq!(relay_event(&agent(&ours, "assistant")), Some(false));
        assert_eq!(relay_event(&agent("agent:ops:cron-1", "lifecycle")), None);
        assert_eq!(relay_event(&event("health", json!({ "ok": true }))), None);
        assert_eq!(relay_event(&event("sessions.changed", json!({ "sessionKey": ours }))), None);
    }

    #[tokio::test]
    async fn a_runs_end_waits_for_room_where_a_streamed_piece_is_dropped() {
        let backend = OpenClawBackend::start(OpenClawOptions::new("ws://127.0.0.1:9"));
        let (link, mut relay) = mpsc::channel(1);
        backend.set_relay(Some(link));
        backend.to_relay("first".into(), false).await;
        backend.to_relay("a piece".into(), false).await;
        let end = {
            let backend = backend.clone();
            tokio::spawn(async move { backend.to_relay("the end".into(), true).await })
        };
        tokio::task::yield_now().await;
        assert!(!end.is_finished(), "the end waits for room");
        assert_eq!(relay.recv().await.as_deref(), Some("first"));
        end.await.unwrap();
        assert_eq!(relay.recv().await.as_deref(), Some("the end"), "the piece was dropped");
        backend.close();
    }
}
