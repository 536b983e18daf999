//! The reconcile core end to end through the directory source, against a real PostgreSQL
//! (a fresh database per test via `#[sqlx::test]`) and, where the backend matters, SQLite:
//! apply → change → delete per kind, idempotence, drift correction, bad specs, tenant
//! deletion policies, ApiKey rotation with its grace window, and a lost Secret.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a failed unwrap is a failed test

use chrono::{DateTime, Duration, TimeZone, Utc};
use keygate_core::clock::ManualClock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::ephemeral::{Ephemeral, MemoryEphemeral};
use keygate_core::store::{ApiKeyRecord, PgStore, RoleSubject, SqliteStore, Store};
use keygate_operator::directory::{StatusView, sync_once};
use keygate_operator::secrets::{parse_secrets, secret_value};
use keygate_operator::{Context, DirectorySource};
use sqlx::PgPool;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct Harness {
    ctx: Context,
    clock: Arc<ManualClock>,
    source: DirectorySource,
    revocations: Arc<MemoryEphemeral>,
    pool: Option<PgPool>,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn postgres(pool: PgPool) -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let store = PgStore::from_pool(pool.clone()).with_clock(clock.clone());
        store.migrate().await.unwrap();
        Self::with_store(Arc::new(store), clock, Some(pool))
    }

    async fn sqlite() -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("keygate.db").display());
        let store = SqliteStore::connect(&url)
            .await
            .unwrap()
            .with_clock(clock.clone());
        store.migrate().await.unwrap();
        // The database file lives as long as the process; the folder is leaked on purpose.
        std::mem::forget(db);
        Self::with_store(Arc::new(store), clock, None)
    }

    fn with_store(store: Arc<dyn Store>, clock: Arc<ManualClock>, pool: Option<PgPool>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let revocations = Arc::new(MemoryEphemeral::new());
        let source = DirectorySource::new(manifests, &dir.path().join("data"))
            .with_revocations(revocations.clone());
        let ctx = Context {
            store,
            master_keys: MasterKeys::parse(&MasterKeys::generate_spec("test").unwrap()).unwrap(),
            public_url: "https://auth.example.com".into(),
            clock: clock.clone(),
        };
        Self {
            ctx,
            clock,
            source,
            revocations,
            pool,
            dir,
        }
    }

    /// Reads each tenant's API keys `rows` at a time, so a few keys cover paging.
    fn with_api_key_pages(mut self, rows: u32) -> Self {
        self.source = DirectorySource::new(
            self.dir.path().join("manifests"),
            &self.dir.path().join("data"),
        )
        .with_revocations(self.revocations.clone())
        .with_api_key_page_size(rows);
        self
    }

    fn write(&self, file: &str, yaml: &str) {
        std::fs::write(self.source.manifests.join(file), yaml).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.source.manifests.join(file)).unwrap();
    }

    async fn sync(&self) -> StatusView {
        sync_once(&self.ctx, &self.source).await.unwrap()
    }

    fn secret_file(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/secrets")
            .join(namespace)
            .join(format!("{name}.yaml"))
    }

    /// The raw key the operator wrote into a Secret file.
    fn raw_key(&self, namespace: &str, name: &str) -> String {
        let text = std::fs::read_to_string(self.secret_file(namespace, name)).unwrap();
        let secret = parse_secrets(&text).unwrap().pop().unwrap();
        String::from_utf8(secret_value(&secret, "apiKey").unwrap()).unwrap()
    }

    async fn tenant_id(&self, name: &str) -> keygate_core::ids::TenantId {
        self.ctx
            .store
            .tenant_by_name(name)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// The key record a raw key resolves to, as the gateway would look it up.
    async fn lookup(&self, tenant: &str, raw: &str) -> Option<ApiKeyRecord> {
        let prefix = raw.strip_prefix("kg_")?.split_once('_')?.0;
        let record = self
            .ctx
            .store
            .api_key_by_prefix(self.tenant_id(tenant).await, prefix)
            .await
            .unwrap()?;
        keygate_core::crypto::constant_time_eq(
            &record.hash,
            &keygate_operator::api_key::key_hash(raw),
        )
        .then_some(record)
    }

    async fn accepted(&self, tenant: &str, raw: &str) -> bool {
        let now = self.clock.now_utc();
        self.lookup(tenant, raw)
            .await
            .is_some_and(|r| r.is_usable(now))
    }

    /// Every row's `updated_at` (and every signing key), to prove a pass wrote nothing.
    async fn snapshot(&self) -> Vec<(String, String)> {
        let pool = self.pool.as_ref().unwrap();
        let mut out = Vec::new();
        for table in ["tenants", "roles", "identity_providers", "api_keys"] {
            let rows: Vec<(uuid::Uuid, DateTime<Utc>)> = sqlx::query_as(sqlx::AssertSqlSafe(
                format!("SELECT id, updated_at FROM {table} ORDER BY id"),
            ))
            .fetch_all(pool)
            .await
            .unwrap();
            out.extend(
                rows.into_iter()
                    .map(|(id, at)| (format!("{table}:{id}"), at.to_rfc3339())),
            );
        }
        let keys: Vec<(String, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT kid, retires_at FROM signing_keys ORDER BY kid")
                .fetch_all(pool)
                .await
                .unwrap();
        out.extend(
            keys.into_iter()
                .map(|(kid, at)| (format!("signing_keys:{kid}"), format!("{at:?}"))),
        );
        let bindings: Vec<(uuid::Uuid,)> =
            sqlx::query_as("SELECT id FROM role_bindings ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap();
        out.extend(
            bindings
                .into_iter()
                .map(|(id,)| (format!("role_bindings:{id}"), String::new())),
        );
        out
    }
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        keygate_core::clock::Clock::now(self)
    }
}

/// (status, reason, message) of a resource's Ready condition in a status view.
fn ready(view: &StatusView, name: &str) -> (String, String, String) {
    let status = view
        .get(name)
        .unwrap_or_else(|| panic!("{name} not in {view:#?}"));
    let condition = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    (
        condition["status"].as_str().unwrap().to_owned(),
        condition["reason"].as_str().unwrap().to_owned(),
        condition["message"].as_str().unwrap().to_owned(),
    )
}

fn tenant(name: &str, namespace: &str, extra: &str) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  displayName: {name} tenant\n{extra}"
    )
}

fn role(name: &str, permissions: &[&str], users: &[&str]) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  permissions: [{}]\n  subjects:\n    users: [{}]\n    groups: [ops]\n    idpGroups:\n      - identityProvider: corp\n        group: engineering\n",
        permissions.join(", "),
        users.join(", ")
    )
}

fn api_key(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: {name}-secret\n  roles: [viewer]\n  scopes: [read]\n{extra}"
    )
}

const IDP: &str = "apiVersion: keygate.dev/v1alpha1\nkind: IdentityProvider\nmetadata:\n  name: corp\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n    clientId: keygate\n    clientSecretRef:\n      name: corp-oidc\n      key: clientSecret\n";

fn idp_secret(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: corp-oidc\n  namespace: default\nstringData:\n  clientSecret: {value}\n"
    )
}

