//! WebAuthn security keys and passkeys (`webauthn-rs`): registration, their use as the
//! second factor of a sign-in or a step-up, and passkey-only sign-in where the tenant's
//! `mfa.passkeySignIn` allows it.
//!
//! Every ceremony's state lives server-side in the ephemeral store for [`CEREMONY_TTL`],
//! keyed by a hash of an opaque id (or of the sign-in's `mfa_token`, or of the session), and
//! is taken (read and deleted at once) by the ceremony's second half, so an assertion or an
//! attestation is good for one ceremony only. The relying party is the gateway's public URL:
//! its host is the RP id and its origin the one origin accepted (a cross-host deployment
//! signs people in on that host, so that is where credentials are created and used).
//!
//! Credentials are `mfa_factors` rows of kind `webauthn`: the `Passkey` (public key, id,
//! signature counter) as JSON, sealed like a TOTP seed so the row cannot be moved to another
//! account or altered without the master key. Every accepted assertion writes the new
//! counter back with a compare-and-set, and `webauthn-rs` refuses an assertion whose
//! counter did not advance (a cloned authenticator). User verification is required, so an
//! accepted assertion proves `user` as well as possession: `hwk` for a credential bound to
//! its device, `swk` for a backup-eligible (syncable) one.

use super::audit::kind;
use super::levels::{AMR_HWK, AMR_PASSWORD, AMR_SWK, AMR_USER, amr_with};
use super::metrics::Grant;
use super::mfa::{BackupCodes, FactorInfo};
use super::signin::admit_network;
use super::step_up::SteppedUp;
use super::tenants::LiveTenant;
use super::{
    IdentityError, IdentityService, PasswordSignIn, Principal, RequestMeta, SignedIn, hex,
};
use keygate_core::crypto::random::random_token;
use keygate_core::crypto::sha256;
use keygate_core::ids::{FactorId, UserId};
use keygate_core::store::{Factor, FactorKind, NewFactor, User, factor_seal_context};
use keygate_core::tenant_settings::MfaPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Webauthn,
    WebauthnBuilder,
};

/// How long a ceremony waits for the authenticator's answer.
pub const CEREMONY_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// How many security keys and passkeys one account may register.
const MAX_CREDENTIALS: usize = 10;

/// The first half of a ceremony: what the browser passes to `navigator.credentials`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WebauthnOptions {
    /// Names the ceremony's server-side state; send it back with the answer (absent where
    /// the `mfa_token` or the session names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceremony_id: Option<String>,
    /// `{"publicKey": …}` for `navigator.credentials.create()` (registration) or `.get()`
    /// (authentication), binary fields in base64url.
    #[schema(value_type = Object)]
    pub options: Value,
    /// Seconds until the ceremony expires.
    pub expires_in: u64,
}

/// A pending registration.
#[derive(Serialize, Deserialize)]
struct Registration {
    user_id: UserId,
    label: String,
    state: PasskeyRegistration,
}

/// A pending assertion of a known account (second factor or step-up).
#[derive(Serialize, Deserialize)]
struct Assertion {
    user_id: UserId,
    state: PasskeyAuthentication,
}

/// A pending passkey-only sign-in.
#[derive(Serialize, Deserialize)]
struct Discoverable {
    client_id: Option<String>,
    scope: Option<String>,
    browser: bool,
    device: Option<String>,
    state: DiscoverableAuthentication,
}

/// What passkey-only sign-in asks for besides the passkey.
#[derive(Clone, Debug, Default)]
pub struct PasskeySignIn {
    /// OAuth client the tokens are for.
    pub client_id: Option<String>,
    /// Requested scopes.
    pub scope: Option<String>,
    /// Also set the browser session cookie.
    pub browser: bool,
    /// The device token of an earlier sign-in.
    pub device: Option<String>,
}

