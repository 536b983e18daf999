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

/// A condition whose status did not change keeps its `lastTransitionTime`, as Kubernetes
/// conventions ask (and so an unchanged resource does not look changed, which would make
/// every status write wake the watch again).
pub fn keep_transition_times(before: &serde_json::Value, after: &mut serde_json::Value) {
    let Some(old) = before.get("conditions").and_then(|c| c.as_array()) else {
        return;
    };
    let Some(new) = after.get_mut("conditions").and_then(|c| c.as_array_mut()) else {
        return;
    };
    for condition in new {
        if let Some(prior) = old.iter().find(|c| c["type"] == condition["type"])
            && prior["status"] == condition["status"]
        {
            condition["lastTransitionTime"] = prior["lastTransitionTime"].clone();
        }
    }
}
