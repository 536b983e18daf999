//! Step-up: a signed-in person proves themselves again within their session, which raises
//! the session's `auth_time`, `amr` and `acr` (RFC 9470's answer to
//! `insufficient_user_authentication`). The proof is a second-factor code when the person
//! has one, else the password; a person without a factor may enrol one on the spot (its
//! first code is the proof).
//!
//! Accounts with neither a local password nor a second factor (signed in through an
//! upstream provider only) cannot prove anything here: [`StepUpOffer::Upstream`] names the
//! providers they are linked to, and a fresh sign-in at one of them (`prompt=login`,
//! `max_age=0`, its `auth_time` no older than the step-up's start; `federation::flow`)
//! raises this session.
//!
//! Wrong proofs count towards the second-factor lockout (`mfa.rs`: 5 → 5 min, 10 → 30 min,
//! 15 → 2 h), and while it holds nothing is checked. A raised session reaches every check
//! at once: the session row and its hot record are rewritten, and a changed-notice for the
//! session on the revocation channel makes every replica's forward-auth prove it again.

use super::audit::kind;
use super::federation::{ACR_FEDERATED, AMR_FEDERATED, ProviderButton};
use super::levels::{
    ACR_MFA, ACR_PASSWORD, AMR_OTP, AMR_PASSWORD, acr_of, amr_with, has_second_factor,
};
use super::mfa::BackupCodes;
use super::mfa::STEP_UP_FRESHNESS;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, Principal, RequestMeta};
use chrono::{DateTime, Utc};
use keygate_core::ephemeral::changed_notice;
use keygate_core::federation::{Protocol, ProviderSettings};
use keygate_core::ids::{FactorId, UserId};
use keygate_core::store::User;
use keygate_core::tenant_settings::MfaPolicy;
use serde_json::json;

/// How long a session's changed-notice travels: longer than forward-auth reuses a proven
/// session.
const CHANGED_NOTICE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// What a step-up can ask this person for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepUpOffer {
    /// A code from their authenticator app (or a backup code).
    Code,
    /// Their password; `can_enrol` when the tenant lets them enrol a second factor instead.
    Password {
        /// The tenant's MFA policy is not `off`.
        can_enrol: bool,
    },
    /// Neither: the account signs in through upstream providers only, and proves itself by
    /// a fresh sign-in at one of `providers` (those it is linked to that can say when the
    /// person authenticated); `can_enrol` as for a password.
    Upstream {
        /// The linked providers, as the sign-in page shows them.
        providers: Vec<ProviderButton>,
        /// The tenant's MFA policy is not `off`.
        can_enrol: bool,
    },
}

/// What the person proves.
#[derive(Clone, PartialEq, Eq)]
pub enum StepUpProof {
    /// A TOTP or backup code.
    Code(String),
    /// The account's password.
    Password(String),
}

impl std::fmt::Debug for StepUpProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Code(_) => "Code",
            Self::Password(_) => "Password",
        })
    }
}

/// A raised session and a fresh access token that says so.
#[derive(Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SteppedUp {
    /// Authentication methods of the session now.
    pub amr: Vec<String>,
    /// Its authentication context class now.
    pub acr: String,
    /// When the person authenticated (now).
    pub auth_time: DateTime<Utc>,
    /// An access token of the session carrying the raised `acr`, `amr` and `auth_time`.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The first backup codes, when the step-up enrolled the account's first factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub backup_codes: Option<BackupCodes>,
}

impl std::fmt::Debug for SteppedUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteppedUp")
            .field("acr", &self.acr)
            .field("amr", &self.amr)
            .finish_non_exhaustive()
    }
}

