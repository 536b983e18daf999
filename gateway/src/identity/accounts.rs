//! Account workflows: sign-up per registration mode, invites and email verification, and
//! the email gate shared with password reset ([`super::recovery`]); suspension, erasure and
//! the first-admin bootstrap are in [`super::admin`]. Answers never reveal whether an
//! account exists where a stranger could ask (sign-up, resend).

use super::audit::kind;
use super::mail::{Mail, recipient_key};
use super::password;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, Principal, RequestMeta, SignUp};
use keygate_core::crypto::{random::random_token, sha256};
use keygate_core::email::EmailAddress;
use keygate_core::ids::UserId;
use keygate_core::store::{
    NewOneTimeToken, NewUser, OneTimeToken, StoreError, TokenPurpose, User, UserPatch, UserStatus,
};
use keygate_core::tenant_settings::{EmailVerification, Registration};
use serde_json::json;

/// How long an email-verification link works.
const VERIFY_TTL: chrono::Duration = chrono::Duration::hours(24);
/// How long an invite works.
const INVITE_TTL: chrono::Duration = chrono::Duration::days(7);
/// Longest one-time token looked at.
const MAX_LINK_TOKEN_BYTES: usize = 256;

/// `email` in the one syntax keygate accepts ([`EmailAddress`]: ASCII local part, domain
/// in punycode), or the field error that says why not.
pub(super) fn parse_email(email: &str) -> Result<String, IdentityError> {
    EmailAddress::parse(email)
        .map(EmailAddress::into_string)
        .map_err(IdentityError::InvalidEmail)
}

impl IdentityService {
    /// Registers an account per the tenant's registration mode and sends the verification
    /// email. When the email is taken the answer is the same (the owner gets a notice).
    #[tracing::instrument(name = "identity.sign_up", level = "debug", skip_all)]
    pub async fn sign_up(
        &self,
        tenant: &str,
        req: SignUp,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        // Without mail an account could never be verified: refuse before anything is stored.
        if t.settings.sign_in.email_verification != EmailVerification::Off {
            self.require_mail()?;
        }
        let email = self.admit_sign_up(&t, &req, meta).await?;
        if t.settings.sign_in.registration == Registration::Invite {
            self.spend_invite(&t, req.invite.as_deref().unwrap_or_default(), &email)
                .await?;
        }
        let Some(user) = self.create_account(&t, &req, email, meta).await? else {
            return Ok(());
        };
        if t.settings.sign_in.email_verification != EmailVerification::Off && !user.email_verified {
            self.send_verification(&t, &user, meta).await?;
        }
        Ok(())
    }

    /// Whether the tenant takes this registration: its mode, an email in the accepted syntax
    /// (returned in its stored form), a password its policy accepts, and the address within
    /// its rate limit.
    async fn admit_sign_up(
        &self,
        t: &LiveTenant,
        req: &SignUp,
        meta: &RequestMeta,
    ) -> Result<String, IdentityError> {
        match t.settings.sign_in.registration {
            Registration::Closed => return Err(IdentityError::RegistrationClosed),
            Registration::Invite if req.invite.is_none() => {
                return Err(IdentityError::InviteRequired);
            }
            _ => {}
        }
        let email = parse_email(&req.email)?;
        if req.password.len() > super::signin::MAX_PASSWORD_BYTES {
            return Err(IdentityError::PasswordPolicy(
                "the password is too long".into(),
            ));
        }
        password::check(
            &t.settings.password_policy,
            &self.deps().breached,
            &req.password,
            &email,
        )?;
        if let Some(ip) = meta.ip {
            self.limit(
                "signup-ip",
                &format!("{}:{ip}", t.row.id),
                self.deps().limits.resend_per_ip,
            )
            .await?;
        }
        Ok(email)
    }

