//! Starting the operator: the health and metrics server beside one source of resources
//! (the Kubernetes API under a Lease, or a manifest folder), until shutdown. The binary
//! reads the config, installs logging and opens the store; everything after that is here.

use crate::kubernetes::ClusterOptions;
use crate::metrics::Metrics;
use crate::{Context, DirectorySource};
use keygate_core::clock::SystemClock;
use keygate_core::config::{OperatorConfig, Secret};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::ephemeral::{Ephemeral, EphemeralError, RedisEphemeral};
use keygate_core::store::{InstrumentedStore, Store, StoreMetrics};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often every resource is reconciled again without a change (rotation, expiry, drift).
const RESYNC: Duration = Duration::from_secs(300);
/// How often the manifest folder is checked for edits.
const FOLDER_POLL: Duration = Duration::from_secs(2);

/// Where the operator reads resources from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The Kubernetes API the environment points at (in-cluster service account or
    /// kubeconfig), with leader election.
    Kubernetes,
    /// A folder of manifests (`--manifests DIR`).
    Directory(PathBuf),
}

/// Everything [`run`] needs, read and validated by the caller.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Listen address, public URL, data folder, Lease and watched namespaces.
    pub operator: OperatorConfig,
    /// Seals signing keys and IdP secrets before they reach the store.
    pub master_keys: MasterKeys,
    /// The system of record, already reachable.
    pub store: Arc<dyn Store>,
    /// The gateways' Redis: with it, a deleted or rotated-out API key is refused at once on
    /// every replica (both sources push revocations there); without it, gateways notice
    /// when their cache of the proven key expires.
    pub redis_url: Option<Secret>,
    /// Kubernetes or a manifest folder.
    pub source: Source,
    /// Where the reconcile metrics are registered; `/metrics` serves it.
    pub registry: prometheus::Registry,
}

/// Why the operator could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The health/metrics address is taken or not allowed.
    #[error("cannot listen on {addr}: {cause}. Pick another address with KEYGATE_OPERATOR_LISTEN")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        cause: std::io::Error,
    },
    /// `KEYGATE_REDIS_URL` is set but Redis does not answer.
    #[error(
        "cannot reach Redis at KEYGATE_REDIS_URL: {0}. Check the URL and that Redis is up, or unset it"
    )]
    Redis(#[source] EphemeralError),
    /// No Kubernetes API to talk to.
    #[error(
        "cannot reach the Kubernetes API: {0}. Run in a cluster with the operator's service account, or with a kubeconfig, or pass --manifests DIR"
    )]
    Kubernetes(#[source] Box<kube::Error>),
    /// The metric families could not be registered (a name registered twice).
    #[error("cannot register the operator metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    /// The health/metrics server failed.
    #[error("server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the operator until `shutdown` resolves: binds the health/metrics server, then
/// reconciles from the configured source.
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let metrics = Metrics::register(&config.registry).map_err(RunError::Metrics)?;
    // Store calls are timed and counted on the same registry, as the gateway's are.
    let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(
        config.store.clone(),
        StoreMetrics::register(&config.registry),
    ));
    let ctx = Context::new(
        store,
        config.master_keys.clone(),
        &config.operator.public_url,
        Arc::new(SystemClock),
    )
    .with_metrics(metrics);
    let addr = config.operator.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| RunError::Listen { addr, cause })?;
    // One shutdown for both halves: the server drains, the source stops.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let serve = async {
        axum::serve(listener, crate::health_router(config.registry.clone()))
            .with_graceful_shutdown(stopped())
            .await
            .map_err(RunError::Serve)
    };
    let reconcile = async {
        match &config.source {
            Source::Kubernetes => run_kubernetes(ctx, &config, stopped()).await,
            Source::Directory(dir) => {
                let revocations = revocation_channel(config.redis_url.as_ref()).await?;
                run_directory(ctx, &config.operator, dir.clone(), revocations, stopped()).await;
                Ok(())
            }
        }
    };
    tokio::try_join!(serve, reconcile).map(|_| ())
}

/// The Kubernetes source under leader election, pushing revocations to the gateways'
/// Redis when one is configured.
async fn run_kubernetes(
    ctx: Context,
    config: &RunConfig,
    stopped: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let op = &config.operator;
    tracing::info!(listen = %op.listen, "operator reconciling the Kubernetes API");
    let revocations = revocation_channel(config.redis_url.as_ref()).await?;
    let options = ClusterOptions {
        lease_name: op.lease_name.clone(),
        pod_name: op.pod_name.clone(),
        pod_namespace: op.pod_namespace.clone(),
        watch_namespaces: op.watch_namespaces.clone(),
        resync: RESYNC,
        revocations,
    };
    crate::kubernetes::run_in_cluster(ctx, options, stopped)
        .await
        .map_err(|e| RunError::Kubernetes(Box::new(e)))
}

/// The gateways' Redis, where revocations are pushed, when `KEYGATE_REDIS_URL` is set
/// (under the prefix the gateways read: see `IdentityDeps::from_config` in the gateway).
async fn revocation_channel(
    redis_url: Option<&Secret>,
) -> Result<Option<Arc<dyn Ephemeral>>, RunError> {
    let Some(url) = redis_url else {
        return Ok(None);
    };
    let redis = RedisEphemeral::connect(url.expose(), "kg:")
        .await
        .map_err(RunError::Redis)?;
    Ok(Some(Arc::new(redis)))
}

/// The manifest-folder source; its Secrets and status view go beside the data of
/// `keygate dev` (`KEYGATE_DATA_DIR`); revocations go to `revocations` when set.
async fn run_directory(
    ctx: Context,
    op: &OperatorConfig,
    dir: PathBuf,
    revocations: Option<Arc<dyn Ephemeral>>,
    stopped: impl Future<Output = ()>,
) {
    tracing::info!(listen = %op.listen, manifests = %dir.display(), "operator reconciling a manifest folder");
    let mut source = DirectorySource::new(dir, &op.data_dir);
    if let Some(revocations) = revocations {
        source = source.with_revocations(revocations);
    }
    let source = Arc::new(source);
    tokio::select! {
        () = crate::directory::watch(ctx, source, FOLDER_POLL, RESYNC) => {},
        () = stopped => {},
    }
}
