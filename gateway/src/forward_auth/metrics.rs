//! Prometheus counters of forward-auth decisions, with short fixed labels only (no tenant or
//! requirement text, so cardinality stays bounded). They are registered in the registry the
//! gateway is built with (served at `/metrics`), not a process-global one, so each test and
//! each gateway in one process counts on its own.

use super::reason::Reason;
use super::request::Proxy;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use std::sync::OnceLock;

const PROXIES: [Proxy; 7] = [
    Proxy::Nginx,
    Proxy::Traefik,
    Proxy::Envoy,
    Proxy::EnvoyGrpc,
    Proxy::GatewayApi,
    Proxy::NginxGatewayFabric,
    Proxy::Direct,
];
const OUTCOMES: [&str; 7] = [
    "allow",
    "unauthenticated",
    "forbidden",
    "network_denied",
    "step_up",
    "misconfigured",
    "unavailable",
];
const SOURCES: [&str; 3] = ["cache", "resolver", "outage"];
/// The `credential` label: what the request presented ([`super::request::Credential::label`]),
/// `none` when it presented nothing or the check ended before credentials were read.
pub const CREDENTIALS: [&str; 6] = [
    "none",
    "access_token",
    "api_key",
    "session",
    "host_session",
    "malformed",
];

/// Forward-auth's counters, every (proxy, outcome) child resolved once so the hot path only
/// increments.
#[derive(Debug)]
pub struct ForwardAuthMetrics {
    decisions: Vec<Vec<IntCounter>>,
    reasons: Option<IntCounterVec>,
    /// One slot per (reason, credential), made on first use: most pairs never happen (no
    /// `api_key_invalid` from a cookie), so they are not exported as empty series.
    reason_children: Vec<OnceLock<IntCounter>>,
    lookups: Vec<IntCounter>,
    misconfig_logs_suppressed: Option<IntCounter>,
}

