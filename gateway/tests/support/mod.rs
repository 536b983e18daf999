//! A real gateway on 127.0.0.1 (free port, SQLite in a temp dir) with the test identity
//! stand-in wired into forward-auth and the pages. [`env`] is the identity tests' gateway:
//! the real `IdentityService` over PostgreSQL (or SQLite) and Redis, with a manual clock.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod env;
pub mod identities;
pub mod logs;
pub mod nginx;
pub mod real;
pub mod saml;
pub mod servers;
pub mod smtp;
pub mod tls;
pub mod upstream;

use identities::{Person, TestIdentities};
use keygate_core::clock::SystemClock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::ephemeral::{Ephemeral, MemoryEphemeral, RedisEphemeral};
use keygate_core::store::{Store, Tenant, TenantUpsert};
use keygate_gateway::AppState;
use keygate_gateway::cookies::CookieMode;
use keygate_gateway::identity::{
    BreachedList, IdentityDeps, IdentityService, MemoryMailer, RateLimits,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// One running gateway.
pub struct Gateway {
    pub url: String,
    pub state: AppState,
    /// The store behind the gateway (tests provision rows in it; the gateway's HTTP side
    /// never sees it).
    pub store: Arc<dyn Store>,
    pub ids: Arc<TestIdentities>,
    pub ephemeral: Arc<dyn Ephemeral>,
    pub tenant: Tenant,
    /// The real identity service, when the gateway was started with `real_identity`.
    pub identity: Option<keygate_gateway::identity::IdentityService>,
    pub master: MasterKeys,
    /// The tenant's signing key, when this gateway provisioned it (real identity).
    pub signing_key: Option<keygate_core::crypto::signing::GeneratedKey>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// The real service (panics if this gateway runs the stand-in).
    pub fn real(&self) -> &keygate_gateway::identity::IdentityService {
        self.identity.as_ref().expect("started with real_identity")
    }

    /// What a second replica needs to share this one's database and issuer.
    pub fn replica(&self) -> Replica {
        Replica {
            store: self.store.clone(),
            tenant: self.tenant.clone(),
            ids: self.ids.clone(),
            master: self.master.clone(),
        }
    }
}

/// Shared parts of a replica set.
pub struct Replica {
    pub store: Arc<dyn Store>,
    pub tenant: Tenant,
    pub ids: Arc<TestIdentities>,
    pub master: MasterKeys,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a test wants of its gateway.
pub struct Options {
    pub allowed_origins: Vec<String>,
    pub cookie_mode: CookieMode,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `Some(prefix)`: share revocations through the Redis of `KEYGATE_TEST_REDIS_URL`.
    pub redis_prefix: Option<String>,
    /// Reuse another gateway's store, tenant and identities (a second replica).
    pub replica_of: Option<Replica>,
    /// Resolve credentials with the real `IdentityService` (accounts, roles, a signing key
    /// provisioned in the store) instead of the test stand-in.
    pub real_identity: bool,
    /// The gateway's public URL when a proxy in front of it serves another (TLS tests).
    pub public_url: Option<String>,
    /// The tenant's `sessions.cookieDomain` (a session cookie shared with a parent domain).
    pub cookie_domain: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["https://app.example.com".into()],
            cookie_mode: CookieMode::Host,
            trusted_proxies: Vec::new(),
            redis_prefix: None,
            replica_of: None,
            real_identity: false,
            public_url: None,
            cookie_domain: None,
        }
    }
}

pub fn ada() -> Person {
    Person {
        id: "user-ada".into(),
        email: "ada@example.com".into(),
        password: "correct horse battery".into(),
        roles: vec!["reader".into()],
    }
}

pub fn grace() -> Person {
    Person {
        id: "user-grace".into(),
        email: "grace@example.com".into(),
        password: "another long secret".into(),
        roles: vec!["reader".into(), "admin".into()],
    }
}

pub fn redis_url() -> String {
    std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Keeps the SQLite directory alive as long as the test process.
fn scratch_dir() -> &'static tempfile::TempDir {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
}

