//! The one error type handlers return, mapped once to `application/problem+json`
//! (RFC 9457) with a stable `code`. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keygate_core::store::StoreError;
use serde::Serialize;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: no such tenant, or it is disabled (another tenant's objects also answer 404).
    #[error("tenant not found")]
    TenantNotFound,
    /// 404: no such route or object.
    #[error("not found")]
    NotFound,
    /// 503: a dependency (database, cache) is down; the client may retry.
    #[error("service unavailable")]
    Unavailable,
    /// 500: the store failed; logged with its cause.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// 500: anything else unexpected; logged with its cause.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The RFC 9457 body.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code clients may match on.
    pub code: &'static str,
    /// Explanation for this occurrence; never internal details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::TenantNotFound => (
                StatusCode::NOT_FOUND,
                "tenant_not_found",
                "Tenant not found",
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Store(_) | Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, code, "request failed");
        }
        problem_response(status, code, title, None)
    }
}

/// Builds a problem+json response; also used by extractors' rejections.
pub fn problem_response(
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: Option<String>,
) -> Response {
    let body = Problem {
        kind: format!("https://keygate.dev/problems/{code}"),
        title,
        status: status.as_u16(),
        code,
        detail,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
