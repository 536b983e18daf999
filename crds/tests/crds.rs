//! The generated CRDs: drift against the chart, structural schemas, and the judge of manifests
//! ([`keygate_crds::admit_object`]: OpenAPI schema + CEL rules, as an API server) that the
//! directory source shares.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::{
    fs,
    path::{Path, PathBuf},
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// The `openAPIV3Schema` of a CRD's only version, as JSON.
fn open_api_schema(crd: &CustomResourceDefinition) -> Value {
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("every CRD version has an openAPIV3Schema");
    serde_json::to_value(schema).unwrap()
}

/// Every error the judge reports for creating `object` (or updating `old` to it), as
/// `<field path>: <message>`; empty when it is admitted.
fn judge(object: &Value, old: Option<&Value>) -> Vec<String> {
    match keygate_crds::admit_object(object, old) {
        Ok(()) => Vec::new(),
        Err(error) if error.violations().is_empty() => vec![error.to_string()],
        Err(error) => error.violations().iter().map(ToString::to_string).collect(),
    }
}

/// What the directory source decides about one file: every error of loading it (typed, as
/// `load_manifests` does) and of judging each resource it holds; empty when it is accepted.
fn directory_source(text: &str) -> Vec<String> {
    match keygate_crds::load_manifests(text) {
        Err(error) => vec![error.to_string()],
        Ok(resources) => resources
            .iter()
            .filter_map(|resource| keygate_crds::admit(resource).err())
            .map(|error| error.to_string())
            .collect(),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn blessing() -> bool {
    std::env::var_os("KEYGATE_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn chart_crds_match_the_generated_ones() {
    let dir = repo_root().join("charts/keygate/crds");
    let files = keygate_crds::crd_files().unwrap();
    if blessing() {
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                fs::remove_file(path).unwrap();
            }
        }
        for (name, yaml) in &files {
            fs::write(dir.join(name), yaml).unwrap();
        }
    }
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "charts/keygate/crds/ holds other files than the generated CRDs; \
         regenerate with KEYGATE_BLESS=1 cargo test -p keygate-crds"
    );
    for (name, yaml) in &files {
        let committed = fs::read_to_string(dir.join(name)).unwrap();
        assert!(
            committed == *yaml,
            "charts/keygate/crds/{name} differs from the CRD the code generates; \
             regenerate with KEYGATE_BLESS=1 cargo test -p keygate-crds"
        );
    }
    let joined: Vec<&str> = files.iter().map(|(_, yaml)| yaml.as_str()).collect();
    assert_eq!(keygate_crds::crds_yaml().unwrap(), joined.join("---\n"));
}

// ---------------------------------------------------------------------------------------------
// Structural schemas
// ---------------------------------------------------------------------------------------------

/// Walks a schema and reports every node the API server would call non-structural.
fn structural_problems(node: &Value, path: &str, in_junctor: bool, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        problems.push(format!("{path}: not a schema object"));
        return;
    };
    let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_junctor {
        for forbidden in [
            "type",
            "description",
            "default",
            "nullable",
            "additionalProperties",
        ] {
            if object.contains_key(forbidden) {
                problems.push(format!(
                    "{path}: {forbidden} is not allowed inside allOf/anyOf/oneOf/not"
                ));
            }
        }
    } else {
        match object.get("type") {
            Some(Value::String(t)) if !t.is_empty() => {}
            Some(other) => problems.push(format!(
                "{path}: type must be one non-empty string, got {other}"
            )),
            None if int_or_string || preserve => {}
            None if object.is_empty() => problems.push(format!("{path}: untyped {{}}")),
            None => problems.push(format!("{path}: no type")),
        }
    }
    if object.contains_key("$ref") {
        problems.push(format!("{path}: $ref is not allowed"));
    }
    if object.contains_key("properties") && object.get("additionalProperties").is_some() {
        problems.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if let Some(Value::Object(properties)) = object.get("properties") {
        for (name, child) in properties {
            structural_problems(child, &format!("{path}.{name}"), in_junctor, problems);
        }
    }
    if let Some(items) = object.get("items") {
        structural_problems(items, &format!("{path}[]"), in_junctor, problems);
    }
    if let Some(additional @ Value::Object(_)) = object.get("additionalProperties") {
        structural_problems(additional, &format!("{path}{{*}}"), in_junctor, problems);
    }
    // `x-kubernetes-int-or-string` sanctions its own `anyOf: [{type: integer}, {type: string}]`.
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if int_or_string {
            continue;
        }
        if let Some(Value::Array(branches)) = object.get(junctor) {
            for (i, branch) in branches.iter().enumerate() {
                structural_problems(branch, &format!("{path}.{junctor}[{i}]"), true, problems);
            }
        }
    }
    if let Some(not) = object.get("not") {
        structural_problems(not, &format!("{path}.not"), true, problems);
    }
}

