//! Prometheus counters of forward-auth decisions, with short fixed labels only (no tenant or
//! requirement text, so cardinality stays bounded).

use prometheus::{IntCounter, IntCounterVec, Opts};
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

const PROXIES: [&str; 4] = ["nginx", "traefik", "envoy", "direct"];
const OUTCOMES: [&str; 6] = [
    "allow",
    "unauthenticated",
    "forbidden",
    "step_up",
    "misconfigured",
    "unavailable",
];
const SOURCES: [&str; 2] = ["cache", "resolver"];

/// Every (proxy, outcome) child resolved once, so the hot path only increments.
static DECISION_CHILDREN: LazyLock<Option<Vec<Vec<IntCounter>>>> = LazyLock::new(|| {
    let vec = DECISIONS.as_ref()?;
    Some(
        PROXIES
            .iter()
            .map(|p| {
                OUTCOMES
                    .iter()
                    .map(|o| vec.with_label_values(&[p, o]))
                    .collect()
            })
            .collect(),
    )
});

static LOOKUP_CHILDREN: LazyLock<Option<Vec<IntCounter>>> = LazyLock::new(|| {
    let vec = LOOKUPS.as_ref()?;
    Some(
        SOURCES
            .iter()
            .map(|s| vec.with_label_values(&[s]))
            .collect(),
    )
});

/// Counts one answer: `outcome` is `allow`, `unauthenticated`, `forbidden`, `step_up`,
/// `misconfigured` or `unavailable`.
pub fn decision(proxy: super::request::Proxy, outcome: &'static str) {
    let p = match proxy {
        super::request::Proxy::Nginx => 0,
        super::request::Proxy::Traefik => 1,
        super::request::Proxy::Envoy => 2,
        super::request::Proxy::Direct => 3,
    };
    if let (Some(children), Some(o)) = (
        DECISION_CHILDREN.as_ref(),
        OUTCOMES.iter().position(|x| *x == outcome),
    ) && let Some(c) = children.get(p).and_then(|row| row.get(o))
    {
        c.inc();
    }
}

/// Counts one identity lookup: `cache` or `resolver`.
pub fn lookup(source: &'static str) {
    if let (Some(children), Some(i)) = (
        LOOKUP_CHILDREN.as_ref(),
        SOURCES.iter().position(|x| *x == source),
    ) && let Some(c) = children.get(i)
    {
        c.inc();
    }
}
