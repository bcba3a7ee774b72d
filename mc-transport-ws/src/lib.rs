//! # mc-transport-ws
//!
//! The relay's network face (feature `server`): the HTTP API and the WebSocket
//! endpoints (docs/protocol.md, docs/gateway-link.md), on axum. Routes are thin: they parse and validate the
//! request shape, call the `mc-core` services or the [`mc_core::relay::Relay`], and render results
//! or `{"error": {"code", "message"}}` with the right status. Socket loops only move frames.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `server` | yes | [`server::app`]: `/api/v1/…`, `/ws/chat`, `/ws/gateway/{id}/relay`, `/healthz`, `/readyz`, and the gateways the relay dials (OpenClaw connections from `mc-openclaw`) |
//! | `client` | no | [`client`]: the users' SDK ([`client::McClient`], HTTPS/WSS on rustls) |
//!
//! ```no_run
//! # async fn demo(services: mc_core::Services) -> std::io::Result<()> {
//! use std::sync::Arc;
//! let relay = mc_core::relay::Relay::new(services, Arc::new(mc_core::bus::InProcessBus::new()), Default::default());
//! let app = mc_transport_ws::server::app(relay);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;