impl IdentityService {
    /// Refuses a sensitive change to the caller's account (a factor's removal, new backup
    /// codes, a password change, removing a link) unless they authenticated within
    /// [`STEP_UP_FRESHNESS`] (a sign-in or a step-up), with a second factor when the account
    /// has a confirmed one: the proof must be as strong as the account can give.
    pub(super) async fn require_recent_authentication(
        &self,
        p: &Principal,
        t: &LiveTenant,
        user: UserId,
    ) -> Result<(), IdentityError> {
        let needs_second_factor = !self.confirmed_factors(t, user).await?.is_empty();
        let fresh = p
            .auth_time()
            .is_some_and(|at| self.now() - at <= STEP_UP_FRESHNESS);
        if fresh && (!needs_second_factor || has_second_factor(p.amr())) {
            return Ok(());
        }
        Err(IdentityError::StepUpRequired {
            max_age: STEP_UP_FRESHNESS.num_seconds().unsigned_abs(),
            acr: if needs_second_factor {
                ACR_MFA
            } else {
                ACR_PASSWORD
            },
            tenant: t.name().to_owned(),
        })
    }

    /// What the caller can step up with.
    pub async fn step_up_offer(&self, p: &Principal) -> Result<StepUpOffer, IdentityError> {
        let (t, user) = self.person_of(p).await?;
        let policy = t.settings.mfa.policy;
        if policy != MfaPolicy::Off && !self.confirmed_factors(&t, user.id).await?.is_empty() {
            return Ok(StepUpOffer::Code);
        }
        if user.password_hash.is_some() {
            return Ok(StepUpOffer::Password {
                can_enrol: policy != MfaPolicy::Off,
            });
        }
        Ok(StepUpOffer::Upstream {
            providers: self.fresh_capable_links(&t, user.id).await?,
            can_enrol: policy != MfaPolicy::Off,
        })
    }

    /// The providers `user` is linked to that can be asked for a fresh sign-in (OpenID
    /// Connect ones: GitHub never says when the person authenticated).
    async fn fresh_capable_links(
        &self,
        t: &LiveTenant,
        user: keygate_core::ids::UserId,
    ) -> Result<Vec<ProviderButton>, IdentityError> {
        let d = self.deps();
        let links = d.store.identities_of_user(t.row.id, user).await?;
        let idps = d.store.list_idps(t.row.id).await?;
        Ok(idps
            .into_iter()
            .filter(|idp| links.iter().any(|l| l.idp_id == idp.id))
            .filter_map(|idp| {
                let settings: ProviderSettings = serde_json::from_value(idp.config).ok()?;
                if matches!(settings.protocol, Protocol::Github(_)) {
                    return None;
                }
                Some(ProviderButton {
                    name: idp.name,
                    display_name: settings.display_name,
                })
            })
            .collect())
    }

    /// Raises the caller's session with `proof`.
    pub async fn step_up(
        &self,
        p: &Principal,
        proof: StepUpProof,
        meta: &RequestMeta,
    ) -> Result<SteppedUp, IdentityError> {
        p.session_id().ok_or(IdentityError::Forbidden)?;
        let (t, user) = self.person_of(p).await?;
        super::signin::admit_network(&t, meta)?;
        let method = match proof {
            StepUpProof::Code(code) => {
                if t.settings.mfa.policy == MfaPolicy::Off {
                    return Err(IdentityError::MfaDisabled);
                }
                self.verify_second_factor(&t, &user, &code, None, meta)
                    .await?
            }
            StepUpProof::Password(password) => {
                self.check_step_up_password(&t, &user, &password, meta)
                    .await?
            }
        };
        self.raise_session(p, &t, &user, method, None, meta).await
    }

