//! The WebSocket opening handshake (RFC 6455 §4.2.1) of both sockets, users' and gateways',
//! and what both sockets share around it: the refusal over the unauthenticated caps, the
//! connection gauge.
//!
//! Done here rather than by axum's extractor so that a bad upgrade request gets the same JSON
//! error as the rest of the API, so that a gateway's socket can be read through a budget before
//! it authenticates, and so that an idle user socket's task holds only its own loop (axum's
//! upgrade task keeps its own copies beside the callback's future for the socket's whole life).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use super::error::ApiError;

/// The upgraded connection a socket's frames travel on.
pub(crate) type UpgradedIo = TokioIo<hyper::upgrade::Upgraded>;

/// A checked upgrade request, not yet answered.
pub(crate) struct Upgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    accept: HeaderValue,
}

impl Upgrade {
    /// Checks that `request` is a WebSocket version 13 upgrade over HTTP/1.1; the refusal is
    /// a JSON error (400, or 426 when the connection cannot be upgraded).
    pub(crate) fn check(request: &mut Request) -> Result<Self, ApiError> {
        let accept = accept_key(request.headers())?;
        let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>()
        else {
            return Err(ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "UPGRADE_REQUIRED",
                "this connection cannot be upgraded to a WebSocket (HTTP/1.1 is required)",
            ));
        };
        Ok(Self { on_upgrade, accept })
    }

    /// Answers `101 Switching Protocols` and, once the connection is handed over, runs the
    /// socket in a task of its own: `prepare` turns the connection into the socket's future
    /// (setting up its WebSocket), which is then spawned. `kind` names the socket in the log
    /// line of an upgrade that fails.
    ///
    /// `prepare` runs in a short task that ends as soon as it has spawned the socket's own: the
    /// long-lived task then holds the socket's future alone, not that future beside what it was
    /// made from (an `async` block keeps its captures reserved for its whole life).
    pub(crate) fn accept<P, Prepared, F>(self, kind: &'static str, prepare: P) -> Response
    where
        P: FnOnce(UpgradedIo) -> Prepared + Send + 'static,
        Prepared: Future<Output = F> + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    tokio::spawn(prepare(TokioIo::new(upgraded)).await);
                }
                Err(err) => tracing::debug!(error = %err, kind, "socket upgrade failed"),
            }
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        response
    }
}

/// Checks an HTTP/1.1 WebSocket upgrade request's headers and returns the
/// `Sec-WebSocket-Accept` answer.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let refuse =
        |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message.to_owned());
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(refuse(
            "a WebSocket upgrade needs `Connection: upgrade` and `Upgrade: websocket`",
        ));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err(refuse("only WebSocket version 13 is spoken (Sec-WebSocket-Version: 13)"));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(refuse("the upgrade request has no Sec-WebSocket-Key"));
    };
    HeaderValue::from_str(&tokio_tungstenite::tungstenite::handshake::derive_accept_key(
        key.as_bytes(),
    ))
    .map_err(|_| refuse("the Sec-WebSocket-Key cannot be answered"))
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
