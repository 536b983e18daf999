//! The authorization code grant of the OpenID Provider (RFC 6749 §4.1, OpenID Connect Core
//! §3.1) with PKCE (RFC 7636): checking an authorization request, deciding whether the
//! browser must sign in first, issuing the code, and redeeming it at the token endpoint.
//!
//! A code is 256 random bits; only its SHA-256 names the pending grant in the ephemeral
//! store. It is taken atomically on redemption (single use), lives
//! [`AUTHORIZATION_CODE_TTL`] by the service clock, and is bound to the client, the redirect
//! URI and the PKCE challenge. A redeemed code leaves a marker naming the session it opened,
//! so presenting it again revokes that session (RFC 6749 §4.1.2).

use super::audit::kind;
use super::metrics::Grant;
use super::person_grant::{IssuedTokens, PersonGrant};
use super::relying_party::{ClientCredentials, GrantType, RelyingParty};
use super::session_cookie::cookie_hash;
use super::signin::admit_network;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, Principal, RequestMeta, chrono_duration, hex};
use chrono::{DateTime, Utc};
use keygate_core::crypto::oidc::{is_pkce_verifier, pkce_s256_challenge};
use keygate_core::crypto::random::random_token;
use keygate_core::crypto::{constant_time_eq, sha256};
use keygate_core::ids::{SessionId, TenantId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// How long an authorization code can be redeemed.
pub const AUTHORIZATION_CODE_TTL: Duration = Duration::from_secs(60);
/// How long a redeemed code is remembered, so a replay revokes what it issued.
const SPENT_CODE_TTL: Duration = Duration::from_secs(600);
/// How long a "signed in after" mark on a return URL is believed (see
/// [`Authorization::sign_in_needed`]).
const FRESH_SIGN_IN_WINDOW: i64 = 600;
/// Longest `state`, `nonce`, `login_hint` or `acr_values` kept.
const MAX_PARAM_BYTES: usize = 512;

/// An authorization request as the client sent it (query or form parameters).
#[derive(Clone, Debug, Default)]
pub struct AuthorizationRequest {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// A registered client.
    pub client_id: Option<String>,
    /// One of its registered redirect URIs.
    pub redirect_uri: Option<String>,
    /// Space-separated scopes, each in the client's `allowedScopes`.
    pub scope: Option<String>,
    /// Opaque value returned to the client.
    pub state: Option<String>,
    /// Put into the ID token.
    pub nonce: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// Must be `S256` when a challenge is given.
    pub code_challenge_method: Option<String>,
    /// `none`, `login`, `consent` (space-separated).
    pub prompt: Option<String>,
    /// Seconds since the last active sign-in the client accepts.
    pub max_age: Option<String>,
    /// The address to prefill on the sign-in page.
    pub login_hint: Option<String>,
    /// Requested authentication context classes (recorded; step-up is not offered yet).
    pub acr_values: Option<String>,
}

/// The `prompt` values (OpenID Connect Core §3.1.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// Show nothing; fail if the person would have to act.
    pub none: bool,
    /// Ask for the password again.
    pub login: bool,
    /// Ask for consent again.
    pub consent: bool,
}

/// A checked authorization request (kept in the ephemeral store while the consent page waits).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Authorization {
    /// The registered client.
    pub client_id: String,
    /// Where the answer goes (registered).
    pub redirect_uri: String,
    /// The scopes asked for, each allowed to the client.
    pub scope: String,
    /// Returned unchanged.
    pub state: Option<String>,
    /// `prompt`.
    pub prompt: Prompt,
    /// `max_age` in seconds.
    pub max_age: Option<u64>,
    /// The address to prefill on the sign-in page.
    pub login_hint: Option<String>,
    /// Whether the client asks each person to approve its scopes once.
    pub consent_required: bool,
    nonce: Option<String>,
    code_challenge: Option<String>,
    acr_values: Option<String>,
}

