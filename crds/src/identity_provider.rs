//! `IdentityProvider`: an upstream identity source (OIDC, GitHub, Google or SAML) of a tenant.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{SecretKeyRef, TenantRef, conditions_schema, impl_conditions_status},
    tenant::HTTP_URL_PATTERN,
};

/// An OIDC issuer: `https://`, or plain `http://` on a loopback host, which only `keygate dev`
/// accepts (the operator in a cluster marks such a provider not Ready).
pub const OIDC_ISSUER_PATTERN: &str =
    r"^(https://[^\s?#]+|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?(/[^\s?#]*)?)$";

/// A DNS domain such as `example.com`.
pub const DOMAIN_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]([-a-z0-9]*[a-z0-9])?$";

/// Desired state of an IdentityProvider: where users of a tenant may sign in upstream.
// `printcolumn(type_ = "string", ...)` repeats by design; clippy mistakes it for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keygate.dev",
    version = "v1alpha1",
    kind = "IdentityProvider",
    namespaced,
    status = "IdentityProviderStatus",
    shortname = "kgidp",
    category = "keygate",
    derive = "PartialEq",
    doc = "An upstream identity provider (OIDC, GitHub, Google or SAML) for a tenant. The \
           operator validates it, stores it with its secret sealed, and reports Ready once \
           people can sign in through it (for OIDC and Google: once the provider's discovery \
           document and keys were fetched; for SAML once the IdP metadata with a signing \
           certificate was read); status.redirectUri (OAuth and OIDC) or status.spEntityId, \
           status.acsUrl and status.spMetadataUrl (SAML) are what to register at the provider.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef.name"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
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
#[x_kube(
    validation = Rule::new("self.type != 'oidc' || has(self.oidc)")
        .message("type oidc needs the oidc settings block"),
    validation = Rule::new("self.type != 'github' || has(self.github)")
        .message("type github needs the github settings block"),
    validation = Rule::new("self.type != 'google' || has(self.google)")
        .message("type google needs the google settings block"),
    validation = Rule::new("self.type != 'saml' || has(self.saml)")
        .message("type saml needs the saml settings block"),
    validation = Rule::new("!has(self.oidc) || self.type == 'oidc'")
        .message("the oidc settings block is only allowed when type is oidc"),
    validation = Rule::new("!has(self.github) || self.type == 'github'")
        .message("the github settings block is only allowed when type is github"),
    validation = Rule::new("!has(self.google) || self.type == 'google'")
        .message("the google settings block is only allowed when type is google"),
    validation = Rule::new("!has(self.saml) || self.type == 'saml'")
        .message("the saml settings block is only allowed when type is saml"),
)]
pub struct IdentityProviderSpec {
    /// The Tenant (same namespace) whose users sign in through this provider. Immutable.
    pub tenant_ref: TenantRef,
    /// Label of the sign-in button, e.g. "Sign in with Acme SSO".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,
    /// Protocol of the provider; exactly the settings block of the same name must be set.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// Settings for a generic OpenID Connect provider (`type: oidc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSettings>,
    /// Settings for GitHub (`type: github`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GithubSettings>,
    /// Settings for Google (`type: google`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleSettings>,
    /// Settings for a SAML 2.0 identity provider (`type: saml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlSettings>,
    /// If not empty, only upstream accounts whose email is in one of these domains may sign in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253), pattern(DOMAIN_PATTERN)))]
    pub allowed_email_domains: Vec<String>,
    /// How a first sign-in meets an existing local account with the same email: `none`
    /// (default: the person signs in locally once to link the two) or `verifiedEmail` (linked
    /// at once when both the provider and the local account have the address verified).
    #[serde(default)]
    pub linking: Linking,
    /// Secret key holding PEM CA certificates to trust for this provider besides the
    /// platform's trust store (providers behind an internal CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<SecretKeyRef>,
}

/// Protocol of an identity provider.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// Generic OpenID Connect.
    Oidc,
    /// GitHub OAuth app.
    Github,
    /// Google OpenID Connect.
    Google,
    /// SAML 2.0.
    Saml,
}

impl ProviderType {
    /// The lowercase name used in manifests and in the matching settings block.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Github => "github",
            Self::Google => "google",
            Self::Saml => "saml",
        }
    }
}

/// How upstream accounts are linked to local users.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Linking {
    /// Never link automatically.
    #[default]
    None,
    /// Link when the provider vouches for the email address.
    VerifiedEmail,
}

