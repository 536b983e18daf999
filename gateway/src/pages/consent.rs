//! The OpenID Provider's consent page: shown by `/t/{tenant}/authorize` when the signed-in
//! person has not approved what a client asks (see `identity::consent`), answered by a form
//! post to `/t/{tenant}/authorize/consent` (CSRF-checked like every form). Approve issues
//! the code and returns to the client; Deny returns `access_denied` to the client.

use super::authorize::{issue_and_return, refused};
use super::{Page, Pages, PagesState, csrf_ok};
use crate::error::ApiError;
use crate::identity::{Authorization, ConsentPrompt, LiveTenant, Principal, RequestMeta};
use crate::meta::Meta;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use minijinja::context;
use serde::Deserialize;

const CONSENT: Page = Page {
    template: "consent.html",
    title: "Allow access?",
};

/// `/t/{tenant}/authorize/consent`, the consent form's answer.
pub(super) fn router() -> axum::Router<crate::AppState> {
    axum::Router::new().route(
        "/t/{tenant}/authorize/consent",
        axum::routing::post(consent_submit),
    )
}

#[derive(Deserialize, Default)]
pub(super) struct ConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    action: String,
}

/// What a scope lets the client do, in words a person reads on the page.
fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are".into(),
        "profile" => "See your name".into(),
        "email" => "See your email address".into(),
        "groups" => "See your groups".into(),
        "offline_access" => "Stay signed in when you are away".into(),
        other => format!("Act with your permission {other}"),
    }
}

/// Puts the request aside and shows the consent page for it.
pub(super) async fn ask(
    state: &PagesState,
    tenant: &LiveTenant,
    jar: CookieJar,
    auth: &Authorization,
    person: &Principal,
) -> Response {
    match state.identity.begin_consent(tenant, auth, person).await {
        Ok(ConsentPrompt {
            ticket,
            client_name,
            scopes,
            ..
        }) => {
            let scopes: Vec<_> = scopes
                .iter()
                .map(|s| context! { scope => s, text => describe(s) })
                .collect();
            CONSENT
                .on(state, tenant)
                .fresh(jar, context! { ticket, client_name, scopes })
                .await
        }
        Err(refusal) => refused(state, tenant, refusal),
    }
}

async fn consent_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let screen = CONSENT.on(&state, &tenant);
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen.message(
            "Cannot continue",
            "This form expired or was opened in another browser. Go back to the application and sign in again.",
            StatusCode::FORBIDDEN,
            None,
        ));
    }
    let person = match jar.get(state.session_cookie(&tenant).name()) {
        Some(c) => state
            .identity
            .resolve_from_session_cookie(&name, c.value())
            .await
            .ok(),
        None => None,
    };
    let Some(person) = person else {
        return Ok(screen.message(
            "Signed out",
            "You are no longer signed in. Go back to the application and sign in again.",
            StatusCode::UNAUTHORIZED,
            None,
        ));
    };
    let approve = match form.action.as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            return Ok(screen.message(
                "Cannot continue",
                "Choose Approve or Deny.",
                StatusCode::BAD_REQUEST,
                None,
            ));
        }
    };
    Ok(decided(&state, &tenant, &form.ticket, approve, &person, &meta).await)
}

/// The answer: the code at the client's redirect URI, or the refusal.
async fn decided(
    state: &PagesState,
    tenant: &LiveTenant,
    ticket: &str,
    approve: bool,
    person: &Principal,
    meta: &RequestMeta,
) -> Response {
    match state
        .identity
        .decide_consent(tenant, ticket, approve, person, meta)
        .await
    {
        Ok(auth) => issue_and_return(state, tenant, &auth, person, meta).await,
        Err(refusal) => refused(state, tenant, refusal),
    }
}
