//! How the gateway names and flags its browser cookies: the session cookie (set by the
//! sign-in page and the JSON sign-in, read by forward-auth and the routes; host-only, or
//! shared with a parent domain when the tenant opts in), an app host's cookie and nonce from
//! the handoff (`/.keygate/callback`), the pages' CSRF binding cookie, and the device cookie
//! (proof that a browser signed in to an account before; `identity/device.rs`). A leaf
//! module every adapter may use.

use std::borrow::Cow;

use axum_extra::extract::cookie::{Cookie, SameSite};
use keygate_core::tenant_settings::cookie_domain;

/// Each tenant's session cookie on this gateway: the mode, and the gateway's public host
/// (parsed once) that a shared cookie domain must contain. Routes, forward-auth and the pages
/// share one.
#[derive(Clone, Debug)]
pub struct SessionCookies {
    mode: CookieMode,
    public_host: std::sync::Arc<str>,
}

impl SessionCookies {
    /// Cookies named and flagged by `mode` for a gateway served at `public_url`.
    pub fn new(mode: CookieMode, public_url: &str) -> Self {
        Self {
            mode,
            public_host: cookie_domain::public_host(public_url).into(),
        }
    }

    /// The session cookie of `tenant`, whose settings name `domain` (`sessions.cookieDomain`).
    pub fn of(&self, tenant: &str, domain: Option<&str>) -> SessionCookie {
        self.mode.session(tenant, domain, &self.public_host)
    }
}

/// How the session cookie is named and flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieMode {
    /// `__Host-keygate_session`, Secure, HttpOnly, SameSite=Lax, Path=/: production.
    Host,
    /// `keygate_session` without Secure, for `keygate dev` on plain HTTP only.
    PlainHttpDev,
}

impl CookieMode {
    /// The host-only session cookie's name (tenants without `sessions.cookieDomain`).
    fn host_session_name(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_session",
            Self::PlainHttpDev => "keygate_session",
        }
    }

    /// The session cookie of `tenant`, whose settings name `domain` (`sessions.cookieDomain`),
    /// on a gateway whose public host is `public_host`. A domain that does not contain it
    /// (the operator refuses such a Tenant; a gateway with another public URL than the
    /// operator's could still meet one) is ignored: browsers would drop that cookie and every
    /// sign-in would loop, while the host-only cookie and the handoff keep working.
    pub fn session(self, tenant: &str, domain: Option<&str>, public_host: &str) -> SessionCookie {
        let domain = domain
            .filter(|d| cookie_domain::covers(d, public_host))
            .map(str::to_owned);
        let name = match (&domain, self) {
            (None, mode) => Cow::Borrowed(mode.host_session_name()),
            // `__Host-` forbids `Domain`; `__Secure-` still makes browsers refuse the cookie
            // from plain HTTP. Per tenant, so two tenants sharing a domain never overwrite
            // each other's cookie.
            (Some(_), Self::Host) => Cow::Owned(format!("__Secure-keygate_session_{tenant}")),
            (Some(_), Self::PlainHttpDev) => Cow::Owned(format!("keygate_session_{tenant}")),
        };
        SessionCookie {
            mode: self,
            name,
            domain,
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

    /// The device cookie's name: host-only on the gateway, where people sign in.
    pub fn device_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_device",
            Self::PlainHttpDev => "keygate_device",
        }
    }

    /// The device cookie carrying `value` (the identity service's merged token list) for
    /// `max_age` (a device token's lifetime).
    pub fn device(self, value: String, max_age: std::time::Duration) -> Cookie<'static> {
        let mut cookie = self.cookie(self.device_cookie(), value);
        cookie.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ));
        cookie
    }

    /// The name of the cookie binding an upstream sign-in in progress to the browser that
    /// started it (SameSite=Lax: the provider's redirect back is a top-level navigation).
    pub fn sso_binding_cookie(self) -> &'static str {
        match self {
            Self::Host => "__Host-keygate_sso",
            Self::PlainHttpDev => "keygate_sso",
        }
    }

    /// The binding cookie of an upstream sign-in, living as long as its state.
    pub fn sso_binding(self, value: String, max_age: std::time::Duration) -> Cookie<'static> {
        let mut cookie = self.cookie(self.sso_binding_cookie(), value);
        cookie.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ));
        cookie
    }

    /// The binding cookie of a SAML sign-in: the IdP answers with a cross-site form POST,
    /// which a SameSite=Lax cookie does not accompany, so this one is SameSite=None (and
    /// Secure). On plain-HTTP `keygate dev` it stays Lax (browsers refuse SameSite=None
    /// without Secure): there the IdP must be on the same site (e.g. both on `localhost`).
    pub fn sso_binding_cross_site(
        self,
        value: String,
        max_age: std::time::Duration,
    ) -> Cookie<'static> {
        let mut cookie = self.sso_binding(value, max_age);
        if self.secure() {
            cookie.set_same_site(SameSite::None);
        }
        cookie
    }

    /// Whether cookies carry `Secure`.
    pub fn secure(self) -> bool {
        self == Self::Host
    }

    /// A cookie called `name` with the flags every keygate cookie has (Path=/, HttpOnly,
    /// SameSite=Lax, and Secure unless in plain-HTTP dev mode).
    pub(crate) fn cookie(
        self,
        name: impl Into<Cow<'static, str>>,
        value: String,
    ) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure())
            .same_site(SameSite::Lax)
            .build()
    }
}

