//! `/ws/chat`: the users' socket (SPEC §6, §12). This loop only moves frames: decoding is in
//! `mc_core::protocol`, decisions in `mc_core::Relay`.

use std::time::Duration;

use tokio::time::Instant;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use mc_core::close_code;
use mc_core::protocol::{AuthFailure, ClientRequest, ErrorCode, ServerFrame, decode_client_frame};
use mc_core::{Error, Principal, TokenRejection};

use super::AppState;
use super::error::ApiError;

/// Most frames written to a socket with one flush.
pub(crate) const WRITE_BATCH: u64 = 32;

/// Buffer sizes chosen for memory per idle socket: messages larger than this still work
/// (the read buffer grows), but an idle socket does not pin 128 KiB.
pub(crate) const READ_BUFFER: usize = 1024;

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    super::registry_routes::ClientIp(ip): super::registry_routes::ClientIp,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
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
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(state, pass, socket))
}

/// The answer to a socket over the caps on unauthenticated sockets.
pub(crate) fn too_many_unauthenticated() -> Response {
    metrics::counter!("mc_sockets_refused_total", "reason" => "unauthenticated_cap").increment(1);
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        "too many connections waiting to authenticate; try again shortly",
    )
    .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    response
}

pub(crate) async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> bool {
    socket.send(Message::Text(frame.to_json().into())).await.is_ok()
}

fn is_too_big(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big")
}

/// Counts a socket in `mc_connections{kind}` while it lives.
pub(crate) struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    pub(crate) fn new(kind: &'static str) -> Self {
        metrics::gauge!("mc_connections", "kind" => kind).increment(1.0);
        Self(kind)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("mc_connections", "kind" => self.0).decrement(1.0);
    }
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
        let text = match socket.recv().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let error = ServerFrame::Error {
                    id: None,
                    code: ErrorCode::BadRequest,
                    message: "binary frames are not supported; send JSON text".into(),
                    retry_after_ms: None,
                };
                if !send(socket, &error).await || violations.record() {
                    return Err(Refused(
                        None,
                        close_code::VIOLATIONS,
                        "too many protocol violations",
                    ));
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
                    return Err(Refused(
                        None,
                        close_code::VIOLATIONS,
                        "too many protocol violations",
                    ));
                }
            }
        }
    }
}

