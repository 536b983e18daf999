//! [`SessionStore`](crate::store::SessionStore) and
//! [`RefreshTokenStore`](crate::store::RefreshTokenStore) in SQL shared by both backends.

/// Expands `SessionStore` for a backend store type.
macro_rules! session_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{SessionId, TenantId, UserId};
            use $crate::store::sql::ts;
            use $crate::ids::AuditId;
            use $crate::store::{NewAuditEvent, NewSession, Session, SessionStore, StoreError};
            use chrono::{DateTime, Utc};
            use sqlx::types::Json;

            const INSERT_SESSION: &str =
                "INSERT INTO sessions (id, tenant_id, user_id, user_agent, ip, amr, acr, auth_time, \
                     created_at, last_seen_at, idle_expires_at, absolute_expires_at, updated_at, \
                     token_hash, client_id, scope) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13, $14, $15) RETURNING *";

            impl $store {
                /// [`INSERT_SESSION`] bound for session `id`.
                fn bind_session<'q>(
                    &self,
                    id: SessionId,
                    s: &'q NewSession,
                ) -> sqlx::query::QueryAs<'q, $db, Session, <$db as sqlx::Database>::Arguments> {
                    sqlx::query_as::<$db, Session>(INSERT_SESSION)
                        .bind(id)
                        .bind(s.tenant_id)
                        .bind(s.user_id)
                        .bind(&s.user_agent)
                        .bind(&s.ip)
                        .bind(Json(&s.amr))
                        .bind(&s.acr)
                        .bind(ts(s.auth_time))
                        .bind(ts(s.created_at))
                        .bind(ts(s.idle_expires_at))
                        .bind(ts(s.absolute_expires_at))
                        .bind(self.now())
                        .bind(&s.token_hash)
                        .bind(&s.client_id)
                        .bind(&s.scope)
                }
            }

            #[async_trait::async_trait]
            impl SessionStore for $store {
                async fn insert_session(&self, s: &NewSession) -> Result<Session, StoreError> {
                    Ok(self.bind_session(SessionId::new(), s).fetch_one(&self.pool).await?)
                }

                async fn open_session(
                    &self,
                    id: SessionId,
                    s: &NewSession,
                    refresh_hash: &[u8],
                    refresh_expires_at: DateTime<Utc>,
                    audit: Option<&NewAuditEvent>,
                ) -> Result<Session, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let session = self.bind_session(id, s).fetch_one(&mut *tx).await?;
                    sqlx::query::<$db>(
                        "INSERT INTO refresh_tokens (hash, tenant_id, session_id, issued_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(refresh_hash)
                    .bind(s.tenant_id)
                    .bind(id)
                    .bind(ts(s.created_at))
                    .bind(ts(refresh_expires_at))
                    .execute(&mut *tx)
                    .await?;
                    if let Some(e) = audit {
                        sqlx::query::<$db>(
                            "INSERT INTO audit_events (id, tenant_id, at, kind, actor_user_id, ip, request_id, data) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(AuditId::new())
                        .bind(e.tenant_id)
                        .bind(ts(e.at))
                        .bind(&e.kind)
                        .bind(e.actor_user_id)
                        .bind(&e.ip)
                        .bind(&e.request_id)
                        .bind(Json(&e.data))
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(session)
                }


                async fn session_by_token_hash(&self, tenant: TenantId, token_hash: &[u8]) -> Result<Option<Session>, StoreError> {
                    Ok(Self::by_tenant_and::<Session, _>("SELECT * FROM sessions WHERE tenant_id = $1 AND token_hash = $2", tenant, token_hash).fetch_optional(&self.pool).await?)
                }

                async fn session(&self, tenant: TenantId, id: SessionId) -> Result<Option<Session>, StoreError> {
                    Ok(Self::by_tenant_and::<Session, _>("SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2", tenant, id).fetch_optional(&self.pool).await?)
                }

                async fn active_sessions_of_user(&self, tenant: TenantId, user: UserId, now: DateTime<Utc>) -> Result<Vec<Session>, StoreError> {
                    Ok(sqlx::query_as::<$db, Session>(
                        "SELECT * FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL \
                           AND idle_expires_at > $3 AND absolute_expires_at > $3 \
                         ORDER BY created_at DESC, id DESC",
                    )
                    .bind(tenant)
                    .bind(user)
                    .bind(ts(now))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn raise_session_authentication(
                    &self,
                    tenant: TenantId,
                    id: SessionId,
                    amr: &[String],
                    acr: Option<&str>,
                    auth_time: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE sessions SET amr = $3, acr = $4, auth_time = $5, updated_at = $6 \
                         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL \
                           AND idle_expires_at > $5 AND absolute_expires_at > $5",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(Json(amr))
                    .bind(acr)
                    .bind(ts(auth_time))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn touch_session(
                    &self,
                    tenant: TenantId,
                    id: SessionId,
                    now: DateTime<Utc>,
                    idle_expires_at: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>(
                        "UPDATE sessions SET last_seen_at = $3, idle_expires_at = $4, updated_at = $5 \
                         WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL \
                           AND idle_expires_at > $3 AND absolute_expires_at > $3",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(ts(now))
                    .bind(ts(idle_expires_at))
                    .bind(self.now())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn revoke_session(&self, tenant: TenantId, id: SessionId, now: DateTime<Utc>) -> Result<bool, StoreError> {
                    let sql = "UPDATE sessions SET revoked_at = $3, updated_at = $4 \
                               WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL";
                    Ok(self.stamp_rows(sql, tenant, id, now).await? > 0)
                }

                async fn revoke_user_sessions(&self, tenant: TenantId, user: UserId, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let sql = "UPDATE sessions SET revoked_at = $3, updated_at = $4 \
                               WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL";
                    self.stamp_rows(sql, tenant, user, now).await
                }

                async fn revoked_sessions_since(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<(TenantId, SessionId, DateTime<Utc>)>, StoreError> {
                    Ok(sqlx::query_as::<$db, (TenantId, SessionId, DateTime<Utc>)>(
                        "SELECT tenant_id, id, revoked_at FROM sessions \
                         WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND absolute_expires_at > $2 \
                         ORDER BY revoked_at, id",
                    )
                    .bind(ts(since))
                    .bind(ts(now))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let done = sqlx::query::<$db>("DELETE FROM sessions WHERE absolute_expires_at <= $1")
                        .bind(ts(now))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}
pub(crate) use session_store;

/// Expands `RefreshTokenStore` for a backend store type.
macro_rules! refresh_token_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{SessionId, TenantId};
            use $crate::store::sql::ts;
            use $crate::store::{
                NewRefreshToken, RefreshTokenRecord, RefreshTokenStore, RotateOutcome, StoreError,
            };
            use chrono::{DateTime, Utc};

            /// A presented token with the state of its family, to say why a rotation lost.
            #[derive(sqlx::FromRow)]
            struct TokenState {
                session_id: SessionId,
                rotated_at: Option<DateTime<Utc>>,
                replaced_by: Option<Vec<u8>>,
                expires_at: DateTime<Utc>,
                revoked_at: Option<DateTime<Utc>>,
                idle_expires_at: DateTime<Utc>,
                absolute_expires_at: DateTime<Utc>,
                client_id: String,
            }

            #[async_trait::async_trait]
            impl RefreshTokenStore for $store {
                async fn insert_refresh_token(&self, t: &NewRefreshToken) -> Result<RefreshTokenRecord, StoreError> {
                    Ok(sqlx::query_as::<$db, RefreshTokenRecord>(
                        "INSERT INTO refresh_tokens (hash, tenant_id, session_id, issued_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING *",
                    )
                    .bind(&t.hash)
                    .bind(t.tenant_id)
                    .bind(t.session_id)
                    .bind(ts(t.issued_at))
                    .bind(ts(t.expires_at))
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn refresh_token(&self, tenant: TenantId, hash: &[u8]) -> Result<Option<RefreshTokenRecord>, StoreError> {
                    Ok(Self::by_tenant_and::<RefreshTokenRecord, _>("SELECT * FROM refresh_tokens WHERE tenant_id = $1 AND hash = $2", tenant, hash).fetch_optional(&self.pool).await?)
                }

                async fn rotate_refresh_token(
                    &self,
                    tenant: TenantId,
                    presented: &[u8],
                    client: Option<&str>,
                    next_hash: &[u8],
                    next_expires_at: DateTime<Utc>,
                    now: DateTime<Utc>,
                ) -> Result<RotateOutcome, StoreError> {
                    let now = ts(now);
                    if let Some(sql) = Self::SQL_ROTATE_REFRESH {
                        let next = sqlx::query_as::<$db, RefreshTokenRecord>(sql)
                            .bind(tenant)
                            .bind(presented)
                            .bind(now)
                            .bind(next_hash)
                            .bind(ts(next_expires_at))
                            .bind(client)
                            .fetch_optional(&self.pool)
                            .await?;
                        if let Some(next) = next {
                            return Ok(RotateOutcome::Rotated { next });
                        }
                        return self.rotation_refused(tenant, presented, client, now).await;
                    }
                    let mut tx = self.begin_write().await?;
                    // The compare-and-set: of concurrent rotations of one token, only the first
                    // finds `rotated_at IS NULL`; the others update nothing.
                    let won = sqlx::query_scalar::<$db, SessionId>(
                        "UPDATE refresh_tokens SET rotated_at = $3, replaced_by = $4 \
                         WHERE tenant_id = $1 AND hash = $2 AND rotated_at IS NULL AND expires_at > $3 \
                           AND session_id IN (SELECT id FROM sessions WHERE tenant_id = $1 \
                             AND revoked_at IS NULL AND idle_expires_at > $3 AND absolute_expires_at > $3 \
                             AND ($5 IS NULL OR client_id = $5)) \
                         RETURNING session_id",
                    )
                    .bind(tenant)
                    .bind(presented)
                    .bind(now)
                    .bind(next_hash)
                    .bind(client)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(family) = won {
                        let next = sqlx::query_as::<$db, RefreshTokenRecord>(
                            "INSERT INTO refresh_tokens (hash, tenant_id, session_id, issued_at, expires_at) \
                             VALUES ($1, $2, $3, $4, $5) RETURNING *",
                        )
                        .bind(next_hash)
                        .bind(tenant)
                        .bind(family)
                        .bind(now)
                        .bind(ts(next_expires_at))
                        .fetch_one(&mut *tx)
                        .await?;
                        tx.commit().await?;
                        return Ok(RotateOutcome::Rotated { next });
                    }
                    tx.rollback().await?;
                    self.rotation_refused(tenant, presented, client, now).await
                }
            }

            impl $store {
                /// Why a rotation updated nothing: unknown, already rotated, revoked, expired or
                /// another client's.
                async fn rotation_refused(
                    &self,
                    tenant: TenantId,
                    presented: &[u8],
                    client: Option<&str>,
                    now: DateTime<Utc>,
                ) -> Result<RotateOutcome, StoreError> {
                    let state = sqlx::query_as::<$db, TokenState>(
                        "SELECT t.session_id, t.rotated_at, t.replaced_by, t.expires_at, s.revoked_at, \
                             s.idle_expires_at, s.absolute_expires_at, s.client_id \
                         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id AND s.tenant_id = t.tenant_id \
                         WHERE t.tenant_id = $1 AND t.hash = $2",
                    )
                    .bind(tenant)
                    .bind(presented)
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some(st) = state else {
                        return Ok(RotateOutcome::Unknown);
                    };
                    let family = st.session_id;
                    Ok(match st.rotated_at {
                        Some(rotated_at) => RotateOutcome::AlreadyRotated {
                            family,
                            rotated_at,
                            replaced_by: st.replaced_by,
                        },
                        None if st.revoked_at.is_some() => RotateOutcome::FamilyRevoked { family },
                        None if st.expires_at <= now
                            || st.idle_expires_at <= now
                            || st.absolute_expires_at <= now =>
                        {
                            RotateOutcome::Expired { family }
                        }
                        None if client.is_some_and(|c| c != st.client_id) => {
                            RotateOutcome::WrongClient { family }
                        }
                        // Unrotated, unrevoked and unexpired, yet the update lost: only a
                        // concurrent rotation or revocation between the two statements does that.
                        None => RotateOutcome::FamilyRevoked { family },
                    })
                }
            }
        };
    };
}
pub(crate) use refresh_token_store;
