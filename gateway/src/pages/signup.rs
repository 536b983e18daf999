//! Sign up (per the tenant's registration mode) and email verification.

use super::{EmailPasswordForm, Errors, Page, Pages, TokenForm, checked_rd, csrf_ok, refusal};
use crate::error::ApiError;
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;

pub(super) const SIGN_UP: Page = Page {
    template: "signup.html",
    title: "Create an account",
};
pub(super) const VERIFY: Page = Page {
    template: "verify.html",
    title: "Verify your email",
};

pub(super) async fn signup_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = SIGN_UP.on(&state, &tenant);
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    let again = context! { rd => rd.clone(), email => form.email.clone() };
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen.expired(jar, StatusCode::FORBIDDEN, again).await);
    }
    let mut errors = Errors::new();
    if !form.email.contains('@') {
        errors.insert(
            "email",
            "Enter an email address like name@example.com.".into(),
        );
    }
    let min_length = tenant.settings.password_policy.min_length;
    if (form.password.chars().count() as u32) < min_length {
        errors.insert("password", format!("Use at least {min_length} characters."));
    }
    if !errors.is_empty() {
        return Ok(screen
            .show(jar, StatusCode::UNPROCESSABLE_ENTITY, errors, again)
            .await);
    }
    let outcome = state
        .flows
        .sign_up(&tenant, form.email.trim(), &form.password, &meta)
        .await;
    Ok(match outcome {
        Ok(()) => screen.message(
            "Check your email",
            "If the address can be registered, we have sent a link to confirm it.",
            StatusCode::OK,
            Some((
                "Sign in",
                signin_url(&state.public_url, tenant.name(), rd.as_deref()),
            )),
        ),
        Err(e) => screen.refused(jar, e, again).await,
    })
}

pub(super) async fn verify_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = VERIFY.on(&state, &tenant);
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
    Ok(
        match state.flows.verify_email(&tenant, &form.token, &meta).await {
            Ok(()) => screen.message(
                "Email verified",
                "Thank you, your email address is confirmed.",
                StatusCode::OK,
                signin,
            ),
            Err(e) => {
                let (_, text, status) = refusal(e);
                screen.message("Email not verified", &text, status, signin)
            }
        },
    )
}
