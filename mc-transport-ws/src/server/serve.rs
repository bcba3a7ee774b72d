//! [`serve`]: the HTTP/1.1 server loop, on hyper directly so that slow clients are bounded:
//! request headers must arrive within [`HEADER_TIMEOUT`], a request (its body included) must
//! be handled within [`REQUEST_TIMEOUT`] (else 408), and a body announced larger than the
//! limit is read away (up to [`DRAIN_LIMIT`]) before its 413, so the client can read the
//! answer instead of seeing its connection reset.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower::ServiceExt;

use super::HttpConfig;
use super::error::ApiError;

/// Time for a client to send a request's headers (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to handle one request, reading its body included (default of
/// [`HttpConfig::with_request_timeout`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an oversized body read away before answering 413.
pub const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight
/// finish: with `TCP_NODELAY` on every connection (chat frames are small and interactive) and
/// the peer address available to handlers (`ConnectInfo<SocketAddr>`: gateways' IPs).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, app, None, shutdown).await
}

/// [`serve`], speaking TLS (`https`, `wss`) when given an acceptor (see
/// [`super::tls::acceptor`]). A client has [`HEADER_TIMEOUT`] for its TLS handshake.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let stopping = stopping.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(tcp, peer, app, stopping).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, app, stopping).await,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, %peer, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
        // Forget finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection until it ends or the server
/// stops (then gracefully).
async fn serve_connection<Io>(
    io: Io,
    peer: std::net::SocketAddr,
    app: Router,
    mut stopping: watch::Receiver<bool>,
) where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        {
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let app = app.clone();
                    async move {
                        let response = app.oneshot(request.map(Body::new)).await;
                        Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                    }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, %peer, "HTTP connection ended with an error");
                    }
                }
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        }
    }
}

/// Bounds every request: an oversized announced body is read away and answered 413; a
/// request not handled in time is answered 408.
pub(crate) async fn bound_request(
    request: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let config = request.extensions().get::<HttpConfig>();
    let limit = config.map_or(64 * 1024, |c| c.max_body_bytes()) as u64;
    let timeout = config.map_or(REQUEST_TIMEOUT, |c| c.request_timeout());
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        let mut body = request.into_body().into_data_stream();
        let mut read = 0u64;
        let drained = tokio::time::timeout(timeout, async {
            while let Some(Ok(chunk)) = body.next().await {
                read += chunk.len() as u64;
                if read > DRAIN_LIMIT {
                    break;
                }
            }
        })
        .await;
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than {limit} bytes"),
        )
        .into_response();
        if drained.is_err() || read > DRAIN_LIMIT {
            response
                .headers_mut()
                .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        return response;
    }
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            "the request was not received and handled in time",
        )
        .into_response(),
    }
}
