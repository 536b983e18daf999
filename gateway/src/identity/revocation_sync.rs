//! The Postgres fallback for revocations (a revocation must reach every replica even when
//! Redis lost it): every replica reads the sessions the
//! store recorded as revoked and adds them to its local revocation set. Redis pub/sub is the
//! fast path; this poll covers a Redis outage at revoke time and a message a replica never
//! received, so a revoked session's access tokens stop working everywhere within seconds.

use super::{IdentityError, IdentityService};
use chrono::{DateTime, Duration, Utc};
use keygate_core::ephemeral::LagPath;
use std::time::Duration as StdDuration;

/// How far back the first pass looks: longer than any access token lives.
const FIRST_LOOKBACK: Duration = Duration::hours(24);
/// Overlap between passes, so a revocation committed while the previous pass ran is not missed.
const OVERLAP: Duration = Duration::seconds(10);
/// How long a polled revocation is kept locally; sessions past this are refused by the store anyway.
const LOCAL_TTL: StdDuration = StdDuration::from_secs(24 * 3600);

impl IdentityService {
    /// One pass: adds sessions revoked since `since` to this replica's revocation set and
    /// returns how many it saw. Each one the set did not hold yet (the channel missed it)
    /// counts in `keygate_revocation_lag_seconds{path="store"}` with how late it came.
    #[tracing::instrument(name = "identity.sync_revocations_once", level = "debug", skip_all)]
    pub async fn sync_revocations_once(
        &self,
        since: DateTime<Utc>,
    ) -> Result<usize, IdentityError> {
        self.sync_revocations(since, true).await
    }

    /// [`sync_revocations_once`](Self::sync_revocations_once); `measure` is false on a
    /// replica's first pass, which learns revocations made before it started (no lag).
    async fn sync_revocations(
        &self,
        since: DateTime<Utc>,
        measure: bool,
    ) -> Result<usize, IdentityError> {
        let d = self.deps();
        let now = self.now();
        let revoked = d.store.revoked_sessions_since(since, now).await?;
        let set = d.ephemeral.revocations();
        for (_, session, revoked_at) in &revoked {
            let id = session.to_string();
            if measure && !set.contains(&id) {
                let late = (now - *revoked_at).to_std().unwrap_or_default();
                set.observe_lag(LagPath::Store, late.as_secs_f64());
            }
            set.insert(&id, LOCAL_TTL);
        }
        Ok(revoked.len())
    }

    /// Runs [`sync_revocations_once`](Self::sync_revocations_once) every `every` until the
    /// runtime stops; a failed pass is logged and retried from the same point.
    pub fn spawn_revocation_sync(&self, every: StdDuration) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let service = self.clone();
        Some(handle.spawn(async move {
            let mut since = service.now() - FIRST_LOOKBACK;
            let mut first = true;
            loop {
                let started = service.now();
                match service.sync_revocations(since, !first).await {
                    Ok(_) => (since, first) = (started - OVERLAP, false),
                    Err(e) => tracing::warn!(error = %e, "revocation resync from the store failed; retrying"),
                }
                tokio::time::sleep(every).await;
            }
        }))
    }
}
