//! `/ws/chat`: the users' socket (SPEC §6, §12). This loop only moves frames: decoding is in
//! `mc_core::protocol`, decisions in `mc_core::Relay`.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use mc_core::protocol::close_code;
use mc_core::protocol::{
    AuthFailure, ClientFrame, ClientRequest, ErrorCode, ServerFrame, decode_client_frame,
};
use mc_core::{Error, Outgoing, Principal, TokenRejection};

use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::AppState;
use super::error::ApiError;
use super::handshake::{ConnectionGauge, Upgrade, UpgradedIo, too_many_unauthenticated};

/// A user's socket.
type WebSocket = WebSocketStream<UpgradedIo>;

/// Most frames written to a socket with one flush.
pub(crate) const WRITE_BATCH: u64 = 32;

/// The close reason after too many bad frames in a minute.
const VIOLATED: &str = "too many protocol violations";

/// Buffer sizes chosen for memory per idle socket: messages larger than this still work
/// (the read buffer grows), but an idle socket does not pin 128 KiB.
pub(crate) const READ_BUFFER: usize = 1024;

// The upgrade's closure yields the socket's future on purpose: `Upgrade::accept` spawns it.
#[allow(clippy::async_yields_async)]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    super::registry_routes::ClientIp(ip): super::registry_routes::ClientIp,
    mut request: Request,
) -> Response {
    let upgrade = match Upgrade::check(&mut request) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return refusal.into_response(),
    };
    let origin = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !state.relay.limits().origin_allowed(origin) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this origin may not open relay sockets",
        )
        .into_response();
    }
    let Some(pass) = state.pre_auth.enter(ip) else {
        return too_many_unauthenticated();
    };
    let limit = state.relay.limits().frame_limit();
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    upgrade.accept("user", move |io| async move {
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        run(state, pass, socket)
    })
}

pub(crate) async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code: code.into(), reason: reason.into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> bool {
    socket.send(Message::Text(frame.to_json().into())).await.is_ok()
}

/// A frame or message over the size limit.
fn is_too_big(err: &tungstenite::Error) -> bool {
    matches!(err, tungstenite::Error::Capacity(_))
}

/// Counts bad frames in a sliding minute.
struct Violations {
    window_start: Instant,
    count: u32,
    max: u32,
}

impl Violations {
    fn new(max: u32) -> Self {
        Self { window_start: Instant::now(), count: 0, max }
    }

    /// Records one; says whether the limit is now exceeded.
    fn record(&mut self) -> bool {
        if self.window_start.elapsed() > Duration::from_secs(60) {
            self.window_start = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count > self.max
    }
}

/// How the wait for `auth` ended without a principal.
enum NotAuthenticated {
    /// The peer went away.
    Gone,
    /// Close with this frame (if any), code and reason.
    Refused(Option<ServerFrame>, u16, &'static str),
}

/// How a token that was not accepted closes the socket.
fn refusal(err: Error) -> NotAuthenticated {
    let (reason, code) = match err {
        Error::Token(TokenRejection::Expired) => {
            (AuthFailure::ExpiredToken, close_code::UNAUTHORIZED)
        }
        Error::Suspended => (AuthFailure::Suspended, close_code::FORBIDDEN),
        Error::Token(_) => (AuthFailure::InvalidToken, close_code::UNAUTHORIZED),
        // The token was not judged (the store failed): telling the client it is invalid
        // would sign it out for nothing.
        err => {
            tracing::warn!(error = %err, "could not check a user socket's token");
            return NotAuthenticated::Refused(
                None,
                close_code::OVERLOADED,
                "the relay cannot check tokens now; reconnect shortly",
            );
        }
    };
    NotAuthenticated::Refused(
        Some(ServerFrame::AuthError { reason }),
        code,
        "authentication failed",
    )
}

/// When a socket whose token expires at `at` (by the relay's clock, `now`) must close; a
/// deadline far away for `None`.
fn expiry_deadline(at: Option<mc_core::Timestamp>, now: mc_core::Timestamp) -> Instant {
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    let left = at.map_or(far, |at| (at - now).to_std().unwrap_or_default());
    Instant::now() + left.min(far)
}

/// Waits for the `auth` frame; answers anything else with an error.
async fn authenticate(
    state: &AppState,
    socket: &mut WebSocket,
    violations: &mut Violations,
) -> Result<(Principal, Option<mc_core::Timestamp>), NotAuthenticated> {
    use NotAuthenticated::{Gone, Refused};
    loop {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let error = ServerFrame::Error {
                    id: None,
                    code: ErrorCode::BadRequest,
                    message: "binary frames are not supported; send JSON text".into(),
                    retry_after_ms: None,
                };
                if !send(socket, &error).await || violations.record() {
                    return Err(Refused(None, close_code::VIOLATIONS, VIOLATED));
                }
                continue;
            }
            Some(Ok(Message::Close(_))) | None => return Err(Gone),
            Some(Ok(_)) => continue,
            Some(Err(err)) if is_too_big(&err) => {
                return Err(Refused(None, close_code::TOO_BIG, "frame too big"));
            }
            Some(Err(_)) => return Err(Gone),
        };
        match decode_client_frame(&text) {
            Ok(frame) => match frame.request {
                ClientRequest::Auth { token } => {
                    return state
                        .services
                        .authenticate_until(token.expose())
                        .await
                        .map_err(refusal);
                }
                _ => {
                    let error = ServerFrame::Error {
                        id: frame.id,
                        code: ErrorCode::Unauthenticated,
                        message: r#"authenticate first: send {"type":"auth","payload":{"token":"<access token>"}}"#.into(),
                        retry_after_ms: None,
                    };
                    if !send(socket, &error).await {
                        return Err(Gone);
                    }
                }
            },
            Err(err) => {
                let error = ServerFrame::Error {
                    id: err.id,
                    code: ErrorCode::BadRequest,
                    message: err.message,
                    retry_after_ms: None,
                };
                if !send(socket, &error).await || violations.record() {
                    return Err(Refused(None, close_code::VIOLATIONS, VIOLATED));
                }
            }
        }
    }
}