pub async fn start(opts: Options) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let ephemeral: Arc<dyn Ephemeral> = match &opts.redis_prefix {
        Some(prefix) => Arc::new(
            RedisEphemeral::connect(&redis_url(), prefix)
                .await
                .expect("Redis on KEYGATE_TEST_REDIS_URL"),
        ),
        None => Arc::new(MemoryEphemeral::new()),
    };
    let (store, tenant, ids, master, fresh) = match opts.replica_of {
        Some(r) => (r.store, r.tenant, r.ids, r.master, false),
        None => {
            let path = scratch_dir()
                .path()
                .join(format!("{}.db", uuid::Uuid::now_v7()));
            let store = keygate_core::store::connect(&format!("sqlite:{}", path.display()))
                .await
                .unwrap();
            store.migrate().await.unwrap();
            let tenant = store
                .upsert_tenant(&TenantUpsert {
                    name: format!("acme{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
                    namespace: "default".into(),
                    owner_uid: uuid::Uuid::now_v7().to_string(),
                    display_name: "Acme Corp".into(),
                    settings: serde_json::from_value(serde_json::json!({
                        "branding": { "primaryColor": "#8a2be2", "accentColor": "#4b0082" },
                        "signIn": { "registration": "open" },
                        "redirects": { "allowedOrigins": opts.allowed_origins },
                        "sessions": { "cookieDomain": opts.cookie_domain },
                    }))
                    .unwrap(),
                    deletion_policy: Default::default(),
                    generation: 1,
                })
                .await
                .unwrap();
            let base = opts.public_url.clone().unwrap_or_else(|| url.clone());
            let issuer = format!("{base}/t/{}", tenant.name);
            let ids = Arc::new(TestIdentities::new(
                &issuer,
                &tenant,
                ephemeral.clone(),
                vec![ada(), grace()],
            ));
            let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
            (store, tenant, ids, master, true)
        }
    };
    let mut signing_key = None;
    if opts.real_identity && fresh {
        signing_key = Some(real::provision(&store, &master, &tenant, &[ada(), grace()]).await);
    }
    // A replica must accept the first replica's issuer: same public URL, as behind one Service.
    let public_url = ids
        .issuer
        .rsplit_once("/t/")
        .map(|(base, _)| base.to_owned())
        .unwrap_or(url.clone());
    let service = IdentityService::new(IdentityDeps {
        store: store.clone(),
        master_keys: master.clone(),
        clock: Arc::new(SystemClock),
        ephemeral: ephemeral.clone(),
        hasher: real::hasher(),
        mailer: Arc::new(MemoryMailer::new()),
        public_url: public_url.clone(),
        breached: BreachedList::default(),
        limits: RateLimits {
            sign_in_per_ip: 100_000,
            ..RateLimits::default()
        },
        registry: prometheus::Registry::new(),
    });
    let builder = AppState::builder(service.clone())
        .cookie_mode(opts.cookie_mode)
        .trusted_proxies(opts.trusted_proxies);
    let (state, identity) = if opts.real_identity {
        (builder.build(), Some(service))
    } else {
        let state = builder
            .authenticator(ids.clone())
            .account_flows(ids.clone())
            .build();
        (state, None)
    };
    let app = keygate_gateway::app(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            keygate_gateway::listener(listener),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Gateway {
        url,
        state,
        store,
        ids,
        ephemeral,
        tenant,
        identity,
        master,
        signing_key,
        task,
    }
}

/// An HTTP client that never follows redirects (we check them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Form bodies and query strings without reqwest's optional `form`/`query` features.
pub trait RequestExt {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self;
    fn query_pairs(self, pairs: &[(&str, &str)]) -> Self;
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

impl RequestExt for reqwest::RequestBuilder {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(encode(pairs))
    }
    fn query_pairs(self, pairs: &[(&str, &str)]) -> Self {
        let (client, request) = self.build_split();
        let mut request = request.unwrap();
        request.url_mut().set_query(Some(&encode(pairs)));
        reqwest::RequestBuilder::from_parts(client, request)
    }
}
