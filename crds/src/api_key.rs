//! `ApiKey`: a machine credential of a tenant; the operator writes its raw value to a Secret.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{
        DNS_SUBDOMAIN_PATTERN, PERMISSION_PATTERN, TenantRef, conditions_schema,
        impl_conditions_status,
    },
    duration::GoDuration,
};

/// An OAuth scope token (RFC 6749 §3.3): printable ASCII except space, `"` and `\`.
pub const SCOPE_PATTERN: &str = r"^[\x21\x23-\x5B\x5D-\x7E]+$";

/// Desired state of an ApiKey: what it grants and where its value is written.
// `printcolumn(type_ = "string", ...)` repeats by design; clippy mistakes it for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keygate.dev",
    version = "v1alpha1",
    kind = "ApiKey",
    namespaced,
    status = "ApiKeyStatus",
    shortname = "kgkey",
    category = "keygate",
    derive = "PartialEq",
    doc = "An API key of a tenant. The operator generates the key, stores only its prefix and \
           hash, and writes the raw value to the Secret named by spec.secretName.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef.name"),
    printcolumn(name = "Prefix", type_ = "string", json_path = ".status.keyPrefix"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
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
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    /// The Tenant (same namespace) the key authenticates against. Immutable.
    pub tenant_ref: TenantRef,
    /// Secret (same namespace) the operator writes the raw key to, under the key `apiKey`.
    /// The operator owns that Secret; do not create it yourself.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
    /// Names of Roles (same namespace, same tenant) whose permissions the key carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub roles: Vec<String>,
    /// Extra permissions granted directly, e.g. `orders.read`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(min = 1, max = 128), pattern(PERMISSION_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub permissions: Vec<String>,
    /// OAuth scopes the key carries (the `scope` a forward-auth check may require).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 256), pattern(SCOPE_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub scopes: Vec<String>,
    /// When the key stops working (RFC 3339, e.g. `2026-01-01T00:00:00Z`); never when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Automatic rotation: a new value every `every`; the previous one keeps working for
    /// `gracePeriod` so clients can pick up the new Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

/// Automatic rotation of an API key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.gracePeriod) < duration(self.every)")
    .message("rotation.gracePeriod must be shorter than rotation.every"))]
pub struct Rotation {
    /// Period between two key values (Go duration, e.g. `720h`).
    pub every: GoDuration,
    /// How long the previous value stays valid after a rotation (e.g. `24h`).
    pub grace_period: GoDuration,
}

impl Rotation {
    /// Period between two key values.
    pub fn period(&self) -> Duration {
        self.every.get()
    }

    /// How long the previous value stays valid after a rotation.
    pub fn grace(&self) -> Duration {
        self.grace_period.get()
    }
}

/// Observed state of an ApiKey. Never holds the key itself.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// Public prefix of the current key (`kg_<prefix>_…`), to recognise it in logs and UIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// When the current key value was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<Time>,
    /// When the current key value stops working (expiry or next rotation plus grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Secret the current key value was written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// `Ready` and other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the operator last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl_conditions_status!(ApiKeyStatus);