#[sqlx::test(migrations = false)]
async fn tenant_apply_change_and_retain_on_delete(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    let view = h.sync().await;
    assert_eq!(ready(&view, "Tenant default/demo").0, "True");
    let status = &view["Tenant default/demo"];
    assert_eq!(status["issuerUrl"], "https://auth.example.com/t/demo");
    assert_eq!(
        status["jwksUrl"],
        "https://auth.example.com/t/demo/jwks.json"
    );
    let id = h.tenant_id("demo").await;
    let keys = h.ctx.store.signing_keys(id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(status["activeKeyId"], keys[0].kid.as_str());
    // The private key is sealed, bound to its kid.
    let opened = h
        .ctx
        .master_keys
        .open(
            &keys[0].private_key,
            &format!("signing_key:{}", keys[0].kid),
        )
        .unwrap();
    assert!(String::from_utf8_lossy(&opened).contains("PRIVATE KEY"));

    h.write(
        "tenant.yaml",
        &tenant("demo", "default", "  mfa:\n    policy: required\n"),
    );
    h.sync().await;
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert_eq!(
        stored.settings.mfa.policy,
        keygate_core::tenant_settings::MfaPolicy::Required
    );
    assert_eq!(stored.display_name, "demo tenant");

    // Removing the manifest is a deletion; Retain (the default) disables and keeps data.
    h.write(
        "role.yaml",
        &role("admin", &["users.read"], &["a@example.com"]),
    );
    h.sync().await;
    h.remove("tenant.yaml");
    let view = h.sync().await;
    assert!(!view.contains_key("Tenant default/demo"));
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert!(stored.disabled);
    assert_eq!(h.ctx.store.signing_keys(id).await.unwrap().len(), 1);
    assert!(
        h.ctx
            .store
            .role_by_name(id, "admin")
            .await
            .unwrap()
            .is_some(),
        "a retained tenant keeps its roles"
    );
    assert_eq!(ready(&view, "Role default/admin").1, "TenantNotFound");

    // Re-applying takes the retained tenant back, same row and keys.
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    let view = h.sync().await;
    assert_eq!(ready(&view, "Tenant default/demo").0, "True");
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert_eq!(stored.id, id);
    assert!(!stored.disabled);
}

#[sqlx::test(migrations = false)]
async fn tenant_delete_policy_erases_its_data(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write(
        "tenant.yaml",
        &tenant("demo", "default", "  deletionPolicy: Delete\n"),
    );
    h.write("role.yaml", &role("admin", &["users.read"], &[]));
    h.write("key.yaml", &api_key("ci", ""));
    h.sync().await;
    let id = h.tenant_id("demo").await;
    assert_eq!(
        h.ctx
            .store
            .tenant_by_name("demo")
            .await
            .unwrap()
            .unwrap()
            .deletion_policy,
        keygate_core::store::DeletionPolicy::Delete,
        "the policy is stored with the tenant, for a deletion the operator never sees"
    );
    let raw = h.raw_key("default", "ci-secret");
    assert!(h.accepted("demo", &raw).await);

    h.remove("tenant.yaml");
    h.remove("role.yaml");
    h.remove("key.yaml");
    h.sync().await;
    assert!(h.ctx.store.tenant_by_name("demo").await.unwrap().is_none());
    assert!(h.ctx.store.signing_keys(id).await.unwrap().is_empty());
    assert!(h.ctx.store.list_roles(id).await.unwrap().is_empty());
    assert!(
        !h.secret_file("default", "ci-secret").exists(),
        "the key's Secret goes with its ApiKey"
    );
}

#[sqlx::test(migrations = false)]
async fn a_taken_tenant_name_changes_nothing_of_the_first(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("a.yaml", &tenant("demo", "team-a", ""));
    h.sync().await;
    let before = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    h.write(
        "b.yaml",
        &tenant("demo", "team-b", "  mfa:\n    policy: required\n"),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "Tenant team-a/demo").0, "True");
    let (state, reason, message) = ready(&view, "Tenant team-b/demo");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "TenantNameTaken")
    );
    assert!(message.contains("another namespace"), "{message}");
    assert_eq!(
        h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap(),
        before
    );
    // Deleting the loser touches nothing either.
    h.remove("b.yaml");
    h.sync().await;
    assert_eq!(
        h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap(),
        before
    );
}

#[sqlx::test(migrations = false)]
async fn role_apply_change_drift_and_delete(pool: PgPool) {
    let h = Harness::postgres(pool.clone()).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "role.yaml",
        &role("admin", &["users.write", "users.read"], &["a@example.com"]),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "Role default/admin").0, "True");
    let id = h.tenant_id("demo").await;
    let stored = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.permissions, ["users.read", "users.write"]);
    assert!(
        stored
            .subjects
            .contains(&RoleSubject::UserEmail("a@example.com".into()))
    );
    assert!(stored.subjects.contains(&RoleSubject::Group("ops".into())));
    assert!(stored.subjects.contains(&RoleSubject::IdpGroup {
        idp: "corp".into(),
        group: "engineering".into()
    }));

    // Change: a permission added is live at once.
    h.write(
        "role.yaml",
        &role(
            "admin",
            &["users.read", "users.write", "billing.read"],
            &["a@example.com"],
        ),
    );
    h.sync().await;
    let stored = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.permissions,
        ["billing.read", "users.read", "users.write"]
    );

    // Drift: someone edits the row behind the operator's back; the next pass puts it back.
    sqlx::query("UPDATE roles SET permissions = '[\"everything\"]'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM role_bindings")
        .execute(&pool)
        .await
        .unwrap();
    h.sync().await;
    let restored = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restored.permissions, stored.permissions);
    assert_eq!(restored.subjects, stored.subjects);

    // Delete.
    h.remove("role.yaml");
    let view = h.sync().await;
    assert!(!view.contains_key("Role default/admin"));
    assert!(
        h.ctx
            .store
            .role_by_name(id, "admin")
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test(migrations = false)]
async fn settings_no_schema_can_check_are_refused_in_the_status(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.sync().await;
    let before = h.snapshot().await;

    // Both lifetimes match the schema's pattern; together they make reuse detection blind.
    h.write(
        "tenant.yaml",
        &tenant(
            "demo",
            "default",
            "  tokens:\n    refreshIdleTtl: 10s\n    refreshReuseGrace: 10s\n",
        ),
    );
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "Tenant default/demo");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("tokens.refreshReuseGrace"), "{message}");
    assert_eq!(h.snapshot().await, before, "a bad spec writes nothing");
}

