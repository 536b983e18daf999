//! Account workflows: sign-up per registration mode, email verification, password reset
//! and change (policy, breached list, history), suspension, GDPR erasure and the
//! first-admin bootstrap. Answers never reveal whether an account exists where a stranger
//! could ask (sign-up, reset, resend).

use super::audit::kind;
use super::mailer::Email;
use super::password;
use super::principal::ADMIN_GROUP;
use super::tenants::TenantCtx;
use super::{Bootstrap, IdentityError, IdentityService, Principal, RequestMeta, SignUp};
use keygate_core::crypto::{random::random_token, sha256};
use keygate_core::ids::UserId;
use keygate_core::store::{
    NewOneTimeToken, NewUser, StoreError, TokenPurpose, User, UserPatch, UserStatus,
};
use keygate_crds::{EmailVerification, Registration};
use serde_json::json;

/// How long an email-verification link works.
const VERIFY_TTL: chrono::Duration = chrono::Duration::hours(24);
/// How long an invite works.
const INVITE_TTL: chrono::Duration = chrono::Duration::days(7);
/// How long a password-reset link works.
const RESET_TTL: chrono::Duration = chrono::Duration::hours(1);
/// Longest one-time token looked at.
const MAX_LINK_TOKEN_BYTES: usize = 256;

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= super::signin::MAX_EMAIL_BYTES
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

