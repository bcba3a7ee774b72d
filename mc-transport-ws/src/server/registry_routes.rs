//! The gateway registry (`/api/v1/gateway-registry/*`) and the admin routes for registration
//! tokens, gateways, agents and activity: thin handlers over [`mc_core::registry::RegistryService`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Extension, Json};
use mc_core::registry::{GatewayRegistration, Heartbeat, ReportedStatus};
use mc_core::{
    AgentReport, GatewayId, GatewayMetrics, GatewayStatus, OrgId, RegistrationTokenId, Services,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::HttpConfig;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, ListQuery, path_id};
use super::views::{ActivityView, AgentView, GatewayView, RegistrationTokenView, page_json};

/// The client's IP: the socket peer, or with `trust_forwarded_for` the first
/// `X-Forwarded-For` entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let trust = parts.extensions.get::<HttpConfig>().is_some_and(|c| c.trust_forwarded_for());
        if trust
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Ok(ClientIp(Some(ip)));
        }
        Ok(ClientIp(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentBody {
    agent_key: String,
    name: String,
}

fn reports(agents: Option<Vec<AgentBody>>) -> Option<Vec<AgentReport>> {
    agents.map(|v| {
        v.into_iter().map(|a| AgentReport { agent_key: a.agent_key, name: a.name }).collect()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    organization_id: String,
    registration_token: String,
    name: String,
    url: Option<String>,
    workspace_root: Option<String>,
    version: Option<String>,
    capabilities: Option<Vec<String>>,
    agents: Option<Vec<AgentBody>>,
    /// Its current relay token, to re-register a name it holds.
    relay_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsBody {
    active_sessions: u32,
    memory_mb: f64,
    cpu_pct: f64,
    agent_count: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatBody {
    gateway_id: String,
    relay_token: String,
    status: ReportedStatus,
    metrics: Option<MetricsBody>,
    agents: Option<Vec<AgentBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeregisterBody {
    gateway_id: String,
    relay_token: String,
}

mc_core::debug_redacted!(RegisterBody { organization_id, name, url, workspace_root, version, capabilities, agents } secret { registration_token, relay_token });
mc_core::debug_redacted!(HeartbeatBody { gateway_id, status, metrics, agents } secret { relay_token });
mc_core::debug_redacted!(DeregisterBody { gateway_id } secret { relay_token });

fn gateway_id(text: &str) -> Result<GatewayId, ApiError> {
    text.parse().map_err(|_| ApiError::bad_field("gateway_id", "is not a valid id"))
}

/// `ws(s)://<public host>/ws/gateway/<id>/relay`, from the configured public URL or else the
/// request's `Host` (`wss://` when this server terminates TLS).
fn relay_ws_url(config: Option<&HttpConfig>, parts_host: Option<&str>, id: GatewayId) -> String {
    let base = match config.and_then(|c| c.public_url().as_deref()) {
        Some(url) => url
            .trim_end_matches('/')
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1),
        None => {
            let scheme = if config.is_some_and(HttpConfig::serves_tls) { "wss" } else { "ws" };
            format!("{scheme}://{}", parts_host.unwrap_or("localhost"))
        }
    };
    format!("{base}/ws/gateway/{id}/relay")
}

pub(crate) async fn register(
    State(services): State<Services>,
    config: Option<Extension<HttpConfig>>,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let organization_id: OrgId = body
        .organization_id
        .parse()
        .map_err(|_| ApiError::bad_field("organization_id", "is not a valid id"))?;
    let request = GatewayRegistration {
        organization_id,
        registration_token: body.registration_token,
        name: body.name,
        url: body.url,
        workspace_root: body.workspace_root,
        version: body.version,
        capabilities: body.capabilities.unwrap_or_default(),
        agents: reports(body.agents),
        relay_token: body.relay_token,
    };
    let done = services.registry().register(request, ip).await?;
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let config = config.map(|Extension(c)| c);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "gateway_id": done.gateway_id,
            "relay_ws_url": relay_ws_url(config.as_ref(), host, done.gateway_id),
            "relay_token": done.relay_token,
            "heartbeat_interval_seconds": done.heartbeat_interval_seconds,
            "reregistered": done.reregistered,
        })),
    ))
}

pub(crate) async fn heartbeat(
    State(services): State<Services>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<HeartbeatBody>,
) -> Result<Json<Value>, ApiError> {
    let beat = Heartbeat {
        gateway_id: gateway_id(&body.gateway_id)?,
        relay_token: body.relay_token,
        status: body.status,
        metrics: body.metrics.map(|m| GatewayMetrics {
            active_sessions: m.active_sessions,
            memory_mb: m.memory_mb,
            cpu_pct: m.cpu_pct,
            agent_count: m.agent_count,
        }),
        agents: reports(body.agents),
    };
    let gateway = services.registry().heartbeat(beat, ip).await?;
    Ok(Json(json!({ "ok": true, "status": gateway.status })))
}

pub(crate) async fn deregister(
    State(services): State<Services>,
    ApiJson(body): ApiJson<DeregisterBody>,
) -> Result<StatusCode, ApiError> {
    services.registry().deregister(gateway_id(&body.gateway_id)?, &body.relay_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenBody {
    label: Option<String>,
    expires_in_seconds: Option<u64>,
    max_uses: Option<u32>,
}

pub(crate) async fn create_registration_token(
    State(services): State<Services>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<(StatusCode, Json<RegistrationTokenView>), ApiError> {
    let expires_in = body.expires_in_seconds.map(Duration::from_secs);
    let issued = services
        .registry()
        .create_registration_token(&admin, body.label, expires_in, body.max_uses)
        .await?;
    Ok((StatusCode::CREATED, Json(RegistrationTokenView::new(issued.token, Some(issued.secret)))))
}

pub(crate) async fn list_registration_tokens(
    State(services): State<Services>,
    Admin(admin): Admin,
    query: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let page = services.registry().list_registration_tokens(&admin, query.page(&[])?).await?;
    Ok(Json(page_json("registration_tokens", page, |t| RegistrationTokenView::new(t, None))))
}

pub(crate) async fn revoke_registration_token(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: RegistrationTokenId = path_id("registration token id", &id)?;
    services.registry().revoke_registration_token(&admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_gateways(
    State(services): State<Services>,
    Admin(admin): Admin,
    query: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let page = query.page(&["status"])?;
    let status = query.filter::<GatewayStatus>("status")?;
    let gateways = services.registry().list_gateways(&admin, status, page).await?;
    Ok(Json(page_json("gateways", gateways, |g| GatewayView::new(g, None))))
}

pub(crate) async fn get_gateway(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<GatewayView>, ApiError> {
    let id: GatewayId = path_id("gateway id", &id)?;
    let (gateway, agents) = services.registry().gateway_with_agents(&admin, id).await?;
    let outbound = services.registry().outbound_link(&admin, id).await?;
    Ok(Json(GatewayView::new(gateway, Some(agents)).with_outbound(outbound)))
}

pub(crate) async fn release_gateway(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<GatewayView>, ApiError> {
    let id: GatewayId = path_id("gateway id", &id)?;
    let gateway = services.registry().release_gateway(&admin, id).await?;
    Ok(Json(GatewayView::new(gateway, None)))
}

pub(crate) async fn delete_gateway(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: GatewayId = path_id("gateway id", &id)?;
    services.registry().delete_gateway(&admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn gateway_metrics(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: GatewayId = path_id("gateway id", &id)?;
    let g = services.registry().gateway(&admin, id).await?;
    Ok(Json(json!({
        "gateway_id": g.id,
        "status": g.status,
        "last_heartbeat_at": g.last_heartbeat_at,
        "metrics": g.connection_info.metrics,
        "metrics_at": g.connection_info.metrics_at,
    })))
}

pub(crate) async fn list_agents(
    State(services): State<Services>,
    Admin(admin): Admin,
    query: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let page = services.registry().list_agents(&admin, query.page(&[])?).await?;
    Ok(Json(page_json("agents", page, AgentView::from)))
}

pub(crate) async fn list_activity(
    State(services): State<Services>,
    Admin(admin): Admin,
    query: ListQuery,
) -> Result<Json<Value>, ApiError> {
    let page = services.registry().list_activity(&admin, query.page(&[])?).await?;
    Ok(Json(page_json("activity", page, ActivityView::from)))
}
