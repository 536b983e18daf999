//! Browser sessions by cookie: the cookie carries an opaque 256-bit token (only its SHA-256
//! is stored), and what a check needs of the session is kept hot in the ephemeral store
//! (Redis in production), so resolving a cookie costs one Redis read and no database round
//! trip. The ledger (Postgres) stays the system of record: a miss falls back to it and
//! repopulates, and `last_seen_at` is written there at most once a minute per session.
//!
//! Revocation always wins: the replica-local revocation set is asked before a hot record is
//! trusted, a revoke deletes the record, and a record never lives longer than a revocation
//! is remembered.

use super::tenants::LiveTenant;
use super::{Credential, IdentityError, IdentityService, Principal, chrono_duration, hex};
use chrono::{DateTime, Utc};
use keygate_core::crypto::sha256;
use keygate_core::ids::{SessionId, UserId};
use keygate_core::store::Session;
use serde::{Deserialize, Serialize};

/// Length of a cookie token: 32 random bytes, base64url without padding.
const COOKIE_TOKEN_CHARS: usize = 43;
/// How often a session's `last_seen_at` (and idle expiry) is written to the ledger.
pub(super) const LAST_SEEN_WRITE_INTERVAL: chrono::Duration = chrono::Duration::minutes(1);

/// The hash a cookie is stored and looked up by; `None` for anything that is not a cookie
/// token keygate could have issued (an old UUID cookie, junk), so it costs no lookup.
pub(super) fn cookie_hash(cookie: &str) -> Option<[u8; 32]> {
    let well_formed = cookie.len() == COOKIE_TOKEN_CHARS
        && cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| sha256(cookie.as_bytes()))
}

/// What a cookie check needs of a session, kept in the ephemeral store under the cookie's
/// hash. No secret in it: ids, authentication facts and times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HotSession {
    session_id: SessionId,
    user_id: UserId,
    amr: Vec<String>,
    acr: Option<String>,
    auth_time: DateTime<Utc>,
    /// When `last_seen_at` was last written to the ledger.
    last_seen_at: DateTime<Utc>,
    idle_expires_at: DateTime<Utc>,
    absolute_expires_at: DateTime<Utc>,
}

impl HotSession {
    fn of(s: &Session) -> Self {
        Self {
            session_id: s.id,
            user_id: s.user_id,
            amr: s.amr.clone(),
            acr: s.acr.clone(),
            auth_time: s.auth_time,
            last_seen_at: s.last_seen_at,
            idle_expires_at: s.idle_expires_at,
            absolute_expires_at: s.absolute_expires_at,
        }
    }

