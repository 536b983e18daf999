//! The emailed unlock of a locked account: "Locked? Email me an unlock link" (the same
//! answer whether or not the account exists, like forgot password) and the link's page,
//! which spends the link on a button press and sets the device cookie in this browser.

use super::{EmailPasswordForm, Page, Pages, TokenForm, csrf_ok, refusal};
use crate::error::ApiError;
use crate::identity::{DEVICE_TOKEN_TTL, FlowError};
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;

pub(super) const LOCKED: Page = Page {
    template: "locked.html",
    title: "Unlock your account",
};
pub(super) const UNLOCK: Page = Page {
    template: "unlock.html",
    title: "Unlock your account",
};

pub(super) async fn locked_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = LOCKED.on(&state, &tenant);
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let email = form.email.trim().to_owned();
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen
            .expired(jar, StatusCode::FORBIDDEN, context! { email })
            .await);
    }
    if !email.contains('@') {
        return Ok(screen
            .invalid(
                jar,
                StatusCode::UNPROCESSABLE_ENTITY,
                "email",
                "Enter an email address like name@example.com.",
                context! { email },
            )
            .await);
    }
    // Same answer whether or not the account exists (or is locked).
    let outcome = state.flows.request_unlock(&tenant, &email, &meta).await;
    if let Err(e @ FlowError::MailUnavailable) = outcome {
        return Ok(screen.refused(jar, e, context! { email }).await);
    }
    Ok(screen.message(
        "Check your email",
        "If an account uses this address, we have sent it a link that unlocks it.",
        StatusCode::OK,
        None,
    ))
}

pub(super) async fn unlock_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = UNLOCK.on(&state, &tenant);
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen
            .expired(jar, StatusCode::FORBIDDEN, context! { token => form.token })
            .await);
    }
    let signin = Some((
        "Sign in",
        signin_url(&state.public_url, tenant.name(), None),
    ));
    let device = jar
        .get(state.cookies.device_cookie())
        .map(|c| c.value().to_owned());
    match state
        .flows
        .unlock(&tenant, &form.token, device.as_deref(), &meta)
        .await
    {
        Ok(value) => {
            let max_age = DEVICE_TOKEN_TTL.to_std().unwrap_or_default();
            let page = screen.message(
                "Account unlocked",
                "Your account is unlocked, and this browser can sign in even while strangers' wrong passwords lock it. Sign in now.",
                StatusCode::OK,
                signin,
            );
            Ok((jar.add(state.cookies.device(value, max_age)), page).into_response())
        }
        Err(e) => {
            let (_, text, status) = refusal(e);
            Ok(screen.message("Not unlocked", &text, status, signin))
        }
    }
}