impl ForwardAuthMetrics {
    /// Counters registered in `registry` (a registry that already holds counters of these
    /// names keeps them, and this gateway's are not kept).
    pub fn new(registry: &Registry) -> Self {
        let decisions = counter(
            registry,
            "keygate_forward_auth_decisions_total",
            "Forward-auth answers by proxy and outcome",
            &["proxy", "outcome"],
        );
        let reasons = counter(
            registry,
            "keygate_forward_auth_decision_reasons_total",
            "Forward-auth decisions (HTTP and gRPC) by reason and the kind of credential presented",
            &["reason", "credential"],
        );
        let lookups = counter(
            registry,
            "keygate_forward_auth_identity_lookups_total",
            "Forward-auth identity lookups by source",
            &["source"],
        );
        let misconfig_logs_suppressed = counter(
            registry,
            "keygate_forward_auth_misconfiguration_logs_suppressed_total",
            "Misconfigured forward-auth checks not logged because the log budget (10 lines a minute) was spent",
            &[],
        )
        .map(|vec| vec.with_label_values::<&str>(&[]));
        Self {
            misconfig_logs_suppressed,
            decisions: decisions
                .map(|vec| {
                    PROXIES
                        .iter()
                        .map(|p| {
                            OUTCOMES
                                .iter()
                                .map(|o| vec.with_label_values(&[p.label(), o]))
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default(),
            reason_children: (0..Reason::ALL.len() * CREDENTIALS.len())
                .map(|_| OnceLock::new())
                .collect(),
            reasons,
            lookups: lookups
                .map(|vec| {
                    SOURCES
                        .iter()
                        .map(|s| vec.with_label_values(&[s]))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Counts one answer: `outcome` is `allow`, `unauthenticated`, `forbidden`,
    /// `network_denied`, `step_up`, `misconfigured` or `unavailable`.
    pub fn decision(&self, proxy: Proxy, outcome: &'static str) {
        let p = PROXIES.iter().position(|x| *x == proxy);
        if let Some(p) = p
            && let Some(o) = OUTCOMES.iter().position(|x| *x == outcome)
            && let Some(c) = self.decisions.get(p).and_then(|row| row.get(o))
        {
            c.inc();
        }
    }

    /// Counts one decision by its reason and the credential presented (one of
    /// [`CREDENTIALS`]).
    pub fn reason(&self, reason: Reason, credential: &'static str) {
        let Some(family) = &self.reasons else { return };
        let (kind, label) = CREDENTIALS
            .iter()
            .enumerate()
            .find(|(_, c)| **c == credential)
            .map_or((0, "none"), |(i, c)| (i, *c));
        // `Reason::ALL` lists the variants in declaration order: the discriminant is the index.
        let slot = (reason as usize) * CREDENTIALS.len() + kind;
        if let Some(child) = self.reason_children.get(slot) {
            child
                .get_or_init(|| family.with_label_values(&[reason.as_str(), label]))
                .inc();
        }
    }

    /// Counts one misconfiguration log line left out.
    pub fn misconfiguration_log_suppressed(&self) {
        if let Some(c) = &self.misconfig_logs_suppressed {
            c.inc();
        }
    }

    /// Counts one identity lookup: `cache`, `resolver`, or `outage` (the resolver could not
    /// answer and an identity proven before did).
    pub fn lookup(&self, source: &'static str) {
        if let Some(i) = SOURCES.iter().position(|x| *x == source)
            && let Some(c) = self.lookups.get(i)
        {
            c.inc();
        }
    }
}

/// A counter family registered in `registry`; `None` (logged) when that fails, and then
/// the counts are not kept: metrics never stop a check.
fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
    let registered = IntCounterVec::new(Opts::new(name, help), labels)
        .and_then(|c| registry.register(Box::new(c.clone())).map(|()| c));
    match registered {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(metric = name, error = %e, "forward-auth metric not registered");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn count(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
        crate::http_metrics::sample(registry, name, labels) as u64
    }

    #[test]
    fn counts_land_in_the_registry_passed_in() {
        let registry = Registry::new();
        let metrics = ForwardAuthMetrics::new(&registry);
        metrics.decision(Proxy::Envoy, "allow");
        metrics.decision(Proxy::Envoy, "allow");
        metrics.decision(Proxy::Nginx, "step_up");
        metrics.lookup("cache");
        metrics.reason(Reason::MissingRole, "api_key");
        metrics.reason(Reason::MissingRole, "api_key");
        metrics.reason(Reason::NoCredentials, "none");
        let reasons = "keygate_forward_auth_decision_reasons_total";
        let missing_role = [("reason", "missing_role"), ("credential", "api_key")];
        assert_eq!(count(&registry, reasons, &missing_role), 2);
        assert_eq!(
            count(&registry, reasons, &[("reason", "no_credentials")]),
            1
        );
        // Pairs that never happened are not exported.
        let families = registry.gather();
        let family = families.iter().find(|f| f.name() == reasons).unwrap();
        assert_eq!(family.get_metric().len(), 2);
        let decisions = "keygate_forward_auth_decisions_total";
        assert_eq!(
            count(
                &registry,
                decisions,
                &[("proxy", "envoy"), ("outcome", "allow")]
            ),
            2
        );
        assert_eq!(
            count(
                &registry,
                decisions,
                &[("proxy", "nginx"), ("outcome", "step_up")]
            ),
            1
        );
        assert_eq!(
            count(
                &registry,
                "keygate_forward_auth_identity_lookups_total",
                &[("source", "cache")]
            ),
            1
        );
        // Another registry (another gateway or test in this process) counts on its own.
        let other = Registry::new();
        let _second = ForwardAuthMetrics::new(&other);
        assert_eq!(count(&other, decisions, &[("outcome", "allow")]), 0);
    }

    #[test]
    fn a_registry_that_already_holds_the_counters_does_not_stop_checks() {
        let registry = Registry::new();
        let _first = ForwardAuthMetrics::new(&registry);
        let second = ForwardAuthMetrics::new(&registry);
        second.decision(Proxy::Direct, "allow");
        second.lookup("resolver");
    }
}
