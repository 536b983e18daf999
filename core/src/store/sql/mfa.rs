//! [`MfaStore`](crate::store::MfaStore) in SQL shared by both backends.

/// Expands `MfaStore` for a backend store type.
macro_rules! mfa_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{FactorId, TenantId, UserId};
            use $crate::store::sql::ts;
            use $crate::store::{Factor, MfaStore, NewFactor, StoreError};
            use chrono::{DateTime, Utc};

            #[async_trait::async_trait]
            impl MfaStore for $store {
                async fn insert_factor(&self, f: &NewFactor) -> Result<Factor, StoreError> {
                    Ok(sqlx::query_as::<$db, Factor>(
                        "INSERT INTO mfa_factors (id, tenant_id, user_id, kind, label, secret, confirmed, \
                             created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $7) RETURNING *",
                    )
                    .bind(FactorId::new())
                    .bind(f.tenant_id)
                    .bind(f.user_id)
                    .bind(f.kind.as_str())
                    .bind(&f.label)
                    .bind(&f.secret)
                    .bind(self.now())
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn factor(&self, tenant: TenantId, id: FactorId) -> Result<Option<Factor>, StoreError> {
                    Ok(Self::by_tenant_and("SELECT * FROM mfa_factors WHERE tenant_id = $1 AND id = $2", tenant, id).fetch_optional(&self.pool).await?)
                }

                async fn factors_of_user(&self, tenant: TenantId, user: UserId) -> Result<Vec<Factor>, StoreError> {
                    let sql = "SELECT * FROM mfa_factors WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id";
                    Ok(Self::by_tenant_and(sql, tenant, user).fetch_all(&self.pool).await?)
                }

                async fn factors_page(&self, tenant: TenantId, after: Option<FactorId>, limit: u32) -> Result<Vec<Factor>, StoreError> {
                    Ok(sqlx::query_as::<$db, Factor>(
                        "SELECT * FROM mfa_factors WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
                    )
                    .bind(tenant)
                    .bind(after)
                    .bind(i64::from(limit.min($crate::store::LIST_MAX)))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn reseal_factor_secret(&self, tenant: TenantId, id: FactorId, previous: &[u8], sealed: &[u8]) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE mfa_factors SET secret = $4 WHERE tenant_id = $1 AND id = $2 AND secret = $3",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(previous)
                    .bind(sealed)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn confirm_factor(&self, tenant: TenantId, id: FactorId) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE mfa_factors SET confirmed = TRUE, updated_at = $3 WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn update_factor_secret(&self, tenant: TenantId, id: FactorId, secret: &[u8]) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE mfa_factors SET secret = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(secret)
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn record_factor_use(&self, tenant: TenantId, id: FactorId, previous: &[u8], secret: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE mfa_factors SET secret = $4, last_used_at = $5, updated_at = $6 \
                         WHERE tenant_id = $1 AND id = $2 AND secret = $3",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(previous)
                    .bind(secret)
                    .bind(ts(now))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn rename_factor(&self, tenant: TenantId, id: FactorId, label: &str) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE mfa_factors SET label = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(label)
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn delete_factor(&self, tenant: TenantId, id: FactorId) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>("DELETE FROM mfa_factors WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn advance_totp_step(&self, tenant: TenantId, id: FactorId, step: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
                    // Compare-and-set in one statement: a step at or below the last accepted one
                    // (a replay, or an older code) matches no row.
                    let done = sqlx::query::<$db>(
                        "UPDATE mfa_factors SET last_used_step = $3, last_used_at = $4, updated_at = $5 \
                         WHERE tenant_id = $1 AND id = $2 AND kind = 'totp' \
                           AND (last_used_step IS NULL OR last_used_step < $3)",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(step)
                    .bind(ts(now))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn replace_backup_codes(&self, tenant: TenantId, user: UserId, hashes: &[Vec<u8>]) -> Result<(), StoreError> {
                    let now = self.now();
                    let mut tx = self.begin_write().await?;
                    sqlx::query::<$db>("DELETE FROM backup_codes WHERE tenant_id = $1 AND user_id = $2")
                        .bind(tenant)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                    for hash in hashes {
                        sqlx::query::<$db>(
                            "INSERT INTO backup_codes (id, tenant_id, user_id, code_hash, created_at) \
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
                    tx.commit().await?;
                    Ok(())
                }

                async fn use_backup_code(&self, tenant: TenantId, user: UserId, hash: &[u8], now: DateTime<Utc>) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE backup_codes SET used_at = $4 \
                         WHERE tenant_id = $1 AND user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(hash)
                    .bind(ts(now))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn remaining_backup_codes(&self, tenant: TenantId, user: UserId) -> Result<i64, StoreError> {
                    Ok(sqlx::query_scalar::<$db, i64>(
                        "SELECT COUNT(*) FROM backup_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(user)
                    .fetch_one(&self.pool)
                    .await?)
                }
            }
        };
    };
}
pub(crate) use mfa_store;
