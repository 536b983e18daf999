//! What every reconciler needs: the store, the master keys, the public URL and a clock.

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
}

impl Context {
    /// The issuer URL of a tenant.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}", self.public_url)
    }
}
