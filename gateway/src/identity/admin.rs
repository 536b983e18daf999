//! What operators of the service do to accounts: suspend and reactivate, GDPR erasure, and
//! the first-admin bootstrap of a tenant (from the config, `KEYGATE_BOOTSTRAP_*`).

use super::accounts::parse_email;
use super::audit::kind;
use super::principal::ADMIN_GROUP;
use super::{Bootstrap, IdentityError, IdentityService, Principal, RequestMeta};
use keygate_core::ids::UserId;
use keygate_core::store::{NewUser, StoreError, UserPatch, UserStatus};
use serde_json::json;

impl IdentityService {
    /// Suspends (`true`) or reactivates an account of the admin's tenant; suspension ends
    /// every session at once.
    #[tracing::instrument(name = "identity.set_suspended", level = "debug", skip_all)]
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
    #[tracing::instrument(name = "identity.erase_user", level = "debug", skip_all)]
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
    #[tracing::instrument(name = "identity.bootstrap_admin", level = "debug", skip_all)]
    pub async fn bootstrap_admin(
        &self,
        tenant: &str,
        email: &str,
        password: &str,
    ) -> Result<Bootstrap, IdentityError> {
        let t = self.tenant(tenant).await?;
        let d = self.deps();
        let Ok(email) = parse_email(email) else {
            return Err(IdentityError::InvalidRequest(
                "KEYGATE_BOOTSTRAP_EMAIL is not a valid address".into(),
            ));
        };
        if let Some(existing) = d.store.user_by_email(t.row.id, &email).await? {
            return Ok(Bootstrap::AlreadyExists(existing.id));
        }
        let policy = &t.settings.password_policy;
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
                email: email.clone(),
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
                    .user_by_email(t.row.id, &email)
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

    /// Bootstraps the configured first admin (`KEYGATE_BOOTSTRAP_*`, read by
    /// `keygate_core::config`).
    pub async fn bootstrap(
        &self,
        admin: &keygate_core::config::BootstrapAdmin,
    ) -> Result<Bootstrap, IdentityError> {
        self.bootstrap_admin(&admin.tenant, &admin.email, admin.password.expose())
            .await
    }

    /// Runs [`Self::bootstrap`] in the background, retrying while the tenant does not exist
    /// yet (the operator may still be reconciling); does nothing for `None`.
    pub fn spawn_bootstrap(&self, admin: Option<keygate_core::config::BootstrapAdmin>) {
        let Some(admin) = admin else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let service = self.clone();
        handle.spawn(async move {
            for _ in 0..120 {
                match service.bootstrap(&admin).await {
                    Ok(Bootstrap::Created(id)) => {
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
}