#[sqlx::test(migrations = false)]
async fn a_bad_spec_says_why_and_changes_nothing(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "role.yaml",
        &role("admin", &["users.read"], &["a@example.com"]),
    );
    h.sync().await;
    let before = h.snapshot().await;
    let id = h.tenant_id("demo").await;
    let role_before = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();

    // Permissions must be lowercase (a schema pattern, which the folder source applies too).
    h.write(
        "role.yaml",
        &role("admin", &["Users.Read"], &["a@example.com"]),
    );
    // A password policy whose minimum exceeds its maximum (a CEL rule in the CRD).
    h.write(
        "tenant.yaml",
        &tenant(
            "demo",
            "default",
            "  passwordPolicy:\n    minLength: 64\n    maxLength: 32\n",
        ),
    );
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "Role default/admin");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.permissions[0]"), "{message}");
    let (state, reason, message) = ready(&view, "Tenant default/demo");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("minLength"), "{message}");
    assert_eq!(h.snapshot().await, before, "a bad spec writes nothing");
    assert_eq!(
        h.ctx
            .store
            .role_by_name(id, "admin")
            .await
            .unwrap()
            .unwrap(),
        role_before
    );

    // A Role pointing at a tenant that does not exist.
    h.write(
        "other.yaml",
        &role("admin", &["users.read"], &[])
            .replace("name: admin", "name: stray")
            .replace("name: demo", "name: nowhere"),
    );
    let view = h.sync().await;
    let (_, reason, message) = ready(&view, "Role default/stray");
    assert_eq!(reason, "TenantNotFound");
    assert!(message.contains("nowhere"), "{message}");
}

#[sqlx::test(migrations = false)]
async fn identity_provider_secret_from_the_folder_sealed_in_the_store(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("idp.yaml", IDP);
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "IdentityProvider default/corp");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "SecretNotFound")
    );
    assert!(
        message.contains("default/corp-oidc") && message.contains("clientSecret"),
        "{message}"
    );
    let id = h.tenant_id("demo").await;
    assert!(
        h.ctx.store.idp_by_name(id, "corp").await.unwrap().is_none(),
        "nothing stored without its secret"
    );

    h.write("secret.yaml", &idp_secret("s3cret-one"));
    let view = h.sync().await;
    assert_eq!(ready(&view, "IdentityProvider default/corp").0, "True");
    let row = h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap();
    let sealed = row.client_secret.clone().unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("s3cret-one"),
        "stored sealed"
    );
    let context = keygate_operator::identity_provider::idp_secret_context(row.id);
    assert_eq!(
        &*h.ctx.master_keys.open(&sealed, &context).unwrap(),
        b"s3cret-one"
    );
    assert_eq!(row.config["oidc"]["clientId"], "keygate");

    // Unchanged secret: the same ciphertext, nothing written.
    h.sync().await;
    assert_eq!(
        h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap(),
        row
    );

    // A changed Secret is picked up.
    h.write("secret.yaml", &idp_secret("s3cret-two"));
    h.sync().await;
    let row = h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap();
    assert_eq!(
        &*h.ctx
            .master_keys
            .open(row.client_secret.as_ref().unwrap(), &context)
            .unwrap(),
        b"s3cret-two"
    );

    // The Secret disappears: status says so, the stored provider is left as it was.
    h.remove("secret.yaml");
    let view = h.sync().await;
    assert_eq!(
        ready(&view, "IdentityProvider default/corp").1,
        "SecretNotFound"
    );
    assert_eq!(
        h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap(),
        row
    );

    h.remove("idp.yaml");
    h.sync().await;
    assert!(h.ctx.store.idp_by_name(id, "corp").await.unwrap().is_none());
}

