//! The one judge of keygate manifests: what the API server does with a keygate object on
//! `kubectl apply` — structural defaulting, OpenAPI schema validation with `kubectl`'s strict
//! field validation, then the CEL rules — driven by the generated CRDs themselves, plus the
//! few `metadata` rules every Kubernetes object obeys and no CRD schema can state.
//!
//! The operator's directory source (`keygate dev`, `keygate operator --manifests`) judges
//! with it, so a folder of manifests refuses exactly what the cluster refuses: there is no
//! second copy of the schema's patterns, bounds and rules to drift.

use std::fmt;
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::{API_VERSION, GROUP, Resource};

/// One rule an object breaks, as the API server would report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path of the offending field in the API server's spelling (`spec.permissions[1]`);
    /// empty when the rule is about the whole object.
    pub field: String,
    /// What the rule says, e.g. `"Users.Read" does not match "^[a-z0-9][a-z0-9._:-]*$"`.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every violation of one object (never empty), shown `; `-separated on one line so it fits
/// a status condition's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, violation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

/// Why the judge refused an object.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The object breaks rules of its CRD (or of `metadata`); `kubectl apply` refuses it too.
    #[error("{kind} {name:?} is invalid: {violations}")]
    Invalid {
        /// The object's `kind`.
        kind: String,
        /// The object's `metadata.name`, empty when absent.
        name: String,
        /// Every rule it breaks.
        violations: Violations,
    },

    /// No keygate CRD serves the object's `apiVersion` and `kind`.
    #[error(
        "no keygate CRD serves apiVersion {api_version:?} kind {kind:?}; \
         this build serves {API_VERSION} Tenant, IdentityProvider, Role, ApiKey and OAuthClient"
    )]
    NoCrd {
        /// The object's `apiVersion`, empty when absent.
        api_version: String,
        /// The object's `kind`, empty when absent.
        kind: String,
    },

    /// A generated CRD schema does not compile into a validator: a bug in this crate's types,
    /// which its tests catch before a release.
    #[error("the {kind} CRD schema cannot be compiled into a validator: {reason}")]
    Schema {
        /// The CRD's kind.
        kind: String,
        /// What the schema compiler reported.
        reason: String,
    },

    /// A typed resource could not be rendered as JSON to be judged.
    #[error("{kind} {name:?} cannot be rendered as JSON to be judged")]
    Render {
        /// The resource's `kind`.
        kind: &'static str,
        /// The resource's `metadata.name`.
        name: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
}

impl AdmissionError {
    /// The broken rules when the object itself is at fault; empty for the other errors.
    pub fn violations(&self) -> &[Violation] {
        match self {
            Self::Invalid { violations, .. } => &violations.0,
            _ => &[],
        }
    }
}

/// Judges a typed resource as the API server judges its creation. Its `status` is ignored,
/// as the API server ignores it outside the status subresource.
pub fn admit(resource: &Resource) -> Result<(), AdmissionError> {
    let rendered = match resource {
        Resource::Tenant(r) => serde_json::to_value(r),
        Resource::IdentityProvider(r) => serde_json::to_value(r),
        Resource::Role(r) => serde_json::to_value(r),
        Resource::ApiKey(r) => serde_json::to_value(r),
        Resource::OAuthClient(r) => serde_json::to_value(r),
    };
    let mut object = rendered.map_err(|source| AdmissionError::Render {
        kind: resource.kind(),
        name: resource.name().to_owned(),
        source,
    })?;
    if let Some(fields) = object.as_object_mut() {
        fields.remove("status");
    }
    // The verdict is a function of the rendered object alone (the CRDs are compiled into the
    // binary), so an object accepted once is accepted again without running its CEL rules:
    // resyncs judge the same unchanged resources on every pass. Refusals are not remembered.
    let rendered = object.to_string();
    if ACCEPTED.lock().is_ok_and(|seen| seen.contains(&rendered)) {
        return Ok(());
    }
    judge()?.admit(&object, None)?;
    if let Ok(mut seen) = ACCEPTED.lock() {
        if seen.len() >= ACCEPTED_MEMORY {
            seen.clear();
        }
        seen.insert(rendered);
    }
    Ok(())
}

