//! API-key last-use times: collected in memory as keys are used and written to the store in
//! one batch per interval, so a busy key costs no write per request.

use chrono::{DateTime, Utc};
use keygate_core::ids::{ApiKeyId, TenantId};
use keygate_core::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often recorded API-key uses are written.
pub(crate) const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(30);

/// API-key last-use times, collected in memory and written in one batch per interval.
#[derive(Debug, Default)]
pub(crate) struct ApiKeyUsage {
    pending: Mutex<HashMap<(TenantId, ApiKeyId), DateTime<Utc>>>,
    flusher_started: AtomicBool,
}

impl ApiKeyUsage {
    /// Notes that `key` was used at `at`; starts the background writer on first use.
    pub fn record(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        tenant: TenantId,
        key: ApiKeyId,
        at: DateTime<Utc>,
    ) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert((tenant, key), at);
        }
        if !self.flusher_started.swap(true, Ordering::Relaxed) {
            let me = Arc::downgrade(self);
            let store = store.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(USAGE_FLUSH_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(me) = me.upgrade() else { break };
                    me.flush(store.as_ref()).await;
                }
            });
        }
    }

    /// Writes every pending use now; returns how many keys were touched.
    pub async fn flush(&self, store: &dyn Store) -> usize {
        let batch: Vec<_> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return 0,
        };
        let mut written = 0;
        for ((tenant, key), at) in batch {
            match store.touch_api_key(tenant, key, at).await {
                Ok(_) => written += 1,
                Err(e) => {
                    tracing::warn!(error = %e, api_key = %key, "could not record API-key use")
                }
            }
        }
        written
    }
}
