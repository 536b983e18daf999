//! Second factors of local accounts: TOTP enrolment (a sealed seed, confirmed with a first
//! code), backup codes (shown once, stored as SHA-256 of the account and the code, single
//! use), the one check of a code that sign-in and step-up share, and the progressive
//! lockout of wrong codes.
//!
//! A code is either six digits (TOTP) or a backup code. A TOTP code is accepted once: the
//! store records the step it matched with a compare-and-set, so a replay (or a second
//! request racing with the same code) matches no row. Wrong codes follow the password
//! lockout's schedule (5 → 5 min, 10 → 30 min, 15 → 2 h) on a counter of their own, kept
//! in the ephemeral store and judged on the service's clock; a success clears it.

use super::audit::kind;
use super::levels::{AMR_MFA, AMR_OTP};
use super::lockout::{lock_duration, time_left};
use super::mail::SecurityChange;
use super::tenants::LiveTenant;
use super::totp::{self, TotpEnrolment};
use super::{IdentityError, IdentityService, Principal, RequestMeta, hex};
use chrono::{DateTime, Utc};
use keygate_core::crypto::random::random_bytes;
use keygate_core::crypto::sha256_parts;
use keygate_core::ids::{FactorId, UserId};
use keygate_core::store::{
    FAILURE_WINDOW, Factor, FactorKind, NewFactor, User, factor_seal_context,
};
use keygate_core::tenant_settings::MfaPolicy;
use serde_json::json;

/// How many backup codes a set has.
pub const BACKUP_CODE_COUNT: usize = 10;
/// How recent an authentication must be for the sensitive changes of self-service
/// (removing a factor, new backup codes, a password change, removing a linked identity).
pub const STEP_UP_FRESHNESS: chrono::Duration = chrono::Duration::minutes(5);
/// Backup-code alphabet: Crockford's base32 in lower case (no i, l, o, u); a byte modulo 32
/// is unbiased.
const BACKUP_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters of a backup code (60 bits).
const BACKUP_CODE_CHARS: usize = 12;

/// A new set of backup codes, shown to the person once; its `Debug` shows only how many.
#[derive(Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct BackupCodes(pub Vec<String>);

impl std::fmt::Debug for BackupCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupCodes({} codes)", self.0.len())
    }
}

/// One of a person's factors, as they see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FactorInfo {
    /// Factor id.
    #[schema(value_type = String)]
    pub id: FactorId,
    /// `totp` or `webauthn` (a security key or passkey).
    pub kind: String,
    /// The name given at enrolment.
    pub label: String,
    /// Whether enrolment was finished with a first code.
    pub confirmed: bool,
    /// Enrolled.
    pub created_at: DateTime<Utc>,
    /// Last accepted code.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A person's second factors (`GET /t/{tenant}/me/mfa`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MfaStatus {
    /// The tenant's policy: `off`, `optional` or `required`.
    pub policy: String,
    /// Whether sign-in asks this person for a second factor.
    pub enabled: bool,
    /// Enrolled factors, oldest first.
    pub factors: Vec<FactorInfo>,
    /// Unused backup codes.
    pub backup_codes_remaining: i64,
}

/// The label of a policy.
pub(super) fn policy_label(p: MfaPolicy) -> &'static str {
    match p {
        MfaPolicy::Off => "off",
        MfaPolicy::Optional => "optional",
        MfaPolicy::Required => "required",
    }
}

