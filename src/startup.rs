//! Starting each role: read and validate config, reach the store, serve. Every failure is
//! one line saying what broke and what to do.

use keygate_core::clock::SystemClock;
use keygate_core::config::{ConfigError, Sources, init_logging};
use keygate_core::store::{self, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A reason the process cannot run, printed as one line before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// Configuration is missing or invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The database could not be reached or migrated.
    #[error("{0}")]
    Database(String),
    /// The listen address is taken or not allowed.
    #[error(
        "cannot listen on {addr}: {cause}. Pick another address with --listen or KEYGATE_LISTEN"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why binding failed.
        cause: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The database host for messages: never the password.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!(
                "{scheme}://{}",
                host.split(['/', '?']).next().unwrap_or(host)
            )
        }
        None => url.split('?').next().unwrap_or(url).to_owned(),
    }
}

/// Connects to the store with a bounded wait; optionally applies migrations.
pub async fn open_store(url: &str, migrate: bool) -> Result<Arc<dyn Store>, Fatal> {
    let where_ = redacted(url);
    let connect = tokio::time::timeout(Duration::from_secs(10), store::connect(url)).await;
    let store = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Fatal::Database(format!(
                "cannot reach the database at {where_}: {e}. Check KEYGATE_DATABASE_URL and that the database is running and accepts connections"
            )));
        }
        Err(_) => {
            return Err(Fatal::Database(format!(
                "cannot reach the database at {where_}: no answer within 10 s. Check KEYGATE_DATABASE_URL, the host and port, and network policies"
            )));
        }
    };
    if migrate {
        tracing::info!(database = %where_, "applying database migrations");
        store.migrate().await.map_err(|e| {
            Fatal::Database(format!("migrating the database at {where_} failed: {e}. Fix the cause and run `keygate migrate` again"))
        })?;
    }
    if let Err(e) = store.ping().await {
        return Err(Fatal::Database(format!(
            "the database at {where_} does not answer queries: {e}. Check that it is up and that `keygate migrate` ran"
        )));
    }
    Ok(store)
}

/// Binds a listener, with a message that says what to do when the port is taken.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Fatal> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| Fatal::Listen { addr, cause })
}

/// Resolves on SIGTERM or Ctrl-C, so in-flight requests finish during a rolling update.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// `keygate gateway`.
pub async fn gateway(config: Option<&Path>) -> Result<(), Fatal> {
    let sources = Sources::from_process(config)?;
    let common = sources.common(None)?;
    let gw = sources.gateway(None, "0.0.0.0:8080")?;
    init_logging(common.log_format, &common.log_filter);
    let store = open_store(common.database_url.expose(), false).await?;
    let clock: Arc<dyn keygate_core::clock::Clock> = Arc::new(SystemClock);
    // Redis, SMTP, argon2id parameters and the breached-password list from the config.
    let identity = keygate_gateway::identity::IdentityDeps::from_config(
        store.clone(),
        common.master_keys.clone(),
        &gw,
        clock.clone(),
    )
    .await
    .map_err(|e| Fatal::Other(format!("cannot set up the identity service: {e}")))?;
    let identity = keygate_gateway::identity::IdentityService::new(identity);
    identity.spawn_bootstrap_from_env();
    let state = keygate_gateway::AppState::builder(identity)
        .trusted_proxies(gw.trusted_proxies.clone())
        .build();
    // Postgres as the revocation fallback: Redis pub/sub is fast, this poll is certain.
    let _revocation_sync = state.identity.spawn_revocation_sync(Duration::from_secs(2));
    let listener = bind(gw.listen).await?;
    tracing::info!(listen = %gw.listen, public_url = %gw.public_url, "gateway serving");
    keygate_gateway::server::serve(
        listener,
        keygate_gateway::app(state),
        keygate_gateway::server::ClientTimeouts::default(),
        shutdown_signal(),
    )
    .await;
    Ok(())
}

