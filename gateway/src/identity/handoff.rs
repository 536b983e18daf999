//! Sign-in for apps on other hosts: the per-host handoff. The session cookie is host-only on
//! the gateway's public host, so a browser never shows it to `app.example.com`. After
//! sign-in the gateway sends the browser to `https://<app host>/.keygate/callback?code=…`
//! with a one-time code; the proxy routes that path to the gateway, which redeems the code
//! and sets a host-only cookie for the app host.
//!
//! A code is single use (taken atomically from the ephemeral store), lives
//! [`HANDOFF_CODE_TTL`], and is bound to the app host, the return URL and a nonce cookie the
//! app host set before the browser left for sign-in (only its SHA-256 travels to the
//! sign-in page), so a code that leaks is worth nothing in another browser or on another
//! host.
//!
//! The app host's cookie is a child of the sign-in session, not a session of its own: its
//! record (in the ephemeral store, never longer than the parent can live) points at the
//! parent's cookie hash, and every check resolves the parent. Signing out or revoking the
//! session (from any host) ends every child at once; a child never outlives its parent. A
//! child lost with the ephemeral store costs the browser one redirect: the sign-in page
//! recognises the parent cookie and hands off again without asking for a password.

use super::audit::kind;
use super::session_cookie::cookie_hash;
use super::tenants::LiveTenant;
use super::{Credential, IdentityError, IdentityService, Principal, RequestMeta, hex};
use chrono::{DateTime, Utc};
use keygate_core::crypto::random::random_token;
use keygate_core::crypto::{constant_time_eq, sha256};
use keygate_core::ids::{SessionId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long a handoff code can be redeemed.
pub const HANDOFF_CODE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a handoff code may be redeemed and what it leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffTarget {
    /// The app host as its `Host` header names it (`app.example.com`, or with `:port`).
    pub host: String,
    /// The allow-listed URL the browser returns to after redeeming.
    pub return_url: String,
    /// Lower-case hex SHA-256 of the nonce cookie the app host set.
    pub nonce_hash: String,
}

/// A redeemed handoff: the app host's cookie and where the browser goes next.
#[derive(Clone)]
pub struct HostSession {
    /// The app host's cookie value (an opaque 256-bit token; secret).
    pub cookie_value: String,
    /// Cookie lifetime: what is left of the parent session.
    pub max_age: std::time::Duration,
    /// The return URL the code was bound to.
    pub return_url: String,
}

impl std::fmt::Debug for HostSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSession")
            .field("max_age", &self.max_age)
            .field("return_url", &self.return_url)
            .finish_non_exhaustive()
    }
}

/// A code waiting to be redeemed, under the SHA-256 of the code.
#[derive(Serialize, Deserialize)]
struct PendingCode {
    tenant: String,
    session_id: SessionId,
    parent_hash: [u8; 32],
    host: String,
    return_url: String,
    nonce_hash: String,
    expires_at: DateTime<Utc>,
}

/// A child cookie of an app host, under the SHA-256 of its token.
#[derive(Serialize, Deserialize)]
struct ChildCookie {
    tenant_id: TenantId,
    session_id: SessionId,
    parent_hash: [u8; 32],
    host: String,
}

fn code_key(code_hash: &[u8]) -> String {
    format!("handoff-code:{}", hex(code_hash))
}

fn child_key(tenant: TenantId, token_hash: &[u8]) -> String {
    format!("session-host:{tenant}:{}", hex(token_hash))
}

/// Lower-case hex SHA-256 of a nonce cookie's value, as a handoff binds it.
pub fn nonce_hash(nonce: &str) -> String {
    hex(&sha256(nonce.as_bytes()))
}

