//! `/ws/gateway/{id}/relay`: a gateway's socket (SPEC §7.1). After the relay's `auth`
//! handshake the frames are OpenClaw's: the relay sends `req`, the gateway answers `res` and
//! pushes `event`s; a `heartbeat` frame may replace HTTP heartbeats.
//!
//! The socket is read through a [`ReadBudget`] (the handshake is [`super::handshake`]'s): a
//! gateway may send 4 MiB frames once it is known, but before its `auth` frame is checked it
//! cannot make the relay read more than [`PRE_AUTH_BYTES`].

use std::sync::Arc;
use tokio::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use mc_core::link::LinkOutbound;
use mc_core::protocol::close_code;
use mc_core::protocol::{GatewayToRelay, RelayToGateway, decode_gateway_frame};
use mc_core::{FrameLink, GatewayId};
use mc_openclaw::{ErrorShape, Frame};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::AppState;
use super::error::ApiError;
use super::handshake::{Upgrade, UpgradedIo};
use super::link_board::Probe;
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

type GatewaySocket = WebSocketStream<ReadBudget<UpgradedIo>>;

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

async fn send_text(socket: &mut GatewaySocket, text: String) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn close(socket: &mut GatewaySocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code: code.into(), reason: reason.into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn run(
    state: AppState,
    id: GatewayId,
    remote: Option<String>,
    pass: super::pre_auth::PreAuthPass,
    mut socket: GatewaySocket,
    budget: BudgetLift,
) {
    let deadline = state.relay.limits().auth_deadline();
    let authenticated = tokio::time::timeout(deadline, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return match decode_gateway_frame(&text) {
                        Ok(GatewayToRelay::Auth { relay_token }) => Some(
                            state
                                .services
                                .registry()
                                .authenticate_gateway(id, relay_token.expose())
                                .await
                                .is_ok(),
                        ),
                        _ => Some(false),
                    };
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    })
    .await;
    match authenticated {
        Ok(Some(true)) => {}
        Ok(Some(false)) => {
            let refused = RelayToGateway::AuthError { reason: "invalid_token".into() };
            send_text(&mut socket, refused.to_json()).await;
            close(&mut socket, close_code::UNAUTHORIZED, "unknown gateway or wrong relay token")
                .await;
            return;
        }
        Ok(None) => return,
        Err(_) => {
            send_text(
                &mut socket,
                RelayToGateway::AuthError { reason: "timeout".into() }.to_json(),
            )
            .await;
            close(&mut socket, close_code::UNAUTHORIZED, "no auth frame in time").await;
            return;
        }
    }
    drop(pass);
    budget.lift();
    let interval = state.services.registry().config().interval();
    let auth_ok =
        RelayToGateway::AuthOk { gateway_id: id, heartbeat_interval_seconds: interval.as_secs() };
    if !send_text(&mut socket, auth_ok.to_json()).await {
        return;
    }
    let (link, mut outbound) = FrameLink::new(LINK_QUEUE);
    let link = Arc::new(link);
    let generation = match state.relay.attach_gateway(id, link.clone()).await {
        Ok(generation) => generation,
        Err(err) => {
            tracing::warn!(error = %err, gateway = %id, "cannot attach the gateway");
            close(&mut socket, close_code::OVERLOADED, "the relay cannot take this gateway now")
                .await;
            return;
        }
    };
    tracing::info!(gateway = %id, "gateway linked");
    let _gauge = super::handshake::ConnectionGauge::new("gateway");
    let opened = Instant::now();
    let last_frame_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let probe = Probe::Inbound { link: link.clone(), opened, last_frame_ms: last_frame_ms.clone() };
    let _on_board = state.board.add(id, "inbound", remote, probe);
    let heard = || {
        let ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_frame_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    };

    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last_heard = Instant::now();
    let mut heard_since_touch = false;
    loop {
        tokio::select! {
            incoming = socket.next() => {
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        heard();
                        heard_since_touch = true;
                        metrics::counter!("mc_frames_total", "kind" => "gateway", "direction" => "in").increment(1);
                        match decode_gateway_frame(&text) {
                            Ok(GatewayToRelay::OpenClaw(Frame::Response(response))) => link.resolve(response),
                            Ok(GatewayToRelay::OpenClaw(Frame::Event(event))) => state.relay.gateway_event(id, &event).await,
                            Ok(GatewayToRelay::Heartbeat(beat)) => {
                                if let Err(err) = state.services.registry().link_heartbeat(id, beat).await {
                                    tracing::info!(error = %err, gateway = %id, "gateway heartbeat refused");
                                }
                                heard_since_touch = false;
                            }
                            Ok(GatewayToRelay::OpenClaw(Frame::Request(request))) => {
                                let refusal = ErrorShape::new(
                                    "INVALID_REQUEST",
                                    format!("the relay serves no method {:?}", request.method),
                                );
                                let answer = RelayToGateway::OpenClaw(Frame::Response(mc_openclaw::Response::error(request.id, refusal)));
                                if !send_text(&mut socket, answer.to_json()).await { break; }
                            }
                            Ok(GatewayToRelay::Auth { .. }) => {}
                            Err(err) => tracing::debug!(gateway = %id, error = %err, "undecodable gateway frame ignored"),
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_heard = Instant::now();
                        heard_since_touch = true;
                    }
                    Some(Ok(Message::Binary(_))) => tracing::debug!(gateway = %id, "binary gateway frame ignored"),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(Message::Frame(_))) => {}
                }
            }
            out = outbound.recv() => {
                match out {
                    Some(LinkOutbound::Frame(frame)) => {
                        // Everything already queued goes out in one write.
                        let mut written = 1;
                        let mut ok = socket.feed(Message::Text(frame.into())).await.is_ok();
                        let mut close_with = None;
                        while ok && written < super::ws_user::WRITE_BATCH {
                            match outbound.try_recv() {
                                Ok(LinkOutbound::Frame(more)) => {
                                    ok = socket.feed(Message::Text(more.into())).await.is_ok();
                                    written += 1;
                                }
                                Ok(LinkOutbound::Close(code)) => {
                                    close_with = Some(code);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        metrics::counter!("mc_frames_total", "kind" => "gateway", "direction" => "out").increment(written);
                        if !ok || socket.flush().await.is_err() { break; }
                        if let Some(code) = close_with {
                            close(&mut socket, code, "closing").await;
                            break;
                        }
                    }
                    Some(LinkOutbound::Close(code)) => {
                        let reason = if code == close_code::UNAUTHORIZED { "relay token revoked" } else { "closing" };
                        close(&mut socket, code, reason).await;
                        break;
                    }
                    None => break,
                }
            }
            _ = ticks.tick() => {
                if last_heard.elapsed() > interval * 3 {
                    close(&mut socket, close_code::GOING_AWAY, "no frames for three heartbeat intervals").await;
                    break;
                }
                if heard_since_touch {
                    heard_since_touch = false;
                    if let Err(err) = state.services.registry().touch(id).await {
                        tracing::warn!(error = %err, gateway = %id, "cannot record gateway liveness");
                    }
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() { break; }
            }
        }
    }
    link.shutdown();
    state.relay.detach_gateway(id, generation);
    tracing::info!(gateway = %id, "gateway unlinked");
}
