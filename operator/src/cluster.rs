//! What a reconciler touches besides the store: Secrets (read for IdP credentials, written
//! for API keys), Events, and the gateway's revocation channel. Each source supplies its own
//! implementation (files for the directory source, the API server for Kubernetes), so the
//! reconcile functions never know where they run.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use keygate_core::ephemeral::Ephemeral;
use std::sync::Arc;

/// Why reading or writing a Secret failed (not "absent": that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A Secret file could not be read, parsed or written.
    #[error("secret file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The API server refused the request.
    #[error("kubernetes: {0}")]
    Kube(#[source] Box<kube::Error>),
}

/// Reads and writes Secrets in a resource's namespace.
#[async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The Secret `namespace/name`, or `None` if it does not exist.
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SecretError>;
    /// Creates or replaces a Secret the operator owns (its metadata carries name, namespace,
    /// labels and owner reference).
    async fn apply(&self, secret: &Secret) -> Result<(), SecretError>;
    /// Deletes a Secret the operator owns; absent is fine.
    async fn delete(&self, namespace: &str, name: &str) -> Result<(), SecretError>;
}

/// Severity of an [`Event`], as Kubernetes knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Something happened as intended.
    Normal,
    /// Something needs a person's attention.
    Warning,
}

/// A meaningful transition of a resource, told to whoever runs `kubectl describe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub kind: EventKind,
    /// Short CamelCase reason, e.g. `KeyRotated`.
    pub reason: &'static str,
    /// CamelCase action taken, e.g. `Rotate`.
    pub action: &'static str,
    /// One sentence for people; never a secret value.
    pub note: String,
}

/// Publishes [`Event`]s about a resource.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Publishes `event` about the object `regarding`; failures are logged, not fatal.
    async fn publish(&self, regarding: &ObjectReference, event: Event);
}

/// Events as log lines: the directory source has no API server to send them to.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogEvents;

#[async_trait]
impl EventSink for LogEvents {
    async fn publish(&self, regarding: &ObjectReference, event: Event) {
        let resource = format!(
            "{} {}/{}",
            regarding.kind.as_deref().unwrap_or_default(),
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        );
        match event.kind {
            EventKind::Normal => tracing::info!(%resource, reason = event.reason, "{}", event.note),
            EventKind::Warning => {
                tracing::warn!(%resource, reason = event.reason, "{}", event.note)
            }
        }
    }
}

/// Everything outside the store a reconcile may act on, bundled so signatures stay short.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Where Secrets are read and written.
    pub secrets: Arc<dyn SecretSource>,
    /// Where Events go.
    pub events: Arc<dyn EventSink>,
    /// The gateway's revocation channel, so a revoked API key is refused on every replica
    /// at once instead of after the gateway's cache re-check; `None` when the operator runs
    /// without Redis (the gateway then learns it from the store).
    pub revocations: Option<Arc<dyn Ephemeral>>,
}
