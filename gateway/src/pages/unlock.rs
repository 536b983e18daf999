//! The emailed unlock of a locked account: "Locked? Email me an unlock link" (the same
//! answer whether or not the account exists, like forgot password) and the link's page,
//! which spends the link on a button press and sets the device cookie in this browser.

use super::recovery::EmailedLink;
use super::{EmailPasswordForm, Page, Pages, TokenForm, csrf_ok, refusal};
use crate::error::ApiError;
use crate::identity::DEVICE_TOKEN_TTL;
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
    state: Pages,
    name: TenantName,
    meta: Meta,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    super::recovery::request_link(state, name, meta, jar, form, EmailedLink::Unlock).await
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
