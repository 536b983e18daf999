//! Refresh-token rotation (RFC 9700 §4.14): every use exchanges the token for a new one in
//! one atomic store operation. Presenting a rotated token again revokes the whole family
//! (the session), writes an audit event and alerts the account — except within the
//! tenant's short grace window, where the retry of a client that lost the answer gets the
//! same new pair (kept sealed in the ephemeral store, keyed by the presented token's hash).

use super::audit::kind;
use super::clients::{AuthenticatedClient, RegisteredClient};
use super::mail::Mail;
use super::metrics::Grant;
use super::scopes;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, RequestMeta, TokenSet, chrono_duration, hex};
use keygate_core::crypto::{random::random_token, sha256};
use keygate_core::ids::SessionId;
use keygate_core::store::{ClientType, GrantType, RotateOutcome};
use serde_json::json;
use std::time::Duration;

/// How long a losing concurrent refresh waits for the winner's pair to appear.
const GRACE_WAIT: Duration = Duration::from_secs(2);
/// Longest refresh token looked at.
const MAX_REFRESH_TOKEN_BYTES: usize = 512;

impl IdentityService {
    /// Exchanges a refresh token for a new pair (`grant_type=refresh_token`). The access
    /// token keeps the session's `client_id` and the part of its `scope` the person still
    /// holds; a `scope` asked for may narrow that for this token (RFC 6749 §6), never widen
    /// it (`InvalidScope`). The token is bound to its client: every refresh names the
    /// session's `client_id`, or it is `InvalidGrant` (RFC 6749 §6, §10.4), and so is a
    /// retry within the grace window; a refusal of an unspent token leaves it unspent. A
    /// client outside the tenant's network lists is `NetworkDenied`. The `client_id` must
    /// name a registered client (`InvalidClient`) allowed the refresh grant
    /// (`UnauthorizedClient`); a confidential client must authenticate, through
    /// [`IdentityService::refresh_for`] (`InvalidClient` here).
    #[tracing::instrument(name = "identity.refresh", level = "debug", skip_all)]
    pub async fn refresh(
        &self,
        tenant: &str,
        refresh_token: &str,
        scope: Option<&str>,
        client_id: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<TokenSet, IdentityError> {
        let t = self.tenant(tenant).await?;
        // Before the token is looked at, so a refused network leaves it unspent.
        super::signin::admit_network(&t, meta)?;
        let Some(client_id) = client_id.map(str::trim).filter(|c| !c.is_empty()) else {
            return Err(IdentityError::InvalidGrant);
        };
        let client = self.registered_client(&t, Some(client_id)).await?;
        if client
            .registration()
            .is_some_and(|c| c.client_type == ClientType::Confidential)
        {
            return Err(IdentityError::InvalidClient);
        }
        self.refresh_as(&t, refresh_token, scope, &client, meta)
            .await
    }

    /// [`IdentityService::refresh`] for a client that authenticated at the token endpoint
    /// ([`IdentityService::authenticate_client`]): how a confidential client refreshes.
    pub async fn refresh_for(
        &self,
        tenant: &str,
        refresh_token: &str,
        scope: Option<&str>,
        client: &AuthenticatedClient,
        meta: &RequestMeta,
    ) -> Result<TokenSet, IdentityError> {
        let t = self.tenant(tenant).await?;
        super::signin::admit_network(&t, meta)?;
        self.refresh_as(&t, refresh_token, scope, client, meta)
            .await
    }

    async fn refresh_as(
        &self,
        t: &LiveTenant,
        refresh_token: &str,
        scope: Option<&str>,
        client: &RegisteredClient,
        meta: &RequestMeta,
    ) -> Result<TokenSet, IdentityError> {
        if !client.allows_grant(GrantType::RefreshToken) {
            return Err(IdentityError::UnauthorizedClient);
        }
        if refresh_token.is_empty() || refresh_token.len() > MAX_REFRESH_TOKEN_BYTES {
            return Err(IdentityError::InvalidGrant);
        }
        let d = self.deps();
        let now = self.now();
        let presented = sha256(refresh_token.as_bytes());
        let asked = scope.map(str::trim).filter(|s| !s.is_empty());
        let client_id = client.client_id();
        // The client is checked by the rotation itself; a scope asked for needs the
        // session's scope, read before the token is spent.
        if asked.is_some() {
            self.check_request_before_rotation(t, &presented, asked, client_id)
                .await?;
        }
        let next_raw = random_token()?;
        let next_hash = sha256(next_raw.as_bytes());
        let next_expires = now + chrono_duration(t.settings.refresh_idle_ttl());
        match d
            .store
            .rotate_refresh_token(
                t.row.id,
                &presented,
                Some(client_id),
                &next_hash,
                next_expires,
                now,
            )
            .await?
        {
            RotateOutcome::Rotated { next } => {
                let pair = self
                    .tokens_for_family(t, next.session_id, next_raw, asked, client)
                    .await?;
                let grace = t.settings.refresh_reuse_grace();
                if !grace.is_zero() {
                    let key = grace_key(t, &presented);
                    let plain = serde_json::to_vec(&pair)
                        .map_err(|e| IdentityError::Internal(e.to_string()))?;
                    let sealed = self.inner.signer.master_keys().seal(&plain, &key)?;
                    // The token is spent already: failing now would lose the pair the
                    // client needs. Without the entry a retry of this token is refused (503
                    // while Redis is down), never taken for reuse.
                    if let Err(e) = d.ephemeral.put(&key, &sealed, grace).await {
                        tracing::warn!(error = %e, "cannot keep a refresh retry pair; answering without it");
                    }
                }
                self.inner.metrics.issued(Grant::RefreshToken);
                Ok(pair)
            }
            RotateOutcome::AlreadyRotated {
                family, rotated_at, ..
            } => {
                let grace = chrono_duration(t.settings.refresh_reuse_grace());
                if now - rotated_at <= grace
                    && !d.ephemeral.revocations().contains(&family.to_string())
                    && let Some(pair) = self.grace_pair(t, &presented).await?
                {
                    // The family must still be live: a revoke in between wins.
                    let Some(s) = d
                        .store
                        .session(t.row.id, family)
                        .await?
                        .filter(|s| s.is_active(now))
                    else {
                        return Err(IdentityError::InvalidGrant);
                    };
                    // Only the client's own retry is forgiven; another client replaying a
                    // spent token is reuse.
                    if s.client_id == client_id {
                        return Ok(pair);
                    }
                }
                self.reuse_detected(t, family, meta).await?;
                Err(IdentityError::InvalidGrant)
            }
            RotateOutcome::FamilyRevoked { .. }
            | RotateOutcome::Expired { .. }
            | RotateOutcome::WrongClient { .. }
            | RotateOutcome::Unknown => Err(IdentityError::InvalidGrant),
        }
    }

    /// Refuses a `scope` wider than the session's, or another client's `client_id`, before
    /// the token is spent, so a client that asked wrongly keeps a working refresh token (the
    /// rotation checks the client too, in the same statement, for requests without `scope`). A
    /// rotated or unknown token skips this: the rotation answers it (reuse detection must
    /// not be sidestepped by a bad parameter).
    async fn check_request_before_rotation(
        &self,
        t: &LiveTenant,
        presented: &[u8],
        asked_scope: Option<&str>,
        client_id: &str,
    ) -> Result<(), IdentityError> {
        let d = self.deps();
        let Some(record) = d.store.refresh_token(t.row.id, presented).await? else {
            return Ok(());
        };
        if record.rotated_at.is_some() {
            return Ok(());
        }
        let (granted_scope, granted_client) =
            match self.inner.families.get(t.row.id, record.session_id) {
                Some(s) => (s.scope, s.client_id),
                None => match d.store.session(t.row.id, record.session_id).await? {
                    Some(s) => (s.scope, s.client_id),
                    None => return Ok(()),
                },
            };
        if client_id != granted_client {
            return Err(IdentityError::InvalidGrant);
        }
        narrowed_scope(&granted_scope, asked_scope).map(|_| ())
    }

    /// Mints the access token of a freshly rotated family (and, for a registered client's
    /// `openid` grant, a new ID token) and slides the session's idle expiry.
    async fn tokens_for_family(
        &self,
        t: &LiveTenant,
        family: SessionId,
        refresh_token: String,
        asked_scope: Option<&str>,
        client: &RegisteredClient,
    ) -> Result<TokenSet, IdentityError> {
        let client_id = client.client_id();
        let d = self.deps();
        let now = self.now();
        // The rotation that just succeeded checked in the store that the session is live;
        // the row is only read for facts that do not change, so a recent copy will do.
        let mut session = match self.inner.families.get(t.row.id, family) {
            Some(s) => s,
            None => d
                .store
                .session(t.row.id, family)
                .await?
                .filter(|s| s.is_active(now))
                .ok_or(IdentityError::InvalidGrant)?,
        };
        // Checked before rotation too; this covers a token rotated in between.
        if d.ephemeral.revocations().contains(&family.to_string()) || session.client_id != client_id
        {
            return Err(IdentityError::InvalidGrant);
        }
        let subject = self
            .active_subject(t, session.user_id)
            .await?
            .ok_or(IdentityError::InvalidGrant)?;
        let user = &subject.user;
        // Slide the idle expiry, but write it at most every tenth of the idle lifetime (and
        // at least every ten minutes): a busy client's refreshes then cost one durable write.
        let idle_ttl = chrono_duration(t.settings.refresh_idle_ttl());
        let every = (idle_ttl / 10).min(chrono::Duration::minutes(10));
        if now - session.last_seen_at >= every {
            let idle = (now + idle_ttl).min(session.absolute_expires_at);
            d.store.touch_session(t.row.id, family, now, idle).await?;
            session.last_seen_at = now;
            session.idle_expires_at = idle;
            // A browser session's cookie check reads the hot record: keep its expiry in step.
            self.put_hot_session(t, &session).await;
        }
        self.inner.families.put(session.clone());
        let scope = scopes::still_held(
            &narrowed_scope(&session.scope, asked_scope)?,
            &subject.permissions,
        );
        let (access_token, expires_in) = self
            .access_token(
                t,
                user,
                &session,
                &session.client_id,
                &scope,
                &subject.roles,
                &subject.permissions,
            )
            .await?;
        let id_token = super::id_token::refreshed(
            &self.inner.signer,
            t,
            super::id_token::Refresh {
                client: client.registration(),
                session: &session,
                user,
                scope: &scope,
                access_token: &access_token,
                access_ttl: Duration::from_secs(expires_in),
            },
            now,
        )
        .await?;
        Ok(TokenSet {
            access_token,
            token_type: "Bearer".into(),
            expires_in,
            refresh_token,
            scope,
            id_token,
        })
    }

    /// The pair handed out for a just-rotated token, waiting briefly for a concurrent winner.
    async fn grace_pair(
        &self,
        t: &LiveTenant,
        presented: &[u8],
    ) -> Result<Option<TokenSet>, IdentityError> {
        let key = grace_key(t, presented);
        let deadline = tokio::time::Instant::now() + GRACE_WAIT;
        loop {
            if let Some(sealed) = self.deps().ephemeral.get(&key).await? {
                let plain = self.inner.signer.master_keys().open(&sealed, &key)?;
                return Ok(serde_json::from_slice(&plain).ok());
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A rotated token came back: revoke the family everywhere, audit, alert the person.
    async fn reuse_detected(
        &self,
        t: &LiveTenant,
        family: SessionId,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        self.inner.metrics.refresh_reuse();
        let d = self.deps();
        let now = self.now();
        let session = d.store.session(t.row.id, family).await?;
        self.end_session(t, family, now).await?;
        let user_id = session.as_ref().map(|s| s.user_id);
        self.audit(
            t,
            kind::REFRESH_REUSE,
            user_id,
            meta,
            json!({"session": family}),
        )
        .await?;
        tracing::warn!(tenant = %t.row.name, session = %family, "refresh token reuse: session revoked");
        if let Some(user_id) = user_id
            && let Some(user) = d.store.user(t.row.id, user_id).await?
        {
            self.send_later(t, &user.email, Mail::SessionEnded);
        }
        Ok(())
    }

    /// Revokes the family of a refresh token (RFC 7009); unknown tokens are ignored.
    pub(super) async fn revoke_refresh_token(
        &self,
        t: &LiveTenant,
        refresh_token: &str,
        meta: &RequestMeta,
    ) -> Result<bool, IdentityError> {
        if refresh_token.len() > MAX_REFRESH_TOKEN_BYTES {
            return Ok(false);
        }
        let d = self.deps();
        let Some(record) = d
            .store
            .refresh_token(t.row.id, &sha256(refresh_token.as_bytes()))
            .await?
        else {
            return Ok(false);
        };
        let session = d.store.session(t.row.id, record.session_id).await?;
        self.end_session(t, record.session_id, self.now()).await?;
        self.audit(
            t,
            kind::TOKEN_REVOKED,
            session.map(|s| s.user_id),
            meta,
            json!({"session": record.session_id, "token_type": "refresh_token"}),
        )
        .await?;
        Ok(true)
    }
}

/// The scope of a refreshed access token: the session's, or the subset `asked` names (in
/// the session's order); a scope the session was not granted is `InvalidScope`.
fn narrowed_scope(granted: &str, asked: Option<&str>) -> Result<String, IdentityError> {
    let Some(asked) = asked else {
        return Ok(granted.to_owned());
    };
    let granted: Vec<&str> = granted.split_whitespace().collect();
    let asked: Vec<&str> = asked.split_whitespace().collect();
    if asked.is_empty() {
        return Ok(granted.join(" "));
    }
    if asked.iter().any(|s| !granted.contains(s)) {
        return Err(IdentityError::InvalidScope);
    }
    Ok(granted
        .into_iter()
        .filter(|s| asked.contains(s))
        .collect::<Vec<_>>()
        .join(" "))
}

fn grace_key(t: &LiveTenant, presented: &[u8]) -> String {
    format!("refresh-grace:{}:{}", t.row.id, hex(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_may_narrow_the_scope_but_never_widen_it() {
        let granted = "openid orders.read orders.write";
        assert_eq!(narrowed_scope(granted, None).ok().as_deref(), Some(granted));
        assert_eq!(
            narrowed_scope(granted, Some(" ")).ok().as_deref(),
            Some(granted)
        );
        assert_eq!(
            narrowed_scope(granted, Some("orders.write openid"))
                .ok()
                .as_deref(),
            Some("openid orders.write")
        );
        assert!(matches!(
            narrowed_scope(granted, Some("openid admin")),
            Err(IdentityError::InvalidScope)
        ));
    }
}
