//! The second step of a password sign-in. When the person has a confirmed second factor
//! (and the tenant's policy is not `off`), or the tenant requires one, a right password
//! opens no session: it yields a challenge — an opaque 256-bit token naming a pending
//! sign-in kept in the ephemeral store for [`CHALLENGE_TTL`] (only the token's SHA-256 is a
//! key) — and tokens and cookies are issued only once a code is accepted for it. A person
//! without a factor in a tenant that requires one enrols a TOTP authenticator within the
//! challenge first; its first code both confirms it and completes the sign-in.
//!
//! A wrong code leaves the challenge open (the second-factor lockout limits guessing); an
//! accepted one consumes it, so a challenge completes one sign-in at most.

use super::levels::{AMR_PASSWORD, amr_with};
use super::metrics::Grant;
use super::signin::admit_network;
use super::tenants::LiveTenant;
use super::totp::TotpEnrolment;
use super::{IdentityError, IdentityService, PasswordSignIn, RequestMeta, SignedIn, hex};
use chrono::{DateTime, Utc};
use keygate_core::crypto::random::random_token;
use keygate_core::crypto::sha256;
use keygate_core::ids::UserId;
use keygate_core::store::{FactorKind, User, UserStatus};
use keygate_core::tenant_settings::MfaPolicy;
use serde::{Deserialize, Serialize};

/// How long a pending sign-in waits for its second factor.
pub const CHALLENGE_TTL: chrono::Duration = chrono::Duration::minutes(5);

/// A sign-in waiting for its second factor.
#[derive(Clone, PartialEq, Eq)]
pub struct SecondFactorChallenge {
    /// Opaque token naming the pending sign-in (`mfa_token`); never logged.
    pub token: String,
    /// The person has no factor and the tenant requires one: enrol first.
    pub enrol: bool,
    /// Seconds until the challenge expires.
    pub expires_in: u64,
    /// How it can be answered: `totp`, `webauthn` (a security key or passkey,
    /// `/login/mfa/webauthn`), `backup_code`; `totp` alone while enrolling.
    pub methods: Vec<&'static str>,
}

impl std::fmt::Debug for SecondFactorChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondFactorChallenge")
            .field("enrol", &self.enrol)
            .finish_non_exhaustive()
    }
}

/// How a password sign-in ended.
#[derive(Debug)]
pub enum SignInOutcome {
    /// Signed in: session, tokens, cookies.
    SignedIn(Box<SignedIn>),
    /// The password was right; a second factor is needed before anything is issued.
    SecondFactor(SecondFactorChallenge),
}

impl SignInOutcome {
    /// The sign-in, if no second factor was needed.
    pub fn signed_in(self) -> Option<SignedIn> {
        match self {
            Self::SignedIn(done) => Some(*done),
            Self::SecondFactor(_) => None,
        }
    }
}

/// What a pending sign-in remembers of the first step (no password).
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    user_id: UserId,
    client_id: Option<String>,
    scope: Option<String>,
    browser: bool,
    device: Option<String>,
    enrol: bool,
    expires_at: DateTime<Utc>,
}

impl Pending {
    /// The sign-in request this pending sign-in continues.
    pub(super) fn into_request(self, user: &User) -> PasswordSignIn {
        PasswordSignIn {
            email: user.email.clone(),
            client_id: self.client_id,
            scope: self.scope,
            browser: self.browser,
            device: self.device,
            ..PasswordSignIn::default()
        }
    }
}

fn challenge_key(t: &LiveTenant, token: &str) -> String {
    format!(
        "mfa-challenge:{}:{}",
        t.row.id,
        hex(&sha256(token.as_bytes()))
    )
}

impl IdentityService {
    /// Whether `user`'s sign-in needs a second factor: `Some(false)` to check one,
    /// `Some(true)` to enrol one first (the tenant requires it and there is none), `None`
    /// when the password is enough.
    pub(super) async fn second_factor_needed(
        &self,
        t: &LiveTenant,
        user: &User,
    ) -> Result<Option<bool>, IdentityError> {
        if t.settings.mfa.policy == MfaPolicy::Off {
            return Ok(None);
        }
        if !self.confirmed_factors(t, user.id).await?.is_empty() {
            return Ok(Some(false));
        }
        Ok((t.settings.mfa.policy == MfaPolicy::Required).then_some(true))
    }