#[sqlx::test(migrations = false)]
async fn api_key_issue_rotate_with_grace_and_revoke_on_delete(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let first = h.raw_key("default", "ci-secret");
    assert!(first.starts_with("kg_"));
    assert!(h.accepted("demo", &first).await);
    let status = &view["ApiKey default/ci"];
    let prefix = first
        .strip_prefix("kg_")
        .unwrap()
        .split_once('_')
        .unwrap()
        .0;
    assert_eq!(status["keyPrefix"], prefix);
    assert_eq!(status["secretName"], "ci-secret");
    assert!(
        !status.to_string().contains(&first),
        "the raw key never appears in status"
    );
    let record = h.lookup("demo", &first).await.unwrap();
    assert_eq!(record.roles, ["viewer"]);
    assert_eq!(record.scopes, ["read"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.secret_file("default", "ci-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(h.secret_file("default", "ci-secret")).unwrap();
    assert!(
        text.contains("keygate.dev/api-key: ci")
            && text.contains("app.kubernetes.io/managed-by: keygate-operator"),
        "{text}"
    );

    // Not yet due: nothing changes.
    h.clock.advance(Duration::hours(23));
    h.sync().await;
    assert_eq!(h.raw_key("default", "ci-secret"), first);

    // Due: a new key in the Secret; both work during the grace period.
    h.clock.advance(Duration::hours(1));
    h.sync().await;
    let second = h.raw_key("default", "ci-secret");
    assert_ne!(second, first);
    assert!(
        h.accepted("demo", &first).await,
        "the old key works during the grace period"
    );
    assert!(h.accepted("demo", &second).await);
    h.clock.advance(Duration::minutes(59));
    assert!(h.accepted("demo", &first).await);
    h.clock.advance(Duration::minutes(1));
    assert!(
        !h.accepted("demo", &first).await,
        "the old key is refused after the grace period"
    );
    assert!(h.accepted("demo", &second).await);

    // Deleting the ApiKey revokes at once and pushes the revocation to gateway replicas.
    h.remove("key.yaml");
    h.sync().await;
    assert!(!h.accepted("demo", &second).await);
    let id = h.lookup("demo", &second).await.unwrap().id;
    assert!(h.revocations.revocations().contains(&id.to_string()));
    assert!(!h.secret_file("default", "ci-secret").exists());
}

#[sqlx::test(migrations = false)]
async fn a_deleted_secret_gets_a_new_key_and_the_old_one_is_revoked(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("key.yaml", &api_key("ci", ""));
    h.sync().await;
    let first = h.raw_key("default", "ci-secret");
    std::fs::remove_file(h.secret_file("default", "ci-secret")).unwrap();
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let second = h.raw_key("default", "ci-secret");
    assert_ne!(first, second);
    assert!(
        !h.accepted("demo", &first).await,
        "the old key is revoked at once"
    );
    assert!(h.accepted("demo", &second).await);
    let old = h.lookup("demo", &first).await.unwrap();
    assert!(h.revocations.revocations().contains(&old.id.to_string()));
}

#[sqlx::test(migrations = false)]
async fn changed_grants_apply_in_place_and_the_secret_keeps_its_key(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key(
            "ci",
            "  permissions: [orders.read, orders.write]\n  rotation:\n    every: 24h\n    gracePeriod: 1h\n",
        ),
    );
    h.sync().await;
    let first = h.raw_key("default", "ci-secret");

    // A rotation leaves the previous key in its grace period.
    h.clock.advance(Duration::hours(24));
    h.sync().await;
    let raw = h.raw_key("default", "ci-secret");
    assert_ne!(raw, first);
    assert!(h.accepted("demo", &first).await);
    let before = h.lookup("demo", &raw).await.unwrap();

    // Take a permission away, add a scope and a role, set an expiry: same key, new grants.
    h.clock.advance(Duration::minutes(5));
    h.write(
        "key.yaml",
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: ci\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: ci-secret\n  roles: [viewer, auditor]\n  scopes: [read, write]\n  permissions: [orders.read]\n  expiresAt: \"2026-03-01T00:00:00Z\"\n  rotation:\n    every: 24h\n    gracePeriod: 1h\n",
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    assert_eq!(
        h.raw_key("default", "ci-secret"),
        raw,
        "the Secret keeps its value"
    );
    assert!(h.accepted("demo", &raw).await, "the key keeps working");
    let after = h.lookup("demo", &raw).await.unwrap();
    assert_eq!(after.id, before.id, "the same stored key");
    assert_eq!(after.permissions, ["orders.read"], "orders.write is gone");
    assert_eq!(after.roles, ["auditor", "viewer"]);
    assert_eq!(after.scopes, ["read", "write"]);
    assert_eq!(
        after.expires_at,
        Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(
        view["ApiKey default/ci"]["keyPrefix"],
        raw.strip_prefix("kg_").unwrap().split_once('_').unwrap().0
    );
    // The key still in its grace period lost the permission too.
    let previous = h.lookup("demo", &first).await.unwrap();
    assert!(h.accepted("demo", &first).await);
    assert_eq!(previous.permissions, ["orders.read"]);
    assert!(
        !h.revocations.revocations().contains(&after.id.to_string()),
        "nothing was revoked"
    );

    // Once in place, the next pass writes nothing.
    let snapshot = h.snapshot().await;
    h.sync().await;
    assert_eq!(h.snapshot().await, snapshot);

    // An expiry moved into the past takes the key away at once, in place.
    h.write(
        "key.yaml",
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: ci\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: ci-secret\n  roles: [viewer, auditor]\n  scopes: [read, write]\n  permissions: [orders.read]\n  expiresAt: \"2026-01-02T00:00:00Z\"\n",
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").1, "Expired");
    assert!(!h.accepted("demo", &raw).await);
    assert_eq!(h.raw_key("default", "ci-secret"), raw);
}

#[sqlx::test(migrations = false)]
async fn a_foreign_secret_of_the_same_name_is_left_alone(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    // A Secret someone declared themselves, without keygate's labels.
    h.write(
        "mine.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ci-secret\n  namespace: default\nstringData:\n  apiKey: my-own-value\n",
    );
    h.write("key.yaml", &api_key("ci", ""));
    let view = h.sync().await;
    let (status, reason, message) = ready(&view, "ApiKey default/ci");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretConflict")
    );
    assert!(
        message.contains("Secret default/ci-secret") && message.contains("spec.secretName"),
        "{message}"
    );
    assert!(
        !h.secret_file("default", "ci-secret").exists(),
        "nothing written over it"
    );
    assert!(
        h.ctx
            .store
            .list_api_keys(h.tenant_id("demo").await)
            .await
            .unwrap()
            .is_empty(),
        "no key issued into a Secret it cannot write"
    );
    assert!(
        std::fs::read_to_string(h.source.manifests.join("mine.yaml"))
            .unwrap()
            .contains("my-own-value")
    );

    // Another ApiKey's Secret is foreign too: the second ApiKey naming it gets the conflict.
    h.remove("mine.yaml");
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let raw = h.raw_key("default", "ci-secret");
    h.write(
        "other.yaml",
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: other\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: ci-secret\n",
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/other").1, "SecretConflict");
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    assert_eq!(h.raw_key("default", "ci-secret"), raw, "ci's key untouched");
    assert!(h.accepted("demo", &raw).await);
}

#[sqlx::test(migrations = false)]
async fn the_orphan_sweep_leaves_unwatched_namespaces_alone(pool: PgPool) {
    use keygate_operator::orphans::{Cleaned, LiveSet, clean};
    let h = Harness::postgres(pool).await;
    h.write("a.yaml", &tenant("team-a", "ns-a", ""));
    h.write("b.yaml", &tenant("team-b", "ns-b", ""));
    h.sync().await;
    let cluster = keygate_operator::Cluster {
        secrets: Arc::new(keygate_operator::secrets::DirectorySecrets::default()),
        events: Arc::new(keygate_operator::cluster::LogEvents),
        revocations: None,
        cache: None,
    };
    let disabled = |name: &'static str| {
        let store = h.ctx.store.clone();
        async move { store.tenant_by_name(name).await.unwrap().unwrap().disabled }
    };
    // An operator watching ns-a (and ns-c, empty) sees team-a; team-b is not its to judge.
    let watched = Some(["ns-a".to_owned(), "ns-c".to_owned()].into());
    let live = LiveSet {
        tenants: ["dir:ns-a/Tenant/team-a".to_owned()].into(),
        namespaces: watched.clone(),
        ..LiveSet::default()
    };
    assert_eq!(
        clean(&h.ctx, &cluster, &live).await.unwrap(),
        Cleaned::default()
    );
    assert!(
        !disabled("team-b").await,
        "a tenant of an unwatched namespace is kept"
    );
    // Within its namespaces it still cleans: team-a gone from the view is retired.
    let live = LiveSet {
        namespaces: watched,
        ..LiveSet::default()
    };
    assert_eq!(clean(&h.ctx, &cluster, &live).await.unwrap().tenants, 1);
    assert!(disabled("team-a").await);
    assert!(!disabled("team-b").await);
}

#[sqlx::test(migrations = false)]
async fn every_key_of_a_tenant_is_seen_across_pages(pool: PgPool) {
    // Pages of 2 rows: 5 keys take three pages.
    let h = Harness::postgres(pool).await.with_api_key_pages(2);
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    let keys: String = (0..5)
        .map(|i| format!("---\n{}", api_key(&format!("k{i}"), "")))
        .collect();
    h.write("keys.yaml", &keys);
    h.sync().await;
    let raws: Vec<String> = (0..5)
        .map(|i| h.raw_key("default", &format!("k{i}-secret")))
        .collect();

    // A steady pass finds each key (on whichever page) and issues nothing new.
    let before = h.snapshot().await;
    h.sync().await;
    assert_eq!(h.snapshot().await, before, "no key re-issued");

    // The ApiKeys and their Secret files vanish together (a wiped data folder): only the
    // orphan sweep can find their rows, on every page.
    h.remove("keys.yaml");
    std::fs::remove_dir_all(h.dir.path().join("data/secrets")).unwrap();
    h.sync().await;
    for raw in &raws {
        assert!(!h.accepted("demo", raw).await, "an orphaned key is revoked");
    }
}

#[sqlx::test(migrations = false)]
async fn an_expired_key_is_refused_and_reported(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key("ci", "  expiresAt: \"2026-01-02T00:00:00Z\"\n"),
    );
    let view = h.sync().await;
    assert_eq!(
        view["ApiKey default/ci"]["expiresAt"],
        "2026-01-02T00:00:00Z"
    );
    let raw = h.raw_key("default", "ci-secret");
    assert!(h.accepted("demo", &raw).await);
    h.clock.advance(Duration::days(2));
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").1, "Expired");
    assert!(!h.accepted("demo", &raw).await);
    assert_eq!(
        h.raw_key("default", "ci-secret"),
        raw,
        "no new key for an expired ApiKey"
    );
}

#[sqlx::test(migrations = false)]
async fn a_second_pass_writes_nothing(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("idp.yaml", IDP);
    h.write("secret.yaml", &idp_secret("s3cret"));
    h.write(
        "role.yaml",
        &role("admin", &["users.read"], &["a@example.com"]),
    );
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let first = h.sync().await;
    let before = h.snapshot().await;
    let secret_before = std::fs::read(h.secret_file("default", "ci-secret")).unwrap();
    h.clock.advance(Duration::minutes(5));
    let second = h.sync().await;
    assert_eq!(h.snapshot().await, before);
    assert_eq!(
        std::fs::read(h.secret_file("default", "ci-secret")).unwrap(),
        secret_before
    );
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    // The status view keeps transition times of unchanged conditions.
    let status_file = std::fs::read_to_string(h.dir.path().join("data/status.yaml")).unwrap();
    assert!(
        status_file.contains("Tenant default/demo") && status_file.contains("ApiKey default/ci"),
        "{status_file}"
    );
    assert_eq!(first, second, "nothing changed, so no status changed");
}

/// Collects every log line of the test's thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[sqlx::test(migrations = false)]
async fn the_raw_key_never_reaches_logs_or_status(pool: PgPool) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let mut views = vec![h.sync().await];
    let mut raws = vec![h.raw_key("default", "ci-secret")];
    h.clock.advance(Duration::hours(25));
    views.push(h.sync().await);
    raws.push(h.raw_key("default", "ci-secret"));
    std::fs::remove_file(h.secret_file("default", "ci-secret")).unwrap();
    views.push(h.sync().await);
    raws.push(h.raw_key("default", "ci-secret"));
    h.remove("key.yaml");
    views.push(h.sync().await);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("KeyRotated") && logs.contains("SecretLost"),
        "events are logged: {logs}"
    );
    let status_file =
        std::fs::read_to_string(h.dir.path().join("data/status.yaml")).unwrap_or_default();
    for raw in &raws {
        let secret_part = secret_of(raw);
        let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(secret_part)).collect();
        assert!(leaked.is_empty(), "raw key in logs: {leaked:?}");
        assert!(
            !status_file.contains(secret_part),
            "raw key in the status file"
        );
        for view in &views {
            assert!(
                !serde_json::to_string(view).unwrap().contains(secret_part),
                "raw key in status"
            );
        }
    }
}

