//! `/ws/chat`: the users' socket. Its I/O is the socket pump's (`pump`), its rules mc-core's
//! `SocketRules`, its decisions the relay engine's ([`mc_core::relay::UserSession`]); what is here is
//! what a user's frame means: the `auth` handshake, a fresh token on the open socket, requests
//! handed to the engine, bad frames answered.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mc_core::auth::Principal;
use mc_core::protocol::close_code;
use mc_core::protocol::{
    AuthFailure, ClientFrame, ClientRequest, ErrorCode, SERVER_HEARTBEAT_PREFIX, ServerFrame,
    decode_client_frame,
};
use mc_core::relay::Outgoing as Queued;
use mc_core::socket::{Close, SocketRules};
use mc_core::{Error, Services, Timestamp, TokenRejection};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::AppState;
use super::error::ApiError;
use super::handshake::{ConnectionGauge, Upgrade, UpgradedIo, too_many_unauthenticated};
use super::pump::{Flow, Outgoing, Peer, PreAuth, Pump, Read};

/// A user's socket.
type UserPump = Pump<UpgradedIo>;

/// Buffer sizes chosen for memory per idle socket: messages larger than this still work
/// (the read buffer grows), but an idle socket does not pin 128 KiB.
pub(crate) const READ_BUFFER: usize = 1024;
/// Frames written in one go are gathered up to this many bytes before they go to the socket:
/// one `send` for a batch of chunks instead of one per frame (each `send` on loopback also
/// pays for the receiving side). The buffer is allocated only when a socket writes, and never
/// grows much past this.
pub(crate) const WRITE_BUFFER: usize = 8 * 1024;

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
    if !state.config.origin_allowed(origin) {
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
    let limit = state.config.max_frame_bytes();
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    upgrade.accept("user", move |io| async move {
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        run(state, pass, socket)
    })
}

fn text(frame: &ServerFrame) -> Message {
    Message::Text(frame.to_json().into())
}

fn error(id: Option<String>, code: ErrorCode, message: String) -> Message {
    text(&ServerFrame::Error { id, code, message, retry_after_ms: None })
}

/// How a token that was not accepted closes the socket: the `auth_error` to write first, if
/// the token was judged, and the close.
fn refusal(err: Error) -> (Option<Message>, Close) {
    let failed = |reason, code| {
        let frame = text(&ServerFrame::AuthError { reason });
        (Some(frame), Close { code, reason: "authentication failed" })
    };
    match err {
        Error::Token(TokenRejection::Expired) => {
            failed(AuthFailure::ExpiredToken, close_code::UNAUTHORIZED)
        }
        Error::Suspended => failed(AuthFailure::Suspended, close_code::FORBIDDEN),
        Error::Token(_) => failed(AuthFailure::InvalidToken, close_code::UNAUTHORIZED),
        // The token was not judged (the store failed): telling the client it is invalid
        // would sign it out for nothing.
        err => {
            tracing::warn!(error = %err, "could not check a user socket's token");
            let reason = "the relay cannot check tokens now; reconnect shortly";
            (None, Close { code: close_code::OVERLOADED, reason })
        }
    }
}

/// When a token that expires at `at` (by the relay's clock) runs out, as an instant.
fn expiry(at: Option<Timestamp>, services: &Services) -> Option<Instant> {
    let left = (at? - services.clock().now()).to_std().unwrap_or_default();
    Some(Instant::now() + left.min(Duration::from_secs(100 * 365 * 24 * 3600)))
}

/// What a frame before authentication is: the `auth` frame (checked), or an error to answer.
async fn judge(
    services: Services,
    read: Result<Utf8Bytes, Read>,
) -> PreAuth<(Principal, Option<Timestamp>)> {
    let Ok(text) = read else {
        let message = "binary frames are not supported; send JSON text".into();
        return PreAuth::Answer(error(None, ErrorCode::BadRequest, message));
    };
    match decode_client_frame(&text) {
        Ok(ClientFrame { request: ClientRequest::Auth { token }, .. }) => {
            match services.authenticate_until(token.expose()).await {
                Ok(authenticated) => PreAuth::Accepted(authenticated),
                Err(err) => {
                    let (last, close) = refusal(err);
                    PreAuth::Refuse(last, close)
                }
            }
        }
        Ok(frame) => {
            let message =
                r#"authenticate first: send {"type":"auth","payload":{"token":"<access token>"}}"#;
            PreAuth::Answer(error(frame.id, ErrorCode::Unauthenticated, message.into()))
        }
        Err(err) => PreAuth::Answer(error(err.id, ErrorCode::BadRequest, err.message)),
    }
}

/// A user socket's life: the handshake, then the frames until it closes.
///
/// Written as a function returning a block, not an `async fn`, and in two phases, for the
/// memory of an idle socket (this future is most of it): an `async fn` keeps a second copy of
/// its arguments, and one state machine holding both phases is laid out with room for both
/// (rustc gives each phase's locals their own places). The handshake is boxed before the
/// block and owns what only it needs (the app state, the unauthenticated pass): the block's
/// captures stay reserved for the socket's whole life, so it captures the box alone, and the
/// serving state is what the handshake hands back.
fn run(
    state: AppState,
    pass: super::pre_auth::PreAuthPass,
    socket: WebSocketStream<UpgradedIo>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let handshake = Box::pin(admit(state, pass, socket));
    async move {
        let Some((mut pump, mut user, mut rules)) = handshake.await else { return };
        let _gauge = ConnectionGauge::new("user");
        pump.serve(&mut user, &mut rules).await;
    }
}

