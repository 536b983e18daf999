//! How the gateway names and flags its browser cookies: the session cookie (set by the
//! sign-in page and the JSON sign-in, read by forward-auth and the routes), an app host's
//! cookie and nonce from the handoff (`/.keygate/callback`), and the pages' CSRF binding
//! cookie. A leaf module every adapter may use.

use axum_extra::extract::cookie::{Cookie, SameSite};

/// How the session cookie is named and flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieMode {
    /// `__Host-keygate_session`, Secure, HttpOnly, SameSite=Lax, Path=/: production.
    Host,
    /// `keygate_session` without Secure, for `keygate dev` on plain HTTP only.
    PlainHttpDev,
}

impl CookieMode {
    /// The session cookie's name.
    pub fn session_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_session",
            Self::PlainHttpDev => "keygate_session",
        }
    }

    /// The name of an app host's cookie from the handoff (a child of a session, set on the
    /// app host by `/.keygate/callback`).
    pub fn host_session_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_app_session",
            Self::PlainHttpDev => "keygate_app_session",
        }
    }

    /// The name of the handoff's nonce cookie, set on the app host before the browser
    /// leaves for sign-in and checked when the code comes back.
    pub fn handoff_nonce_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_handoff",
            Self::PlainHttpDev => "keygate_handoff",
        }
    }

    /// The CSRF binding cookie's name.
    pub fn csrf_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_csrf",
            Self::PlainHttpDev => "keygate_csrf",
        }
    }

    /// Whether cookies carry `Secure`.
    pub fn secure(self) -> bool {
        self == Self::Host
    }

    /// A cookie called `name` with the flags every keygate cookie has (Path=/, HttpOnly,
    /// SameSite=Lax, and Secure unless in plain-HTTP dev mode).
    pub(crate) fn cookie(self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure())
            .same_site(SameSite::Lax)
            .build()
    }
}
