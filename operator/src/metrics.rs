//! The operator's Prometheus metrics: reconciles, errors and durations per kind. Labels are
//! fixed short words (a kind, an error class), never names or messages, so the number of
//! series stays bounded whatever the cluster holds.

use crate::ReconcileError;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

/// The operator's metric families.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Reconciles run, by kind.
    pub reconciles: IntCounterVec,
    /// Reconciles that failed, by kind and error class.
    pub errors: IntCounterVec,
    /// Reconcile durations, by kind.
    pub duration: HistogramVec,
    /// 1 while this replica holds the Lease and reconciles (Kubernetes source only).
    pub leader: IntGauge,
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
            leader: IntGauge::new(
                "keygate_operator_leader",
                "1 while this replica holds the leader Lease and reconciles, else 0",
            )?,
        };
        registry.register(Box::new(metrics.reconciles.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.leader.clone()))?;
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
        "OAuthClient" => "oauthclient",
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Metrics;
    use prometheus::core::Collector;
    use std::collections::BTreeSet;

    /// Every `keygate_operator_…` name `docs/operations.md` mentions (tables and PromQL).
    fn documented() -> BTreeSet<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
        let text = std::fs::read_to_string(path).unwrap();
        text.match_indices("keygate_operator_")
            .map(|(at, _)| {
                let tail = &text[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                // PromQL reads a histogram through its series.
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|n| n.ends_with("_seconds")))
                    .unwrap_or(name)
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_operations_page_names_exactly_the_operator_metrics() {
        let registry = prometheus::Registry::new();
        let m = Metrics::register(&registry).unwrap();
        let collectors: [&dyn Collector; 4] = [&m.reconciles, &m.errors, &m.duration, &m.leader];
        let registered: BTreeSet<String> = collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect();
        assert_eq!(documented(), registered);
    }
}
