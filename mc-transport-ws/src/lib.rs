//! # mc-transport-ws
//!
//! The relay's network face (feature `server`): the HTTP API of SPEC §8 and the WebSocket
//! endpoints of SPEC §6 and §7.1, on axum. Routes are thin: they parse and validate the
//! request shape, call the `mc-core` services or the [`mc_core::Router`], and render results
//! or `{"error": {"code", "message"}}` with the right status. Socket loops only move frames.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `server` | yes | [`server::app`]: `/api/v1/…`, `/ws/chat`, `/ws/gateway/{id}/relay`, `/healthz`, `/readyz` |
//!
//! ```no_run
//! # async fn demo(relay: mc_core::Relay) -> std::io::Result<()> {
//! use std::sync::Arc;
//! let router = mc_core::Router::new(relay, Arc::new(mc_core::InProcessBus::new()), Default::default());
//! let app = mc_transport_ws::server::app(router);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
//! The client SDK (feature `client`) and the outbound OpenClaw connector are not built yet.

#[cfg(feature = "server")]
pub mod server;
