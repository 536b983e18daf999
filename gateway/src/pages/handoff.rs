//! Browser sign-in for apps on other hosts (see `identity::handoff`): the reserved path
//! [`HANDOFF_PATH`] every protected host routes to the gateway, where to send a browser once
//! it is signed in, and the account page a sign-in without a return URL lands on.
//!
//! ```text
//! app host: GET /.keygate/callback?tenant&rd   → nonce cookie (app host) → 302 sign-in?rd&handoff=sha256(nonce)
//! gateway:  sign-in (or already signed in)      → 302 app host /.keygate/callback?tenant&code
//! app host: GET /.keygate/callback?code         → child cookie (app host), nonce cleared → 302 rd
//! ```

use super::account::ACCOUNT;
use super::{Pages, PagesState, checked_rd, query_param};
use crate::error::ApiError;
use crate::identity::{HandoffTarget, IdentityError, LiveTenant, nonce_hash};
use crate::meta::Meta;
use crate::return_url::{
    authority, handoff_callback_url, handoff_start_url, needs_handoff, signin_url,
};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use keygate_core::crypto::random::random_token;

/// How long a browser may take to sign in before the app host's nonce cookie is gone.
const NONCE_MAX_AGE: cookie::time::Duration = cookie::time::Duration::minutes(15);

/// The `handoff` parameter of the sign-in page if it is a nonce hash; anything else is dropped.
pub(super) fn checked_handoff(raw: Option<String>) -> Option<String> {
    raw.filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The host a request was sent to, as the browser named it (`Host`, or the HTTP/2 authority).
fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .map(|h| h.to_ascii_lowercase())
}

/// Where a signed-in browser goes next: the account page without a return URL; the return
/// URL itself on the gateway's host or a host under the tenant's cookie domain (the session
/// cookie reaches both); on another host, the handoff (a code for the app host
/// when its nonce hash came along, else the app host's handoff path to set the nonce first).
pub(super) async fn onwards(
    state: &PagesState,
    tenant: &LiveTenant,
    session_cookie: &str,
    rd: Option<String>,
    handoff: Option<String>,
) -> Response {
    let Some(rd) = rd else {
        let account = format!("{}/t/{}/account", state.public_url, tenant.name());
        return Redirect::to(&account).into_response();
    };
    if !needs_handoff(
        &rd,
        &state.public_url,
        tenant.settings.sessions.cookie_domain.as_deref(),
    ) {
        return Redirect::to(&rd).into_response();
    }
    let (Some(nonce_hash), Some(host)) = (handoff, authority(&rd)) else {
        return match handoff_start_url(&rd, tenant.name()) {
            Some(start) => Redirect::to(&start).into_response(),
            None => Redirect::to(&rd).into_response(),
        };
    };
    let target = HandoffTarget {
        host,
        return_url: rd.clone(),
        nonce_hash,
    };
    let code = match state
        .identity
        .issue_handoff(tenant, session_cookie, &target)
        .await
    {
        Ok(code) => code,
        Err(
            IdentityError::InvalidToken
            | IdentityError::ExpiredToken
            | IdentityError::RevokedToken
            | IdentityError::InvalidRequest(_),
        ) => {
            let again = signin_url(&state.public_url, tenant.name(), Some(&rd));
            return Redirect::to(&again).into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot issue a handoff code");
            return ApiError::Unavailable.into_response();
        }
    };
    match handoff_callback_url(&rd, tenant.name(), &code) {
        Some(callback) => no_store(Redirect::to(&callback).into_response()),
        None => ApiError::Unavailable.into_response(),
    }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /.keygate/callback` on an app host: with `code`, redeems it; with `tenant` and `rd`,
/// starts the handoff.
pub(super) async fn callback(
    State(state): Pages,
    Meta(meta): Meta,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state
        .live(&query_param(&q, "tenant").unwrap_or_default())
        .await?;
    let host = request_host(&headers, &uri).unwrap_or_default();
    let screen = ACCOUNT.on(&state, &tenant);
    let again = Some((
        "Sign in again",
        signin_url(&state.public_url, tenant.name(), None),
    ));
    let nonce_name = state.cookies.handoff_nonce_cookie();
    if let Some(code) = query_param(&q, "code") {
        let nonce = jar.get(nonce_name).map(|c| c.value().to_owned());
        let done = state
            .identity
            .redeem_handoff(&code, &host, nonce.as_deref(), &meta)
            .await;
        return Ok(match done {
            Ok(session) => {
                let mut cookie = state
                    .cookies
                    .cookie(state.cookies.host_session_cookie(), session.cookie_value);
                cookie.set_max_age(cookie::time::Duration::seconds(
                    i64::try_from(session.max_age.as_secs()).unwrap_or(i64::MAX),
                ));
                let jar = jar
                    .remove(state.cookies.cookie(nonce_name, String::new()))
                    .add(cookie);
                no_store((jar, Redirect::to(&session.return_url)).into_response())
            }
            Err(IdentityError::InvalidLink) => screen.message(
                "Sign-in link expired",
                "This sign-in link was already used, has expired, or belongs to another browser or site.",
                StatusCode::BAD_REQUEST,
                again,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot redeem a handoff code");
                ApiError::Unavailable.into_response()
            }
        });
    }
    let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    let Some(rd) = rd.filter(|rd| authority(rd).as_deref() == Some(host.as_str())) else {
        return Ok(screen.message(
            "Cannot sign in here",
            "This address does not lead back to a site of this organisation.",
            StatusCode::BAD_REQUEST,
            again,
        ));
    };
    let nonce = random_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut target = signin_url(&state.public_url, tenant.name(), Some(&rd));
    target.push_str("&handoff=");
    target.push_str(&nonce_hash(&nonce));
    let mut cookie = state.cookies.cookie(nonce_name, nonce);
    cookie.set_max_age(NONCE_MAX_AGE);
    Ok(no_store(
        (jar.add(cookie), Redirect::to(&target)).into_response(),
    ))
}