/// `keygate operator`.
pub async fn operator(config: Option<&Path>, manifests: Option<PathBuf>) -> Result<(), Fatal> {
    let sources = Sources::from_process(config)?;
    let common = sources.common(None)?;
    let op = sources.operator("0.0.0.0:8081")?;
    init_logging(common.log_format, &common.log_filter);
    let public_url = std::env::var("KEYGATE_PUBLIC_URL").map_err(|_| {
        Fatal::Config(ConfigError {
            field: "KEYGATE_PUBLIC_URL".into(),
            problem: "not set; tenant status publishes issuer and JWKS URLs built from it".into(),
            fix: "Set it to the gateway's public URL, e.g. https://auth.example.com".into(),
        })
    })?;
    let store = open_store(common.database_url.expose(), false).await?;
    let ctx = keygate_operator::Context {
        store,
        master_keys: common.master_keys,
        public_url: public_url.trim_end_matches('/').to_owned(),
        clock: Arc::new(SystemClock),
    };
    let Some(dir) = manifests else {
        let listener = bind(op.listen).await?;
        tracing::info!(listen = %op.listen, "operator reconciling the Kubernetes API");
        // With the gateways' Redis, a deleted or rotated-out API key is refused at once on
        // every replica; without it, gateways notice at their periodic re-check.
        let revocations: Option<Arc<dyn keygate_core::ephemeral::Ephemeral>> =
            match sources.redis_url()? {
                Some(url) => Some(Arc::new(
                    keygate_core::ephemeral::RedisEphemeral::connect(url.expose(), "kg:")
                        .await
                        .map_err(|e| {
                            Fatal::Other(format!(
                                "cannot reach Redis at KEYGATE_REDIS_URL: {e}. Check the URL and that Redis is up, or unset it"
                            ))
                        })?,
                )),
                None => None,
            };
        let options = keygate_operator::kubernetes::ClusterOptions {
            lease_name: op.lease_name.clone(),
            pod_name: op.pod_name.clone(),
            pod_namespace: op.pod_namespace.clone(),
            watch_namespaces: op.watch_namespaces.clone(),
            resync: Duration::from_secs(300),
            revocations,
        };
        let health = axum::serve(listener, keygate_operator::health_router())
            .with_graceful_shutdown(shutdown_signal());
        let controllers =
            keygate_operator::kubernetes::run_in_cluster(ctx, options, shutdown_signal());
        let (served, ran) = tokio::join!(health, controllers);
        ran.map_err(|e| {
            Fatal::Other(format!(
                "cannot reach the Kubernetes API: {e}. Run in a cluster with the operator's service account, or with a kubeconfig, or pass --manifests DIR"
            ))
        })?;
        return served.map_err(|e| Fatal::Other(format!("server stopped: {e}")));
    };
    let listener = bind(op.listen).await?;
    tracing::info!(listen = %op.listen, manifests = %dir.display(), "operator reconciling a manifest folder");
    // Secrets the operator writes and the status view go beside the data of `keygate dev`.
    let data_dir =
        std::env::var("KEYGATE_DATA_DIR").map_or_else(|_| PathBuf::from(".keygate"), PathBuf::from);
    let source = Arc::new(keygate_operator::DirectorySource::new(dir, &data_dir));
    tokio::spawn(keygate_operator::directory::watch(
        ctx,
        source,
        Duration::from_secs(2),
        Duration::from_secs(300),
    ));
    axum::serve(listener, keygate_operator::health_router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Fatal::Other(format!("server stopped: {e}")))
}

/// `keygate migrate`.
pub async fn migrate(config: Option<&Path>) -> Result<(), Fatal> {
    let sources = Sources::from_process(config)?;
    let database_url = sources.database_url(None)?;
    let (format, filter) = sources.logging()?;
    init_logging(format, &filter);
    open_store(database_url.expose(), true).await?;
    tracing::info!("database is up to date");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn database_urls_lose_their_credentials() {
        assert_eq!(
            redacted("postgres://u:hunter2@db:5432/keygate?sslmode=require"),
            "postgres://db:5432"
        );
        assert_eq!(
            redacted("sqlite:.keygate/keygate.db?mode=rwc"),
            "sqlite:.keygate/keygate.db"
        );
    }
}