/// One tenant's session cookie: its name and, when the tenant shares it with every host under
/// a parent domain (`sessions.cookieDomain`), that domain. Built by [`CookieMode::session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCookie {
    mode: CookieMode,
    name: Cow<'static, str>,
    domain: Option<String>,
}

impl SessionCookie {
    /// The cookie's name: `__Host-keygate_session`, or `__Secure-keygate_session_{tenant}`
    /// when shared with a domain.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parent domain the cookie is shared with, if any.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The cookie carrying session token `value` for `max_age` (the session's remaining
    /// absolute lifetime).
    pub fn issue(&self, value: String, max_age: std::time::Duration) -> Cookie<'static> {
        let mut cookie = self.base(value);
        cookie.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ));
        cookie
    }

    /// The cookie to hand `CookieJar::remove`: same name, path and domain, so the browser
    /// clears the very cookie [`Self::issue`] set (a removal without the domain would leave
    /// the shared cookie in place).
    pub fn removal(&self) -> Cookie<'static> {
        self.base(String::new())
    }

    fn base(&self, value: String) -> Cookie<'static> {
        let mut cookie = self.mode.cookie(self.name.clone(), value);
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_without_a_domain_keeps_the_host_only_cookie() {
        let c = CookieMode::Host.session("acme", None, "auth.example.com");
        assert_eq!(c.name(), "__Host-keygate_session");
        let set = c
            .issue("v".into(), std::time::Duration::from_secs(60))
            .to_string();
        assert!(!set.contains("Domain"), "{set}");
        assert!(set.contains("Secure") && set.contains("HttpOnly") && set.contains("Path=/"));
    }

    #[test]
    fn a_domain_cookie_is_secure_prefixed_per_tenant_with_its_domain() {
        let c = CookieMode::Host.session("acme", Some("example.com"), "auth.example.com");
        assert_eq!(c.name(), "__Secure-keygate_session_acme");
        let set = c
            .issue("v".into(), std::time::Duration::from_secs(60))
            .to_string();
        for part in [
            "Domain=example.com",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
        ] {
            assert!(set.contains(part), "{part} missing from {set}");
        }
        assert!(c.removal().to_string().contains("Domain=example.com"));
    }

    #[test]
    fn the_device_cookie_is_host_only_and_long_lived() {
        let set = CookieMode::Host
            .device("v".into(), std::time::Duration::from_secs(86_400))
            .to_string();
        assert!(set.starts_with("__Host-keygate_device=v"), "{set}");
        for part in [
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=86400",
        ] {
            assert!(set.contains(part), "{part} missing from {set}");
        }
        assert!(!set.contains("Domain"), "{set}");
    }

    #[test]
    fn a_domain_outside_the_public_host_falls_back_to_the_host_cookie() {
        let c = SessionCookies::new(CookieMode::Host, "https://auth.example.com:8443/base")
            .of("acme", Some("example.org"));
        assert_eq!(c.name(), "__Host-keygate_session");
        assert_eq!(c.domain(), None);
    }
}
