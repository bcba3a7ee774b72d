//! `POST /api/v1/gateways` (add a gateway the relay dials: docs/openclaw.md) and
//! `GET /api/v1/gateways/{id}/connections` (the gateway's live links on this instance).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mc_core::GatewayId;
use mc_core::registry::OutboundGatewayRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, path_id};
use super::views::GatewayView;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGatewayBody {
    name: String,
    url: String,
    token: Option<String>,
}

impl std::fmt::Debug for NewGatewayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewGatewayBody")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

pub(crate) async fn add_gateway(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<NewGatewayBody>,
) -> Result<(StatusCode, Json<GatewayView>), ApiError> {
    // An address literal outside the ranges gateways may be dialled in is refused now (a
    // name is checked when dialled, on every address it resolves to).
    if let Some(ip) = mc_openclaw::address::literal_host(&body.url)
        && let Err(refused) = state.outbound.addresses().check(ip)
    {
        return Err(mc_core::Error::AddressRefused(refused.to_string()).into());
    }
    let request = OutboundGatewayRequest { name: body.name, url: body.url, token: body.token };
    let registry = state.services.registry();
    let (gateway, link) = registry.add_outbound_gateway(&admin, request).await?;
    state.outbound.start(link.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(GatewayView::new(gateway, Some(vec![])).with_outbound(Some(link))),
    ))
}

pub(crate) async fn gateway_connections(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: GatewayId = path_id("gateway id", &id)?;
    state.services.registry().gateway(&admin, id).await?;
    Ok(Json(json!({
        "gateway_id": id,
        "instance": state.relay.instance_id(),
        "connections": state.board.list(id),
    })))
}