#[test]
fn every_schema_is_structural() {
    let mut problems = Vec::new();
    for crd in keygate_crds::crds() {
        let schema = open_api_schema(&crd);
        let name = crd.metadata.name.clone().unwrap_or_default();
        assert_eq!(
            schema["type"], "object",
            "{name}: the root must be an object"
        );
        structural_problems(&schema, &name, false, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "non-structural schema nodes:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_walker_catches_non_structural_nodes() {
    let bad = json!({
        "type": "object",
        "properties": {
            "anything": {},
            "either": { "anyOf": [{ "type": "string" }, { "type": "integer" }] },
            "fine": { "type": "string" },
            "quantity": { "x-kubernetes-int-or-string": true, "anyOf": [{ "type": "integer" }, { "type": "string" }] }
        }
    });
    let mut problems = Vec::new();
    structural_problems(&bad, "root", false, &mut problems);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("root.anything: untyped"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("root.either: no type"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("either.anyOf[0]: type is not allowed"))
    );
    assert!(!problems.iter().any(|p| p.contains("quantity")));
}

#[test]
fn every_cel_rule_compiles() {
    fn walk(compiled: &kube_cel::CompiledSchema, path: &str, errors: &mut Vec<String>) {
        for error in compiled.compilation_errors() {
            errors.push(format!("{path}: {error}"));
        }
        for (name, child) in &compiled.properties {
            walk(child, &format!("{path}.{name}"), errors);
        }
        if let Some(items) = &compiled.items {
            walk(items, &format!("{path}[]"), errors);
        }
    }
    let mut errors = Vec::new();
    let mut rules = 0;
    for crd in keygate_crds::crds() {
        let schema = open_api_schema(&crd);
        rules += serde_json::to_string(&schema)
            .unwrap()
            .matches("\"rule\"")
            .count();
        walk(
            &kube_cel::compile_schema(&schema),
            &crd.spec.names.kind,
            &mut errors,
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        rules >= 15,
        "expected the CEL rules of all five kinds, found {rules}"
    );
}

#[test]
fn names_columns_and_subresources() {
    let expected = [
        ("tenants.keygate.dev", "Tenant", "kgt", "Issuer"),
        (
            "identityproviders.keygate.dev",
            "IdentityProvider",
            "kgidp",
            "Type",
        ),
        ("roles.keygate.dev", "Role", "kgrole", "Tenant"),
        ("apikeys.keygate.dev", "ApiKey", "kgkey", "Prefix"),
        (
            "oauthclients.keygate.dev",
            "OAuthClient",
            "kgclient",
            "Client ID",
        ),
    ];
    let crds = keygate_crds::crds();
    assert_eq!(crds.len(), expected.len());
    for (crd, (name, kind, short, column)) in crds.iter().zip(expected) {
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        assert_eq!(crd.spec.group, "keygate.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_owned()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["keygate".to_owned()][..])
        );
        assert_eq!(crd.spec.versions.len(), 1);
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            "{name}: status subresource"
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        for wanted in ["Ready", "Reason", "Age", column] {
            assert!(
                columns.contains(&wanted),
                "{name}: printer column {wanted} missing in {columns:?}"
            );
        }
        let schema = open_api_schema(crd);
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(
            status["conditions"]["x-kubernetes-list-type"], "map",
            "{name}"
        );
        assert_eq!(
            status["conditions"]["x-kubernetes-list-map-keys"],
            json!(["type"]),
            "{name}"
        );
        assert_eq!(status["observedGeneration"]["type"], "integer", "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Judging manifests the way an API server would
// ---------------------------------------------------------------------------------------------

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text).unwrap()
}

fn is_keygate(document: &Value) -> bool {
    document["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("keygate.dev/"))
}

/// The manifests under `dir`; a `helm/` folder holds chart values files, not manifests.
fn yaml_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "helm") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_example_is_accepted_by_the_judge_and_the_directory_source() {
    let files = yaml_files_under(&repo_root().join("examples"));
    let mut kinds_seen = std::collections::BTreeSet::new();
    let mut count = 0;
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(repo_root()).unwrap_or(file).display();
        for document in yaml_documents(&text).iter().filter(|d| is_keygate(d)) {
            let errors = judge(document, None);
            assert!(
                errors.is_empty(),
                "{shown}: the API server would refuse {}:\n{}",
                document["metadata"]["name"],
                errors.join("\n")
            );
            // Re-applying the same object is an update that every transition rule accepts.
            let errors = judge(document, Some(document));
            assert!(
                errors.is_empty(),
                "{shown}: re-applying is refused:\n{}",
                errors.join("\n")
            );
        }
        let errors = directory_source(&text);
        assert!(
            errors.is_empty(),
            "{shown}: the directory source refuses it:\n{}",
            errors.join("\n")
        );
        for resource in keygate_crds::load_manifests(&text).unwrap() {
            kinds_seen.insert(resource.kind());
            count += 1;
        }
    }
    assert!(
        count >= 5,
        "expected at least the five kinds' resources of examples/dev, found {count}"
    );
    assert_eq!(
        kinds_seen.len(),
        5,
        "examples cover every kind: {kinds_seen:?}"
    );
}

#[test]
fn dev_examples_hold_what_keygate_dev_expects() {
    use keygate_crds::{EmailVerification, Registration, Resource};
    let mut resources = Vec::new();
    for file in yaml_files_under(&repo_root().join("examples/dev")) {
        resources.extend(keygate_crds::load_manifests(&fs::read_to_string(file).unwrap()).unwrap());
    }
    let find = |kind: &str, name: &str| {
        resources
            .iter()
            .find(|r| r.kind() == kind && r.name() == name)
            .unwrap_or_else(|| panic!("examples/dev has no {kind} {name}"))
    };
    let Resource::Tenant(tenant) = find("Tenant", "demo") else {
        unreachable!()
    };
    assert_eq!(tenant.metadata.namespace.as_deref(), Some("default"));
    assert!(tenant.spec.sign_in.password);
    assert_eq!(tenant.spec.sign_in.registration, Registration::Open);
    // Required: demo-admin binds admin@demo.local, and with verification optional anyone
    // could sign up as it (issue 14.2); the link shows in `keygate dev`'s terminal.
    assert_eq!(
        tenant.spec.sign_in.email_verification,
        EmailVerification::Required
    );
    for origin in ["http://127.0.0.1:8080", "http://localhost:8080"] {
        assert!(
            tenant
                .spec
                .redirects
                .allowed_origins
                .iter()
                .any(|o| o == origin),
            "{origin}"
        );
    }
    let Resource::Role(admin) = find("Role", "demo-admin") else {
        unreachable!()
    };
    assert!(
        admin
            .spec
            .subjects
            .users
            .contains(&"admin@demo.local".to_owned())
    );
    assert!(admin.spec.permissions.len() >= 2);
    find("Role", "viewer");
    let Resource::ApiKey(key) = find("ApiKey", "demo-key") else {
        unreachable!()
    };
    assert_eq!(key.spec.secret_name, "demo-api-key");
    assert_eq!(key.spec.roles, ["viewer"]);
    // One public and one confidential client, ready to try.
    let Resource::OAuthClient(spa) = find("OAuthClient", "demo-spa") else {
        unreachable!()
    };
    assert_eq!(spa.spec.client_type, keygate_crds::ClientType::Public);
    assert!(spa.spec.secret_name.is_none());
    let Resource::OAuthClient(app) = find("OAuthClient", "demo-app") else {
        unreachable!()
    };
    assert_eq!(app.spec.client_type, keygate_crds::ClientType::Confidential);
    assert_eq!(app.spec.secret_name.as_deref(), Some("demo-app-oidc"));
    assert!(
        resources
            .iter()
            .all(|r| r.tenant_name() == "demo" && r.namespace() == Some("default"))
    );
}

/// An invalid manifest and what must be said about it.
struct Invalid {
    file: String,
    text: String,
    documents: Vec<Value>,
    /// Part of what the judge reports (`# expect:`).
    expect: String,
    /// Part of what loading the file into the types reports, when that fails before the
    /// judge is asked (`# expect-load:`).
    expect_load: Option<String>,
}

fn invalid_manifests() -> Vec<Invalid> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    yaml_files_under(&dir)
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .map(str::to_owned)
            };
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            Invalid {
                expect: header("expect").unwrap_or_else(|| panic!("{file}: no `# expect:` line")),
                expect_load: header("expect-load"),
                documents: yaml_documents(&text),
                text,
                file,
            }
        })
        .collect()
}

