//! The identity service's Prometheus metrics: sign-ins by outcome, lockouts, tokens issued
//! by grant, refresh-token reuse, and gauges sampled when `/metrics` is scraped (the
//! database pool, Redis, revocations heard on the channel). Labels are short fixed words,
//! never a tenant, an email or an error text, so the number of series is bounded. They live
//! in the registry the service is built with ([`super::IdentityDeps::registry`]), not a
//! process-global one, so each gateway (and each test) counts on its own.

use super::IdentityError;
use keygate_core::ephemeral::Ephemeral;
use keygate_core::store::Store;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::time::Duration;

/// Sign-in outcomes, in the order of [`IdentityMetrics::sign_ins`].
const OUTCOMES: [&str; 6] = ["ok", "failed", "locked", "rate_limited", "refused", "error"];
/// How long a scrape waits for Redis to answer PING before reporting it down.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A grant that issued tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Grant {
    /// Email and password (`/login`, the sign-in page).
    Password,
    /// A refresh token rotated (`grant_type=refresh_token`).
    RefreshToken,
    /// An authorization code redeemed (`grant_type=authorization_code`).
    AuthorizationCode,
    /// A client for itself (`grant_type=client_credentials`).
    ClientCredentials,
    /// A device code redeemed (RFC 8628).
    DeviceCode,
}

impl Grant {
    /// The `grant` label.
    const ALL: [(Self, &'static str); 5] = [
        (Self::Password, "password"),
        (Self::RefreshToken, "refresh_token"),
        (Self::AuthorizationCode, "authorization_code"),
        (Self::ClientCredentials, "client_credentials"),
        (Self::DeviceCode, "device_code"),
    ];

    /// The `grant` label (also the audit events' `grant`).
    pub(super) fn label(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(g, _)| *g == self)
            .map_or("unknown", |(_, l)| l)
    }
}

/// The service's metric children, each resolved once so counting is one atomic add; `None`
/// (logged) if they could not be made, and then nothing is counted: metrics never stop a
/// sign-in.
#[derive(Debug)]
pub(super) struct IdentityMetrics(Option<Families>);

#[derive(Debug)]
struct Families {
    sign_ins: Vec<IntCounter>,
    lockouts: IntCounter,
    /// Tokens issued, one child per [`Grant::ALL`] entry, in its order.
    tokens: Vec<(Grant, IntCounter)>,
    refresh_reuse: IntCounter,
    redis_up: IntGauge,
    pool_open: IntGauge,
    pool_idle: IntGauge,
    pool_max: IntGauge,
    revocations_received: IntCounter,
}

impl IdentityMetrics {
    /// The metrics, registered in `registry`. A registry that already holds these names
    /// (two services over one registry) keeps its own, and this service's counts are not
    /// exported.
    pub(super) fn new(registry: &Registry) -> Self {
        match Families::new(registry) {
            Ok(f) => Self(Some(f)),
            Err(e) => {
                tracing::warn!(error = %e, "identity metrics not created");
                Self(None)
            }
        }
    }

    /// Counts one password sign-in by how it ended.
    pub(super) fn sign_in<T>(&self, result: &Result<T, IdentityError>) {
        let outcome = match result {
            Ok(_) => 0,
            Err(IdentityError::InvalidCredentials) => 1,
            Err(IdentityError::AccountLocked { .. }) => 2,
            Err(IdentityError::RateLimited { .. }) => 3,
            Err(
                IdentityError::Unavailable(_)
                | IdentityError::Store(_)
                | IdentityError::Crypto(_)
                | IdentityError::Busy { .. }
                | IdentityError::Internal(_),
            ) => 5,
            Err(_) => 4,
        };
        if let Some(c) = self.0.as_ref().and_then(|f| f.sign_ins.get(outcome)) {
            c.inc();
        }
    }

