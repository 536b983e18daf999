//! The client credentials grant (RFC 6749 §4.4): a confidential client gets an access token
//! for itself. The client is the subject (`sub` = `client_id`), the scope comes from its
//! `allowedScopes` only (no person's permissions are involved), and there is no session,
//! refresh token or ID token.

use super::audit::kind;
use super::metrics::Grant;
use super::relying_party::{ClientCredentials, GrantType};
use super::signin::admit_network;
use super::tokens::{self, AccessClaims};
use super::{IdentityError, IdentityService, IssuedTokens, RequestMeta, chrono_duration};
use serde_json::json;

impl IdentityService {
    /// `grant_type=client_credentials` for the client `credentials` prove, with `scope`
    /// (space-separated, within its `allowedScopes`; `openid` is never granted here, as no
    /// person signs in).
    pub async fn client_credentials_grant(
        &self,
        tenant: &str,
        credentials: &ClientCredentials,
        scope: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<IssuedTokens, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let client = self.authenticate_relying_party(&t, credentials).await?;
        self.limit_oauth(&t, &client.client_id, meta).await?;
        if !client.confidential || !client.allows(GrantType::ClientCredentials) {
            return Err(IdentityError::UnauthorizedClient);
        }
        let asked = scope.map(str::trim).filter(|s| !s.is_empty());
        // Without a scope asked for, the client gets what it is allowed except `openid`.
        let granted = match asked {
            Some(a) => client.scope_for(Some(a))?,
            None => client
                .allowed_scopes()
                .iter()
                .filter(|s| *s != "openid")
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        };
        if granted.split_whitespace().any(|s| s == "openid") {
            return Err(IdentityError::InvalidScope);
        }
        let now = self.now();
        let ttl = client.access_token_ttl(&t);
        let claims = AccessClaims {
            iss: t.issuer.clone(),
            sub: client.client_id.clone(),
            aud: client.audience(&t),
            exp: (now + chrono_duration(ttl)).timestamp(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: uuid::Uuid::now_v7().to_string(),
            client_id: client.client_id.clone(),
            sid: None,
            tenant: t.row.name.clone(),
            roles: Vec::new(),
            permissions: Vec::new(),
            scope: granted.clone(),
            amr: Vec::new(),
            acr: None,
            auth_time: now.timestamp(),
            email: None,
            email_verified: None,
        };
        let access_token = tokens::mint(&self.inner.signer, &t, &claims).await?;
        self.audit(
            &t,
            kind::TOKEN_ISSUED,
            None,
            meta,
            json!({"grant": "client_credentials", "client_id": client.client_id, "jti": claims.jti}),
        )
        .await?;
        self.inner.metrics.issued(Grant::ClientCredentials);
        Ok(IssuedTokens {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl.as_secs(),
            refresh_token: None,
            scope: granted,
            id_token: None,
        })
    }
}
