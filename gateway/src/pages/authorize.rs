//! The OpenID Provider's authorization endpoint, `/t/{tenant}/authorize` (GET and form POST,
//! as OpenID Connect Core §3.1.2.1 asks): checks the request with the identity service,
//! sends a browser without a fitting session through keygate's own sign-in page (which
//! returns here), and answers the client at its registered redirect URI with a code or an
//! error (with `iss`, RFC 9207), through the consent page (`consent`) when the person has
//! not approved what the client asks. A request whose client or redirect URI cannot be
//! trusted, or that is over its rate limit, is answered with a page, never a redirect.

use super::{Page, Pages, PagesState, query_param};
use crate::error::ApiError;
use crate::identity::{
    Authorization, AuthorizationError, AuthorizationRequest, AuthorizeRefusal, ConsentNeeded,
    LiveTenant, Principal, RequestMeta, SignInNeeded,
};
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

/// The page a refused request is shown on.
const REFUSED: Page = Page {
    template: "message.html",
    title: "Cannot sign in",
};

/// The query parameter the gateway adds to the return URL when it sends a browser to sign in
/// for `prompt=login` or `max_age`: the unix time of that redirect.
const SIGNED_IN_AFTER: &str = "kg_after";

/// `/t/{tenant}/authorize`, GET and form POST.
pub(super) fn router() -> axum::Router<crate::AppState> {
    axum::Router::new().route(
        "/t/{tenant}/authorize",
        axum::routing::get(authorize_get).post(authorize_post),
    )
}

/// Authorization request parameters (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeParams {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// A registered client of the tenant.
    pub client_id: Option<String>,
    /// One of the client's registered redirect URIs (exact; loopback with any port).
    pub redirect_uri: Option<String>,
    /// Space-separated scopes within the client's `allowedScopes` (`openid` by default).
    pub scope: Option<String>,
    /// Returned unchanged with the answer.
    pub state: Option<String>,
    /// Copied into the ID token.
    pub nonce: Option<String>,
    /// PKCE challenge (required of public clients).
    pub code_challenge: Option<String>,
    /// `S256`.
    pub code_challenge_method: Option<String>,
    /// `none`, `login` or `consent`.
    pub prompt: Option<String>,
    /// Seconds since the person last signed in actively.
    pub max_age: Option<String>,
    /// Address to prefill on the sign-in page.
    pub login_hint: Option<String>,
    /// Requested authentication context classes (recorded in the audit event).
    pub acr_values: Option<String>,
}

impl From<&AuthorizeParams> for AuthorizationRequest {
    fn from(p: &AuthorizeParams) -> Self {
        Self {
            response_type: p.response_type.clone(),
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scope: p.scope.clone(),
            state: p.state.clone(),
            nonce: p.nonce.clone(),
            code_challenge: p.code_challenge.clone(),
            code_challenge_method: p.code_challenge_method.clone(),
            prompt: p.prompt.clone(),
            max_age: p.max_age.clone(),
            login_hint: p.login_hint.clone(),
            acr_values: p.acr_values.clone(),
        }
    }
}

/// Authorization endpoint: a code at the client's redirect URI, or a sign-in first.
#[utoipa::path(get, path = "/t/{tenant}/authorize", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)"), AuthorizeParams),
    responses((status = 302, description = "To the client's redirect URI with `code`, `state` and `iss` (or `error`), or to the sign-in page, which returns here"),
        (status = 200, description = "An HTML page: the consent page, when the person has not approved these scopes for this client (or `prompt=consent`); it posts to `/t/{tenant}/authorize/consent`"),
        (status = 400, description = "An HTML page: the client is not registered or the redirect URI is not one of its own (never redirected)"),
        (status = 429, description = "An HTML page with `Retry-After`: the address or the client is over its `/authorize` budget (never redirected)"),
        (status = 404, description = "tenant_not_found", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn authorize_get(
    state: Pages,
    name: TenantName,
    meta: Meta,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let params: AuthorizeParams = q.as_deref().map(query_params).unwrap_or_default();
    let after = query_param(&q, SIGNED_IN_AFTER).and_then(|v| v.parse().ok());
    authorize(state, name, meta, params, after, jar).await
}

/// The same request as a form post.
#[utoipa::path(post, path = "/t/{tenant}/authorize", tag = "oauth2", params(("tenant" = String, Path, description = "Tenant name (its URL segment)")),
    request_body(content = AuthorizeParams, content_type = "application/x-www-form-urlencoded"),
    responses((status = 302, description = "As for GET"), (status = 200, description = "The consent page, as for GET"), (status = 400, description = "An HTML page, as for GET"), (status = 429, description = "An HTML page with `Retry-After`, as for GET")))]