    /// Enrols the caller's first authenticator within a step-up: `code` confirms `factor`
    /// (from [`Self::begin_totp_enrolment`]) and raises the session with it.
    pub async fn step_up_by_enrolling(
        &self,
        p: &Principal,
        factor: FactorId,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<SteppedUp, IdentityError> {
        p.session_id().ok_or(IdentityError::Forbidden)?;
        let backup_codes = self.confirm_totp(p, factor, code, meta).await?;
        let (t, user) = self.person_of(p).await?;
        self.raise_session(p, &t, &user, AMR_OTP, backup_codes, meta)
            .await
    }

    /// A password as a step-up proof: the second-factor lockout holds, and a wrong one is
    /// audited, then counted.
    async fn check_step_up_password(
        &self,
        t: &LiveTenant,
        user: &User,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<&'static str, IdentityError> {
        if user.password_hash.is_none() {
            return Err(IdentityError::UpstreamStepUpRequired);
        }
        self.limit_second_factor_attempts(t, meta).await?;
        if let Some(retry_after) = self.second_factor_locked(t, user.id).await? {
            return Err(IdentityError::SecondFactorLocked { retry_after });
        }
        if password.len() > super::signin::MAX_PASSWORD_BYTES {
            return Err(IdentityError::InvalidRequest("password too long".into()));
        }
        if self.password_matches(user, password).await? {
            return Ok(AMR_PASSWORD);
        }
        self.audit(
            t,
            kind::MFA_FAILED,
            Some(user.id),
            meta,
            json!({"reason": "bad_password"}),
        )
        .await?;
        self.count_second_factor_failure(t, user.id, meta).await?;
        Err(IdentityError::InvalidCredentials)
    }

    /// Records the proof by `method` on the caller's session and everywhere it is cached,
    /// audits it, and mints an access token that carries it.
    async fn raise_session(
        &self,
        p: &Principal,
        t: &LiveTenant,
        user: &User,
        method: &str,
        backup_codes: Option<BackupCodes>,
        meta: &RequestMeta,
    ) -> Result<SteppedUp, IdentityError> {
        let mut stepped = self.raise_session_with(p, t, user, &[method], meta).await?;
        stepped.backup_codes = backup_codes;
        Ok(stepped)
    }

    /// [`Self::raise_session`] by several methods proven at once (a WebAuthn assertion
    /// proves possession and user verification).
    pub(super) async fn raise_session_with(
        &self,
        p: &Principal,
        t: &LiveTenant,
        user: &User,
        methods: &[&str],
        meta: &RequestMeta,
    ) -> Result<SteppedUp, IdentityError> {
        let sid = p.session_id().ok_or(IdentityError::Forbidden)?;
        self.raise_session_by(t, user, sid, methods, meta).await
    }

    /// Raises session `sid` of `user` by `methods` proven now (`auth_time` now, the methods
    /// added to its `amr`, `acr` recomputed); a session that is gone, revoked or another
    /// person's is `InvalidToken`.
    pub(super) async fn raise_session_by(
        &self,
        t: &LiveTenant,
        user: &User,
        sid: keygate_core::ids::SessionId,
        methods: &[&str],
        meta: &RequestMeta,
    ) -> Result<SteppedUp, IdentityError> {
        let d = self.deps();
        let now = self.now();
        if d.ephemeral.revocations().contains(&sid.to_string()) {
            return Err(IdentityError::InvalidToken);
        }
        let session = d
            .store
            .session(t.row.id, sid)
            .await?
            .filter(|s| s.user_id == user.id && s.is_active(now))
            .ok_or(IdentityError::InvalidToken)?;
        let amr = methods
            .iter()
            .fold(session.amr.clone(), |amr, m| amr_with(&amr, m));
        // An upstream sign-in alone is no password: such a session keeps the federated level.
        let acr = if amr.iter().all(|m| m == AMR_FEDERATED) {
            ACR_FEDERATED
        } else {
            acr_of(&amr)
        };
        if !d
            .store
            .raise_session_authentication(t.row.id, sid, &amr, Some(acr), now)
            .await?
        {
            return Err(IdentityError::InvalidToken);
        }
        let session = d
            .store
            .session(t.row.id, sid)
            .await?
            .ok_or(IdentityError::InvalidToken)?;
        self.put_hot_session(t, &session).await;
        d.ephemeral
            .revoke(&changed_notice(&sid.to_string()), CHANGED_NOTICE_TTL)
            .await?;
        self.audit(
            t,
            kind::STEP_UP,
            Some(user.id),
            meta,
            json!({"session": sid, "amr": amr, "acr": acr}),
        )
        .await?;
        let (roles, permissions) = self.grants(t, user).await?;
        let (access_token, expires_in) = self
            .access_token(
                t,
                user,
                &session,
                &session.client_id,
                &session.scope,
                &roles,
                &permissions,
            )
            .await?;
        Ok(SteppedUp {
            amr,
            acr: acr.to_owned(),
            auth_time: now,
            access_token,
            token_type: "Bearer".into(),
            expires_in,
            backup_codes: None,
        })
    }
}