/// Rendered objects [`admit`] accepted, so unchanged resources are not judged again.
static ACCEPTED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Most accepted objects remembered (about a kilobyte each); past it the memory starts over.
const ACCEPTED_MEMORY: usize = 50_000;

/// Judges an object as the API server judges its creation (`old` = `None`) or an update from
/// `old` to it (transition rules such as `self == oldSelf` apply only then). `status` is
/// ignored, as the API server ignores it outside the status subresource.
pub fn admit_object(object: &Value, old: Option<&Value>) -> Result<(), AdmissionError> {
    let object = without_status(object);
    let old = old.map(without_status);
    judge()?.admit(&object, old.as_deref())
}

/// The generated CRDs compiled once for the life of the process: the directory source judges
/// every manifest of every pass, which must stay cheap.
struct Judge {
    kinds: Vec<Kind>,
    cel: kube_cel::Validator,
}

/// One CRD, ready to judge objects of its kind.
struct Kind {
    name: String,
    /// The `openAPIV3Schema`, for structural defaulting.
    schema: Value,
    /// Its CEL rules, compiled.
    rules: kube_cel::CompiledSchema,
    /// The schema as Draft 4 with unknown fields forbidden, compiled.
    strict: jsonschema::Validator,
}

fn judge() -> Result<&'static Judge, AdmissionError> {
    static JUDGE: OnceLock<Result<Judge, (String, String)>> = OnceLock::new();
    JUDGE
        .get_or_init(Judge::new)
        .as_ref()
        .map_err(|(kind, reason)| AdmissionError::Schema {
            kind: kind.clone(),
            reason: reason.clone(),
        })
}

impl Judge {
    fn new() -> Result<Self, (String, String)> {
        Ok(Self {
            kinds: crate::crds()
                .iter()
                .map(Kind::compile)
                .collect::<Result<_, _>>()?,
            cel: kube_cel::Validator::new(),
        })
    }

    /// [`admit_object`] for objects without `status`.
    fn admit(&self, object: &Value, old: Option<&Value>) -> Result<(), AdmissionError> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let Some(crd) = self
            .kinds
            .iter()
            .find(|k| k.name == kind && api_version == API_VERSION)
        else {
            return Err(AdmissionError::NoCrd {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            });
        };
        let mut violations = metadata_violations(object);
        let defaulted = kube_cel::apply_defaults(&crd.schema, object);
        // Listing errors costs more than a yes/no answer, and most objects pass.
        if !crd.strict.is_valid(&defaulted) {
            violations.extend(crd.strict.iter_errors(&defaulted).map(|error| Violation {
                field: field_path(&error.instance_path().to_string()),
                message: error.to_string(),
            }));
        }
        let root = kube_cel::RootContext {
            api_version: API_VERSION.into(),
            api_group: GROUP.into(),
            kind: kind.into(),
        };
        if let Err(failures) =
            self.cel
                .validate_compiled_with_context(&crd.rules, &defaulted, old, Some(&root))
        {
            violations.extend(failures.into_iter().map(|failure| Violation {
                field: failure.field_path,
                message: failure.message,
            }));
        }
        if violations.is_empty() {
            return Ok(());
        }
        Err(AdmissionError::Invalid {
            kind: kind.to_owned(),
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            violations: Violations(violations),
        })
    }
}

