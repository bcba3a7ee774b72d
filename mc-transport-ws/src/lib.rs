//! # mc-transport-ws
//!
//! The relay's network face: the HTTP API of SPEC §8 on axum (feature `server`). Routes are
//! thin: they parse and validate the request shape, call the `mc-core` services of a
//! [`mc_core::Relay`], and render results or `{"error": {"code", "message"}}` with the right
//! status.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `server` | yes | [`server::router`]: the `/api/v1` routes, `/healthz`, `/readyz` |
//!
//! ```no_run
//! # async fn demo(relay: mc_core::Relay) -> std::io::Result<()> {
//! let app = mc_transport_ws::server::router(relay);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The WebSocket endpoints and the clients are not built yet.

#[cfg(feature = "server")]
pub mod server;