#[test]
fn every_invalid_manifest_is_refused_with_its_message() {
    let cases = invalid_manifests();
    assert!(
        cases.len() >= 8,
        "tests/invalid holds {} manifests",
        cases.len()
    );
    for case in &cases {
        let Invalid {
            file,
            documents,
            expect,
            ..
        } = case;
        let errors = match documents.as_slice() {
            [object] => judge(object, None),
            [old, new] => {
                assert!(
                    judge(old, None).is_empty(),
                    "{file}: the stored object must be valid"
                );
                assert!(
                    judge(new, None).is_empty(),
                    "{file}: the new object must be valid on its own"
                );
                judge(new, Some(old))
            }
            other => panic!(
                "{file}: expected one document (create) or two (update), got {}",
                other.len()
            ),
        };
        assert!(!errors.is_empty(), "{file}: the API server would accept it");
        if std::env::var_os("KEYGATE_SHOW_ERRORS").is_some() {
            eprintln!("{file}:\n  {}", errors.join("\n  "));
        }
        assert!(
            errors.iter().any(|e| e.contains(expect.as_str())),
            "{file}: expected an error containing\n  {expect}\ngot\n  {}",
            errors.join("\n  ")
        );
    }
}

/// The directory source and the judge decide alike: every invalid manifest is refused by both.
/// A file that loads into the types is refused by the judge itself, with the judge's message
/// (`expect`), and judging its typed resources reports exactly what judging the document as
/// written reports. Only a value the types cannot hold (a bad enum value, timestamp or
/// duration, an unknown field) stops loading first, with the loader's message (`expect-load`).
#[test]
fn the_directory_source_refuses_the_same_manifests() {
    for case in invalid_manifests() {
        let Invalid {
            file,
            text,
            documents,
            expect,
            expect_load,
        } = case;
        if documents.len() == 2 {
            // An update: the directory source has no stored object, so nothing to compare with.
            assert!(
                expect_load.is_none(),
                "{file}: updates have no `expect-load`"
            );
            continue;
        }
        let judged = judge(&documents[0], None);
        assert!(!judged.is_empty(), "{file}: the judge accepts it");
        let errors = directory_source(&text);
        if std::env::var_os("KEYGATE_SHOW_ERRORS").is_some() {
            eprintln!("{file}:\n  {}", errors.join("\n  "));
        }
        let expected = expect_load.as_ref().unwrap_or(&expect);
        assert!(
            errors.iter().any(|e| e.contains(expected.as_str())),
            "{file}: expected the directory source to refuse it with an error containing\n  \
             {expected}\ngot\n  {}",
            errors.join("\n  ")
        );
        match keygate_crds::load_manifests(&text) {
            Ok(resources) => {
                assert!(
                    expect_load.is_none(),
                    "{file}: it loads, so the judge refuses it; drop `expect-load`"
                );
                let typed: Vec<String> = resources
                    .iter()
                    .filter_map(|r| keygate_crds::admit(r).err())
                    .flat_map(|e| {
                        e.violations()
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                assert_eq!(
                    typed, judged,
                    "{file}: the typed resource is judged differently from its document"
                );
            }
            Err(error) => assert!(
                expect_load.is_some(),
                "{file}: loading fails ({error}), so it needs an `expect-load` line"
            ),
        }
    }
}

#[test]
fn docs_reference_matches_the_generated_one() {
    let path = repo_root().join("docs/reference.md");
    let generated = keygate_crds::reference_markdown();
    if blessing() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &generated).unwrap();
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/reference.md differs from the reference the CRDs generate; \
         regenerate with KEYGATE_BLESS=1 cargo test -p keygate-crds"
    );
}