/// An error answered at the client's redirect URI (RFC 6749 §4.1.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationError {
    /// The registered redirect URI.
    pub redirect_uri: String,
    /// The request's `state`.
    pub state: Option<String>,
    /// `invalid_request`, `unauthorized_client`, `unsupported_response_type`,
    /// `invalid_scope`, `access_denied`, `login_required`, `consent_required`,
    /// `temporarily_unavailable`, `server_error`.
    pub error: &'static str,
    /// Why.
    pub description: String,
}

/// Why an authorization request was not granted.
#[derive(Debug)]
pub enum AuthorizeRefusal {
    /// The client or its redirect URI cannot be trusted: tell the person, never redirect
    /// (RFC 6749 §4.1.2.1). The text says what is wrong.
    NoRedirect(&'static str),
    /// Tell the client at its redirect URI.
    ToClient(AuthorizationError),
    /// The address or the client is over its `/authorize` budget: a page (429 with
    /// `Retry-After`), not a redirect, so a flood is not bounced onto the client.
    RateLimited {
        /// When the window ends.
        retry_after: Duration,
    },
}

/// What the browser's sign-in state means for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInNeeded {
    /// The session will do.
    No,
    /// Send the browser to sign in (again), then back.
    Yes,
    /// The client asked for no interaction (`prompt=none`) and the person would have to sign in.
    LoginRequired,
}

impl Authorization {
    /// An error for the client's redirect URI.
    pub fn refuse(&self, error: &'static str, description: impl Into<String>) -> AuthorizeRefusal {
        AuthorizeRefusal::ToClient(AuthorizationError {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            error,
            description: description.into(),
        })
    }

    /// Every scope must be one `person` may be granted (an OpenID Connect standard scope or
    /// a permission they hold), else `invalid_scope`.
    pub(super) fn check_grantable(&self, person: &Principal) -> Result<(), AuthorizeRefusal> {
        if self
            .scope
            .split_whitespace()
            .all(|s| super::scopes::grantable(s, &person.permissions))
        {
            Ok(())
        } else {
            Err(self.refuse("invalid_scope", "a scope is not one this person may grant"))
        }
    }

    /// Whether the person behind `session` (the browser's session, if any) must sign in
    /// before a code is issued: no session, `prompt=login`, or a sign-in older than
    /// `max_age`. `signed_in_after` is the mark the gateway put on the return URL when it sent
    /// the browser to sign in (unix seconds): a sign-in at or after it (and a mark not older
    /// than ten minutes) satisfies `prompt=login` and `max_age`, so the return does not loop.
    /// A client that forges the mark gains nothing: it only accepts a sign-in made after it.
    pub fn sign_in_needed(
        &self,
        session: Option<&Principal>,
        signed_in_after: Option<i64>,
        now: DateTime<Utc>,
    ) -> SignInNeeded {
        let need = match session.and_then(Principal::auth_time) {
            None => true,
            Some(auth_time) => {
                let fresh = signed_in_after.is_some_and(|after| {
                    auth_time.timestamp() >= after
                        && now.timestamp() - after <= FRESH_SIGN_IN_WINDOW
                });
                let too_old = self.max_age.is_some_and(|max| {
                    now.timestamp() - auth_time.timestamp() > i64::try_from(max).unwrap_or(i64::MAX)
                });
                !fresh && (self.prompt.login || too_old)
            }
        };
        match (need, self.prompt.none) {
            (false, _) => SignInNeeded::No,
            (true, true) => SignInNeeded::LoginRequired,
            (true, false) => SignInNeeded::Yes,
        }
    }
}

/// A code waiting to be redeemed, under the SHA-256 of the code.
#[derive(Serialize, Deserialize)]
struct PendingCode {
    tenant_id: TenantId,
    client_id: String,
    redirect_uri: String,
    code_challenge: Option<String>,
    scope: String,
    nonce: Option<String>,
    user_id: UserId,
    /// The browser session the person signed in with (the ID token's `sid`).
    session_id: SessionId,
    auth_time: DateTime<Utc>,
    amr: Vec<String>,
    acr: Option<String>,
    acr_values: Option<String>,
    expires_at: DateTime<Utc>,
}

