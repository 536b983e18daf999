//! [`UserStore`](crate::store::UserStore), [`CredentialStore`](crate::store::CredentialStore)
//! and [`IdentityLinkStore`](crate::store::IdentityLinkStore) in SQL shared by both backends.

/// Expands `UserStore` for a backend store type.
macro_rules! user_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{TenantId, UserId};
            use $crate::store::sql::{capped, email_key};
            use $crate::store::{LIST_MAX, NewUser, StoreError, User, UserPatch, UserStore};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl UserStore for $store {
                async fn insert_user(&self, u: &NewUser) -> Result<User, StoreError> {
                    let now = self.now();
                    let mut tx = self.begin_write().await?;
                    let user = sqlx::query_as::<$db, User>(
                        "INSERT INTO users (id, tenant_id, email, email_lower, display_name, status, \
                             email_verified, must_change_password, password_hash, groups, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING *",
                    )
                    .bind(UserId::new())
                    .bind(u.tenant_id)
                    .bind(u.email.trim())
                    .bind(email_key(&u.email))
                    .bind(&u.display_name)
                    .bind(u.status.as_str())
                    .bind(u.email_verified)
                    .bind(u.must_change_password)
                    .bind(&u.password_hash)
                    .bind(Json(&u.groups))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    if let Some(hash) = &u.password_hash {
                        // The first password counts for the no-reuse rule too.
                        sqlx::query::<$db>(
                            "INSERT INTO password_history (id, tenant_id, user_id, password_hash, created_at) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(uuid::Uuid::now_v7())
                        .bind(user.tenant_id)
                        .bind(user.id)
                        .bind(hash)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(user)
                }

                async fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError> {
                    Ok(Self::by_tenant_and::<User, _>("SELECT * FROM users WHERE tenant_id = $1 AND id = $2", tenant, id).fetch_optional(&self.pool).await?)
                }

                async fn user_by_email(&self, tenant: TenantId, email: &str) -> Result<Option<User>, StoreError> {
                    Ok(sqlx::query_as::<$db, User>(
                        "SELECT * FROM users WHERE tenant_id = $1 AND email_lower = $2",
                    )
                    .bind(tenant)
                    .bind(email_key(email))
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn list_users(&self, tenant: TenantId, after: Option<UserId>, limit: u32) -> Result<Vec<User>, StoreError> {
                    Ok(sqlx::query_as::<$db, User>(
                        "SELECT * FROM users WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
                         ORDER BY id LIMIT $3",
                    )
                    .bind(tenant)
                    .bind(after)
                    .bind(capped(limit, LIST_MAX))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn update_user(&self, tenant: TenantId, id: UserId, p: &UserPatch) -> Result<User, StoreError> {
                    sqlx::query_as::<$db, User>(
                        "UPDATE users SET email = COALESCE($3, email), email_lower = COALESCE($4, email_lower), \
                             display_name = COALESCE($5, display_name), status = COALESCE($6, status), \
                             email_verified = COALESCE($7, email_verified), \
                             must_change_password = COALESCE($8, must_change_password), \
                             groups = COALESCE($9, groups), updated_at = $10 \
                         WHERE tenant_id = $1 AND id = $2 RETURNING *",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(p.email.as_deref().map(str::trim))
                    .bind(p.email.as_deref().map(email_key))
                    .bind(&p.display_name)
                    .bind(p.status.map(|s| s.as_str()))
                    .bind(p.email_verified)
                    .bind(p.must_change_password)
                    .bind(p.groups.as_ref().map(Json))
                    .bind(self.now())
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)
                }

                async fn erase_user(&self, tenant: TenantId, id: UserId) -> Result<bool, StoreError> {
                    // Factors, sessions (and their refresh families), history, identities,
                    // backup codes, one-time tokens and lockout rows cascade; audit rows stay.
                    let done = sqlx::query::<$db>("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }
            }
        };
    };
}
pub(crate) use user_store;

/// Expands `CredentialStore` for a backend store type.
macro_rules! credential_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{TenantId, UserId};
            use $crate::store::sql::capped;
            use $crate::store::{CredentialStore, LIST_MAX, StoreError};

            #[async_trait::async_trait]
            impl CredentialStore for $store {
                async fn set_password(
                    &self,
                    tenant: TenantId,
                    user: UserId,
                    hash: Option<&str>,
                    keep_history: u32,
                    must_change_password: bool,
                ) -> Result<(), StoreError> {
                    let now = self.now();
                    let mut tx = self.begin_write().await?;
                    let done = sqlx::query::<$db>(
                        "UPDATE users SET password_hash = $3, must_change_password = $4, updated_at = $5 \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(hash)
                    .bind(must_change_password)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    if let Some(hash) = hash {
                        sqlx::query::<$db>(
                            "INSERT INTO password_history (id, tenant_id, user_id, password_hash, created_at) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(uuid::Uuid::now_v7())
                        .bind(tenant)
                        .bind(user)
                        .bind(hash)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query::<$db>(
                        "DELETE FROM password_history WHERE tenant_id = $1 AND user_id = $2 AND id NOT IN \
                           (SELECT id FROM password_history WHERE tenant_id = $1 AND user_id = $2 \
                            ORDER BY created_at DESC, id DESC LIMIT $3)",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(capped(keep_history, LIST_MAX))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn password_history(&self, tenant: TenantId, user: UserId, limit: u32) -> Result<Vec<String>, StoreError> {
                    Ok(sqlx::query_scalar::<$db, String>(
                        "SELECT password_hash FROM password_history WHERE tenant_id = $1 AND user_id = $2 \
                         ORDER BY created_at DESC, id DESC LIMIT $3",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(capped(limit, LIST_MAX))
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        };
    };
}
pub(crate) use credential_store;

/// Expands `IdentityLinkStore` for a backend store type.
macro_rules! identity_link_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{IdpId, TenantId, UserId};
            use $crate::store::sql::ts;
            use $crate::store::{ExternalIdentity, IdentityLinkStore, NewExternalIdentity, StoreError};
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl IdentityLinkStore for $store {
                async fn link_identity(&self, l: &NewExternalIdentity) -> Result<ExternalIdentity, StoreError> {
                    Ok(sqlx::query_as::<$db, ExternalIdentity>(
                        "INSERT INTO external_identities (id, tenant_id, user_id, idp_id, subject, created_at, groups) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                    )
                    .bind(uuid::Uuid::now_v7())
                    .bind(l.tenant_id)
                    .bind(l.user_id)
                    .bind(l.idp_id)
                    .bind(&l.subject)
                    .bind(self.now())
                    .bind(Json(&l.groups))
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn identity_by_subject(&self, tenant: TenantId, idp: IdpId, subject: &str) -> Result<Option<ExternalIdentity>, StoreError> {
                    Ok(sqlx::query_as::<$db, ExternalIdentity>(
                        "SELECT * FROM external_identities WHERE tenant_id = $1 AND idp_id = $2 AND subject = $3",
                    )
                    .bind(tenant)
                    .bind(idp)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn identities_of_user(&self, tenant: TenantId, user: UserId) -> Result<Vec<ExternalIdentity>, StoreError> {
                    let sql = "SELECT * FROM external_identities WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id";
                    Ok(Self::by_tenant_and(sql, tenant, user).fetch_all(&self.pool).await?)
                }

                async fn touch_identity(&self, tenant: TenantId, id: uuid::Uuid, now: DateTime<Utc>, groups: &[String]) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE external_identities SET last_login_at = $3, groups = $4 WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(ts(now))
                    .bind(Json(groups))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn idp_groups_of_user(&self, tenant: TenantId, user: UserId) -> Result<Vec<(String, String)>, StoreError> {
                    let rows: Vec<(String, Json<Vec<String>>)> = sqlx::query_as::<$db, (String, Json<Vec<String>>)>(
                        "SELECT p.name, e.groups FROM external_identities e \
                         JOIN identity_providers p ON p.tenant_id = e.tenant_id AND p.id = e.idp_id \
                         WHERE e.tenant_id = $1 AND e.user_id = $2 ORDER BY p.name",
                    )
                    .bind(tenant)
                    .bind(user)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .flat_map(|(idp, Json(groups))| groups.into_iter().map(move |g| (idp.clone(), g)))
                        .collect())
                }

                async fn unlink_identity(&self, tenant: TenantId, user: UserId, idp: IdpId) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "DELETE FROM external_identities WHERE tenant_id = $1 AND user_id = $2 AND idp_id = $3",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(idp)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }
            }
        };
    };
}
pub(crate) use identity_link_store;
