//! A stand-in for the API server's admission of custom resources: defaulting, OpenAPI schema
//! validation (with `kubectl`'s strict field validation) and CEL rules, all driven by the
//! generated CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// The `openAPIV3Schema` of a CRD's only version, as JSON.
pub fn open_api_schema(crd: &CustomResourceDefinition) -> Value {
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("every CRD version has an openAPIV3Schema");
    serde_json::to_value(schema).unwrap()
}

/// The generated CRDs, ready to judge objects: schema validation (with `kubectl`'s strict
/// field validation) and CEL rules, after defaulting — the API server's admission order.
pub struct ApiServer {
    kinds: Vec<Kind>,
    cel: kube_cel::Validator,
}

struct Kind {
    name: String,
    schema: Value,
    strict: jsonschema::Validator,
}

impl ApiServer {
    pub fn new() -> Self {
        let kinds = keygate_crds::crds()
            .iter()
            .map(|crd| {
                let schema = open_api_schema(crd);
                let mut draft4 = schema.clone();
                as_draft4(&mut draft4);
                let root = draft4["properties"].as_object_mut().unwrap();
                root.insert("apiVersion".into(), json!({ "type": "string" }));
                root.insert("kind".into(), json!({ "type": "string" }));
                root.insert("metadata".into(), json!({ "type": "object" }));
                let strict = jsonschema::draft4::options()
                    .should_validate_formats(true)
                    .build(&draft4)
                    .unwrap();
                Kind {
                    name: crd.spec.names.kind.clone(),
                    schema,
                    strict,
                }
            })
            .collect();
        Self {
            kinds,
            cel: kube_cel::Validator::new(),
        }
    }

    /// Every error the API server would report for creating `object` (or updating `old` to it),
    /// as `<field path>: <message>`.
    pub fn admit(&self, object: &Value, old: Option<&Value>) -> Vec<String> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let Some(crd) = self.kinds.iter().find(|k| k.name == kind) else {
            return vec![format!("no CRD for kind {kind:?}")];
        };
        if object["apiVersion"] != "keygate.dev/v1alpha1" {
            return vec![format!("no CRD serves apiVersion {}", object["apiVersion"])];
        }
        let defaulted = kube_cel::apply_defaults(&crd.schema, object);
        let mut errors: Vec<String> = crd
            .strict
            .iter_errors(&defaulted)
            .map(|e| format!("{}: {}", field_path(&e.instance_path().to_string()), e))
            .collect();
        let root = kube_cel::RootContext {
            api_version: "keygate.dev/v1alpha1".into(),
            api_group: "keygate.dev".into(),
            kind: kind.into(),
        };
        if let Err(failures) = self
            .cel
            .validate_with_context(&crd.schema, object, old, Some(&root))
        {
            errors.extend(failures.iter().map(ToString::to_string));
        }
        errors
    }
}

/// Rewrites OpenAPI v3 idioms into Draft 4: `nullable`, list sets, and strict fields.
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
    for key in ["properties"] {
        if let Some(Value::Object(children)) = object.get_mut(key) {
            children.values_mut().for_each(as_draft4);
        }
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
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(segment);
        }
    }
    path
}
