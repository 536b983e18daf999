//! The expiry janitor: sessions (with their refresh families) and one-time tokens past
//! their lifetime, and audit events past their tenant's `audit.retentionDays`, are deleted
//! on a schedule, by one replica at a time (the store's
//! `sweep_expired` takes a PostgreSQL advisory lock; a replica that finds it held skips
//! the round). Every replica runs the schedule, so the sweep survives any replica.

use super::{IdentityError, IdentityService};
use keygate_core::store::Swept;
use std::time::Duration;

impl IdentityService {
    /// One sweep at the service's "now"; `None` when another replica is sweeping.
    #[tracing::instrument(name = "identity.sweep_expired_once", level = "debug", skip_all)]
    pub async fn sweep_expired_once(&self) -> Result<Option<Swept>, IdentityError> {
        Ok(self.deps().store.sweep_expired(self.now()).await?)
    }

    /// Runs [`sweep_expired_once`](Self::sweep_expired_once) now and then every `every`
    /// until the runtime stops; a failed sweep is logged and tried again next round.
    pub fn spawn_janitor(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let service = self.clone();
        Some(handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match service.sweep_expired_once().await {
                    Ok(Some(swept)) if swept != Swept::default() => {
                        tracing::info!(
                            sessions = swept.sessions,
                            one_time_tokens = swept.one_time_tokens,
                            audit_events = swept.audit_events,
                            "expired rows removed"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expiry sweep failed; retried next round"),
                }
            }
        }))
    }
}
