//! The facts about a request that workflows record (rate limits, audit rows, session
//! records): the client address by the one rule of [`crate::client_addr`], the request id
//! of [`crate::request_id`] and the user agent. A leaf module: the JSON routes and the sign-in pages both use it.

use crate::AppState;
use crate::client_addr::{client_addr, peer};
use crate::identity::RequestMeta;
use crate::request_id::RequestId;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

/// The client address ([`client_addr`]), request id and user agent of a request: what the
/// JSON routes and the sign-in pages hand to every workflow.
#[derive(Debug, Clone)]
pub struct Meta(pub RequestMeta);

impl FromRequestParts<AppState> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(RequestMeta {
            ip: client_addr(
                peer(&parts.extensions),
                &parts.headers,
                &state.trusted_proxies,
            ),
            // The id `request_id::tag` settled (a trusted proxy's, or a fresh one), never
            // the client's header as sent.
            request_id: parts
                .extensions
                .get::<RequestId>()
                .map(|id| id.0.to_string()),
            user_agent: header_str(&parts.headers, header::USER_AGENT.as_str())
                .map(|v| v.chars().take(512).collect()),
        }))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}
