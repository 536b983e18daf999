//! Forgot password (same answer whether or not the account exists) and reset password
//! (single-use, expiring link).

use super::{EmailPasswordForm, Page, Pages, TokenForm, csrf_ok, refusal};
use crate::error::ApiError;
use crate::identity::FlowError;
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;

pub(super) const FORGOT: Page = Page {
    template: "forgot.html",
    title: "Reset your password",
};
pub(super) const RESET: Page = Page {
    template: "reset.html",
    title: "Choose a new password",
};

pub(super) async fn forgot_submit(
    state: Pages,
    name: TenantName,
    meta: Meta,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    request_link(state, name, meta, jar, form, EmailedLink::Reset).await
}

/// What an emailed link is for: the forgot-password and locked pages differ only in this.
#[derive(Clone, Copy)]
pub(super) enum EmailedLink {
    /// A link to set a new password.
    Reset,
    /// A link that clears the account's lockout.
    Unlock,
}

/// Asks for an emailed link: the same answer whether or not the account exists; an
/// installation that cannot send mail says so instead of claiming a link went out.
pub(super) async fn request_link(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
    link: EmailedLink,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = match link {
        EmailedLink::Reset => FORGOT,
        EmailedLink::Unlock => super::unlock::LOCKED,
    }
    .on(&state, &tenant);
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
    let (outcome, sent) = match link {
        EmailedLink::Reset => (
            state
                .flows
                .request_password_reset(&tenant, &email, &meta)
                .await,
            "If an account uses this address, we have sent it a link to set a new password.",
        ),
        EmailedLink::Unlock => (
            state.flows.request_unlock(&tenant, &email, &meta).await,
            "If an account uses this address, we have sent it a link that unlocks it.",
        ),
    };
    if let Err(e @ FlowError::MailUnavailable) = outcome {
        return Ok(screen.refused(jar, e, context! { email }).await);
    }
    Ok(screen.message("Check your email", sent, StatusCode::OK, None))
}

pub(super) async fn reset_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = RESET.on(&state, &tenant);
    let Ok(Form(form)) = form else {
        return Ok(screen
            .expired(jar, StatusCode::BAD_REQUEST, context! {})
            .await);
    };
    let again = context! { token => form.token.clone() };
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen.expired(jar, StatusCode::FORBIDDEN, again).await);
    }
    let outcome = state
        .flows
        .reset_password(&tenant, &form.token, &form.password, &meta)
        .await;
    Ok(match outcome {
        Ok(()) => screen.message(
            "Password changed",
            "Your password is set. Sign in with it now.",
            StatusCode::OK,
            Some((
                "Sign in",
                signin_url(&state.public_url, tenant.name(), None),
            )),
        ),
        Err(FlowError::InvalidLink) => {
            let (_, text, status) = refusal(FlowError::InvalidLink);
            screen.message(
                "Link expired",
                &text,
                status,
                Some((
                    "Reset your password",
                    format!("{}/t/{}/forgot-password", state.public_url, tenant.name()),
                )),
            )
        }
        Err(e) => screen.refused(jar, e, again).await,
    })
}
