//! keygate-operator: reconciles Tenant, IdentityProvider, Role, ApiKey and OAuthClient resources into the
//! store and Secrets. The reconcile functions (one module per kind) take a resource, the
//! store and the [`Effects`] (Secrets, Events, revocations) and return the typed status to
//! publish; the directory source (local runs, CI, `keygate dev`) and the Kubernetes source
//! both call them, so both behave the same. [`run`] starts either source with its
//! health and metrics server.

pub mod api_key;
pub mod context;
pub mod directory;
pub mod effects;
pub mod file_cache;
pub mod identity_provider;
pub mod kubernetes;
pub mod leader;
pub mod metrics;
pub mod oauth_client;
pub mod orphans;
pub mod parallel;
pub mod reconcile;
pub mod role;
pub mod run;
pub mod secrets;
pub mod status;
pub mod tenant;
pub mod view;

pub use context::Context;
pub use directory::DirectorySource;
pub use effects::Effects;
pub use reconcile::Status;
pub use run::{RunConfig, RunError, Source, run};

/// Why a reconcile could not finish; a bad spec is not an error but a status condition.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed; the reconcile is retried.
    #[error("store: {0}")]
    Store(#[from] keygate_core::store::StoreError),
    /// Key generation or encryption failed; retried.
    #[error("crypto: {0}")]
    Crypto(#[from] keygate_core::crypto::CryptoError),
    /// Reading or writing a Secret failed; retried.
    #[error("secret: {0}")]
    Secret(#[from] effects::SecretError),
    /// A resource lacks a field the API server always sets.
    #[error("resource has no {0}")]
    MissingObjectKey(&'static str),
    /// A manifest folder could not be read or parsed; the pass changed nothing.
    #[error("manifests: {0}")]
    Manifests(#[from] directory::ManifestError),
    /// A spec or key could not be turned into the JSON the store keeps (a bug, not input).
    #[error("cannot serialize for the store: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The key ring had no signing key right after one was created (a store that lost a
    /// write); retried.
    #[error("no active signing key after creating one")]
    NoActiveSigningKey,
    /// A spawned reconcile panicked or was cancelled; retried on the next pass.
    #[error("reconcile task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The API server refused a call; retried with backoff.
    #[error("kubernetes: {0}")]
    Kube(#[source] Box<kube::Error>),
    /// Adding or removing the finalizer, or the work behind it, failed; retried.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
    /// Some resources of a pass failed (each is logged); nothing was cleaned up.
    #[error("{failed} resource(s) could not be reconciled; retrying")]
    Incomplete {
        /// How many failed.
        failed: usize,
    },
}

/// A resource's name and namespace (`default` when unset, as in a manifest folder); a
/// resource without a name is one the API server never sends.
pub fn object_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(&str, &str), ReconcileError> {
    let name = meta
        .name
        .as_deref()
        .ok_or(ReconcileError::MissingObjectKey(".metadata.name"))?;
    Ok((name, meta.namespace.as_deref().unwrap_or("default")))
}

impl ReconcileError {
    /// A short fixed word for the metrics' `error` label.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Store(_) => "store",
            Self::Crypto(_) => "crypto",
            Self::Secret(_) => "secret",
            Self::MissingObjectKey(_) => "metadata",
            Self::Manifests(_) => "manifests",
            Self::Task(_) => "task",
            Self::Serialize(_) => "serialize",
            Self::NoActiveSigningKey => "keyring",
            Self::Incomplete { .. } => "incomplete",
            Self::Kube(_) => "kube",
            Self::Finalizer(inner) => match &**inner {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.class(),
                _ => "finalizer",
            },
        }
    }
}

/// `/healthz`, `/readyz` and `/metrics` of the operator process; `/metrics` serves
/// `registry` (where [`metrics::Metrics::register`] put the reconcile families).
pub fn health_router(registry: prometheus::Registry) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(move || {
                let families = registry.gather();
                async move {
                    prometheus::TextEncoder::new()
                        .encode_to_string(&families)
                        .unwrap_or_default()
                }
            }),
        )
}
