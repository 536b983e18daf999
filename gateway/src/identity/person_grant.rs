//! Tokens for a person a registered client was authorized for (an authorization code, an
//! approved device code): a session of its own for the client (its refresh family) that keeps
//! the browser sign-in's `auth_time`, `amr` and `acr`; an access token by the client's
//! lifetime and audience; an ID token when `openid` was granted; the audit event and metric.

use super::audit::kind;
use super::id_token::{self, IdClaims, PersonClaims};
use super::metrics::Grant;
use super::relying_party::{GrantType, RelyingParty};
use super::signin::SessionGrant;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, RequestMeta};
use chrono::{DateTime, Utc};
use keygate_core::ids::{SessionId, UserId};
use serde_json::json;

/// Tokens issued at the token endpoint (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    /// The RFC 9068 JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque refresh token, when the client may use the refresh grant.
    pub refresh_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
    /// The ID token, when `openid` was granted.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What the person authorized, and how they had signed in.
pub(super) struct PersonGrant {
    /// The person.
    pub user_id: UserId,
    /// The browser session they approved in (the ID token's `sid`).
    pub browser_session: SessionId,
    /// When they signed in there.
    pub auth_time: DateTime<Utc>,
    /// How.
    pub amr: Vec<String>,
    /// At which level.
    pub acr: Option<String>,
    /// The scopes granted.
    pub scope: String,
    /// The authorization request's `nonce`.
    pub nonce: Option<String>,
    /// The grant, for the metric and the audit event.
    pub grant: Grant,
}

impl IdentityService {
    /// Issues the tokens of `g` to `client`; also returns the session opened for them.
    pub(super) async fn issue_to_person(
        &self,
        t: &LiveTenant,
        client: &RelyingParty,
        g: PersonGrant,
        meta: &RequestMeta,
    ) -> Result<(IssuedTokens, SessionId), IdentityError> {
        let subject = self
            .active_subject(t, g.user_id)
            .await?
            .ok_or(IdentityError::InvalidGrant)?;
        let opened = self
            .open_session(
                t,
                &subject.user,
                SessionGrant {
                    amr: g.amr.clone(),
                    acr: g.acr.clone(),
                    client_id: client.client_id.clone(),
                    scope: g.scope.clone(),
                    browser: false,
                    auth_time: Some(g.auth_time),
                    login_audit: None,
                },
                meta,
            )
            .await?;
        let family = opened.session.id;
        let mut claims = self.person_claims(
            t,
            &subject.user,
            &opened.session,
            &client.client_id,
            &g.scope,
            &subject.roles,
            &subject.permissions,
        );
        let ttl = client.access_token_ttl(t);
        claims.aud = client.audience(t);
        claims.exp = claims.iat + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let access_token = super::tokens::mint(&self.inner.signer, t, &claims).await?;
        let id_ttl = client.record.lifetimes.id_token.unwrap_or(ttl);
        let id_token = if g.scope.split_whitespace().any(|s| s == "openid") {
            let now = self.now();
            let claims = IdClaims {
                iss: t.issuer.clone(),
                sub: subject.user.id.to_string(),
                aud: client.client_id.clone(),
                azp: client.client_id.clone(),
                exp: now.timestamp() + i64::try_from(id_ttl.as_secs()).unwrap_or(300),
                iat: now.timestamp(),
                auth_time: g.auth_time.timestamp(),
                nonce: g.nonce,
                acr: g.acr,
                amr: g.amr,
                sid: Some(g.browser_session.to_string()),
                at_hash: None,
                person: PersonClaims::of(&subject.user, &g.scope),
            };
            Some(
                id_token::mint(
                    &self.inner.signer,
                    t,
                    client.record.id_token_signed_response_alg,
                    claims,
                    Some(&access_token),
                )
                .await?,
            )
        } else {
            None
        };
        self.audit(
            t,
            kind::TOKEN_ISSUED,
            Some(subject.user.id),
            meta,
            json!({"grant": g.grant.label(), "client_id": client.client_id, "session": family}),
        )
        .await?;
        self.inner.metrics.issued(g.grant);
        let issued = IssuedTokens {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl.as_secs(),
            refresh_token: client
                .allows(GrantType::RefreshToken)
                .then_some(opened.refresh_token),
            scope: g.scope,
            id_token,
        };
        Ok((issued, family))
    }
}
