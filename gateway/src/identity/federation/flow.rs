//! The browser's round trip to a provider: [`IdentityService::sso_start`] keeps the
//! sign-in's secrets server-side (PKCE verifier, nonce, where to go afterwards) under the
//! hash of a random `state`, for at most [`STATE_TTL`], bound to the browser by a random
//! value the pages set as a cookie; [`IdentityService::sso_finish`] takes them back exactly
//! once, checks the browser, lets the protocol module verify the provider's answer, and
//! hands the identity to the door.

use super::{FederatedIdentity, FederatedOutcome, FederationRefusal, github, hex, oidc, saml};
use crate::identity::{IdentityError, IdentityService, Principal, RequestMeta};
use chrono::{DateTime, Utc};
use keygate_core::crypto::{constant_time_eq, random::random_token, sha256};
use keygate_core::federation::{Protocol, callback_path, saml_acs_path};
use keygate_core::ids::{IdpId, SessionId, UserId};
use openidconnect::PkceCodeChallenge;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// How long a started sign-in waits for the provider's answer.
pub const STATE_TTL: Duration = Duration::from_secs(600);

/// A sign-in to start.
#[derive(Clone, Debug, Default)]
pub struct SsoStart {
    /// The IdentityProvider's name.
    pub provider: String,
    /// Where to send the browser afterwards (already checked against the tenant's allow-list).
    pub return_to: Option<String>,
    /// Ask the provider to authenticate the person again (`prompt=login`, `max_age=0`).
    pub fresh: bool,
    /// The app host's nonce hash of a cross-host handoff in progress, kept for afterwards.
    pub handoff: Option<String>,
    /// A step-up of this signed-in person's session (an account without a local password
    /// proving itself again): the sign-in is fresh, must come back as the same person, and
    /// raises this session instead of opening another.
    pub step_up: Option<Principal>,
}

/// A started sign-in: where to send the browser, and the value of the cookie that binds
/// the answer to this browser.
#[derive(Clone)]
pub struct SsoStarted {
    /// The provider's authorization URL.
    pub redirect: String,
    /// The binding cookie's value (only its hash is stored).
    pub binding: String,
    /// The answer comes back as a cross-site form POST (SAML), which a SameSite=Lax cookie
    /// does not accompany.
    pub cross_site_post: bool,
}

impl std::fmt::Debug for SsoStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoStarted").finish_non_exhaustive()
    }
}

/// The provider's answer at the callback, as sent.
#[derive(Clone, Default, Deserialize)]
pub struct SsoCallback {
    /// Authorization code.
    pub code: Option<String>,
    /// The `state` keygate sent.
    pub state: Option<String>,
    /// OAuth error code, when the provider refused.
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
    /// A SAML IdP's `SAMLResponse` (base64), taken from the assertion consumer service's
    /// form POST only, never from a query.
    #[serde(skip)]
    pub saml_response: Option<String>,
}

impl std::fmt::Debug for SsoCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoCallback")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// A finished sign-in and where the browser goes next.
#[derive(Clone, Debug)]
pub struct SsoFinished {
    /// Signed in, or a link to claim.
    pub outcome: FederatedOutcome,
    /// The return URL given at the start.
    pub return_to: Option<String>,
    /// The handoff given at the start.
    pub handoff: Option<String>,
}

/// A started sign-in's secrets, kept under the hash of its `state`.
#[derive(Serialize, Deserialize)]
struct Pending {
    tenant: uuid::Uuid,
    idp: IdpId,
    binding: String,
    pkce: String,
    nonce: String,
    return_to: Option<String>,
    handoff: Option<String>,
    fresh_since: Option<DateTime<Utc>>,
    #[serde(default)]
    step_up: Option<PendingStepUp>,
    /// The ID of the AuthnRequest sent (SAML): the answer's `InResponseTo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    saml_request: Option<String>,
}

/// The session a started step-up raises, and whose it is.
#[derive(Serialize, Deserialize)]
struct PendingStepUp {
    session: SessionId,
    user: UserId,
}

fn state_key(state: &str) -> String {
    format!("fed-state:{}", hex(&sha256(state.as_bytes())))
}