#[tokio::test]
async fn sqlite_runs_the_same_api_key_lifecycle() {
    let h = Harness::sqlite().await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("role.yaml", &role("viewer", &["users.read"], &[]));
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let first = h.raw_key("default", "ci-secret");
    h.clock.advance(Duration::hours(24));
    h.sync().await;
    let second = h.raw_key("default", "ci-secret");
    assert!(h.accepted("demo", &first).await && h.accepted("demo", &second).await);
    h.clock.advance(Duration::hours(1));
    assert!(!h.accepted("demo", &first).await);
    h.remove("key.yaml");
    h.sync().await;
    assert!(!h.accepted("demo", &second).await);
}

// ---------------------------------------------------------------------------------------
// The Kubernetes source over a mocked API server: each request's method, path and body.

mod kubernetes {
    use super::*;
    use http::{Method, Request, Response};
    use keygate_crds::{ApiKey, Resource as AnyResource, Tenant};
    use keygate_operator::kubernetes::{KubeContext, error_policy, reconcile};
    use kube::client::Body;
    use std::time::Duration as StdDuration;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    struct Api {
        handle: Handle,
    }

    impl Api {
        /// Takes the next request, checks method and path (with query), returns its JSON body.
        async fn expect(
            &mut self,
            method: Method,
            path: &str,
        ) -> (
            serde_json::Value,
            tower_test::mock::SendResponse<Response<Body>>,
        ) {
            let (request, send) =
                tokio::time::timeout(StdDuration::from_secs(5), self.handle.next_request())
                    .await
                    .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
                    .expect("client dropped");
            assert_eq!(request.method(), method, "method of {}", request.uri());
            assert_eq!(request.uri().to_string(), path);
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            (body, send)
        }

