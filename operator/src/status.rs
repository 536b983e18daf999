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
}

impl Reason {
    /// The CamelCase word Kubernetes conventions expect.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconciled => "Reconciled",
            Self::InvalidSpec => "InvalidSpec",
            Self::TenantNameTaken => "TenantNameTaken",
            Self::TenantNotFound => "TenantNotFound",
            Self::SecretNotFound => "SecretNotFound",
            Self::Expired => "Expired",
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

/// Converts a chrono instant into the timestamp type k8s-openapi uses.
pub fn to_timestamp(at: chrono::DateTime<chrono::Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_millisecond(at.timestamp_millis())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}
