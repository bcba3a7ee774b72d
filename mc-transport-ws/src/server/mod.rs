//! The axum HTTP API and WebSocket endpoints over a [`mc_core::relay::Relay`].
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `GET /admin` | the chat page and the admin console; `/assets/*` their scripts and style ([`web`]; `HttpConfig::with_web_pages(false)` leaves them out) |
//! | `GET /ws/chat` (alias `/ws/h5/chat`) | users' sockets (docs/protocol.md) |
//! | `GET /ws/gateway/{id}/relay` | gateways' sockets (docs/gateway-link.md) |
//! | `GET /healthz` | liveness: always 200 while the process serves |
//! | `GET /readyz` | readiness: 200 when the store and the bus (Redis, with several instances) answer, else 503 |
//! | `/api/v1/h5/auth/*`, `/api/v1/h5/users…` | the H5 app's paths: aliases of `/auth/*`, `/users…` |
//! | `POST /api/v1/auth/register` | create an account (admin, or open registration) |
//! | `POST /api/v1/auth/login` | sign in → user, access and refresh tokens |
//! | `POST /api/v1/auth/refresh` | rotate a refresh token → new tokens |
//! | `POST /api/v1/auth/logout` | revoke a refresh token's family → 204 |
//! | `GET /api/v1/auth/me`, `PATCH /api/v1/auth/me` | the caller's profile |
//! | `GET /api/v1/me/agents` | the caller's agents, as `auth_ok` lists them |
//! | `GET /api/v1/users`, `GET/PATCH /api/v1/users/{id}` | admin: users of the organization |
//! | `POST /api/v1/users/{id}/assign`, `DELETE /api/v1/users/{id}/assign/{agent_id}` | admin: assignments |
//! | `POST/GET /api/v1/registration-tokens`, `DELETE /api/v1/registration-tokens/{id}` | admin: registration tokens |
//! | `GET /api/v1/gateways[?status=]`, `GET/DELETE /api/v1/gateways/{id}`, `GET …/{id}/metrics` | admin: gateways |
//! | `POST /api/v1/gateways` | admin: add a gateway the relay dials |
//! | `GET /api/v1/gateways/{id}/connections` | admin: the gateway's live links on this instance |
//! | `GET /api/v1/agents`, `GET /api/v1/activity` | admin: agents, activity feed |
//! | `GET /api/v1/sessions?user_id=`, `GET /api/v1/sessions/{id}/messages` | admin: a user's chats |
//! | `POST /api/v1/gateway-registry/register`, `…/heartbeat`, `DELETE …/deregister` | gateways |
//!
//! Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so gateways' IPs are
//! recorded.

mod admin_routes;
mod auth_routes;
mod config;
mod error;
mod extract;
mod handshake;
mod link_board;
mod outbound;
mod outbound_routes;
mod pre_auth;
mod pump;
mod read_budget;
mod registry_routes;
mod serve;
pub mod tls;
mod views;
pub mod web;
mod ws_gateway;
mod ws_user;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use mc_core::Services;
use mc_core::relay::Relay;
use mc_openclaw::address::AddressPolicy;
use tokio::sync::Semaphore;

pub use config::HttpConfig;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) services: Services,
    pub(crate) relay: Relay,
    /// One permit per authenticated socket this instance may hold.
    pub(crate) slots: Arc<Semaphore>,
    /// Places for sockets not authenticated yet.
    pub(crate) pre_auth: pre_auth::PreAuthGate,
    /// The gateway links held here, for `GET /gateways/{id}/connections`.
    pub(crate) board: link_board::LinkBoard,
    /// The gateways this relay dials.
    pub(crate) outbound: outbound::OutboundPool,
    /// The settings of the API and the sockets.
    pub(crate) config: Arc<HttpConfig>,
}

impl FromRef<AppState> for Services {
    fn from_ref(state: &AppState) -> Services {
        state.services.clone()
    }
}

pub use serve::{DRAIN_LIMIT, HEADER_TIMEOUT, REQUEST_TIMEOUT, serve, serve_tls};

/// The relay's HTTP API and sockets over `relay`, with default settings.
pub fn app(relay: Relay) -> Router {
    app_with(relay, HttpConfig::default())
}