impl Kind {
    /// Compiles one CRD; `Err` holds its kind and what went wrong.
    fn compile(crd: &CustomResourceDefinition) -> Result<Self, (String, String)> {
        let kind = crd.spec.names.kind.clone();
        let failed = |reason: String| (kind.clone(), reason);
        let schema = crd
            .spec
            .versions
            .iter()
            .find_map(|v| v.schema.as_ref()?.open_api_v3_schema.as_ref())
            .ok_or_else(|| failed("it has no openAPIV3Schema".to_owned()))
            .and_then(|schema| serde_json::to_value(schema).map_err(|e| failed(e.to_string())))?;
        let mut draft4 = schema.clone();
        as_draft4(&mut draft4);
        if let Some(root) = draft4["properties"].as_object_mut() {
            root.insert("apiVersion".into(), json!({ "type": "string" }));
            root.insert("kind".into(), json!({ "type": "string" }));
            root.insert("metadata".into(), json!({ "type": "object" }));
        }
        let strict = jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&draft4)
            .map_err(|e| failed(e.to_string()))?;
        let mut rules = kube_cel::compile_schema(&schema);
        only_paths_to_rules(&mut rules);
        Ok(Self {
            rules,
            name: kind,
            schema,
            strict,
        })
    }
}

/// Drops the parts of a compiled schema that hold no CEL rule, keeping whole every subtree
/// below a rule (its formats shape the value the rule sees). kube-cel converts the value below
/// every node it visits, so visiting only the paths to the rules keeps judging a folder of
/// manifests cheap; the verdict is the same, as a node without rules reports nothing (the
/// object is defaulted with the full schema first). Returns whether `node` leads to a rule.
fn only_paths_to_rules(node: &mut kube_cel::CompiledSchema) -> bool {
    if !node.validations.is_empty() {
        return true;
    }
    node.properties
        .retain(|_, child| only_paths_to_rules(child));
    for child in [&mut node.items, &mut node.additional_properties] {
        if child.as_mut().is_some_and(|c| !only_paths_to_rules(c)) {
            *child = None;
        }
    }
    for branches in [&mut node.all_of, &mut node.one_of, &mut node.any_of] {
        branches.retain_mut(only_paths_to_rules);
    }
    !node.properties.is_empty()
        || node.items.is_some()
        || node.additional_properties.is_some()
        || !node.all_of.is_empty()
        || !node.one_of.is_empty()
        || !node.any_of.is_empty()
}

/// The object without `status` (with the status subresource enabled, the API server ignores
/// it on create and update); borrowed when it has none.
fn without_status(object: &Value) -> std::borrow::Cow<'_, Value> {
    match object.as_object() {
        Some(fields) if fields.contains_key("status") => {
            let mut fields = fields.clone();
            fields.remove("status");
            std::borrow::Cow::Owned(Value::Object(fields))
        }
        _ => std::borrow::Cow::Borrowed(object),
    }
}

/// Rewrites OpenAPI v3 idioms into Draft 4: `nullable`, list sets, and strict fields (an
/// object with `properties` takes no others unless it preserves unknown fields).
fn as_draft4(node: &mut Value) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    if object.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(t)) = object.get("type").cloned()
    {
        object.insert("type".into(), json!([t, "null"]));
    }
    if object.get("x-kubernetes-list-type") == Some(&json!("set")) {
        object.insert("uniqueItems".into(), Value::Bool(true));
    }
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if object.contains_key("properties")
        && !preserve
        && !object.contains_key("additionalProperties")
    {
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(children)) = object.get_mut("properties") {
        children.values_mut().for_each(as_draft4);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = object.get_mut(key) {
            as_draft4(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(children)) = object.get_mut(key) {
            children.iter_mut().for_each(as_draft4);
        }
    }
}

/// `/spec/permissions/1` → `spec.permissions[1]`, the API server's spelling.
fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push('[');
            path.push_str(&segment);
            path.push(']');
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    path
}

