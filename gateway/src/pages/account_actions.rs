//! The account page's forms: `POST /t/{tenant}/account/{action}` with the page's CSRF token,
//! where `action` is `end-session`, `end-other-sessions`, `rename-factor`, `remove-factor`,
//! `backup-codes`, `remove-identity` or `password`. Each calls the same identity workflow as
//! the `/t/{tenant}/me` API; a change that needs a recent authentication sends the browser
//! to the step-up page and back to the account page. Success returns to the account page
//! (303), except new backup codes, which are shown once.

use super::account::{ACCOUNT, account_url, step_up_url};
use super::second_factor::signed_in;
use super::{Pages, PagesState, csrf_ok, refusal};
use crate::error::ApiError;
use crate::identity::{BackupCodes, FlowError, IdentityError, LiveTenant, Principal, RequestMeta};
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;

/// Every field any of the account forms sends.
#[derive(Deserialize, Default)]
pub(super) struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    factor: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// What an action did, when it did not just return to the page.
enum Done {
    /// Back to the account page.
    Back,
    /// New backup codes to show once.
    Codes(BackupCodes),
}

/// `POST /t/{tenant}/account/{action}`.
pub(super) async fn submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Path((_, action)): Path<(String, String)>,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<AccountForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = ACCOUNT.on(&state, &tenant);
    let back = Some(("Back to your account", account_url(&state, &tenant)));
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        let text = "This form expired or was opened in another browser. Go back to your account and try again.";
        return Ok(screen.message("Not done", text, StatusCode::FORBIDDEN, back));
    }
    let Some((principal, _)) = signed_in(&state, &tenant, &jar).await else {
        let signin = signin_url(&state.public_url, tenant.name(), None);
        return Ok(Redirect::to(&signin).into_response());
    };
    match act(&state, &principal, &action, &form, &meta).await {
        Ok(Done::Back) => Ok(Redirect::to(&account_url(&state, &tenant)).into_response()),
        Ok(Done::Codes(codes)) => Ok(show_codes(&state, &tenant, codes)),
        Err(IdentityError::StepUpRequired { acr, .. }) => {
            Ok(Redirect::to(&step_up_url(&state, &tenant, acr)).into_response())
        }
        Err(IdentityError::NotFound) => Ok(screen.message(
            "Not found",
            "That is no longer part of your account.",
            StatusCode::NOT_FOUND,
            back,
        )),
        Err(IdentityError::LastSignInMethod) => Ok(screen.message(
            "Not done",
            "This is the only way you can sign in to this account, so it cannot be removed.",
            StatusCode::CONFLICT,
            back,
        )),
        Err(IdentityError::InvalidRequest(why)) => Ok(screen.message(
            "Not done",
            &format!("This cannot be used: {why}."),
            StatusCode::UNPROCESSABLE_ENTITY,
            back,
        )),
        Err(e) => {
            let (_, text, status) = refusal(FlowError::from(e));
            Ok(screen.message("Not done", &text, status, back))
        }
    }
}

/// Runs one action for the signed-in person.
async fn act(
    state: &PagesState,
    p: &Principal,
    action: &str,
    form: &AccountForm,
    meta: &RequestMeta,
) -> Result<Done, IdentityError> {
    let identity = &state.identity;
    match action {
        "end-session" => {
            let session = form.session.parse().map_err(|_| IdentityError::NotFound)?;
            identity.revoke_session(p, session, meta).await?;
        }
        "end-other-sessions" => {
            identity.end_other_sessions(p, meta).await?;
        }
        "rename-factor" => {
            let factor = form.factor.parse().map_err(|_| IdentityError::NotFound)?;
            identity.rename_factor(p, factor, &form.label).await?;
        }
        "remove-factor" => {
            let factor = form.factor.parse().map_err(|_| IdentityError::NotFound)?;
            identity.remove_factor(p, factor, meta).await?;
        }
        "backup-codes" => {
            return Ok(Done::Codes(
                identity.regenerate_backup_codes(p, meta).await?,
            ));
        }
        "remove-identity" => {
            identity.unlink_identity(p, &form.provider, meta).await?;
        }
        "password" => {
            identity
                .change_password(p, &form.current_password, &form.new_password, meta)
                .await?;
        }
        _ => return Err(IdentityError::NotFound),
    }
    Ok(Done::Back)
}

/// New backup codes, shown this once (never cached).
fn show_codes(state: &PagesState, tenant: &LiveTenant, codes: BackupCodes) -> Response {
    let ctx = context! {
        title => "Your new backup codes",
        tenant => super::tenant_context(tenant),
        intro => "Your old backup codes no longer work. Save these somewhere safe: each one works once in place of a code from your app. They are shown only this once.",
        codes => codes.0,
        next => account_url(state, tenant),
    };
    let mut response = state
        .templates
        .render("backup_codes.html", StatusCode::OK, ctx);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
