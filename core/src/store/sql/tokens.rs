//! [`OneTimeTokenStore`](crate::store::OneTimeTokenStore) and
//! [`LockoutStore`](crate::store::LockoutStore) in SQL shared by both backends.

/// Expands `OneTimeTokenStore` for a backend store type.
macro_rules! one_time_token_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{TenantId, UserId};
            use $crate::store::sql::ts;
            use $crate::store::{NewOneTimeToken, OneTimeToken, OneTimeTokenStore, StoreError, TokenPurpose};
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl OneTimeTokenStore for $store {
                async fn insert_one_time_token(&self, t: &NewOneTimeToken) -> Result<OneTimeToken, StoreError> {
                    Ok(sqlx::query_as::<$db, OneTimeToken>(
                        "INSERT INTO one_time_tokens (token_hash, tenant_id, user_id, purpose, data, expires_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                    )
                    .bind(&t.token_hash)
                    .bind(t.tenant_id)
                    .bind(t.user_id)
                    .bind(t.purpose.as_str())
                    .bind(Json(&t.data))
                    .bind(ts(t.expires_at))
                    .bind(self.now())
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn consume_one_time_token(
                    &self,
                    tenant: TenantId,
                    purpose: TokenPurpose,
                    hash: &[u8],
                    now: DateTime<Utc>,
                ) -> Result<Option<OneTimeToken>, StoreError> {
                    // Single use and expiry decided in one statement.
                    Ok(sqlx::query_as::<$db, OneTimeToken>(
                        "UPDATE one_time_tokens SET used_at = $4 \
                         WHERE tenant_id = $1 AND purpose = $2 AND token_hash = $3 \
                           AND used_at IS NULL AND expires_at > $4 \
                         RETURNING *",
                    )
                    .bind(tenant)
                    .bind(purpose.as_str())
                    .bind(hash)
                    .bind(ts(now))
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn invalidate_one_time_tokens(
                    &self,
                    tenant: TenantId,
                    user: UserId,
                    purpose: TokenPurpose,
                    now: DateTime<Utc>,
                ) -> Result<u64, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE one_time_tokens SET used_at = $4 \
                         WHERE tenant_id = $1 AND user_id = $2 AND purpose = $3 AND used_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(purpose.as_str())
                    .bind(ts(now))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected())
                }

                async fn delete_expired_one_time_tokens(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let done = sqlx::query::<$db>("DELETE FROM one_time_tokens WHERE expires_at <= $1")
                        .bind(ts(now))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}
pub(crate) use one_time_token_store;

/// Expands `LockoutStore` for a backend store type.
macro_rules! lockout_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{TenantId, UserId};
            use $crate::store::sql::ts;
            use $crate::store::{FAILURE_WINDOW, LockoutState, LockoutStore, StoreError};
            use chrono::{DateTime, Utc};

            #[async_trait::async_trait]
            impl LockoutStore for $store {
                async fn lockout(&self, tenant: TenantId, user: UserId) -> Result<Option<LockoutState>, StoreError> {
                    Ok(Self::by_tenant_and::<LockoutState, _>("SELECT * FROM lockout WHERE tenant_id = $1 AND user_id = $2", tenant, user).fetch_optional(&self.pool).await?)
                }

                async fn record_failure(&self, tenant: TenantId, user: UserId, now: DateTime<Utc>) -> Result<LockoutState, StoreError> {
                    // One statement, so concurrent failures all count. A run of failures is
                    // forgotten once its first is FAILURE_WINDOW old: the count starts over
                    // (a fixed window, as the gateway counts addresses without an account).
                    Ok(sqlx::query_as::<$db, LockoutState>(
                        "INSERT INTO lockout (tenant_id, user_id, failures, last_failure_at, created_at, updated_at) \
                         VALUES ($1, $2, 1, $3, $3, $4) \
                         ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
                             failures = CASE WHEN lockout.created_at <= $5 THEN 1 ELSE lockout.failures + 1 END, \
                             created_at = CASE WHEN lockout.created_at <= $5 THEN excluded.created_at ELSE lockout.created_at END, \
                             last_failure_at = excluded.last_failure_at, updated_at = excluded.updated_at \
                         RETURNING *",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(ts(now))
                    .bind(self.now())
                    .bind(ts(now - FAILURE_WINDOW))
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn lock_until(&self, tenant: TenantId, user: UserId, until: DateTime<Utc>) -> Result<bool, StoreError> {
                    let sql = "UPDATE lockout SET locked_until = $3, updated_at = $4 WHERE tenant_id = $1 AND user_id = $2";
                    Ok(self.stamp_rows(sql, tenant, user, until).await? > 0)
                }

                async fn reset_lockout(&self, tenant: TenantId, user: UserId) -> Result<(), StoreError> {
                    sqlx::query::<$db>("DELETE FROM lockout WHERE tenant_id = $1 AND user_id = $2")
                        .bind(tenant)
                        .bind(user)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use lockout_store;
