//! Shared state every handler gets, built once by [`AppState::builder`]: the identity
//! service (the one door to tenants, keys, sessions and the store), the pages' and
//! forward-auth's own state, and settings. Handlers that need only part of it take a
//! substate (`State<Arc<PagesState>>`) through axum's `FromRef`.

use crate::cookies::CookieMode;
use crate::forward_auth::{ForwardAuthMetrics, ForwardAuthState};
use crate::identity::{AccountFlows, Authenticator, IdentityService};
use crate::pages::PagesState;
use ipnet::IpNet;
use keygate_core::clock::Clock;
use std::sync::Arc;

/// Cheaply cloned handle to everything the gateway shares between requests.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Accounts, sign-in, tokens, sessions, tenants and keys: every adapter goes through it.
    pub identity: IdentityService,
    /// Base URL without trailing slash; issuers are `{public_url}/t/{tenant}`.
    pub public_url: Arc<str>,
    /// Source of "now" (the identity service's).
    pub clock: Arc<dyn Clock>,
    /// Peers whose `X-Forwarded-*` / `X-Real-IP` headers are believed (`KEYGATE_TRUSTED_PROXIES`).
    pub trusted_proxies: Arc<[IpNet]>,
    /// How the session cookie is named and flagged (pages set it; routes and forward-auth
    /// read it).
    pub cookie_mode: CookieMode,
    /// Each tenant's session cookie (the public host parsed once).
    pub session_cookies: crate::cookies::SessionCookies,
    /// The sign-in pages: CSRF, templates, workflows.
    pub pages: Arc<PagesState>,
    /// Forward-auth's caches and counters.
    pub forward_auth: Arc<ForwardAuthState>,
    /// The gateway's metrics, served at `/metrics`: the identity service's registry, so its
    /// counts, forward-auth's and the HTTP layer's are in one place.
    pub registry: prometheus::Registry,
    /// Counts every request by route and status (registered once per state, so building
    /// the router twice from one state does not register twice).
    pub(crate) http_metrics: crate::http_metrics::HttpMetricsLayer,
    /// Whether `/readyz` answers ready: it rides out store outages shorter than its grace.
    pub(crate) readiness: Arc<crate::health::Readiness>,
}

impl AppState {
    /// The session cookie of tenant `t` (host-only, or shared with its `sessions.cookieDomain`).
    pub fn session_cookie(&self, t: &crate::identity::LiveTenant) -> crate::cookies::SessionCookie {
        self.session_cookies
            .of(t.name(), t.settings.sessions.cookie_domain.as_deref())
    }

    /// Starts building the state around `identity`; every setting has a production default.
    pub fn builder(identity: IdentityService) -> AppStateBuilder {
        AppStateBuilder {
            authenticator: Arc::new(identity.clone()),
            flows: Arc::new(identity.clone()),
            identity,
            trusted_proxies: Vec::new(),
            cookie_mode: CookieMode::Host,
            readiness_grace: crate::health::READINESS_GRACE,
        }
    }
}

/// Settings of an [`AppState`] being built.
#[derive(Debug)]
pub struct AppStateBuilder {
    identity: IdentityService,
    authenticator: Arc<dyn Authenticator>,
    flows: Arc<dyn AccountFlows>,
    trusted_proxies: Vec<IpNet>,
    cookie_mode: CookieMode,
    readiness_grace: std::time::Duration,
}

impl AppStateBuilder {
    /// Believes forwarded headers from peers in `nets` (none by default).
    pub fn trusted_proxies(mut self, nets: Vec<IpNet>) -> Self {
        self.trusted_proxies = nets;
        self
    }

    /// Names and flags cookies ([`CookieMode::Host`] by default; `PlainHttpDev` only for
    /// `keygate dev` on plain HTTP).
    pub fn cookie_mode(mut self, mode: CookieMode) -> Self {
        self.cookie_mode = mode;
        self
    }

    /// Checks forward-auth credentials with `authenticator` instead of the identity service
    /// (tests stand one in).
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = authenticator;
        self
    }

    /// Runs the pages' workflows with `flows` instead of the identity service (tests stand
    /// one in).
    pub fn account_flows(mut self, flows: Arc<dyn AccountFlows>) -> Self {
        self.flows = flows;
        self
    }

    /// How long the store may be unreachable before `/readyz` says not ready
    /// ([`crate::health::READINESS_GRACE`] by default; tests shorten it).
    pub fn readiness_grace(mut self, grace: std::time::Duration) -> Self {
        self.readiness_grace = grace;
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        let public_url: Arc<str> = self.identity.public_url().into();
        let session_cookies = crate::cookies::SessionCookies::new(self.cookie_mode, &public_url);
        let pages = PagesState::new(
            self.identity.clone(),
            self.flows,
            public_url.clone(),
            self.cookie_mode,
        );
        let registry = self.identity.registry().clone();
        let forward_auth =
            ForwardAuthState::new(self.authenticator, ForwardAuthMetrics::new(&registry));
        AppState {
            clock: self.identity.clock().clone(),
            identity: self.identity,
            public_url,
            trusted_proxies: self.trusted_proxies.into(),
            cookie_mode: self.cookie_mode,
            session_cookies,
            pages: Arc::new(pages),
            forward_auth: Arc::new(forward_auth),
            http_metrics: crate::http_metrics::HttpMetricsLayer::new(&registry),
            registry,
            readiness: Arc::new(crate::health::Readiness::new(self.readiness_grace)),
        }
    }
}
