//! `/metrics`: Prometheus text. The relay's crates record through the `metrics` facade; this
//! binary installs the Prometheus recorder and adds the gateway counts from the store. It is
//! served on an address of its own (`--metrics-listen`) and/or, to requests bearing
//! `--metrics-token`, on the main address; never to anyone on the public one.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mc_core::{GatewayStatus, Secret, SecretHash, Store};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide recorder (once) and describes the relay's metrics; every
/// series carries the label `instance`.
pub fn install(instance: &str) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .add_global_label("instance", instance)
        .set_buckets_for_metric(
            Matcher::Full("mc_round_trip_seconds".into()),
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
        )?
        .install_recorder()?;
    metrics::describe_gauge!("mc_connections", "Open sockets, by kind (user, gateway)");
    metrics::describe_counter!(
        "mc_frames_total",
        "WebSocket frames, by kind and direction (in, out)"
    );
    metrics::describe_counter!(
        "mc_messages_stored_total",
        "Messages stored, by role (user, agent, system)"
    );
    metrics::describe_histogram!(
        "mc_round_trip_seconds",
        metrics::Unit::Seconds,
        "From handing a message to the gateway to storing and sending the agent's reply"
    );
    metrics::describe_gauge!("mc_gateways", "Gateways, by status");
    metrics::describe_counter!(
        "mc_gateway_changes_deferred_total",
        "Gateway reports whose status or agent changes waited: the gateway changes too often"
    );
    metrics::describe_counter!(
        "mc_logins_total",
        "Sign-ins, by outcome (ok, invalid, locked_out, suspended, bad_request, error)"
    );
    metrics::describe_counter!(
        "mc_http_requests_total",
        "HTTP requests, by route (its pattern, or unmatched), method and status"
    );
    Ok(handle)
}

#[derive(Clone)]
struct MetricsState {
    handle: PrometheusHandle,
    store: Arc<dyn Store>,
    /// The hash of the token requests must bear, if any.
    token: Option<SecretHash>,
}

/// Whether `headers` bear `Authorization: Bearer <token>` (compared as SHA-256 hashes, so
/// the comparison's time says nothing about the token).
fn bears(headers: &HeaderMap, token: &SecretHash) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    presented.is_some_and(|presented| SecretHash::of(presented.trim()) == *token)
}

async fn render(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.token
        && !bears(&headers, token)
    {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
        return (StatusCode::UNAUTHORIZED, challenge, "the metrics token is required\n")
            .into_response();
    }
    match state.store.count_gateways_by_status().await {
        Ok(counts) => {
            for status in GatewayStatus::ALL {
                let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
                metrics::gauge!("mc_gateways", "status" => status.as_str()).set(n as f64);
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot count gateways for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.handle.render()).into_response()
}

/// The `/metrics` route; with `token`, only for requests bearing it.
pub fn routes(handle: PrometheusHandle, store: Arc<dyn Store>, token: Option<&Secret>) -> Router {
    let token = token.map(|t| SecretHash::of(t.expose()));
    Router::new().route("/metrics", get(render)).with_state(MetricsState { handle, store, token })
}
