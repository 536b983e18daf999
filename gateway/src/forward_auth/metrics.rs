//! Prometheus counters of forward-auth decisions, with short fixed labels only (no tenant or
//! requirement text, so cardinality stays bounded).

use prometheus::{IntCounterVec, Opts};
use std::sync::LazyLock;

/// Decisions by proxy convention and outcome.
static DECISIONS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let counter = IntCounterVec::new(
        Opts::new(
            "keygate_forward_auth_decisions_total",
            "Forward-auth answers by proxy and outcome",
        ),
        &["proxy", "outcome"],
    )
    .ok()?;
    prometheus::register(Box::new(counter.clone())).ok()?;
    Some(counter)
});

/// Identity lookups answered from the verified-identity cache or by the resolver.
static LOOKUPS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let counter = IntCounterVec::new(
        Opts::new(
            "keygate_forward_auth_identity_lookups_total",
            "Forward-auth identity lookups by source",
        ),
        &["source"],
    )
    .ok()?;
    prometheus::register(Box::new(counter.clone())).ok()?;
    Some(counter)
});

/// Counts one answer: `outcome` is `allow`, `unauthenticated`, `forbidden`, `step_up`,
/// `misconfigured` or `unavailable`.
pub fn decision(proxy: super::request::Proxy, outcome: &'static str) {
    let proxy = match proxy {
        super::request::Proxy::Nginx => "nginx",
        super::request::Proxy::Traefik => "traefik",
        super::request::Proxy::Envoy => "envoy",
        super::request::Proxy::Direct => "direct",
    };
    if let Some(c) = DECISIONS.as_ref() {
        c.with_label_values(&[proxy, outcome]).inc();
    }
}

/// Counts one identity lookup: `cache` or `resolver`.
pub fn lookup(source: &'static str) {
    if let Some(c) = LOOKUPS.as_ref() {
        c.with_label_values(&[source]).inc();
    }
}