pub(crate) async fn authorize_post(
    state: Pages,
    name: TenantName,
    meta: Meta,
    jar: CookieJar,
    form: Result<Form<AuthorizeParams>, FormRejection>,
) -> Result<Response, ApiError> {
    let params = form.map(|Form(f)| f).unwrap_or_default();
    authorize(state, name, meta, params, None, jar).await
}

/// Parameters from a query string; a repeated parameter keeps its first value and unknown
/// ones are ignored (OpenID Connect Core §3.1.2.1 says to ignore them).
fn query_params(q: &str) -> AuthorizeParams {
    let mut p = AuthorizeParams::default();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let slot = match k.as_ref() {
            "response_type" => &mut p.response_type,
            "client_id" => &mut p.client_id,
            "redirect_uri" => &mut p.redirect_uri,
            "scope" => &mut p.scope,
            "state" => &mut p.state,
            "nonce" => &mut p.nonce,
            "code_challenge" => &mut p.code_challenge,
            "code_challenge_method" => &mut p.code_challenge_method,
            "prompt" => &mut p.prompt,
            "max_age" => &mut p.max_age,
            "login_hint" => &mut p.login_hint,
            "acr_values" => &mut p.acr_values,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    p
}

async fn authorize(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    params: AuthorizeParams,
    signed_in_after: Option<i64>,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let request = AuthorizationRequest::from(&params);
    let auth = match state
        .identity
        .check_authorization(&name, &request, &meta)
        .await
    {
        Ok(auth) => auth,
        Err(refusal) => return Ok(refused(&state, &tenant, refusal)),
    };
    let person = match jar.get(state.session_cookie(&tenant).name()) {
        Some(c) => state
            .identity
            .resolve_from_session_cookie(&name, c.value())
            .await
            .ok(),
        None => None,
    };
    let now = state.identity.clock().now();
    match auth.sign_in_needed(person.as_ref(), signed_in_after, now) {
        SignInNeeded::No => {}
        SignInNeeded::LoginRequired => {
            return Ok(refused(
                &state,
                &tenant,
                auth.refuse("login_required", "the person must sign in"),
            ));
        }
        SignInNeeded::Yes => {
            let fresh = person.is_some() || auth.prompt.login || auth.max_age.is_some();
            return Ok(to_sign_in(
                &state,
                &tenant,
                &params,
                fresh.then_some(now.timestamp()),
                auth.prompt.login || person.is_some(),
            ));
        }
    }
    let Some(person) = person else {
        return Ok(to_sign_in(&state, &tenant, &params, None, false));
    };
    match state.identity.consent_needed(&tenant, &auth, &person).await {
        Ok(ConsentNeeded::No) => {}
        Ok(ConsentNeeded::Ask) => {
            return Ok(super::consent::ask(&state, &tenant, jar, &auth, &person).await);
        }
        Err(refusal) => return Ok(refused(&state, &tenant, refusal)),
    }
    Ok(issue_and_return(&state, &tenant, &auth, &person, &meta).await)
}

/// Issues the code of `auth` for `person` and sends the browser back to the client with it
/// (`code`, `state`, `iss`), or with the refusal.
pub(super) async fn issue_and_return(
    state: &PagesState,
    tenant: &LiveTenant,
    auth: &Authorization,
    person: &Principal,
    meta: &RequestMeta,
) -> Response {
    match state
        .identity
        .issue_authorization_code(tenant.name(), auth, person, meta)
        .await
    {
        Ok(code) => {
            let mut answer = url_with(&auth.redirect_uri);
            if let Some(u) = answer.as_mut() {
                let mut pairs = u.query_pairs_mut();
                pairs.append_pair("code", &code);
                if let Some(s) = &auth.state {
                    pairs.append_pair("state", s);
                }
                pairs.append_pair("iss", &tenant.issuer);
            }
            match answer {
                Some(u) => no_store(Redirect::to(u.as_str()).into_response()),
                None => ApiError::Unavailable.into_response(),
            }
        }
        Err(refusal) => refused(state, tenant, refusal),
    }
}

fn url_with(base: &str) -> Option<url::Url> {
    url::Url::parse(base).ok()
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The sign-in page, returning to this request; `after` marks the return URL (see
/// `SIGNED_IN_AFTER`) and `again` makes the page ask for the password even if the browser is
/// signed in.
fn to_sign_in(
    state: &PagesState,
    tenant: &LiveTenant,
    params: &AuthorizeParams,
    after: Option<i64>,
    again: bool,
) -> Response {
    let mut back = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", &params.response_type),
        ("client_id", &params.client_id),
        ("redirect_uri", &params.redirect_uri),
        ("scope", &params.scope),
        ("state", &params.state),
        ("nonce", &params.nonce),
        ("code_challenge", &params.code_challenge),
        ("code_challenge_method", &params.code_challenge_method),
        ("max_age", &params.max_age),
        ("login_hint", &params.login_hint),
        ("acr_values", &params.acr_values),
    ] {
        if let Some(v) = v {
            back.append_pair(k, v);
        }
    }
    // `prompt=login` is satisfied by the sign-in this redirect asks for; the mark says so.
    if let Some(p) = params.prompt.as_deref() {
        let rest: Vec<&str> = p.split_whitespace().filter(|p| *p != "login").collect();
        if !rest.is_empty() {
            back.append_pair("prompt", &rest.join(" "));
        }
    }
    if let Some(after) = after {
        back.append_pair(SIGNED_IN_AFTER, &after.to_string());
    }
    let back = format!(
        "{}/t/{}/authorize?{}",
        state.public_url,
        tenant.name(),
        back.finish()
    );
    let mut target = signin_url(&state.public_url, tenant.name(), Some(&back));
    if again {
        target.push_str("&prompt=login");
    }
    if let Some(hint) = &params.login_hint {
        target.push_str("&login_hint=");
        target.extend(form_urlencoded::byte_serialize(hint.as_bytes()));
    }
    no_store(Redirect::to(&target).into_response())
}

/// A refusal: a page when nothing can be trusted or the request is over its rate limit,
/// else the client's redirect URI with `error`, `error_description`, `state` and `iss`.
pub(super) fn refused(
    state: &PagesState,
    tenant: &LiveTenant,
    refusal: AuthorizeRefusal,
) -> Response {
    match refusal {
        AuthorizeRefusal::RateLimited { retry_after } => {
            let mut page = REFUSED.on(state, tenant).message(
                "Too many requests",
                "Too many sign-in requests came from your network or for this application. Wait a minute and try again.",
                StatusCode::TOO_MANY_REQUESTS,
                None,
            );
            page.headers_mut()
                .insert(header::RETRY_AFTER, retry_after.as_secs().max(1).into());
            no_store(page)
        }
        AuthorizeRefusal::NoRedirect(text) => {
            REFUSED
                .on(state, tenant)
                .message("Cannot sign in", text, StatusCode::BAD_REQUEST, None)
        }
        AuthorizeRefusal::ToClient(e) => match error_url(&e, &tenant.issuer) {
            Some(u) => no_store(Redirect::to(&u).into_response()),
            None => ApiError::Unavailable.into_response(),
        },
    }
}

fn error_url(e: &AuthorizationError, issuer: &str) -> Option<String> {
    let mut u = url_with(&e.redirect_uri)?;
    {
        let mut pairs = u.query_pairs_mut();
        pairs.append_pair("error", e.error);
        pairs.append_pair("error_description", &e.description);
        if let Some(s) = &e.state {
            pairs.append_pair("state", s);
        }
        pairs.append_pair("iss", issuer);
    }
    Some(u.into())
}
