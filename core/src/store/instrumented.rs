//! [`InstrumentedStore`]: any [`Store`] with every call timed, traced and counted in one
//! place, so operators see query latency and database failures by operation without each
//! SQL body measuring itself.
//!
//! Labels are the trait methods' names (a fixed set of about a hundred words), never a
//! tenant or a query text. A label's series are made the first time that operation runs,
//! so a gateway exports only the operations it uses; after that a call costs two clock
//! reads, one histogram observation and two atomic loads of the pool's occupancy.

use super::client_traits::*;
use super::model::*;
use super::traits::*;
use super::{Backend, PoolStats, Store, StoreError, Swept};
use crate::ids::{
    ApiKeyId, ClientSecretId, FactorId, IdpId, OAuthClientId, RoleId, SessionId, TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tracing::Instrument as _;

/// Latency buckets (seconds): a primary-key read takes well under a millisecond on a
/// healthy database; past a second something waits (locks, a full pool).
const BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// The store calls' metric families, registered once per registry.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    waits: IntCounter,
}

impl StoreMetrics {
    /// The families, registered in `registry`; `None` (logged) when they cannot be, and then
    /// calls are traced but not counted: metrics never stop a query.
    pub fn register(registry: &prometheus::Registry) -> Option<Self> {
        match Self::new(registry) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "store metrics not registered");
                None
            }
        }
    }

    fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "keygate_store_call_duration_seconds",
                    "Time one store call took (waiting for a connection included), by operation",
                )
                .buckets(BUCKETS.to_vec()),
                &["operation"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "keygate_store_errors_total",
                    "Store calls that failed in the database or could not get a connection, by operation",
                ),
                &["operation"],
            )?,
            waits: IntCounter::new(
                "keygate_db_pool_waits_total",
                "Store calls that found every connection of a full pool in use, so waited for one",
            )?,
        };
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.waits.clone()))?;
        Ok(metrics)
    }
}

/// One operation's series, made on its first call.
#[derive(Debug)]
struct OpSeries {
    duration: Histogram,
    errors: IntCounter,
}

/// A store that times, traces and counts every call of the store it wraps.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Option<StoreMetrics>,
    series: Vec<OnceLock<OpSeries>>,
}

