//! Forward-auth's answers other than "allowed", built in one place: 401 with a Bearer
//! challenge, 403 (with an RFC 9470 step-up challenge when stronger sign-in would help), a
//! 302 to the sign-in or step-up page for browsers behind proxies that relay redirects, 403
//! for a client outside the tenant's network lists, 403 for a misconfigured auth URL and
//! 503 when a dependency is down. Bodies are problem+json,
//! which Traefik and Envoy relay to clients; every denial carries `nosniff`.

use super::decision::Refusal;
use super::reason::{DECISION_ID_HEADER, DecisionId, REASON_HEADER, Reason};
use crate::error::problem_response;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why forward-auth did not let a request through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No credential, or one that did not check out: 401 with a Bearer challenge (naming
    /// `invalid_token` when one was presented), or a 302 to sign in when the caller is a
    /// browser behind a proxy that relays redirects, or a 401 whose challenge names the
    /// sign-in URL behind a proxy that passes only 2xx, 401 and 403.
    Unauthenticated {
        /// The tenant's URL name (the challenge's realm).
        realm: String,
        /// The tenant's name for people (in the problem's detail).
        display_name: String,
        /// [`Reason::NoCredentials`], or why the presented credential was refused.
        reason: Reason,
        /// Where to send a browser, if anywhere, and how.
        sign_in: Option<SignIn>,
    },
    /// The identity does not meet the route's requirements: 403, or a 302 to `step_up`
    /// when stronger sign-in would help a browser behind a proxy that relays redirects.
    Forbidden {
        /// The tenant's URL name (the challenge's realm).
        realm: String,
        /// What is missing.
        refusal: Refusal,
        /// Where to send a browser instead, if anywhere.
        step_up: Option<String>,
    },
    /// The client's address is outside the tenant's `network.allow` list or inside its
    /// `network.deny` list: 403 `network_denied`, never a redirect (signing in from there
    /// is refused too), whatever credential was presented.
    NetworkDenied,
    /// The proxy's auth URL has requirements keygate cannot read (or names no live tenant):
    /// 403, never 5xx, so ingress-nginx does not show users a server error; logged once.
    Misconfigured,
    /// A dependency is down and the credential could not be checked: 503.
    Unavailable,
}

/// Where a browser signs in, and how the proxy lets us say so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignIn {
    /// A 302 to the URL (Traefik, Envoy, the Gateway API filter relay it).
    Redirect(String),
    /// A 401 whose challenge carries `sign_in_url="<URL>"`: NGINX Gateway Fabric turns any
    /// status but 2xx, 401 and 403 into a 500, and nginx's `auth_request` relays only the
    /// `WWW-Authenticate` header of a 401 to the client.
    Hint(String),
}

impl Denial {
    /// The stable reason word of this denial (`X-Keygate-Reason`).
    pub fn reason(&self) -> Reason {
        match self {
            Self::Unauthenticated { reason, .. } => *reason,
            Self::Forbidden { refusal, .. } => refusal.reason(),
            Self::NetworkDenied => Reason::IpDenied,
            Self::Misconfigured => Reason::Misconfigured,
            Self::Unavailable => Reason::Unavailable,
        }
    }

    /// The `outcome` label of the decisions counter.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Forbidden {
                refusal: Refusal::StepUp { .. },
                ..
            } => "step_up",
            Self::Forbidden { .. } => "forbidden",
            Self::NetworkDenied => "network_denied",
            Self::Misconfigured => "misconfigured",
            Self::Unavailable => "unavailable",
        }
    }
}

impl IntoResponse for Denial {
    fn into_response(self) -> Response {
        let mut response = match self {
            Self::Unauthenticated {
                sign_in: Some(SignIn::Redirect(location)),
                ..
            }
            | Self::Forbidden {
                step_up: Some(location),
                ..
            } => redirect(&location),
            Self::Unauthenticated {
                realm,
                display_name,
                reason,
                sign_in,
            } => {
                let hint = match &sign_in {
                    Some(SignIn::Hint(url)) => Some(url.as_str()),
                    _ => None,
                };
                unauthenticated(
                    &realm,
                    &display_name,
                    reason != Reason::NoCredentials,
                    hint,
                )
            }
            Self::Forbidden {
                realm,
                refusal,
                step_up: None,
            } => forbidden(&realm, &refusal),
            Self::NetworkDenied => {
                let mut response = problem_response(
                    StatusCode::FORBIDDEN,
                    "network_denied",
                    "Not allowed from this network",
                    Some("This tenant does not accept requests from the client's address".into()),
                );
                no_store(&mut response);
                response
            }
            Self::Misconfigured => problem_response(
                StatusCode::FORBIDDEN,
                "forward_auth_misconfigured",
                "Forward-auth is misconfigured",
                Some("The proxy's auth URL has requirements keygate cannot read; the gateway log names the problem".into()),
            ),
            Self::Unavailable => problem_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                None,
            ),
        };
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

/// The denial's answer with its reason and decision id (`X-Keygate-Reason`,
/// `X-Keygate-Decision-Id`), the form every adapter sends.
pub fn respond(denial: Denial, id: DecisionId) -> Response {
    let reason = denial.reason();
    let mut response = denial.into_response();
    let headers = response.headers_mut();
    headers.insert(REASON_HEADER, HeaderValue::from_static(reason.as_str()));
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        headers.insert(DECISION_ID_HEADER, v);
    }
    response
}

/// `s` without the characters that would end or break a quoted challenge parameter.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    no_store(&mut response);
    response
}

fn with_challenge(mut response: Response, challenge: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    no_store(&mut response);
    response
}

