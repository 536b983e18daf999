//! Introspection (RFC 7662) and revocation (RFC 7009) asked by a registered client with its
//! own credentials: a client learns about, and revokes, only tokens issued to itself; for
//! any other token introspection answers `active: false` and revocation does nothing, the
//! same answers as for an unknown token.

use super::audit::kind;
use super::relying_party::ClientCredentials;
use super::tenants::LiveTenant;
use super::tokens;
use super::{IdentityError, IdentityService, Introspection, RequestMeta};
use keygate_core::crypto::sha256;
use serde_json::json;

/// Longest refresh token looked at.
const MAX_REFRESH_TOKEN_BYTES: usize = 512;

impl IdentityService {
    /// What the token is, unfiltered: a live access token (signature, issuer, audience of the
    /// tenant or expiry, not revoked) or a live, unspent refresh token.
    async fn token_facts(
        &self,
        t: &LiveTenant,
        token: &str,
        hint: Option<&str>,
    ) -> Result<Introspection, IdentityError> {
        let now = self.now();
        if hint != Some("refresh_token")
            && let Ok(claims) =
                tokens::verify_for_any_audience(&self.inner.signer, t, token, now).await
        {
            let revocations = self.deps().ephemeral.revocations();
            let revoked = revocations.contains(&claims.jti)
                || claims
                    .sid
                    .as_deref()
                    .is_some_and(|s| revocations.contains(s));
            if revoked {
                return Ok(Introspection::default());
            }
            return Ok(Introspection {
                active: true,
                token_type: Some("access_token".into()),
                sub: Some(claims.sub),
                client_id: Some(claims.client_id),
                scope: Some(claims.scope),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                iss: Some(claims.iss),
                sid: claims.sid,
                jti: Some(claims.jti),
            });
        }
        if token.len() > MAX_REFRESH_TOKEN_BYTES {
            return Ok(Introspection::default());
        }
        let d = self.deps();
        let Some(record) = d
            .store
            .refresh_token(t.row.id, &sha256(token.as_bytes()))
            .await?
        else {
            return Ok(Introspection::default());
        };
        if record.rotated_at.is_some() || record.expires_at <= now {
            return Ok(Introspection::default());
        }
        let Some(session) = d
            .store
            .session(t.row.id, record.session_id)
            .await?
            .filter(|s| s.is_active(now))
        else {
            return Ok(Introspection::default());
        };
        Ok(Introspection {
            active: true,
            token_type: Some("refresh_token".into()),
            sub: Some(session.user_id.to_string()),
            client_id: Some(session.client_id),
            scope: Some(session.scope),
            exp: Some(record.expires_at.timestamp()),
            iat: Some(record.issued_at.timestamp()),
            iss: Some(t.issuer.clone()),
            sid: Some(session.id.to_string()),
            jti: None,
        })
    }

    /// RFC 7662 introspection by a confidential client: tokens issued to it only.
    pub async fn introspect_for_client(
        &self,
        tenant: &str,
        credentials: &ClientCredentials,
        token: &str,
        hint: Option<&str>,
    ) -> Result<Introspection, IdentityError> {
        let t = self.tenant(tenant).await?;
        let client = self.authenticate_relying_party(&t, credentials).await?;
        if !client.confidential {
            return Err(IdentityError::InvalidClient);
        }
        let facts = self.token_facts(&t, token, hint).await?;
        if facts.client_id.as_deref() != Some(client.client_id.as_str()) {
            return Ok(Introspection::default());
        }
        Ok(facts)
    }

    /// RFC 7009 revocation by a registered client (public ones by id): a token issued to
    /// it is revoked (a refresh token with its session, an access token by `jti` and its
    /// session); any other token is left alone with the same answer.
    pub async fn revoke_for_client(
        &self,
        tenant: &str,
        credentials: &ClientCredentials,
        token: &str,
        hint: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        let client = self.authenticate_relying_party(&t, credentials).await?;
        let facts = self.token_facts(&t, token, hint).await?;
        if !facts.active || facts.client_id.as_deref() != Some(client.client_id.as_str()) {
            return Ok(());
        }
        if facts.token_type.as_deref() == Some("refresh_token") {
            self.revoke_refresh_token(&t, token, meta).await?;
            return Ok(());
        }
        if let Some(jti) = &facts.jti {
            self.deps()
                .ephemeral
                .revoke(jti, self.revocation_ttl(&t))
                .await?;
        }
        if let Some(sid) = facts.sid.as_deref().and_then(|s| s.parse().ok()) {
            self.end_session(&t, sid, self.now()).await?;
        }
        self.audit(
            &t,
            kind::TOKEN_REVOKED,
            None,
            meta,
            json!({"client_id": client.client_id, "session": facts.sid, "token_type": "access_token"}),
        )
        .await?;
        Ok(())
    }
}
