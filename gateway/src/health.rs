//! Liveness, readiness and metrics for orchestrators and Prometheus.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Alive as long as the process answers: restarting would not help a database outage.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready only while the store answers, so load balancers skip a replica that cannot serve.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.identity.ready().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready: store unreachable");
        ApiError::Unavailable
    })?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

/// The gateway's own registry (the identity service's), in Prometheus text; the gauges
/// read at scrape time (database pool, Redis) are refreshed first.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.identity.sample_metrics().await;
    let encoder = prometheus::TextEncoder::new();
    let body = encoder
        .encode_to_string(&state.registry.gather())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
