//! `Tenant`: one isolated realm of users, sign-in methods, policies and signing keys.
//!
//! The Tenant's `metadata.name` is its URL segment (`/t/{name}`, issuer `{public_url}/t/{name}`),
//! so it must be a DNS label (at most 63 characters of `a-z`, `0-9` and `-`); the CRD enforces
//! that with a CEL rule on the root, which [`crate::admit`] also applies to manifests that never
//! pass through an API server. Names are unique across the cluster: a second namespace declaring
//! a taken name gets `Ready=False`, reason `TenantNameTaken`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{conditions_schema, impl_conditions_status},
    duration::GoDuration,
};

/// A hex colour such as `#1f6feb`.
pub const COLOR_PATTERN: &str = "^#[0-9a-fA-F]{6}$";

/// An origin a browser may be sent back to: scheme, host and optional port, no path.
pub const ORIGIN_PATTERN: &str = r"^https?://[^/\s?#]+$";

/// An `http(s)` URL without whitespace.
pub const HTTP_URL_PATTERN: &str = r"^https?://\S+$";

/// An `https://` URL without whitespace (a logo the sign-in pages load: their CSP allows
/// images over https only).
pub const HTTPS_IMAGE_URL_PATTERN: &str = r"^https://\S+$";

/// A cookie's parent domain: a lower-case DNS name of at least two labels whose last label
/// starts with a letter (no leading dot, no IP address, no port). The same rule as
/// `keygate_core::tenant_settings::cookie_domain::is_cookie_domain`.
pub const COOKIE_DOMAIN_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

/// Desired state of a Tenant: how its users sign in and what its tokens look like.
// `printcolumn(type_ = "string", ...)` repeats by design; clippy mistakes it for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keygate.dev",
    version = "v1alpha1",
    kind = "Tenant",
    namespaced,
    status = "TenantStatus",
    shortname = "kgt",
    category = "keygate",
    derive = "PartialEq",
    doc = "A keygate tenant: an isolated realm with its own users, sign-in methods, policies, \
           issuer and signing keys. Its name is its URL segment (/t/{name}) and must be unique \
           across the cluster.",
    validation = Rule::new(
        "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
    ).message("metadata.name of a Tenant is its URL segment and must be a DNS label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".status.issuerUrl"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Name shown to people on sign-in pages and in emails; defaults to the Tenant's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,
    /// What happens to the tenant's data when the Tenant is deleted. `Retain` (default) keeps
    /// users, sessions and keys in the database so a resource deleted by mistake can be
    /// re-applied; `Delete` removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Colours and logo of the hosted sign-in pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<Branding>,
    /// Which sign-in methods are offered and who may register.
    #[serde(default)]
    pub sign_in: SignIn,
    /// Rules for local passwords.
    #[serde(default)]
    pub password_policy: PasswordPolicy,
    /// Progressive account lockout after failed sign-ins (5 failures: 5 min, 10: 30 min, 15: 2 h).
    #[serde(default)]
    pub lockout: Lockout,
    /// Browser session lifetimes.
    #[serde(default)]
    pub sessions: Sessions,
    /// Access- and refresh-token lifetimes and audience.
    #[serde(default)]
    pub tokens: Tokens,
    /// Multi-factor authentication policy.
    #[serde(default)]
    pub mfa: Mfa,
    /// Token signing algorithm and key rotation.
    #[serde(default)]
    pub signing: Signing,
    /// Where the tenant may send browsers after sign-in and sign-out.
    #[serde(default)]
    pub redirects: Redirects,
    /// Client-address allow and deny lists, enforced at sign-in (API and pages), refresh,
    /// keygate's token-authenticated API and forward-auth. The client address is the peer,
    /// or behind a trusted proxy (`trustedProxies`) the right-most untrusted
    /// `X-Forwarded-For` hop.
    #[serde(default)]
    pub network: Network,
    /// How long the tenant's audit trail is kept.
    #[serde(default)]
    pub audit: Audit,
}

/// Audit-trail retention.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    /// Audit events older than this many days are deleted by the gateway's janitor (default
    /// `400`: a year plus a margin for yearly reviews; 1 to 36500).
    #[serde(default = "default_audit_retention_days")]
    #[schemars(range(min = 1, max = 36500))]
    pub retention_days: u32,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            retention_days: default_audit_retention_days(),
        }
    }
}