/// The relay's HTTP API and sockets over `relay`, with `config`.
pub fn app_with(relay: Relay, config: HttpConfig) -> Router {
    let slots = Arc::new(Semaphore::new(config.max_connections()));
    let pre_auth = pre_auth::PreAuthGate::new(
        config.max_unauthenticated(),
        config.max_unauthenticated_per_ip(),
    );
    let board = link_board::LinkBoard::new(config.instance_id());
    let outbound = start_outbound(&relay, &board, &config);
    let state = AppState {
        services: relay.services().clone(),
        relay,
        slots,
        pre_auth,
        board,
        outbound,
        config: Arc::new(config.clone()),
    };
    // Users' routes, also served under the H5 app's `/h5` prefix.
    let users_api = Router::new()
        .route("/auth/register", post(auth_routes::register))
        .route("/auth/login", post(auth_routes::login))
        .route("/auth/refresh", post(auth_routes::refresh))
        .route("/auth/logout", post(auth_routes::logout))
        .route("/auth/me", get(auth_routes::me).patch(auth_routes::update_me))
        .route("/me/agents", get(auth_routes::my_agents))
        .route("/users", get(admin_routes::list_users))
        .route("/users/{id}", get(admin_routes::get_user).patch(admin_routes::update_user))
        .route("/users/{id}/assign", post(admin_routes::assign))
        .route("/users/{id}/assign/{agent_id}", delete(admin_routes::unassign));
    let api = Router::new()
        .merge(users_api.clone())
        .nest("/h5", users_api)
        .route(
            "/registration-tokens",
            post(registry_routes::create_registration_token)
                .get(registry_routes::list_registration_tokens),
        )
        .route("/registration-tokens/{id}", delete(registry_routes::revoke_registration_token))
        .route("/gateways", get(registry_routes::list_gateways).post(outbound_routes::add_gateway))
        .route("/gateways/{id}/connections", get(outbound_routes::gateway_connections))
        .route("/gateways/{id}/release", post(registry_routes::release_gateway))
        .route(
            "/gateways/{id}",
            get(registry_routes::get_gateway).delete(registry_routes::delete_gateway),
        )
        .route("/gateways/{id}/metrics", get(registry_routes::gateway_metrics))
        .route("/agents", get(registry_routes::list_agents))
        .route("/sessions", get(admin_routes::list_sessions))
        .route("/sessions/{id}/messages", get(admin_routes::session_messages))
        .route("/activity", get(registry_routes::list_activity))
        .route("/gateway-registry/register", post(registry_routes::register))
        .route("/gateway-registry/heartbeat", post(registry_routes::heartbeat))
        .route("/gateway-registry/deregister", delete(registry_routes::deregister));
    let pages = if config.web_pages() { web::routes() } else { Router::new() };
    Router::new()
        .merge(pages)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ws/chat", get(ws_user::upgrade))
        .route("/ws/h5/chat", get(ws_user::upgrade))
        .route("/ws/gateway/{id}/relay", get(ws_gateway::upgrade))
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(serve::bound_request))
        .layer(axum::middleware::from_fn(count_request))
        .layer(DefaultBodyLimit::max(config.max_body_bytes()))
        .layer(axum::Extension(config))
        .with_state(state)
}

/// The pool of gateways this relay dials, connecting to the stored ones in the background
/// (when there is a tokio runtime: outside one, only gateways added later are dialled).
fn start_outbound(
    relay: &Relay,
    board: &link_board::LinkBoard,
    config: &HttpConfig,
) -> outbound::OutboundPool {
    let addresses = AddressPolicy::allow_only(config.outbound_allow().clone());
    let pool = outbound::OutboundPool::new(relay.clone(), board.clone(), addresses);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let starting = pool.clone();
            runtime.spawn(async move {
                match starting.start_all().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(gateways = n, "dialling the stored OpenClaw gateways"),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot start the stored outbound gateways")
                    }
                }
            });
        }
        Err(_) => tracing::warn!("no tokio runtime: stored outbound gateways are not dialled"),
    }
    pool
}

/// Counts every request in `mc_http_requests_total{route, method, status}` (the route's
/// pattern, so ids do not multiply the series).
async fn count_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("mc_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// How long `/readyz` waits for the store's ping.
const READYZ_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn readyz(State(state): State<AppState>) -> Response {
    let instance = state.relay.instance_id();
    if let Err(err) = state.relay.ping_bus().await {
        tracing::warn!(error = %err, "readiness check failed");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the bus between instances (Redis) is unreachable",
        )
        .into_response();
    }
    // A store that is down can take its pool's acquire timeout to say so; a health check
    // wants its answer sooner.
    let pinged = tokio::time::timeout(READYZ_STORE_TIMEOUT, state.services.store().ping()).await;
    match pinged {
        Ok(Ok(())) => axum::Json(serde_json::json!({ "status": "ready", "instance": instance }))
            .into_response(),
        Err(_) => {
            tracing::warn!(timeout = ?READYZ_STORE_TIMEOUT, "readiness check failed: the store did not answer");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the store did not answer in time",
            )
            .into_response()
        }
        Ok(Err(err)) => {
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