/// A generic OpenID Connect provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OidcSettings {
    /// Issuer URL (`https://`; plain `http://` on loopback only under `keygate dev`); discovery
    /// is read from `{issuer}/.well-known/openid-configuration`.
    #[schemars(length(max = 2048), pattern(OIDC_ISSUER_PATTERN))]
    pub issuer: String,
    /// OAuth client id registered at the provider.
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,
    /// Secret key holding the OAuth client secret.
    pub client_secret_ref: SecretKeyRef,
    /// Scopes requested at sign-in (default `openid`, `email`, `profile`).
    #[serde(default = "default_oidc_scopes")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 256)))]
    pub scopes: Vec<String>,
    /// Which ID-token claims carry email, name and groups.
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
}

/// Names of upstream claims or attributes that carry a user's email, name and groups.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMappings {
    /// Claim with the email address (default `email`).
    #[serde(default = "default_email_claim")]
    #[schemars(length(min = 1, max = 256))]
    pub email: String,
    /// Claim with the display name (default `name`).
    #[serde(default = "default_name_claim")]
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Claim with the list of groups (default `groups`).
    #[serde(default = "default_groups_claim")]
    #[schemars(length(min = 1, max = 256))]
    pub groups: String,
}

impl Default for ClaimMappings {
    fn default() -> Self {
        Self {
            email: default_email_claim(),
            name: default_name_claim(),
            groups: default_groups_claim(),
        }
    }
}

/// GitHub as an identity provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GithubSettings {
    /// OAuth app client id.
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,
    /// Secret key holding the OAuth app client secret.
    pub client_secret_ref: SecretKeyRef,
    /// If not empty, only members of these GitHub organizations may sign in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 39)))]
    pub allowed_organizations: Vec<String>,
}

/// Google as an identity provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GoogleSettings {
    /// OAuth client id.
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,
    /// Secret key holding the OAuth client secret.
    pub client_secret_ref: SecretKeyRef,
    /// If set, only accounts of this Google Workspace domain (`hd` claim) may sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), pattern(DOMAIN_PATTERN))]
    pub hosted_domain: Option<String>,
}

/// A SAML 2.0 identity provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SamlSettings {
    /// The IdP's metadata, inline or as a URL.
    pub metadata: SamlMetadata,
    /// keygate's SAML service-provider entity id at this IdP.
    #[schemars(length(min = 1, max = 1024))]
    pub entity_id: String,
    /// Which SAML attributes (by Name or FriendlyName) carry email, name and groups.
    #[serde(default)]
    pub attribute_mapping: ClaimMappings,
}

/// Where the SAML IdP metadata comes from; exactly one of `inline` and `url`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.inline) != has(self.url)")
    .message("saml.metadata needs exactly one of inline or url"))]
pub struct SamlMetadata {
    /// The metadata XML document itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub inline: Option<String>,
    /// URL of the IdP's metadata (`https://`; plain `http://` on loopback only under `keygate
    /// dev`), fetched with the provider's CA bundle and read again every 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), pattern(HTTP_URL_PATTERN))]
    pub url: Option<String>,
}

/// Observed state of an IdentityProvider.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProviderStatus {
    /// `Ready` and other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the operator last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The redirect (callback) URI to register at the provider for this keygate (OAuth and
    /// OIDC providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// keygate's service-provider entity id to register at a SAML IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_entity_id: Option<String>,
    /// The assertion consumer service URL (HTTP-POST) to register at a SAML IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acs_url: Option<String>,
    /// keygate's service-provider metadata for a SAML IdP to import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_metadata_url: Option<String>,
}

impl_conditions_status!(IdentityProviderStatus);

impl IdentityProviderSpec {
    /// The Secret reference holding the OAuth client secret, for the OAuth-based types.
    pub fn client_secret_ref(&self) -> Option<&SecretKeyRef> {
        match self.provider_type {
            ProviderType::Oidc => self.oidc.as_ref().map(|s| &s.client_secret_ref),
            ProviderType::Github => self.github.as_ref().map(|s| &s.client_secret_ref),
            ProviderType::Google => self.google.as_ref().map(|s| &s.client_secret_ref),
            ProviderType::Saml => None,
        }
    }
}

fn default_oidc_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_email_claim() -> String {
    "email".to_owned()
}
fn default_name_claim() -> String {
    "name".to_owned()
}
fn default_groups_claim() -> String {
    "groups".to_owned()
}