fn ceremony_key(t: &LiveTenant, purpose: &str, id: &str) -> String {
    format!(
        "webauthn:{purpose}:{}:{}",
        t.row.id,
        hex(&sha256(id.as_bytes()))
    )
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, IdentityError> {
    serde_json::to_vec(value).map_err(|e| IdentityError::Internal(format!("webauthn state: {e}")))
}

fn options_json<T: Serialize>(value: &T) -> Result<Value, IdentityError> {
    serde_json::to_value(value)
        .map_err(|e| IdentityError::Internal(format!("webauthn options: {e}")))
}

/// The browser's answer as the crate's type; anything else is a bad request.
pub fn parse_credential<T: serde::de::DeserializeOwned>(raw: Value) -> Result<T, IdentityError> {
    serde_json::from_value(raw)
        .map_err(|e| IdentityError::InvalidRequest(format!("credential: {e}")))
}

/// The `amr` an accepted assertion proves (user verification is always required).
fn methods_of(res: &AuthenticationResult) -> [&'static str; 2] {
    let key = if res.backup_eligible() {
        AMR_SWK
    } else {
        AMR_HWK
    };
    [key, AMR_USER]
}

/// A registered credential, opened.
struct Stored {
    factor: Factor,
    passkey: Passkey,
}

impl IdentityService {
    /// The relying party: the public URL's host as RP id, its origin the one accepted.
    fn webauthn_party(&self, t: &LiveTenant) -> Result<Webauthn, IdentityError> {
        let public = Url::parse(self.public_url())
            .map_err(|e| IdentityError::Internal(format!("public URL: {e}")))?;
        let rp_id = public.host_str().unwrap_or_default().to_owned();
        let origin = Url::parse(&public.origin().ascii_serialization())
            .map_err(|e| IdentityError::Internal(format!("public URL: {e}")))?;
        WebauthnBuilder::new(&rp_id, &origin)
            .map(|b| b.rp_name(t.display_name()).timeout(CEREMONY_TTL))
            .and_then(WebauthnBuilder::build)
            // A deployment setting, not a fault: say what to change instead of answering 500.
            .map_err(|e| {
                IdentityError::InvalidRequest(format!(
                    "security keys and passkeys need the gateway's public URL to be a host name \
                     (such as localhost or auth.example.com), not an IP address ({e})"
                ))
            })
    }

    async fn put_ceremony<T: Serialize>(&self, key: &str, value: &T) -> Result<(), IdentityError> {
        self.deps()
            .ephemeral
            .put(key, &encode(value)?, CEREMONY_TTL)
            .await?;
        Ok(())
    }

    /// Takes a ceremony's state: it completes one ceremony at most.
    async fn take_ceremony<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<T, IdentityError> {
        let bytes = self
            .deps()
            .ephemeral
            .take(key)
            .await?
            .ok_or(IdentityError::InvalidCeremony)?;
        serde_json::from_slice(&bytes).map_err(|_| IdentityError::InvalidCeremony)
    }

    /// The account's confirmed WebAuthn credentials, opened.
    async fn credentials(
        &self,
        t: &LiveTenant,
        user: UserId,
    ) -> Result<Vec<Stored>, IdentityError> {
        let d = self.deps();
        let mut out = Vec::new();
        for factor in d.store.factors_of_user(t.row.id, user).await? {
            if factor.kind != FactorKind::Webauthn || !factor.confirmed {
                continue;
            }
            let json = d.master_keys.open(&factor.secret, &factor.seal_context())?;
            let passkey: Passkey = serde_json::from_slice(&json)
                .map_err(|e| IdentityError::Internal(format!("stored credential: {e}")))?;
            out.push(Stored { factor, passkey });
        }
        Ok(out)
    }

    /// Starts registering a security key or passkey for the caller. The browser is asked
    /// for a discoverable credential where it can make one (`residentKey: preferred`), so
    /// the same passkey can later sign in alone where the tenant allows it.
    pub async fn begin_webauthn_registration(
        &self,
        p: &Principal,
        label: Option<&str>,
    ) -> Result<WebauthnOptions, IdentityError> {
        let (t, user) = self.person_of(p).await?;
        if t.settings.mfa.policy == MfaPolicy::Off {
            return Err(IdentityError::MfaDisabled);
        }
        let label = label
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or("Security key");
        if label.chars().count() > 64 {
            return Err(IdentityError::InvalidRequest(
                "label: at most 64 characters".into(),
            ));
        }
        let existing = self.credentials(&t, user.id).await?;
        if existing.len() >= MAX_CREDENTIALS {
            return Err(IdentityError::InvalidRequest(format!(
                "at most {MAX_CREDENTIALS} security keys and passkeys per account"
            )));
        }
        let exclude = existing
            .iter()
            .map(|s| s.passkey.cred_id().clone())
            .collect::<Vec<_>>();
        let (ccr, state) = self
            .webauthn_party(&t)?
            .start_passkey_registration(user.id.0, &user.email, &user.email, Some(exclude))
            .map_err(|e| IdentityError::Internal(format!("webauthn: {e}")))?;
        let mut options = options_json(&ccr)?;
        if let Some(sel) = options.pointer_mut("/publicKey/authenticatorSelection") {
            sel["residentKey"] = json!("preferred");
        }
        let id = random_token()?;
        let pending = Registration {
            user_id: user.id,
            label: label.to_owned(),
            state,
        };
        self.put_ceremony(&ceremony_key(&t, "reg", &id), &pending)
            .await?;
        Ok(WebauthnOptions {
            ceremony_id: Some(id),
            options,
            expires_in: CEREMONY_TTL.as_secs(),
        })
    }

    /// Finishes a registration with the authenticator's attestation: the credential becomes
    /// a confirmed factor; the account's first factor comes with backup codes.
    pub async fn finish_webauthn_registration(
        &self,
        p: &Principal,
        ceremony: &str,
        credential: &RegisterPublicKeyCredential,
        meta: &RequestMeta,
    ) -> Result<(FactorInfo, Option<BackupCodes>), IdentityError> {
        let (t, user) = self.person_of(p).await?;
        if ceremony.len() > 128 {
            return Err(IdentityError::InvalidCeremony);
        }
        let pending: Registration = self
            .take_ceremony(&ceremony_key(&t, "reg", ceremony))
            .await?;
        if pending.user_id != user.id {
            return Err(IdentityError::InvalidCeremony);
        }
        let passkey = self
            .webauthn_party(&t)?
            .finish_passkey_registration(credential, &pending.state)
            .map_err(|e| {
                tracing::debug!(error = %e, "webauthn registration refused");
                IdentityError::InvalidWebauthnResponse
            })?;
        let d = self.deps();
        if self
            .credentials(&t, user.id)
            .await?
            .iter()
            .any(|s| s.passkey.cred_id() == passkey.cred_id())
        {
            return Err(IdentityError::FactorExists);
        }
        let sealed = d
            .master_keys
            .seal(&encode(&passkey)?, &factor_seal_context(t.row.id, user.id))?;
        let factor = d
            .store
            .insert_factor(&NewFactor {
                tenant_id: t.row.id,
                user_id: user.id,
                kind: FactorKind::Webauthn,
                label: pending.label,
                secret: sealed,
            })
            .await?;
        let backup_codes = self
            .finish_enrolment(&t, &user, factor.id, FactorKind::Webauthn, meta)
            .await?;
        Ok((
            FactorInfo {
                id: factor.id,
                kind: FactorKind::Webauthn.as_str().into(),
                label: factor.label,
                confirmed: true,
                created_at: factor.created_at,
                last_used_at: None,
            },
            backup_codes,
        ))
    }

    /// Renames one of the caller's factors (any kind).
    pub async fn rename_factor(
        &self,
        p: &Principal,
        factor: FactorId,
        label: &str,
    ) -> Result<(), IdentityError> {
        let (t, user) = self.person_of(p).await?;
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 64 {
            return Err(IdentityError::InvalidRequest(
                "label: 1 to 64 characters".into(),
            ));
        }
        let d = self.deps();
        d.store
            .factor(t.row.id, factor)
            .await?
            .filter(|f| f.user_id == user.id)
            .ok_or(IdentityError::NotFound)?;
        if !d.store.rename_factor(t.row.id, factor, label).await? {
            return Err(IdentityError::NotFound);
        }
        Ok(())
    }

    /// Challenge options for the account's registered credentials.
    async fn assertion_options(
        &self,
        t: &LiveTenant,
        user: &User,
        key: &str,
    ) -> Result<Value, IdentityError> {
        let creds: Vec<Passkey> = self
            .credentials(t, user.id)
            .await?
            .into_iter()
            .map(|s| s.passkey)
            .collect();
        if creds.is_empty() {
            return Err(IdentityError::NoSecondFactor);
        }
        let (rcr, state) = self
            .webauthn_party(t)?
            .start_passkey_authentication(&creds)
            .map_err(|e| IdentityError::Internal(format!("webauthn: {e}")))?;
        self.put_ceremony(
            key,
            &Assertion {
                user_id: user.id,
                state,
            },
        )
        .await?;
        options_json(&rcr)
    }

    /// Checks an assertion of `user`'s registered credential against a taken ceremony,
    /// writes the counter back, and answers the methods it proves. A refused assertion is
    /// audited and counts towards the second-factor lockout.
    async fn verify_assertion(
        &self,
        t: &LiveTenant,
        user: &User,
        state: &PasskeyAuthentication,
        credential: &PublicKeyCredential,
        meta: &RequestMeta,
    ) -> Result<[&'static str; 2], IdentityError> {
        self.limit_second_factor_attempts(t, meta).await?;
        if let Some(retry_after) = self.second_factor_locked(t, user.id).await? {
            return Err(IdentityError::SecondFactorLocked { retry_after });
        }
        let checked = self
            .webauthn_party(t)?
            .finish_passkey_authentication(credential, state);
        let outcome = match checked {
            Ok(res) => self.record_use(t, user, &res).await?,
            Err(e) => {
                tracing::debug!(error = %e, "webauthn assertion refused");
                None
            }
        };
        match outcome {
            Some(methods) => Ok(methods),
            None => {
                self.audit(
                    t,
                    kind::MFA_FAILED,
                    Some(user.id),
                    meta,
                    json!({"kind": "webauthn"}),
                )
                .await?;
                self.count_second_factor_failure(t, user.id, meta).await?;
                Err(IdentityError::InvalidWebauthnResponse)
            }
        }
    }

    /// Writes an accepted assertion's counter back (compare-and-set); `None` when the
    /// credential is gone or another assertion advanced it first.
    async fn record_use(
        &self,
        t: &LiveTenant,
        user: &User,
        res: &AuthenticationResult,
    ) -> Result<Option<[&'static str; 2]>, IdentityError> {
        if !res.user_verified() {
            return Ok(None);
        }
        let Some(mut stored) = self
            .credentials(t, user.id)
            .await?
            .into_iter()
            .find(|s| s.passkey.cred_id() == res.cred_id())
        else {
            return Ok(None);
        };
        let d = self.deps();
        let secret = if stored.passkey.update_credential(res) == Some(true) {
            d.master_keys
                .seal(&encode(&stored.passkey)?, &stored.factor.seal_context())?
        } else {
            stored.factor.secret.clone()
        };
        let recorded = d
            .store
            .record_factor_use(
                t.row.id,
                stored.factor.id,
                &stored.factor.secret,
                &secret,
                self.now(),
            )
            .await?;
        Ok(recorded.then(|| methods_of(res)))
    }

    /// Options to answer a pending sign-in's second factor with a registered credential.
    pub async fn begin_sign_in_webauthn(
        &self,
        tenant: &str,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<WebauthnOptions, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let (_, user) = self.pending_sign_in(&t, token).await?;
        let options = self
            .assertion_options(&t, &user, &ceremony_key(&t, "mfa", token))
            .await?;
        Ok(WebauthnOptions {
            ceremony_id: None,
            options,
            expires_in: CEREMONY_TTL.as_secs(),
        })
    }

    /// Completes a pending sign-in with an assertion of a registered credential.
    pub async fn complete_sign_in_webauthn(
        &self,
        tenant: &str,
        token: &str,
        credential: &PublicKeyCredential,
        meta: &RequestMeta,
    ) -> Result<SignedIn, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let (pending, user) = self.pending_sign_in(&t, token).await?;
        let ceremony: Assertion = self.take_ceremony(&ceremony_key(&t, "mfa", token)).await?;
        if ceremony.user_id != user.id {
            return Err(IdentityError::InvalidCeremony);
        }
        let methods = self
            .verify_assertion(&t, &user, &ceremony.state, credential, meta)
            .await?;
        self.take_pending_sign_in(&t, token).await?;
        let mut amr = vec![AMR_PASSWORD.to_owned()];
        for m in methods {
            amr = amr_with(&amr, m);
        }
        let done = self
            .issue_sign_in(&t, &user, pending.into_request(&user), meta, amr)
            .await?;
        self.inner.metrics.issued(Grant::Password);
        Ok(done)
    }

    /// Options for a step-up with a registered credential.
    pub async fn begin_step_up_webauthn(
        &self,
        p: &Principal,
    ) -> Result<WebauthnOptions, IdentityError> {
        let sid = p.session_id().ok_or(IdentityError::Forbidden)?;
        let (t, user) = self.person_of(p).await?;
        if t.settings.mfa.policy == MfaPolicy::Off {
            return Err(IdentityError::MfaDisabled);
        }
        let options = self
            .assertion_options(&t, &user, &ceremony_key(&t, "step", &sid.to_string()))
            .await?;
        Ok(WebauthnOptions {
            ceremony_id: None,
            options,
            expires_in: CEREMONY_TTL.as_secs(),
        })
    }

    /// Raises the caller's session with an assertion of a registered credential.
    pub async fn step_up_webauthn(
        &self,
        p: &Principal,
        credential: &PublicKeyCredential,
        meta: &RequestMeta,
    ) -> Result<SteppedUp, IdentityError> {
        let sid = p.session_id().ok_or(IdentityError::Forbidden)?;
        let (t, user) = self.person_of(p).await?;
        admit_network(&t, meta)?;
        if t.settings.mfa.policy == MfaPolicy::Off {
            return Err(IdentityError::MfaDisabled);
        }
        let ceremony: Assertion = self
            .take_ceremony(&ceremony_key(&t, "step", &sid.to_string()))
            .await?;
        if ceremony.user_id != user.id {
            return Err(IdentityError::InvalidCeremony);
        }
        let [key, verified] = self
            .verify_assertion(&t, &user, &ceremony.state, credential, meta)
            .await?;
        self.raise_session_with(p, &t, &user, &[key, verified], meta)
            .await
    }

    /// Whether the tenant lets a passkey sign in alone.
    fn admit_passkey_sign_in(t: &LiveTenant) -> Result<(), IdentityError> {
        if t.settings.mfa.passkey_sign_in && t.settings.mfa.policy != MfaPolicy::Off {
            Ok(())
        } else {
            Err(IdentityError::PasskeySignInDisabled)
        }
    }

    /// Starts a passkey-only sign-in: options without a list of credentials, so the
    /// authenticator offers the discoverable ones it holds for keygate.
    pub async fn begin_passkey_sign_in(
        &self,
        tenant: &str,
        req: PasskeySignIn,
        meta: &RequestMeta,
    ) -> Result<WebauthnOptions, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        Self::admit_passkey_sign_in(&t)?;
        self.limit_second_factor_attempts(&t, meta).await?;
        let (rcr, state) = self
            .webauthn_party(&t)?
            .start_discoverable_authentication()
            .map_err(|e| IdentityError::Internal(format!("webauthn: {e}")))?;
        let mut options = options_json(&rcr)?;
        // The page decides on conditional mediation (autofill); a button asks modally.
        if let Some(o) = options.as_object_mut() {
            o.remove("mediation");
        }
        let id = random_token()?;
        let pending = Discoverable {
            client_id: req.client_id,
            scope: req.scope,
            browser: req.browser,
            device: req.device,
            state,
        };
        self.put_ceremony(&ceremony_key(&t, "passkey", &id), &pending)
            .await?;
        Ok(WebauthnOptions {
            ceremony_id: Some(id),
            options,
            expires_in: CEREMONY_TTL.as_secs(),
        })
    }

    /// Completes a passkey-only sign-in: the credential's user handle names the account,
    /// whose registered credential must verify the assertion (with user verification).
    pub async fn passkey_sign_in(
        &self,
        tenant: &str,
        ceremony: &str,
        credential: &PublicKeyCredential,
        meta: &RequestMeta,
    ) -> Result<SignedIn, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        Self::admit_passkey_sign_in(&t)?;
        if ceremony.len() > 128 {
            return Err(IdentityError::InvalidCeremony);
        }
        let pending: Discoverable = self
            .take_ceremony(&ceremony_key(&t, "passkey", ceremony))
            .await?;
        let rp = self.webauthn_party(&t)?;
        let refused = IdentityError::InvalidWebauthnResponse;
        let (user_id, cred_id) = rp
            .identify_discoverable_authentication(credential)
            .map_err(|_| IdentityError::InvalidWebauthnResponse)?;
        let user = self.deps().store.user(t.row.id, UserId(user_id)).await?;
        let Some(user) = user else {
            self.audit_failure(&t, None, meta, "unknown_passkey")
                .await?;
            return Err(refused);
        };
        let Some(stored) = self
            .credentials(&t, user.id)
            .await?
            .into_iter()
            .find(|s| s.passkey.cred_id().as_slice() == cred_id)
        else {
            self.audit_failure(&t, Some(user.id), meta, "unknown_passkey")
                .await?;
            return Err(refused);
        };
        let outcome = match rp.finish_discoverable_authentication_v2(
            credential,
            pending.state,
            &stored.passkey,
        ) {
            Ok(res) => self.record_use(&t, &user, &res).await?,
            Err(e) => {
                tracing::debug!(error = %e, "passkey sign-in refused");
                None
            }
        };
        let Some([key, verified]) = outcome else {
            self.audit_failure(&t, Some(user.id), meta, "bad_passkey")
                .await?;
            return Err(refused);
        };
        let user = self.check_account(&t, user, None, meta).await?;
        let req = PasswordSignIn {
            email: user.email.clone(),
            client_id: pending.client_id,
            scope: pending.scope,
            browser: pending.browser,
            device: pending.device,
            ..PasswordSignIn::default()
        };
        let amr = amr_with(&[verified.to_owned()], key);
        let done = self.issue_sign_in(&t, &user, req, meta, amr).await?;
        self.inner.metrics.issued(Grant::Password);
        Ok(done)
    }
}