/// A socket past its handshake: authenticated, holding one of the instance's places, attached
/// to the relay, its `auth_ok` written.
struct Admitted {
    session: mc_core::UserSession,
    user_id: mc_core::UserId,
    /// When the socket's token expires (a fresh `auth` moves it).
    expires: Instant,
    /// For a fresh `auth` on the open socket.
    services: mc_core::Services,
    /// How often the server sends a heartbeat.
    heartbeat: Duration,
    /// Bad frames count across the handshake and after it.
    violations: Violations,
    /// When the client was last heard from (any frame).
    last_heard: Instant,
    /// Its place among the instance's authenticated sockets.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// A user socket's life: the handshake, then the frames until it closes.
///
/// Written as a function returning a block, not an `async fn`, and in two phases, for the
/// memory of an idle socket (this future is most of it): an `async fn` keeps a second copy of
/// its arguments, and one state machine holding both phases was laid out at 3.4 KB (rustc
/// gives each phase's locals their own places). The handshake is boxed before the block
/// and owns what only it needs (the app state, the unauthenticated pass): the block's captures
/// stay reserved for the socket's whole life, so it captures the box alone, and the serving
/// loop's state is what the handshake hands back.
fn run(
    state: AppState,
    pass: super::pre_auth::PreAuthPass,
    socket: WebSocket,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let handshake = Box::pin(admit(state, pass, socket));
    async move {
        let Some((mut socket, mut admitted)) = handshake.await else {
            return;
        };
        serve(&mut socket, &mut admitted).await;
    }
}

/// The handshake: the `auth` frame in time, a place on this instance, the relay's `auth_ok`.
/// Hands the socket back with its serving state; `None` when the socket was closed instead
/// (with the reason written to it).
async fn admit(
    state: AppState,
    pass: super::pre_auth::PreAuthPass,
    mut socket: WebSocket,
) -> Option<(WebSocket, Admitted)> {
    let admitted = admit_on(&state, pass, &mut socket).await?;
    Some((socket, admitted))
}

/// [`admit`] on a borrowed socket: `None` when it was closed.
async fn admit_on(
    state: &AppState,
    pass: super::pre_auth::PreAuthPass,
    socket: &mut WebSocket,
) -> Option<Admitted> {
    let limits = state.relay.limits();
    let mut violations = Violations::new(limits.violations_per_minute());
    let auth = Box::pin(tokio::time::timeout(
        limits.auth_deadline(),
        authenticate(state, socket, &mut violations),
    ));
    let (principal, expires_at) = match auth.await {
        Ok(Ok(authenticated)) => authenticated,
        Ok(Err(NotAuthenticated::Refused(frame, code, reason))) => {
            if let Some(frame) = frame {
                send(socket, &frame).await;
            }
            close(socket, code, reason).await;
            return None;
        }
        Ok(Err(NotAuthenticated::Gone)) => return None,
        Err(_) => {
            send(socket, &ServerFrame::AuthError { reason: AuthFailure::Timeout }).await;
            close(socket, close_code::UNAUTHORIZED, "no auth frame in time").await;
            return None;
        }
    };
    // Authenticated: the socket leaves the unauthenticated places for the instance's own.
    drop(pass);
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        close(socket, close_code::OVERLOADED, "too many connections").await;
        return None;
    };
    let (session, auth_ok) = match Box::pin(state.relay.connect_user(principal)).await {
        Ok(attached) => attached,
        Err(refusal) => {
            let error = ServerFrame::Error {
                id: None,
                code: ErrorCode::RateLimited,
                message: refusal.to_string(),
                retry_after_ms: None,
            };
            send(socket, &error).await;
            close(socket, refusal.close_code(), "connection refused").await;
            return None;
        }
    };
    if !send(socket, &auth_ok).await {
        return None;
    }
    Some(Admitted {
        session,
        user_id: principal.user_id,
        expires: expiry_deadline(expires_at, state.services.clock().now()),
        services: state.services.clone(),
        heartbeat: limits.heartbeat(),
        violations,
        last_heard: Instant::now(),
        _slot: slot,
    })
}

