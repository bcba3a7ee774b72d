//! The gateway side of the relay link (docs/gateway-link.md): dial `/ws/gateway/{id}/relay`,
//! authenticate with the relay token, answer the relay's OpenClaw requests with a [`Backend`]
//! (the built-in echo agent, or a local OpenClaw gateway the requests are forwarded to),
//! heartbeat on the socket with this process's metrics and the backend's agents, and
//! reconnect forever (1 s base, 10 s cap, full jitter) until told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mc_core::protocol::close_code;
use mc_core::protocol::{GatewayToRelay, RelayToGateway, SocketHeartbeat, decode_relay_frame};
use mc_openclaw::{Backoff, Frame, Request};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::echo::EchoAgent;
use crate::forward::OpenClawBackend;
use crate::process::ProcessSampler;

/// What answers the relay's requests.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The built-in echo agent.
    Echo(Arc<EchoAgent>),
    /// A local OpenClaw gateway, requests forwarded to it.
    OpenClaw(Arc<OpenClawBackend>),
}

impl Backend {
    /// The agents to report.
    pub fn agents(&self) -> Vec<mc_core::AgentReport> {
        match self {
            Backend::Echo(_) => EchoAgent::agents(),
            Backend::OpenClaw(openclaw) => openclaw.agents(),
        }
    }

    fn handle(&self, request: Request, out: mpsc::Sender<String>) {
        match self {
            Backend::Echo(agent) => agent.handle(&request, out),
            Backend::OpenClaw(openclaw) => openclaw.forward(request, out),
        }
    }

    fn busy(&self) -> usize {
        match self {
            Backend::Echo(agent) => agent.active_runs(),
            Backend::OpenClaw(openclaw) => openclaw.in_flight(),
        }
    }

    /// Waits until the backend can serve (the local gateway is connected); `false` on
    /// shutdown.
    pub async fn ready(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let Backend::OpenClaw(openclaw) = self else { return true };
        let mut up = openclaw.up();
        loop {
            if *up.borrow_and_update() {
                return true;
            }
            tokio::select! {
                changed = up.changed() => if changed.is_err() { return false },
                _ = until_set(shutdown) => return false,
            }
        }
    }
}

/// Where and how to link.
#[derive(Clone)]
pub struct BridgeSettings {
    /// `ws://host/ws/gateway/<id>/relay`.
    pub relay_ws_url: String,
    /// The relay token from registration.
    pub relay_token: String,
    /// First reconnect delay (default 1 s).
    pub reconnect_base: Duration,
    /// Longest reconnect delay (default 10 s).
    pub reconnect_max: Duration,
    /// Heartbeat period; `None` uses what the relay says in `auth_ok`.
    pub heartbeat_every: Option<Duration>,
    /// PEM CA certificates to trust for a `wss://` relay besides the Mozilla roots.
    pub relay_ca_pem: Option<String>,
}

mc_core::debug_redacted!(BridgeSettings { relay_ws_url, reconnect_base, reconnect_max, heartbeat_every, relay_ca_pem } secret { relay_token });

