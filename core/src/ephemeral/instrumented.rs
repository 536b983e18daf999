//! [`InstrumentedEphemeral`]: any [`Ephemeral`] with every call to the backend traced,
//! timed and its failures counted, in one place, so operators see Redis trouble as it
//! happens (errors by operation) rather than only at the next scrape's PING.
//!
//! The revocation set is answered locally and passes through untouched: forward-auth's
//! per-request revocation check costs nothing more.

use super::{Ephemeral, EphemeralError, RevocationSet};
use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

/// The operations, in the order of [`RedisMetrics`]' children.
const OPS: [&str; 6] = ["hit", "put", "get", "take", "revoke", "ping"];

/// Latency buckets (seconds): Redis answers in well under a millisecond when it is well;
/// the client gives up after 500 ms.
const BUCKETS: [f64; 9] = [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0];

/// The ephemeral store's series, every child resolved once.
#[derive(Clone, Debug)]
pub struct RedisMetrics {
    duration: Vec<Histogram>,
    errors: Vec<IntCounter>,
}

impl RedisMetrics {
    /// The series, registered in `registry`; `None` (logged) when they cannot be, and then
    /// calls are traced but not counted.
    pub fn register(registry: &prometheus::Registry) -> Option<Self> {
        match Self::new(registry) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "Redis metrics not registered");
                None
            }
        }
    }

    fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "keygate_redis_command_duration_seconds",
                "Time one call to Redis (without KEYGATE_REDIS_URL: the in-process stand-in) took, by operation",
            )
            .buckets(BUCKETS.to_vec()),
            &["operation"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "keygate_redis_errors_total",
                "Calls to Redis that failed (refused, dropped or timed out), by operation",
            ),
            &["operation"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self {
            duration: OPS
                .iter()
                .map(|o| duration.with_label_values(&[o]))
                .collect(),
            errors: OPS.iter().map(|o| errors.with_label_values(&[o])).collect(),
        })
    }
}

/// An ephemeral store whose calls are traced (`redis` spans), timed and counted.
#[derive(Debug)]
pub struct InstrumentedEphemeral {
    inner: Arc<dyn Ephemeral>,
    metrics: Option<RedisMetrics>,
}

impl InstrumentedEphemeral {
    /// `inner`, counted in `metrics` (`None`: traced only).
    pub fn new(inner: Arc<dyn Ephemeral>, metrics: Option<RedisMetrics>) -> Self {
        Self { inner, metrics }
    }

    /// Runs `call`, operation number `op` of [`OPS`], inside a `redis` span, and counts it.
    async fn timed<T>(
        &self,
        op: usize,
        call: impl Future<Output = Result<T, EphemeralError>>,
    ) -> Result<T, EphemeralError> {
        let name = OPS.get(op).copied().unwrap_or("other");
        let started = Instant::now();
        let result = call
            .instrument(tracing::debug_span!("redis", op = name))
            .await;
        if let Some(m) = &self.metrics {
            if let Some(h) = m.duration.get(op) {
                h.observe(started.elapsed().as_secs_f64());
            }
            if result.is_err()
                && let Some(c) = m.errors.get(op)
            {
                c.inc();
            }
        }
        result
    }
}

#[async_trait]
impl Ephemeral for InstrumentedEphemeral {
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, EphemeralError> {
        self.timed(0, self.inner.hit(key, window)).await
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        self.timed(1, self.inner.put(key, value, ttl)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        self.timed(2, self.inner.get(key)).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        self.timed(3, self.inner.take(key)).await
    }

    async fn revoke(&self, id: &str, ttl: Duration) -> Result<(), EphemeralError> {
        self.timed(4, self.inner.revoke(id, ttl)).await
    }

    fn revocations(&self) -> &RevocationSet {
        self.inner.revocations()
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        self.timed(5, self.inner.ping()).await
    }
}