        fn reply(
            send: tower_test::mock::SendResponse<Response<Body>>,
            code: u16,
            body: &serde_json::Value,
        ) {
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(body).unwrap()))
                    .unwrap(),
            );
        }
    }

    fn context(h: &Harness) -> (Arc<KubeContext>, Api) {
        context_with(h, h.revocations.clone())
    }

    /// A context whose API-key revocations go to `revocations`.
    fn context_with(
        h: &Harness,
        revocations: Arc<dyn keygate_core::ephemeral::Ephemeral>,
    ) -> (Arc<KubeContext>, Api) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let kc = KubeContext::new(
            h.ctx.clone(),
            client,
            Some(revocations),
            StdDuration::from_secs(300),
        );
        (Arc::new(kc), Api { handle })
    }

    fn parse<T: Clone>(yaml: &str, pick: fn(AnyResource) -> Option<T>) -> T {
        keygate_crds::load_manifests(yaml)
            .unwrap()
            .into_iter()
            .find_map(pick)
            .unwrap()
    }

    fn kube_api_key(finalized: bool) -> ApiKey {
        let mut key = parse(&api_key("ci", ""), |r| match r {
            AnyResource::ApiKey(k) => Some(k),
            _ => None,
        });
        key.metadata.uid = Some("6f1c8d9e-0000-4000-8000-000000000001".into());
        key.metadata.generation = Some(2);
        key.metadata.resource_version = Some("41".into());
        if finalized {
            key.metadata.finalizers = Some(vec![keygate_crds::FINALIZER.into()]);
        }
        key
    }

    fn kube_tenant(finalized: bool) -> Tenant {
        let mut tenant = parse(&super::tenant("demo", "default", ""), |r| match r {
            AnyResource::Tenant(t) => Some(t),
            _ => None,
        });
        tenant.metadata.uid = Some("6f1c8d9e-0000-4000-8000-00000000000a".into());
        tenant.metadata.generation = Some(7);
        if finalized {
            tenant.metadata.finalizers = Some(vec![keygate_crds::FINALIZER.into()]);
        }
        tenant
    }

    const KEYS: &str = "/apis/keygate.dev/v1alpha1/namespaces/default/apikeys";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events?";
    const SSA: &str = "?&force=true&fieldManager=keygate-operator";
    const SECRET: &str = "/api/v1/namespaces/default/secrets/ci-secret";

    impl Api {
        /// The Secret step of an ApiKey reconcile: its name is looked up (answered with
        /// `existing`, or 404), then the Secret is applied; returns the applied Secret.
        async fn secret_applied(
            &mut self,
            existing: Option<serde_json::Value>,
        ) -> serde_json::Value {
            let (_, send) = self.expect(Method::GET, SECRET).await;
            match existing {
                Some(found) => Api::reply(send, 200, &found),
                None => Api::reply(send, 404, &not_found()),
            }
            let (secret, send) = self.expect(Method::PATCH, &format!("{SECRET}{SSA}")).await;
            Api::reply(send, 200, &secret);
            secret
        }
    }

    #[sqlx::test(migrations = false)]
    async fn a_new_object_first_gets_the_finalizer(pool: PgPool) {
        let h = Harness::postgres(pool).await;
        let (kc, mut api) = context(&h);
        let key = kube_api_key(false);
        let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc));
        let (patch, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
        assert_eq!(
            patch,
            serde_json::json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": ["keygate.dev/cleanup"] }
            ])
        );
        Api::reply(
            send,
            200,
            &serde_json::to_value(kube_api_key(true)).unwrap(),
        );
        task.await.unwrap().unwrap();
        // Nothing was written to the store before the finalizer was in place.
        h.write("tenant.yaml", &super::tenant("demo", "default", ""));
        h.sync().await;
        assert!(
            h.ctx
                .store
                .list_api_keys(h.tenant_id("demo").await)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[sqlx::test(migrations = false)]
    async fn api_key_secret_events_status_then_cleanup(pool: PgPool) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let h = Harness::postgres(pool).await;
        h.write("tenant.yaml", &super::tenant("demo", "default", ""));
        h.sync().await;
        let (kc, mut api) = context(&h);
        let key = kube_api_key(true);
        let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc.clone()));

        // The Secret name is looked up first (someone else's Secret is never overwritten),
        // then the Secret is applied: server-side apply, owned by the ApiKey, labelled.
        let secret = api.secret_applied(None).await;
        assert_eq!(secret["apiVersion"], "v1");
        assert_eq!(secret["kind"], "Secret");
        assert_eq!(
            secret["metadata"]["ownerReferences"],
            serde_json::json!([{
                "apiVersion": "keygate.dev/v1alpha1", "kind": "ApiKey", "name": "ci",
                "uid": "6f1c8d9e-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true
            }])
        );
        assert_eq!(secret["metadata"]["labels"]["keygate.dev/api-key"], "ci");
        assert_eq!(secret["metadata"]["labels"]["keygate.dev/tenant"], "demo");
        assert_eq!(
            secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "keygate-operator"
        );
        let raw: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"]["apiKey"].clone()).unwrap();
        let raw = String::from_utf8(raw.0).unwrap();
        assert!(raw.starts_with("kg_"));

        // Event: the key was issued (named by its prefix only).
        let (event, send) = api.expect(Method::POST, EVENTS).await;
        assert_eq!(event["reason"], "KeyIssued");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["regarding"]["kind"], "ApiKey");
        assert_eq!(
            event["regarding"]["uid"],
            "6f1c8d9e-0000-4000-8000-000000000001"
        );
        Api::reply(send, 201, &event);
        // Event: Ready became True.
        let (ready_event, send) = api.expect(Method::POST, EVENTS).await;
        assert_eq!(ready_event["reason"], "Reconciled");
        Api::reply(send, 201, &ready_event);

        // Status by server-side apply, with conditions and observedGeneration.
        let (status, send) = api
            .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
            .await;
        assert_eq!(status["apiVersion"], "keygate.dev/v1alpha1");
        assert_eq!(status["kind"], "ApiKey");
        assert_eq!(status["status"]["observedGeneration"], 2);
        assert_eq!(status["status"]["secretName"], "ci-secret");
        let condition = &status["status"]["conditions"][0];
        assert_eq!(
            (condition["type"].as_str(), condition["status"].as_str()),
            (Some("Ready"), Some("True"))
        );
        assert_eq!(condition["observedGeneration"], 2);
        let mut updated = key.clone();
        updated.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
        Api::reply(send, 200, &serde_json::to_value(&updated).unwrap());
        task.await.unwrap().unwrap();
        assert!(h.accepted("demo", &raw).await);

        // A second reconcile of the same object: the Secret is read, nothing is written.
        let task = tokio::spawn(reconcile(Arc::new(updated.clone()), kc.clone()));
        let (_, send) = api.expect(Method::GET, SECRET).await;
        Api::reply(send, 200, &secret);
        task.await.unwrap().unwrap();

        // Deletion: keys revoked at once, the Secret deleted, the finalizer removed.
        let mut deleting = updated.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_767_225_600).unwrap(),
            ));
        let task = tokio::spawn(reconcile(Arc::new(deleting.clone()), kc.clone()));
        let (_, send) = api
            .expect(
                Method::DELETE,
                "/api/v1/namespaces/default/secrets/ci-secret?",
            )
            .await;
        Api::reply(
            send,
            404,
            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "gone"}),
        );
        let (patch, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
        assert_eq!(
            patch,
            serde_json::json!([
                { "op": "test", "path": "/metadata/finalizers/0", "value": "keygate.dev/cleanup" },
                { "op": "remove", "path": "/metadata/finalizers/0" }
            ])
        );
        deleting.metadata.finalizers = None;
        Api::reply(send, 200, &serde_json::to_value(&deleting).unwrap());
        task.await.unwrap().unwrap();
        assert!(
            !h.accepted("demo", &raw).await,
            "deleting the ApiKey revokes its key at once"
        );
        let id = h.lookup("demo", &raw).await.unwrap().id;
        assert!(h.revocations.revocations().contains(&id.to_string()));

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let secret_part = secret_of(&raw);
        assert!(!logs.contains(secret_part), "the raw key is in no log line");
        assert!(
            !event.to_string().contains(secret_part) && !status.to_string().contains(secret_part)
        );
    }

    fn not_found() -> serde_json::Value {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
    }

    #[sqlx::test(migrations = false)]
    async fn a_user_secret_of_the_same_name_is_not_overwritten(pool: PgPool) {
        let h = Harness::postgres(pool).await;
        h.write("tenant.yaml", &super::tenant("demo", "default", ""));
        h.sync().await;
        let (kc, mut api) = context(&h);
        let key = kube_api_key(true);
        let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc.clone()));

        // The Secret exists, created by a person: no ownerReference, no keygate labels.
        let (_, send) = api.expect(Method::GET, SECRET).await;
        Api::reply(
            send,
            200,
            &serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {
                    "name": "ci-secret", "namespace": "default", "uid": "0000-user",
                    "labels": { "app": "billing" }
                },
                "data": { "apiKey": "bXktb3duLXZhbHVl" }
            }),
        );

        // A Warning Event naming the Secret, then Ready=False with reason SecretConflict.
        let (event, send) = api.expect(Method::POST, EVENTS).await;
        assert_eq!(
            (event["type"].as_str(), event["reason"].as_str()),
            (Some("Warning"), Some("SecretConflict"))
        );
        assert!(
            event["note"]
                .as_str()
                .unwrap()
                .contains("Secret default/ci-secret"),
            "{event}"
        );
        Api::reply(send, 201, &event);
        let (status, send) = api
            .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
            .await;
        let condition = &status["status"]["conditions"][0];
        assert_eq!(
            (condition["status"].as_str(), condition["reason"].as_str()),
            (Some("False"), Some("SecretConflict"))
        );
        assert!(status["status"].get("keyPrefix").is_none());
        Api::reply(send, 200, &serde_json::to_value(&key).unwrap());
        task.await.unwrap().unwrap();

        // No PUT, PATCH or DELETE of the Secret came, and no key was stored.
        assert!(
            tokio::time::timeout(StdDuration::from_millis(300), api.handle.next_request())
                .await
                .is_err(),
            "no further request"
        );
        assert!(
            h.ctx
                .store
                .list_api_keys(h.tenant_id("demo").await)
                .await
                .unwrap()
                .is_empty()
        );

        // A Secret keygate wrote for this ApiKey (its ownerReference) is taken as its own.
        let mut updated = key.clone();
        updated.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
        let task = tokio::spawn(reconcile(Arc::new(updated), kc.clone()));
        let secret = api
            .secret_applied(Some(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {
                    "name": "ci-secret", "namespace": "default",
                    "ownerReferences": [{
                        "apiVersion": "keygate.dev/v1alpha1", "kind": "ApiKey", "name": "ci",
                        "uid": "6f1c8d9e-0000-4000-8000-000000000001", "controller": true
                    }]
                },
                "data": {}
            })))
            .await;
        assert!(secret["data"]["apiKey"].is_string());
        let (event, send) = api.expect(Method::POST, EVENTS).await;
        assert_eq!(event["reason"], "KeyIssued");
        Api::reply(send, 201, &event);
        let (event, send) = api.expect(Method::POST, EVENTS).await;
        assert_eq!(event["reason"], "Reconciled");
        Api::reply(send, 201, &event);
        let (status, send) = api
            .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
            .await;
        assert_eq!(status["status"]["conditions"][0]["status"], "True");
        Api::reply(send, 200, &serde_json::to_value(&key).unwrap());
        task.await.unwrap().unwrap();
    }

    #[sqlx::test(migrations = false)]
    async fn a_deleted_api_key_is_refused_by_a_gateway_replica_through_redis(pool: PgPool) {
        use keygate_core::ephemeral::RedisEphemeral;
        let url = std::env::var("KEYGATE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        // One Redis, a prefix of this test's own; the operator and a gateway replica each
        // hold their own connection, as in a cluster.
        let prefix = format!("kgtest:{}:", uuid::Uuid::new_v4());
        let operator_side = Arc::new(RedisEphemeral::connect(&url, &prefix).await.unwrap());
        let gateway = RedisEphemeral::connect(&url, &prefix).await.unwrap();

        let h = Harness::postgres(pool).await;
        h.write("tenant.yaml", &super::tenant("demo", "default", ""));
        h.sync().await;
        let (kc, mut api) = context_with(&h, operator_side);
        let key = kube_api_key(true);

        // Issue the key (the Secret is new).
        let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc.clone()));
        let secret = api.secret_applied(None).await;
        let raw: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"]["apiKey"].clone()).unwrap();
        let raw = String::from_utf8(raw.0).unwrap();
        for _ in 0..2 {
            let (event, send) = api.expect(Method::POST, EVENTS).await;
            Api::reply(send, 201, &event);
        }
        let (_, send) = api
            .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
            .await;
        Api::reply(send, 200, &serde_json::to_value(&key).unwrap());
        task.await.unwrap().unwrap();
        let id = h.lookup("demo", &raw).await.unwrap().id.to_string();
        assert!(!gateway.revocations().contains(&id));

        // Delete the ApiKey: the revocation reaches the gateway replica's local set.
        let mut deleting = key.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_767_225_600).unwrap(),
            ));
        let task = tokio::spawn(reconcile(Arc::new(deleting.clone()), kc.clone()));
        let (_, send) = api
            .expect(
                Method::DELETE,
                "/api/v1/namespaces/default/secrets/ci-secret?",
            )
            .await;
        Api::reply(send, 404, &not_found());
        let (_, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
        deleting.metadata.finalizers = None;
        Api::reply(send, 200, &serde_json::to_value(&deleting).unwrap());
        task.await.unwrap().unwrap();
        let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
        while !gateway.revocations().contains(&id) {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway replica never heard of the revocation"
            );
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }

    #[sqlx::test(migrations = false)]
    async fn tenant_status_patch_carries_issuer_and_generation(pool: PgPool) {
        let h = Harness::postgres(pool).await;
        let (kc, mut api) = context(&h);
        let tenant = kube_tenant(true);
        let task = tokio::spawn(reconcile(Arc::new(tenant.clone()), kc));
        let (event, send) = api.expect(Method::POST, EVENTS).await;
        assert_eq!(
            (
                event["reason"].as_str(),
                event["regarding"]["kind"].as_str()
            ),
            (Some("Reconciled"), Some("Tenant"))
        );
        Api::reply(send, 201, &event);
        let (status, send) = api
            .expect(
                Method::PATCH,
                &format!("/apis/keygate.dev/v1alpha1/namespaces/default/tenants/demo/status{SSA}"),
            )
            .await;
        assert_eq!(
            status["status"]["issuerUrl"],
            "https://auth.example.com/t/demo"
        );
        assert_eq!(status["status"]["observedGeneration"], 7);
        assert_eq!(status["status"]["conditions"][0]["reason"], "Reconciled");
        Api::reply(send, 200, &serde_json::to_value(&tenant).unwrap());
        task.await.unwrap().unwrap();
        let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
        assert_eq!(stored.owner_uid, "6f1c8d9e-0000-4000-8000-00000000000a");
        assert_eq!(stored.generation, 7);
    }

    #[sqlx::test(migrations = false)]
    async fn a_missing_idp_secret_is_a_warning_and_a_status_not_an_error(pool: PgPool) {
        let h = Harness::postgres(pool).await;
        h.write("tenant.yaml", &super::tenant("demo", "default", ""));
        h.sync().await;
        let (kc, mut api) = context(&h);
        let mut idp = parse(IDP, |r| match r {
            AnyResource::IdentityProvider(i) => Some(i),
            _ => None,
        });
        idp.metadata.uid = Some("6f1c8d9e-0000-4000-8000-0000000000b1".into());
        idp.metadata.generation = Some(1);
        idp.metadata.finalizers = Some(vec![keygate_crds::FINALIZER.into()]);
        let task = tokio::spawn(reconcile(Arc::new(idp.clone()), kc));
        let (_, send) = api
            .expect(Method::GET, "/api/v1/namespaces/default/secrets/corp-oidc")
            .await;
        Api::reply(
            send,
            404,
            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        );
        let (event, send) = api.expect(Method::POST, EVENTS).await;
        assert_eq!(
            (event["type"].as_str(), event["reason"].as_str()),
            (Some("Warning"), Some("SecretNotFound"))
        );
        assert!(
            event["note"]
                .as_str()
                .unwrap()
                .contains("default/corp-oidc")
        );
        Api::reply(send, 201, &event);
        let (status, send) = api
            .expect(
                Method::PATCH,
                &format!("/apis/keygate.dev/v1alpha1/namespaces/default/identityproviders/corp/status{SSA}"),
            )
            .await;
        let condition = &status["status"]["conditions"][0];
        assert_eq!(
            (condition["status"].as_str(), condition["reason"].as_str()),
            (Some("False"), Some("SecretNotFound"))
        );
        Api::reply(send, 200, &serde_json::to_value(&idp).unwrap());
        // Not an error: no crash loop, the Secret watch brings it back when it appears.
        task.await.unwrap().unwrap();
    }

    #[sqlx::test(migrations = false)]
    async fn a_refused_call_is_an_error_with_backoff_and_a_metric(pool: PgPool) {
        let h = Harness::postgres(pool).await;
        let (kc, mut api) = context(&h);
        let key = Arc::new(kube_api_key(false));
        let errors = || {
            keygate_operator::metrics::metrics()
                .unwrap()
                .errors
                .with_label_values(&["apikey", "finalizer"])
                .get()
        };
        let before = errors();
        let task = tokio::spawn(reconcile(key.clone(), kc.clone()));
        let (_, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
        Api::reply(
            send,
            500,
            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "boom"}),
        );
        let error = task.await.unwrap().unwrap_err();
        assert_eq!(errors(), before + 1);
        let delays: Vec<_> = (0..4)
            .map(|_| error_policy(key.clone(), &error, kc.clone()))
            .collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40]
                .map(|s| kube::runtime::controller::Action::requeue(StdDuration::from_secs(s)))
        );
    }
}

