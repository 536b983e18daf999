//! The identity service: the one door every route, forward-auth, the sign-in pages and the
//! OIDC endpoints go through to find tenants and signing keys, authenticate people and keys,
//! issue and refresh tokens, keep sessions, and run the account workflows (sign-up,
//! verification, reset, change, suspension, erasure).
//!
//! Its lower layers — persistence calls, the tenant and signing-key caches, password
//! hashing, token signing, the lockout schedule — are private modules of this one: adapters
//! cannot import them or reach the store, only call [`IdentityService`] methods and read
//! what they return. The seams adapters and their tests need — [`Authenticator`] for
//! forward-auth, [`AccountFlows`] for the pages — are traits defined here, so this module
//! imports none of its callers.
//!
//! ```text
//! routes / forward_auth / pages / oidc ──► IdentityService ──► tenants (cache) ─┐
//!                                            │  signin · refresh · sessions      ├─► Store (Postgres/SQLite)
//!                                            │  accounts · resolve · usage       ├─► Ephemeral (Redis: rate
//!                                            └► signer · tokens · password ······┘   windows, revocations,
//!                                                                                     hot sessions)
//! ```

mod accounts;
mod admin;
mod audit;
mod authenticator;
mod authorization;
mod challenge;
mod client_grant;
mod client_tokens;
mod clients;
mod consent;
mod deps;
mod device;
mod device_grant;
mod error;
mod federation;
mod flows;
mod handoff;
mod id_token;
mod janitor;
mod levels;
mod linked;
mod loading_cache;
mod lockout;
mod logout;
mod mail;
mod mailer;
mod metrics;
mod mfa;
mod password;
mod person_grant;
mod principal;
mod recovery;
mod refresh;
mod relying_party;
mod resolve;
mod revocation_sync;
mod scopes;
mod session_cookie;
mod sessions;
mod signer;
mod signin;
mod step_up;
mod subjects;
mod tenants;
mod tokens;
mod totp;
mod unlock;
mod upstream;
mod usage;
mod webauthn;

pub use authenticator::{AuthError, Authenticator, CredentialKind, Identity};
pub use authorization::{
    AUTHORIZATION_CODE_TTL, Authorization, AuthorizationError, AuthorizationRequest,
    AuthorizeRefusal, Prompt, SignInNeeded,
};
pub use challenge::{CHALLENGE_TTL, SecondFactorChallenge, SignInOutcome};
pub use clients::{AuthenticatedClient, ClientCredentials, RegisteredClient};
pub use consent::{CONSENT_TICKET_TTL, ConsentInfo, ConsentNeeded, ConsentPrompt};
pub use deps::{IdentityDeps, RateLimits};
pub use device::{DEVICE_FAILURE_BUDGET, DEVICE_LOCK, DEVICE_TOKEN_TTL};
pub use device_grant::{
    DEVICE_CODE_TTL, DEVICE_POLL_INTERVAL, DeviceAuthorization, DevicePoll, PendingDevice,
};
pub use error::{IdentityError, OUTAGE_RETRY_AFTER};
pub use federation::{
    ACR_FEDERATED, FederatedIdentity, FederatedOutcome, FederatedSession, Federation,
    FederationRefusal, LINK_TOKEN_TTL, ProviderButton, STATE_TTL, SsoCallback, SsoFinished,
    SsoStart, SsoStarted,
};
pub use flows::{AccountFlows, BrowserSession, BrowserSignIn, FlowError, SignInAttempt};
pub use handoff::{HANDOFF_CODE_TTL, HandoffTarget, HostSession, nonce_hash};
pub use levels::{
    ACR_MFA, ACR_PASSWORD, ACR_PHISHING_RESISTANT, ACR_VALUES_SUPPORTED, acr_satisfies,
    has_second_factor,
};
pub use linked::LinkedIdentity;
pub use loading_cache::OUTAGE_STALE_LIMIT;
pub use logout::{Logout, LogoutRequest};
pub use mailer::{Email, MailError, Mailer, MemoryMailer, NoMailer, SmtpMailer};
pub use mfa::{BACKUP_CODE_COUNT, BackupCodes, FactorInfo, MfaStatus, STEP_UP_FRESHNESS};
pub use password::BreachedList;
pub use person_grant::IssuedTokens;
pub use principal::{ADMIN_GROUP, ADMIN_PERMISSION, ADMIN_ROLE, Credential, Principal};
pub use relying_party::GrantType;
pub use signer::PublishedKeys;
pub use step_up::{StepUpOffer, StepUpProof, SteppedUp};
pub use tenants::{LiveTenant, is_tenant_name};
pub use totp::TotpEnrolment;
pub use unlock::{UNLOCK_TTL, Unlocked};
pub use upstream::{UPSTREAM_TOKEN_TTL, UPSTREAM_TOKEN_TYP, UpstreamGrant};
pub use webauthn::{CEREMONY_TTL, PasskeySignIn, WebauthnOptions, parse_credential};

