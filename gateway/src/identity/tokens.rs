//! RFC 9068 access tokens: minting with the tenant's active key and verifying against its
//! published keys, with the checks a careful resource server makes (typ, kid, algorithm
//! allow-list, issuer, audience, expiry and not-before against the service clock).

use super::IdentityError;
use super::signer::SigningKeys;
use super::tenants::LiveTenant;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 30;

/// The claims of a keygate access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub iss: String,
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub tenant: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// OpenID Connect's `email_verified`: whether `email` was proven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Signs `claims` as an access token with the tenant's active key (`kid` and `typ` always set).
pub(crate) async fn mint(
    signer: &SigningKeys,
    tenant: &LiveTenant,
    claims: &AccessClaims,
) -> Result<String, IdentityError> {
    sign(signer, tenant, ACCESS_TOKEN_TYP, claims).await
}

/// Signs `claims` with the tenant's active key under the explicit type `typ` (RFC 8725
/// §3.11): every kind of JWT keygate signs has its own, so one is never taken for another.
pub(crate) async fn sign(
    signer: &SigningKeys,
    tenant: &LiveTenant,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, IdentityError> {
    let key = signer
        .active(tenant.row.id, tenant.settings.signing.algorithm)
        .await?;
    let mut header = Header::new(key.algorithm);
    header.typ = Some(typ.into());
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(&header, claims, &key.key)
        .map_err(keygate_core::crypto::CryptoError::from)?;
    Ok(token)
}

/// Verifies an access token of `tenant` at `now`; a failure is [`IdentityError::InvalidToken`],
/// or [`IdentityError::ExpiredToken`] for a token of the tenant past its `exp`.
pub(crate) async fn verify(
    signer: &SigningKeys,
    tenant: &LiveTenant,
    token: &str,
    now: DateTime<Utc>,
) -> Result<AccessClaims, IdentityError> {
    verify_with(signer, tenant, token, now, true).await
}

/// [`verify`] without the audience check, for introspection and revocation by clients,
/// whose tokens may carry their own audience (an OAuthClient's `audience`).
pub(crate) async fn verify_for_any_audience(
    signer: &SigningKeys,
    tenant: &LiveTenant,
    token: &str,
    now: DateTime<Utc>,
) -> Result<AccessClaims, IdentityError> {
    verify_with(signer, tenant, token, now, false).await
}

async fn verify_with(
    signer: &SigningKeys,
    tenant: &LiveTenant,
    token: &str,
    now: DateTime<Utc>,
    tenant_audience: bool,
) -> Result<AccessClaims, IdentityError> {
    if token.len() > 16 * 1024 {
        return Err(IdentityError::InvalidToken);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdentityError::InvalidToken)?;
    // Only access tokens are credentials here: the same tenant key signs the tokens handed
    // to upstream apps (`keygate-upstream+jwt`, `upstream.rs`), which must never pass.
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(IdentityError::InvalidToken);
    }
    let kid = header.kid.as_deref().ok_or(IdentityError::InvalidToken)?;
    let key = signer
        .verifying(tenant.row.id, kid)
        .await?
        .ok_or(IdentityError::InvalidToken)?;
    // The key decides the algorithm, never the token: `none`, HS* or another family fail here.
    if header.alg != key.algorithm {
        return Err(IdentityError::InvalidToken);
    }
    let mut validation = Validation::new(key.algorithm);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[tenant.issuer.as_str()]);
    if tenant_audience {
        validation.set_audience(&tenant.audience);
    } else {
        validation.validate_aud = false;
    }
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "sub", "aud"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
        .map_err(|_| IdentityError::InvalidToken)?;
    let claims = data.claims;
    let now = now.timestamp();
    if claims.nbf - LEEWAY_SECS > now || claims.tenant != tenant.row.name {
        return Err(IdentityError::InvalidToken);
    }
    // Only a token that is otherwise this tenant's valid token is called expired.
    if claims.exp + LEEWAY_SECS <= now {
        return Err(IdentityError::ExpiredToken);
    }
    Ok(claims)
}