async fn run(state: AppState, pass: super::pre_auth::PreAuthPass, mut socket: WebSocket) {
    let limits = state.relay.limits();
    let mut violations = Violations::new(limits.violations_per_minute());

    // Boxed, like every large one-off future here, so an idle socket's task stays small.
    let auth = Box::pin(tokio::time::timeout(
        limits.auth_deadline(),
        authenticate(&state, &mut socket, &mut violations),
    ));
    let (principal, expires_at) = match auth.await {
        Ok(Ok(authenticated)) => authenticated,
        Ok(Err(NotAuthenticated::Refused(frame, code, reason))) => {
            if let Some(frame) = frame {
                send(&mut socket, &frame).await;
            }
            close(&mut socket, code, reason).await;
            return;
        }
        Ok(Err(NotAuthenticated::Gone)) => return,
        Err(_) => {
            send(&mut socket, &ServerFrame::AuthError { reason: AuthFailure::Timeout }).await;
            close(&mut socket, close_code::UNAUTHORIZED, "no auth frame in time").await;
            return;
        }
    };
    // Authenticated: the socket leaves the unauthenticated places for the instance's own.
    drop(pass);
    let Ok(_slot) = state.slots.clone().try_acquire_owned() else {
        close(&mut socket, close_code::OVERLOADED, "too many connections").await;
        return;
    };
    let (mut session, auth_ok) = match Box::pin(state.relay.connect_user(principal)).await {
        Ok(attached) => attached,
        Err(refusal) => {
            let error = ServerFrame::Error {
                id: None,
                code: ErrorCode::RateLimited,
                message: refusal.to_string(),
                retry_after_ms: None,
            };
            send(&mut socket, &error).await;
            close(&mut socket, refusal.close_code(), "connection refused").await;
            return;
        }
    };
    if !send(&mut socket, &auth_ok).await {
        return;
    }
    let _gauge = ConnectionGauge::new("user");
    let connection = session.connection().clone();
    let interval = limits.heartbeat();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut beats: u64 = 0;
    let mut last_heard = Instant::now();
    let user_id = principal.user_id;
    // The socket lasts as long as its token, unless a fresh `auth` extends it.
    let expiry =
        tokio::time::sleep_until(expiry_deadline(expires_at, state.services.clock().now()));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            () = &mut expiry => {
                flush(&mut session, &mut socket).await;
                send(&mut socket, &ServerFrame::AuthError { reason: AuthFailure::ExpiredToken }).await;
                close(&mut socket, close_code::UNAUTHORIZED, "token expired; refresh it and reconnect").await;
                break;
            }
            // While the client's replies back up, its requests wait in TCP.
            incoming = socket.recv(), if session.wants_input() => {
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        metrics::counter!("mc_frames_total", "kind" => "user", "direction" => "in").increment(1);
                        match decode_client_frame(&text) {
                            // A fresh token on the open socket: it lasts until that one expires.
                            Ok(mc_core::protocol::ClientFrame { id, request: ClientRequest::Auth { token } }) => {
                                match state.services.authenticate_until(token.expose()).await {
                                    Ok((again, until)) if again.user_id == user_id => {
                                        expiry.as_mut().reset(expiry_deadline(until, state.services.clock().now()));
                                        session.reply(&ServerFrame::AuthExtended { id, expires_at: until });
                                    }
                                    Ok(_) => {
                                        session.reply_error(id, ErrorCode::Forbidden, "a socket stays with the user who opened it".into());
                                        flush(&mut session, &mut socket).await;
                                        close(&mut socket, close_code::UNAUTHORIZED, "another user's token").await;
                                        break;
                                    }
                                    Err(err) => {
                                        flush(&mut session, &mut socket).await;
                                        if let NotAuthenticated::Refused(frame, code, reason) = refusal(err) {
                                            if let Some(frame) = frame {
                                                send(&mut socket, &frame).await;
                                            }
                                            close(&mut socket, code, reason).await;
                                        }
                                        break;
                                    }
                                }
                            }
                            // Boxed: the request's future is large and only lives while it
                            // runs, so an idle socket's task stays small.
                            Ok(frame) => Box::pin(session.handle(frame)).await,
                            Err(err) => {
                                session.reply_error(err.id, ErrorCode::BadRequest, err.message);
                                if violations.record() {
                                    flush(&mut session, &mut socket).await;
                                    close(&mut socket, close_code::VIOLATIONS, "too many protocol violations").await;
                                    break;
                                }
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        session.reply_error(None, ErrorCode::BadRequest, "binary frames are not supported; send JSON text".into());
                        if violations.record() {
                            flush(&mut session, &mut socket).await;
                            close(&mut socket, close_code::VIOLATIONS, "too many protocol violations").await;
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => last_heard = Instant::now(),
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(err)) => {
                        if is_too_big(&err) {
                            close(&mut socket, close_code::TOO_BIG, "frame too big").await;
                        }
                        break;
                    }
                }
            }
            frame = session.next_frame() => {
                // Everything already queued goes out in one write.
                let mut written = 1;
                let mut ok = socket.feed(Message::Text(frame.as_ref().into())).await.is_ok();
                while ok && written < WRITE_BATCH {
                    let Some(more) = session.try_next_frame() else { break };
                    ok = socket.feed(Message::Text(more.as_ref().into())).await.is_ok();
                    written += 1;
                }
                metrics::counter!("mc_frames_total", "kind" => "user", "direction" => "out").increment(written);
                if !ok || socket.flush().await.is_err() {
                    break;
                }
            }
            code = connection.kicked() => {
                if code != close_code::OVERLOADED {
                    flush(&mut session, &mut socket).await;
                }
                let reason = match code {
                    close_code::OVERLOADED => "too slow or overloaded; reconnect and resume",
                    close_code::RESTARTING => "server restarting",
                    close_code::FORBIDDEN => "forbidden",
                    close_code::UNAUTHORIZED => "signed out",
                    _ => "closed",
                };
                close(&mut socket, code, reason).await;
                break;
            }
            _ = ticks.tick() => {
                if last_heard.elapsed() > interval * 3 {
                    close(&mut socket, 1001, "no heartbeat for three intervals").await;
                    break;
                }
                beats += 1;
                let id = format!("{}{beats}", mc_core::protocol::SERVER_HEARTBEAT_PREFIX);
                if !send(&mut socket, &ServerFrame::Heartbeat { id: Some(id) }).await {
                    break;
                }
            }
        }
    }
}

/// Writes what is already queued (e.g. the error explaining a close).
async fn flush(session: &mut mc_core::UserSession, socket: &mut WebSocket) {
    while let Some(frame) = session.try_next_frame() {
        if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
            return;
        }
    }
}
