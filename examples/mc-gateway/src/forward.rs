//! [`OpenClawBackend`]: the bridge's forwarding to its local OpenClaw gateway (docs/gateway-link.md). The
//! relay's requests are made on the local gateway as they come (each answered with the
//! relay's request id); the gateway's `chat` and `agent` events go to the relay as they
//! come. The agents come from `agents.list`, read again at every (re)connection.
//!
//! While the local gateway is down the bridge holds no relay link (the relay then treats the
//! gateway as away, and fails its runs if it stays away past the grace period); when the
//! gateway is back, the bridge links again and the relay sends what is pending, with the same
//! idempotency keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_core::AgentReport;
use mc_openclaw::connection::{ConnectionEvent, OpenClawConnection, OpenClawOptions};
use mc_openclaw::method::AgentsList;
use mc_openclaw::rpc::CallError;
use mc_openclaw::{ConnectFailure, ErrorShape, Frame, Request, Response};
use tokio::sync::{mpsc, watch};

/// Time a forwarded request may take (the relay applies its own timeout too).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);
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
                        if matches!(event.event.as_str(), "chat" | "agent") {
                            backend.to_relay(Frame::Event(event).to_json());
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

    fn to_relay(&self, frame: String) {
        if let Some(relay) = self.to_relay.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            // A relay that cannot keep up loses events; it catches up from chat.history.
            let _ = relay.try_send(frame);
        }
    }

    /// Forwards one relay request as it came and sends the answer, under the relay's id, to
    /// `out`.
    pub fn forward(self: &Arc<Self>, request: Request, out: mpsc::Sender<String>) {
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
