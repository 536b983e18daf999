//! Starting each role: read and validate config, reach the store, serve. Every failure is
//! one line saying what broke and what to do.

use crate::logging::init_logging;
use keygate_core::clock::SystemClock;
use keygate_core::config::{ConfigError, ExtAuthzConfig, GatewayConfig, Sources};
use keygate_core::store::{self, Store};
use keygate_gateway::forward_auth::grpc::{self, ExtAuthz, GrpcSettings};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often each gateway tries the expiry sweep (one replica at a time does it); expired
/// rows are already refused, so this bounds table growth, not access.
pub const JANITOR_EVERY: Duration = Duration::from_secs(600);

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
    /// The operator could not start or stopped early.
    #[error("{0}")]
    Operator(#[from] keygate_operator::RunError),
    /// `keygate explain`: the request would be denied (exit status 2).
    #[error("the request would be denied")]
    Denied,
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
    let ext_authz = sources.ext_authz("0.0.0.0:9191")?;
    let grpc_settings = grpc_settings(&ext_authz)?;
    init_logging(common.log_format, &common.log_filter);
    let store = open_store(common.database_url.expose(), false).await?;
    let clock: Arc<dyn keygate_core::clock::Clock> = Arc::new(SystemClock);
    let state = gateway_state(
        store,
        common.master_keys,
        &gw,
        clock,
        keygate_gateway::cookies::CookieMode::Host,
        GatewayExtras::default(),
    )
    .await?;
    let listener = bind(gw.listen).await?;
    let grpc = match ext_authz.listen {
        Some(addr) => Some(GrpcListener {
            listener: bind(addr).await?,
            settings: grpc_settings,
        }),
        None => None,
    };
    tracing::info!(listen = %gw.listen, ext_authz = ?ext_authz.listen, public_url = %gw.public_url, "gateway serving");
    serve_gateway(listener, grpc, state, gw.shutdown_drain).await;
    Ok(())
}

/// The gRPC ext_authz service's settings, checked before anything starts (a host default
/// with unreadable requirements would deny every request to that host).
pub fn grpc_settings(config: &ExtAuthzConfig) -> Result<GrpcSettings, Fatal> {
    GrpcSettings::new(
        config.requirements_header.as_deref(),
        &config.host_requirements,
    )
    .map_err(|e| {
        Fatal::Other(format!(
            "invalid ext_authz setting: {e}. Fix ext_authz_requirements_header / ext_authz_host_requirements in the config file"
        ))
    })
}

/// The gRPC ext_authz service's socket and settings.
pub struct GrpcListener {
    /// Bound before serving, so a taken port stops start-up with its cause.
    pub listener: tokio::net::TcpListener,
    /// Where requirements come from besides `context_extensions`.
    pub settings: GrpcSettings,
}

/// Serves the gateway on `listener` until a shutdown signal, with its background work: the
/// store re-check of revocations (Postgres as the fallback of Redis pub/sub: that is fast,
/// this poll is certain) and the expiry sweep. After the signal, requests in flight have
/// `drain` to finish; then pending API-key last-use times are written and it returns.
pub async fn serve_gateway(
    listener: tokio::net::TcpListener,
    grpc: Option<GrpcListener>,
    state: keygate_gateway::AppState,
    drain: Duration,
) {
    let _revocation_sync = state.identity.spawn_revocation_sync(Duration::from_secs(2));
    let _janitor = state.identity.spawn_janitor(JANITOR_EVERY);
    let identity = state.identity.clone();
    // One signal stops both servers.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let grpc_task = grpc.map(|g| {
        let service = ExtAuthz::new(state.clone(), g.settings);
        let until = stopped(stopping.clone());
        tokio::spawn(async move {
            if let Err(e) = grpc::serve(g.listener, service, until).await {
                tracing::error!(error = %e, "the gRPC ext_authz service stopped");
            }
        })
    });
    keygate_gateway::server::serve(
        listener,
        keygate_gateway::app(state),
        keygate_gateway::server::ClientTimeouts {
            drain,
            ..keygate_gateway::server::ClientTimeouts::default()
        },
        stopped(stopping),
    )
    .await;
    if let Some(task) = grpc_task {
        let _ = task.await;
    }
    // Bounded: a store that does not answer must not hold the exit past the grace period.
    let _ = tokio::time::timeout(Duration::from_secs(2), identity.flush_api_key_usage()).await;
    tracing::info!("stopped");
}

