//! What the identity service is built from ([`IdentityDeps`]): production defaults, the
//! configuration `keygate gateway` runs with, and the per-address budgets ([`RateLimits`]).

use super::{BreachedList, IdentityError, Mailer, NoMailer, SmtpMailer};
use keygate_core::clock::Clock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, HashPool, PasswordHasher};
use keygate_core::ephemeral::Ephemeral;
use keygate_core::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// What the identity service is built from.
#[derive(Clone, Debug)]
pub struct IdentityDeps {
    /// The system of record.
    pub store: Arc<dyn Store>,
    /// Unseals signing keys; seals refresh grace entries.
    pub master_keys: MasterKeys,
    /// Source of "now" (a `ManualClock` in tests).
    pub clock: Arc<dyn Clock>,
    /// Rate windows, revocations pushed to every replica.
    pub ephemeral: Arc<dyn Ephemeral>,
    /// argon2id on a fixed pool of hashing threads behind a bounded queue.
    pub hasher: PasswordHasher,
    /// Verification, reset, invite and alert emails ([`NoMailer`] when none can be sent).
    pub mailer: Arc<dyn Mailer>,
    /// Base URL without trailing slash (issuers, links in emails).
    pub public_url: String,
    /// The breached-password list.
    pub breached: BreachedList,
    /// Per-address limits.
    pub limits: RateLimits,
    /// Where the service's metrics are registered; the gateway's `/metrics` serves it.
    pub registry: prometheus::Registry,
}

impl IdentityDeps {
    /// Production defaults around the given store: in-process ephemeral state, OWASP
    /// argon2id parameters on one hashing thread per core, no mail transport.
    pub fn new(
        store: Arc<dyn Store>,
        master_keys: MasterKeys,
        public_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IdentityError> {
        let hasher = PasswordHasher::with_pool(HashParams::default(), HashPool::per_core())?;
        Ok(Self::with_hasher(
            store,
            master_keys,
            public_url,
            clock,
            hasher,
        ))
    }

    /// The defaults of [`Self::new`] around a hasher already made (starting a pool only to
    /// replace it would cost a hash and a memory block).
    fn with_hasher(
        store: Arc<dyn Store>,
        master_keys: MasterKeys,
        public_url: &str,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
    ) -> Self {
        Self {
            store,
            master_keys,
            clock,
            ephemeral: Arc::new(keygate_core::ephemeral::MemoryEphemeral::new()),
            hasher,
            mailer: Arc::new(NoMailer),
            public_url: public_url.trim_end_matches('/').to_owned(),
            breached: BreachedList::default(),
            limits: RateLimits::default(),
            registry: prometheus::Registry::new(),
        }
    }
}

impl IdentityDeps {
    /// What `keygate gateway` runs with: Redis when `redis_url` is set (shared by every
    /// replica; otherwise in-process), the configured argon2id parameters, SMTP when
    /// `smtp` is set (otherwise no mail transport: mail-dependent flows answer 503), and the breached-password list of
    /// `breached_passwords_file` when set (otherwise the shipped one).
    pub async fn from_config(
        store: Arc<dyn Store>,
        master_keys: MasterKeys,
        config: &keygate_core::config::GatewayConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IdentityError> {
        let hasher = PasswordHasher::with_pool(config.password_hashing, config.hash_pool)?;
        let mut deps = Self::with_hasher(store, master_keys, &config.public_url, clock, hasher);
        if let Some(url) = &config.redis_url {
            deps.ephemeral = Arc::new(
                keygate_core::ephemeral::RedisEphemeral::connect(url.expose(), "kg:").await?,
            );
        }
        if let Some(smtp) = &config.smtp {
            deps.mailer = Arc::new(
                SmtpMailer::new(smtp.url.expose(), &smtp.from)
                    .map_err(|e| IdentityError::InvalidRequest(e.to_string()))?,
            );
        }
        if let Some(path) = &config.breached_passwords_file {
            deps.breached = BreachedList::from_file(path).map_err(|e| {
                IdentityError::InvalidRequest(format!(
                    "KEYGATE_BREACHED_PASSWORDS_FILE {}: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(deps)
    }
}

/// Per-IP (and per-email) request budgets, each per fixed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Sign-in attempts per address per window.
    pub sign_in_per_ip: u64,
    /// Reset requests per address per window.
    pub reset_per_ip: u64,
    /// Verification resends (and sign-ups) per address per window.
    pub resend_per_ip: u64,
    /// Emails of one kind sent to one recipient per window (and reset or resend requests
    /// per address).
    pub emails_per_address: u64,
    /// `/authorize` and `/oauth2/token` requests per address per window.
    pub oauth_per_ip: u64,
    /// `/authorize` and `/oauth2/token` requests per client per window.
    pub oauth_per_client: u64,
    /// The window.
    pub window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            sign_in_per_ip: 30,
            reset_per_ip: 10,
            resend_per_ip: 10,
            emails_per_address: 3,
            oauth_per_ip: 600,
            oauth_per_client: 1200,
            window: Duration::from_secs(60),
        }
    }
}