impl BridgeSettings {
    /// Settings with the default timers.
    pub fn new(relay_ws_url: impl Into<String>, relay_token: impl Into<String>) -> Self {
        Self {
            relay_ws_url: relay_ws_url.into(),
            relay_token: relay_token.into(),
            reconnect_base: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(10),
            heartbeat_every: None,
            relay_ca_pem: None,
        }
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeEnd {
    /// Shutdown was requested.
    Shutdown,
    /// The relay refused the relay token (revoked or replaced): register again.
    Unauthorized,
}

enum SessionEnd {
    Shutdown,
    Unauthorized,
    /// The link dropped after this long.
    Dropped(Duration),
}

/// Resolves once `flag` is true (or its sender is gone).
pub async fn until_set(flag: &mut watch::Receiver<bool>) {
    loop {
        if *flag.borrow_and_update() {
            return;
        }
        if flag.changed().await.is_err() {
            return;
        }
    }
}

/// Links to the relay and serves `backend` until `shutdown` turns true or the relay refuses
/// the token. While the backend cannot serve (its local gateway is down) it holds no link.
pub async fn run(
    settings: &BridgeSettings,
    backend: Backend,
    mut shutdown: watch::Receiver<bool>,
) -> BridgeEnd {
    let mut backoff = Backoff::new(settings.reconnect_base, settings.reconnect_max);
    loop {
        if !backend.ready(&mut shutdown).await {
            return BridgeEnd::Shutdown;
        }
        match session(settings, &backend, &mut shutdown).await {
            SessionEnd::Shutdown => return BridgeEnd::Shutdown,
            SessionEnd::Unauthorized => return BridgeEnd::Unauthorized,
            SessionEnd::Dropped(lasted) => {
                // A link that held for a while starts the backoff over.
                if lasted > Duration::from_secs(30) {
                    backoff.reset();
                }
                let wait = backoff.next_delay().max(Duration::from_millis(100));
                tracing::info!(
                    in_ms = wait.as_millis() as u64,
                    attempt = backoff.attempts(),
                    "relay link down; reconnecting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = until_set(&mut shutdown) => return BridgeEnd::Shutdown,
                }
            }
        }
    }
}

// One link's life, top to bottom: dial, authenticate, hand the link to the backend, serve,
// take it back.
async fn session(
    settings: &BridgeSettings,
    backend: &Backend,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let started = Instant::now();
    let dropped = || SessionEnd::Dropped(started.elapsed());
    let connector = if settings.relay_ws_url.starts_with("wss://") {
        match mc_transport_ws::client::tls_config(settings.relay_ca_pem.as_deref()) {
            Ok(config) => Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(config))),
            Err(err) => {
                tracing::error!(error = %err, "cannot set up TLS for the relay");
                return SessionEnd::Unauthorized;
            }
        }
    } else {
        None
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        settings.relay_ws_url.as_str(),
        None,
        true,
        connector,
    );
    let mut socket = tokio::select! {
        connected = connect => match connected {
            Ok((socket, _)) => socket,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 401 || response.status() == 404 => {
                tracing::warn!(status = %response.status(), "the relay does not know this gateway");
                return SessionEnd::Unauthorized;
            }
            Err(err) => {
                let url = mc_openclaw::connection::loggable_url(&settings.relay_ws_url);
                tracing::warn!(error = %err, %url, "cannot reach the relay");
                return dropped();
            }
        },
        _ = until_set(shutdown) => return SessionEnd::Shutdown,
    };
    let auth = GatewayToRelay::Auth { relay_token: settings.relay_token.as_str().into() };
    if socket.send(Message::Text(auth.to_json().into())).await.is_err() {
        return dropped();
    }
    let interval = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match decode_relay_frame(&text) {
                Ok(RelayToGateway::AuthOk { heartbeat_interval_seconds: secs, .. }) => {
                    break settings.heartbeat_every.unwrap_or(Duration::from_secs(secs.max(1)));
                }
                Ok(RelayToGateway::AuthError { .. }) => return SessionEnd::Unauthorized,
                _ => continue,
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return dropped(),
            Some(Ok(_)) => continue,
        }
    };
    tracing::info!("linked to the relay");

    let (out_tx, mut out_rx) = mpsc::channel::<String>(1024);
    let mut local_up = match backend {
        Backend::OpenClaw(openclaw) => {
            openclaw.set_relay(Some(out_tx.clone()));
            Some(openclaw.up())
        }
        Backend::Echo(agent) => {
            agent.set_relay(Some(out_tx.clone()));
            None
        }
    };
    let end = linked(
        socket,
        backend,
        &out_tx,
        &mut out_rx,
        interval,
        local_up.as_mut(),
        shutdown,
        dropped,
    )
    .await;
    match backend {
        Backend::OpenClaw(openclaw) => openclaw.set_relay(None),
        Backend::Echo(agent) => agent.set_relay(None),
    }
    end
}

/// Serves an authenticated relay link until it ends.
#[allow(clippy::too_many_arguments)]
async fn linked(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    backend: &Backend,
    out_tx: &mpsc::Sender<String>,
    out_rx: &mut mpsc::Receiver<String>,
    interval: Duration,
    mut local_up: Option<&mut watch::Receiver<bool>>,
    shutdown: &mut watch::Receiver<bool>,
    dropped: impl Fn() -> SessionEnd,
) -> SessionEnd {
    let mut sampler = ProcessSampler::new();
    let mut ticks = tokio::time::interval(interval);
    loop {
        let local_down = async {
            match local_up.as_mut() {
                Some(up) => {
                    while *up.borrow_and_update() {
                        if up.changed().await.is_err() {
                            return;
                        }
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    match decode_relay_frame(&text) {
                        Ok(RelayToGateway::OpenClaw(Frame::Request(request))) => {
                            backend.handle(request, out_tx.clone());
                        }
                        Ok(_) => {}
                        Err(err) => tracing::debug!(error = %err, "undecodable relay frame ignored"),
                    }
                }
                Some(Ok(Message::Close(close))) => {
                    if close.as_ref().is_some_and(|c| u16::from(c.code) == close_code::UNAUTHORIZED) {
                        tracing::warn!("the relay revoked this gateway's token");
                        return SessionEnd::Unauthorized;
                    }
                    return dropped();
                }
                None | Some(Err(_)) => return dropped(),
                Some(Ok(_)) => {}
            },
            Some(frame) = out_rx.recv() => {
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    return dropped();
                }
            }
            () = local_down => {
                // No local gateway to forward to: let the relay see the gateway away.
                tracing::warn!("the local OpenClaw gateway is down; unlinking from the relay until it is back");
                let _ = socket.close(Some(CloseFrame { code: close_code::RESTARTING.into(), reason: "local gateway restarting".into() })).await;
                return dropped();
            }
            _ = ticks.tick() => {
                let runs = u32::try_from(backend.busy()).unwrap_or(u32::MAX);
                let agents = backend.agents();
                let metrics = sampler.sample(runs, agents.len() as u32);
                let beat = GatewayToRelay::Heartbeat(SocketHeartbeat {
                    metrics: Some(metrics),
                    agents: Some(agents),
                    status: Some("online".into()),
                });
                if socket.send(Message::Text(beat.to_json().into())).await.is_err() {
                    return dropped();
                }
            }
            _ = until_set(shutdown) => {
                let _ = socket.close(Some(CloseFrame { code: close_code::GOING_AWAY.into(), reason: "gateway shutting down".into() })).await;
                return SessionEnd::Shutdown;
            }
        }
    }
}
