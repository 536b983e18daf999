//! [`OAuthClientStore`](crate::store::OAuthClientStore) in SQL shared by both backends.

/// Expands `OAuthClientStore` for a backend store type.
macro_rules! oauth_client_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{ClientSecretId, OAuthClientId, SessionId, TenantId};
            use $crate::store::sql::ts;
            use $crate::store::{
                ClientSecretRecord, LIST_MAX, NewClientSecret, OAuthClient, OAuthClientRow,
                OAuthClientStore, OAuthClientUpsert, StoreError,
            };
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;

            /// A lifetime as stored: whole seconds.
            fn secs(d: Option<std::time::Duration>) -> Option<i64> {
                d.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            }

            #[async_trait::async_trait]
            impl OAuthClientStore for $store {
                async fn upsert_oauth_client(&self, c: &OAuthClientUpsert) -> Result<OAuthClient, StoreError> {
                    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
                    // Writes only when the owner matches and something changed, so a resync
                    // of an unchanged OAuthClient writes nothing.
                    let written = sqlx::query_as::<$db, OAuthClientRow>(
                        "INSERT INTO oauth_clients (id, tenant_id, owner_uid, client_id, display_name, \
                             client_type, token_endpoint_auth_method, redirect_uris, \
                             post_logout_redirect_uris, grant_types, allowed_scopes, audience, consent, \
                             access_token_ttl_secs, id_token_ttl_secs, refresh_token_ttl_secs, \
                             id_token_signed_response_alg, generation, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19) \
                         ON CONFLICT (tenant_id, client_id) DO UPDATE SET \
                             display_name = excluded.display_name, client_type = excluded.client_type, \
                             token_endpoint_auth_method = excluded.token_endpoint_auth_method, \
                             redirect_uris = excluded.redirect_uris, \
                             post_logout_redirect_uris = excluded.post_logout_redirect_uris, \
                             grant_types = excluded.grant_types, allowed_scopes = excluded.allowed_scopes, \
                             audience = excluded.audience, consent = excluded.consent, \
                             access_token_ttl_secs = excluded.access_token_ttl_secs, \
                             id_token_ttl_secs = excluded.id_token_ttl_secs, \
                             refresh_token_ttl_secs = excluded.refresh_token_ttl_secs, \
                             id_token_signed_response_alg = excluded.id_token_signed_response_alg, \
                             generation = excluded.generation, updated_at = excluded.updated_at \
                         WHERE oauth_clients.owner_uid = excluded.owner_uid \
                           AND (oauth_clients.display_name <> excluded.display_name \
                             OR oauth_clients.client_type <> excluded.client_type \
                             OR oauth_clients.token_endpoint_auth_method <> excluded.token_endpoint_auth_method \
                             OR oauth_clients.redirect_uris <> excluded.redirect_uris \
                             OR oauth_clients.post_logout_redirect_uris <> excluded.post_logout_redirect_uris \
                             OR oauth_clients.grant_types <> excluded.grant_types \
                             OR oauth_clients.allowed_scopes <> excluded.allowed_scopes \
                             OR oauth_clients.audience <> excluded.audience \
                             OR oauth_clients.consent <> excluded.consent \
                             OR oauth_clients.access_token_ttl_secs IS DISTINCT FROM excluded.access_token_ttl_secs \
                             OR oauth_clients.id_token_ttl_secs IS DISTINCT FROM excluded.id_token_ttl_secs \
                             OR oauth_clients.refresh_token_ttl_secs IS DISTINCT FROM excluded.refresh_token_ttl_secs \
                             OR oauth_clients.id_token_signed_response_alg IS DISTINCT FROM excluded.id_token_signed_response_alg \
                             OR oauth_clients.generation <> excluded.generation) \
                         RETURNING *",
                    )
                    .bind(OAuthClientId::new())
                    .bind(c.tenant_id)
                    .bind(&c.owner_uid)
                    .bind(&c.client_id)
                    .bind(&c.display_name)
                    .bind(c.client_type.as_str())
                    .bind(c.token_endpoint_auth_method.as_str())
                    .bind(Json(&c.redirect_uris))
                    .bind(Json(&c.post_logout_redirect_uris))
                    .bind(Json(&grants))
                    .bind(Json(&c.allowed_scopes))
                    .bind(Json(&c.audience))
                    .bind(c.consent.as_str())
                    .bind(secs(c.lifetimes.access_token))
                    .bind(secs(c.lifetimes.id_token))
                    .bind(secs(c.lifetimes.refresh_token))
                    .bind(c.id_token_signed_response_alg.map(|a| a.as_str()))
                    .bind(c.generation)
                    .bind(self.now())
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(row) = written {
                        return row.try_into();
                    }
                    match self.oauth_client(c.tenant_id, &c.client_id).await? {
                        Some(existing) if existing.owner_uid == c.owner_uid => Ok(existing),
                        Some(_) => Err(StoreError::Conflict { constraint: "oauth_clients_client_id" }),
                        None => Err(StoreError::NotFound),
                    }
                }

                async fn oauth_client(&self, tenant: TenantId, client_id: &str) -> Result<Option<OAuthClient>, StoreError> {
                    Self::by_tenant_and::<OAuthClientRow, _>(
                        "SELECT * FROM oauth_clients WHERE tenant_id = $1 AND client_id = $2",
                        tenant,
                        client_id,
                    )
                    .fetch_optional(&self.pool)
                    .await?
                    .map(OAuthClient::try_from)
                    .transpose()
                }

                async fn list_oauth_clients(&self, tenant: TenantId) -> Result<Vec<OAuthClient>, StoreError> {
                    sqlx::query_as::<$db, OAuthClientRow>(
                        "SELECT * FROM oauth_clients WHERE tenant_id = $1 ORDER BY client_id LIMIT $2",
                    )
                    .bind(tenant)
                    .bind(i64::from(LIST_MAX))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(OAuthClient::try_from)
                    .collect()
                }

                async fn delete_oauth_client(&self, tenant: TenantId, id: OAuthClientId) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>("DELETE FROM oauth_clients WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn insert_client_secret(&self, s: &NewClientSecret) -> Result<ClientSecretRecord, StoreError> {
                    // Selecting the client in the same statement makes another tenant's (or a
                    // deleted) client an empty insert: `NotFound`, never a dangling secret.
                    sqlx::query_as::<$db, ClientSecretRecord>(
                        "INSERT INTO oauth_client_secrets (id, tenant_id, oauth_client_id, prefix, hash, created_at) \
                         SELECT $1, tenant_id, id, $4, $5, $6 FROM oauth_clients WHERE tenant_id = $2 AND id = $3 \
                         RETURNING *",
                    )
                    .bind(ClientSecretId::new())
                    .bind(s.tenant_id)
                    .bind(s.oauth_client_id)
                    .bind(&s.prefix)
                    .bind(&s.hash)
                    .bind(self.now())
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)
                }

                async fn client_secrets(&self, tenant: TenantId, client: OAuthClientId) -> Result<Vec<ClientSecretRecord>, StoreError> {
                    let sql = "SELECT * FROM oauth_client_secrets WHERE tenant_id = $1 AND oauth_client_id = $2 \
                               ORDER BY created_at DESC, id DESC";
                    Ok(Self::by_tenant_and(sql, tenant, client).fetch_all(&self.pool).await?)
                }

                async fn supersede_client_secret(
                    &self,
                    tenant: TenantId,
                    id: ClientSecretId,
                    now: DateTime<Utc>,
                    grace_until: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE oauth_client_secrets SET superseded_at = $3, grace_until = $4 \
                         WHERE tenant_id = $1 AND id = $2 AND superseded_at IS NULL AND revoked_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(ts(now))
                    .bind(ts(grace_until))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn revoke_client_secret(&self, tenant: TenantId, id: ClientSecretId, now: DateTime<Utc>) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE oauth_client_secrets SET revoked_at = $3 \
                         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(ts(now))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn revoke_client_sessions(&self, tenant: TenantId, client_id: &str, now: DateTime<Utc>) -> Result<Vec<SessionId>, StoreError> {
                    Ok(sqlx::query_scalar::<$db, SessionId>(
                        "UPDATE sessions SET revoked_at = $3, updated_at = $4 \
                         WHERE tenant_id = $1 AND client_id = $2 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(tenant)
                    .bind(client_id)
                    .bind(ts(now))
                    .bind(self.now())
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        };
    };
}
pub(crate) use oauth_client_store;
