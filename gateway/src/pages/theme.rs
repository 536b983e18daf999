//! The shared stylesheet and each tenant's colours, served as CSS so the pages' CSP can
//! forbid inline styles.

use super::Pages;
use crate::error::ApiError;
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub(super) async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("keygate.css"),
    )
}

fn is_colour(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) async fn theme(
    State(state): Pages,
    TenantName(name): TenantName,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let mut css = String::from(":root {");
    {
        let b = &tenant.settings.branding;
        for (var, value) in [
            ("--kg-primary", &b.primary_color),
            ("--kg-accent", &b.accent_color),
        ] {
            if let Some(c) = value.as_deref().filter(|c| is_colour(c)) {
                css.push_str(&format!(" {var}: {c};"));
            }
        }
    }
    css.push_str(" }\n");
    Ok((
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        css,
    )
        .into_response())
}