impl IdentityService {
    /// Issues a one-time code that hands the session behind `session_cookie` (the gateway
    /// host's cookie) to `target`'s host. `InvalidToken` when the cookie names no live
    /// session; `InvalidRequest` when the nonce hash is not one.
    #[tracing::instrument(name = "identity.issue_handoff", level = "debug", skip_all)]
    pub async fn issue_handoff(
        &self,
        t: &LiveTenant,
        session_cookie: &str,
        target: &HandoffTarget,
    ) -> Result<String, IdentityError> {
        let well_formed = target.nonce_hash.len() == 64
            && target
                .nonce_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(IdentityError::InvalidRequest(
                "handoff is not a nonce hash".into(),
            ));
        }
        let parent_hash = cookie_hash(session_cookie).ok_or(IdentityError::InvalidToken)?;
        let principal = self.session_principal_by_hash(t, parent_hash).await?;
        let session_id = principal.session_id().ok_or(IdentityError::InvalidToken)?;
        let code = random_token()?;
        let pending = PendingCode {
            tenant: t.row.name.clone(),
            session_id,
            parent_hash,
            host: target.host.to_ascii_lowercase(),
            return_url: target.return_url.clone(),
            nonce_hash: target.nonce_hash.clone(),
            expires_at: self.now() + super::chrono_duration(HANDOFF_CODE_TTL),
        };
        let value = serde_json::to_vec(&pending)
            .map_err(|e| IdentityError::Internal(format!("handoff code: {e}")))?;
        self.deps()
            .ephemeral
            .put(
                &code_key(&sha256(code.as_bytes())),
                &value,
                HANDOFF_CODE_TTL,
            )
            .await?;
        Ok(code)
    }

    /// Redeems a handoff code on the app host `host` (its `Host` header) for the browser
    /// holding the nonce cookie `nonce`: a child cookie of the session for that host.
    /// Every refusal (unknown, used, expired, another host, another browser, the session
    /// ended) is `InvalidLink`, and the code is spent either way.
    #[tracing::instrument(name = "identity.redeem_handoff", level = "debug", skip_all)]
    pub async fn redeem_handoff(
        &self,
        code: &str,
        host: &str,
        nonce: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<HostSession, IdentityError> {
        let code_hash = cookie_hash(code).ok_or(IdentityError::InvalidLink)?;
        let taken = self.deps().ephemeral.take(&code_key(&code_hash)).await?;
        let pending: PendingCode = taken
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(IdentityError::InvalidLink)?;
        let now = self.now();
        let same_browser = nonce.is_some_and(|n| {
            constant_time_eq(nonce_hash(n).as_bytes(), pending.nonce_hash.as_bytes())
        });
        if now >= pending.expires_at || !pending.host.eq_ignore_ascii_case(host) || !same_browser {
            return Err(IdentityError::InvalidLink);
        }
        let t = self.tenant(&pending.tenant).await?;
        let principal = match self
            .session_principal_by_hash(&t, pending.parent_hash)
            .await
        {
            Ok(p) if p.session_id() == Some(pending.session_id) => p,
            Ok(_)
            | Err(
                IdentityError::InvalidToken
                | IdentityError::ExpiredToken
                | IdentityError::RevokedToken,
            ) => return Err(IdentityError::InvalidLink),
            Err(e) => return Err(e),
        };
        let Credential::SessionCookie { expires_at, .. } = principal.credential else {
            return Err(IdentityError::InvalidLink);
        };
        let max_age = (expires_at - now).to_std().unwrap_or_default();
        let cookie_value = random_token()?;
        let child = ChildCookie {
            tenant_id: t.row.id,
            session_id: pending.session_id,
            parent_hash: pending.parent_hash,
            host: pending.host.clone(),
        };
        let value = serde_json::to_vec(&child)
            .map_err(|e| IdentityError::Internal(format!("host cookie: {e}")))?;
        self.deps()
            .ephemeral
            .put(
                &child_key(t.row.id, &sha256(cookie_value.as_bytes())),
                &value,
                max_age,
            )
            .await?;
        self.audit(
            &t,
            kind::SESSION_HANDOFF,
            principal.user_id,
            meta,
            json!({"session": pending.session_id, "host": pending.host}),
        )
        .await?;
        Ok(HostSession {
            cookie_value,
            max_age,
            return_url: pending.return_url,
        })
    }

    /// Resolves an app host's child cookie of tenant `t`: the revocation set first, then the
    /// parent session as its own cookie would resolve.
    pub(super) async fn host_session_principal(
        &self,
        t: &LiveTenant,
        cookie: &str,
    ) -> Result<Principal, IdentityError> {
        let token_hash = cookie_hash(cookie).ok_or(IdentityError::InvalidToken)?;
        let d = self.deps();
        let bytes = match d.ephemeral.get(&child_key(t.row.id, &token_hash)).await {
            Ok(bytes) => bytes.ok_or(IdentityError::InvalidToken)?,
            // Without its record the cookie cannot be told from a forgery: refused, and the
            // browser's next sign-in redirect hands off again.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an app host's session record");
                return Err(IdentityError::InvalidToken);
            }
        };
        let child: ChildCookie =
            serde_json::from_slice(&bytes).map_err(|_| IdentityError::InvalidToken)?;
        if child.tenant_id != t.row.id
            || d.ephemeral
                .revocations()
                .contains(&child.session_id.to_string())
        {
            return Err(IdentityError::InvalidToken);
        }
        let principal = self.session_principal_by_hash(t, child.parent_hash).await?;
        if principal.session_id() != Some(child.session_id) {
            return Err(IdentityError::InvalidToken);
        }
        Ok(principal)
    }
}
