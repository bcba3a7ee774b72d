//! The axum HTTP API over a [`Relay`].
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness: always 200 while the process serves |
//! | `GET /readyz` | readiness: 200 when the store answers, else 503 |
//! | `POST /api/v1/auth/register` | create an account (admin, or open registration) |
//! | `POST /api/v1/auth/login` | sign in → user, access and refresh tokens |
//! | `POST /api/v1/auth/refresh` | rotate a refresh token → new tokens |
//! | `POST /api/v1/auth/logout` | revoke a refresh token's family → 204 |
//! | `GET /api/v1/auth/me`, `PATCH /api/v1/auth/me` | the caller's profile |
//! | `GET /api/v1/users`, `GET/PATCH /api/v1/users/{id}` | admin: users of the organization |
//! | `POST /api/v1/users/{id}/assign`, `DELETE /api/v1/users/{id}/assign/{agent_id}` | admin: assignments |

mod admin_routes;
mod auth_routes;
mod error;
mod extract;
mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use mc_core::Relay;

pub use error::ApiError;

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { max_body_bytes: 64 * 1024 }
    }
}

impl HttpConfig {
    /// The largest request body accepted (default 64 KiB); larger ones get 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

/// The HTTP API with default settings.
pub fn router(relay: Relay) -> Router {
    router_with(relay, HttpConfig::default())
}

/// The HTTP API with `config`.
pub fn router_with(relay: Relay, config: HttpConfig) -> Router {
    let api = Router::new()
        .route("/auth/register", post(auth_routes::register))
        .route("/auth/login", post(auth_routes::login))
        .route("/auth/refresh", post(auth_routes::refresh))
        .route("/auth/logout", post(auth_routes::logout))
        .route("/auth/me", get(auth_routes::me).patch(auth_routes::update_me))
        .route("/users", get(admin_routes::list_users))
        .route("/users/{id}", get(admin_routes::get_user).patch(admin_routes::update_user))
        .route("/users/{id}/assign", post(admin_routes::assign))
        .route("/users/{id}/assign/{agent_id}", delete(admin_routes::unassign));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(relay)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(relay): State<Relay>) -> Response {
    match relay.store().ping().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the store is unreachable",
            )
            .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this route",
    )
}
