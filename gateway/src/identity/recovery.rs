//! Password reset (the request answers the same whether or not the account exists; the
//! link is single-use and expires) and password change (current password required), both
//! through one policy: length, the breached list, history.

use super::accounts::check_link_shape;
use super::audit::kind;
use super::mail::Mail;
use super::password;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, Principal, RequestMeta};
use keygate_core::store::{TokenPurpose, User, UserPatch, UserStatus};
use serde_json::json;

/// How long a password-reset link works.
const RESET_TTL: chrono::Duration = chrono::Duration::hours(1);

impl IdentityService {
    /// Sends a reset link if the account exists; answers the same either way.
    #[tracing::instrument(name = "identity.request_password_reset", level = "debug", skip_all)]
    pub async fn request_password_reset(
        &self,
        tenant: &str,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        let Some(user) = self
            .link_recipient(&t, email, meta, "reset", kind::RESET_REQUESTED)
            .await?
        else {
            return Ok(());
        };
        self.deps()
            .store
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
        let link = format!("{}/reset-password?token={token}", t.issuer);
        self.send_later(
            &t,
            &user.email,
            Mail::Reset {
                link: &link,
                code: &token,
            },
        );
        Ok(())
    }

    /// The active account an emailed link for `email` (a reset or unlock link) goes to, if
    /// any. Refuses when no mail can be sent; within the address's `budget` of such mails,
    /// audits the request as `audit_kind` whether or not an account was found, so the
    /// answer never tells.
    pub(super) async fn link_recipient(
        &self,
        t: &LiveTenant,
        email: &str,
        meta: &RequestMeta,
        budget: &'static str,
        audit_kind: &'static str,
    ) -> Result<Option<User>, IdentityError> {
        self.require_mail()?;
        let email = email.trim();
        let per_ip = self.deps().limits.reset_per_ip;
        if !self.may_email(t, email, meta, budget, per_ip).await? {
            return Ok(None);
        }
        let user = self
            .deps()
            .store
            .user_by_email(t.row.id, email)
            .await?
            .filter(|u| u.status == UserStatus::Active);
        self.audit(
            t,
            audit_kind,
            user.as_ref().map(|u| u.id),
            meta,
            json!({"account_found": user.is_some()}),
        )
        .await?;
        Ok(user)
    }

    /// Consumes a reset token (single use, expiring), sets the new password, ends every
    /// session of the account and clears its lockout.
    #[tracing::instrument(name = "identity.reset_password", level = "debug", skip_all)]
    pub async fn reset_password(
        &self,
        tenant: &str,
        token: &str,
        new_password: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        check_link_shape(token)?;
        if new_password.len() > super::signin::MAX_PASSWORD_BYTES {
            return Err(IdentityError::PasswordPolicy(
                "the password is too long".into(),
            ));
        }
        // Rules that need no account first, so a bad password does not burn the link.
        password::check(
            &t.settings.password_policy,
            &self.deps().breached,
            new_password,
            "",
        )?;
        let d = self.deps();
        let (_, user) = self
            .redeem_link(&t, TokenPurpose::ResetPassword, token)
            .await?;
        if user.status != UserStatus::Active {
            return Err(IdentityError::InvalidLink);
        }
        self.set_new_password(&t, &user, new_password, meta).await?;
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
        d.store.reset_lockout(t.row.id, user.id).await?;
        self.revoke_all_sessions(&t, user.id).await?;
        self.audit(&t, kind::RESET_DONE, Some(user.id), meta, json!({}))
            .await?;
        self.alert(
            &t,
            &user.email,
            super::mail::SecurityChange::PasswordChanged,
        );
        Ok(())
    }

    /// Changes the calling person's password (current password and a recent authentication
    /// required); their other sessions end and they are told by mail.
    #[tracing::instrument(name = "identity.change_password", level = "debug", skip_all)]
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
        self.require_recent_authentication(caller, &t, user.id)
            .await?;
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
            .await?;
        self.alert(
            &t,
            &user.email,
            super::mail::SecurityChange::PasswordChanged,
        );
        Ok(())
    }

    /// Applies the policy (length, email, breached list, no reuse of the last N) and stores
    /// the new hash with its history entry; `must_change_password` is cleared with it.
    pub(super) async fn set_new_password(
        &self,
        t: &LiveTenant,
        user: &User,
        new_password: &str,
        _meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let policy = &t.settings.password_policy;
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
}
