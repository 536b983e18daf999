//! [`RoleStore`](crate::store::RoleStore) in SQL shared by both backends (the two queries
//! that expand a JSON array parameter come from the backend).

/// Expands `RoleStore` for a backend store type.
macro_rules! role_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use $crate::ids::{RoleId, TenantId};
            use $crate::store::sql::{BindingRow, match_key, normalize_subjects, subject_columns};
            use $crate::store::{Role, RoleGrant, RoleStore, RoleSubject, RoleUpsert, StoreError, SubjectFacts};
            use sqlx::types::Json;
            use std::collections::HashMap;

            impl $store {
                /// Reads the subjects of the given roles (all of the tenant's when `role` is `None`).
                async fn role_subjects(
                    &self,
                    tenant: TenantId,
                    role: Option<RoleId>,
                ) -> Result<HashMap<RoleId, Vec<RoleSubject>>, StoreError> {
                    let rows = sqlx::query_as::<$db, BindingRow>(
                        "SELECT role_id, subject_kind, value, idp_name FROM role_bindings \
                         WHERE tenant_id = $1 AND ($2 IS NULL OR role_id = $2)",
                    )
                    .bind(tenant)
                    .bind(role)
                    .fetch_all(&self.pool)
                    .await?;
                    let mut out: HashMap<RoleId, Vec<RoleSubject>> = HashMap::new();
                    for row in rows {
                        let id = row.role_id;
                        if let Some(subject) = row.subject() {
                            out.entry(id).or_default().push(subject);
                        }
                    }
                    for subjects in out.values_mut() {
                        subjects.sort();
                    }
                    Ok(out)
                }

                /// Fills in a role's subjects.
                async fn with_subjects(&self, role: Option<Role>) -> Result<Option<Role>, StoreError> {
                    let Some(mut role) = role else { return Ok(None) };
                    role.subjects = self
                        .role_subjects(role.tenant_id, Some(role.id))
                        .await?
                        .remove(&role.id)
                        .unwrap_or_default();
                    Ok(Some(role))
                }
            }

            #[async_trait::async_trait]
            impl RoleStore for $store {
                async fn upsert_role(&self, r: &RoleUpsert) -> Result<Role, StoreError> {
                    let subjects = normalize_subjects(&r.subjects);
                    if let Some(existing) = self.role_by_name(r.tenant_id, &r.name).await? {
                        let unchanged = existing.owner_uid == r.owner_uid
                            && existing.description == r.description
                            && existing.permissions == r.permissions
                            && existing.generation == r.generation
                            && existing.subjects == subjects;
                        if unchanged {
                            // A resync of an unchanged resource writes nothing.
                            return Ok(existing);
                        }
                    }
                    let now = self.now();
                    let mut tx = self.begin_write().await?;
                    let mut role = sqlx::query_as::<$db, Role>(
                        "INSERT INTO roles (id, tenant_id, name, owner_uid, description, permissions, \
                             generation, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                         ON CONFLICT (tenant_id, name) DO UPDATE SET owner_uid = excluded.owner_uid, \
                             description = excluded.description, permissions = excluded.permissions, \
                             generation = excluded.generation, updated_at = excluded.updated_at \
                         RETURNING *",
                    )
                    .bind(RoleId::new())
                    .bind(r.tenant_id)
                    .bind(&r.name)
                    .bind(&r.owner_uid)
                    .bind(&r.description)
                    .bind(Json(&r.permissions))
                    .bind(r.generation)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query::<$db>("DELETE FROM role_bindings WHERE tenant_id = $1 AND role_id = $2")
                        .bind(role.tenant_id)
                        .bind(role.id)
                        .execute(&mut *tx)
                        .await?;
                    for subject in &subjects {
                        let (kind, value, idp) = subject_columns(subject);
                        sqlx::query::<$db>(
                            "INSERT INTO role_bindings (id, tenant_id, role_id, subject_kind, value, \
                                 idp_name, match_key, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(uuid::Uuid::now_v7())
                        .bind(role.tenant_id)
                        .bind(role.id)
                        .bind(kind)
                        .bind(value)
                        .bind(idp)
                        .bind(match_key(subject))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    role.subjects = subjects;
                    Ok(role)
                }

                async fn role(&self, tenant: TenantId, id: RoleId) -> Result<Option<Role>, StoreError> {
                    let role = sqlx::query_as::<$db, Role>("SELECT * FROM roles WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    self.with_subjects(role).await
                }

                async fn role_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Role>, StoreError> {
                    let role = sqlx::query_as::<$db, Role>("SELECT * FROM roles WHERE tenant_id = $1 AND name = $2")
                        .bind(tenant)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                    self.with_subjects(role).await
                }

                async fn list_roles(&self, tenant: TenantId) -> Result<Vec<Role>, StoreError> {
                    let mut roles = sqlx::query_as::<$db, Role>("SELECT * FROM roles WHERE tenant_id = $1 ORDER BY name")
                        .bind(tenant)
                        .fetch_all(&self.pool)
                        .await?;
                    let mut subjects = self.role_subjects(tenant, None).await?;
                    for role in &mut roles {
                        role.subjects = subjects.remove(&role.id).unwrap_or_default();
                    }
                    Ok(roles)
                }

                async fn delete_role(&self, tenant: TenantId, id: RoleId) -> Result<bool, StoreError> {
                    let done = sqlx::query::<$db>("DELETE FROM roles WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn roles_for_subject(&self, tenant: TenantId, facts: &SubjectFacts) -> Result<Vec<RoleGrant>, StoreError> {
                    let mut keys: Vec<String> = Vec::new();
                    if let Some(email) = &facts.email {
                        keys.push(match_key(&RoleSubject::UserEmail(email.clone())));
                    }
                    keys.extend(facts.groups.iter().map(|g| match_key(&RoleSubject::Group(g.clone()))));
                    keys.extend(facts.idp_groups.iter().map(|(idp, group)| {
                        match_key(&RoleSubject::IdpGroup { idp: idp.clone(), group: group.clone() })
                    }));
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    Ok(sqlx::query_as::<$db, RoleGrant>(Self::SQL_ROLES_FOR_KEYS)
                        .bind(tenant)
                        .bind(Json(&keys))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn roles_by_names(&self, tenant: TenantId, names: &[String]) -> Result<Vec<RoleGrant>, StoreError> {
                    if names.is_empty() {
                        return Ok(Vec::new());
                    }
                    Ok(sqlx::query_as::<$db, RoleGrant>(Self::SQL_ROLES_BY_NAMES)
                        .bind(tenant)
                        .bind(Json(names))
                        .fetch_all(&self.pool)
                        .await?)
                }
            }
        };
    };
}
pub(crate) use role_store;