use chrono::{DateTime, Utc};
use keygate_core::clock::Clock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::ephemeral::{Ephemeral, InstrumentedEphemeral, RedisMetrics, RevocationSet};
use keygate_core::ids::{ApiKeyId, SessionId, TenantId, UserId};
use keygate_core::store::{InstrumentedStore, StoreMetrics};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Facts about the HTTP request a workflow records (audit, sessions, rate limits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// Client address (peer, or from trusted proxies' headers).
    pub ip: Option<IpAddr>,
    /// `X-Request-Id`, for correlation with logs.
    pub request_id: Option<String>,
    /// `User-Agent`, for the session list.
    pub user_agent: Option<String>,
}

/// A password sign-in.
#[derive(Clone, Default)]
pub struct PasswordSignIn {
    /// Email as typed.
    pub email: String,
    /// Password as typed.
    pub password: String,
    /// A new password, when the account must change its password.
    pub new_password: Option<String>,
    /// OAuth client the tokens are for (`keygate` when absent).
    pub client_id: Option<String>,
    /// Space-separated scopes asked for.
    pub scope: Option<String>,
    /// Whether the session is a browser session (cookie lifetimes) or a token client's.
    pub browser: bool,
    /// The device cookie (or an API client's `device_token`) presented, if any: a valid
    /// token for the account puts the attempt on the device's own budget.
    pub device: Option<String>,
}

impl std::fmt::Debug for PasswordSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordSignIn")
            .field("browser", &self.browser)
            .finish_non_exhaustive()
    }
}

/// Tokens handed to a client (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenSet {
    /// The RFC 9068 JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque 256-bit refresh token (rotated on every use).
    pub refresh_token: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// A fresh ID token, when a registered client refreshes a grant that holds `openid`
    /// (OpenID Connect Core §12.2): how a relying party such as `keygate login` renews the ID
    /// token kubectl presents without another sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A successful sign-in.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// Tokens for API clients.
    pub tokens: TokenSet,
    /// The session opened (the `sid` claim; no secret).
    pub session_id: SessionId,
    /// The session cookie's value (an opaque 256-bit token), for browser sign-ins only.
    pub session_cookie: Option<String>,
    /// A new device token for this account (an API client's `device_token`).
    pub device_token: String,
    /// The browser's device cookie value: the new token and the presented tokens of other
    /// accounts.
    pub device_cookie: String,
    /// When the session ends at the latest.
    pub session_expires_at: DateTime<Utc>,
    /// The signed-in person.
    pub principal: Principal,
    /// The first backup codes, when this sign-in enrolled the account's first factor (shown
    /// this once).
    pub backup_codes: Option<mfa::BackupCodes>,
}

/// A registration.
#[derive(Clone, Default)]
pub struct SignUp {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// Name shown in UIs (defaults to the email's local part).
    pub display_name: Option<String>,
    /// Invite token, for invite-only tenants.
    pub invite: Option<String>,
}

impl std::fmt::Debug for SignUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignUp").finish_non_exhaustive()
    }
}

/// One of the caller's sessions, as listed to them (and as the sessions API answers it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// Session id.
    #[schema(value_type = String)]
    pub id: SessionId,
    /// Device as reported at sign-in.
    pub user_agent: Option<String>,
    /// Address at sign-in.
    pub ip: Option<String>,
    /// Authentication methods.
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// When the person authenticated.
    pub auth_time: DateTime<Utc>,
    /// Opened.
    pub created_at: DateTime<Utc>,
    /// Last used.
    pub last_seen_at: DateTime<Utc>,
    /// Ends at the latest.
    pub expires_at: DateTime<Utc>,
    /// Whether it is the session of the calling credential.
    pub current: bool,
}

/// OpenID Connect userinfo of a person (and the userinfo endpoint's answer). keygate's own
/// tokens (client `keygate`) see every field; a registered client's token sees `sub` and
/// what its scopes release (`email`: `email`, `email_verified`; `profile`: `name`;
/// `groups`: `groups`), as OpenID Connect Core §5.4 asks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    /// User id.
    pub sub: String,
    /// Email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the email is verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Local groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Role names (keygate's own tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Tenant name (keygate's own tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// RFC 7662 introspection answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Introspection {
    /// Whether the token is valid now; nothing else is said when it is not.
    pub active: bool,
    /// `access_token` or `refresh_token`.
    pub token_type: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Client.
    pub client_id: Option<String>,
    /// Scopes.
    pub scope: Option<String>,
    /// Expiry (seconds since the epoch).
    pub exp: Option<i64>,
    /// Issued at.
    pub iat: Option<i64>,
    /// Issuer.
    pub iss: Option<String>,
    /// Session.
    pub sid: Option<String>,
    /// Token id.
    pub jti: Option<String>,
}

/// What the first-admin bootstrap did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// The admin account was created.
    Created(UserId),
    /// An account with that email exists already; nothing changed.
    AlreadyExists(UserId),
}

/// The identity service; cheap to clone (one shared inner state).
#[derive(Clone, Debug)]
pub struct IdentityService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    deps: IdentityDeps,
    tenants: tenants::LiveTenants,
    clients: clients::ClientCache,
    signer: signer::SigningKeys,
    subjects: subjects::SubjectCache,
    families: subjects::FamilyCache,
    usage: Arc<usage::ApiKeyUsage>,
    metrics: metrics::IdentityMetrics,
    providers: federation::Providers,
}