    /// Spends an invite; it must have been issued for `email`.
    async fn spend_invite(
        &self,
        t: &LiveTenant,
        invite: &str,
        email: &str,
    ) -> Result<(), IdentityError> {
        let consumed = self
            .deps()
            .store
            .consume_one_time_token(
                t.row.id,
                TokenPurpose::Invite,
                &sha256(invite.as_bytes()),
                self.now(),
            )
            .await?;
        let invited = consumed
            .as_ref()
            .and_then(|tok| {
                tok.data
                    .get("email")
                    .and_then(|e| e.as_str())
                    .map(str::to_owned)
            })
            .is_some_and(|e| e.eq_ignore_ascii_case(email));
        if !invited {
            return Err(IdentityError::InviteRequired);
        }
        Ok(())
    }

    /// Stores the account with its password and audits it; `None` when the email is taken
    /// (its owner is told by email, the caller gets the same answer as a new account).
    async fn create_account(
        &self,
        t: &LiveTenant,
        req: &SignUp,
        email: String,
        meta: &RequestMeta,
    ) -> Result<Option<User>, IdentityError> {
        let d = self.deps();
        let hash = d.hasher.hash(&req.password).await?;
        let display_name = req
            .display_name
            .as_deref()
            .map(|n| n.trim().chars().take(200).collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
        let new = NewUser {
            tenant_id: t.row.id,
            email: email.clone(),
            display_name,
            status: UserStatus::Active,
            email_verified: t.settings.sign_in.registration == Registration::Invite,
            must_change_password: false,
            password_hash: None,
            groups: Vec::new(),
        };
        let user = match d.store.insert_user(&new).await {
            Ok(u) => u,
            Err(StoreError::Conflict {
                constraint: "users_email",
            }) => {
                self.send_later(t, &email, Mail::RegistrationAttempt);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        d.store
            .set_password(
                t.row.id,
                user.id,
                Some(&hash),
                t.settings.password_policy.history.max(1),
                false,
            )
            .await?;
        self.audit(
            t,
            kind::SIGN_UP,
            Some(user.id),
            meta,
            json!({"registration": format!("{:?}", t.settings.sign_in.registration).to_lowercase()}),
        )
        .await?;
        Ok(Some(user))
    }

    async fn send_verification(
        &self,
        t: &LiveTenant,
        user: &User,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let d = self.deps();
        let now = self.now();
        d.store
            .invalidate_one_time_tokens(t.row.id, user.id, TokenPurpose::VerifyEmail, now)
            .await?;
        let token = self
            .one_time_token(
                t,
                Some(user.id),
                TokenPurpose::VerifyEmail,
                json!({"email": user.email}),
                VERIFY_TTL,
            )
            .await?;
        let link = format!("{}/verify-email?token={token}", t.issuer);
        self.send_later(
            t,
            &user.email,
            Mail::Verify {
                link: &link,
                code: &token,
            },
        );
        self.audit(t, kind::VERIFICATION_SENT, Some(user.id), meta, json!({}))
            .await
    }

    pub(super) async fn one_time_token(
        &self,
        t: &LiveTenant,
        user: Option<UserId>,
        purpose: TokenPurpose,
        data: serde_json::Value,
        ttl: chrono::Duration,
    ) -> Result<String, IdentityError> {
        let token = random_token()?;
        self.deps()
            .store
            .insert_one_time_token(&NewOneTimeToken {
                token_hash: sha256(token.as_bytes()).to_vec(),
                tenant_id: t.row.id,
                user_id: user,
                purpose,
                data,
                expires_at: self.now() + ttl,
            })
            .await?;
        Ok(token)
    }

    /// Invites `email` to the admin's tenant (for `registration: invite`): a single-use
    /// token, valid seven days, mailed to the address; signing up with it verifies the email.
    #[tracing::instrument(name = "identity.invite", level = "debug", skip_all)]
    pub async fn invite(
        &self,
        admin: &Principal,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        if !admin.is_admin() {
            return Err(IdentityError::Forbidden);
        }
        let t = self.tenant(&admin.tenant).await?;
        self.require_mail()?;
        let email = parse_email(email)?;
        let email = email.as_str();
        let token = self
            .one_time_token(
                &t,
                None,
                TokenPurpose::Invite,
                json!({"email": email}),
                INVITE_TTL,
            )
            .await?;
        let link = format!("{}/signup?invite={token}", t.issuer);
        self.send_later(
            &t,
            email,
            Mail::Invite {
                link: &link,
                code: &token,
            },
        );
        self.audit(&t, kind::INVITED, admin.user_id, meta, json!({}))
            .await
    }

    /// Consumes an email-verification token (single use, expiring) and marks the email verified.
    #[tracing::instrument(name = "identity.verify_email", level = "debug", skip_all)]
    pub async fn verify_email(
        &self,
        tenant: &str,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        check_link_shape(token)?;
        let d = self.deps();
        let (consumed, user) = self
            .redeem_link(&t, TokenPurpose::VerifyEmail, token)
            .await?;
        // A link for an address the account no longer has proves nothing.
        if consumed
            .data
            .get("email")
            .and_then(|e| e.as_str())
            .is_some_and(|e| !e.eq_ignore_ascii_case(&user.email))
        {
            return Err(IdentityError::InvalidLink);
        }
        d.store
            .update_user(
                t.row.id,
                user.id,
                &UserPatch {
                    email_verified: Some(true),
                    ..UserPatch::default()
                },
            )
            .await?;
        // The address now binds its roles: this replica's cached grants are stale.
        self.inner.subjects.forget(t.row.id, user.id);
        self.audit(&t, kind::EMAIL_VERIFIED, Some(user.id), meta, json!({}))
            .await
    }

    /// The gate in front of every "email me a link" request (`flow` names its rate buckets):
    /// too many requests from one address is an error the caller sees; a malformed address,
    /// or one that already got its share of mails, is answered like success so the answer
    /// never tells whether an account exists. Returns whether a mail may go out.
    pub(super) async fn may_email(
        &self,
        t: &LiveTenant,
        email: &str,
        meta: &RequestMeta,
        flow: &str,
        per_ip: u64,
    ) -> Result<bool, IdentityError> {
        if let Some(ip) = meta.ip {
            self.limit(&format!("{flow}-ip"), &format!("{}:{ip}", t.row.id), per_ip)
                .await?;
        }
        if EmailAddress::parse(email).is_err() {
            return Ok(false);
        }
        let per_address = self.deps().limits.emails_per_address;
        Ok(self
            .limit(&format!("{flow}-to"), &recipient_key(t, email), per_address)
            .await
            .is_ok())
    }

    /// Sends a new verification email if the account exists and is unverified; answers the
    /// same either way.
    #[tracing::instrument(name = "identity.resend_verification", level = "debug", skip_all)]
    pub async fn resend_verification(
        &self,
        tenant: &str,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        self.require_mail()?;
        let email = email.trim();
        let per_ip = self.deps().limits.resend_per_ip;
        if !self.may_email(&t, email, meta, "resend", per_ip).await? {
            return Ok(());
        }
        if let Some(user) = self.deps().store.user_by_email(t.row.id, email).await?
            && !user.email_verified
            && user.status == UserStatus::Active
        {
            self.send_verification(&t, &user, meta).await?;
        }
        Ok(())
    }
}

/// Refuses a link token no link of ours could carry (empty or absurdly long) before any lookup.
pub(super) fn check_link_shape(token: &str) -> Result<(), IdentityError> {
    if token.is_empty() || token.len() > MAX_LINK_TOKEN_BYTES {
        return Err(IdentityError::InvalidLink);
    }
    Ok(())
}

impl IdentityService {
    /// Spends an emailed link's token of `purpose` (single use, expiring) and loads the
    /// account it was issued for; unknown, spent, expired or orphaned links are `InvalidLink`.
    pub(super) async fn redeem_link(
        &self,
        t: &LiveTenant,
        purpose: TokenPurpose,
        token: &str,
    ) -> Result<(OneTimeToken, User), IdentityError> {
        let d = self.deps();
        let consumed = d
            .store
            .consume_one_time_token(t.row.id, purpose, &sha256(token.as_bytes()), self.now())
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        let user_id = consumed.user_id.ok_or(IdentityError::InvalidLink)?;
        let user = d
            .store
            .user(t.row.id, user_id)
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        Ok((consumed, user))
    }
}
