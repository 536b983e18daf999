//! `Role`: a named set of permissions of a tenant and the subjects that hold it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{PERMISSION_PATTERN, TenantRef, conditions_schema, impl_conditions_status};

/// Desired state of a Role: permissions, and who holds them.
// `printcolumn(type_ = "string", ...)` repeats by design; clippy mistakes it for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keygate.dev",
    version = "v1alpha1",
    kind = "Role",
    namespaced,
    status = "RoleStatus",
    shortname = "kgrole",
    category = "keygate",
    derive = "PartialEq",
    doc = "A named set of permissions within a tenant, bound to users, groups and upstream \
           identity-provider groups.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef.name"),
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
pub struct RoleSpec {
    /// The Tenant (same namespace) this role belongs to. Immutable.
    pub tenant_ref: TenantRef,
    /// What the role is for, for the people who read the manifest (`kubectl describe`);
    /// stored with the role, nothing acts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Permissions granted, e.g. `orders.read`: lowercase letters, digits, `.`, `_`, `:`, `-`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(min = 1, max = 128), pattern(PERMISSION_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub permissions: Vec<String>,
    /// Who holds the role.
    #[serde(default)]
    pub subjects: Subjects,
}

/// The holders of a role.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Subjects {
    /// Users by email address; a binding holds once the person has verified the address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 1024),
        inner(email, length(max = 320)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub users: Vec<String>,
    /// keygate groups by name. This version puts accounts in one group only,
    /// `keygate-admins` (the bootstrap administrator's): naming any other is refused
    /// (Ready=False, reason NotSupported) and nothing is written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(min = 1, max = 256)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub groups: Vec<String>,
    /// Groups as an upstream identity provider reports them (its groups claim; GitHub: the
    /// person's organizations), as of the person's last sign-in through it. A Role naming a
    /// provider its tenant does not have is Ready=False, reason ProviderNotFound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub idp_groups: Vec<IdpGroup>,
}

/// A group of an upstream identity provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdpGroup {
    /// Name of an IdentityProvider in the same namespace.
    #[schemars(
        length(min = 1, max = 253),
        pattern(crate::common::DNS_SUBDOMAIN_PATTERN)
    )]
    pub identity_provider: String,
    /// The group as the provider names it (a claim value or SAML attribute value).
    #[schemars(length(min = 1, max = 512))]
    pub group: String,
}

/// Observed state of a Role.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// `Ready` and other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the operator last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl_conditions_status!(RoleStatus);
