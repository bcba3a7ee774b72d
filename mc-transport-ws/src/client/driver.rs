//! The connection task: connect, authenticate, resume, flush the outbox, read frames, and on
//! a drop wait (backoff with full jitter) and do it again, until stopped or closed for good.

use std::sync::Arc;
use std::time::Duration;

use mc_core::protocol::MAX_RESUME_SESSIONS;
use mc_core::protocol::close_code;
use mc_core::protocol::{
    AssignmentInfo, AuthFailure, ClientFrame, ClientRequest, ServerFrame, decode_server_frame,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use mc_openclaw::Backoff;

use super::Inner;
use super::net::{Incoming, Socket};
use super::state::Command;
use super::types::{ClientError, CloseReason, ConnectionState};

/// How long the relay may take to answer `auth`.
const AUTH_TIMEOUT: Duration = Duration::from_secs(15);
/// The first reconnect waits up to this long; the ceiling doubles with each attempt…
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// … up to this.
const LONGEST_RETRY: Duration = Duration::from_secs(20);
/// After a network change, how long a connected socket has to show it still works.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed early refresh, when to try again.
const REFRESH_RETRY: Duration = Duration::from_secs(5);
/// The longest heartbeat interval taken from the relay (a day): a larger figure, up to
/// `u64::MAX`, is read as this, so no deadline computed from it can overflow.
const LONGEST_HEARTBEAT_SECS: u64 = 86_400;
/// The latest an early refresh is planned (a year ahead), whatever the token's `exp` says.
const LONGEST_REFRESH_WAIT_SECS: u64 = 365 * 86_400;

/// How long the socket may stay silent before it is given up: three of the relay's
/// heartbeat intervals, the interval read within `1..=LONGEST_HEARTBEAT_SECS`.
fn silence_allowed(heartbeat_secs: u64) -> Duration {
    Duration::from_secs(heartbeat_secs.clamp(1, LONGEST_HEARTBEAT_SECS) * 3)
}

/// When to refresh `access` early, so the open socket is extended (`auth` → `auth_extended`)
/// instead of closed at expiry: at 80 % of its lifetime, read from its `iat` and `exp` claims.
/// `None` for a token that is not a JWT with both (the relay's 4001 then asks for it).
fn refresh_due(access: &str) -> Option<Instant> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Lifetime {
        iat: i64,
        exp: i64,
    }
    let claims = access.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).ok()?;
    let Lifetime { iat, exp } = serde_json::from_slice(&json).ok()?;
    // In i128, where no pair of i64 claims can overflow.
    let (iat, exp) = (i128::from(iat), i128::from(exp));
    let due = iat + (exp - iat).max(0) * 4 / 5;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let wait = u64::try_from((due - i128::from(now)).max(0)).unwrap_or(u64::MAX);
    Some(Instant::now() + Duration::from_secs(wait.min(LONGEST_REFRESH_WAIT_SECS)))
}

/// How one connection ended.
enum Ended {
    /// The app called `disconnect`.
    Stopped,
    /// The relay refused the token (4001, `auth_error`).
    Unauthorized,
    /// The account may not connect (4003, suspended).
    Forbidden,
    /// Dropped, closed 1012/1013, or failed to open: reconnect after a backoff.
    Dropped(String),
}

/// Runs until `disconnect` or a final close.
pub(crate) async fn run(
    inner: Arc<Inner>,
    run: u64,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = Backoff::new(FIRST_RETRY, LONGEST_RETRY);
    let mut refreshed = false;
    loop {
        let ended = connection(&inner, &mut commands, &mut backoff, &mut refreshed).await;
        let wait = match ended {
            Ended::Stopped => break inner.stopped(run, ConnectionState::Disconnected, None),
            Ended::Forbidden => {
                let err = ClientError::Forbidden("the account may not connect".into());
                break inner.stopped(run, closed(CloseReason::Forbidden), Some(err));
            }
            Ended::Unauthorized if refreshed => {
                let err =
                    ClientError::Unauthenticated("the relay refused the refreshed token".into());
                break inner.stopped(run, closed(CloseReason::AuthFailed), Some(err));
            }
            Ended::Unauthorized => {
                refreshed = true;
                match inner.refresh().await {
                    Ok(()) => continue,
                    Err(
                        ClientError::Network(_) | ClientError::Timeout | ClientError::Http { .. },
                    ) => {
                        // The relay is unreachable: try the refresh again later.
                        refreshed = false;
                        backoff.next_delay()
                    }
                    Err(err) => {
                        break inner.stopped(run, closed(CloseReason::AuthFailed), Some(err));
                    }
                }
            }
            Ended::Dropped(why) => {
                tracing::debug!(%why, "relay connection dropped");
                backoff.next_delay()
            }
        };
        inner.set_state(ConnectionState::Disconnected);
        let until = Instant::now() + wait;
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            command = commands.recv() => match command {
                Some(Command::NetworkChanged) => backoff.reset(),
                Some(Command::Stop) | None => {
                    return inner.stopped(run, ConnectionState::Disconnected, None);
                }
            },
        }
    }
}

fn closed(reason: CloseReason) -> ConnectionState {
    ConnectionState::Closed { reason }
}

