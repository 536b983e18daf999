//! Liveness, readiness and metrics for orchestrators and Prometheus.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// How long the store may be unreachable before `/readyz` takes a replica out of its
/// Service. Every replica shares the store, so a blip would otherwise empty the Service at
/// once — and forward-auth keeps deciding cached and offline-verifiable credentials through
/// an outage; a replica that stays cut off longer is taken out.
pub const READINESS_GRACE: Duration = Duration::from_secs(30);

/// Longest wait for the store's answer: a probe must answer within its own timeout (the
/// chart's is 2 s) whatever the pool's wait for a connection is.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Since when the store has been unreachable, as `/readyz` saw it.
#[derive(Debug)]
pub struct Readiness {
    grace: Duration,
    down_since: Mutex<Option<Instant>>,
}

impl Readiness {
    /// Not ready once the store has been unreachable for `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            down_since: Mutex::new(None),
        }
    }

    /// Records one check's outcome; how long the store has been down (`None`: it answered).
    fn observe(&self, answered: bool) -> Option<Duration> {
        let mut since = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        if answered {
            *since = None;
            return None;
        }
        Some(since.get_or_insert_with(Instant::now).elapsed())
    }
}

/// Ready while the store answers, and through an outage of it shorter than the grace
/// ([`READINESS_GRACE`]), so a blip does not pull every replica out of the Service at once.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let answered = match tokio::time::timeout(PING_TIMEOUT, state.identity.ready()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store unreachable");
            false
        }
        Err(_) => {
            tracing::warn!("store did not answer within {PING_TIMEOUT:?}");
            false
        }
    };
    match state.readiness.observe(answered) {
        None => Ok(Json(serde_json::json!({"status": "ready"}))),
        Some(down) if down < state.readiness.grace => Ok(Json(serde_json::json!({
            "status": "ready",
            "store": format!("unreachable for {} s", down.as_secs()),
        }))),
        Some(down) => {
            tracing::warn!(
                seconds = down.as_secs(),
                "not ready: store unreachable past the grace"
            );
            Err(ApiError::Unavailable)
        }
    }
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