/// Whether deleting the Tenant deletes its data.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the tenant's data when the Tenant is deleted (the safe default).
    #[default]
    Retain,
    /// Delete the tenant's users, sessions and keys with the Tenant.
    Delete,
}

/// Look of the hosted sign-in pages.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Branding {
    /// Main colour as `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(COLOR_PATTERN))]
    pub primary_color: Option<String>,
    /// Secondary colour as `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(COLOR_PATTERN))]
    pub accent_color: Option<String>,
    /// URL of the logo image (`https://`), shown at the top of every sign-in page in place
    /// of the display name (which becomes its `alt` text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(HTTPS_IMAGE_URL_PATTERN))]
    pub logo_url: Option<String>,
}

/// Sign-in methods and self-service registration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SignIn {
    /// Offer email + password sign-in for local accounts.
    #[serde(default = "default_true")]
    pub password: bool,
    /// Who may create an account: `open` (anyone), `invite` (invited emails only) or
    /// `closed` (accounts come from administrators or upstream identity providers only).
    #[serde(default)]
    pub registration: Registration,
    /// Whether an email address must be verified: `required` before first sign-in,
    /// `optional` (verification offered), `"off"` (quoted: YAML reads a bare off as false).
    #[serde(default)]
    pub email_verification: EmailVerification,
}

impl Default for SignIn {
    fn default() -> Self {
        Self {
            password: true,
            registration: Registration::default(),
            email_verification: EmailVerification::default(),
        }
    }
}

/// Who may register a new account.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may register.
    Open,
    /// Only invited email addresses may register.
    Invite,
    /// Nobody registers; accounts are created by administrators or upstream IdPs.
    #[default]
    Closed,
}

/// Whether email addresses must be verified.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmailVerification {
    /// An unverified address cannot sign in.
    #[default]
    Required,
    /// Verification is offered but not enforced.
    Optional,
    /// No verification emails are sent.
    Off,
}

/// Rules for local passwords.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minLength <= self.maxLength")
    .message("passwordPolicy.minLength must not be greater than passwordPolicy.maxLength"))]
pub struct PasswordPolicy {
    /// Shortest accepted password, 8 to 128 characters.
    #[serde(default = "default_min_length")]
    #[schemars(range(min = 8, max = 128))]
    pub min_length: u32,
    /// Longest accepted password, at most 1024 characters (bounds hashing cost).
    #[serde(default = "default_max_length")]
    #[schemars(range(min = 8, max = 1024))]
    pub max_length: u32,
    /// How many previous passwords a user may not reuse, 0 to 24.
    #[serde(default = "default_history")]
    #[schemars(range(min = 0, max = 24))]
    pub history: u32,
    /// Refuse passwords found in the breached-password list.
    #[serde(default = "default_true")]
    pub breached_check: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: default_min_length(),
            max_length: default_max_length(),
            history: default_history(),
            breached_check: true,
        }
    }
}

/// Account lockout after repeated failed sign-ins.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lockout {
    /// Lock accounts progressively after failed sign-ins.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for Lockout {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Browser session lifetimes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.idleTimeout) <= duration(self.absoluteLifetime)")
    .message("sessions.idleTimeout must not be longer than sessions.absoluteLifetime"))]
pub struct Sessions {
    /// A session unused this long ends (Go duration, default `24h`).
    #[serde(default = "default_session_idle")]
    pub idle_timeout: GoDuration,
    /// A session ends this long after sign-in however active it is (default `720h`).
    #[serde(default = "default_session_absolute")]
    pub absolute_lifetime: GoDuration,
    /// Share the session cookie with every host under this domain (e.g. `example.com`), so
    /// apps there need no per-host handoff: the cookie becomes `__Secure-keygate_session_{tenant}`
    /// with `Domain`. Must contain the gateway's public host. Unset: a host-only `__Host-` cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), pattern(COOKIE_DOMAIN_PATTERN))]
    pub cookie_domain: Option<String>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            idle_timeout: default_session_idle(),
            absolute_lifetime: default_session_absolute(),
            cookie_domain: None,
        }
    }
}

/// Token lifetimes and audience.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.refreshIdleTtl) <= duration(self.refreshAbsoluteTtl)")
    .message("tokens.refreshIdleTtl must not be longer than tokens.refreshAbsoluteTtl"))]
