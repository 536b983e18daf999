//! A tenant's policies as the gateway reads them: sign-in and registration, email
//! verification, lockout, password rules, session and token lifetimes, audience, redirect
//! origins, branding, network lists and the MFA policy; and what the operator and the janitor
//! read: signing-key rotation and audit retention.
//!
//! The operator maps a Tenant resource's spec into these types and stores them with the tenant
//! row; the gateway reads them from the row and never sees a Kubernetes type. The JSON shape
//! (camelCase names, Go-style duration text) is the one the Tenant spec has, so rows written
//! when the spec itself was stored still read (`docs/decisions.md`, "Tenant settings").
//! Every part has its defaults (those of the Tenant resource), and [`TenantSettings::validate`]
//! holds the rules, so settings from any source are checked the same way.

pub mod cookie_domain;
pub mod duration;
mod validate;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::crypto::signing::SigningAlgorithm;
use serde::{Deserialize, Serialize};

pub use validate::{InvalidSettings, Problem};

/// Why stored settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TenantSettingsError {
    /// The JSON does not have the settings' shape.
    #[error("settings do not parse{}: {source}", part.as_ref().map(|p| format!(" (in `{p}`)")).unwrap_or_default())]
    Parse {
        /// The top-level part that does not parse (`tokens`, `signIn`, …), when one does.
        part: Option<String>,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The JSON parses but breaks a rule.
    #[error(transparent)]
    Invalid(#[from] InvalidSettings),
}

/// Everything the gateway needs to know about a tenant's policies.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct TenantSettings {
    /// Colours and logo of the hosted sign-in pages.
    pub branding: Branding,
    /// Which sign-in methods are offered and who may register.
    pub sign_in: SignIn,
    /// Rules for local passwords.
    pub password_policy: PasswordPolicy,
    /// Progressive lockout after failed sign-ins.
    pub lockout: Lockout,
    /// Browser session lifetimes.
    pub sessions: Sessions,
    /// Access- and refresh-token lifetimes and audience.
    pub tokens: Tokens,
    /// Multi-factor authentication policy.
    pub mfa: Mfa,
    /// Where browsers may be sent back to.
    pub redirects: Redirects,
    /// IP allow and deny lists.
    pub network: Network,
    /// Signing algorithm and key rotation (the operator rotates by it).
    pub signing: Signing,
    /// Audit-trail retention (the store also keeps it in `tenants.audit_retention_days`,
    /// where the janitor's delete reads it).
    pub audit: Audit,
}

impl TenantSettings {
    /// Reads stored settings and checks them: the one way a stored value becomes settings.
    pub fn from_json(value: serde_json::Value) -> Result<Self, TenantSettingsError> {
        let settings = match Self::deserialize(&value) {
            Ok(settings) => settings,
            Err(source) => {
                // serde's message names no field; find the part so the error says where.
                let part = value.as_object().and_then(|parts| {
                    parts.iter().find_map(|(key, v)| {
                        let alone = serde_json::json!({ key: v });
                        Self::deserialize(&alone).is_err().then(|| key.clone())
                    })
                });
                return Err(TenantSettingsError::Parse { part, source });
            }
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Lifetime of access tokens.
    pub fn access_token_ttl(&self) -> Duration {
        self.tokens.access_token_ttl
    }

    /// Idle lifetime of a refresh token.
    pub fn refresh_idle_ttl(&self) -> Duration {
        self.tokens.refresh_idle_ttl
    }

    /// Absolute lifetime of a refresh-token family.
    pub fn refresh_absolute_ttl(&self) -> Duration {
        self.tokens.refresh_absolute_ttl
    }

    /// Grace window during which a just-rotated refresh token is still accepted.
    pub fn refresh_reuse_grace(&self) -> Duration {
        self.tokens.refresh_reuse_grace
    }

    /// Idle timeout of a browser session.
    pub fn session_idle_timeout(&self) -> Duration {
        self.sessions.idle_timeout
    }

    /// Absolute lifetime of a browser session.
    pub fn session_absolute_lifetime(&self) -> Duration {
        self.sessions.absolute_lifetime
    }
}

/// Look of the hosted sign-in pages; unset parts keep keygate's look.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Branding {
    /// Main colour as `#rrggbb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    /// Secondary colour as `#rrggbb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
    /// URL of the logo image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
}

/// Sign-in methods and self-service registration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SignIn {
    /// Email + password sign-in for local accounts is offered.
    pub password: bool,
    /// Who may create an account.
    pub registration: Registration,
    /// Whether an email address must be verified.
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
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may register.
    Open,
    /// Only invited email addresses may register.
    Invite,
    /// Nobody registers; accounts come from administrators or upstream identity providers.
    #[default]
    Closed,
}

/// Whether email addresses must be verified.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct PasswordPolicy {
    /// Shortest accepted password (8 to 128 characters).
    pub min_length: u32,
    /// Longest accepted password (at most 1024 characters; bounds hashing cost).
    pub max_length: u32,
    /// How many previous passwords may not be reused (0 to 24).
    pub history: u32,
    /// Refuse passwords found in the breached-password list.
    pub breached_check: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            max_length: 128,
            history: 5,
            breached_check: true,
        }
    }
}

