//! [`SigningKeyStore`](crate::store::SigningKeyStore) in SQL shared by both backends.

/// Expands `SigningKeyStore` for a backend store type.
macro_rules! signing_key_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::TenantId;
            use $crate::store::sql::{ots, ts};
            use $crate::store::{SigningKeyRecord, SigningKeyStore, StoreError};
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl SigningKeyStore for $store {
                async fn insert_signing_key(&self, k: &SigningKeyRecord) -> Result<(), StoreError> {
                    sqlx::query::<$db>(
                        "INSERT INTO signing_keys (kid, tenant_id, algorithm, public_jwk, private_key, \
                             created_at, activates_at, retires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&k.kid)
                    .bind(k.tenant_id)
                    .bind(&k.algorithm)
                    .bind(Json(&k.public_jwk))
                    .bind(&k.private_key)
                    .bind(ts(k.created_at))
                    .bind(ts(k.activates_at))
                    .bind(ots(k.retires_at))
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn signing_keys(&self, tenant: TenantId) -> Result<Vec<SigningKeyRecord>, StoreError> {
                    Ok(sqlx::query_as::<$db, SigningKeyRecord>(
                        "SELECT * FROM signing_keys WHERE tenant_id = $1 ORDER BY activates_at, kid",
                    )
                    .bind(tenant)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn set_signing_key_retires_at(&self, tenant: TenantId, kid: &str, retires_at: DateTime<Utc>) -> Result<(), StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE signing_keys SET retires_at = $3 WHERE tenant_id = $1 AND kid = $2",
                    )
                    .bind(tenant)
                    .bind(kid)
                    .bind(ts(retires_at))
                    .execute(&self.pool)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn reseal_signing_key(&self, tenant: TenantId, kid: &str, previous: &[u8], sealed: &[u8]) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE signing_keys SET private_key = $4 \
                         WHERE tenant_id = $1 AND kid = $2 AND private_key = $3",
                    )
                    .bind(tenant)
                    .bind(kid)
                    .bind(previous)
                    .bind(sealed)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn delete_retired_signing_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let done = sqlx::query::<$db>(
                        "DELETE FROM signing_keys WHERE retires_at IS NOT NULL AND retires_at <= $1",
                    )
                    .bind(ts(now))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}
pub(crate) use signing_key_store;