fn unauthenticated(
    realm: &str,
    display_name: &str,
    presented: bool,
    sign_in_hint: Option<&str>,
) -> Response {
    let mut challenge = format!("Bearer realm=\"{}\"", quote(realm));
    if presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    if let Some(url) = sign_in_hint {
        // An auth-param of our own (RFC 9110 §11.2 lets a scheme carry more): the one part
        // of the answer nginx's `auth_request` passes on to the client.
        challenge.push_str(&format!(", sign_in_url=\"{}\"", quote(url)));
    }
    let response = problem_response(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Authentication required",
        Some(format!(
            "Sign in to {display_name} or present a valid token or API key"
        )),
    );
    with_challenge(response, &challenge)
}

fn forbidden(realm: &str, refusal: &Refusal) -> Response {
    let detail = match refusal {
        Refusal::Method => "This method is not allowed on this route".to_owned(),
        Refusal::Insufficient(reason) => format!(
            "Missing {}",
            match reason {
                Reason::MissingRole => "role",
                Reason::MissingPermission => "permission",
                Reason::MissingScope => "scope",
                _ => "authentication strength",
            }
        ),
        Refusal::StepUp { .. } => "Sign in again with a stronger or more recent method".to_owned(),
    };
    let response = problem_response(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Forbidden",
        Some(detail),
    );
    match refusal {
        Refusal::StepUp {
            acr_values,
            max_age,
            ..
        } => {
            let mut c = format!(
                "Bearer realm=\"{}\", error=\"insufficient_user_authentication\", error_description=\"A stronger or more recent authentication is required\"",
                quote(realm)
            );
            if !acr_values.is_empty() {
                c.push_str(&format!(
                    ", acr_values=\"{}\"",
                    quote(&acr_values.join(" "))
                ));
            }
            if let Some(m) = max_age {
                c.push_str(&format!(", max_age={m}"));
            }
            with_challenge(response, &c)
        }
        _ => {
            let mut response = response;
            no_store(&mut response);
            response
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(r: &Response, name: header::HeaderName) -> Option<&str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    fn unauthenticated(presented: bool, sign_in: Option<&str>) -> Denial {
        Denial::Unauthenticated {
            realm: "acme".into(),
            display_name: "Acme Corp".into(),
            reason: if presented {
                Reason::TokenInvalid
            } else {
                Reason::NoCredentials
            },
            sign_in: sign_in.map(|s| SignIn::Redirect(s.to_owned())),
        }
    }

    #[test]
    fn no_credential_is_a_401_with_a_bare_challenge() {
        let r = unauthenticated(false, None).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE),
            Some("Bearer realm=\"acme\"")
        );
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
        assert_eq!(
            header(&r, header::CONTENT_TYPE),
            Some("application/problem+json")
        );
    }

    #[test]
    fn a_refused_credential_is_named_in_the_challenge() {
        let r = unauthenticated(true, None).into_response();
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE),
            Some("Bearer realm=\"acme\", error=\"invalid_token\"")
        );
    }

    #[test]
    fn browsers_are_sent_to_sign_in_with_a_302() {
        let d = unauthenticated(true, Some("https://gw/t/acme/signin?rd=x"));
        assert_eq!(d.outcome(), "unauthenticated");
        let r = d.into_response();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(
            header(&r, header::LOCATION),
            Some("https://gw/t/acme/signin?rd=x")
        );
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn behind_nginx_gateway_fabric_the_401_names_where_to_sign_in() {
        let d = Denial::Unauthenticated {
            realm: "acme".into(),
            display_name: "Acme Corp".into(),
            reason: Reason::SessionExpired,
            sign_in: Some(SignIn::Hint("https://gw/t/acme/signin?rd=x\"y".into())),
        };
        let r = d.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE),
            Some(
                "Bearer realm=\"acme\", error=\"invalid_token\", sign_in_url=\"https://gw/t/acme/signin?rd=xy\""
            )
        );
        assert!(r.headers().get(header::LOCATION).is_none());
    }

    #[test]
    fn missing_roles_are_a_403_without_a_challenge() {
        let d = Denial::Forbidden {
            realm: "acme".into(),
            refusal: Refusal::Insufficient(Reason::MissingRole),
            step_up: None,
        };
        assert_eq!(d.outcome(), "forbidden");
        let r = d.into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(header(&r, header::CACHE_CONTROL), Some("no-store"));
    }

    #[test]
    fn step_up_is_a_403_with_an_rfc_9470_challenge_or_a_302_for_browsers() {
        let refusal = Refusal::StepUp {
            acr_values: vec!["mfa".into()],
            max_age: Some(60),
            reason: Reason::MfaRequired,
        };
        let d = Denial::Forbidden {
            realm: "ac\"me".into(),
            refusal: refusal.clone(),
            step_up: None,
        };
        assert_eq!(d.outcome(), "step_up");
        let r = d.into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE),
            Some(
                "Bearer realm=\"acme\", error=\"insufficient_user_authentication\", error_description=\"A stronger or more recent authentication is required\", acr_values=\"mfa\", max_age=60"
            )
        );
        let r = Denial::Forbidden {
            realm: "acme".into(),
            refusal,
            step_up: Some("https://gw/t/acme/step-up?max_age=60".into()),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(
            header(&r, header::LOCATION),
            Some("https://gw/t/acme/step-up?max_age=60")
        );
    }

    #[test]
    fn misconfiguration_is_a_403_and_an_outage_a_503() {
        let r = Denial::Misconfigured.into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(Denial::Misconfigured.outcome(), "misconfigured");
        let r2 = Denial::Unavailable.into_response();
        assert_eq!(r2.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Denial::Unavailable.outcome(), "unavailable");
        for r in [r, r2] {
            assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
            assert_eq!(
                header(&r, header::CONTENT_TYPE),
                Some("application/problem+json")
            );
        }
    }
}
