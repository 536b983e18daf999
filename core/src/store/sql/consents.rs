//! [`ConsentStore`](crate::store::ConsentStore) in SQL shared by both backends.

/// Expands `ConsentStore` for a backend store type.
macro_rules! consent_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{SessionId, TenantId, UserId};
            use $crate::store::sql::ts;
            use $crate::store::{Consent, ConsentStore, LIST_MAX, StoreError};
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl ConsentStore for $store {
                async fn consent(&self, tenant: TenantId, user: UserId, client_id: &str) -> Result<Option<Consent>, StoreError> {
                    const SQL: &str = "SELECT c.tenant_id, c.user_id, c.client_id, o.display_name, c.scopes, c.granted_at \
                         FROM oauth_consents c JOIN oauth_clients o \
                           ON o.tenant_id = c.tenant_id AND o.client_id = c.client_id \
                         WHERE c.tenant_id = $1 AND c.user_id = $2 AND c.client_id = $3";
                    Ok(sqlx::query_as::<$db, Consent>(SQL)
                        .bind(tenant)
                        .bind(user)
                        .bind(client_id)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn grant_consent(
                    &self,
                    tenant: TenantId,
                    user: UserId,
                    client_id: &str,
                    scopes: &[String],
                    now: DateTime<Utc>,
                ) -> Result<Consent, StoreError> {
                    const SQL: &str = "SELECT c.tenant_id, c.user_id, c.client_id, o.display_name, c.scopes, c.granted_at \
                         FROM oauth_consents c JOIN oauth_clients o \
                           ON o.tenant_id = c.tenant_id AND o.client_id = c.client_id \
                         WHERE c.tenant_id = $1 AND c.user_id = $2 AND c.client_id = $3";
                    let mut tx = self.begin_write().await?;
                    let before = sqlx::query_scalar::<$db, Json<Vec<String>>>(
                        "SELECT scopes FROM oauth_consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(client_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|Json(s)| s);
                    let mut merged = before.clone().unwrap_or_default();
                    for s in scopes {
                        if !merged.contains(s) {
                            merged.push(s.clone());
                        }
                    }
                    if before.as_ref() != Some(&merged) {
                        sqlx::query::<$db>(
                            "INSERT INTO oauth_consents (tenant_id, user_id, client_id, scopes, granted_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6) \
                             ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE SET \
                                 scopes = excluded.scopes, granted_at = excluded.granted_at, \
                                 updated_at = excluded.updated_at",
                        )
                        .bind(tenant)
                        .bind(user)
                        .bind(client_id)
                        .bind(Json(&merged))
                        .bind(ts(now))
                        .bind(self.now())
                        .execute(&mut *tx)
                        .await?;
                    }
                    let consent = sqlx::query_as::<$db, Consent>(SQL)
                        .bind(tenant)
                        .bind(user)
                        .bind(client_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or(StoreError::NotFound)?;
                    tx.commit().await?;
                    Ok(consent)
                }

                async fn consents_of_user(&self, tenant: TenantId, user: UserId) -> Result<Vec<Consent>, StoreError> {
                    const SQL: &str = "SELECT c.tenant_id, c.user_id, c.client_id, o.display_name, c.scopes, c.granted_at \
                         FROM oauth_consents c JOIN oauth_clients o \
                           ON o.tenant_id = c.tenant_id AND o.client_id = c.client_id \
                         WHERE c.tenant_id = $1 AND c.user_id = $2 \
                         ORDER BY c.granted_at DESC, c.client_id LIMIT $3";
                    Ok(sqlx::query_as::<$db, Consent>(SQL)
                        .bind(tenant)
                        .bind(user)
                        .bind(i64::from(LIST_MAX))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn revoke_consent(
                    &self,
                    tenant: TenantId,
                    user: UserId,
                    client_id: &str,
                    now: DateTime<Utc>,
                ) -> Result<(bool, Vec<SessionId>), StoreError> {
                    let mut tx = self.begin_write().await?;
                    let forgotten = sqlx::query::<$db>(
                        "DELETE FROM oauth_consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        > 0;
                    let sessions = sqlx::query_scalar::<$db, SessionId>(
                        "UPDATE sessions SET revoked_at = $4, updated_at = $5 \
                         WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3 AND revoked_at IS NULL \
                         RETURNING id",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(client_id)
                    .bind(ts(now))
                    .bind(self.now())
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok((forgotten, sessions))
                }
            }
        };
    };
}
pub(crate) use consent_store;
