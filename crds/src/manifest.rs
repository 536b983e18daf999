//! Reading keygate resources from multi-document YAML, as the operator's directory source does.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::{API_VERSION, ApiKey, Error, GROUP, IdentityProvider, OAuthClient, Role, Tenant};

/// One keygate resource of any kind, as read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// A `Tenant`.
    Tenant(Tenant),
    /// An `IdentityProvider`.
    IdentityProvider(IdentityProvider),
    /// A `Role`.
    Role(Role),
    /// An `ApiKey`.
    ApiKey(ApiKey),
    /// An `OAuthClient`.
    OAuthClient(OAuthClient),
}

/// The kinds [`load_manifests`] understands.
const KINDS: [&str; 5] = [
    "Tenant",
    "IdentityProvider",
    "Role",
    "ApiKey",
    "OAuthClient",
];

impl Resource {
    /// The resource's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tenant(_) => "Tenant",
            Self::IdentityProvider(_) => "IdentityProvider",
            Self::Role(_) => "Role",
            Self::ApiKey(_) => "ApiKey",
            Self::OAuthClient(_) => "OAuthClient",
        }
    }

    /// The resource's `metadata`.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Self::Tenant(r) => &r.metadata,
            Self::IdentityProvider(r) => &r.metadata,
            Self::Role(r) => &r.metadata,
            Self::ApiKey(r) => &r.metadata,
            Self::OAuthClient(r) => &r.metadata,
        }
    }

    /// The resource's `metadata.name` (empty when missing, which [`crate::admit`] refuses).
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The resource's `metadata.namespace`, if the manifest sets one.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// Name of the Tenant the resource belongs to (its own name for a Tenant).
    pub fn tenant_name(&self) -> &str {
        match self {
            Self::Tenant(_) => self.name(),
            Self::IdentityProvider(r) => &r.spec.tenant_ref.name,
            Self::Role(r) => &r.spec.tenant_ref.name,
            Self::ApiKey(r) => &r.spec.tenant_ref.name,
            Self::OAuthClient(r) => &r.spec.tenant_ref.name,
        }
    }
}

/// Reads every keygate resource of a multi-document YAML text.
///
/// Documents of other API groups (an Ingress next to the keygate resources, say) are skipped;
/// empty documents too. A keygate.dev document of an unknown version or kind, one that does
/// not match its type, or one with a field the type does not have is an error naming the
/// document's position.
pub fn load_manifests(yaml: &str) -> Result<Vec<Resource>, Error> {
    let documents: Vec<Spanned<Value>> =
        serde_saphyr::from_multiple(yaml).map_err(|e| Error::Yaml(Box::new(e)))?;
    let mut resources = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let position = Position {
            document: index + 1,
            line: document.referenced.line(),
        };
        if let Some(resource) = read_document(document.value, &position)? {
            resources.push(resource);
        }
    }
    Ok(resources)
}

/// Where a document sits in its file, for error messages.
struct Position {
    document: usize,
    line: u64,
}

fn read_document(value: Value, at: &Position) -> Result<Option<Resource>, Error> {
    let not_an_object = |reason: &str| Error::NotAnObject {
        document: at.document,
        line: at.line,
        reason: reason.to_owned(),
    };
    if value.is_null() {
        return Ok(None);
    }
    let Some(object) = value.as_object() else {
        return Err(not_an_object("the document is not a mapping"));
    };
    let api_version = match object.get("apiVersion") {
        Some(Value::String(v)) => v.clone(),
        _ => return Err(not_an_object("apiVersion is missing or not a string")),
    };
    let kind = match object.get("kind") {
        Some(Value::String(k)) => k.clone(),
        _ => return Err(not_an_object("kind is missing or not a string")),
    };
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    if group != GROUP {
        return Ok(None);
    }
    let resource = match (api_version.as_str(), kind.as_str()) {
        (API_VERSION, "Tenant") => Resource::Tenant(typed(value, &kind, at)?),
        (API_VERSION, "IdentityProvider") => Resource::IdentityProvider(typed(value, &kind, at)?),
        (API_VERSION, "Role") => Resource::Role(typed(value, &kind, at)?),
        (API_VERSION, "ApiKey") => Resource::ApiKey(typed(value, &kind, at)?),
        (API_VERSION, "OAuthClient") => Resource::OAuthClient(typed(value, &kind, at)?),
        _ => {
            return Err(Error::UnknownKind {
                document: at.document,
                line: at.line,
                api_version,
                kind,
                expected: KINDS.map(|k| format!("{API_VERSION}/{k}")).join(", "),
            });
        }
    };
    Ok(Some(resource))
}