/// The serving loop: requests in, queued frames out, heartbeats, and the close when the
/// token expires, the relay kicks the socket, or the peer goes. Each arm's work is a function
/// of its own: the temporaries of one arm would otherwise be kept by every idle socket.
async fn serve(socket: &mut WebSocket, admitted: &mut Admitted) {
    let _gauge = ConnectionGauge::new("user");
    let interval = admitted.heartbeat;
    let mut beats = Heartbeats { next: Instant::now() + interval, sent: 0, interval };
    // One timer for both deadlines, the next heartbeat and the token's expiry (the socket
    // lasts as long as its token, unless a fresh `auth` extends it): every idle socket keeps
    // it, so it is not two.
    let timer = tokio::time::sleep_until(beats.next.min(admitted.expires));
    tokio::pin!(timer);
    loop {
        let next = tokio::select! {
            () = &mut timer => Box::pin(on_timer(socket, admitted, &mut beats)).await,
            // While the client's replies back up, its requests wait in TCP.
            incoming = socket.next(), if admitted.session.wants_input() => {
                // Boxed, like every arm but the writes: handling a frame needs far more room
                // than waiting for one, and the waiting is what every idle socket keeps.
                Box::pin(on_incoming(socket, admitted, incoming)).await
            }
            outgoing = admitted.session.next_outgoing() => match outgoing {
                Outgoing::Frame(frame) => write_queued(&mut admitted.session, socket, frame).await,
                Outgoing::Close(code) => {
                    Box::pin(close_kicked(&mut admitted.session, socket, code)).await
                }
            },
        };
        if next.is_break() {
            break;
        }
        let wake = beats.next.min(admitted.expires);
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
    }
}

/// The server's heartbeats on one socket.
struct Heartbeats {
    /// When the next one is due.
    next: Instant,
    /// How many were sent (their ids count them).
    sent: u64,
    interval: Duration,
}

/// The socket's timer fired: the token expired (close), or a heartbeat is due.
async fn on_timer(
    socket: &mut WebSocket,
    admitted: &mut Admitted,
    beats: &mut Heartbeats,
) -> ControlFlow<()> {
    let now = Instant::now();
    if now >= admitted.expires {
        return close_expired(&mut admitted.session, socket).await;
    }
    if now < beats.next {
        return ControlFlow::Continue(());
    }
    beats.next = (beats.next + beats.interval).max(now);
    heartbeat(socket, beats, admitted.last_heard).await
}

/// One frame from the client: a request handled, a fresh token taken, a bad frame answered.
/// `Break` when the socket must close (the reason is written to it).
async fn on_incoming(
    socket: &mut WebSocket,
    admitted: &mut Admitted,
    incoming: Option<Result<Message, tungstenite::Error>>,
) -> ControlFlow<()> {
    let session = &mut admitted.session;
    match incoming {
        Some(Ok(Message::Text(text))) => {
            admitted.last_heard = Instant::now();
            metrics::counter!("mc_frames_total", "kind" => "user", "direction" => "in")
                .increment(1);
            match decode_client_frame(&text) {
                // A fresh token on the open socket: it lasts until that one expires.
                Ok(ClientFrame { id, request: ClientRequest::Auth { token } }) => {
                    match admitted.services.authenticate_until(token.expose()).await {
                        Ok((again, until)) if again.user_id == admitted.user_id => {
                            admitted.expires =
                                expiry_deadline(until, admitted.services.clock().now());
                            session.reply(&ServerFrame::AuthExtended { id, expires_at: until });
                        }
                        Ok(_) => {
                            session.reply_error(
                                id,
                                ErrorCode::Forbidden,
                                "a socket stays with the user who opened it".into(),
                            );
                            return close_after_queue(
                                session,
                                socket,
                                None,
                                close_code::UNAUTHORIZED,
                                "another user's token",
                            )
                            .await;
                        }
                        Err(err) => {
                            return match refusal(err) {
                                NotAuthenticated::Refused(frame, code, reason) => {
                                    close_after_queue(session, socket, frame.as_ref(), code, reason)
                                        .await
                                }
                                NotAuthenticated::Gone => {
                                    flush(session, socket).await;
                                    ControlFlow::Break(())
                                }
                            };
                        }
                    }
                }
                Ok(frame) => session.handle(frame).await,
                Err(err) => {
                    session.reply_error(err.id, ErrorCode::BadRequest, err.message);
                    if admitted.violations.record() {
                        return close_after_queue(
                            session,
                            socket,
                            None,
                            close_code::VIOLATIONS,
                            VIOLATED,
                        )
                        .await;
                    }
                }
            }
        }
        Some(Ok(Message::Binary(_))) => {
            admitted.last_heard = Instant::now();
            session.reply_error(
                None,
                ErrorCode::BadRequest,
                "binary frames are not supported; send JSON text".into(),
            );
            if admitted.violations.record() {
                return close_after_queue(session, socket, None, close_code::VIOLATIONS, VIOLATED)
                    .await;
            }
        }
        // (A raw `Frame` is only ever written, never read.)
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
            admitted.last_heard = Instant::now()
        }
        Some(Ok(Message::Close(_))) | None => return ControlFlow::Break(()),
        Some(Err(err)) => {
            if is_too_big(&err) {
                close(socket, close_code::TOO_BIG, "frame too big").await;
            }
            return ControlFlow::Break(());
        }
    }
    ControlFlow::Continue(())
}