/// A new set of backup codes, formatted `xxxx-xxxx-xxxx`.
fn new_backup_codes() -> Result<Vec<String>, IdentityError> {
    (0..BACKUP_CODE_COUNT)
        .map(|_| {
            let bytes = random_bytes::<BACKUP_CODE_CHARS>()?;
            let chars: Vec<char> = bytes
                .iter()
                .map(|b| char::from(BACKUP_ALPHABET[usize::from(b % 32)]))
                .collect();
            Ok(chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-"))
        })
        .collect()
}

/// What a backup code is stored and looked up as: SHA-256 over the account and the code as
/// typed without separators or case, so one table leak cannot be searched for all
/// accounts at once. The lookup compares hashes in the database, so its timing tells
/// nothing about which code (or which part of one) matched.
fn backup_hash(user: UserId, code: &str) -> Vec<u8> {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    sha256_parts(&[
        b"keygate backup code v1",
        user.0.as_bytes(),
        normalized.as_bytes(),
    ])
    .to_vec()
}

impl IdentityService {
    /// The person behind `p` (a person's credential of this tenant, the account active).
    pub(super) async fn person_of(
        &self,
        p: &Principal,
    ) -> Result<(std::sync::Arc<LiveTenant>, User), IdentityError> {
        let user_id = p.user_id.ok_or(IdentityError::Forbidden)?;
        let t = self.tenant(&p.tenant).await?;
        let user = self
            .deps()
            .store
            .user(t.row.id, user_id)
            .await?
            .ok_or(IdentityError::InvalidToken)?;
        Ok((t, user))
    }

    /// The person's confirmed second factors (TOTP authenticators, security keys, passkeys).
    pub(super) async fn confirmed_factors(
        &self,
        t: &LiveTenant,
        user: UserId,
    ) -> Result<Vec<Factor>, IdentityError> {
        Ok(self
            .deps()
            .store
            .factors_of_user(t.row.id, user)
            .await?
            .into_iter()
            .filter(|f| f.confirmed)
            .collect())
    }

    /// The caller's factors and backup codes.
    pub async fn mfa_status(&self, p: &Principal) -> Result<MfaStatus, IdentityError> {
        let (t, user) = self.person_of(p).await?;
        let d = self.deps();
        let factors = d.store.factors_of_user(t.row.id, user.id).await?;
        let enabled =
            t.settings.mfa.policy != MfaPolicy::Off && factors.iter().any(|f| f.confirmed);
        Ok(MfaStatus {
            policy: policy_label(t.settings.mfa.policy).into(),
            enabled,
            factors: factors
                .into_iter()
                .map(|f| FactorInfo {
                    id: f.id,
                    kind: f.kind.as_str().into(),
                    label: f.label,
                    confirmed: f.confirmed,
                    created_at: f.created_at,
                    last_used_at: f.last_used_at,
                })
                .collect(),
            backup_codes_remaining: d.store.remaining_backup_codes(t.row.id, user.id).await?,
        })
    }

    /// Starts enrolling a TOTP authenticator for the caller: a new sealed seed in an
    /// unconfirmed factor (replacing one left unconfirmed before), and what the app needs.
    pub async fn begin_totp_enrolment(
        &self,
        p: &Principal,
        label: Option<&str>,
    ) -> Result<TotpEnrolment, IdentityError> {
        let (t, user) = self.person_of(p).await?;
        self.enrol_totp(&t, &user, label).await
    }

    /// [`Self::begin_totp_enrolment`] for an account (also the sign-in enrolment of a
    /// tenant that requires a second factor). One TOTP authenticator per account: a second
    /// one is refused while the first is confirmed.
    pub(super) async fn enrol_totp(
        &self,
        t: &LiveTenant,
        user: &User,
        label: Option<&str>,
    ) -> Result<TotpEnrolment, IdentityError> {
        if t.settings.mfa.policy == MfaPolicy::Off {
            return Err(IdentityError::MfaDisabled);
        }
        let label = label
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or("Authenticator app");
        if label.chars().count() > 64 {
            return Err(IdentityError::InvalidRequest(
                "label: at most 64 characters".into(),
            ));
        }
        let d = self.deps();
        for f in d.store.factors_of_user(t.row.id, user.id).await? {
            if f.kind != FactorKind::Totp {
                continue;
            }
            if f.confirmed {
                return Err(IdentityError::FactorExists);
            }
            d.store.delete_factor(t.row.id, f.id).await?;
        }
        let seed = zeroize::Zeroizing::new(totp::new_seed()?);
        let sealed = d
            .master_keys
            .seal(seed.as_slice(), &factor_seal_context(t.row.id, user.id))?;
        let factor = d
            .store
            .insert_factor(&NewFactor {
                tenant_id: t.row.id,
                user_id: user.id,
                kind: FactorKind::Totp,
                label: label.to_owned(),
                secret: sealed,
            })
            .await?;
        totp::enrolment(factor.id, seed.as_slice(), t.display_name(), &user.email)
    }

    /// Finishes enrolling `factor` with a first code from the app; answers the first set of
    /// backup codes when the account has none left (shown this once).
    pub async fn confirm_totp(
        &self,
        p: &Principal,
        factor: FactorId,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<Option<BackupCodes>, IdentityError> {
        let (t, user) = self.person_of(p).await?;
        let f = self
            .deps()
            .store
            .factor(t.row.id, factor)
            .await?
            .filter(|f| f.user_id == user.id && f.kind == FactorKind::Totp)
            .ok_or(IdentityError::NotFound)?;
        if f.confirmed {
            return Err(IdentityError::FactorExists);
        }
        self.verify_second_factor(&t, &user, code, Some(factor), meta)
            .await?;
        self.finish_enrolment(&t, &user, factor, FactorKind::Totp, meta)
            .await
    }

    /// Marks an enrolled factor confirmed (its first code was just accepted), audits it,
    /// and issues backup codes if the account has none.
    pub(super) async fn finish_enrolment(
        &self,
        t: &LiveTenant,
        user: &User,
        factor: FactorId,
        kind: FactorKind,
        meta: &RequestMeta,
    ) -> Result<Option<BackupCodes>, IdentityError> {
        let d = self.deps();
        if !d.store.confirm_factor(t.row.id, factor).await? {
            return Err(IdentityError::NotFound);
        }
        self.audit(
            t,
            kind::MFA_ENROLLED,
            Some(user.id),
            meta,
            json!({"factor": factor, "kind": kind.as_str()}),
        )
        .await?;
        let change = match kind {
            FactorKind::Webauthn => SecurityChange::PasskeyAdded,
            FactorKind::Totp => SecurityChange::FactorAdded,
        };
        self.alert(t, &user.email, change);
        if d.store.remaining_backup_codes(t.row.id, user.id).await? > 0 {
            return Ok(None);
        }
        Ok(Some(BackupCodes(
            self.store_backup_codes(t, user, meta).await?,
        )))
    }

    async fn store_backup_codes(
        &self,
        t: &LiveTenant,
        user: &User,
        meta: &RequestMeta,
    ) -> Result<Vec<String>, IdentityError> {
        let codes = new_backup_codes()?;
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| backup_hash(user.id, c)).collect();
        self.deps()
            .store
            .replace_backup_codes(t.row.id, user.id, &hashes)
            .await?;
        self.audit(
            t,
            kind::BACKUP_CODES_GENERATED,
            Some(user.id),
            meta,
            json!({"count": codes.len()}),
        )
        .await?;
        Ok(codes)
    }

    /// Replaces the caller's backup codes with a new set (shown this once); needs a
    /// confirmed factor and a fresh step-up.
    pub async fn regenerate_backup_codes(
        &self,
        p: &Principal,
        meta: &RequestMeta,
    ) -> Result<BackupCodes, IdentityError> {
        let (t, user) = self.person_of(p).await?;
        if self.confirmed_factors(&t, user.id).await?.is_empty() {
            return Err(IdentityError::NoSecondFactor);
        }
        self.require_recent_authentication(p, &t, user.id).await?;
        let codes = self.store_backup_codes(&t, &user, meta).await?;
        self.alert(&t, &user.email, SecurityChange::BackupCodesRegenerated);
        Ok(BackupCodes(codes))
    }

    /// Removes one of the caller's factors; needs a fresh step-up when it is confirmed. The
    /// last confirmed factor takes the backup codes with it.
    pub async fn remove_factor(
        &self,
        p: &Principal,
        factor: FactorId,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let (t, user) = self.person_of(p).await?;
        let d = self.deps();
        let f = d
            .store
            .factor(t.row.id, factor)
            .await?
            .filter(|f| f.user_id == user.id)
            .ok_or(IdentityError::NotFound)?;
        if f.confirmed {
            self.require_recent_authentication(p, &t, user.id).await?;
        }
        d.store.delete_factor(t.row.id, factor).await?;
        if self.confirmed_factors(&t, user.id).await?.is_empty() {
            d.store.replace_backup_codes(t.row.id, user.id, &[]).await?;
        }
        self.audit(
            &t,
            kind::MFA_REMOVED,
            Some(user.id),
            meta,
            json!({"factor": factor, "kind": f.kind.as_str()}),
        )
        .await?;
        if f.confirmed {
            self.alert(&t, &user.email, SecurityChange::FactorRemoved);
        }
        Ok(())
    }

    /// Checks a second-factor `code` of `user`: six digits against the confirmed TOTP
    /// factors (or, while enrolling, against `enrolling` only), anything else as a backup
    /// code. Answers the `amr` method it proves. Wrong codes are audited, then counted
    /// towards the second-factor lockout; while locked, nothing is checked.
    pub(super) async fn verify_second_factor(
        &self,
        t: &LiveTenant,
        user: &User,
        code: &str,
        enrolling: Option<FactorId>,
        meta: &RequestMeta,
    ) -> Result<&'static str, IdentityError> {
        self.limit_second_factor_attempts(t, meta).await?;
        if let Some(retry_after) = self.second_factor_locked(t, user.id).await? {
            return Err(IdentityError::SecondFactorLocked { retry_after });
        }
        if code.len() > 64 {
            return Err(IdentityError::InvalidRequest("code: too long".into()));
        }
        let method = if totp::is_totp_code(code) {
            self.check_totp(t, user, code, enrolling).await?
        } else if enrolling.is_none() {
            let hash = backup_hash(user.id, code);
            self.deps()
                .store
                .use_backup_code(t.row.id, user.id, &hash, self.now())
                .await?
                .then_some(AMR_MFA)
        } else {
            None
        };
        match method {
            Some(method) => {
                self.clear_second_factor_failures(t, user.id).await?;
                Ok(method)
            }
            None => {
                self.audit(t, kind::MFA_FAILED, Some(user.id), meta, json!({}))
                    .await?;
                self.count_second_factor_failure(t, user.id, meta).await?;
                Err(IdentityError::InvalidCode)
            }
        }
    }

    /// The TOTP factor a code matches, its step recorded (a step at or below the last
    /// accepted one, a replay, matches nothing).
    async fn check_totp(
        &self,
        t: &LiveTenant,
        user: &User,
        code: &str,
        enrolling: Option<FactorId>,
    ) -> Result<Option<&'static str>, IdentityError> {
        let d = self.deps();
        let now = self.now();
        let factors = d.store.factors_of_user(t.row.id, user.id).await?;
        let candidates = factors.iter().filter(|f| {
            f.kind == FactorKind::Totp
                && match enrolling {
                    Some(id) => f.id == id && !f.confirmed,
                    None => f.confirmed,
                }
        });
        for f in candidates {
            let seed = d.master_keys.open(&f.secret, &f.seal_context())?;
            let Some(step) = totp::check(&seed, code, now.timestamp())? else {
                continue;
            };
            if d.store.advance_totp_step(t.row.id, f.id, step, now).await? {
                return Ok(Some(AMR_OTP));
            }
        }
        Ok(None)
    }

    /// The per-address budget of second-factor and step-up attempts (the sign-in budget,
    /// counted apart), so one address cannot work through many accounts' codes.
    pub(super) async fn limit_second_factor_attempts(
        &self,
        t: &LiveTenant,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        match meta.ip {
            Some(ip) => {
                let key = format!("{}:{ip}", t.row.id);
                self.limit("second-factor-ip", &key, self.deps().limits.sign_in_per_ip)
                    .await
            }
            None => Ok(()),
        }
    }

    fn second_factor_keys(&self, t: &LiveTenant, user: UserId) -> (String, String) {
        let id = hex(&sha256_parts(&[t.row.id.0.as_bytes(), user.0.as_bytes()])[..16]);
        (format!("sf-lock:{id}"), format!("sf-epoch:{id}"))
    }

    /// How long the account's second-factor lock still holds, if it does.
    pub(super) async fn second_factor_locked(
        &self,
        t: &LiveTenant,
        user: UserId,
    ) -> Result<Option<std::time::Duration>, IdentityError> {
        let (lock_key, _) = self.second_factor_keys(t, user);
        let until = self
            .deps()
            .ephemeral
            .get(&lock_key)
            .await?
            .as_deref()
            .and_then(parse_millis);
        Ok(until.and_then(|u| time_left(u, self.now())))
    }

    /// Counts a wrong code and locks the account's second factor when the schedule says so.
    pub(super) async fn count_second_factor_failure(
        &self,
        t: &LiveTenant,
        user: UserId,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let e = self.deps().ephemeral.as_ref();
        let (lock_key, epoch_key) = self.second_factor_keys(t, user);
        // The counter's key names the current epoch, so a success (a new epoch) starts it over.
        let epoch = e.get(&epoch_key).await?.unwrap_or_default();
        let window = FAILURE_WINDOW.to_std().unwrap_or_default();
        let failures = e
            .hit(
                &format!("sf-fail:{}:{}", hex(&epoch), &lock_key[8..]),
                window,
            )
            .await?;
        let failures = i64::try_from(failures).unwrap_or(i64::MAX);
        if let Some(lock) = lock_duration(failures) {
            let until = self.now() + lock;
            let ttl = lock.to_std().unwrap_or_default() + std::time::Duration::from_secs(60);
            e.put(
                &lock_key,
                until.timestamp_millis().to_string().as_bytes(),
                ttl,
            )
            .await?;
            self.audit(
                t,
                kind::MFA_LOCKED,
                Some(user),
                meta,
                json!({"failures": failures, "seconds": lock.num_seconds()}),
            )
            .await?;
        }
        Ok(())
    }

    /// Starts the account's count of wrong codes over (after an accepted one).
    async fn clear_second_factor_failures(
        &self,
        t: &LiveTenant,
        user: UserId,
    ) -> Result<(), IdentityError> {
        let (_, epoch_key) = self.second_factor_keys(t, user);
        let epoch = random_bytes::<8>()?;
        let window = FAILURE_WINDOW.to_std().unwrap_or_default();
        self.deps()
            .ephemeral
            .put(&epoch_key, &epoch, window)
            .await?;
        Ok(())
    }
}

fn parse_millis(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let millis: i64 = std::str::from_utf8(bytes).ok()?.parse().ok()?;
    DateTime::from_timestamp_millis(millis)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backup_codes_are_distinct_and_typed_loosely() {
        let codes = new_backup_codes().unwrap();
        assert_eq!(codes.len(), BACKUP_CODE_COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 14 && c.matches('-').count() == 2)
        );
        let user = UserId::new();
        let c = &codes[0];
        assert_eq!(
            backup_hash(user, c),
            backup_hash(user, &c.to_uppercase().replace('-', " "))
        );
        assert_ne!(backup_hash(user, c), backup_hash(UserId::new(), c));
    }
}
