//! Sign in (sets the session cookie) and sign out (ends the session, clears the cookie).

use super::{EmailPasswordForm, Errors, Page, SignInAttempt, checked_rd, csrf_ok, live};
use crate::AppState;
use crate::error::ApiError;
use crate::forward_auth::redirect::signin_url;
use crate::pages::FlowError;
use crate::routes::extract::Meta;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
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

pub(super) async fn signin_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
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
    let again = context! { rd, email => form.email.clone() };
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
    };
    let signed_in = match state
        .edge
        .flows
        .sign_in(&tenant.tenant, &attempt, &meta)
        .await
    {
        Ok(signed_in) => signed_in,
        Err(e) => {
            let (field, text, status) = match e {
                FlowError::InvalidCredentials => (
                    "password",
                    "The email address or password is not right.",
                    StatusCode::UNAUTHORIZED,
                ),
                FlowError::Locked => (
                    "email",
                    "Too many attempts. Wait a few minutes and try again.",
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                FlowError::EmailNotVerified => (
                    "email",
                    "Verify your email address first: follow the link we sent you.",
                    StatusCode::FORBIDDEN,
                ),
                FlowError::MfaRequired => (
                    "password",
                    "This account needs a second factor, which arrives with the MFA issue.",
                    StatusCode::FORBIDDEN,
                ),
                FlowError::Unavailable => (
                    "email",
                    "Signing in is not available right now. Try again shortly.",
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                _ => (
                    "email",
                    "Signing in did not work. Try again.",
                    StatusCode::BAD_REQUEST,
                ),
            };
            return Ok(screen.invalid(jar, status, field, text, again).await);
        }
    };
    let cookie = Cookie::build((
        state.edge.cookie_mode.session_cookie(),
        signed_in.cookie_value,
    ))
    .path("/")
    .http_only(true)
    .secure(state.edge.cookie_mode.secure())
    .same_site(SameSite::Lax)
    .max_age(cookie::time::Duration::seconds(
        i64::try_from(signed_in.max_age.as_secs()).unwrap_or(i64::MAX),
    ))
    .build();
    let target =
        rd.unwrap_or_else(|| format!("{}/t/{}/signout", state.public_url, tenant.tenant.name));
    Ok((jar.add(cookie), Redirect::to(&target)).into_response())
}

#[derive(Deserialize, Default)]
pub(super) struct SignOutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
}

pub(super) async fn signout_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
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
    let cookie_name = state.edge.cookie_mode.session_cookie();
    if let Some(session) = jar.get(cookie_name).map(|c| c.value().to_owned())
        && let Err(e) = state
            .edge
            .flows
            .sign_out(&tenant.tenant, &session, &meta)
            .await
    {
        tracing::warn!(error = %e, "sign-out could not end the session");
        return Ok(screen.message(
            "Try again",
            "Signing out did not work. Try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        ));
    }
    let removal = Cookie::build((cookie_name, ""))
        .path("/")
        .http_only(true)
        .secure(state.edge.cookie_mode.secure())
        .same_site(SameSite::Lax)
        .build();
    let target = signin_url(&state.public_url, &tenant.tenant.name, rd.as_deref());
    Ok((jar.remove(removal), Redirect::to(&target)).into_response())
}
