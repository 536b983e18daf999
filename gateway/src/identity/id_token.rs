//! OpenID Connect ID tokens (Core §2): signed with the algorithm the client registered
//! (`idTokenSignedResponseAlg`: RS256, which every tenant keeps a key of, or the tenant's
//! own), else with the tenant's active key like its access tokens; addressed to the client (`aud`, `azp`), typed `JWT` so
//! the access-token verifier (`typ: at+jwt`) never takes one for a credential, and carrying
//! what the sign-in proved (`auth_time`, `acr`, `amr`, `sid`) and the request asked
//! (`nonce`, the claims of its scopes).

use super::IdentityError;
use super::signer::SigningKeys;
use super::tenants::LiveTenant;
use jsonwebtoken::{Algorithm, Header};
use keygate_core::crypto::oidc::access_token_hash;
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::User;
use serde::Serialize;

/// The `typ` of ID tokens (OpenID Connect leaves it to the JWT default).
pub(crate) const ID_TOKEN_TYP: &str = "JWT";

/// The claims of an ID token.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    pub amr: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(flatten)]
    pub person: PersonClaims,
}

/// The claims about the person that the granted scopes release (Core §5.4), shared by ID
/// tokens and userinfo.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct PersonClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

impl PersonClaims {
    /// What `scope` releases of `user`: `email` the address and whether it was verified,
    /// `profile` the display name (and the address as `preferred_username`), `groups` the
    /// local groups.
    pub fn of(user: &User, scope: &str) -> Self {
        let has = |s: &str| scope.split_whitespace().any(|x| x == s);
        Self {
            email: has("email").then(|| user.email.clone()),
            email_verified: has("email").then_some(user.email_verified),
            name: has("profile").then(|| user.display_name.clone()),
            preferred_username: has("profile").then(|| user.email.clone()),
            groups: has("groups").then(|| user.groups.clone()),
        }
    }
}

/// The JOSE algorithm `key` signs with, as keygate names it (for `at_hash`).
fn signing_algorithm(alg: Algorithm) -> SigningAlgorithm {
    match alg {
        Algorithm::ES256 => SigningAlgorithm::ES256,
        Algorithm::EdDSA => SigningAlgorithm::EdDSA,
        _ => SigningAlgorithm::RS256,
    }
}

/// Signs `claims` for a client that registered `asked` as its ID-token algorithm (the
/// tenant's active key of that algorithm) or nothing (the key that signs the tenant's access
/// tokens), adding `at_hash` of `access_token` by that key's algorithm.
pub(crate) async fn mint(
    signer: &SigningKeys,
    tenant: &LiveTenant,
    asked: Option<SigningAlgorithm>,
    mut claims: IdClaims,
    access_token: Option<&str>,
) -> Result<String, IdentityError> {
    let key = match asked {
        None => {
            signer
                .active(tenant.row.id, tenant.settings.signing.algorithm)
                .await?
        }
        // The operator refuses a client asking an algorithm the tenant keeps no keys of; a
        // chain's first key may still wait for its publish lead (a tenant that changed its
        // algorithm), and an ID token of another algorithm would fail the client's check.
        Some(alg) => signer.active_of(tenant.row.id, alg).await?.ok_or_else(|| {
            IdentityError::Internal(format!(
                "tenant `{}` has no active {} signing key for ID tokens yet",
                tenant.row.name,
                alg.as_str()
            ))
        })?,
    };
    claims.at_hash = access_token.map(|t| access_token_hash(signing_algorithm(key.algorithm), t));
    let mut header = Header::new(key.algorithm);
    header.typ = Some(ID_TOKEN_TYP.into());
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &key.key)
        .map_err(keygate_core::crypto::CryptoError::from)?;
    Ok(token)
}

/// What the ID token of a refresh is made of.
pub(crate) struct Refresh<'a> {
    /// The client's registration; `None` for the built-in client.
    pub client: Option<&'a keygate_core::store::OAuthClient>,
    /// The refresh family (its `auth_time`, `acr`, `amr`).
    pub session: &'a keygate_core::store::Session,
    /// The person.
    pub user: &'a User,
    /// The scope of the refreshed access token.
    pub scope: &'a str,
    /// The access token issued beside it (for `at_hash`) and its lifetime.
    pub access_token: &'a str,
    /// The access token's lifetime: the ID token's unless the client sets its own.
    pub access_ttl: std::time::Duration,
}

/// The ID token of a refresh (OpenID Connect Core §12.2) for a registered client whose
/// grant still holds `openid`: the same `iss`, `sub`, `aud` and `azp`, the original
/// `auth_time`, `acr` and `amr`, no `nonce` (none was sent), and no `sid` (the browser
/// session it was approved in is not recorded on the refresh family). `None` for the
/// built-in client, which never receives ID tokens.
pub(crate) async fn refreshed(
    signer: &SigningKeys,
    tenant: &LiveTenant,
    r: Refresh<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, IdentityError> {
    let Some(client) = r
        .client
        .filter(|_| r.scope.split_whitespace().any(|s| s == "openid"))
    else {
        return Ok(None);
    };
    let ttl = client.lifetimes.id_token.unwrap_or(r.access_ttl);
    let claims = IdClaims {
        iss: tenant.issuer.clone(),
        sub: r.user.id.to_string(),
        aud: client.client_id.clone(),
        azp: client.client_id.clone(),
        exp: now.timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(300),
        iat: now.timestamp(),
        auth_time: r.session.auth_time.timestamp(),
        nonce: None,
        acr: r.session.acr.clone(),
        amr: r.session.amr.clone(),
        sid: None,
        at_hash: None,
        person: PersonClaims::of(r.user, r.scope),
    };
    mint(
        signer,
        tenant,
        client.id_token_signed_response_alg,
        claims,
        Some(r.access_token),
    )
    .await
    .map(Some)
}
