//! What keeps forward-auth off the identity service on the hot path: identities already
//! proven (keyed by the SHA-256 of the credential, good until the credential expires or a
//! short re-check interval passes, always checked against the replica-local revocation set
//! by the caller) and the upstream JWTs minted for them.

use super::requirements::{Requirements, RequirementsError};
use crate::identity::{Identity, UpstreamGrant};
use axum::http::{HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// How long an identity served through an outage is reused before the identity service is
/// asked again.
const OUTAGE_RETRY: chrono::Duration = chrono::Duration::seconds(5);
/// Most identities kept per shard; past it expired entries are swept, then the shard is cleared.
const SHARD_CAP: usize = 16_384;

/// An identity proven by a resolver, with the identity headers of its 200 answer rendered
/// once when it is proven rather than on every request that reuses it.
#[derive(Debug)]
pub struct ProvenIdentity {
    /// The identity.
    pub identity: Identity,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ProvenIdentity {
    /// `identity` of tenant `tenant_name`, with its `X-Auth-Request-*` and `X-Keygate-*`
    /// headers (a value that cannot be a header value is left out rather than sent mangled).
    /// The email header carries verified addresses only (`Identity::email`);
    /// `X-Auth-Request-Email-Verified` says whether a person's address is verified.
    pub fn new(identity: Identity, tenant_name: &str) -> Self {
        let groups = identity.roles.join(",");
        let verified = identity
            .email_verified
            .map(|v| if v { "true" } else { "false" });
        let values = [
            ("x-auth-request-user", Some(identity.username.as_str())),
            ("x-auth-request-email", identity.email.as_deref()),
            ("x-auth-request-email-verified", verified),
            ("x-auth-request-groups", Some(groups.as_str())),
            ("x-keygate-tenant", Some(tenant_name)),
            ("x-keygate-subject", Some(identity.subject.as_str())),
        ];
        let headers = values
            .into_iter()
            .filter_map(|(name, value)| {
                let value = HeaderValue::from_str(value?).ok()?;
                Some((HeaderName::from_static(name), value))
            })
            .collect();
        Self { identity, headers }
    }

    /// The identity headers of an answer that lets the request through.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

/// A proven identity and until when it may be reused without asking the resolver again.
#[derive(Debug)]
pub struct CachedIdentity {
    /// The identity.
    pub identity: Arc<ProvenIdentity>,
    /// Reuse it only before then (never after the credential's own expiry).
    pub valid_until: DateTime<Utc>,
    /// The revocation-set epoch at which the identity was last found unrevoked.
    checked_epoch: AtomicU64,
    /// Past this it is not served even while the identity service cannot be asked (the
    /// first `valid_until` plus the outage limit).
    outage_limit: DateTime<Utc>,
}

/// What the revocation set says of a cached identity once its epoch moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Nothing about it changed: keep reusing it.
    Unchanged,
    /// One of its ids is revoked: refuse it.
    Revoked,
    /// Its credential changed (an API key rotated out, its grants edited): prove it again,
    /// so the new facts (a grace end, fewer permissions) apply at once.
    Changed,
}

/// What the cache knows of a credential.
#[derive(Debug)]
pub enum Lookup {
    /// Proven before and not revoked since.
    Hit(Arc<ProvenIdentity>),
    /// Proven before, but one of its ids has been revoked since (the entry is dropped).
    Revoked,
    /// Not held (or expired): ask the resolver.
    Miss,
}

/// Identities by credential hash, sharded so concurrent requests rarely contend.
#[derive(Debug)]
pub struct VerifiedCache {
    shards: Vec<RwLock<HashMap<[u8; 32], CachedIdentity>>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl VerifiedCache {
    fn shard(&self, key: &[u8; 32]) -> &RwLock<HashMap<[u8; 32], CachedIdentity>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The identity proven for `key`, if still valid at `now` and not revoked.
    ///
    /// `epoch` is the revocation set's epoch read before this call; `standing` is asked only
    /// when something was revoked (or changed) since the entry was last checked, so the
    /// common case takes no lock but the shard's read lock. A changed entry is dropped and
    /// reported as a miss.
    pub fn lookup(
        &self,
        key: &[u8; 32],
        now: DateTime<Utc>,
        epoch: u64,
        standing: impl Fn(&Identity) -> Standing,
    ) -> Lookup {
        let outcome = {
            let Ok(shard) = self.shard(key).read() else {
                return Lookup::Miss;
            };
            match shard.get(key).filter(|c| c.valid_until > now) {
                None => return Lookup::Miss,
                Some(c) if c.checked_epoch.load(Ordering::Acquire) == epoch => {
                    return Lookup::Hit(c.identity.clone());
                }
                Some(c) => match standing(&c.identity.identity) {
                    Standing::Revoked => Lookup::Revoked,
                    Standing::Changed => Lookup::Miss,
                    Standing::Unchanged => {
                        c.checked_epoch.store(epoch, Ordering::Release);
                        return Lookup::Hit(c.identity.clone());
                    }
                },
            }
        };
        self.remove(key);
        outcome
    }

    /// The identity proven for `key`, if still valid at `now` (revocations not consulted).
    pub fn get(&self, key: &[u8; 32], now: DateTime<Utc>) -> Option<Arc<ProvenIdentity>> {
        let shard = self.shard(key).read().ok()?;
        shard
            .get(key)
            .filter(|c| c.valid_until > now)
            .map(|c| c.identity.clone())
    }

    /// The identity proven for `key` before, though past its re-check, while its credential
    /// is unexpired at `now`, the entry is no older than the outage limit past its re-check,
    /// and `standing` finds it unchanged: what a check answers from while the store cannot
    /// be asked (revocations still apply; they reach this replica through Redis).
    /// It is then reused as a hit for [`OUTAGE_RETRY`] before the service is asked again, so
    /// an outage costs one wait per credential and interval, not one per request.
    pub fn last_known(
        &self,
        key: &[u8; 32],
        now: DateTime<Utc>,
        standing: impl Fn(&Identity) -> Standing,
    ) -> Option<Arc<ProvenIdentity>> {
        let mut shard = self.shard(key).write().ok()?;
        let c = shard.get_mut(key)?;
        let id = &c.identity.identity;
        if id.expires_at <= now || c.outage_limit <= now || standing(id) != Standing::Unchanged {
            return None;
        }
        c.valid_until = (now + OUTAGE_RETRY).min(c.outage_limit).min(id.expires_at);
        Some(c.identity.clone())
    }

    /// Remembers `identity` for `key` until `valid_until`; it was found unrevoked at `epoch`.
    pub fn insert(
        &self,
        key: [u8; 32],
        identity: Arc<ProvenIdentity>,
        valid_until: DateTime<Utc>,
        now: DateTime<Utc>,
        epoch: u64,
    ) {
        let Ok(mut shard) = self.shard(&key).write() else {
            return;
        };
        if shard.len() >= SHARD_CAP {
            shard.retain(|_, c| c.valid_until > now);
            if shard.len() >= SHARD_CAP {
                shard.clear();
            }
        }
        let limit = chrono::Duration::from_std(crate::identity::OUTAGE_STALE_LIMIT)
            .unwrap_or(chrono::Duration::zero());
        shard.insert(
            key,
            CachedIdentity {
                identity,
                valid_until,
                checked_epoch: AtomicU64::new(epoch),
                outage_limit: valid_until + limit,
            },
        );
    }

    /// Drops one entry (its credential turned out revoked).
    pub fn remove(&self, key: &[u8; 32]) {
        if let Ok(mut shard) = self.shard(key).write() {
            shard.remove(key);
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok().map(|s| s.len()))
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a minted upstream JWT (`jwt=1`) is handed out again for the same credential
/// and route; the tokens live 60 s (`identity::UPSTREAM_TOKEN_TTL`), so an upstream always
/// receives one with at least 30 s left (or the credential's own, shorter, remaining life).
const UPSTREAM_REUSE: chrono::Duration = chrono::Duration::seconds(30);
/// Most credentials with upstream tokens kept; past it the map is swept, then cleared.
const UPSTREAM_CAP: usize = 65_536;
/// Most upstream tokens kept per credential (one per host and demanded permissions); past
/// it the oldest goes.
const UPSTREAM_PER_CREDENTIAL: usize = 8;

/// Upstream JWTs by credential hash and route (audience and demanded permissions), so
/// `jwt=1` signs once per credential, route and half-minute rather than once per request.
/// Only reached after the credential passed its revocation check; a credential found
/// revoked or no longer valid loses every token minted for it at once ([`Self::remove`]),
/// so no token minted before a sign-out is handed out after it.
#[derive(Debug, Default)]
pub struct UpstreamTokens {
    tokens: RwLock<HashMap<[u8; 32], Vec<UpstreamToken>>>,
}

/// A minted upstream JWT, the route it was minted for and until when it is handed out again.
#[derive(Debug)]
struct UpstreamToken {
    grant: UpstreamGrant,
    token: Arc<str>,
    until: DateTime<Utc>,
}

impl UpstreamTokens {
    /// The token minted for `key` and `grant`, if it may still be handed out at `now`.
    pub fn get(
        &self,
        key: &[u8; 32],
        grant: &UpstreamGrant,
        now: DateTime<Utc>,
    ) -> Option<Arc<str>> {
        let tokens = self.tokens.read().ok()?;
        tokens
            .get(key)?
            .iter()
            .find(|t| t.until > now && t.grant == *grant)
            .map(|t| t.token.clone())
    }

    /// Remembers `token`, minted for `key` and `grant` at `now`.
    pub fn insert(&self, key: [u8; 32], grant: UpstreamGrant, token: Arc<str>, now: DateTime<Utc>) {
        let Ok(mut tokens) = self.tokens.write() else {
            return;
        };
        if tokens.len() >= UPSTREAM_CAP {
            tokens.retain(|_, minted| {
                minted.retain(|t| t.until > now);
                !minted.is_empty()
            });
            if tokens.len() >= UPSTREAM_CAP {
                tokens.clear();
            }
        }
        let minted = tokens.entry(key).or_default();
        minted.retain(|t| t.until > now && t.grant != grant);
        if minted.len() >= UPSTREAM_PER_CREDENTIAL {
            minted.remove(0);
        }
        minted.push(UpstreamToken {
            grant,
            token,
            until: now + UPSTREAM_REUSE,
        });
    }

    /// Forgets every token of `key` (its credential was revoked or no longer checks out).
    pub fn remove(&self, key: &[u8; 32]) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.remove(key);
        }
    }
}

/// Most distinct requirement texts remembered, parsed and misconfigured alike.
const REQUIREMENTS_MEMORY: usize = 1024;

/// Most misconfiguration lines written per [`MISCONFIG_LOG_WINDOW`]: any in-cluster caller
/// can send endless distinct bad texts, and each would otherwise be a new ERROR line.
const MISCONFIG_LOG_BUDGET: u32 = 10;

/// The window [`MISCONFIG_LOG_BUDGET`] applies to.
const MISCONFIG_LOG_WINDOW: Duration = Duration::from_secs(60);

/// Requirements parsed per distinct auth-URL text (the same few texts come with every
/// request), and which misconfigured texts were already logged.
#[derive(Debug, Default)]
pub struct RequirementsCache {
    parsed: RwLock<HashMap<String, Arc<Requirements>>>,
    misconfig_log: Mutex<MisconfigLog>,
}

/// What became of one misconfigured request's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MisconfigLogged {
    /// Written.
    Written,
    /// Not written: this text was logged before.
    Repeat,
    /// Not written: the window's budget is spent (counted in a metric instead).
    Suppressed,
}

#[derive(Debug, Default)]
struct MisconfigLog {
    seen: HashSet<String>,
    window_start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl RequirementsCache {
    /// `raw` parsed, remembered per distinct text.
    pub fn parse(&self, raw: &str) -> Result<Arc<Requirements>, RequirementsError> {
        if let Ok(parsed) = self.parsed.read()
            && let Some(r) = parsed.get(raw)
        {
            return Ok(r.clone());
        }
        let r = Arc::new(Requirements::parse(raw)?);
        if let Ok(mut parsed) = self.parsed.write() {
            if parsed.len() >= REQUIREMENTS_MEMORY {
                parsed.clear();
            }
            parsed.insert(raw.to_owned(), r.clone());
        }
        Ok(r)
    }

    /// Logs a misconfiguration loudly, once per distinct text and at most
    /// [`MISCONFIG_LOG_BUDGET`] lines per window; each line written says how many were left
    /// out since the one before.
    pub fn misconfigured(
        &self,
        raw: &str,
        error: &RequirementsError,
        now: Instant,
    ) -> MisconfigLogged {
        let Ok(mut log) = self.misconfig_log.lock() else {
            return MisconfigLogged::Suppressed;
        };
        if log.seen.contains(raw) {
            return MisconfigLogged::Repeat;
        }
        if log
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= MISCONFIG_LOG_WINDOW)
        {
            log.window_start = Some(now);
            log.written = 0;
        }
        if log.written >= MISCONFIG_LOG_BUDGET {
            log.suppressed += 1;
            return MisconfigLogged::Suppressed;
        }
        if log.seen.len() >= REQUIREMENTS_MEMORY {
            log.seen.clear();
        }
        log.seen.insert(raw.to_owned());
        log.written += 1;
        let not_logged_before = std::mem::take(&mut log.suppressed);
        drop(log);
        tracing::error!(
            requirements = %raw.chars().take(256).collect::<String>(),
            error = %error,
            not_logged_before,
            "forward-auth is misconfigured: every request with these requirements is denied (403) until the proxy's auth URL is fixed"
        );
        MisconfigLogged::Written
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::forward_auth::decision::tests::person;

    #[test]
    fn misconfigurations_are_logged_once_each_and_ten_a_minute() {
        let cache = RequirementsCache::default();
        let error = RequirementsError::BadValue {
            key: "tenant",
            value: "x".into(),
        };
        let start = Instant::now();
        let verdicts: Vec<MisconfigLogged> = (0..15)
            .map(|i| cache.misconfigured(&format!("tenant=t{i}"), &error, start))
            .collect();
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v == MisconfigLogged::Written)
                .count(),
            10
        );
        assert_eq!(verdicts[10..], [MisconfigLogged::Suppressed; 5]);
        assert_eq!(
            cache.misconfigured("tenant=t0", &error, start),
            MisconfigLogged::Repeat
        );
        // A suppressed text is logged once the next window opens.
        let later = start + MISCONFIG_LOG_WINDOW;
        assert_eq!(
            cache.misconfigured("tenant=t12", &error, later),
            MisconfigLogged::Written
        );
        assert_eq!(cache.misconfig_log.lock().unwrap().suppressed, 0);
    }

    #[test]
    fn entries_expire_and_can_be_removed() {
        let cache = VerifiedCache::default();
        let now = Utc::now();
        let key = [7u8; 32];
        cache.insert(
            key,
            Arc::new(ProvenIdentity::new(person(), "acme")),
            now + chrono::Duration::seconds(5),
            now,
            0,
        );
        assert!(cache.get(&key, now).is_some());
        assert!(
            cache
                .get(&key, now + chrono::Duration::seconds(6))
                .is_none()
        );
        cache.remove(&key);
        assert!(cache.get(&key, now).is_none());
    }

    #[test]
    fn revocations_are_consulted_only_after_the_epoch_moves_and_a_revoked_entry_is_dropped() {
        let cache = VerifiedCache::default();
        let now = Utc::now();
        let key = [9u8; 32];
        let until = now + chrono::Duration::seconds(5);
        cache.insert(
            key,
            Arc::new(ProvenIdentity::new(person(), "acme")),
            until,
            now,
            3,
        );
        let asked = std::cell::Cell::new(0);
        let never_revoked = |_: &Identity| {
            asked.set(asked.get() + 1);
            Standing::Unchanged
        };
        assert!(matches!(
            cache.lookup(&key, now, 3, never_revoked),
            Lookup::Hit(_)
        ));
        assert_eq!(asked.get(), 0, "same epoch: no revocation lookup");
        assert!(matches!(
            cache.lookup(&key, now, 4, never_revoked),
            Lookup::Hit(_)
        ));
        assert_eq!(asked.get(), 1, "new epoch: checked once");
        assert!(matches!(
            cache.lookup(&key, now, 4, never_revoked),
            Lookup::Hit(_)
        ));
        assert_eq!(
            asked.get(),
            1,
            "the entry remembers the epoch it was checked at"
        );
        assert!(matches!(
            cache.lookup(&key, now, 5, |_| Standing::Revoked),
            Lookup::Revoked
        ));
        assert!(matches!(
            cache.lookup(&key, now, 5, |_| Standing::Unchanged),
            Lookup::Miss
        ));
        assert!(matches!(
            cache.lookup(&[1u8; 32], now, 5, |_| Standing::Unchanged),
            Lookup::Miss
        ));
    }

    #[test]
    fn a_changed_credential_is_dropped_and_proven_again() {
        let cache = VerifiedCache::default();
        let now = Utc::now();
        let key = [7u8; 32];
        let until = now + chrono::Duration::seconds(30);
        cache.insert(
            key,
            Arc::new(ProvenIdentity::new(person(), "acme")),
            until,
            now,
            1,
        );
        assert!(matches!(
            cache.lookup(&key, now, 2, |_| Standing::Changed),
            Lookup::Miss
        ));
        assert!(
            cache.get(&key, now).is_none(),
            "the stale entry is gone, so the resolver is asked"
        );
    }

    #[test]
    fn upstream_tokens_are_reused_for_half_a_minute_per_route_then_minted_again() {
        let tokens = UpstreamTokens::default();
        let now = Utc::now();
        let key = [3u8; 32];
        let grant = |host: &str, perms: &[&str]| UpstreamGrant {
            audience: host.into(),
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
        };
        let a = grant("a.example.com", &[]);
        assert!(tokens.get(&key, &a, now).is_none());
        tokens.insert(key, a.clone(), Arc::from("jwt-a"), now);
        assert_eq!(
            tokens
                .get(&key, &a, now + chrono::Duration::seconds(29))
                .as_deref(),
            Some("jwt-a")
        );
        assert!(
            tokens
                .get(&key, &a, now + chrono::Duration::seconds(30))
                .is_none()
        );
        assert!(tokens.get(&[4u8; 32], &a, now).is_none(), "per credential");
        let b = grant("b.example.com", &[]);
        assert!(tokens.get(&key, &b, now).is_none(), "per host");
        let a_orders = grant("a.example.com", &["orders.read"]);
        assert!(
            tokens.get(&key, &a_orders, now).is_none(),
            "per demanded permissions"
        );
        tokens.insert(key, b.clone(), Arc::from("jwt-b"), now);
        assert_eq!(tokens.get(&key, &a, now).as_deref(), Some("jwt-a"));
        assert_eq!(tokens.get(&key, &b, now).as_deref(), Some("jwt-b"));
        for i in 0..UPSTREAM_PER_CREDENTIAL {
            tokens.insert(key, grant(&format!("h{i}"), &[]), Arc::from("x"), now);
        }
        assert!(tokens.get(&key, &a, now).is_none(), "the oldest went first");
        tokens.remove(&key);
        assert!(
            tokens.get(&key, &b, now).is_none(),
            "revoked: every route's token goes"
        );
    }

    #[test]
    fn a_full_shard_is_swept_not_grown() {
        let cache = VerifiedCache::default();
        let now = Utc::now();
        let id = Arc::new(ProvenIdentity::new(person(), "acme"));
        for i in 0..(SHARD_CAP as u32 + 10) {
            let mut key = [0u8; 32];
            key[1..5].copy_from_slice(&i.to_be_bytes());
            cache.insert(key, id.clone(), now + chrono::Duration::seconds(5), now, 0);
        }
        assert!(cache.len() <= SHARD_CAP);
    }
}