/// Deserializes a document into its type and refuses fields the type does not know, the way
/// `kubectl apply` (strict field validation) does.
fn typed<T: DeserializeOwned + Serialize>(
    value: Value,
    kind: &str,
    at: &Position,
) -> Result<T, Error> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let resource: T =
        serde_json::from_value(value.clone()).map_err(|source| Error::InvalidDocument {
            document: at.document,
            line: at.line,
            kind: kind.to_owned(),
            name: name.clone(),
            hint: hint_for(&source),
            source,
        })?;
    let round_trip = serde_json::to_value(&resource).map_err(|source| Error::InvalidDocument {
        document: at.document,
        line: at.line,
        kind: kind.to_owned(),
        name: name.clone(),
        hint: "",
        source,
    })?;
    if let Some(path) = unknown_field(&value, &round_trip, String::new()) {
        return Err(Error::UnknownField {
            document: at.document,
            line: at.line,
            kind: kind.to_owned(),
            name,
            path,
        });
    }
    Ok(resource)
}

/// Advice for the classic YAML trap: a bare `off` (or `on`, `yes`, `no`) is a boolean.
fn hint_for(error: &serde_json::Error) -> &'static str {
    let message = error.to_string();
    if message.contains("invalid type: boolean") && message.contains("expected") {
        "; YAML reads a bare off/on/yes/no as a boolean, so quote enum values such as \"off\""
    } else {
        ""
    }
}

/// First field present in `input` but dropped by the typed round trip, as a dotted path.
///
/// A known field always survives the round trip unless it was empty (`null`, `[]`, `{}`),
/// which serialization may leave out; those are not reported.
fn unknown_field(input: &Value, output: &Value, path: String) -> Option<String> {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => input.iter().find_map(|(key, value)| {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match output.get(key) {
                Some(out) => unknown_field(value, out, child),
                None if is_empty(value) => None,
                None => Some(child),
            }
        }),
        (Value::Array(input), Value::Array(output)) => input
            .iter()
            .zip(output)
            .enumerate()
            .find_map(|(i, (value, out))| unknown_field(value, out, format!("{path}[{i}]"))),
        _ => None,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const TENANT: &str =
        "apiVersion: keygate.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: acme\nspec: {}\n";

    #[test]
    fn skips_other_groups_and_empty_documents() {
        let yaml = format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n---\n{TENANT}---\n"
        );
        let resources = load_manifests(&yaml).unwrap();
        assert_eq!(resources.len(), 1);
        assert_eq!(resources[0].kind(), "Tenant");
        assert_eq!(resources[0].name(), "acme");
        assert_eq!(resources[0].tenant_name(), "acme");
    }

    #[test]
    fn names_the_document_of_an_unknown_kind() {
        let yaml = format!(
            "{TENANT}---\napiVersion: keygate.dev/v1alpha1\nkind: Group\nmetadata:\n  name: x\n"
        );
        let message = load_manifests(&yaml).unwrap_err().to_string();
        assert!(message.starts_with("document 2 (line 7)"), "{message}");
        assert!(message.contains("keygate.dev/v1alpha1/Group"), "{message}");
    }

    #[test]
    fn rejects_an_unknown_version() {
        let yaml = TENANT.replace("v1alpha1", "v1");
        let message = load_manifests(&yaml).unwrap_err().to_string();
        assert!(
            message.contains("unknown keygate resource keygate.dev/v1/Tenant"),
            "{message}"
        );
    }

    #[test]
    fn rejects_unknown_fields_with_their_path() {
        let yaml = TENANT.replace("spec: {}", "spec:\n  tokens:\n    accesTokenTtl: 5m\n");
        let message = load_manifests(&yaml).unwrap_err().to_string();
        assert!(
            message.contains("unknown field spec.tokens.accesTokenTtl"),
            "{message}"
        );
    }

    #[test]
    fn reports_a_bad_enum_value() {
        let yaml = TENANT.replace("spec: {}", "spec:\n  deletionPolicy: Purge\n");
        let message = load_manifests(&yaml).unwrap_err().to_string();
        assert!(message.contains("unknown variant `Purge`"), "{message}");
    }
}
