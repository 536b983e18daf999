//! Sign in (sets the session cookie and the device cookie) and sign out (ends the session,
//! clears the session cookie; the device cookie stays, it is no credential on its own).

use super::handoff::{checked_handoff, onwards};
use super::{EmailPasswordForm, Errors, Page, Pages, checked_rd, csrf_ok, query_param};
use crate::error::ApiError;
use crate::identity::{BrowserSignIn, DEVICE_TOKEN_TTL, SignInAttempt};
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

pub(super) const SIGN_IN: Page = Page {
    template: "signin.html",
    title: "Sign in",
};
pub(super) const SIGN_OUT: Page = Page {
    template: "signout.html",
    title: "Sign out",
};

/// `GET /t/{tenant}/signin` (and `/login`): a browser already signed in is sent on at once
/// (single sign-on to a second app needs no second password) unless `prompt=login` asks for
/// the password again (the authorization endpoint's `prompt=login` and `max_age`); others get
/// the form, its address prefilled from `login_hint`.
pub(super) async fn signin_page(
    State(state): Pages,
    TenantName(name): TenantName,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    let handoff = checked_handoff(query_param(&q, "handoff"));
    let again = query_param(&q, "prompt").as_deref() == Some("login");
    if !again
        && let Some(cookie) = jar.get(state.session_cookie(&tenant).name())
        && state
            .identity
            .resolve_from_session_cookie(tenant.name(), cookie.value())
            .await
            .is_ok()
    {
        let cookie = cookie.value().to_owned();
        return Ok(onwards(&state, &tenant, &cookie, rd, handoff).await);
    }
    let email: String = query_param(&q, "login_hint")
        .unwrap_or_default()
        .chars()
        .take(320)
        .collect();
    let link = checked_link(query_param(&q, "link"));
    // Asked to sign in again: the providers are asked for a fresh sign-in too, and their
    // answer must say so (`auth_time`), so an account without a password is not waved through.
    let providers =
        sign_in_options(&state, &tenant, rd.as_deref(), handoff.as_deref(), again).await;
    Ok(SIGN_IN
        .on(&state, &tenant)
        .fresh(
            jar,
            context! { rd, handoff, link, providers, email => email },
        )
        .await)
}

/// A link token as the identity service issues them (URL-safe base64); anything else is
/// dropped before it reaches a page.
fn checked_link(raw: Option<String>) -> Option<String> {
    raw.filter(|l| {
        !l.is_empty()
            && l.len() <= 128
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The tenant's upstream providers as buttons, each starting its sign-in with the same
/// return URL and handoff, and asking for a `fresh` one when the page was. A failure to list
/// them costs the buttons, not the page.
async fn sign_in_options(
    state: &super::PagesState,
    tenant: &crate::identity::LiveTenant,
    rd: Option<&str>,
    handoff: Option<&str>,
    fresh: bool,
) -> Vec<minijinja::Value> {
    let providers = match state.flows.providers(tenant).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the tenant's identity providers");
            Vec::new()
        }
    };
    providers
        .into_iter()
        .map(|p| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(rd) = rd {
                query.append_pair("rd", rd);
            }
            if let Some(h) = handoff {
                query.append_pair("handoff", h);
            }
            if fresh {
                query.append_pair("fresh", "1");
            }
            let query = query.finish();
            context! { name => p.name, query, label => p.display_name }
        })
        .collect()
}

pub(super) async fn signin_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = SIGN_IN.on(&state, &tenant);
    let Ok(Form(form)) = form else {
        return Ok(screen
            .expired(jar, StatusCode::BAD_REQUEST, context! {})
            .await);
    };
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    let handoff = checked_handoff(Some(form.handoff.clone()));
    let link = checked_link(Some(form.link.clone()));
    let providers =
        sign_in_options(&state, &tenant, rd.as_deref(), handoff.as_deref(), false).await;
    let again = context! { rd, handoff, link, providers, email => form.email.clone() };
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen.expired(jar, StatusCode::FORBIDDEN, again).await);
    }
    let mut errors = Errors::new();
    if form.email.trim().is_empty() {
        errors.insert("email", "Enter your email address.".into());
    }
    if form.password.is_empty() {
        errors.insert("password", "Enter your password.".into());
    }
    if !errors.is_empty() {
        return Ok(screen
            .show(jar, StatusCode::UNPROCESSABLE_ENTITY, errors, again)
            .await);
    }
    let attempt = SignInAttempt {
        email: form.email.trim().to_owned(),
        password: form.password.clone(),
        device: jar
            .get(state.cookies.device_cookie())
            .map(|c| c.value().to_owned()),
    };
    let signed_in = match state.flows.sign_in(&tenant, &attempt, &meta).await {
        Ok(BrowserSignIn::Session(signed_in, _)) => signed_in,
        Ok(BrowserSignIn::SecondFactor { token, enrol }) => {
            let pending = (token, enrol);
            let page =
                super::second_factor::challenge(&state, &tenant, jar, &meta, pending, rd, handoff);
            return Ok(page.await);
        }
        Err(e) => return Ok(screen.refused(jar, e, again).await),
    };
    let cookie = state
        .session_cookie(&tenant)
        .issue(signed_in.cookie_value.clone(), signed_in.max_age);
    if let Some(link) = &link
        && let Err(e) = state
            .flows
            .claim_link(&tenant, &signed_in.cookie_value, link, &meta)
            .await
    {
        // Signed in all the same; the person learns why the link was not made.
        let (_, text, status) = super::refusal(e);
        let account = format!("{}/t/{}/account", state.public_url, tenant.name());
        let page = screen.message(
            "Not linked",
            &format!(
                "You are signed in, but your identity provider's account was not linked: {text}"
            ),
            status,
            Some(("Continue", account)),
        );
        return Ok((jar.add(cookie), page).into_response());
    }
    let next = onwards(&state, &tenant, &signed_in.cookie_value, rd, handoff).await;
    let mut jar = jar.add(cookie);
    if let Some(device) = signed_in.device_cookie {
        let max_age = DEVICE_TOKEN_TTL.to_std().unwrap_or_default();
        jar = jar.add(state.cookies.device(device, max_age));
    }
    Ok((jar, next).into_response())
}

#[derive(Deserialize, Default)]
pub(super) struct SignOutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
}

pub(super) async fn signout_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = SIGN_OUT.on(&state, &tenant);
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen
            .expired(jar, StatusCode::FORBIDDEN, context! { rd })
            .await);
    }
    let session_cookie = state.session_cookie(&tenant);
    if let Some(session) = jar.get(session_cookie.name()).map(|c| c.value().to_owned())
        && let Err(e) = state.flows.sign_out(&tenant, &session, &meta).await
    {
        tracing::warn!(error = %e, "sign-out could not end the session");
        return Ok(screen.message(
            "Try again",
            "Signing out did not work. Try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        ));
    }
    // Cleared with its domain, if shared: the browser matches a removal by name, path and domain.
    let removal = session_cookie.removal();
    let target = signin_url(&state.public_url, tenant.name(), rd.as_deref());
    Ok((jar.remove(removal), Redirect::to(&target)).into_response())
}
