//! The MFA and step-up prompts: hooks the MFA issue fills; until then they say so plainly.

use super::{Page, live};
use crate::AppState;
use crate::error::ApiError;
use crate::forward_auth::redirect::signin_url;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

const PROMPT: Page = Page {
    template: "message.html",
    title: "Additional verification",
};

pub(super) async fn mfa(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    Ok(PROMPT.on(&state, &tenant).message(
        PROMPT.title,
        "A second factor is needed here. MFA arrives with the MFA issue; until then this step cannot be completed.",
        StatusCode::OK,
        Some((
            "Back to sign in",
            signin_url(&state.public_url, &tenant.tenant.name, None),
        )),
    ))
}
