//! Building `status.conditions` the way Kubernetes tools read them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Reasons published in the `Ready` condition; stable words users and alerts match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Everything the spec asks for is in the store.
    Reconciled,
    /// The spec breaks a rule the schema cannot express; nothing was changed.
    InvalidSpec,
    /// Another namespace already owns this tenant name.
    TenantNameTaken,
    /// The referenced tenant does not exist (yet) or is owned elsewhere.
    TenantNotFound,
    /// A referenced Secret is missing or lacks the key.
    SecretNotFound,
    /// The ApiKey's `expiresAt` has passed; no key is issued.
    Expired,
    /// The ApiKey's Secret name is taken by a Secret it does not own; it is left alone.
    SecretConflict,
    /// The spec asks for something this version of keygate cannot do; it is not served as if
    /// it could.
    NotSupported,
    /// A Tenant's signing key opens under none of the configured master keys.
    SigningKeyUnreadable,
    /// A second-factor secret (TOTP seed) of a Tenant's account opens under none of the
    /// configured master keys.
    FactorUnreadable,
    /// Another OAuthClient resource already holds this client id in the tenant.
    ClientIdTaken,
    /// An IdentityProvider's discovery document or keys could not be fetched.
    ProviderUnreachable,
    /// A Role names an IdentityProvider the tenant does not have.
    ProviderNotFound,
    /// An OAuthClient asks for ID tokens of an algorithm its tenant keeps no keys of.
    SigningAlgorithmUnavailable,
}

impl Reason {
    /// The reason a condition names, if it is one of ours.
    pub fn parse(word: &str) -> Option<Self> {
        [
            Self::Reconciled,
            Self::InvalidSpec,
            Self::TenantNameTaken,
            Self::TenantNotFound,
            Self::SecretNotFound,
            Self::Expired,
            Self::SecretConflict,
            Self::NotSupported,
            Self::SigningKeyUnreadable,
            Self::FactorUnreadable,
            Self::ClientIdTaken,
            Self::ProviderUnreachable,
            Self::ProviderNotFound,
            Self::SigningAlgorithmUnavailable,
        ]
        .into_iter()
        .find(|r| r.as_str() == word)
    }

    /// The CamelCase word Kubernetes conventions expect.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconciled => "Reconciled",
            Self::InvalidSpec => "InvalidSpec",
            Self::TenantNameTaken => "TenantNameTaken",
            Self::TenantNotFound => "TenantNotFound",
            Self::SecretNotFound => "SecretNotFound",
            Self::Expired => "Expired",
            Self::SecretConflict => "SecretConflict",
            Self::NotSupported => "NotSupported",
            Self::SigningKeyUnreadable => "SigningKeyUnreadable",
            Self::FactorUnreadable => "FactorUnreadable",
            Self::ClientIdTaken => "ClientIdTaken",
            Self::ProviderUnreachable => "ProviderUnreachable",
            Self::ProviderNotFound => "ProviderNotFound",
            Self::SigningAlgorithmUnavailable => "SigningAlgorithmUnavailable",
        }
    }
}

/// The `Ready` condition for a resource at `generation`.
pub fn ready(
    ready: bool,
    reason: Reason,
    message: impl Into<String>,
    generation: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> Condition {
    keygate_crds::ready_condition(
        ready,
        reason.as_str(),
        &message.into(),
        generation,
        Time(to_timestamp(now)),
    )
}

/// The condition a Role that binds users by email carries: `False` when its tenant lets
/// people sign in without verifying their address, so those bindings wait for verification
/// (an unverified address binds nothing: anyone could sign up as it).
pub const CONDITION_EMAIL_VERIFICATION: &str = "EmailVerificationRequired";

/// A condition other than `Ready` (whose reasons are [`Reason`]) at `generation`.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(to_timestamp(now)),
    }
}

/// Converts a chrono instant into the timestamp type k8s-openapi uses.
pub fn to_timestamp(at: chrono::DateTime<chrono::Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_millisecond(at.timestamp_millis())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// What a lookup a reconcile depends on found: the thing, or why the resource cannot be
/// reconciled yet. Not an error: the reason goes into `Ready` and the reconcile runs again
/// when the referenced object changes.
#[derive(Debug)]
pub enum Lookup<T> {
    /// The referenced object, usable.
    Found(T),
    /// Why it cannot be used.
    Blocked(Blocked),
}

/// Why a resource waits on something outside its spec; the text is the condition message.
#[derive(Debug, thiserror::Error)]
pub enum Blocked {
    /// The tenant is declared in another namespace.
    #[error(
        "Tenant `{tenant}` is declared in namespace `{declared}`, not `{namespace}`; references never cross namespaces"
    )]
    TenantInOtherNamespace {
        /// The referenced tenant.
        tenant: String,
        /// Where it is declared.
        declared: String,
        /// The referring resource's namespace.
        namespace: String,
    },
    /// The tenant was deleted with `Retain`: disabled, data kept.
    #[error("Tenant `{tenant}` was deleted (its data is retained); re-apply it first")]
    TenantDeleted {
        /// The referenced tenant.
        tenant: String,
    },
    /// No such tenant (yet).
    #[error("Tenant `{tenant}` does not exist in namespace `{namespace}` (yet)")]
    TenantMissing {
        /// The referenced tenant.
        tenant: String,
        /// The referring resource's namespace.
        namespace: String,
    },
    /// The referenced Secret does not exist.
    #[error("Secret `{namespace}/{name}` not found; create it with the key `{key}`")]
    SecretMissing {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key the resource needs.
        key: String,
    },
    /// The Secret lacks the key, or the value is empty.
    #[error("Secret `{namespace}/{name}` has no (or an empty) key `{key}`")]
    SecretKeyMissing {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key the resource needs.
        key: String,
    },
}

impl Blocked {
    /// The `Ready` reason this reports.
    pub fn reason(&self) -> Reason {
        match self {
            Self::TenantInOtherNamespace { .. }
            | Self::TenantDeleted { .. }
            | Self::TenantMissing { .. } => Reason::TenantNotFound,
            Self::SecretMissing { .. } | Self::SecretKeyMissing { .. } => Reason::SecretNotFound,
        }
    }
}