pub struct Tokens {
    /// Lifetime of access tokens (JWTs), default `5m`; short because a JWT cannot be recalled.
    #[serde(default = "default_access_token_ttl")]
    pub access_token_ttl: GoDuration,
    /// A refresh token unused this long expires (default `168h`).
    #[serde(default = "default_refresh_idle")]
    pub refresh_idle_ttl: GoDuration,
    /// A refresh-token family ends this long after sign-in (default `720h`).
    #[serde(default = "default_refresh_absolute")]
    pub refresh_absolute_ttl: GoDuration,
    /// How long a just-rotated refresh token is still accepted, so a client retrying after a
    /// network error is not logged out (default `10s`); later reuse revokes the family.
    #[serde(default = "default_refresh_reuse_grace")]
    pub refresh_reuse_grace: GoDuration,
    /// `aud` values of access tokens; empty means the tenant's issuer URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 256)))]
    pub audience: Vec<String>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            access_token_ttl: default_access_token_ttl(),
            refresh_idle_ttl: default_refresh_idle(),
            refresh_absolute_ttl: default_refresh_absolute(),
            refresh_reuse_grace: default_refresh_reuse_grace(),
            audience: Vec::new(),
        }
    }
}

/// Multi-factor authentication policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mfa {
    /// `"off"` (no second factor is offered or asked; quoted, as YAML reads a bare off as
    /// false), `optional` (the default: people may enrol a TOTP authenticator, security
    /// keys and passkeys, and whoever has one is asked for it at sign-in) or `required`
    /// (password sign-in issues no token or cookie until the person has used a second
    /// factor; a person without one is sent to enrol one first).
    #[serde(default)]
    pub policy: MfaPolicy,
    /// Whether a passkey alone signs a person in (`POST /t/{tenant}/login/passkey`): a
    /// discoverable WebAuthn credential the person registered, verified on the device
    /// (PIN or biometrics), without a password. Off by default; has no effect while
    /// `policy` is `"off"` (no passkey can be registered or used then).
    #[serde(default)]
    pub passkey_sign_in: bool,
}

/// Whether a second factor is offered or enforced.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MfaPolicy {
    /// No second factor.
    Off,
    /// Users may enrol a second factor.
    #[default]
    Optional,
    /// Every local account must enrol a second factor (refused while keygate has none).
    Required,
}

/// Token signing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.publishLead) <= duration(self.rotateEvery)")
    .message("signing.publishLead must not be longer than signing.rotateEvery"))]
#[x_kube(validation = Rule::new("duration(self.publishLead) >= duration('1m')")
    .message("signing.publishLead must be at least 1m (the JWKS document may be cached 60 s)"))]
pub struct Signing {
    /// JWS algorithm of the tenant's tokens: `RS256` (default, widest support), `ES256` or
    /// `EdDSA` (both much faster to sign).
    #[serde(default)]
    pub algorithm: SigningAlgorithm,
    /// How often a new signing key is generated (default `720h`); the next key is published
    /// in the JWKS before it signs, and old keys stay until their last token expired.
    #[serde(default = "default_rotate_every")]
    pub rotate_every: GoDuration,
    /// How long the next key is published in the JWKS before it signs (default `1h`, longer
    /// than the JWKS caches of common verifiers; docs/decisions.md). A replaced key also stays
    /// published this long after its last token expired.
    #[serde(default = "default_publish_lead")]
    pub publish_lead: GoDuration,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::default(),
            rotate_every: default_rotate_every(),
            publish_lead: default_publish_lead(),
        }
    }
}

/// JWS algorithm of a tenant's signing keys.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    #[default]
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// Allowed redirect targets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Redirects {
    /// Origins (`scheme://host[:port]`, no path) browsers may be redirected to after sign-in or
    /// sign-out; any other return URL is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256), pattern(ORIGIN_PATTERN)))]
    pub allowed_origins: Vec<String>,
}

/// IP allow and deny lists.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// If not empty, only clients in these CIDRs may sign in or use tokens; others get 403
    /// (`network_denied`, or `access_denied` at the token endpoint). Empty: everyone not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))")
        .message("network.allow entries must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32"))]
    pub allow: Vec<String>,
    /// Clients in these CIDRs are refused, even when also allowed (deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))")
        .message("network.deny entries must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32"))]
    pub deny: Vec<String>,
}