fn refused(r: FederationRefusal) -> IdentityError {
    IdentityError::Federation(r)
}

impl IdentityService {
    /// The URL providers redirect back to for `provider` of `tenant`.
    pub fn sso_redirect_uri(&self, tenant: &str, provider: &str) -> String {
        format!("{}{}", self.public_url(), callback_path(tenant, provider))
    }

    /// The assertion consumer service URL of SAML provider `provider` of `tenant`.
    pub fn saml_acs_url(&self, tenant: &str, provider: &str) -> String {
        format!("{}{}", self.public_url(), saml_acs_path(tenant, provider))
    }

    /// Starts a sign-in at a provider (rate-limited per address like password sign-ins).
    pub async fn sso_start(
        &self,
        tenant: &str,
        start: SsoStart,
        meta: &RequestMeta,
    ) -> Result<SsoStarted, IdentityError> {
        let t = self.tenant(tenant).await?;
        crate::identity::signin::admit_network(&t, meta)?;
        if let Some(ip) = meta.ip {
            self.limit(
                "sso-start-ip",
                &format!("{}:{ip}", t.row.id),
                self.deps().limits.sign_in_per_ip,
            )
            .await?;
        }
        let (row, live) = self.live_provider(&t, &start.provider).await?;
        let step_up = match &start.step_up {
            Some(p) => Some(self.step_up_through(&t, &row, p).await?),
            None => None,
        };
        let fresh = start.fresh || step_up.is_some();
        let state = random_token()?;
        let nonce = random_token()?;
        let binding = random_token()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let redirect_uri = self.sso_redirect_uri(&t.row.name, &row.name);
        // An XML ID (NCName): a letter or `_` first.
        let saml_request = matches!(live.settings.protocol, Protocol::Saml(_))
            .then(|| random_token().map(|r| format!("_{r}")))
            .transpose()?;
        let redirect = match &live.settings.protocol {
            Protocol::Oidc(_) | Protocol::Google(_) => oidc::authorize_url(
                &live,
                oidc::Authorize {
                    redirect: &redirect_uri,
                    state: state.clone(),
                    nonce: nonce.clone(),
                    pkce: challenge,
                    fresh,
                },
            )?,
            Protocol::Github(_) => github::authorize_url(
                &live,
                &self.inner.providers.options().endpoints.github,
                &redirect_uri,
                state.clone(),
                challenge,
            )?,
            Protocol::Saml(_) => saml::authn_redirect(
                &live,
                &self.saml_acs_url(&t.row.name, &row.name),
                saml_request.as_deref().unwrap_or_default(),
                &state,
                fresh,
            )?,
        };
        let pending = Pending {
            tenant: t.row.id.0,
            idp: row.id,
            binding: hex(&sha256(binding.as_bytes())),
            pkce: verifier.secret().clone(),
            nonce,
            return_to: start.return_to,
            handoff: start.handoff,
            fresh_since: fresh.then(|| self.now()),
            step_up,
            saml_request,
        };
        let bytes = serde_json::to_vec(&pending)
            .map_err(|e| IdentityError::Internal(format!("sign-in state: {e}")))?;
        self.deps()
            .ephemeral
            .put(&state_key(&state), &bytes, STATE_TTL)
            .await?;
        Ok(SsoStarted {
            redirect,
            binding,
            cross_site_post: pending.saml_request.is_some(),
        })
    }

