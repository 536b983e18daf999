//! [`ApiKeyStore`](crate::store::ApiKeyStore) in SQL shared by both backends.

/// Expands `ApiKeyStore` for a backend store type.
macro_rules! api_key_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{ApiKeyId, TenantId};
            use $crate::store::sql::{capped, ots, ts};
            use $crate::store::{ApiKeyGrants, ApiKeyRecord, ApiKeyStore, LIST_MAX, NewApiKey, StoreError};
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl ApiKeyStore for $store {
                async fn insert_api_key(&self, k: &NewApiKey) -> Result<ApiKeyRecord, StoreError> {
                    Ok(sqlx::query_as::<$db, ApiKeyRecord>(
                        "INSERT INTO api_keys (id, tenant_id, owner_uid, name, prefix, hash, roles, \
                             permissions, scopes, expires_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING *",
                    )
                    .bind(ApiKeyId::new())
                    .bind(k.tenant_id)
                    .bind(&k.owner_uid)
                    .bind(&k.name)
                    .bind(&k.prefix)
                    .bind(&k.hash)
                    .bind(Json(&k.roles))
                    .bind(Json(&k.permissions))
                    .bind(Json(&k.scopes))
                    .bind(ots(k.expires_at))
                    .bind(self.now())
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn api_key_by_prefix(&self, tenant: TenantId, prefix: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
                    Ok(Self::by_tenant_and::<ApiKeyRecord, _>("SELECT * FROM api_keys WHERE tenant_id = $1 AND prefix = $2", tenant, prefix).fetch_optional(&self.pool).await?)
                }

                async fn api_key(&self, tenant: TenantId, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
                    Ok(Self::by_tenant_and("SELECT * FROM api_keys WHERE tenant_id = $1 AND id = $2", tenant, id).fetch_optional(&self.pool).await?)
                }

                async fn api_keys_of_owner(&self, tenant: TenantId, owner_uid: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
                    let sql = "SELECT * FROM api_keys WHERE tenant_id = $1 AND owner_uid = $2 \
                               ORDER BY created_at DESC, id DESC";
                    Ok(Self::by_tenant_and(sql, tenant, owner_uid).fetch_all(&self.pool).await?)
                }

                async fn list_api_keys(&self, tenant: TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
                    Ok(sqlx::query_as::<$db, ApiKeyRecord>(
                        "SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                    )
                    .bind(tenant)
                    .bind(i64::from(LIST_MAX))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn list_api_keys_page(
                    &self,
                    tenant: TenantId,
                    after: Option<ApiKeyId>,
                    limit: u32,
                ) -> Result<Vec<ApiKeyRecord>, StoreError> {
                    Ok(sqlx::query_as::<$db, ApiKeyRecord>(
                        "SELECT * FROM api_keys WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
                         ORDER BY id LIMIT $3",
                    )
                    .bind(tenant)
                    .bind(after)
                    .bind(capped(limit, LIST_MAX))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn update_api_key_grants(
                    &self,
                    tenant: TenantId,
                    id: ApiKeyId,
                    g: &ApiKeyGrants,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE api_keys SET roles = $3, permissions = $4, scopes = $5, expires_at = $6, \
                             updated_at = $7 \
                         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(Json(&g.roles))
                    .bind(Json(&g.permissions))
                    .bind(Json(&g.scopes))
                    .bind(ots(g.expires_at))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn supersede_api_key(
                    &self,
                    tenant: TenantId,
                    id: ApiKeyId,
                    now: DateTime<Utc>,
                    grace_until: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE api_keys SET superseded_at = $3, grace_until = $4, updated_at = $5 \
                         WHERE tenant_id = $1 AND id = $2 AND superseded_at IS NULL AND revoked_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(ts(now))
                    .bind(ts(grace_until))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn revoke_api_key(&self, tenant: TenantId, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool, StoreError> {
                    let sql = "UPDATE api_keys SET revoked_at = $3, updated_at = $4 \
                               WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL";
                    Ok(self.stamp_rows(sql, tenant, id, now).await? > 0)
                }

                async fn revoke_api_keys_of_owner(&self, tenant: TenantId, owner_uid: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let sql = "UPDATE api_keys SET revoked_at = $3, updated_at = $4 \
                               WHERE tenant_id = $1 AND owner_uid = $2 AND revoked_at IS NULL";
                    self.stamp_rows(sql, tenant, owner_uid, now).await
                }

                async fn touch_api_key(&self, tenant: TenantId, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(ts(now))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }
            }
        };
    };
}
pub(crate) use api_key_store;