fn close_code(code: Option<u16>) -> Ended {
    match code {
        Some(close_code::UNAUTHORIZED) => Ended::Unauthorized,
        Some(close_code::FORBIDDEN) => Ended::Forbidden,
        other => Ended::Dropped(format!(
            "closed ({})",
            other.map_or("no code".into(), |c| c.to_string())
        )),
    }
}

// One connection's life, top to bottom (open, auth, resume, write the outbox, read): the
// order is the protocol, and each step is a few lines.
async fn connection(
    inner: &Arc<Inner>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    backoff: &mut Backoff,
    refreshed: &mut bool,
) -> Ended {
    inner.set_state(ConnectionState::Connecting);
    let Some(token) = inner.access_token() else {
        return Ended::Unauthorized;
    };
    let first_refresh = refresh_due(&token);
    let mut socket = tokio::select! {
        opened = inner.backend.open() => match opened {
            Ok(socket) => socket,
            Err(err) => return Ended::Dropped(err.to_string()),
        },
        command = commands.recv() => if let Some(Command::NetworkChanged) = command {
            return Ended::Dropped("network changed while connecting".into());
        } else {
            return Ended::Stopped;
        },
    };
    let auth = ClientFrame::new(ClientRequest::Auth { token: token.into() }).to_json();
    if let Err(err) = socket.send(auth).await {
        return Ended::Dropped(err.to_string());
    }
    let (heartbeat, agents) =
        match tokio::time::timeout(AUTH_TIMEOUT, authenticated(socket.as_mut())).await {
            Ok(Ok(hello)) => hello,
            Ok(Err(ended)) => return ended,
            Err(_) => return Ended::Dropped("no answer to auth".into()),
        };
    backoff.reset();
    *refreshed = false;
    let silence = silence_allowed(heartbeat);
    let epoch = inner.epoch();
    inner.lock().assignments = agents;
    inner.set_state(ConnectionState::Connected);

    // Catch up on every known session, then send what waits.
    let points = inner.lock().tracker.resume_points();
    for chunk in points.chunks(MAX_RESUME_SESSIONS) {
        let frame = ClientFrame::new(ClientRequest::Resume { sessions: chunk.to_vec() }).to_json();
        if let Err(err) = socket.send(frame).await {
            return Ended::Dropped(err.to_string());
        }
    }
    let mut deadline = Instant::now() + silence;
    let mut refresh_at = first_refresh;
    loop {
        let (frames, retry_at) = {
            let mut s = inner.lock();
            (s.unsent(epoch), s.next_retry())
        };
        for frame in frames {
            if let Err(err) = socket.send(frame).await {
                return Ended::Dropped(err.to_string());
            }
        }
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Incoming::Text(text) => {
                    deadline = Instant::now() + silence;
                    if let Some(answer) = inner.on_frame(&text) && let Err(err) = socket.send(answer).await {
                        return Ended::Dropped(err.to_string());
                    }
                }
                Incoming::Closed(code) => return close_code(code),
            },
            () = inner.wake.notified() => {}
            () = sleep_until_some(retry_at) => {}
            command = commands.recv() => match command {
                Some(Command::NetworkChanged) => {
                    // Is the link still there? A working relay answers a heartbeat at once.
                    backoff.reset();
                    let probe = ClientFrame::with_id("probe", ClientRequest::Heartbeat).to_json();
                    if socket.send(probe).await.is_err() {
                        return Ended::Dropped("network changed".into());
                    }
                    deadline = deadline.min(Instant::now() + PROBE_TIMEOUT);
                }
                Some(Command::Stop) | None => {
                    socket.close().await;
                    return Ended::Stopped;
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                return Ended::Dropped("the relay went silent".into());
            }
            () = sleep_until_some(refresh_at) => {
                // Refresh early and extend this socket with the new token.
                refresh_at = match inner.refresh().await {
                    Ok(()) => match inner.access_token() {
                        Some(token) => {
                            let extend = ClientFrame::with_id(
                                "extend",
                                ClientRequest::Auth { token: token.clone().into() },
                            );
                            if let Err(err) = socket.send(extend.to_json()).await {
                                return Ended::Dropped(err.to_string());
                            }
                            refresh_due(&token)
                        }
                        None => None,
                    },
                    Err(ClientError::Network(_) | ClientError::Timeout | ClientError::Http { .. }) => {
                        Some(Instant::now() + REFRESH_RETRY)
                    }
                    // Refused: the relay closes the socket at expiry and the 4001 path decides.
                    Err(err) => {
                        tracing::debug!(error = %err, "early token refresh refused");
                        None
                    }
                };
            }
        }
    }
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for `auth_ok` (returning the heartbeat interval and the user's agents) or the
/// refusal.
async fn authenticated(socket: &mut dyn Socket) -> Result<(u64, Vec<AssignmentInfo>), Ended> {
    loop {
        match socket.recv().await {
            Incoming::Text(text) => match decode_server_frame(&text) {
                Ok(ServerFrame::AuthOk { heartbeat_interval_seconds, assignments, .. }) => {
                    return Ok((heartbeat_interval_seconds, assignments));
                }
                Ok(ServerFrame::AuthError { reason: AuthFailure::Suspended }) => {
                    return Err(Ended::Forbidden);
                }
                Ok(ServerFrame::AuthError { .. }) => return Err(Ended::Unauthorized),
                _ => continue,
            },
            Incoming::Closed(code) => return Err(close_code(code)),
        }
    }
}
