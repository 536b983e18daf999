//! [`AuditLog`](crate::store::AuditLog) in SQL shared by both backends. The store only
//! ever inserts and selects here; the database itself refuses UPDATE and DELETE.

/// Expands `AuditLog` for a backend store type.
macro_rules! audit_log {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{AuditId, TenantId};
            use $crate::store::sql::{capped, ots, ts};
            use $crate::store::{AUDIT_QUERY_MAX, AuditEvent, AuditFilter, AuditLog, NewAuditEvent, StoreError};
            use sqlx::types::Json;

            #[async_trait::async_trait]
            impl AuditLog for $store {
                async fn append_audit(&self, e: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
                    Ok(sqlx::query_as::<$db, AuditEvent>(
                        "INSERT INTO audit_events (id, tenant_id, at, kind, actor_user_id, ip, request_id, data) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                    )
                    .bind(AuditId::new())
                    .bind(e.tenant_id)
                    .bind(ts(e.at))
                    .bind(&e.kind)
                    .bind(e.actor_user_id)
                    .bind(&e.ip)
                    .bind(&e.request_id)
                    .bind(Json(&e.data))
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn query_audit(&self, tenant: TenantId, f: &AuditFilter, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
                    Ok(sqlx::query_as::<$db, AuditEvent>(
                        "SELECT * FROM audit_events WHERE tenant_id = $1 \
                           AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR actor_user_id = $3) \
                           AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) \
                         ORDER BY at DESC, id DESC LIMIT $6",
                    )
                    .bind(tenant)
                    .bind(&f.kind)
                    .bind(f.actor_user_id)
                    .bind(ots(f.since))
                    .bind(ots(f.until))
                    .bind(capped(limit, AUDIT_QUERY_MAX))
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        };
    };
}
pub(crate) use audit_log;
