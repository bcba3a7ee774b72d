//! `/ws/gateway/{id}/relay`: a gateway's socket. After the relay's `auth` handshake the frames
//! are OpenClaw's: the relay sends `req`, the gateway answers `res` and pushes `event`s; a
//! `heartbeat` frame may replace HTTP heartbeats. Its I/O is the socket pump's (`pump`), its
//! rules mc-core's `SocketRules` (the auth deadline, silence for three heartbeat intervals, a
//! deadline on every write); the relay pings it every interval.
//!
//! The socket is read through a [`ReadBudget`] (the handshake is [`super::handshake`]'s): a
//! gateway may send 4 MiB frames once it is known, but before its `auth` frame is checked it
//! cannot make the relay read more than [`PRE_AUTH_BYTES`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mc_core::GatewayId;
use mc_core::link::FrameLink;
use mc_core::link::LinkWrite;
use mc_core::protocol::close_code;
use mc_core::protocol::{GatewayToRelay, RelayToGateway, decode_gateway_frame};
use mc_core::socket::{Close, SocketRules};
use mc_openclaw::{ErrorShape, Frame};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::AppState;
use super::error::ApiError;
use super::handshake::{Upgrade, UpgradedIo};
use super::link_board::Probe;
use super::pump::{Flow, Outgoing, Peer, PreAuth, Pump, Read};
use super::read_budget::{BudgetLift, ReadBudget};

/// A gateway's socket carries every run of its users: read it in large pieces (one socket per
/// gateway, so its buffer's memory does not matter).
const GATEWAY_READ_BUFFER: usize = 64 * 1024;

/// Frames queued towards one gateway before callers wait (backpressure).
const LINK_QUEUE: usize = 256;
/// Frames from a gateway may be larger than users' (OpenClaw allows 25 MiB); replies are text.
const GATEWAY_FRAME_LIMIT: usize = 4 * 1024 * 1024;
/// What a gateway's socket may send before its `auth` frame is checked (the `auth` frame is a
/// few hundred bytes): a larger first frame ends the connection before it is buffered.
pub(crate) const PRE_AUTH_BYTES: usize = 16 * 1024;

type GatewayPump = Pump<ReadBudget<UpgradedIo>>;

// The upgrade's closure yields the socket's future on purpose: `Upgrade::accept` spawns it.
#[allow(clippy::async_yields_async)]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    super::registry_routes::ClientIp(ip): super::registry_routes::ClientIp,
    mut request: Request,
) -> Response {
    let Ok(id) = id.parse::<GatewayId>() else {
        return ApiError::bad_field("gateway id", "is not a valid id").into_response();
    };
    let upgrade = match Upgrade::check(&mut request) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return refusal.into_response(),
    };
    if state.services.store().get_gateway(id).await.ok().flatten().is_none() {
        return ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "gateway not found")
            .into_response();
    }
    // Until it authenticates, a gateway's socket takes an unauthenticated place and may read
    // only PRE_AUTH_BYTES.
    let Some(pass) = state.pre_auth.enter(ip) else {
        return super::handshake::too_many_unauthenticated();
    };
    let remote = ip.map(|ip| ip.to_string());
    upgrade.accept("gateway", move |io| async move {
        let (io, lift) = ReadBudget::new(io, PRE_AUTH_BYTES);
        let config = WebSocketConfig::default()
            .max_message_size(Some(GATEWAY_FRAME_LIMIT))
            .max_frame_size(Some(GATEWAY_FRAME_LIMIT))
            .read_buffer_size(GATEWAY_READ_BUFFER);
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        run(state, id, remote, pass, socket, lift)
    })
}

fn text(frame: &RelayToGateway) -> Message {
    Message::Text(frame.to_json().into())
}

/// What a gateway's first frame is: its `auth` frame, checked; anything else is refused.
async fn judge(state: AppState, id: GatewayId, read: Result<Utf8Bytes, Read>) -> PreAuth<()> {
    let accepted = match read.as_deref().map(decode_gateway_frame) {
        Ok(Ok(GatewayToRelay::Auth { relay_token })) => {
            state.services.registry().authenticate_gateway(id, relay_token.expose()).await.is_ok()
        }
        _ => false,
    };
    if accepted {
        return PreAuth::Accepted(());
    }
    let refused = text(&RelayToGateway::AuthError { reason: "invalid_token".into() });
    let reason = "unknown gateway or wrong relay token";
    PreAuth::Refuse(Some(refused), Close { code: close_code::UNAUTHORIZED, reason })
}