impl IdentityService {
    /// The service over `deps`.
    pub fn new(deps: IdentityDeps) -> Self {
        Self::with_federation(deps, Federation::default())
    }

    /// The service reaching upstream providers as `federation` says (`keygate dev` accepts
    /// loopback `http://` issuers; tests point Google and GitHub at local peers).
    pub fn with_federation(mut deps: IdentityDeps, federation: Federation) -> Self {
        // Every store and Redis call of the service is traced, timed and counted here, once.
        deps.store = Arc::new(InstrumentedStore::new(
            deps.store,
            StoreMetrics::register(&deps.registry),
        ));
        if let Err(e) = deps.ephemeral.revocations().register(&deps.registry) {
            tracing::debug!(error = %e, "revocation lag metrics not registered");
        }
        deps.ephemeral = Arc::new(InstrumentedEphemeral::new(
            deps.ephemeral,
            RedisMetrics::register(&deps.registry),
        ));
        let signer = signer::SigningKeys::new(
            deps.store.clone(),
            deps.master_keys.clone(),
            deps.clock.clone(),
        );
        let metrics = metrics::IdentityMetrics::new(&deps.registry);
        if let Err(e) = deps.hasher.metrics().register(&deps.registry) {
            // Two services over one registry (tests, a second gateway in one process): the
            // first one's hashing pool is the one exported.
            tracing::debug!(error = %e, "password hashing metrics not registered");
        }
        Self {
            inner: Arc::new(Inner {
                metrics,
                deps,
                tenants: tenants::LiveTenants::default(),
                clients: clients::ClientCache::default(),
                signer,
                subjects: subjects::SubjectCache::default(),
                families: subjects::FamilyCache::default(),
                usage: Arc::default(),
                providers: federation::Providers::new(federation),
            }),
        }
    }

    /// The master keys, whose derived MAC keys sign what the pages hand out (CSRF tokens).
    pub fn master_keys(&self) -> &MasterKeys {
        &self.inner.deps.master_keys
    }

    /// The ephemeral store the service revokes through (rate windows, single-use codes).
    pub fn ephemeral(&self) -> Arc<dyn Ephemeral> {
        self.inner.deps.ephemeral.clone()
    }

    /// The replica-local revocation set (forward-auth checks cached identities against it).
    pub fn revocations(&self) -> &RevocationSet {
        self.inner.deps.ephemeral.revocations()
    }

    /// Base URL without trailing slash (issuers are `{public_url}/t/{tenant}`).
    pub fn public_url(&self) -> &str {
        &self.inner.deps.public_url
    }

    /// Source of "now" the service decides with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.deps.clock
    }

    /// The live tenant called `name` (cached for a few seconds); `TenantNotFound` when it
    /// does not exist or is disabled.
    pub async fn tenant(&self, name: &str) -> Result<Arc<LiveTenant>, IdentityError> {
        // A name no tenant can have is neither looked up nor cached.
        if !is_tenant_name(name) {
            return Err(IdentityError::TenantNotFound);
        }
        let d = self.deps();
        self.inner
            .tenants
            .get(d.store.as_ref(), &d.public_url, name)
            .await
    }

    /// What `tenant` publishes: its JWKS document (rendered once per load) and the kid new
    /// access tokens are signed with, from the same cache signing uses.
    pub async fn published_keys(
        &self,
        tenant: &LiveTenant,
    ) -> Result<PublishedKeys, IdentityError> {
        self.inner
            .signer
            .published(tenant.row.id, tenant.settings.signing.algorithm)
            .await
    }

    /// Notes that API key `key` of `tenant` was used now; written to the store in batches.
    pub fn record_api_key_use(&self, tenant: TenantId, key: ApiKeyId) {
        self.inner
            .usage
            .record(&self.inner.deps.store, tenant, key, self.now());
    }

    /// Writes pending API-key last-use times now (shutdown, tests); returns how many.
    pub async fn flush_api_key_usage(&self) -> usize {
        self.inner.usage.flush(self.inner.deps.store.as_ref()).await
    }

    /// The registry the service counts in (the gateway registers its other metrics there
    /// too, and `/metrics` serves it).
    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.deps.registry
    }

    /// Refreshes the metrics read at scrape time (database pool, Redis, revocations heard);
    /// `/metrics` calls it before encoding. Bounded: a Redis that does not answer within 2 s
    /// is reported down.
    pub async fn sample_metrics(&self) {
        let d = self.deps();
        self.inner
            .metrics
            .sample(d.store.as_ref(), d.ephemeral.as_ref())
            .await;
    }

    /// Whether the service can serve: the store answers (readiness probes ask this).
    pub async fn ready(&self) -> Result<(), IdentityError> {
        self.inner.deps.store.ping().await?;
        Ok(())
    }

    fn deps(&self) -> &IdentityDeps {
        &self.inner.deps
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.deps.clock.now()
    }
}

/// Lower-case hex, for ids derived from hashes.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `chrono` duration from a spec duration, saturating.
fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
