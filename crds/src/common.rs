//! Pieces every keygate kind shares: references, conditions and the patterns the schemas use.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A DNS-1123 label (Tenant names, which are URL segments): lowercase alphanumerics and `-`.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1123 subdomain (names of Secrets and other Kubernetes objects).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key of a Secret's `data` map.
pub const SECRET_KEY_PATTERN: &str = "^[-._a-zA-Z0-9]+$";

/// A permission name such as `orders.read` or `billing:invoices.write`.
pub const PERMISSION_PATTERN: &str = "^[a-z0-9][a-z0-9._:-]*$";

/// The condition type every keygate resource reports.
pub const CONDITION_READY: &str = "Ready";

/// Names the Tenant a resource belongs to; the Tenant lives in the same namespace.
///
/// Immutable: moving an IdentityProvider, Role or ApiKey to another tenant would silently move
/// users' access, so it has to be deleted and recreated instead.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self == oldSelf").message(
    "tenantRef is immutable; delete and recreate the resource to move it to another tenant"
))]
pub struct TenantRef {
    /// Name of a Tenant in the same namespace.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub name: String,
}

/// Points at one key of a Secret in the resource's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the referring resource).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253), pattern(SECRET_KEY_PATTERN))]
    pub key: String,
}

/// Schema for `status.conditions`: a list-map keyed by `type`, so server-side apply merges
/// conditions written by different managers instead of replacing the whole list.
pub(crate) fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Current state of the resource. `Ready` tells whether the operator has applied the latest generation.",
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "properties": {
                "lastTransitionTime": { "type": "string", "format": "date-time" },
                "message": { "type": "string", "maxLength": 32768 },
                "observedGeneration": { "type": "integer", "format": "int64", "minimum": 0 },
                "reason": { "type": "string", "maxLength": 1024 },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "type": { "type": "string", "maxLength": 316 }
            },
            "required": ["lastTransitionTime", "message", "reason", "status", "type"]
        }
    })
}

/// Access to the status fields every keygate kind shares, so the operator handles them alike.
pub trait ConditionsStatus {
    /// The status conditions.
    fn conditions(&self) -> &[Condition];
    /// The status conditions, for updating in place.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// The generation the operator last acted on.
    fn observed_generation(&self) -> Option<i64>;
    /// Records the generation the operator acted on.
    fn set_observed_generation(&mut self, generation: Option<i64>);

    /// The `Ready` condition, if set.
    fn ready(&self) -> Option<&Condition> {
        self.conditions()
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
    }

    /// Whether `Ready` is `True` for the given generation.
    fn is_ready_for(&self, generation: Option<i64>) -> bool {
        self.ready()
            .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
    }
}

/// Builds the `Ready` condition with the given outcome; `reason` is a CamelCase word.
pub fn ready_condition(
    ready: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: CONDITION_READY.to_owned(),
        status: if ready { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation,
        last_transition_time: now,
    }
}

/// Inserts or replaces the condition of the same type; keeps `lastTransitionTime` when the
/// status did not change, as Kubernetes conventions require.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let keep_time = existing.status == new.status;
            let previous = existing.last_transition_time.clone();
            *existing = new;
            if keep_time {
                existing.last_transition_time = previous;
            }
        }
        None => conditions.push(new),
    }
}

/// Implements [`ConditionsStatus`] for a status struct with `conditions` and `observed_generation`.
macro_rules! impl_conditions_status {
    ($status:ty) => {
        impl $crate::common::ConditionsStatus for $status {
            fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
                &self.conditions
            }
            fn conditions_mut(
                &mut self,
            ) -> &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
                &mut self.conditions
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }
    };
}
pub(crate) use impl_conditions_status;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            ready_condition(false, "Pending", "", Some(1), at(10)),
        );
        set_condition(
            &mut conditions,
            ready_condition(false, "StillPending", "", Some(2), at(20)),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "StillPending");
        assert_eq!(conditions[0].last_transition_time, at(10));
        set_condition(
            &mut conditions,
            ready_condition(true, "Reconciled", "", Some(2), at(30)),
        );
        assert_eq!(conditions[0].last_transition_time, at(30));
    }
}
