//! Fixtures every test of the reconcile binary shares: a harness over a real store (a
//! fresh PostgreSQL database per test, or SQLite) with a manifest folder, a manual clock
//! and its own metrics registry, and manifest builders.

use chrono::{DateTime, TimeZone, Utc};
use keygate_core::clock::ManualClock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::ephemeral::MemoryEphemeral;
use keygate_core::store::{ApiKeyRecord, PgStore, SqliteStore, Store};
use keygate_operator::directory::{StatusView, sync_once};
use keygate_operator::metrics::Metrics;
use keygate_operator::secrets::{parse_secrets, secret_value};
use keygate_operator::{Context, DirectorySource, Status};
use sqlx::PgPool;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub struct Harness {
    pub ctx: Context,
    pub clock: Arc<ManualClock>,
    pub source: DirectorySource,
    pub revocations: Arc<MemoryEphemeral>,
    pub pool: Option<PgPool>,
    /// Where this harness's reconciles are counted (each test reads its own).
    pub registry: prometheus::Registry,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn postgres(pool: PgPool) -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let store = PgStore::from_pool(pool.clone()).with_clock(clock.clone());
        store.migrate().await.unwrap();
        Self::with_store(Arc::new(store), clock, Some(pool))
    }

    pub async fn sqlite() -> Self {
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

    pub fn with_store(
        store: Arc<dyn Store>,
        clock: Arc<ManualClock>,
        pool: Option<PgPool>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let revocations = Arc::new(MemoryEphemeral::new());
        let source = DirectorySource::new(manifests, &dir.path().join("data"))
            .with_revocations(revocations.clone());
        let registry = prometheus::Registry::new();
        let ctx = Context::new(
            store,
            MasterKeys::parse(&MasterKeys::generate_spec("test").unwrap()).unwrap(),
            "https://auth.example.com",
            clock.clone(),
        )
        .with_metrics(Metrics::register(&registry).unwrap());
        Self {
            ctx,
            clock,
            source,
            revocations,
            pool,
            registry,
            dir,
        }
    }

    /// Reads each tenant's API keys `rows` at a time, so a few keys cover paging.
    pub fn with_api_key_pages(mut self, rows: u32) -> Self {
        self.source = DirectorySource::new(
            self.dir.path().join("manifests"),
            &self.dir.path().join("data"),
        )
        .with_revocations(self.revocations.clone())
        .with_api_key_page_size(rows);
        self
    }

    pub fn write(&self, file: &str, yaml: &str) {
        std::fs::write(self.source.manifests.join(file), yaml).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.source.manifests.join(file)).unwrap();
    }

    pub async fn sync(&self) -> StatusView {
        sync_once(&self.ctx, &self.source).await.unwrap()
    }

    pub fn secret_file(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/secrets")
            .join(namespace)
            .join(format!("{name}.yaml"))
    }

    /// The raw key the operator wrote into a Secret file.
    pub fn raw_key(&self, namespace: &str, name: &str) -> String {
        let text = std::fs::read_to_string(self.secret_file(namespace, name)).unwrap();
        let secret = parse_secrets(&text).unwrap().pop().unwrap();
        String::from_utf8(secret_value(&secret, "apiKey").unwrap()).unwrap()
    }

    pub async fn tenant_id(&self, name: &str) -> keygate_core::ids::TenantId {
        self.ctx
            .store
            .tenant_by_name(name)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// The key record a raw key resolves to, as the gateway would look it up.
    pub async fn lookup(&self, tenant: &str, raw: &str) -> Option<ApiKeyRecord> {
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

    pub async fn accepted(&self, tenant: &str, raw: &str) -> bool {
        let now = self.clock.now_utc();
        self.lookup(tenant, raw)
            .await
            .is_some_and(|r| r.is_usable(now))
    }

    /// Every row's `updated_at` (and every signing key), to prove a pass wrote nothing.
    pub async fn snapshot(&self) -> Vec<(String, String)> {
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

pub trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        keygate_core::clock::Clock::now(self)
    }
}

/// (status, reason, message) of a resource's Ready condition in a status view.
pub fn ready(view: &StatusView, name: &str) -> (String, String, String) {
    let status = view
        .get(name)
        .unwrap_or_else(|| panic!("{name} not in {view:#?}"));
    let condition = status.ready().unwrap();
    (
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    )
}

/// The typed status of an ApiKey in a view.
pub fn api_key_status<'a>(view: &'a StatusView, name: &str) -> &'a keygate_crds::ApiKeyStatus {
    match view.get(name) {
        Some(Status::ApiKey(s)) => s,
        other => panic!("{name} is not an ApiKey status: {other:?}"),
    }
}

/// The typed status of a Tenant in a view.
pub fn tenant_status<'a>(view: &'a StatusView, name: &str) -> &'a keygate_crds::TenantStatus {
    match view.get(name) {
        Some(Status::Tenant(s)) => s,
        other => panic!("{name} is not a Tenant status: {other:?}"),
    }
}

pub fn tenant(name: &str, namespace: &str, extra: &str) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  displayName: {name} tenant\n{extra}"
    )
}

pub fn role(name: &str, permissions: &[&str], users: &[&str]) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  permissions: [{}]\n  subjects:\n    users: [{}]\n    groups: [keygate-admins]\n",
        permissions.join(", "),
        users.join(", ")
    )
}

pub fn api_key(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: {name}-secret\n  roles: [viewer]\n  scopes: [read]\n{extra}"
    )
}

pub const IDP: &str = "apiVersion: keygate.dev/v1alpha1\nkind: IdentityProvider\nmetadata:\n  name: corp\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n    clientId: keygate\n    clientSecretRef:\n      name: corp-oidc\n      key: clientSecret\n";

pub fn idp_secret(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: corp-oidc\n  namespace: default\nstringData:\n  clientSecret: {value}\n"
    )
}

/// The random part of `kg_<prefix>_<secret>` (which may itself contain `_`).
pub fn secret_of(raw: &str) -> &str {
    raw.strip_prefix("kg_").unwrap().split_once('_').unwrap().1
}

/// Every log line of this test binary while the capture lives, from any thread.
///
/// A thread-local subscriber (`tracing::subscriber::set_default`) lost events when other tests
/// of the binary started and stopped their own at the same time (tracing re-computes callsite
/// interest across threads), so the binary has one global subscriber that writes every event to
/// each live capture. Lines of concurrent tests may appear too; the assertions look for this
/// test's own keys and events.
pub struct Captured(Arc<Mutex<Vec<u8>>>);

static LIVE_CAPTURES: Mutex<Vec<Arc<Mutex<Vec<u8>>>>> = Mutex::new(Vec::new());
static INSTALL: std::sync::Once = std::sync::Once::new();

impl Captured {
    /// Starts capturing; installs the binary's one subscriber on first use.
    pub fn start() -> Self {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::{Layer, filter};
        INSTALL.call_once(|| {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(|| FanOut)
                .with_filter(filter::filter_fn(|_| {
                    !LIVE_CAPTURES.lock().unwrap().is_empty()
                }));
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the reconcile tests");
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        LIVE_CAPTURES.lock().unwrap().push(buffer.clone());
        Self(buffer)
    }

    /// What was logged so far.
    pub fn logs(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        LIVE_CAPTURES
            .lock()
            .unwrap()
            .retain(|b| !Arc::ptr_eq(b, &self.0));
    }
}

/// Writes one formatted event to every live capture.
struct FanOut;

impl std::io::Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for buffer in LIVE_CAPTURES.lock().unwrap().iter() {
            buffer.lock().unwrap().extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