    fn is_active(&self, now: DateTime<Utc>) -> bool {
        now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

fn hot_key(t: &LiveTenant, token_hash: &[u8]) -> String {
    format!("session-hot:{}:{}", t.row.id, hex(token_hash))
}

impl IdentityService {
    /// Keeps `session`'s hot record (if it has a cookie) for its remaining idle lifetime,
    /// never longer than a revocation of it is remembered.
    pub(super) async fn put_hot_session(&self, t: &LiveTenant, session: &Session) {
        if let Some(token_hash) = &session.token_hash {
            self.write_hot(t, token_hash, &HotSession::of(session))
                .await;
        }
    }

    /// Best effort: the record is a cache of the ledger, so a failed write only costs the
    /// next check a ledger read.
    async fn write_hot(&self, t: &LiveTenant, token_hash: &[u8], hot: &HotSession) {
        let left = (hot.idle_expires_at.min(hot.absolute_expires_at) - self.now())
            .to_std()
            .unwrap_or_default()
            .min(self.session_revocation_ttl(t));
        if left.is_zero() {
            return;
        }
        let Ok(value) = serde_json::to_vec(hot) else {
            return;
        };
        if let Err(e) = self
            .deps()
            .ephemeral
            .put(&hot_key(t, token_hash), &value, left)
            .await
        {
            tracing::warn!(error = %e, "cannot keep a session's hot record; the ledger answers");
        }
    }

    /// Drops `session`'s hot record (revocation). Best effort: the revocation set is asked
    /// before a record is trusted, so one left behind while Redis is down refuses nobody's
    /// revocation; it ends with its TTL.
    pub(super) async fn forget_hot_session(
        &self,
        t: &LiveTenant,
        session: &Session,
    ) -> Result<(), IdentityError> {
        if let Some(token_hash) = &session.token_hash
            && let Err(e) = self.deps().ephemeral.take(&hot_key(t, token_hash)).await
        {
            tracing::warn!(error = %e, "cannot drop a revoked session's hot record; the revocation set refuses it");
        }
        Ok(())
    }

    /// The hot record of a cookie, if one is there and readable. The ephemeral store being
    /// down is a miss too: the ledger is the system of record, and the revocation set asked
    /// before trusting a record is this replica's own.
    async fn read_hot(&self, t: &LiveTenant, token_hash: &[u8]) -> Option<HotSession> {
        match self.deps().ephemeral.get(&hot_key(t, token_hash)).await {
            // An unreadable record (another version's format) is a miss, not an error.
            Ok(bytes) => bytes.and_then(|b| serde_json::from_slice(&b).ok()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a session's hot record; asking the ledger");
                None
            }
        }
    }

    /// Resolves a session cookie of tenant `t`: the revocation set first, then the hot
    /// record, then the ledger on a miss.
    pub(super) async fn session_principal(
        &self,
        t: &LiveTenant,
        cookie: &str,
    ) -> Result<Principal, IdentityError> {
        let token_hash = cookie_hash(cookie).ok_or(IdentityError::InvalidToken)?;
        self.session_principal_by_hash(t, token_hash).await
    }

    /// [`Self::session_principal`] from the SHA-256 of the cookie's token (a host cookie of
    /// the handoff resolves through its parent's hash: see `handoff`).
    pub(super) async fn session_principal_by_hash(
        &self,
        t: &LiveTenant,
        token_hash: [u8; 32],
    ) -> Result<Principal, IdentityError> {
        let d = self.deps();
        let now = self.now();
        let hot = match self.read_hot(t, &token_hash).await {
            Some(hot) => {
                if d.ephemeral
                    .revocations()
                    .contains(&hot.session_id.to_string())
                {
                    return Err(IdentityError::RevokedToken);
                }
                // An expired record is a miss: the ledger may know a later idle expiry.
                hot.is_active(now).then_some(hot)
            }
            None => None,
        };
        let mut hot = match hot {
            Some(hot) => hot,
            None => {
                let session = d
                    .store
                    .session_by_token_hash(t.row.id, &token_hash)
                    .await?
                    .ok_or(IdentityError::InvalidToken)?;
                if d.ephemeral.revocations().contains(&session.id.to_string())
                    || session.revoked_at.is_some()
                {
                    return Err(IdentityError::RevokedToken);
                }
                if !session.is_active(now) {
                    return Err(IdentityError::ExpiredToken);
                }
                let hot = HotSession::of(&session);
                self.write_hot(t, &token_hash, &hot).await;
                hot
            }
        };
        let subject = self
            .active_subject(t, hot.user_id)
            .await?
            .ok_or(IdentityError::InvalidToken)?;
        // Slide the idle expiry in the ledger at most once a minute per session; the touch
        // also re-checks the ledger, so a revocation Redis never carried ends the session here.
        if now - hot.last_seen_at >= LAST_SEEN_WRITE_INTERVAL {
            let idle = (now + chrono_duration(t.settings.session_idle_timeout()))
                .min(hot.absolute_expires_at);
            if !d
                .store
                .touch_session(t.row.id, hot.session_id, now, idle)
                .await?
            {
                // Best effort: a record left behind ends with its TTL, and the ledger
                // refuses the session at every later write anyway.
                let _ = d.ephemeral.take(&hot_key(t, &token_hash)).await;
                return Err(IdentityError::InvalidToken);
            }
            hot.last_seen_at = now;
            hot.idle_expires_at = idle;
            self.write_hot(t, &token_hash, &hot).await;
        }
        Ok(Principal::person(
            t,
            &subject.user,
            (subject.roles.clone(), subject.permissions.clone()),
            Vec::new(),
            Credential::SessionCookie {
                session_id: hot.session_id,
                amr: hot.amr,
                acr: hot.acr,
                auth_time: hot.auth_time,
                expires_at: hot.absolute_expires_at,
            },
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_issued_token_shapes_are_looked_up() {
        let token = keygate_core::crypto::random::random_token().unwrap();
        assert_eq!(cookie_hash(&token), Some(sha256(token.as_bytes())));
        let uuid = uuid::Uuid::now_v7().to_string();
        assert_eq!(cookie_hash(&uuid), None, "old-format cookies are refused");
        assert_eq!(cookie_hash(&format!("{}=", &token[..42])), None);
        assert_eq!(cookie_hash(&format!("{token}A")), None);
        assert_eq!(cookie_hash(""), None);
    }
}