// ---------------------------------------------------------------------------------------
// Leader election on a coordination.k8s.io/v1 Lease, over a mocked API server.

mod leader {
    use super::*;
    use http::{Method, Request, Response};
    use keygate_operator::leader::{LeaderElector, LeaseConfig};
    use kube::client::Body;
    use std::time::Duration as StdDuration;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/keygate/leases/keygate-operator";

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn elector(identity: &str, clock: Arc<ManualClock>) -> (LeaderElector, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "keygate");
        (
            LeaderElector::new(client, LeaseConfig::new("keygate", identity), clock),
            handle,
        )
    }

    async fn next(
        handle: &mut Handle,
        method: Method,
        path: &str,
    ) -> (
        serde_json::Value,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        // Longer than a renew period: under paused time the elector's own sleep must end first.
        let (request, send) =
            tokio::time::timeout(StdDuration::from_secs(60), handle.next_request())
                .await
                .expect("a request")
                .expect("client alive");
        assert_eq!(request.method(), method);
        assert_eq!(request.uri().to_string(), path);
        let bytes = request.into_body().collect_bytes().await.unwrap();
        (
            if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            },
            send,
        )
    }

    fn reply(
        send: tower_test::mock::SendResponse<Response<Body>>,
        code: u16,
        body: &serde_json::Value,
    ) {
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
        );
    }

    fn not_found() -> serde_json::Value {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
    }

    fn lease(holder: &str, renewed: DateTime<Utc>, transitions: i32) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "keygate-operator", "namespace": "keygate", "resourceVersion": "17"},
            "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 15,
                "acquireTime": "2025-12-31T23:00:00.000000Z",
                "renewTime": renewed.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "leaseTransitions": transitions
            }
        })
    }

    #[tokio::test]
    async fn acquires_an_absent_lease_by_creating_it() {
        let clock = Arc::new(ManualClock::new(t0()));
        let (elector, mut api) = elector("pod-a", clock);
        let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 404, &not_found());
        let (body, send) = next(
            &mut api,
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/keygate/leases?",
        )
        .await;
        assert_eq!(body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(body["spec"]["leaseTransitions"], 0);
        assert_eq!(body["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
        reply(send, 201, &body);
        assert!(task.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn the_holder_renews_with_the_resource_version_it_read() {
        let clock = Arc::new(ManualClock::new(t0()));
        let (elector, mut api) = elector("pod-a", clock.clone());
        clock.advance(Duration::seconds(5));
        let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-a", t0(), 0));
        let (body, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
        assert_eq!(body["metadata"]["resourceVersion"], "17");
        assert_eq!(body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(body["spec"]["renewTime"], "2026-01-01T00:00:05.000000Z");
        assert_eq!(
            body["spec"]["leaseTransitions"], 0,
            "a renewal is not a transition"
        );
        reply(send, 200, &body);
        assert!(task.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_standby_waits_while_the_lease_is_valid_and_takes_it_over_after_expiry() {
        let clock = Arc::new(ManualClock::new(t0()));
        let (elector, mut api) = elector("pod-b", clock.clone());
        // The leader renewed at t0 and then died. 14 s later the Lease is still valid.
        clock.advance(Duration::seconds(14));
        let standby = elector.clone();
        let task = tokio::spawn(async move { standby.try_acquire_or_renew().await });
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-a", t0(), 3));
        assert!(
            !task.await.unwrap().unwrap(),
            "no write while another replica holds a valid Lease"
        );

        // One check later (renew period 5 s) it has expired: pod-b takes over.
        clock.advance(Duration::seconds(5));
        let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-a", t0(), 3));
        let (body, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
        assert_eq!(body["spec"]["holderIdentity"], "pod-b");
        assert_eq!(body["spec"]["leaseTransitions"], 4);
        assert_eq!(body["spec"]["acquireTime"], "2026-01-01T00:00:19.000000Z");
        assert_eq!(body["metadata"]["resourceVersion"], "17");
        reply(send, 200, &body);
        assert!(task.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn of_two_replicas_racing_for_an_expired_lease_the_conflict_loses() {
        let clock = Arc::new(ManualClock::new(t0()));
        let (elector, mut api) = elector("pod-c", clock.clone());
        clock.advance(Duration::seconds(60));
        let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-a", t0(), 1));
        let (_, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
        reply(
            send,
            409,
            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
        );
        assert!(!task.await.unwrap().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn work_runs_only_while_leading_and_stops_when_the_lease_is_lost() {
        let clock = Arc::new(ManualClock::new(t0()));
        let (elector, mut api) = elector("pod-a", clock.clone());
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = started.clone();
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped_flag = stopped.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn(async move {
            elector
                .run(
                    move || {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let guard = SetOnDrop(stopped_flag.clone());
                        async move {
                            let _guard = guard;
                            std::future::pending::<()>().await
                        }
                    },
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await;
        });
        // Round 1: another replica holds a valid Lease: no work.
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-z", t0(), 0));
        // Round 2: it expired; we take over and start the work.
        clock.advance(Duration::seconds(20));
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-z", t0(), 0));
        let (body, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
        reply(send, 200, &body);
        assert!(!stopped.load(std::sync::atomic::Ordering::SeqCst));
        // Round 3: someone else took it (e.g. we were partitioned): the work stops.
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-z", clock.now_utc(), 1));
        // Shutdown: the Lease is not ours, so nothing is released.
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        let _ = stop_tx.send(());
        reply(send, 200, &lease("pod-z", clock.now_utc(), 1));
        let (_, send) = next(&mut api, Method::GET, LEASE).await;
        reply(send, 200, &lease("pod-z", clock.now_utc(), 1));
        tokio::time::timeout(StdDuration::from_secs(30), runner)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            stopped.load(std::sync::atomic::Ordering::SeqCst),
            "the work was stopped when the Lease was lost"
        );
    }

    /// Sets its flag when dropped (an aborted task drops its future).
    struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// `/metrics` lists the per-kind families after a pass, with fixed short label values.
#[sqlx::test(migrations = false)]
async fn metrics_count_reconciles_per_kind(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("role.yaml", &role("admin", &["users.read"], &[]));
    h.sync().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, keygate_operator::health_router()).await });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("keygate_operator_reconciles_total{kind=\"tenant\"}"),
        "{response}"
    );
    assert!(
        response.contains("keygate_operator_reconciles_total{kind=\"role\"}"),
        "{response}"
    );
    assert!(
        response.contains("keygate_operator_reconcile_duration_seconds_bucket{kind=\"role\""),
        "{response}"
    );
    assert!(!response.contains("admin"), "no resource names in labels");
}

/// The random part of `kg_<prefix>_<secret>` (which may itself contain `_`).
fn secret_of(raw: &str) -> &str {
    raw.strip_prefix("kg_").unwrap().split_once('_').unwrap().1
}