/// The `metadata` rules the API server applies to every object and no CRD schema can state
/// (the schema sees `metadata` only as an object). A Tenant's stricter name rule is a CEL
/// rule in its CRD.
fn metadata_violations(object: &Value) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut fail = |field: &str, message: &str| {
        violations.push(Violation {
            field: field.to_owned(),
            message: message.to_owned(),
        });
    };
    let metadata = &object["metadata"];
    match metadata["name"].as_str() {
        None | Some("") => fail("metadata.name", "is required"),
        Some(name) if !is_dns_subdomain(name) => fail(
            "metadata.name",
            "must be a DNS subdomain: lowercase letters, digits, '-' and '.'",
        ),
        Some(_) => {}
    }
    match &metadata["namespace"] {
        Value::Null => {}
        Value::String(namespace) if is_dns_label(namespace) => {}
        _ => fail("metadata.namespace", "must be a DNS label"),
    }
    violations
}

/// RFC 1123 label: what Kubernetes requires of a namespace.
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// RFC 1123 subdomain: what Kubernetes requires of a custom resource's name.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn role(name: &str, permissions: Value) -> Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": "Role",
            "metadata": { "name": name, "namespace": "default" },
            "spec": { "tenantRef": { "name": "demo" }, "permissions": permissions },
        })
    }

    #[test]
    fn accepts_a_valid_object_and_names_every_broken_rule() {
        admit_object(&role("viewer", json!(["orders.read"])), None).unwrap();
        let error = admit_object(&role("Viewer", json!(["orders read", "x"])), None).unwrap_err();
        let shown: Vec<String> = error.violations().iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(shown[0].starts_with("metadata.name: must be a DNS subdomain"));
        assert!(
            shown[1].starts_with("spec.permissions[0]: \"orders read\" does not match"),
            "{shown:#?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("Role \"Viewer\" is invalid: metadata.name: "),
            "{message}"
        );
    }

    #[test]
    fn a_remembered_verdict_is_the_judges_verdict() {
        let typed = |permissions: Value| {
            crate::Resource::Role(serde_json::from_value(role("cached", permissions)).unwrap())
        };
        for _ in 0..2 {
            admit(&typed(json!(["orders.read"]))).unwrap();
            let refused = admit(&typed(json!(["orders read"]))).unwrap_err();
            assert_eq!(refused.violations().len(), 1, "{refused}");
        }
        assert!(
            ACCEPTED
                .lock()
                .unwrap()
                .iter()
                .any(|seen| seen.contains("\"cached\"") && seen.contains("orders.read")),
            "the accepted object is remembered"
        );
    }

    #[test]
    fn ignores_status_as_the_api_server_does() {
        let mut object = role("viewer", json!(["orders.read"]));
        object["status"] = json!({ "anything": "at all" });
        admit_object(&object, None).unwrap();
    }

    #[test]
    fn refuses_kinds_no_crd_serves() {
        let mut object = role("viewer", json!([]));
        object["apiVersion"] = json!("keygate.dev/v1");
        let error = admit_object(&object, None).unwrap_err();
        assert!(matches!(error, AdmissionError::NoCrd { .. }), "{error}");
    }

    #[test]
    fn metadata_rules() {
        let names = |object: &Value| -> Vec<String> {
            metadata_violations(object)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert!(names(&json!({ "metadata": { "name": "a.b-1" } })).is_empty());
        assert_eq!(
            names(&json!({ "metadata": {} })),
            ["metadata.name: is required"]
        );
        assert_eq!(
            names(&json!({ "metadata": { "name": "ok", "namespace": "Team_A" } })),
            ["metadata.namespace: must be a DNS label"]
        );
        assert!(is_dns_label("a-1") && !is_dns_label("-a") && !is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("demo-api-key") && !is_dns_subdomain("a..b"));
    }

    #[test]
    fn field_paths_are_spelled_as_the_api_server_does() {
        assert_eq!(field_path("/spec/permissions/1"), "spec.permissions[1]");
        assert_eq!(field_path("/spec/a~1b/c~0d"), "spec.a/b.c~d");
        assert_eq!(field_path(""), "");
    }
}
