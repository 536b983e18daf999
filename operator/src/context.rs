//! What every reconciler needs: the store, the master keys, the public URL, a clock and
//! where reconciles are counted.

use crate::metrics::Metrics;
use keygate_core::clock::Clock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::store::Store;
use std::sync::Arc;

/// Shared, cheaply cloned reconcile dependencies.
#[derive(Clone, Debug)]
pub struct Context {
    /// The system of record.
    pub store: Arc<dyn Store>,
    /// Seals signing keys and IdP secrets before they reach the store.
    pub master_keys: MasterKeys,
    /// Gateway base URL, for issuer and JWKS URLs in status.
    pub public_url: String,
    /// Source of "now" (a manual clock in tests).
    pub clock: Arc<dyn Clock>,
    /// Accept plain-`http://` OIDC issuers on loopback hosts (`keygate dev` only).
    pub allow_loopback_http: bool,
    /// Reconcile counters and durations, registered in the registry `/metrics` serves;
    /// `None` leaves reconciles unmeasured.
    pub metrics: Option<Metrics>,
}

impl Context {
    /// A context without metrics; add them with [`Context::with_metrics`].
    pub fn new(
        store: Arc<dyn Store>,
        master_keys: MasterKeys,
        public_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            master_keys,
            public_url: public_url.trim_end_matches('/').to_owned(),
            clock,
            allow_loopback_http: false,
            metrics: None,
        }
    }

    /// Accepts plain-`http://` OIDC issuers on loopback hosts (`keygate dev`).
    pub fn allowing_loopback_http(mut self) -> Self {
        self.allow_loopback_http = true;
        self
    }

    /// Counts reconciles in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The issuer URL of a tenant.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}", self.public_url)
    }
}
