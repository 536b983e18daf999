//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): checking the relying
//! party's request — its `id_token_hint` (an ID token keygate signed for it, expired or
//! not) and its `post_logout_redirect_uri` (one it registered) — before the pages end the
//! browser's session.

use super::id_token::ID_TOKEN_TYP;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService};
use jsonwebtoken::Validation;
use keygate_core::ids::SessionId;
use serde::Deserialize;

/// What a relying party sent to the end-session endpoint.
#[derive(Clone, Debug, Default)]
pub struct LogoutRequest {
    /// An ID token keygate issued to the client.
    pub id_token_hint: Option<String>,
    /// The client (must match the hint's audience when both are given).
    pub client_id: Option<String>,
    /// Where to send the browser afterwards (registered by the client).
    pub post_logout_redirect_uri: Option<String>,
    /// Returned to the client with the redirect.
    pub state: Option<String>,
}

/// A checked logout request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logout {
    /// The session the hint names: ended when it is the browser's own.
    pub session: Option<SessionId>,
    /// Where the browser goes afterwards (with `state`), if the client registered it.
    pub redirect: Option<String>,
}

#[derive(Deserialize)]
struct HintClaims {
    aud: String,
    #[serde(default)]
    sid: Option<String>,
}

impl IdentityService {
    /// Checks a logout request of tenant `tenant`: a hint must be an ID token of this tenant
    /// (signature and issuer; expiry does not matter), and a `post_logout_redirect_uri`
    /// needs a client (the hint's audience or `client_id`) that registered it exactly.
    /// Anything else is `InvalidRequest`, and nothing is redirected.
    pub async fn check_logout(
        &self,
        tenant: &str,
        req: &LogoutRequest,
    ) -> Result<Logout, IdentityError> {
        let t = self.tenant(tenant).await?;
        let hint = match req.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => Some(self.verify_id_token_hint(&t, h).await?),
            None => None,
        };
        let client_id = req.client_id.as_deref().filter(|c| !c.is_empty());
        if let (Some(h), Some(c)) = (&hint, client_id)
            && h.aud != c
        {
            return Err(IdentityError::InvalidRequest(
                "client_id is not the ID token's audience".into(),
            ));
        }
        let client_id = hint.as_ref().map(|h| h.aud.as_str()).or(client_id);
        let redirect = match req
            .post_logout_redirect_uri
            .as_deref()
            .filter(|u| !u.is_empty())
        {
            None => None,
            Some(uri) => {
                let client = match client_id {
                    Some(c) => self.relying_party(&t, c).await?,
                    None => None,
                };
                let registered = client.is_some_and(|c| c.post_logout_uri_registered(uri));
                if !registered {
                    return Err(IdentityError::InvalidRequest(
                        "post_logout_redirect_uri is not registered by the client".into(),
                    ));
                }
                let mut u = url::Url::parse(uri).map_err(|_| {
                    IdentityError::InvalidRequest("post_logout_redirect_uri is not a URL".into())
                })?;
                if let Some(s) = req.state.as_deref().filter(|s| !s.is_empty()) {
                    u.query_pairs_mut().append_pair("state", s);
                }
                Some(u.to_string())
            }
        };
        let session = hint
            .and_then(|h| h.sid)
            .and_then(|s| s.parse::<SessionId>().ok());
        Ok(Logout { session, redirect })
    }

    async fn verify_id_token_hint(
        &self,
        t: &LiveTenant,
        token: &str,
    ) -> Result<HintClaims, IdentityError> {
        let bad = || {
            IdentityError::InvalidRequest("id_token_hint is not an ID token of this tenant".into())
        };
        if token.len() > 16 * 1024 {
            return Err(bad());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
        if header.typ.as_deref() != Some(ID_TOKEN_TYP) {
            return Err(bad());
        }
        let kid = header.kid.as_deref().ok_or_else(bad)?;
        let key = self
            .inner
            .signer
            .verifying(t.row.id, kid)
            .await?
            .ok_or_else(bad)?;
        if header.alg != key.algorithm {
            return Err(bad());
        }
        let mut validation = Validation::new(key.algorithm);
        // OpenID Connect RP-Initiated Logout §2: an expired ID token is a fine hint.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_issuer(&[t.issuer.as_str()]);
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        let data =
            jsonwebtoken::decode::<HintClaims>(token, &key.key, &validation).map_err(|_| bad())?;
        Ok(data.claims)
    }
}
