//! `GET /t/{tenant}/account`: the account page of the person signed in on this browser —
//! their sessions, second factors (authenticator apps, passkeys and security keys), backup
//! codes, linked identity providers and a password change, each with its form (the actions
//! are in `account_actions`). A browser that is not signed in is sent to sign in, which
//! lands on this page.

use super::second_factor::signed_in;
use super::{Page, Pages, PagesState};
use crate::error::ApiError;
use crate::identity::{ACR_MFA, LiveTenant, Principal, STEP_UP_FRESHNESS};
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use minijinja::{Value, context};

/// The account page.
pub(super) const ACCOUNT: Page = Page {
    template: "account.html",
    title: "Your account",
};

/// The account page's address on this gateway.
pub(super) fn account_url(state: &PagesState, tenant: &LiveTenant) -> String {
    format!("{}/t/{}/account", state.public_url, tenant.name())
}

/// The step-up page asking for `acr`, coming back to the account page.
pub(super) fn step_up_url(state: &PagesState, tenant: &LiveTenant, acr: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("acr_values", acr)
        .append_pair("max_age", &STEP_UP_FRESHNESS.num_seconds().to_string())
        .append_pair("rd", &account_url(state, tenant))
        .finish();
    format!("/t/{}/step-up?{query}", tenant.name())
}

/// `GET /t/{tenant}/account`.
pub(super) async fn account(
    State(state): Pages,
    TenantName(name): TenantName,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let Some((principal, _)) = signed_in(&state, &tenant, &jar).await else {
        // Signing in without a return URL lands on this page.
        let signin = signin_url(&state.public_url, tenant.name(), None);
        return Ok(Redirect::to(&signin).into_response());
    };
    let extra = overview(&state, &tenant, &principal).await?;
    Ok(ACCOUNT.on(&state, &tenant).fresh(jar, extra).await)
}

/// What the page lists of the account.
async fn overview(
    state: &PagesState,
    tenant: &LiveTenant,
    p: &Principal,
) -> Result<Value, ApiError> {
    let identity = &state.identity;
    let sessions = identity.list_sessions(p).await?;
    let mfa = identity.mfa_status(p).await?;
    let linked = identity.linked_identities(p).await?;
    let others = sessions.iter().filter(|s| !s.current).count();
    let sessions: Vec<Value> = sessions
        .into_iter()
        .map(|s| {
            context! {
                id => s.id.to_string(),
                device => s.user_agent.unwrap_or_else(|| "Unknown device".into()),
                address => s.ip.unwrap_or_default(),
                created => s.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                last_seen => s.last_seen_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                current => s.current,
            }
        })
        .collect();
    let confirmed: Vec<_> = mfa.factors.iter().filter(|f| f.confirmed).collect();
    let factors: Vec<Value> = confirmed
        .iter()
        .map(|f| {
            context! {
                id => f.id.to_string(),
                kind => if f.kind == "webauthn" { "Passkey or security key" } else { "Authenticator app" },
                label => f.label.clone(),
                added => f.created_at.format("%Y-%m-%d").to_string(),
            }
        })
        .collect();
    let identities: Vec<Value> = linked
        .into_iter()
        .map(|l| {
            context! {
                provider => l.provider,
                display_name => l.display_name,
                linked => l.linked_at.format("%Y-%m-%d").to_string(),
            }
        })
        .collect();
    Ok(context! {
        email => p.email.clone(),
        sessions,
        others,
        factors,
        mfa_on => mfa.policy != "off",
        // The step-up page enrols a first authenticator when asked for two-step verification.
        add_authenticator => (mfa.policy != "off" && confirmed.is_empty())
            .then(|| step_up_url(state, tenant, ACR_MFA)),
        backup_codes_remaining => mfa.backup_codes_remaining,
        has_factors => !confirmed.is_empty(),
        identities,
    })
}