fn code_key(t: &LiveTenant, code_hash: &[u8]) -> String {
    format!("authz-code:{}:{}", t.row.id, hex(code_hash))
}

fn spent_key(t: &LiveTenant, code_hash: &[u8]) -> String {
    format!("authz-spent:{}:{}", t.row.id, hex(code_hash))
}

/// A parameter kept as given, or refused when it is too long or holds control characters.
fn bounded(v: Option<&String>) -> Result<Option<String>, &'static str> {
    match v.map(String::as_str).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.len() > MAX_PARAM_BYTES || v.chars().any(char::is_control) => {
            Err("a parameter is too long or holds control characters")
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

impl IdentityService {
    /// Checks an authorization request of tenant `tenant` before anyone signs in: a
    /// registered client and redirect URI (else nothing is redirected), then `code` as the
    /// response type, the client's grant, scopes within `allowedScopes`, PKCE (`S256`,
    /// required of public clients), and the per-address and per-client rate limits.
    pub async fn check_authorization(
        &self,
        tenant: &str,
        req: &AuthorizationRequest,
        meta: &RequestMeta,
    ) -> Result<Authorization, AuthorizeRefusal> {
        let t = self
            .tenant(tenant)
            .await
            .map_err(|_| AuthorizeRefusal::NoRedirect("This organisation does not exist."))?;
        let client_id = req.client_id.as_deref().unwrap_or_default();
        let client = match self.relying_party(&t, client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(AuthorizeRefusal::NoRedirect(
                    "The application that sent you here is not registered with this organisation.",
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up an OAuth client");
                return Err(AuthorizeRefusal::NoRedirect(
                    "This is not available right now. Try again shortly.",
                ));
            }
        };
        let redirect_uri = req.redirect_uri.clone().unwrap_or_default();
        if !client.redirect_uri_registered(&redirect_uri) {
            return Err(AuthorizeRefusal::NoRedirect(
                "The application asked to return to an address it did not register.",
            ));
        }
        let mut auth = Authorization {
            client_id: client.client_id.clone(),
            redirect_uri,
            scope: String::new(),
            state: None,
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
            consent_required: client.consent_required,
            nonce: None,
            code_challenge: None,
            acr_values: None,
        };
        // From here on, refusals go back to the client.
        auth.state = bounded(req.state.as_ref()).map_err(|e| auth.refuse("invalid_request", e))?;
        self.check_request_parameters(&t, &client, req, &mut auth, meta)
            .await?;
        Ok(auth)
    }

    /// The parameters of a request whose client and redirect URI are trusted.
    async fn check_request_parameters(
        &self,
        t: &LiveTenant,
        client: &RelyingParty,
        req: &AuthorizationRequest,
        auth: &mut Authorization,
        meta: &RequestMeta,
    ) -> Result<(), AuthorizeRefusal> {
        if !t.settings.network.permits(meta.ip) {
            return Err(auth.refuse("access_denied", "your network may not sign in here"));
        }
        if let Err(e) = self.limit_oauth(t, &client.client_id, meta).await {
            return Err(match e {
                IdentityError::RateLimited { retry_after } => {
                    AuthorizeRefusal::RateLimited { retry_after }
                }
                _ => auth.refuse("temporarily_unavailable", "try again shortly"),
            });
        }
        if req.response_type.as_deref() != Some("code") {
            return Err(auth.refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(auth.refuse(
                "unauthorized_client",
                "this client may not use the authorization code grant",
            ));
        }
        auth.scope = client
            .scope_for(req.scope.as_deref())
            .map_err(|_| auth.refuse("invalid_scope", "a scope is not allowed to this client"))?;
        let checked = (
            bounded(req.nonce.as_ref()),
            bounded(req.login_hint.as_ref()),
            bounded(req.acr_values.as_ref()),
        );
        match checked {
            (Ok(nonce), Ok(login_hint), Ok(acr_values)) => {
                auth.nonce = nonce;
                auth.login_hint = login_hint;
                auth.acr_values = acr_values;
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return Err(auth.refuse("invalid_request", e));
            }
        }
        auth.code_challenge = match (
            req.code_challenge.as_deref(),
            req.code_challenge_method.as_deref(),
        ) {
            (None | Some(""), _) if !client.confidential => {
                return Err(auth.refuse(
                    "invalid_request",
                    "a public client must use PKCE (code_challenge, S256)",
                ));
            }
            (None | Some(""), _) => None,
            (Some(c), Some("S256")) if c.len() == 43 && is_pkce_verifier(c) => Some(c.to_owned()),
            (Some(_), Some("S256")) => {
                return Err(
                    auth.refuse("invalid_request", "code_challenge is not an S256 challenge")
                );
            }
            (Some(_), _) => {
                return Err(auth.refuse(
                    "invalid_request",
                    "only code_challenge_method=S256 is supported",
                ));
            }
        };
        for p in req.prompt.as_deref().unwrap_or_default().split_whitespace() {
            match p {
                "none" => auth.prompt.none = true,
                "login" => auth.prompt.login = true,
                "consent" => auth.prompt.consent = true,
                _ => {
                    return Err(
                        auth.refuse("invalid_request", "prompt must be none, login or consent")
                    );
                }
            }
        }
        if auth.prompt.none && (auth.prompt.login || auth.prompt.consent) {
            return Err(auth.refuse("invalid_request", "prompt=none cannot be combined"));
        }
        auth.max_age = match req.max_age.as_deref().filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(m.parse().map_err(|_| {
                auth.refuse("invalid_request", "max_age must be a number of seconds")
            })?),
        };
        Ok(())
    }

    /// Counts one `/authorize` or `/token` request against the per-address and per-client
    /// budgets (a request refused by the first does not count against the second).
    pub(super) async fn limit_oauth(
        &self,
        t: &LiveTenant,
        client_id: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let limits = self.deps().limits;
        if let Some(ip) = meta.ip {
            self.limit(
                "oauth-ip",
                &format!("{}:{ip}", t.row.id),
                limits.oauth_per_ip,
            )
            .await?;
        }
        self.limit(
            "oauth-client",
            &format!("{}:{}", t.row.id, hex(&sha256(client_id.as_bytes()))),
            limits.oauth_per_client,
        )
        .await
    }

    /// Issues the authorization code of `auth` for the person signed in as `person` (the
    /// browser's session): every scope must be one they may be granted (an OpenID Connect
    /// standard scope or a permission they hold), else `invalid_scope`.
    pub async fn issue_authorization_code(
        &self,
        tenant: &str,
        auth: &Authorization,
        person: &Principal,
        meta: &RequestMeta,
    ) -> Result<String, AuthorizeRefusal> {
        let unavailable = |e: IdentityError| {
            tracing::warn!(error = %e, "cannot issue an authorization code");
            auth.refuse("temporarily_unavailable", "try again shortly")
        };
        let t = self.tenant(tenant).await.map_err(unavailable)?;
        let (Some(user_id), Some(session_id), Some(auth_time)) =
            (person.user_id, person.session_id(), person.auth_time())
        else {
            return Err(auth.refuse("login_required", "no signed-in person"));
        };
        auth.check_grantable(person)?;
        let code = random_token().map_err(|e| unavailable(e.into()))?;
        let pending = PendingCode {
            tenant_id: t.row.id,
            client_id: auth.client_id.clone(),
            redirect_uri: auth.redirect_uri.clone(),
            code_challenge: auth.code_challenge.clone(),
            scope: auth.scope.clone(),
            nonce: auth.nonce.clone(),
            user_id,
            session_id,
            auth_time,
            amr: person.amr().to_vec(),
            acr: person.acr().map(str::to_owned),
            acr_values: auth.acr_values.clone(),
            expires_at: self.now() + chrono_duration(AUTHORIZATION_CODE_TTL),
        };
        let value = serde_json::to_vec(&pending)
            .map_err(|e| unavailable(IdentityError::Internal(e.to_string())))?;
        self.deps()
            .ephemeral
            .put(
                &code_key(&t, &sha256(code.as_bytes())),
                &value,
                AUTHORIZATION_CODE_TTL,
            )
            .await
            .map_err(|e| unavailable(e.into()))?;
        self.audit(
            &t,
            kind::AUTHORIZED,
            Some(user_id),
            meta,
            json!({"client_id": auth.client_id, "scope": auth.scope, "session": session_id, "acr_values": auth.acr_values}),
        )
        .await
        .map_err(unavailable)?;
        Ok(code)
    }

    /// Redeems an authorization code (`grant_type=authorization_code`) for the client that
    /// `credentials` prove: the code must be unspent, unexpired, issued to that client for
    /// `redirect_uri`, and answered by the PKCE verifier when it carried a challenge. A code
    /// presented again revokes the session its first redemption opened. Every refusal of
    /// the code is `InvalidGrant`, and the code is spent either way.
    pub async fn exchange_authorization_code(
        &self,
        tenant: &str,
        credentials: &ClientCredentials,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<IssuedTokens, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let client = self.authenticate_relying_party(&t, credentials).await?;
        self.limit_oauth(&t, &client.client_id, meta).await?;
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(IdentityError::UnauthorizedClient);
        }
        let code_hash = cookie_hash(code).ok_or(IdentityError::InvalidGrant)?;
        let d = self.deps();
        let Some(taken) = d.ephemeral.take(&code_key(&t, &code_hash)).await? else {
            self.replayed_code(&t, &code_hash, meta).await?;
            return Err(IdentityError::InvalidGrant);
        };
        let pending: PendingCode =
            serde_json::from_slice(&taken).map_err(|_| IdentityError::InvalidGrant)?;
        let proof_ok = match (&pending.code_challenge, verifier) {
            (Some(challenge), Some(v)) => {
                is_pkce_verifier(v)
                    && constant_time_eq(pkce_s256_challenge(v).as_bytes(), challenge.as_bytes())
            }
            (Some(_), None) => false,
            // A verifier without a challenge is refused (OAuth 2.1 §4.1.3): it suggests an
            // attacker swapped the code.
            (None, Some(_)) => false,
            (None, None) => true,
        };
        if self.now() >= pending.expires_at
            || pending.tenant_id != t.row.id
            || pending.client_id != client.client_id
            || redirect_uri != Some(pending.redirect_uri.as_str())
            || !proof_ok
            || d.ephemeral
                .revocations()
                .contains(&pending.session_id.to_string())
        {
            return Err(IdentityError::InvalidGrant);
        }
        let (issued, family) = self
            .issue_to_person(
                &t,
                &client,
                PersonGrant {
                    user_id: pending.user_id,
                    browser_session: pending.session_id,
                    auth_time: pending.auth_time,
                    amr: pending.amr,
                    acr: pending.acr,
                    scope: pending.scope,
                    nonce: pending.nonce,
                    grant: Grant::AuthorizationCode,
                },
                meta,
            )
            .await?;
        d.ephemeral
            .put(
                &spent_key(&t, &code_hash),
                family.to_string().as_bytes(),
                SPENT_CODE_TTL,
            )
            .await?;
        Ok(issued)
    }

    /// A code that is not pending: if it was redeemed before, revoke the session that
    /// redemption opened, everywhere, and audit the replay.
    async fn replayed_code(
        &self,
        t: &LiveTenant,
        code_hash: &[u8],
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let Some(marker) = self.deps().ephemeral.get(&spent_key(t, code_hash)).await? else {
            return Ok(());
        };
        let Some(family) = std::str::from_utf8(&marker)
            .ok()
            .and_then(|s| s.parse::<SessionId>().ok())
        else {
            return Ok(());
        };
        let session = self.deps().store.session(t.row.id, family).await?;
        self.end_session(t, family, self.now()).await?;
        self.audit(
            t,
            kind::CODE_REUSE,
            session.map(|s| s.user_id),
            meta,
            json!({"session": family}),
        )
        .await?;
        tracing::warn!(tenant = %t.row.name, session = %family, "authorization code replayed: its tokens were revoked");
        Ok(())
    }
}
