//! [`IdpStore`](crate::store::IdpStore) in SQL shared by both backends.

/// Expands `IdpStore` for a backend store type.
macro_rules! idp_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{IdpId, TenantId};
            use $crate::store::{IdentityProvider, IdpStore, IdpUpsert, StoreError};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl IdpStore for $store {
                async fn upsert_idp(&self, i: &IdpUpsert) -> Result<IdentityProvider, StoreError> {
                    if let Some(existing) = self.idp_by_name(i.tenant_id, &i.name).await? {
                        let unchanged = existing.owner_uid == i.owner_uid
                            && existing.kind == i.kind
                            && existing.config == i.config
                            && existing.client_secret == i.client_secret
                            && existing.generation == i.generation;
                        if unchanged {
                            // A resync of an unchanged resource writes nothing.
                            return Ok(existing);
                        }
                    }
                    let now = self.now();
                    Ok(sqlx::query_as::<$db, IdentityProvider>(
                        "INSERT INTO identity_providers (id, tenant_id, name, owner_uid, kind, config, \
                             client_secret, generation, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                         ON CONFLICT (tenant_id, name) DO UPDATE SET owner_uid = excluded.owner_uid, \
                             kind = excluded.kind, config = excluded.config, \
                             client_secret = excluded.client_secret, generation = excluded.generation, \
                             updated_at = excluded.updated_at \
                         RETURNING *",
                    )
                    .bind(IdpId::new())
                    .bind(i.tenant_id)
                    .bind(&i.name)
                    .bind(&i.owner_uid)
                    .bind(i.kind.as_str())
                    .bind(Json(&i.config))
                    .bind(&i.client_secret)
                    .bind(i.generation)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn idp(&self, tenant: TenantId, id: IdpId) -> Result<Option<IdentityProvider>, StoreError> {
                    Ok(Self::by_tenant_and::<IdentityProvider, _>("SELECT * FROM identity_providers WHERE tenant_id = $1 AND id = $2", tenant, id).fetch_optional(&self.pool).await?)
                }

                async fn idp_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<IdentityProvider>, StoreError> {
                    Ok(Self::by_tenant_and::<IdentityProvider, _>("SELECT * FROM identity_providers WHERE tenant_id = $1 AND name = $2", tenant, name).fetch_optional(&self.pool).await?)
                }

                async fn list_idps(&self, tenant: TenantId) -> Result<Vec<IdentityProvider>, StoreError> {
                    Ok(sqlx::query_as::<$db, IdentityProvider>(
                        "SELECT * FROM identity_providers WHERE tenant_id = $1 ORDER BY name",
                    )
                    .bind(tenant)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn delete_idp(&self, tenant: TenantId, id: IdpId) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "DELETE FROM identity_providers WHERE tenant_id = $1 AND id = $2",
                    )
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
pub(crate) use idp_store;