    /// Finishes a sign-in at the callback: the `state` is spent whatever happens, then the
    /// browser (its binding cookie), the provider's answer and the identity are checked.
    pub async fn sso_finish(
        &self,
        tenant: &str,
        provider: &str,
        callback: SsoCallback,
        binding: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<SsoFinished, IdentityError> {
        let t = self.tenant(tenant).await?;
        let result = self.finish(&t, provider, callback, binding, meta).await;
        if let Err(IdentityError::Federation(r)) = &result
            && !matches!(r, FederationRefusal::EmailDomainNotAllowed)
        {
            tracing::info!(tenant = %t.row.name, provider, refusal = %r, "upstream sign-in refused");
        }
        result
    }

    async fn finish(
        &self,
        t: &crate::identity::LiveTenant,
        provider: &str,
        callback: SsoCallback,
        binding: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<SsoFinished, IdentityError> {
        let state = callback
            .state
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or(refused(FederationRefusal::InvalidState))?;
        let raw = self
            .deps()
            .ephemeral
            .take(&state_key(state))
            .await?
            .ok_or(refused(FederationRefusal::InvalidState))?;
        let pending: Pending =
            serde_json::from_slice(&raw).map_err(|_| refused(FederationRefusal::InvalidState))?;
        let (row, live) = self.live_provider(t, provider).await?;
        let same_browser = binding.is_some_and(|b| {
            constant_time_eq(
                hex(&sha256(b.as_bytes())).as_bytes(),
                pending.binding.as_bytes(),
            )
        });
        if pending.tenant != t.row.id.0 || pending.idp != row.id || !same_browser {
            self.audit(
                t,
                crate::identity::audit::kind::LOGIN_FAILED,
                None,
                meta,
                json!({"reason": "invalid_state", "provider": row.name}),
            )
            .await?;
            return Err(refused(FederationRefusal::InvalidState));
        }
        if let Some(error) = callback.error {
            return Err(refused(FederationRefusal::ProviderError {
                error: error.chars().take(100).collect(),
                description: callback
                    .error_description
                    .map(|d| d.chars().take(300).collect()),
            }));
        }
        let identity = self.answer(t, &row.name, &live, callback, &pending).await;
        let identity = match identity {
            Ok(identity) => identity,
            Err(e) => {
                let reason = match &e {
                    IdentityError::Federation(r) => super::refusal_code(r),
                    _ => "error",
                };
                self.audit(
                    t,
                    crate::identity::audit::kind::LOGIN_FAILED,
                    None,
                    meta,
                    json!({"reason": reason, "provider": row.name}),
                )
                .await?;
                return Err(e);
            }
        };
        if pending.fresh_since.is_some() && identity.auth_time.is_none() {
            // A provider that cannot say when the person authenticated (GitHub) proves no
            // fresh sign-in: refused rather than taken as one.
            return Err(refused(FederationRefusal::FreshnessUnknown));
        }
        let outcome = match pending.step_up {
            Some(s) => {
                self.raise_through_upstream(t, &row, s.session, s.user, identity, meta)
                    .await?
            }
            None => self.sign_in_federated(&t.row.name, identity, meta).await?,
        };
        Ok(SsoFinished {
            outcome,
            return_to: pending.return_to,
            handoff: pending.handoff,
        })
    }

    /// The identity in the provider's answer, checked by its protocol module.
    async fn answer(
        &self,
        t: &crate::identity::LiveTenant,
        provider: &str,
        live: &super::providers::LiveProvider,
        callback: SsoCallback,
        pending: &Pending,
    ) -> Result<FederatedIdentity, IdentityError> {
        let code = || {
            callback
                .code
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| refused(FederationRefusal::InvalidAnswer("no code".into())))
        };
        let redirect_uri = self.sso_redirect_uri(&t.row.name, provider);
        match &live.settings.protocol {
            Protocol::Oidc(_) | Protocol::Google(_) => {
                oidc::identity(
                    live,
                    oidc::Finish {
                        provider,
                        redirect: &redirect_uri,
                        code: code()?,
                        pkce_verifier: pending.pkce.clone(),
                        nonce: pending.nonce.clone(),
                        fresh_since: pending.fresh_since,
                        clock: self.deps().clock.clone(),
                    },
                )
                .await
            }
            Protocol::Github(_) => {
                github::identity(
                    live,
                    &self.inner.providers.options().endpoints.github,
                    provider,
                    &redirect_uri,
                    code()?,
                    pending.pkce.clone(),
                )
                .await
            }
            Protocol::Saml(_) => {
                let (Some(response), Some(request_id)) = (
                    callback.saml_response.as_deref(),
                    pending.saml_request.as_deref(),
                ) else {
                    return Err(refused(FederationRefusal::InvalidAnswer(
                        "no SAMLResponse was posted".into(),
                    )));
                };
                let checked = saml::check(
                    live,
                    saml::Finish {
                        provider,
                        acs: &self.saml_acs_url(&t.row.name, provider),
                        response,
                        request_id,
                        fresh_since: pending.fresh_since,
                        now: self.now(),
                    },
                )?;
                self.first_use_of_assertion(t, live, &checked).await?;
                Ok(checked.identity)
            }
        }
    }

    /// Refuses an assertion whose ID was seen before at this IdP (on any replica: the count
    /// lives in the shared ephemeral store until the assertion expires).
    async fn first_use_of_assertion(
        &self,
        t: &crate::identity::LiveTenant,
        live: &super::providers::LiveProvider,
        checked: &saml::Checked,
    ) -> Result<(), IdentityError> {
        let issuer = live
            .saml
            .as_ref()
            .map(|m| m.entity_id.as_str())
            .unwrap_or("");
        let key = format!(
            "saml-assertion:{}:{}",
            t.row.id,
            hex(&sha256(
                format!("{issuer}\n{}", checked.assertion_id).as_bytes()
            ))
        );
        let remaining = (checked.valid_until - self.now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        if self.deps().ephemeral.hit(&key, remaining).await? > 1 {
            return Err(refused(FederationRefusal::InvalidAnswer(
                "this assertion was used before (replay)".into(),
            )));
        }
        Ok(())
    }
}

impl IdentityService {
    /// The session a step-up through `idp` raises: the caller's, who must be a person
    /// linked to `idp` (another provider's account proves nothing about this one).
    async fn step_up_through(
        &self,
        t: &crate::identity::LiveTenant,
        idp: &keygate_core::store::IdentityProvider,
        p: &Principal,
    ) -> Result<PendingStepUp, IdentityError> {
        let session = p.session_id().ok_or(IdentityError::Forbidden)?;
        let user = p.user_id.ok_or(IdentityError::Forbidden)?;
        if p.tenant_id != t.row.id {
            return Err(IdentityError::Forbidden);
        }
        let linked = self
            .deps()
            .store
            .identities_of_user(t.row.id, user)
            .await?
            .iter()
            .any(|l| l.idp_id == idp.id);
        if !linked {
            return Err(IdentityError::NotFound);
        }
        Ok(PendingStepUp { session, user })
    }

    /// Finishes a step-up through `idp`: `identity` (verified, and fresh: its `auth_time` is
    /// no older than the step-up's start) must be the link of `user`, the session's person;
    /// then the link's groups are refreshed and `session` is raised (`auth_time` now, `fed`
    /// among its methods). Another person's identity is audited and refused.
    async fn raise_through_upstream(
        &self,
        t: &crate::identity::LiveTenant,
        idp: &keygate_core::store::IdentityProvider,
        session: SessionId,
        user: UserId,
        identity: FederatedIdentity,
        meta: &RequestMeta,
    ) -> Result<FederatedOutcome, IdentityError> {
        let d = self.deps();
        let link = d
            .store
            .identity_by_subject(t.row.id, idp.id, &identity.subject)
            .await?
            .filter(|l| l.user_id == user);
        let Some(link) = link else {
            self.audit(
                t,
                crate::identity::audit::kind::MFA_FAILED,
                Some(user),
                meta,
                json!({"reason": "upstream_other_person", "provider": idp.name, "session": session}),
            )
            .await?;
            return Err(IdentityError::Federation(
                FederationRefusal::NotTheSamePerson,
            ));
        };
        let person = d
            .store
            .user(t.row.id, user)
            .await?
            .filter(|u| u.status == keygate_core::store::UserStatus::Active)
            .ok_or(IdentityError::AccountSuspended)?;
        d.store
            .touch_identity(
                t.row.id,
                link.id,
                self.now(),
                &super::kept_groups(&identity.groups),
            )
            .await?;
        self.inner.subjects.forget(t.row.id, user);
        self.raise_session_by(t, &person, session, &[super::AMR_FEDERATED], meta)
            .await?;
        Ok(FederatedOutcome::SteppedUp)
    }
}