/// What `keygate dev` hands the gateway beside its settings; `keygate gateway` uses the
/// defaults.
#[derive(Default)]
pub struct GatewayExtras {
    /// Accept plain-`http://` OIDC issuers on loopback hosts (`keygate dev` only).
    pub allow_loopback_http: bool,
    /// Replaces the in-process store of rate windows and revocations (`keygate dev` shares
    /// one with its operator, so a revoked API key is refused at once).
    pub ephemeral: Option<Arc<dyn keygate_core::ephemeral::Ephemeral>>,
    /// Where mail goes when no SMTP relay is configured (`keygate dev`'s terminal); `None`:
    /// mail-dependent flows answer 503.
    pub without_smtp: Option<Arc<dyn keygate_gateway::identity::Mailer>>,
    /// The registry `/metrics` serves (`keygate dev` registers its operator's metrics there
    /// too).
    pub registry: prometheus::Registry,
}

/// The gateway's state from its settings: Redis, SMTP (or `extras.without_smtp`, `keygate
/// dev`'s terminal, when none is configured; `keygate gateway` passes none and sends no mail),
/// argon2id parameters and the breached-password list in the identity service, the trusted
/// proxies at the edge; then the first-admin bootstrap, if configured, starts in the
/// background.
pub async fn gateway_state(
    store: Arc<dyn Store>,
    master_keys: keygate_core::crypto::envelope::MasterKeys,
    gw: &GatewayConfig,
    clock: Arc<dyn keygate_core::clock::Clock>,
    cookie_mode: keygate_gateway::cookies::CookieMode,
    extras: GatewayExtras,
) -> Result<keygate_gateway::AppState, Fatal> {
    let mut identity = keygate_gateway::identity::IdentityDeps::from_config(
        store.clone(),
        master_keys.clone(),
        gw,
        clock.clone(),
    )
    .await
    .map_err(|e| Fatal::Other(format!("cannot set up the identity service: {e}")))?;
    if let Some(ephemeral) = extras.ephemeral {
        identity.ephemeral = ephemeral;
    }
    identity.registry = extras.registry;
    if gw.smtp.is_none() {
        match extras.without_smtp {
            Some(mailer) => identity.mailer = mailer,
            None => tracing::warn!(
                "no SMTP configured (KEYGATE_SMTP_URL): sign-up with email verification, password reset, \
                 verification resends and invites answer 503 until it is"
            ),
        }
    }
    let identity = keygate_gateway::identity::IdentityService::with_federation(
        identity,
        keygate_gateway::identity::Federation {
            allow_loopback_http: extras.allow_loopback_http,
            ..Default::default()
        },
    );
    // Building the state starts nothing: the first-admin bootstrap is started here.
    identity.spawn_bootstrap(gw.bootstrap.clone());
    Ok(keygate_gateway::AppState::builder(identity)
        .trusted_proxies(gw.trusted_proxies.clone())
        .cookie_mode(cookie_mode)
        .build())
}

/// `keygate operator`: reads the config, installs logging, opens the store and hands over
/// to [`keygate_operator::run`].
pub async fn operator(config: Option<&Path>, manifests: Option<PathBuf>) -> Result<(), Fatal> {
    let sources = Sources::from_process(config)?;
    let common = sources.common(None)?;
    let op = sources.operator("0.0.0.0:8081")?;
    let redis_url = sources.redis_url()?;
    init_logging(common.log_format, &common.log_filter);
    let store = open_store(common.database_url.expose(), false).await?;
    let source = match manifests {
        Some(dir) => keygate_operator::Source::Directory(dir),
        None => keygate_operator::Source::Kubernetes,
    };
    let config = keygate_operator::RunConfig {
        operator: op,
        master_keys: common.master_keys,
        store,
        redis_url,
        source,
        registry: prometheus::Registry::new(),
    };
    Ok(keygate_operator::run(config, shutdown_signal()).await?)
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