/// The handshake: the `auth` frame in time, a place on this instance, the relay's `auth_ok`.
/// `None` when the socket was closed instead (with the reason written to it).
async fn admit(
    state: AppState,
    pass: super::pre_auth::PreAuthPass,
    socket: WebSocketStream<UpgradedIo>,
) -> Option<(UserPump, UserPeer, SocketRules)> {
    let limits = state.config.socket_limits();
    let mut pump = Pump::new(socket, &limits);
    let heartbeat = state.relay.limits().heartbeat_interval();
    let mut rules = SocketRules::new(&limits, heartbeat, Instant::now());
    let timed_out = text(&ServerFrame::AuthError { reason: AuthFailure::Timeout });
    let services = &state.services;
    let (principal, expires_at) =
        pump.authenticate(&mut rules, timed_out, |read| judge(services.clone(), read)).await?;
    // Authenticated: the socket leaves the unauthenticated places for the instance's own.
    drop(pass);
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        let close = Close { code: close_code::OVERLOADED, reason: "too many connections" };
        pump.close(None, close).await;
        return None;
    };
    let (session, auth_ok) = match Box::pin(state.relay.connect_user(principal)).await {
        Ok(attached) => attached,
        Err(refusal) => {
            let frame = error(None, ErrorCode::RateLimited, refusal.to_string());
            let close = Close { code: refusal.close_code(), reason: "connection refused" };
            pump.close(Some(frame), close).await;
            return None;
        }
    };
    if !pump.send(text(&auth_ok)).await {
        return None;
    }
    rules.authenticated(expiry(expires_at, services), Instant::now());
    let user =
        UserPeer { session, user_id: principal.user_id, services: services.clone(), _slot: slot };
    Some((pump, user, rules))
}

/// An authenticated user socket: its session with the relay engine.
struct UserPeer {
    session: mc_core::relay::UserSession,
    user_id: mc_core::UserId,
    /// For a fresh `auth` on the open socket.
    services: Services,
    /// Its place among the instance's authenticated sockets.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl UserPeer {
    /// A fresh token on the open socket: it lasts until that one expires.
    async fn extend(&mut self, id: Option<String>, token: &str, rules: &mut SocketRules) -> Flow {
        match self.services.authenticate_until(token).await {
            Ok((again, until)) if again.user_id == self.user_id => {
                rules.extended(expiry(until, &self.services), Instant::now());
                self.session.reply(&ServerFrame::AuthExtended { id, expires_at: until });
                Flow::Continue
            }
            Ok(_) => {
                let message = "a socket stays with the user who opened it".into();
                self.session.reply_error(id, ErrorCode::Forbidden, message);
                let close =
                    Close { code: close_code::UNAUTHORIZED, reason: "another user's token" };
                Flow::Close(close, None)
            }
            Err(err) => {
                let (last, close) = refusal(err);
                Flow::Close(close, last)
            }
        }
    }

    fn violation(rules: &mut SocketRules) -> Flow {
        match rules.violation(Instant::now()) {
            Some(close) => Flow::Close(close, None),
            None => Flow::Continue,
        }
    }
}

impl Peer for UserPeer {
    async fn outgoing(&mut self) -> Outgoing {
        match self.session.next_outgoing().await {
            Queued::Frame(frame) => Outgoing::Frame(Message::Text(frame.as_ref().into())),
            Queued::Close(code) => {
                let reason = match code {
                    close_code::UNAUTHORIZED => "signed out",
                    other => close_code::reason(other),
                };
                Outgoing::Close(Close { code, reason })
            }
        }
    }

    fn queued(&mut self) -> Option<Message> {
        self.session.try_next_frame().map(|frame| Message::Text(frame.as_ref().into()))
    }

    fn reading(&self) -> bool {
        // While the client's replies back up, its requests wait in TCP.
        self.session.wants_input()
    }

    async fn on_text(&mut self, text: Utf8Bytes, rules: &mut SocketRules) -> Flow {
        metrics::counter!("mc_frames_total", "kind" => "user", "direction" => "in").increment(1);
        match decode_client_frame(&text) {
            Ok(ClientFrame { id, request: ClientRequest::Auth { token } }) => {
                if !self.session.admit_fresh_auth(&id) {
                    return Flow::Continue;
                }
                self.extend(id, token.expose(), rules).await
            }
            Ok(frame) => {
                self.session.handle(frame).await;
                Flow::Continue
            }
            Err(err) => {
                self.session.reply_error(err.id, ErrorCode::BadRequest, err.message);
                Self::violation(rules)
            }
        }
    }

    fn on_binary(&mut self, rules: &mut SocketRules) -> Flow {
        let message = "binary frames are not supported; send JSON text".into();
        self.session.reply_error(None, ErrorCode::BadRequest, message);
        Self::violation(rules)
    }

    async fn heartbeat(&mut self, n: u64) -> Message {
        text(&ServerFrame::Heartbeat { id: Some(format!("{SERVER_HEARTBEAT_PREFIX}{n}")) })
    }

    fn farewell(&self, close: &Close) -> bool {
        // A reader too slow for its queue is not given the queue.
        close.code != close_code::OVERLOADED
    }

    fn last_words(&self, close: &Close) -> Option<Message> {
        (*close == Close::TOKEN_EXPIRED)
            .then(|| text(&ServerFrame::AuthError { reason: AuthFailure::ExpiredToken }))
    }

    fn wrote(&self, frames: u64) {
        metrics::counter!("mc_frames_total", "kind" => "user", "direction" => "out")
            .increment(frames);
    }
}
