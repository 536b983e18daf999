//! Shared state every handler gets: the store, the signing-key cache and settings.

use crate::identity::{IdentityDeps, IdentityError, IdentityService};
use crate::keys::KeyCache;
use keygate_core::clock::Clock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::store::Store;
use std::sync::Arc;

/// Cheaply cloned handle to everything the gateway shares between requests.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The system of record.
    pub store: Arc<dyn Store>,
    /// Tenants' signing keys, cached briefly so JWKS and issuance stay off the database.
    pub keys: KeyCache,
    /// Base URL without trailing slash; issuers are `{public_url}/t/{tenant}`.
    pub public_url: Arc<str>,
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// Forward-auth and sign-in pages: resolvers, caches, revocations, cookie settings.
    pub edge: Arc<crate::forward_auth::Edge>,
    /// Accounts, sign-in, tokens and sessions: every route authenticates through it.
    pub identity: IdentityService,
}

impl AppState {
    /// State over `store`, with keys unsealed by `master_keys`. The identity service gets
    /// production defaults ([`IdentityDeps::new`]: in-process ephemeral state, OWASP
    /// argon2id, emails to the log); use [`AppState::with_service`] to bring your own.
    ///
    /// Fails only when password hashing cannot be set up (no usable random generator or
    /// argon2 build): nothing could sign anyone in, so the caller stops with the cause.
    pub fn new(
        store: Arc<dyn Store>,
        master_keys: MasterKeys,
        public_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IdentityError> {
        let deps = IdentityDeps::new(
            store.clone(),
            master_keys.clone(),
            public_url,
            clock.clone(),
        )?;
        Ok(Self::with_service(
            store,
            master_keys,
            public_url,
            clock,
            IdentityService::new(deps),
        ))
    }

    /// State over `store` with `identity` (Redis, SMTP, hashing parameters from the config)
    /// wired into forward-auth and the pages. The first-admin bootstrap is the caller's
    /// (`identity.spawn_bootstrap`), so building state starts nothing.
    pub fn with_service(
        store: Arc<dyn Store>,
        master_keys: MasterKeys,
        public_url: &str,
        clock: Arc<dyn Clock>,
        identity: IdentityService,
    ) -> Self {
        let edge = crate::forward_auth::Edge::new(identity.ephemeral())
            .with_resolver(Arc::new(identity.clone()))
            .with_flows(Arc::new(identity.clone()));
        Self {
            keys: KeyCache::new(store.clone(), master_keys, clock.clone()),
            store,
            public_url: public_url.trim_end_matches('/').into(),
            clock,
            edge: Arc::new(edge),
            identity,
        }
    }

    /// Replaces the identity service (Redis, SMTP, hashing parameters, a test clock) and
    /// re-wires forward-auth and the pages to it and its ephemeral store, keeping the edge's
    /// other settings. Call it before [`AppState::with_edge`], or wire that edge yourself.
    pub fn with_identity(mut self, identity: IdentityService) -> Self {
        let wire = |edge: crate::forward_auth::Edge| {
            let mut edge = edge
                .with_resolver(Arc::new(identity.clone()))
                .with_flows(Arc::new(identity.clone()));
            edge.ephemeral = identity.ephemeral();
            edge
        };
        let fresh = || crate::forward_auth::Edge::new(identity.ephemeral());
        let edge = match Arc::try_unwrap(std::mem::replace(&mut self.edge, Arc::new(fresh()))) {
            Ok(old) => wire(old),
            Err(shared) => wire(
                fresh()
                    .with_trusted_proxies(shared.trusted_proxies.clone())
                    .with_cookie_mode(shared.cookie_mode),
            ),
        };
        self.edge = Arc::new(edge);
        self.identity = identity;
        self
    }

    /// Keeps the edge's wiring and sets the proxies whose forwarded headers are believed and
    /// the cookie mode (`PlainHttpDev` only for `keygate dev` on plain HTTP).
    pub fn with_edge_settings(
        mut self,
        trusted_proxies: Vec<ipnet::IpNet>,
        cookie_mode: crate::forward_auth::CookieMode,
    ) -> Self {
        self.edge = Arc::new(self.edge.with_same_wiring(trusted_proxies, cookie_mode));
        self
    }

    /// Replaces the forward-auth / sign-in wiring (resolvers, shared ephemeral store, proxies).
    pub fn with_edge(mut self, edge: crate::forward_auth::Edge) -> Self {
        self.edge = Arc::new(edge);
        self
    }

    /// The issuer URL of tenant `name`.
    pub fn issuer(&self, name: &str) -> String {
        format!("{}/t/{name}", self.public_url)
    }
}