/// Account lockout after repeated failed sign-ins.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Lockout {
    /// Lock accounts progressively after failed sign-ins.
    pub enabled: bool,
}

impl Default for Lockout {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Browser session lifetimes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Sessions {
    /// A session unused this long ends (default 24 h).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in however active it is (default 720 h).
    #[serde(with = "duration")]
    pub absolute_lifetime: Duration,
    /// The parent domain the session cookie is shared with (`Domain=`, `__Secure-` prefix),
    /// so apps on hosts under it need no handoff; `None` keeps the host-only `__Host-`
    /// cookie. Must contain the gateway's public host ([`TenantSettings::check_public_url`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<String>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            idle_timeout: hours(24),
            absolute_lifetime: hours(720),
            cookie_domain: None,
        }
    }
}

/// Token lifetimes and audience.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Tokens {
    /// Lifetime of access tokens (default 5 min: a JWT cannot be recalled).
    #[serde(with = "duration")]
    pub access_token_ttl: Duration,
    /// A refresh token unused this long expires (default 168 h).
    #[serde(with = "duration")]
    pub refresh_idle_ttl: Duration,
    /// A refresh-token family ends this long after sign-in (default 720 h).
    #[serde(with = "duration")]
    pub refresh_absolute_ttl: Duration,
    /// How long a just-rotated refresh token is still accepted (default 10 s).
    #[serde(with = "duration")]
    pub refresh_reuse_grace: Duration,
    /// `aud` of access tokens; empty means the tenant's issuer URL.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(300),
            refresh_idle_ttl: hours(168),
            refresh_absolute_ttl: hours(720),
            refresh_reuse_grace: Duration::from_secs(10),
            audience: Vec::new(),
        }
    }
}

/// Multi-factor authentication policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Mfa {
    /// Whether a second factor is off, offered or enforced.
    pub policy: MfaPolicy,
    /// Whether a passkey alone (a discoverable WebAuthn credential with user verification)
    /// signs a person in, without a password; needs a policy other than `off`.
    pub passkey_sign_in: bool,
}

/// Whether a second factor is offered or enforced.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MfaPolicy {
    /// No second factor.
    Off,
    /// Users may enrol a second factor.
    #[default]
    Optional,
    /// Every local account must enrol a second factor.
    Required,
}

/// Allowed redirect targets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Redirects {
    /// Origins (`scheme://host[:port]`) browsers may be sent to after sign-in or sign-out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

/// IP allow and deny lists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Network {
    /// If not empty, only clients in these networks may sign in or use tokens.
    #[serde(with = "cidr_list", skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IpNet>,
    /// Clients in these networks are refused, even when also allowed.
    #[serde(with = "cidr_list", skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<IpNet>,
}

impl Network {
    /// Whether the tenant limits clients by address at all (either list is set); when not,
    /// callers need not work out the client's address.
    pub fn is_restricted(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }

    /// Whether a client at `ip` may sign in, refresh or pass forward-auth: not in `deny`
    /// (deny wins), and in `allow` unless `allow` is empty. An unknown address (`None`)
    /// passes only a tenant without lists: it cannot be shown to be outside `deny`.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address, as the gateway's client
    /// address does.
    pub fn permits(&self, ip: Option<IpAddr>) -> bool {
        if !self.is_restricted() {
            return true;
        }
        let Some(ip) = ip.map(|ip| ip.to_canonical()) else {
            return false;
        };
        !self.deny.iter().any(|net| net.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip)))
    }
}

/// Signing algorithm and key rotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Signing {
    /// JWS algorithm of new keys; a change rotates to a key of the new algorithm.
    pub algorithm: SigningAlgorithm,
    /// How often a new key is generated (default 720 h).
    #[serde(with = "duration")]
    pub rotate_every: Duration,
    /// How long the next key is published before it signs, and a replaced key stays
    /// published after its last token expired (default 1 h, docs/decisions.md).
    #[serde(with = "duration")]
    pub publish_lead: Duration,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::RS256,
            rotate_every: hours(720),
            publish_lead: DEFAULT_PUBLISH_LEAD,
        }
    }
}

/// The default of `signing.publishLead`: one hour, three times the longest JWKS cache of
/// common verifiers (Istio's 20-minute refresh; docs/decisions.md, "Keys and encryption").
pub const DEFAULT_PUBLISH_LEAD: Duration = Duration::from_secs(3600);

/// The shortest `signing.publishLead`: the JWKS document is served with `max-age=60`.
pub const MIN_PUBLISH_LEAD: Duration = Duration::from_secs(60);

/// Audit-trail retention.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Audit {
    /// Audit events older than this many days are deleted (1 to 36500, default 400).
    pub retention_days: u32,
}

/// The default of `audit.retentionDays` (also the retention of a deleted tenant's trail).
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 400;

impl Default for Audit {
    fn default() -> Self {
        Self {
            retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
        }
    }
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// CIDRs as text (`10.0.0.0/8`), without enabling `ipnet`'s serde feature.
mod cidr_list {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub(super) fn serialize<S: Serializer>(
        list: &[IpNet],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(list.len()))?;
        for net in list {
            seq.serialize_element(&net.to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| {
                text.parse().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{text}` is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
