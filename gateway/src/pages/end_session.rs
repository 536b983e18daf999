//! The OpenID Provider's end-session endpoint, `/t/{tenant}/end-session` (RP-initiated
//! logout): with an `id_token_hint` naming the browser's own session, the session ends and
//! the browser goes to the client's registered `post_logout_redirect_uri` (or the sign-in
//! page); without a hint the person is shown the sign-out page to confirm, so a third-party
//! page cannot sign anyone out.

use super::{Page, Pages, query_param};
use crate::error::ApiError;
use crate::identity::LogoutRequest;
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

const REFUSED: Page = Page {
    template: "message.html",
    title: "Cannot sign out",
};

/// `/t/{tenant}/end-session`, GET and form POST.
pub(super) fn router() -> axum::Router<crate::AppState> {
    axum::Router::new().route(
        "/t/{tenant}/end-session",
        axum::routing::get(end_session_get).post(end_session_post),
    )
}

/// RP-initiated logout parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct EndSessionParams {
    /// An ID token keygate issued to the client (expired ones are fine).
    pub id_token_hint: Option<String>,
    /// The client; must be the hint's audience when both are given.
    pub client_id: Option<String>,
    /// One of the client's `postLogoutRedirectUris`.
    pub post_logout_redirect_uri: Option<String>,
    /// Returned to the client.
    pub state: Option<String>,
}

/// RP-initiated logout (GET).
#[utoipa::path(get, path = "/t/{tenant}/end-session", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), EndSessionParams),
    responses((status = 302, description = "Signed out: to the registered post-logout URI (with `state`) or the sign-in page"),
        (status = 200, description = "No hint: the sign-out page asks the person to confirm"),
        (status = 400, description = "An HTML page: the hint is not an ID token of this tenant or the URI is not registered")))]
pub(crate) async fn end_session_get(
    state: Pages,
    name: TenantName,
    meta: Meta,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let params = EndSessionParams {
        id_token_hint: query_param(&q, "id_token_hint"),
        client_id: query_param(&q, "client_id"),
        post_logout_redirect_uri: query_param(&q, "post_logout_redirect_uri"),
        state: query_param(&q, "state"),
    };
    end_session(state, name, meta, params, jar).await
}

/// RP-initiated logout (form POST).
#[utoipa::path(post, path = "/t/{tenant}/end-session", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    request_body(content = EndSessionParams, content_type = "application/x-www-form-urlencoded"),
    responses((status = 302, description = "As for GET"), (status = 200, description = "As for GET: no hint, the sign-out page asks the person to confirm"), (status = 400, description = "As for GET")))]
pub(crate) async fn end_session_post(
    state: Pages,
    name: TenantName,
    meta: Meta,
    jar: CookieJar,
    form: Result<Form<EndSessionParams>, FormRejection>,
) -> Result<Response, ApiError> {
    let params = form.map(|Form(f)| f).unwrap_or_default();
    end_session(state, name, meta, params, jar).await
}

async fn end_session(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    params: EndSessionParams,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let request = LogoutRequest {
        id_token_hint: params.id_token_hint,
        client_id: params.client_id,
        post_logout_redirect_uri: params.post_logout_redirect_uri,
        state: params.state,
    };
    let logout = match state.identity.check_logout(&name, &request).await {
        Ok(l) => l,
        Err(crate::identity::IdentityError::InvalidRequest(why)) => {
            tracing::info!(reason = %why, "end-session request refused");
            return Ok(REFUSED.on(&state, &tenant).message(
                "Cannot sign out here",
                "The application's sign-out request could not be checked. You are still signed in; sign out from your account page.",
                StatusCode::BAD_REQUEST,
                None,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let session_cookie = state.session_cookie(&tenant);
    let cookie = jar.get(session_cookie.name()).map(|c| c.value().to_owned());
    let current = match &cookie {
        Some(c) => state
            .identity
            .resolve_from_session_cookie(&name, c)
            .await
            .ok()
            .and_then(|p| p.session_id()),
        None => None,
    };
    let Some(hinted) = logout.session else {
        // No hint: the person confirms on the sign-out page.
        return Ok(super::signin::SIGN_OUT
            .on(&state, &tenant)
            .fresh(jar, context! { rd => None::<String> })
            .await);
    };
    if current == Some(hinted)
        && let Some(c) = &cookie
        && let Err(e) = state.flows.sign_out(&tenant, c, &meta).await
    {
        tracing::warn!(error = %e, "end-session could not end the session");
        return Err(ApiError::Unavailable);
    }
    let target = logout
        .redirect
        .unwrap_or_else(|| signin_url(&state.public_url, tenant.name(), None));
    let jar = if current == Some(hinted) {
        jar.remove(session_cookie.removal())
    } else {
        jar
    };
    Ok((jar, Redirect::to(&target)).into_response())
}
