//! Sign-in through an upstream provider: the start (a link from the sign-in page: sets the
//! cookie that binds the answer to this browser, then sends it to the provider) and the
//! callback (the provider's answer: signs in and sends the browser on, or to the sign-in
//! form to claim a link to an existing account, or shows plainly why it was refused). A SAML
//! IdP answers at the assertion consumer service (`acs`, a form POST from the IdP's page, so
//! no CSRF token: the signed assertion, its `InResponseTo` and the binding cookie are the
//! proof), and keygate's service-provider metadata is served for the IdP's administrator.

use super::handoff::{checked_handoff, onwards};
use super::second_factor::signed_in;
use super::signin::SIGN_IN;
use super::{Pages, checked_rd, query_param};
use crate::error::{ApiError, federation_parts};
use crate::identity::{FederatedOutcome, FlowError, STATE_TTL, SsoCallback, SsoStart};
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::{Path, Query, RawForm, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};

/// `GET /t/{tenant}/sso/{provider}/start?rd=…&fresh=1` (a sign-in), or `…&step_up=1` (the
/// signed-in person proves themselves again at the provider they are linked to; a browser
/// not signed in is sent to sign in).
pub(super) async fn start(
    State(state): Pages,
    TenantName(name): TenantName,
    Path((_, provider)): Path<(String, String)>,
    Meta(meta): Meta,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let return_to = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    let step_up = if query_param(&q, "step_up").is_some_and(|f| f == "1") {
        match signed_in(&state, &tenant, &jar).await {
            Some((principal, _)) => Some(principal),
            None => {
                let target = signin_url(&state.public_url, tenant.name(), return_to.as_deref());
                return Ok(Redirect::to(&target).into_response());
            }
        }
    } else {
        None
    };
    let start = SsoStart {
        provider,
        return_to,
        fresh: query_param(&q, "fresh").is_some_and(|f| f == "1"),
        handoff: checked_handoff(query_param(&q, "handoff")),
        step_up,
    };
    match state.flows.sso_start(&tenant, start, &meta).await {
        Ok(started) => {
            let cookie = if started.cross_site_post {
                state
                    .cookies
                    .sso_binding_cross_site(started.binding, STATE_TTL)
            } else {
                state.cookies.sso_binding(started.binding, STATE_TTL)
            };
            Ok((jar.add(cookie), Redirect::to(&started.redirect)).into_response())
        }
        Err(e) => Ok(refused(&state, &tenant, e)),
    }
}

/// `GET /t/{tenant}/sso/{provider}/callback?code=…&state=…` (or `error=…`).
pub(super) async fn callback(
    State(state): Pages,
    TenantName(name): TenantName,
    Path((_, provider)): Path<(String, String)>,
    Meta(meta): Meta,
    Query(answer): Query<SsoCallback>,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    finish(state, name, provider, meta, answer, jar).await
}

/// `POST /t/{tenant}/sso/{provider}/acs` with `SAMLResponse` and `RelayState` (HTTP-POST
/// binding).
pub(super) async fn acs(
    State(state): Pages,
    TenantName(name): TenantName,
    Path((_, provider)): Path<(String, String)>,
    Meta(meta): Meta,
    jar: CookieJar,
    RawForm(form): RawForm,
) -> Result<Response, ApiError> {
    let mut answer = SsoCallback::default();
    for (key, value) in form_urlencoded::parse(&form) {
        match key.as_ref() {
            "SAMLResponse" => answer.saml_response = Some(value.into_owned()),
            "RelayState" => answer.state = Some(value.into_owned()),
            _ => {}
        }
    }
    finish(state, name, provider, meta, answer, jar).await
}

/// `GET /t/{tenant}/sso/{provider}/saml/metadata`: keygate's SAML service-provider metadata.
pub(super) async fn saml_metadata(
    State(state): Pages,
    TenantName(name): TenantName,
    Path((_, provider)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    match state.flows.saml_metadata(&tenant, &provider).await {
        Ok(xml) => Ok((
            [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
            xml,
        )
            .into_response()),
        Err(e) => Ok(refused(&state, &tenant, e)),
    }
}

/// The provider's answer, from the callback or the assertion consumer service.
async fn finish(
    state: std::sync::Arc<super::PagesState>,
    name: String,
    provider: String,
    meta: crate::identity::RequestMeta,
    answer: SsoCallback,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let binding_name = state.cookies.sso_binding_cookie();
    let binding = jar.get(binding_name).map(|c| c.value().to_owned());
    let finished = state
        .flows
        .sso_finish(&tenant, &provider, answer, binding.as_deref(), &meta)
        .await;
    // The binding has done its work, whatever the outcome.
    let jar = jar.remove(Cookie::build(binding_name).path("/"));
    let finished = match finished {
        Ok(f) => f,
        Err(e) => return Ok((jar, refused(&state, &tenant, e)).into_response()),
    };
    match finished.outcome {
        FederatedOutcome::SignedIn(session) => {
            let cookie = state
                .session_cookie(&tenant)
                .issue(session.cookie_value.clone(), session.max_age);
            let next = onwards(
                &state,
                &tenant,
                &session.cookie_value,
                finished.return_to,
                finished.handoff,
            )
            .await;
            Ok((jar.add(cookie), next).into_response())
        }
        FederatedOutcome::SteppedUp => {
            // The session this browser holds was raised; it goes on with the same cookie.
            let session = jar
                .get(state.session_cookie(&tenant).name())
                .map(|c| c.value().to_owned());
            let next = match session {
                Some(cookie) => {
                    onwards(
                        &state,
                        &tenant,
                        &cookie,
                        finished.return_to,
                        finished.handoff,
                    )
                    .await
                }
                None => {
                    let target = signin_url(
                        &state.public_url,
                        tenant.name(),
                        finished.return_to.as_deref(),
                    );
                    Redirect::to(&target).into_response()
                }
            };
            Ok((jar, next).into_response())
        }
        FederatedOutcome::LinkRequired { link_token } => {
            let mut url = format!(
                "{}/t/{}/signin?link={}",
                state.public_url,
                tenant.name(),
                urlencode(&link_token)
            );
            if let Some(rd) = finished.return_to {
                url.push_str("&rd=");
                url.push_str(&urlencode(&rd));
            }
            Ok((jar, Redirect::to(&url)).into_response())
        }
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The message page of a refused upstream sign-in, with a way back to the sign-in page.
fn refused(
    state: &super::PagesState,
    tenant: &crate::identity::LiveTenant,
    e: FlowError,
) -> Response {
    // A browser (or a script) told how long to wait does not hammer the start link.
    let retry_after = match &e {
        FlowError::Locked(after) => Some(after.as_secs().max(1)),
        _ => None,
    };
    let (title, text, status) = match e {
        FlowError::Upstream(r) => {
            let (status, _, title) = federation_parts(&r);
            (title.to_owned(), r.to_string(), status)
        }
        FlowError::UnknownProvider => (
            "Unknown sign-in option".to_owned(),
            "This organisation has no such sign-in option.".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        FlowError::AlreadyLinked => (
            "Already linked".to_owned(),
            "This account from your identity provider is already linked to another account here, or your account here is already linked to another one of that provider.".to_owned(),
            StatusCode::CONFLICT,
        ),
        other => {
            let (_, text, status) = super::refusal(other);
            ("Sign-in failed".to_owned(), text, status)
        }
    };
    let back = format!("{}/t/{}/signin", state.public_url, tenant.name());
    let mut page =
        SIGN_IN
            .on(state, tenant)
            .message(&title, &text, status, Some(("Back to sign-in", back)));
    if let Some(secs) = retry_after {
        page.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    page
}