async fn run(
    state: AppState,
    id: GatewayId,
    remote: Option<String>,
    pass: super::pre_auth::PreAuthPass,
    socket: WebSocketStream<ReadBudget<UpgradedIo>>,
    budget: BudgetLift,
) {
    let limits = state.config.socket_limits();
    let interval = state.services.registry().config().heartbeat_interval();
    let mut pump: GatewayPump = Pump::new(socket, &limits);
    let mut rules = SocketRules::new(&limits, interval, Instant::now());
    let timed_out = text(&RelayToGateway::AuthError { reason: "timeout".into() });
    let judged = pump.authenticate(&mut rules, timed_out, |read| judge(state.clone(), id, read));
    if judged.await.is_none() {
        return;
    }
    drop(pass);
    budget.lift();
    let auth_ok =
        RelayToGateway::AuthOk { gateway_id: id, heartbeat_interval_seconds: interval.as_secs() };
    if !pump.send(text(&auth_ok)).await {
        return;
    }
    rules.authenticated(None, Instant::now());
    let (link, writes) = FrameLink::new(LINK_QUEUE);
    let link = Arc::new(link);
    let generation = match state.relay.attach_gateway(id, link.clone()).await {
        Ok(generation) => generation,
        Err(err) => {
            tracing::warn!(error = %err, gateway = %id, "cannot attach the gateway");
            let reason = "the relay cannot take this gateway now";
            pump.close(None, Close { code: close_code::OVERLOADED, reason }).await;
            return;
        }
    };
    tracing::info!(gateway = %id, "gateway linked");
    let _gauge = super::handshake::ConnectionGauge::new("gateway");
    let opened = Instant::now();
    let last_frame_ms = Arc::new(AtomicU64::new(0));
    let probe = Probe::Inbound { link: link.clone(), opened, last_frame_ms: last_frame_ms.clone() };
    let _on_board = state.board.add(id, "inbound", remote, probe);
    let mut gateway = GatewayPeer {
        state: state.clone(),
        id,
        link: link.clone(),
        writes,
        answers: VecDeque::new(),
        closing: None,
        opened,
        last_frame_ms,
        heard_since_touch: false,
    };
    pump.serve(&mut gateway, &mut rules).await;
    link.shutdown();
    state.relay.detach_gateway(id, generation);
    tracing::info!(gateway = %id, "gateway unlinked");
}

/// An authenticated gateway: its link to the relay engine.
struct GatewayPeer {
    state: AppState,
    id: GatewayId,
    link: Arc<FrameLink>,
    /// What the engine sends the gateway.
    writes: mpsc::Receiver<LinkWrite>,
    /// The relay's answers to the gateway's own requests (it serves none).
    answers: VecDeque<String>,
    /// A close the engine asked for, met while batching.
    closing: Option<u16>,
    opened: Instant,
    /// When a frame last came, in ms since `opened` (for `GET /gateways/{id}/connections`).
    last_frame_ms: Arc<AtomicU64>,
    /// Whether anything came since the gateway's liveness was last recorded.
    heard_since_touch: bool,
}

/// A close the engine asked for.
fn close_of(code: u16) -> Close {
    let reason = if code == close_code::UNAUTHORIZED { "relay token revoked" } else { "closing" };
    Close { code, reason }
}

impl Peer for GatewayPeer {
    async fn outgoing(&mut self) -> Outgoing {
        if let Some(answer) = self.answers.pop_front() {
            return Outgoing::Frame(Message::Text(answer.into()));
        }
        if let Some(code) = self.closing.take() {
            return Outgoing::Close(close_of(code));
        }
        match self.writes.recv().await {
            Some(LinkWrite::Frame(frame)) => Outgoing::Frame(Message::Text(frame.into())),
            Some(LinkWrite::Close(code)) => Outgoing::Close(close_of(code)),
            None => Outgoing::Ended,
        }
    }

    fn queued(&mut self) -> Option<Message> {
        if let Some(answer) = self.answers.pop_front() {
            return Some(Message::Text(answer.into()));
        }
        if self.closing.is_some() {
            return None;
        }
        match self.writes.try_recv() {
            Ok(LinkWrite::Frame(frame)) => Some(Message::Text(frame.into())),
            Ok(LinkWrite::Close(code)) => {
                self.closing = Some(code);
                None
            }
            Err(_) => None,
        }
    }

    fn heard(&mut self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_frame_ms.store(ms, Ordering::Relaxed);
        self.heard_since_touch = true;
    }

    async fn on_text(&mut self, text: Utf8Bytes, _rules: &mut SocketRules) -> Flow {
        metrics::counter!("mc_frames_total", "kind" => "gateway", "direction" => "in").increment(1);
        let id = self.id;
        match decode_gateway_frame(&text) {
            Ok(GatewayToRelay::OpenClaw(Frame::Response(response))) => self.link.resolve(response),
            Ok(GatewayToRelay::OpenClaw(Frame::Event(event))) => {
                self.state.relay.gateway_event(id, &event).await;
            }
            Ok(GatewayToRelay::Heartbeat(beat)) => {
                if let Err(err) = self.state.services.registry().link_heartbeat(id, beat).await {
                    tracing::info!(error = %err, gateway = %id, "gateway heartbeat refused");
                }
                self.heard_since_touch = false;
            }
            Ok(GatewayToRelay::OpenClaw(Frame::Request(request))) => {
                let message = format!("the relay serves no method {:?}", request.method);
                let refusal = ErrorShape::new("INVALID_REQUEST", message);
                let answer = mc_openclaw::Response::error(request.id, refusal);
                self.answers.push_back(Frame::Response(answer).to_json());
            }
            Ok(GatewayToRelay::Auth { .. }) => {}
            Err(err) => {
                tracing::debug!(gateway = %id, error = %err, "undecodable gateway frame ignored");
            }
        }
        Flow::Continue
    }

    fn on_binary(&mut self, _rules: &mut SocketRules) -> Flow {
        tracing::debug!(gateway = %self.id, "binary gateway frame ignored");
        Flow::Continue
    }

    async fn heartbeat(&mut self, _n: u64) -> Message {
        if std::mem::take(&mut self.heard_since_touch)
            && let Err(err) = self.state.services.registry().touch(self.id).await
        {
            tracing::warn!(error = %err, gateway = %self.id, "cannot record gateway liveness");
        }
        Message::Ping(Default::default())
    }

    fn farewell(&self, _close: &Close) -> bool {
        true
    }

    fn wrote(&self, frames: u64) {
        metrics::counter!("mc_frames_total", "kind" => "gateway", "direction" => "out")
            .increment(frames);
    }
}
