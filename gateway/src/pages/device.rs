//! The device grant's user-code page, `/t/{tenant}/device` (RFC 8628 §3.3): a signed-in person
//! enters the code their device shows (or follows the link with it filled in), sees which
//! application asks for what, and approves or denies. A browser that is not signed in is sent
//! to sign in first and comes back here.

use super::{Errors, Page, Pages, PagesState, csrf_ok, query_param};
use crate::error::ApiError;
use crate::identity::{IdentityError, LiveTenant, Principal};
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;

const DEVICE: Page = Page {
    template: "device.html",
    title: "Connect a device",
};

/// `/t/{tenant}/device`, GET and form POST.
pub(super) fn router() -> axum::Router<crate::AppState> {
    axum::Router::new().route(
        "/t/{tenant}/device",
        axum::routing::get(device_page).post(device_submit),
    )
}

#[derive(Deserialize, Default)]
pub(super) struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    action: String,
}

/// The person signed in on this browser, if any.
async fn person(state: &PagesState, tenant: &LiveTenant, jar: &CookieJar) -> Option<Principal> {
    let cookie = jar.get(state.session_cookie(tenant).name())?;
    state
        .identity
        .resolve_from_session_cookie(tenant.name(), cookie.value())
        .await
        .ok()
}

/// Sign in first, then back here with the code.
fn to_sign_in(state: &PagesState, tenant: &LiveTenant, user_code: &str) -> Response {
    let mut back = format!("{}/t/{}/device", state.public_url, tenant.name());
    if !user_code.is_empty() {
        back.push_str("?user_code=");
        back.extend(form_urlencoded::byte_serialize(user_code.as_bytes()));
    }
    Redirect::to(&signin_url(&state.public_url, tenant.name(), Some(&back))).into_response()
}

/// The confirmation for `user_code`, or the entry form saying why there is none.
async fn confirm_or_entry(
    state: &PagesState,
    tenant: &LiveTenant,
    jar: CookieJar,
    user_code: &str,
    meta: &crate::identity::RequestMeta,
) -> Response {
    let screen = DEVICE.on(state, tenant);
    match state.identity.pending_device(tenant, user_code, meta).await {
        Ok(p) => {
            let confirm = context! {
                client_name => p.client_name,
                scope => p.scope,
                user_code => p.user_code,
            };
            screen.fresh(jar, context! { confirm }).await
        }
        Err(e) => {
            let (text, status) = match e {
                IdentityError::InvalidLink => (
                    "This code is not valid, was already used, or has expired.",
                    StatusCode::BAD_REQUEST,
                ),
                IdentityError::RateLimited { .. } => (
                    "Too many attempts. Wait a minute and try again.",
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                _ => (
                    "This is not available right now. Try again shortly.",
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
            };
            let again = context! { user_code => user_code };
            screen
                .show(
                    jar,
                    status,
                    Errors::from([("user_code", text.to_owned())]),
                    again,
                )
                .await
        }
    }
}

async fn device_page(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let user_code = query_param(&q, "user_code").unwrap_or_default();
    if person(&state, &tenant, &jar).await.is_none() {
        return Ok(to_sign_in(&state, &tenant, &user_code));
    }
    if user_code.is_empty() {
        return Ok(DEVICE
            .on(&state, &tenant)
            .fresh(jar, context! { user_code => "" })
            .await);
    }
    Ok(confirm_or_entry(&state, &tenant, jar, &user_code, &meta).await)
}

async fn device_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<DeviceForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = DEVICE.on(&state, &tenant);
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let again = context! { user_code => form.user_code.clone() };
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen.expired(jar, StatusCode::FORBIDDEN, again).await);
    }
    let Some(person) = person(&state, &tenant, &jar).await else {
        return Ok(to_sign_in(&state, &tenant, &form.user_code));
    };
    let approve = match form.action.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Ok(confirm_or_entry(&state, &tenant, jar, &form.user_code, &meta).await),
    };
    match state
        .identity
        .decide_device(&tenant, &form.user_code, approve, &person, &meta)
        .await
    {
        Ok(()) if approve => Ok(screen.message(
            "Device connected",
            "You can return to your device; it signs in by itself.",
            StatusCode::OK,
            None,
        )),
        Ok(()) => Ok(screen.message(
            "Request denied",
            "Your device was not given access.",
            StatusCode::OK,
            None,
        )),
        Err(IdentityError::InvalidScope) => Ok(screen.message(
            "Cannot approve",
            "The application asks for access you do not have.",
            StatusCode::FORBIDDEN,
            None,
        )),
        Err(IdentityError::InvalidLink) => {
            Ok(confirm_or_entry(&state, &tenant, jar, &form.user_code, &meta).await)
        }
        Err(e) => Err(e.into()),
    }
}
