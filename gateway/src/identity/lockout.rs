//! The progressive lockout schedule, which slows password guessing without letting a
//! stranger lock an account out for long: 5 failures lock for 5 minutes, 10 for
//! 30 minutes, 15 and more for 2 hours; every failure from the fifth on locks again for
//! its tier. A successful sign-in clears the counter, and a run of failures is forgotten a
//! day after its first ([`FAILURE_WINDOW`]).
//!
//! An address without an account runs the same state machine on "ghost" state in the
//! ephemeral store, so the answers (and their `Retry-After`) never tell whether an account
//! exists: while locked, an attempt is answered `account_locked` with the time left and not
//! counted; otherwise it is counted, and the count may start a lock.

use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, hex};
use chrono::{DateTime, Duration, Utc};
use keygate_core::crypto::sha256;
use keygate_core::ephemeral::EphemeralError;
use keygate_core::store::FAILURE_WINDOW;

/// How long an account is locked after its `failures`-th consecutive failure, if at all.
pub(crate) fn lock_duration(failures: i64) -> Option<Duration> {
    match failures {
        f if f >= 15 => Some(Duration::hours(2)),
        f if f >= 10 => Some(Duration::minutes(30)),
        f if f >= 5 => Some(Duration::minutes(5)),
        _ => None,
    }
}

/// How long a lock ending at `until` still holds at `now`, in whole seconds rounded up (the
/// database keeps microseconds, the clock may have nanoseconds); `None` once it has ended.
pub(crate) fn time_left(until: DateTime<Utc>, now: DateTime<Utc>) -> Option<std::time::Duration> {
    if now >= until {
        return None;
    }
    let secs = ((until - now).num_milliseconds() + 999)
        .div_euclid(1000)
        .max(1);
    Some(std::time::Duration::from_secs(secs.unsigned_abs()))
}

impl IdentityService {
    /// The answer to a failed sign-in for an email without an account: what a real
    /// account's state machine would answer (see the module docs). If the ephemeral store
    /// is down, the answer is `invalid_credentials` all the same.
    pub(super) async fn unknown_account_failure(
        &self,
        t: &LiveTenant,
        email: &str,
    ) -> IdentityError {
        if !t.settings.lockout.enabled {
            return IdentityError::InvalidCredentials;
        }
        self.ghost_failure(t, email)
            .await
            .unwrap_or(IdentityError::InvalidCredentials)
    }

    async fn ghost_failure(
        &self,
        t: &LiveTenant,
        email: &str,
    ) -> Result<IdentityError, EphemeralError> {
        let e = self.deps().ephemeral.as_ref();
        let now = self.now();
        let id = hex(&sha256(email.trim().to_lowercase().as_bytes())[..16]);
        let lock_key = format!("ghost-lock:{}:{id}", t.row.id);
        if let Some(until) = e.get(&lock_key).await?.as_deref().and_then(parse_millis)
            && let Some(left) = time_left(until, now)
        {
            return Ok(IdentityError::AccountLocked { retry_after: left });
        }
        let window = FAILURE_WINDOW.to_std().unwrap_or_default();
        let failures = e
            .hit(&format!("ghost-fail:{}:{id}", t.row.id), window)
            .await?;
        if let Some(lock) = lock_duration(i64::try_from(failures).unwrap_or(i64::MAX)) {
            let until = now + lock;
            // Kept a little past the lock; the lock itself ends at `until`, read above.
            let ttl = lock.to_std().unwrap_or_default() + std::time::Duration::from_secs(60);
            e.put(
                &lock_key,
                until.timestamp_millis().to_string().as_bytes(),
                ttl,
            )
            .await?;
        }
        Ok(IdentityError::InvalidCredentials)
    }
}

fn parse_millis(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let millis: i64 = std::str::from_utf8(bytes).ok()?.parse().ok()?;
    DateTime::from_timestamp_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_rounds_up_and_ends_at_the_lock() {
        let now = Utc::now();
        let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs());
        assert_eq!(
            secs(time_left(now + Duration::milliseconds(299_001), now)),
            Some(300)
        );
        assert_eq!(
            secs(time_left(now + Duration::microseconds(1), now)),
            Some(1)
        );
        assert_eq!(time_left(now, now), None);
    }

    #[test]
    fn schedule_matches_the_design() {
        assert_eq!(lock_duration(4), None);
        assert_eq!(lock_duration(5), Some(Duration::minutes(5)));
        assert_eq!(lock_duration(9), Some(Duration::minutes(5)));
        assert_eq!(lock_duration(10), Some(Duration::minutes(30)));
        assert_eq!(lock_duration(15), Some(Duration::hours(2)));
        assert_eq!(lock_duration(40), Some(Duration::hours(2)));
    }
}
