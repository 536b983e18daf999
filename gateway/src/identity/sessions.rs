//! The caller's sessions: list, revoke one, revoke all (logout-all), and RFC 7009 token
//! revocation. Every revocation reaches all replicas through the ephemeral store.

use super::audit::kind;
use super::{IdentityError, IdentityService, Principal, RequestMeta, SessionInfo};
use keygate_core::ids::SessionId;
use serde_json::json;

impl IdentityService {
    /// The calling person's active sessions, newest first.
    #[tracing::instrument(name = "identity.list_sessions", level = "debug", skip_all)]
    pub async fn list_sessions(
        &self,
        caller: &Principal,
    ) -> Result<Vec<SessionInfo>, IdentityError> {
        let user = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let now = self.now();
        let current = caller.session_id();
        let revocations = self.deps().ephemeral.revocations();
        Ok(self
            .deps()
            .store
            .active_sessions_of_user(caller.tenant_id, user, now)
            .await?
            .into_iter()
            .filter(|s| !revocations.contains(&s.id.to_string()))
            .map(|s| SessionInfo {
                current: Some(s.id) == current,
                id: s.id,
                user_agent: s.user_agent,
                ip: s.ip,
                amr: s.amr,
                acr: s.acr,
                auth_time: s.auth_time,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.idle_expires_at.min(s.absolute_expires_at),
            })
            .collect())
    }

    /// Revokes one of the caller's sessions; another person's session answers `NotFound`.
    #[tracing::instrument(name = "identity.revoke_session", level = "debug", skip_all)]
    pub async fn revoke_session(
        &self,
        caller: &Principal,
        session: SessionId,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let user = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let t = self.tenant(&caller.tenant).await?;
        let owned = self
            .deps()
            .store
            .session(t.row.id, session)
            .await?
            .filter(|s| s.user_id == user);
        if owned.is_none() {
            return Err(IdentityError::NotFound);
        }
        self.end_session(&t, session, self.now()).await?;
        self.audit(
            &t,
            kind::SESSION_REVOKED,
            Some(user),
            meta,
            json!({"session": session}),
        )
        .await?;
        Ok(())
    }

    /// Ends the session behind the caller's credential (sign-out).
    #[tracing::instrument(name = "identity.sign_out", level = "debug", skip_all)]
    pub async fn sign_out(
        &self,
        caller: &Principal,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        match caller.session_id() {
            Some(session) => self.revoke_session(caller, session, meta).await,
            None => Err(IdentityError::Forbidden),
        }
    }

    /// Logout-all: revokes every session of the calling person; returns how many.
    #[tracing::instrument(name = "identity.logout_all", level = "debug", skip_all)]
    pub async fn logout_all(
        &self,
        caller: &Principal,
        meta: &RequestMeta,
    ) -> Result<u64, IdentityError> {
        let user = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let t = self.tenant(&caller.tenant).await?;
        let count = self.revoke_all_sessions(&t, user).await?;
        self.audit(
            &t,
            kind::LOGOUT_ALL,
            Some(user),
            meta,
            json!({"sessions": count}),
        )
        .await?;
        Ok(count)
    }

    /// Ends every session of the calling person except the one they are using; returns how
    /// many ended.
    #[tracing::instrument(name = "identity.end_other_sessions", level = "debug", skip_all)]
    pub async fn end_other_sessions(
        &self,
        caller: &Principal,
        meta: &RequestMeta,
    ) -> Result<u64, IdentityError> {
        let user = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let current = caller.session_id().ok_or(IdentityError::Forbidden)?;
        let t = self.tenant(&caller.tenant).await?;
        let now = self.now();
        let mut ended = 0;
        for s in self
            .deps()
            .store
            .active_sessions_of_user(t.row.id, user, now)
            .await?
        {
            if s.id != current {
                self.end_session(&t, s.id, now).await?;
                ended += 1;
            }
        }
        self.audit(
            &t,
            kind::OTHER_SESSIONS_ENDED,
            Some(user),
            meta,
            json!({"sessions": ended}),
        )
        .await?;
        Ok(ended)
    }

    /// Revokes every open session of an account, in the store and on every replica.
    pub(super) async fn revoke_all_sessions(
        &self,
        t: &super::tenants::LiveTenant,
        user: keygate_core::ids::UserId,
    ) -> Result<u64, IdentityError> {
        let d = self.deps();
        let now = self.now();
        let open = d.store.active_sessions_of_user(t.row.id, user, now).await?;
        let count = d.store.revoke_user_sessions(t.row.id, user, now).await?;
        let ttl = self.session_revocation_ttl(t);
        for s in open {
            d.ephemeral.revoke(&s.id.to_string(), ttl).await?;
            self.forget_hot_session(t, &s).await?;
        }
        Ok(count)
    }

    /// RFC 7009: revokes a refresh token (its whole family) or an access token (its `jti`
    /// and session). Unknown, invalid or foreign tokens are silently accepted, as the RFC asks.
    #[tracing::instrument(name = "identity.revoke_token", level = "debug", skip_all)]
    pub async fn revoke_token(
        &self,
        tenant: &str,
        token: &str,
        hint: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        if hint != Some("access_token") && self.revoke_refresh_token(&t, token, meta).await? {
            return Ok(());
        }
        if let Ok(p) = self.access_token_principal(&t, token).await
            && let super::Credential::AccessToken {
                jti, session_id, ..
            } = &p.credential
        {
            let ttl = self.revocation_ttl(&t);
            self.deps().ephemeral.revoke(jti, ttl).await?;
            if let Some(session) = session_id {
                self.end_session(&t, *session, self.now()).await?;
            }
            self.audit(
                &t,
                kind::TOKEN_REVOKED,
                p.user_id,
                meta,
                json!({"session": session_id, "token_type": "access_token"}),
            )
            .await?;
            return Ok(());
        }
        if hint == Some("access_token") {
            self.revoke_refresh_token(&t, token, meta).await?;
        }
        Ok(())
    }
}