impl InstrumentedStore {
    /// `inner`, counted in `metrics` (`None`: traced only).
    pub fn new(inner: Arc<dyn Store>, metrics: Option<StoreMetrics>) -> Self {
        Self {
            inner,
            metrics,
            series: OPS.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    /// Runs `call`, operation `op`, inside a `store` span, and counts it.
    async fn timed<T>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let name = OPS.get(op as usize).copied().unwrap_or("other");
        let Some(metrics) = &self.metrics else {
            return call
                .instrument(tracing::debug_span!("store", op = name))
                .await;
        };
        let pool = self.inner.pool_stats();
        if pool.idle == 0 && pool.size >= pool.max {
            metrics.waits.inc();
        }
        let started = Instant::now();
        let result = call
            .instrument(tracing::debug_span!("store", op = name))
            .await;
        if let Some(slot) = self.series.get(op as usize) {
            let series = slot.get_or_init(|| OpSeries {
                duration: metrics.duration.with_label_values(&[name]),
                errors: metrics.errors.with_label_values(&[name]),
            });
            series.duration.observe(started.elapsed().as_secs_f64());
            if matches!(result, Err(StoreError::Database(_))) {
                series.errors.inc();
            }
        }
        result
    }
}

/// Implements each capability trait by forwarding to the inner store through
/// [`InstrumentedStore::timed`], and lists the operations (`Op`, `OPS`) in one place.
macro_rules! instrument {
    ($( $cap:ident { $( $op:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )* } )*) => {
        /// A store operation: a trait method's name.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        enum Op { $($($op,)*)* sweep_expired, ping, migrate }

        /// The `operation` label of each [`Op`], in declaration order.
        const OPS: &[&str] = &[$($(stringify!($op),)*)* "sweep_expired", "ping", "migrate"];

        $(
            #[async_trait]
            impl $cap for InstrumentedStore {
                $(
                    async fn $op(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                        self.timed(Op::$op, self.inner.$op($($arg),*)).await
                    }
                )*
            }
        )*
    };
}

instrument! {
    TenantStore {
        upsert_tenant(t: &TenantUpsert) -> Tenant;
        tenant(id: TenantId) -> Option<Tenant>;
        tenant_by_name(name: &str) -> Option<Tenant>;
        list_tenants() -> Vec<Tenant>;
        set_tenant_disabled(id: TenantId, disabled: bool) -> ();
        set_tenant_owner(id: TenantId, owner_uid: &str) -> ();
        delete_tenant(id: TenantId) -> bool;
    }
    UserStore {
        insert_user(u: &NewUser) -> User;
        user(tenant: TenantId, id: UserId) -> Option<User>;
        user_by_email(tenant: TenantId, email: &str) -> Option<User>;
        list_users(tenant: TenantId, after: Option<UserId>, limit: u32) -> Vec<User>;
        update_user(tenant: TenantId, id: UserId, patch: &UserPatch) -> User;
        erase_user(tenant: TenantId, id: UserId) -> bool;
    }
    CredentialStore {
        set_password(tenant: TenantId, user: UserId, hash: Option<&str>, keep_history: u32, must_change_password: bool) -> ();
        password_history(tenant: TenantId, user: UserId, limit: u32) -> Vec<String>;
    }
    IdentityLinkStore {
        link_identity(link: &NewExternalIdentity) -> ExternalIdentity;
        identity_by_subject(tenant: TenantId, idp: IdpId, subject: &str) -> Option<ExternalIdentity>;
        identities_of_user(tenant: TenantId, user: UserId) -> Vec<ExternalIdentity>;
        touch_identity(tenant: TenantId, id: uuid::Uuid, now: DateTime<Utc>, groups: &[String]) -> bool;
        idp_groups_of_user(tenant: TenantId, user: UserId) -> Vec<(String, String)>;
        unlink_identity(tenant: TenantId, user: UserId, idp: IdpId) -> bool;
    }
    IdpStore {
        upsert_idp(idp: &IdpUpsert) -> IdentityProvider;
        idp(tenant: TenantId, id: IdpId) -> Option<IdentityProvider>;
        idp_by_name(tenant: TenantId, name: &str) -> Option<IdentityProvider>;
        list_idps(tenant: TenantId) -> Vec<IdentityProvider>;
        delete_idp(tenant: TenantId, id: IdpId) -> bool;
    }
    RoleStore {
        upsert_role(role: &RoleUpsert) -> Role;
        role(tenant: TenantId, id: RoleId) -> Option<Role>;
        role_by_name(tenant: TenantId, name: &str) -> Option<Role>;
        list_roles(tenant: TenantId) -> Vec<Role>;
        delete_role(tenant: TenantId, id: RoleId) -> bool;
        roles_for_subject(tenant: TenantId, facts: &SubjectFacts) -> Vec<RoleGrant>;
        roles_by_names(tenant: TenantId, names: &[String]) -> Vec<RoleGrant>;
    }
    ApiKeyStore {
        insert_api_key(key: &NewApiKey) -> ApiKeyRecord;
        api_key_by_prefix(tenant: TenantId, prefix: &str) -> Option<ApiKeyRecord>;
        api_key(tenant: TenantId, id: ApiKeyId) -> Option<ApiKeyRecord>;
        api_keys_of_owner(tenant: TenantId, owner_uid: &str) -> Vec<ApiKeyRecord>;
        list_api_keys(tenant: TenantId) -> Vec<ApiKeyRecord>;
        list_api_keys_page(tenant: TenantId, after: Option<ApiKeyId>, limit: u32) -> Vec<ApiKeyRecord>;
        update_api_key_grants(tenant: TenantId, id: ApiKeyId, grants: &ApiKeyGrants) -> bool;
        supersede_api_key(tenant: TenantId, id: ApiKeyId, now: DateTime<Utc>, grace_until: DateTime<Utc>) -> bool;
        revoke_api_key(tenant: TenantId, id: ApiKeyId, now: DateTime<Utc>) -> bool;
        revoke_api_keys_of_owner(tenant: TenantId, owner_uid: &str, now: DateTime<Utc>) -> u64;
        touch_api_key(tenant: TenantId, id: ApiKeyId, now: DateTime<Utc>) -> bool;
    }
    OAuthClientStore {
        upsert_oauth_client(c: &OAuthClientUpsert) -> OAuthClient;
        oauth_client(tenant: TenantId, client_id: &str) -> Option<OAuthClient>;
        list_oauth_clients(tenant: TenantId) -> Vec<OAuthClient>;
        delete_oauth_client(tenant: TenantId, id: OAuthClientId) -> bool;
        insert_client_secret(s: &NewClientSecret) -> ClientSecretRecord;
        client_secrets(tenant: TenantId, client: OAuthClientId) -> Vec<ClientSecretRecord>;
        supersede_client_secret(tenant: TenantId, id: ClientSecretId, now: DateTime<Utc>, grace_until: DateTime<Utc>) -> bool;
        revoke_client_secret(tenant: TenantId, id: ClientSecretId, now: DateTime<Utc>) -> bool;
        revoke_client_sessions(tenant: TenantId, client_id: &str, now: DateTime<Utc>) -> Vec<SessionId>;
    }
    ConsentStore {
        consent(tenant: TenantId, user: UserId, client_id: &str) -> Option<Consent>;
        grant_consent(tenant: TenantId, user: UserId, client_id: &str, scopes: &[String], now: DateTime<Utc>) -> Consent;
        consents_of_user(tenant: TenantId, user: UserId) -> Vec<Consent>;
        revoke_consent(tenant: TenantId, user: UserId, client_id: &str, now: DateTime<Utc>) -> (bool, Vec<SessionId>);
    }
    SigningKeyStore {
        insert_signing_key(k: &SigningKeyRecord) -> ();
        signing_keys(tenant: TenantId) -> Vec<SigningKeyRecord>;
        set_signing_key_retires_at(tenant: TenantId, kid: &str, retires_at: DateTime<Utc>) -> ();
        delete_retired_signing_keys(now: DateTime<Utc>) -> u64;
        reseal_signing_key(tenant: TenantId, kid: &str, previous: &[u8], sealed: &[u8]) -> bool;
    }
    SessionStore {
        insert_session(s: &NewSession) -> Session;
        open_session(id: SessionId, s: &NewSession, refresh_hash: &[u8], refresh_expires_at: DateTime<Utc>, audit: Option<&NewAuditEvent>) -> Session;
        session(tenant: TenantId, id: SessionId) -> Option<Session>;
        session_by_token_hash(tenant: TenantId, token_hash: &[u8]) -> Option<Session>;
        active_sessions_of_user(tenant: TenantId, user: UserId, now: DateTime<Utc>) -> Vec<Session>;
        touch_session(tenant: TenantId, id: SessionId, now: DateTime<Utc>, idle_expires_at: DateTime<Utc>) -> bool;
        raise_session_authentication(tenant: TenantId, id: SessionId, amr: &[String], acr: Option<&str>, auth_time: DateTime<Utc>) -> bool;
        revoke_session(tenant: TenantId, id: SessionId, now: DateTime<Utc>) -> bool;
        revoke_user_sessions(tenant: TenantId, user: UserId, now: DateTime<Utc>) -> u64;
        revoked_sessions_since(since: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(TenantId, SessionId, DateTime<Utc>)>;
        delete_expired_sessions(now: DateTime<Utc>) -> u64;
    }
    RefreshTokenStore {
        insert_refresh_token(t: &NewRefreshToken) -> RefreshTokenRecord;
        refresh_token(tenant: TenantId, hash: &[u8]) -> Option<RefreshTokenRecord>;
        rotate_refresh_token(tenant: TenantId, presented: &[u8], client: Option<&str>, next_hash: &[u8], next_expires_at: DateTime<Utc>, now: DateTime<Utc>) -> RotateOutcome;
    }
    MfaStore {
        insert_factor(f: &NewFactor) -> Factor;
        factor(tenant: TenantId, id: FactorId) -> Option<Factor>;
        factors_of_user(tenant: TenantId, user: UserId) -> Vec<Factor>;
        factors_page(tenant: TenantId, after: Option<FactorId>, limit: u32) -> Vec<Factor>;
        reseal_factor_secret(tenant: TenantId, id: FactorId, previous: &[u8], sealed: &[u8]) -> bool;
        confirm_factor(tenant: TenantId, id: FactorId) -> bool;
        update_factor_secret(tenant: TenantId, id: FactorId, secret: &[u8]) -> bool;
        record_factor_use(tenant: TenantId, id: FactorId, previous: &[u8], secret: &[u8], now: DateTime<Utc>) -> bool;
        rename_factor(tenant: TenantId, id: FactorId, label: &str) -> bool;
        delete_factor(tenant: TenantId, id: FactorId) -> bool;
        advance_totp_step(tenant: TenantId, id: FactorId, step: i64, now: DateTime<Utc>) -> bool;
        replace_backup_codes(tenant: TenantId, user: UserId, hashes: &[Vec<u8>]) -> ();
        use_backup_code(tenant: TenantId, user: UserId, hash: &[u8], now: DateTime<Utc>) -> bool;
        remaining_backup_codes(tenant: TenantId, user: UserId) -> i64;
    }
    OneTimeTokenStore {
        insert_one_time_token(t: &NewOneTimeToken) -> OneTimeToken;
        consume_one_time_token(tenant: TenantId, purpose: TokenPurpose, hash: &[u8], now: DateTime<Utc>) -> Option<OneTimeToken>;
        invalidate_one_time_tokens(tenant: TenantId, user: UserId, purpose: TokenPurpose, now: DateTime<Utc>) -> u64;
        delete_expired_one_time_tokens(now: DateTime<Utc>) -> u64;
    }
    LockoutStore {
        lockout(tenant: TenantId, user: UserId) -> Option<LockoutState>;
        record_failure(tenant: TenantId, user: UserId, now: DateTime<Utc>) -> LockoutState;
        lock_until(tenant: TenantId, user: UserId, until: DateTime<Utc>) -> bool;
        reset_lockout(tenant: TenantId, user: UserId) -> ();
    }
    AuditLog {
        append_audit(e: &NewAuditEvent) -> AuditEvent;
        query_audit(tenant: TenantId, filter: &AuditFilter, limit: u32) -> Vec<AuditEvent>;
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.timed(Op::migrate, self.inner.migrate()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(Op::ping, self.inner.ping()).await
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> Result<Option<Swept>, StoreError> {
        self.timed(Op::sweep_expired, self.inner.sweep_expired(now))
            .await
    }

    fn pool_stats(&self) -> PoolStats {
        self.inner.pool_stats()
    }
}