    /// Counts an account locked by the lockout schedule.
    pub(super) fn lockout(&self) {
        if let Some(f) = &self.0 {
            f.lockouts.inc();
        }
    }

    /// Counts a token set issued by `grant`.
    pub(super) fn issued(&self, grant: Grant) {
        if let Some(f) = &self.0
            && let Some((_, c)) = f.tokens.iter().find(|(g, _)| *g == grant)
        {
            c.inc();
        }
    }

    /// Counts a refresh token presented again after rotation (the family was revoked).
    pub(super) fn refresh_reuse(&self) {
        if let Some(f) = &self.0 {
            f.refresh_reuse.inc();
        }
    }

    /// Sets the gauges read at scrape time: the pool's occupancy, whether Redis answers,
    /// and the revocations heard on the channel so far.
    pub(super) async fn sample(&self, store: &dyn Store, ephemeral: &dyn Ephemeral) {
        let Some(f) = &self.0 else { return };
        let pool = store.pool_stats();
        f.pool_open.set(i64::from(pool.size));
        f.pool_idle.set(i64::from(pool.idle));
        f.pool_max.set(i64::from(pool.max));
        let up = matches!(
            tokio::time::timeout(PING_TIMEOUT, ephemeral.ping()).await,
            Ok(Ok(()))
        );
        f.redis_up.set(i64::from(up));
        let pushed = ephemeral.revocations().pushed();
        let seen = f.revocations_received.get();
        if pushed > seen {
            f.revocations_received.inc_by(pushed - seen);
        }
    }
}

impl Families {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let sign_ins = IntCounterVec::new(
            Opts::new(
                "keygate_sign_ins_total",
                "Password sign-ins by outcome (ok, failed, locked, rate_limited, refused, error)",
            ),
            &["outcome"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "keygate_tokens_issued_total",
                "Token sets issued, by grant (password, refresh_token, authorization_code, client_credentials, device_code)",
            ),
            &["grant"],
        )?;
        register(registry, sign_ins.clone());
        register(registry, tokens.clone());
        Ok(Self {
            sign_ins: OUTCOMES
                .iter()
                .map(|o| sign_ins.with_label_values(&[o]))
                .collect(),
            tokens: Grant::ALL
                .iter()
                .map(|(g, label)| (*g, tokens.with_label_values(&[label])))
                .collect(),
            lockouts: counter(
                registry,
                "keygate_account_lockouts_total",
                "Accounts locked by the progressive lockout (5, 10, 15 failures)",
            )?,
            refresh_reuse: counter(
                registry,
                "keygate_refresh_token_reuse_total",
                "Rotated refresh tokens presented again: each revoked its whole session",
            )?,
            revocations_received: counter(
                registry,
                "keygate_revocations_received_total",
                "Revocation messages this replica received on the Redis channel (its own included)",
            )?,
            redis_up: gauge(
                registry,
                "keygate_redis_up",
                "1 when Redis (without KEYGATE_REDIS_URL: the in-process stand-in) answered PING at this scrape",
            )?,
            pool_open: gauge(
                registry,
                "keygate_db_pool_connections",
                "Database connections open in this replica's pool (in use or idle)",
            )?,
            pool_idle: gauge(
                registry,
                "keygate_db_pool_idle_connections",
                "Open database connections not in use",
            )?,
            pool_max: gauge(
                registry,
                "keygate_db_pool_max_connections",
                "Most connections this replica's pool opens",
            )?,
        })
    }
}

/// Adds `collector` to `registry`, logging (not failing) when it is there already.
fn register<C: prometheus::core::Collector + 'static>(registry: &Registry, collector: C) {
    if let Err(e) = registry.register(Box::new(collector)) {
        tracing::warn!(error = %e, "identity metric not registered");
    }
}

/// A counter without labels, registered in `registry`.
fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    register(registry, c.clone());
    Ok(c)
}

/// A gauge without labels, registered in `registry`.
fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    register(registry, g.clone());
    Ok(g)
}
