//! Where forward-auth sends a browser that needs a second factor or a fresher sign-in
//! (`/t/{tenant}/mfa`, `/t/{tenant}/step-up`). No tenant offers a second factor yet, so the
//! page says so and leads back to signing in.

use super::{Page, Pages};
use crate::error::ApiError;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

const PROMPT: Page = Page {
    template: "message.html",
    title: "Additional verification",
};

pub(super) async fn no_second_factor(
    State(state): Pages,
    TenantName(name): TenantName,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    Ok(PROMPT.on(&state, &tenant).message(
        PROMPT.title,
        "This page asks for a second factor, and this organisation does not offer multi-factor sign-in. Sign in again with your password, or ask your administrator about access.",
        StatusCode::OK,
        Some((
            "Back to sign in",
            signin_url(&state.public_url, tenant.name(), None),
        )),
    ))
}