impl IdentityService {
    /// Registers an account per the tenant's registration mode and sends the verification
    /// email. When the email is taken the answer is the same (the owner gets a notice).
    pub async fn sign_up(
        &self,
        tenant: &str,
        req: SignUp,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        let email = req.email.trim().to_owned();
        match t.spec.sign_in.registration {
            Registration::Closed => return Err(IdentityError::RegistrationClosed),
            Registration::Invite if req.invite.is_none() => {
                return Err(IdentityError::InviteRequired);
            }
            _ => {}
        }
        if !plausible_email(&email) {
            return Err(IdentityError::InvalidRequest(
                "email is not a valid address".into(),
            ));
        }
        if req.password.len() > super::signin::MAX_PASSWORD_BYTES {
            return Err(IdentityError::PasswordPolicy(
                "the password is too long".into(),
            ));
        }
        password::check(
            &t.spec.password_policy,
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
        let d = self.deps();
        let now = self.now();
        if t.spec.sign_in.registration == Registration::Invite {
            let invite = req.invite.as_deref().unwrap_or_default();
            let consumed = d
                .store
                .consume_one_time_token(
                    t.row.id,
                    TokenPurpose::Invite,
                    &sha256(invite.as_bytes()),
                    now,
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
                .is_some_and(|e| e.eq_ignore_ascii_case(&email));
            if !invited {
                return Err(IdentityError::InviteRequired);
            }
        }
        let hash = d.hasher.hash(&req.password).await?;
        let display_name = req
            .display_name
            .map(|n| n.trim().chars().take(200).collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
        let verification = t.spec.sign_in.email_verification;
        let new = NewUser {
            tenant_id: t.row.id,
            email: email.clone(),
            display_name,
            status: UserStatus::Active,
            email_verified: t.spec.sign_in.registration == Registration::Invite,
            must_change_password: false,
            password_hash: None,
            groups: Vec::new(),
        };
        let user = match d.store.insert_user(&new).await {
            Ok(u) => u,
            Err(StoreError::Conflict {
                constraint: "users_email",
            }) => {
                self.send_later(Email {
                    to: email,
                    subject: format!("{}: someone tried to register with your address", t.row.display_name),
                    body: "Someone tried to create an account with this email address, which already has one.\n\
                           If it was you, sign in or reset your password instead. Otherwise you can ignore this message.\n"
                        .into(),
                });
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        d.store
            .set_password(
                t.row.id,
                user.id,
                Some(&hash),
                t.spec.password_policy.history.max(1),
                false,
            )
            .await?;
        self.audit(
            &t,
            kind::SIGN_UP,
            Some(user.id),
            meta,
            json!({"registration": format!("{:?}", t.spec.sign_in.registration).to_lowercase()}),
        )
        .await?;
        if verification != EmailVerification::Off && !user.email_verified {
            self.send_verification(&t, &user, meta).await?;
        }
        Ok(())
    }

    async fn send_verification(
        &self,
        t: &TenantCtx,
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
        self.send_later(Email {
            to: user.email.clone(),
            subject: format!("{}: confirm your email address", t.row.display_name),
            body: format!(
                "Confirm your email address by opening this link within 24 hours:\n\n{}/verify-email?token={token}\n\nVerification code: {token}\n",
                t.issuer
            ),
        });
        self.audit(t, kind::VERIFICATION_SENT, Some(user.id), meta, json!({}))
            .await
    }

    async fn one_time_token(
        &self,
        t: &TenantCtx,
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
        let email = email.trim();
        if !plausible_email(email) {
            return Err(IdentityError::InvalidRequest(
                "email is not a valid address".into(),
            ));
        }
        let token = self
            .one_time_token(
                &t,
                None,
                TokenPurpose::Invite,
                json!({"email": email}),
                INVITE_TTL,
            )
            .await?;
        self.send_later(Email {
            to: email.to_owned(),
            subject: format!("{}: you are invited", t.row.display_name),
            body: format!(
                "You are invited to create an account. Open this link within seven days:\n\n{}/signup?invite={token}\n\nInvite code: {token}\n",
                t.issuer
            ),
        });
        self.audit(&t, kind::INVITED, admin.user_id, meta, json!({}))
            .await
    }

    /// Consumes an email-verification token (single use, expiring) and marks the email verified.
    pub async fn verify_email(
        &self,
        tenant: &str,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        if token.is_empty() || token.len() > MAX_LINK_TOKEN_BYTES {
            return Err(IdentityError::InvalidLink);
        }
        let d = self.deps();
        let consumed = d
            .store
            .consume_one_time_token(
                t.row.id,
                TokenPurpose::VerifyEmail,
                &sha256(token.as_bytes()),
                self.now(),
            )
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        let user_id = consumed.user_id.ok_or(IdentityError::InvalidLink)?;
        let user = d
            .store
            .user(t.row.id, user_id)
            .await?
            .ok_or(IdentityError::InvalidLink)?;
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
        self.audit(&t, kind::EMAIL_VERIFIED, Some(user.id), meta, json!({}))
            .await
    }

    /// The gate in front of every "email me a link" request (`flow` names its rate buckets):
    /// too many requests from one address is an error the caller sees; a malformed address,
    /// or one that already got its share of mails, is answered like success so the answer
    /// never tells whether an account exists. Returns whether a mail may go out.
    async fn may_email(
        &self,
        t: &TenantCtx,
        email: &str,
        meta: &RequestMeta,
        flow: &str,
        per_ip: u64,
    ) -> Result<bool, IdentityError> {
        if let Some(ip) = meta.ip {
            self.limit(&format!("{flow}-ip"), &format!("{}:{ip}", t.row.id), per_ip)
                .await?;
        }
        if !plausible_email(email) {
            return Ok(false);
        }
        let per_address = self.deps().limits.emails_per_address;
        Ok(self
            .limit(&format!("{flow}-to"), &address_key(t, email), per_address)
            .await
            .is_ok())
    }

    /// Sends a new verification email if the account exists and is unverified; answers the
    /// same either way.
    pub async fn resend_verification(
        &self,
        tenant: &str,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
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

    /// Sends a reset link if the account exists; answers the same either way.
    pub async fn request_password_reset(
        &self,
        tenant: &str,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        let email = email.trim();
        let per_ip = self.deps().limits.reset_per_ip;
        if !self.may_email(&t, email, meta, "reset", per_ip).await? {
            return Ok(());
        }
        let d = self.deps();
        let user = d
            .store
            .user_by_email(t.row.id, email)
            .await?
            .filter(|u| u.status == UserStatus::Active);
        self.audit(
            &t,
            kind::RESET_REQUESTED,
            user.as_ref().map(|u| u.id),
            meta,
            json!({"account_found": user.is_some()}),
        )
        .await?;
        let Some(user) = user else {
            return Ok(());
        };
        d.store
            .invalidate_one_time_tokens(t.row.id, user.id, TokenPurpose::ResetPassword, self.now())
            .await?;
        let token = self
            .one_time_token(
                &t,
                Some(user.id),
                TokenPurpose::ResetPassword,
                json!({}),
                RESET_TTL,
            )
            .await?;
        self.send_later(Email {
            to: user.email,
            subject: format!("{}: reset your password", t.row.display_name),
            body: format!(
                "Set a new password by opening this link within one hour:\n\n{}/reset-password?token={token}\n\n\
                 Reset code: {token}\nIf you did not ask for this, ignore this message; your password stays as it is.\n",
                t.issuer
            ),
        });
        Ok(())
    }

    /// Consumes a reset token (single use, expiring), sets the new password, ends every
    /// session of the account and clears its lockout.
    pub async fn reset_password(
        &self,
        tenant: &str,
        token: &str,
        new_password: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        if token.is_empty() || token.len() > MAX_LINK_TOKEN_BYTES {
            return Err(IdentityError::InvalidLink);
        }
        if new_password.len() > super::signin::MAX_PASSWORD_BYTES {
            return Err(IdentityError::PasswordPolicy(
                "the password is too long".into(),
            ));
        }
        // Rules that need no account first, so a bad password does not burn the link.
        password::check(
            &t.spec.password_policy,
            &self.deps().breached,
            new_password,
            "",
        )?;
        let d = self.deps();
        let consumed = d
            .store
            .consume_one_time_token(
                t.row.id,
                TokenPurpose::ResetPassword,
                &sha256(token.as_bytes()),
                self.now(),
            )
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        let user = match consumed.user_id {
            Some(id) => d.store.user(t.row.id, id).await?,
            None => None,
        }
        .filter(|u| u.status == UserStatus::Active)
        .ok_or(IdentityError::InvalidLink)?;
        self.set_new_password(&t, &user, new_password, meta).await?;
        d.store
            .update_user(
                t.row.id,
                user.id,
                &UserPatch {
                    email_verified: Some(true),
                    must_change_password: Some(false),
                    ..UserPatch::default()
                },
            )
            .await?;
        d.store.reset_lockout(t.row.id, user.id).await?;
        self.revoke_all_sessions(&t, user.id).await?;
        self.audit(&t, kind::RESET_DONE, Some(user.id), meta, json!({}))
            .await
    }

    /// Changes the calling person's password (current password required); their other
    /// sessions end.
    pub async fn change_password(
        &self,
        caller: &Principal,
        current: &str,
        new_password: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let user_id = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let t = self.tenant(&caller.tenant).await?;
        if current.len() > super::signin::MAX_PASSWORD_BYTES
            || new_password.len() > super::signin::MAX_PASSWORD_BYTES
        {
            return Err(IdentityError::PasswordPolicy(
                "the password is too long".into(),
            ));
        }
        let d = self.deps();
        let user = d
            .store
            .user(t.row.id, user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(IdentityError::InvalidToken)?;
        let ok = match &user.password_hash {
            Some(h) => d.hasher.verify(current, h).await?,
            None => d.hasher.verify_dummy(current).await?,
        };
        if !ok {
            self.audit(
                &t,
                kind::LOGIN_FAILED,
                Some(user.id),
                meta,
                json!({"reason": "bad_current_password"}),
            )
            .await?;
            return Err(IdentityError::WrongCurrentPassword);
        }
        self.set_new_password(&t, &user, new_password, meta).await?;
        let now = self.now();
        let keep = caller.session_id();
        for s in d
            .store
            .active_sessions_of_user(t.row.id, user.id, now)
            .await?
        {
            if Some(s.id) != keep {
                self.end_session(&t, s.id, now).await?;
            }
        }
        self.audit(&t, kind::PASSWORD_CHANGED, Some(user.id), meta, json!({}))
            .await
    }

    /// Applies the policy (length, email, breached list, no reuse of the last N) and stores
    /// the new hash with its history entry.
    pub(super) async fn set_new_password(
        &self,
        t: &TenantCtx,
        user: &User,
        new_password: &str,
        _meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let policy = &t.spec.password_policy;
        let d = self.deps();
        password::check(policy, &d.breached, new_password, &user.email)?;
        if policy.history > 0 {
            for old in d
                .store
                .password_history(t.row.id, user.id, policy.history)
                .await?
            {
                if d.hasher.verify(new_password, &old).await.unwrap_or(false) {
                    return Err(IdentityError::PasswordReused);
                }
            }
        }
        if let Some(current) = &user.password_hash
            && d.hasher
                .verify(new_password, current)
                .await
                .unwrap_or(false)
        {
            return Err(IdentityError::PasswordReused);
        }
        let hash = d.hasher.hash(new_password).await?;
        d.store
            .set_password(t.row.id, user.id, Some(&hash), policy.history.max(1), false)
            .await?;
        Ok(())
    }

    /// Suspends (`true`) or reactivates an account of the admin's tenant; suspension ends
    /// every session at once.
    pub async fn set_suspended(
        &self,
        admin: &Principal,
        user: UserId,
        suspended: bool,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        if !admin.is_admin() {
            return Err(IdentityError::Forbidden);
        }
        let t = self.tenant(&admin.tenant).await?;
        let d = self.deps();
        d.store
            .user(t.row.id, user)
            .await?
            .ok_or(IdentityError::NotFound)?;
        let status = if suspended {
            UserStatus::Suspended
        } else {
            UserStatus::Active
        };
        d.store
            .update_user(
                t.row.id,
                user,
                &UserPatch {
                    status: Some(status),
                    ..UserPatch::default()
                },
            )
            .await?;
        self.inner.subjects.forget(t.row.id, user);
        if suspended {
            self.revoke_all_sessions(&t, user).await?;
        }
        let event = if suspended {
            kind::SUSPENDED
        } else {
            kind::REACTIVATED
        };
        self.audit(&t, event, admin.user_id, meta, json!({"user": user}))
            .await
    }

    /// GDPR erasure of an account (by itself or an admin): the account, factors, sessions,
    /// refresh families, history and identities go; audit rows stay with the bare user id.
    pub async fn erase_user(
        &self,
        caller: &Principal,
        user: UserId,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        if !caller.is_admin() && caller.user_id != Some(user) {
            return Err(IdentityError::Forbidden);
        }
        let t = self.tenant(&caller.tenant).await?;
        let d = self.deps();
        d.store
            .user(t.row.id, user)
            .await?
            .ok_or(IdentityError::NotFound)?;
        self.revoke_all_sessions(&t, user).await?;
        self.inner.subjects.forget(t.row.id, user);
        if !d.store.erase_user(t.row.id, user).await? {
            return Err(IdentityError::NotFound);
        }
        self.audit(
            &t,
            kind::ERASED,
            caller.user_id,
            meta,
            json!({"user": user}),
        )
        .await
    }

    /// Creates the tenant's first admin (verified, in [`ADMIN_GROUP`], must change the
    /// password at first sign-in); does nothing if the email has an account already.
    pub async fn bootstrap_admin(
        &self,
        tenant: &str,
        email: &str,
        password: &str,
    ) -> Result<Bootstrap, IdentityError> {
        let t = self.tenant(tenant).await?;
        let d = self.deps();
        if let Some(existing) = d.store.user_by_email(t.row.id, email.trim()).await? {
            return Ok(Bootstrap::AlreadyExists(existing.id));
        }
        if !plausible_email(email.trim()) {
            return Err(IdentityError::InvalidRequest(
                "KEYGATE_BOOTSTRAP_EMAIL is not a valid address".into(),
            ));
        }
        let policy = &t.spec.password_policy;
        let chars = password.chars().count();
        if chars < policy.min_length as usize || chars > policy.max_length as usize {
            return Err(IdentityError::PasswordPolicy(format!(
                "KEYGATE_BOOTSTRAP_PASSWORD must have {} to {} characters",
                policy.min_length, policy.max_length
            )));
        }
        let hash = d.hasher.hash(password).await?;
        let user = match d
            .store
            .insert_user(&NewUser {
                tenant_id: t.row.id,
                email: email.trim().to_owned(),
                display_name: "Administrator".into(),
                status: UserStatus::Active,
                email_verified: true,
                must_change_password: true,
                password_hash: None,
                groups: vec![ADMIN_GROUP.into()],
            })
            .await
        {
            Ok(u) => u,
            Err(StoreError::Conflict { .. }) => {
                let existing = d
                    .store
                    .user_by_email(t.row.id, email.trim())
                    .await?
                    .ok_or(IdentityError::NotFound)?;
                return Ok(Bootstrap::AlreadyExists(existing.id));
            }
            Err(e) => return Err(e.into()),
        };
        d.store
            .set_password(t.row.id, user.id, Some(&hash), policy.history.max(1), true)
            .await?;
        self.audit(
            &t,
            kind::BOOTSTRAPPED,
            Some(user.id),
            &RequestMeta::default(),
            json!({}),
        )
        .await?;
        Ok(Bootstrap::Created(user.id))
    }

    /// Bootstraps the admin named by `KEYGATE_BOOTSTRAP_TENANT`, `_EMAIL` and `_PASSWORD`
    /// (or `_PASSWORD_FILE`, a mounted Secret) as read through `env`; `None` when unset.
    pub async fn bootstrap_from_env(
        &self,
        env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    ) -> Result<Option<Bootstrap>, IdentityError> {
        let (Some(tenant), Some(email)) = (
            env("KEYGATE_BOOTSTRAP_TENANT"),
            env("KEYGATE_BOOTSTRAP_EMAIL"),
        ) else {
            return Ok(None);
        };
        let password = match (
            env("KEYGATE_BOOTSTRAP_PASSWORD"),
            env("KEYGATE_BOOTSTRAP_PASSWORD_FILE"),
        ) {
            (Some(p), _) => p,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| {
                    IdentityError::InvalidRequest(format!(
                        "KEYGATE_BOOTSTRAP_PASSWORD_FILE {path}: {e}"
                    ))
                })?,
            (None, None) => return Err(IdentityError::InvalidRequest(
                "KEYGATE_BOOTSTRAP_PASSWORD (or _FILE) is required with KEYGATE_BOOTSTRAP_EMAIL"
                    .into(),
            )),
        };
        self.bootstrap_admin(&tenant, &email, &password)
            .await
            .map(Some)
    }

    /// Runs [`Self::bootstrap_from_env`] on the process environment in the background,
    /// retrying while the tenant does not exist yet (the operator may still be reconciling).
    pub fn spawn_bootstrap_from_env(&self) {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if env("KEYGATE_BOOTSTRAP_TENANT").is_none() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let service = self.clone();
        handle.spawn(async move {
            for _ in 0..120 {
                match service.bootstrap_from_env(&env).await {
                    Ok(Some(Bootstrap::Created(id))) => {
                        tracing::info!(user = %id, "bootstrap admin created; it must change its password at first sign-in");
                        return;
                    }
                    Ok(_) => return,
                    Err(IdentityError::TenantNotFound) => tokio::time::sleep(std::time::Duration::from_secs(5)).await,
                    Err(e) => {
                        tracing::error!(error = %e, "bootstrap admin not created");
                        return;
                    }
                }
            }
        });
    }

    /// Sends an email in the background, so timing does not tell whether one was sent.
    pub(super) fn send_later(&self, email: Email) {
        let mailer = self.deps().mailer.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = mailer.send(email).await {
                    tracing::warn!(error = %e, "email not sent");
                }
            });
        }
    }
}

/// Rate-limit key of an email address, without the address itself.
fn address_key(t: &TenantCtx, email: &str) -> String {
    format!(
        "{}:{}",
        t.row.id,
        super::hex(&sha256(email.to_lowercase().as_bytes())[..16])
    )
}