/// Observed state of a Tenant.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The tenant's issuer (`{public_url}/t/{name}`), the `iss` of its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_url: Option<String>,
    /// Where the tenant's public signing keys are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// `kid` of the key that currently signs tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key_id: Option<String>,
    /// `Ready` and other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the operator last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl_conditions_status!(TenantStatus);

impl TenantSpec {
    /// Lifetime of access tokens.
    pub fn access_token_ttl(&self) -> Duration {
        self.tokens.access_token_ttl.get()
    }

    /// Idle lifetime of a refresh token.
    pub fn refresh_idle_ttl(&self) -> Duration {
        self.tokens.refresh_idle_ttl.get()
    }

    /// Absolute lifetime of a refresh-token family.
    pub fn refresh_absolute_ttl(&self) -> Duration {
        self.tokens.refresh_absolute_ttl.get()
    }

    /// Grace window during which a just-rotated refresh token is still accepted.
    pub fn refresh_reuse_grace(&self) -> Duration {
        self.tokens.refresh_reuse_grace.get()
    }

    /// Idle timeout of a browser session.
    pub fn session_idle_timeout(&self) -> Duration {
        self.sessions.idle_timeout.get()
    }

    /// Absolute lifetime of a browser session.
    pub fn session_absolute_lifetime(&self) -> Duration {
        self.sessions.absolute_lifetime.get()
    }

    /// How often a new signing key is generated.
    pub fn key_rotation_period(&self) -> Duration {
        self.signing.rotate_every.get()
    }
}

impl Tenant {
    /// Name shown to people: `spec.displayName`, or the Tenant's name when unset.
    pub fn display_name(&self) -> &str {
        self.spec
            .display_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

fn default_true() -> bool {
    true
}
fn default_min_length() -> u32 {
    8
}
fn default_max_length() -> u32 {
    128
}
fn default_history() -> u32 {
    5
}
fn default_session_idle() -> GoDuration {
    GoDuration::literal("24h")
}
fn default_session_absolute() -> GoDuration {
    GoDuration::literal("720h")
}
fn default_access_token_ttl() -> GoDuration {
    GoDuration::literal("5m")
}
fn default_refresh_idle() -> GoDuration {
    GoDuration::literal("168h")
}
fn default_refresh_absolute() -> GoDuration {
    GoDuration::literal("720h")
}
fn default_refresh_reuse_grace() -> GoDuration {
    GoDuration::literal("10s")
}
fn default_rotate_every() -> GoDuration {
    GoDuration::literal("720h")
}
fn default_audit_retention_days() -> u32 {
    400
}
fn default_publish_lead() -> GoDuration {
    GoDuration::literal("1h")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn an_empty_spec_gets_the_documented_defaults() {
        let spec: TenantSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert!(spec.sign_in.password);
        assert_eq!(spec.sign_in.registration, Registration::Closed);
        assert_eq!(spec.password_policy, PasswordPolicy::default());
        assert_eq!(spec.password_policy.min_length, 8);
        assert_eq!(spec.password_policy.max_length, 128);
        assert_eq!(spec.password_policy.history, 5);
        assert_eq!(spec.access_token_ttl(), Duration::from_secs(300));
        assert_eq!(spec.refresh_reuse_grace(), Duration::from_secs(10));
        assert_eq!(spec.key_rotation_period(), Duration::from_secs(720 * 3600));
        assert_eq!(spec.signing.publish_lead.get(), Duration::from_secs(3600));
        assert_eq!(spec.audit.retention_days, 400);
        assert_eq!(spec.session_idle_timeout(), Duration::from_secs(24 * 3600));
        assert_eq!(
            spec.session_absolute_lifetime(),
            Duration::from_secs(720 * 3600)
        );
        assert_eq!(spec.refresh_idle_ttl(), Duration::from_secs(168 * 3600));
        assert_eq!(spec.refresh_absolute_ttl(), Duration::from_secs(720 * 3600));
        assert_eq!(spec.signing.algorithm, SigningAlgorithm::RS256);
        assert_eq!(spec.mfa.policy, MfaPolicy::Optional);
    }
}
