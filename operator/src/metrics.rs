//! The operator's Prometheus metrics: reconciles, errors and durations per kind. Labels are
//! fixed short words (a kind, an error class), never names or messages, so the number of
//! series stays bounded whatever the cluster holds.

use crate::ReconcileError;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// The operator's metric families.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Reconciles run, by kind.
    pub reconciles: IntCounterVec,
    /// Reconciles that failed, by kind and error class.
    pub errors: IntCounterVec,
    /// Reconcile durations, by kind.
    pub duration: HistogramVec,
}

impl Metrics {
    /// The metric families, registered in `registry` (the one `/metrics` serves), so a
    /// test or an embedding process reads its own registry rather than a process-wide one.
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            reconciles: IntCounterVec::new(
                Opts::new(
                    "keygate_operator_reconciles_total",
                    "Reconciles run, by kind",
                ),
                &["kind"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "keygate_operator_reconcile_errors_total",
                    "Reconciles that failed, by kind and error class",
                ),
                &["kind", "error"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "keygate_operator_reconcile_duration_seconds",
                    "Time one reconcile took, by kind",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
                &["kind"],
            )?,
        };
        registry.register(Box::new(metrics.reconciles.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        Ok(metrics)
    }
}

/// The kind label for a resource kind.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "Tenant" => "tenant",
        "IdentityProvider" => "identityprovider",
        "Role" => "role",
        "ApiKey" => "apikey",
        _ => "other",
    }
}

/// Runs one reconcile, counting it, its duration and its failure in `metrics` (`None`:
/// unmeasured, as in most tests).
pub async fn timed<T>(
    metrics: Option<&Metrics>,
    kind: &str,
    work: impl Future<Output = Result<T, ReconcileError>>,
) -> Result<T, ReconcileError> {
    let label = kind_label(kind);
    let timer = metrics.map(|m| {
        m.reconciles.with_label_values(&[label]).inc();
        m.duration.with_label_values(&[label]).start_timer()
    });
    let result = work.await;
    if let Some(timer) = timer {
        timer.observe_duration();
    }
    if let (Err(e), Some(m)) = (&result, metrics) {
        m.errors.with_label_values(&[label, e.class()]).inc();
    }
    result
}
