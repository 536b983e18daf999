//! [`TenantStore`](crate::store::TenantStore) in SQL shared by both backends.

/// Expands `TenantStore` for a backend store type.
macro_rules! tenant_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::TenantId;
            use $crate::store::{StoreError, Tenant, TenantRow, TenantStore, TenantUpsert};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl TenantStore for $store {
                async fn upsert_tenant(&self, t: &TenantUpsert) -> Result<Tenant, StoreError> {
                    t.settings.validate().map_err(|e| StoreError::InvalidTenantSettings {
                        tenant: t.name.clone(),
                        source: e.into(),
                    })?;
                    let now = self.now();
                    // Writes only when the owner matches and something changed, so a resync
                    // of an unchanged Tenant writes nothing.
                    let written = sqlx::query_as::<$db, TenantRow>(
                        "INSERT INTO tenants (id, name, namespace, owner_uid, display_name, settings, \
                             deletion_policy, generation, disabled, created_at, updated_at, \
                             audit_retention_days) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $9, $10) \
                         ON CONFLICT (name) DO UPDATE SET namespace = excluded.namespace, \
                             display_name = excluded.display_name, settings = excluded.settings, \
                             deletion_policy = excluded.deletion_policy, \
                             audit_retention_days = excluded.audit_retention_days, \
                             generation = excluded.generation, updated_at = excluded.updated_at \
                         WHERE tenants.owner_uid = excluded.owner_uid \
                           AND (tenants.namespace <> excluded.namespace \
                             OR tenants.display_name <> excluded.display_name \
                             OR tenants.settings <> excluded.settings \
                             OR tenants.deletion_policy <> excluded.deletion_policy \
                             OR tenants.generation <> excluded.generation) \
                         RETURNING *",
                    )
                    .bind(TenantId::new())
                    .bind(&t.name)
                    .bind(&t.namespace)
                    .bind(&t.owner_uid)
                    .bind(&t.display_name)
                    .bind(Json(&t.settings))
                    .bind(t.deletion_policy.as_str())
                    .bind(t.generation)
                    .bind(now)
                    // The janitor's delete reads the retention from this column (migration 0005).
                    .bind(i32::try_from(t.settings.audit.retention_days).unwrap_or(i32::MAX))
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(row) = written {
                        return row.try_into();
                    }
                    match self.tenant_by_name(&t.name).await? {
                        Some(existing) if existing.owner_uid == t.owner_uid => Ok(existing),
                        Some(_) => Err(StoreError::Conflict { constraint: "tenants_name" }),
                        None => Err(StoreError::NotFound),
                    }
                }

                async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
                    sqlx::query_as::<$db, TenantRow>("SELECT * FROM tenants WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Tenant::try_from)
                        .transpose()
                }

                async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
                    sqlx::query_as::<$db, TenantRow>("SELECT * FROM tenants WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Tenant::try_from)
                        .transpose()
                }

                async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
                    sqlx::query_as::<$db, TenantRow>("SELECT * FROM tenants ORDER BY name")
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Tenant::try_from)
                        .collect()
                }

                async fn set_tenant_disabled(&self, id: TenantId, disabled: bool) -> Result<(), StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE tenants SET disabled = $2, updated_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(disabled)
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn set_tenant_owner(&self, id: TenantId, owner_uid: &str) -> Result<(), StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE tenants SET owner_uid = $2, updated_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(owner_uid)
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>("DELETE FROM tenants WHERE id = $1")
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }
            }
        };
    };
}
pub(crate) use tenant_store;