    /// Opens the pending sign-in of `user` after a right password.
    pub(super) async fn open_challenge(
        &self,
        t: &LiveTenant,
        user: &User,
        req: &PasswordSignIn,
        enrol: bool,
    ) -> Result<SecondFactorChallenge, IdentityError> {
        let mut methods = Vec::new();
        if enrol {
            methods.push("totp");
        } else {
            for f in self.confirmed_factors(t, user.id).await? {
                let m = match f.kind {
                    FactorKind::Totp => "totp",
                    FactorKind::Webauthn => "webauthn",
                };
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
            methods.push("backup_code");
        }
        let token = random_token()?;
        let pending = Pending {
            user_id: user.id,
            client_id: req.client_id.clone(),
            scope: req.scope.clone(),
            browser: req.browser,
            device: req.device.clone(),
            enrol,
            expires_at: self.now() + CHALLENGE_TTL,
        };
        let value = serde_json::to_vec(&pending)
            .map_err(|e| IdentityError::Internal(format!("pending sign-in: {e}")))?;
        let ttl = CHALLENGE_TTL.to_std().unwrap_or_default();
        self.deps()
            .ephemeral
            .put(&challenge_key(t, &token), &value, ttl)
            .await?;
        Ok(SecondFactorChallenge {
            token,
            enrol,
            expires_in: ttl.as_secs(),
            methods,
        })
    }

    /// The pending sign-in `token` names, unexpired, and its account, still active.
    pub(super) async fn pending_sign_in(
        &self,
        t: &LiveTenant,
        token: &str,
    ) -> Result<(Pending, User), IdentityError> {
        if token.len() > 128 {
            return Err(IdentityError::InvalidChallenge);
        }
        let bytes = self
            .deps()
            .ephemeral
            .get(&challenge_key(t, token))
            .await?
            .ok_or(IdentityError::InvalidChallenge)?;
        let pending: Pending =
            serde_json::from_slice(&bytes).map_err(|_| IdentityError::InvalidChallenge)?;
        if pending.expires_at <= self.now() {
            return Err(IdentityError::InvalidChallenge);
        }
        let user = self
            .deps()
            .store
            .user(t.row.id, pending.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(IdentityError::InvalidChallenge)?;
        Ok((pending, user))
    }

    /// Consumes a pending sign-in once its second factor was accepted. Single use: of two
    /// requests racing with right proofs, one takes the challenge.
    pub(super) async fn take_pending_sign_in(
        &self,
        t: &LiveTenant,
        token: &str,
    ) -> Result<(), IdentityError> {
        self.deps()
            .ephemeral
            .take(&challenge_key(t, token))
            .await?
            .map(|_| ())
            .ok_or(IdentityError::InvalidChallenge)
    }

    /// Enrolment within a pending sign-in of a tenant that requires a second factor: a new
    /// TOTP seed for the person to add to their app (confirmed by [`Self::complete_sign_in`]).
    pub async fn begin_sign_in_enrolment(
        &self,
        tenant: &str,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<TotpEnrolment, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let (pending, user) = self.pending_sign_in(&t, token).await?;
        if !pending.enrol {
            return Err(IdentityError::FactorExists);
        }
        self.enrol_totp(&t, &user, None).await
    }

    /// The second step of a sign-in: checks `code` for the pending sign-in `token` (while
    /// enrolling, the first code of the new authenticator, which confirms it), consumes the
    /// challenge and opens the session. The answer carries the first backup codes when the
    /// sign-in enrolled the account's first factor.
    pub async fn complete_sign_in(
        &self,
        tenant: &str,
        token: &str,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<SignedIn, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let (pending, user) = self.pending_sign_in(&t, token).await?;
        let enrolling = if pending.enrol {
            let factor = self
                .deps()
                .store
                .factors_of_user(t.row.id, user.id)
                .await?
                .into_iter()
                .rev()
                .find(|f| f.kind == FactorKind::Totp && !f.confirmed)
                .ok_or(IdentityError::NoSecondFactor)?;
            Some(factor.id)
        } else {
            None
        };
        let method = self
            .verify_second_factor(&t, &user, code, enrolling, meta)
            .await?;
        self.take_pending_sign_in(&t, token).await?;
        let backup_codes = match enrolling {
            Some(factor) => {
                self.finish_enrolment(&t, &user, factor, FactorKind::Totp, meta)
                    .await?
            }
            None => None,
        };
        let amr = amr_with(&[AMR_PASSWORD.to_owned()], method);
        let mut done = self
            .issue_sign_in(&t, &user, pending.into_request(&user), meta, amr)
            .await?;
        self.inner.metrics.issued(Grant::Password);
        done.backup_codes = backup_codes;
        Ok(done)
    }
}