/// Writes `first` and whatever else is queued behind it (up to [`WRITE_BATCH`] frames) with
/// one flush. `Break` when the socket failed.
async fn write_queued(
    session: &mut mc_core::UserSession,
    socket: &mut WebSocket,
    first: std::sync::Arc<str>,
) -> ControlFlow<()> {
    let mut written = 1;
    let mut ok = socket.feed(Message::Text(first.as_ref().into())).await.is_ok();
    while ok && written < WRITE_BATCH {
        let Some(more) = session.try_next_frame() else { break };
        ok = socket.feed(Message::Text(more.as_ref().into())).await.is_ok();
        written += 1;
    }
    metrics::counter!("mc_frames_total", "kind" => "user", "direction" => "out").increment(written);
    if !ok || socket.flush().await.is_err() {
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// Sends a server heartbeat, or closes a socket that has been silent for three intervals.
async fn heartbeat(
    socket: &mut WebSocket,
    beats: &mut Heartbeats,
    last_heard: Instant,
) -> ControlFlow<()> {
    if last_heard.elapsed() > beats.interval * 3 {
        close(socket, close_code::GOING_AWAY, "no heartbeat for three intervals").await;
        return ControlFlow::Break(());
    }
    beats.sent += 1;
    let id = format!("{}{}", mc_core::protocol::SERVER_HEARTBEAT_PREFIX, beats.sent);
    if send(socket, &ServerFrame::Heartbeat { id: Some(id) }).await {
        ControlFlow::Continue(())
    } else {
        ControlFlow::Break(())
    }
}

/// Ends the socket: what is queued (e.g. the errors explaining why), then `last` if given,
/// then the close frame.
async fn close_after_queue(
    session: &mut mc_core::UserSession,
    socket: &mut WebSocket,
    last: Option<&ServerFrame>,
    code: u16,
    reason: &'static str,
) -> ControlFlow<()> {
    flush(session, socket).await;
    if let Some(frame) = last {
        send(socket, frame).await;
    }
    close(socket, code, reason).await;
    ControlFlow::Break(())
}

/// The token expired: what is queued, then `auth_error expired_token` and 4001. (A function of
/// its own so the frame lives in this boxed future, not in every idle socket's.)
async fn close_expired(
    session: &mut mc_core::UserSession,
    socket: &mut WebSocket,
) -> ControlFlow<()> {
    let expired = ServerFrame::AuthError { reason: AuthFailure::ExpiredToken };
    let reason = "token expired; refresh it and reconnect";
    close_after_queue(session, socket, Some(&expired), close_code::UNAUTHORIZED, reason).await
}

/// The relay closed the socket with `code` (a slow reader's queue is not flushed).
async fn close_kicked(
    session: &mut mc_core::UserSession,
    socket: &mut WebSocket,
    code: u16,
) -> ControlFlow<()> {
    if code != close_code::OVERLOADED {
        flush(session, socket).await;
    }
    let reason = match code {
        close_code::OVERLOADED => "too slow or overloaded; reconnect and resume",
        close_code::RESTARTING => "server restarting",
        close_code::FORBIDDEN => "forbidden",
        close_code::UNAUTHORIZED => "signed out",
        _ => "closed",
    };
    close(socket, code, reason).await;
    ControlFlow::Break(())
}

/// Writes what is already queued (e.g. the error explaining a close).
async fn flush(session: &mut mc_core::UserSession, socket: &mut WebSocket) {
    while let Some(frame) = session.try_next_frame() {
        if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
            return;
        }
    }
}
