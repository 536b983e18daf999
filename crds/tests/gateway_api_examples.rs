//! The manifests under `examples/gateway-api/`: every Gateway API object (Gateway, HTTPRoute,
//! ReferenceGrant) parses as the typed `gateway-api` crate's experimental-channel type and
//! serializes back to exactly what was written, so a misspelt or misplaced field (which
//! serde would drop) fails; the vendor resources (Envoy Gateway, Istio, kgateway, Contour,
//! Traefik), which that crate does not type, name keygate's Service, ports and paths as the
//! chart and the gateway serve them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use gateway_api::experimental::gateways::Gateway;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::experimental::referencegrants::ReferenceGrant;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// The chart's gateway Service for a release named `keygate` in namespace `keygate`.
const SERVICE: &str = "keygate-gateway";
const SERVICE_HOST: &str = "keygate-gateway.keygate.svc.cluster.local";
/// The implementations with a folder of their own.
const FOLDERS: [&str; 6] = [
    "envoy-gateway",
    "istio",
    "kgateway",
    "contour",
    "external-auth-filter",
    "traefik",
];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateway-api")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The chart's ports: the HTTP Service port and the gRPC ext_authz port.
fn chart_ports() -> (u64, u64) {
    let values = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/keygate/values.yaml"),
    )
    .unwrap();
    let values: Value = serde_saphyr::from_str(&values).unwrap();
    let gateway = &values["gateway"];
    (
        gateway["service"]["port"].as_u64().unwrap(),
        gateway["extAuthz"]["port"].as_u64().unwrap(),
    )
}

/// `original` parsed as `T` and serialized again, or what differs: a field `T` does not
/// know is dropped by serde, so it shows up as a difference.
fn typed_roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
    original: &Value,
) -> Result<(), String> {
    let typed: T = serde_json::from_value(original.clone()).map_err(|e| e.to_string())?;
    let again = serde_json::to_value(&typed).unwrap();
    let mut differences = Vec::new();
    diff("", original, &again, &mut differences);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!("not in the typed API: {}", differences.join(", ")))
    }
}

fn diff(at: &str, written: &Value, typed: &Value, out: &mut Vec<String>) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (k, v) in w {
                match t.get(k) {
                    Some(tv) => diff(&format!("{at}.{k}"), v, tv, out),
                    None => out.push(format!("{at}.{k}")),
                }
            }
        }
        (Value::Array(w), Value::Array(t)) if w.len() == t.len() => {
            for (i, (wv, tv)) in w.iter().zip(t).enumerate() {
                diff(&format!("{at}[{i}]"), wv, tv, out);
            }
        }
        (w, t) if w == t => {}
        (w, t) => out.push(format!("{at} ({w} became {t})")),
    }
}

/// Checks a Gateway API object against its typed form; `None` for other groups.
fn check_gateway_api(obj: &Value) -> Option<Result<(), String>> {
    let api_version = obj["apiVersion"].as_str()?;
    if !api_version.starts_with("gateway.networking.k8s.io/") {
        return None;
    }
    Some(match obj["kind"].as_str() {
        Some("Gateway") => typed_roundtrip::<Gateway>(obj),
        Some("HTTPRoute") => typed_roundtrip::<HttpRoute>(obj),
        Some("ReferenceGrant") => typed_roundtrip::<ReferenceGrant>(obj),
        other => Err(format!("no typed check for kind {other:?}")),
    })
}

/// Every object in `value` that names keygate's Service with a port, with the JSON path.
fn service_refs(at: &str, value: &Value, out: &mut Vec<(String, u64)>) {
    match value {
        Value::Object(map) => {
            let names_keygate = map.get("name").and_then(Value::as_str) == Some(SERVICE)
                || map.get("service").and_then(Value::as_str) == Some(SERVICE_HOST);
            if names_keygate && let Some(port) = map.get("port").and_then(Value::as_u64) {
                out.push((at.to_owned(), port));
            }
            for (k, v) in map {
                service_refs(&format!("{at}.{k}"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                service_refs(&format!("{at}[{i}]"), v, out);
            }
        }
        _ => {}
    }
}

/// Every string under a key named `key`.
fn strings_under<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key
                    && let Some(s) = v.as_str()
                {
                    out.push(s);
                }
                strings_under(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// A Gateway API dialect path keygate serves: `/external-auth/{dialect}/tenant=acme…`.
fn is_keygate_external_auth_path(path: &str) -> bool {
    ["gateway-api", "nginx-gateway-fabric"].iter().any(|d| {
        path.strip_prefix(&format!("/external-auth/{d}/"))
            .is_some_and(|rest| rest.starts_with("tenant=acme") && !rest.contains(['/', '?']))
    })
}

/// The documents of a folder, the Istio mesh config's embedded `mesh` parsed in place.
fn folder_objects(folder: &str) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for path in yaml_files(&examples().join(folder)) {
        for mut doc in documents(&path) {
            if doc["kind"] == "ConfigMap"
                && let Some(mesh) = doc["data"]["mesh"].as_str()
            {
                let mesh: Value = serde_saphyr::from_str(mesh)
                    .unwrap_or_else(|e| panic!("{}: mesh is not YAML: {e}", path.display()));
                doc["data"]["mesh"] = mesh;
            }
            out.push((path.clone(), doc));
        }
    }
    out
}

#[test]
fn every_gateway_api_object_is_the_typed_api_exactly() {
    let mut checked = 0;
    let mut errors = Vec::new();
    for folder in FOLDERS {
        for (path, obj) in folder_objects(folder) {
            if let Some(result) = check_gateway_api(&obj) {
                checked += 1;
                if let Err(e) = result {
                    errors.push(format!(
                        "{}: {} {}: {e}",
                        path.display(),
                        obj["kind"],
                        obj["metadata"]["name"]
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(checked >= 18, "only {checked} Gateway API objects found");
}

#[test]
fn a_misspelt_or_misplaced_field_fails_the_typed_check() {
    let route: Value = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "demo"},
        "spec": {"rules": [{"filters": [{"type": "ExternalAuth", "externalAuth": {
            "protocol": "HTTP",
            "backendRef": {"name": SERVICE, "namespace": "keygate", "port": 8080},
            "http": {"path": "/external-auth/gateway-api/tenant=acme", "allowedHeaders": ["Cookie"]}
        }}]}]}
    });
    assert_eq!(check_gateway_api(&route), Some(Ok(())));
    let mut typo = route.clone();
    typo["spec"]["rules"][0]["filters"][0]["externalAuth"]["http"]["allowedHeader"] =
        serde_json::json!(["Cookie"]);
    let err = check_gateway_api(&typo).unwrap().unwrap_err();
    assert!(err.contains("allowedHeader"), "{err}");
    // The filter's `http` settings one level too high.
    let mut misplaced = route;
    misplaced["spec"]["rules"][0]["filters"][0]["allowedHeaders"] = serde_json::json!(["Cookie"]);
    assert!(check_gateway_api(&misplaced).unwrap().is_err());
}

#[test]
fn every_folder_points_at_the_ports_and_paths_keygate_serves() {
    let (http_port, grpc_port) = chart_ports();
    let mut all_refs = 0;
    for folder in FOLDERS {
        let objects = folder_objects(folder);
        assert!(!objects.is_empty(), "{folder} has no manifests");
        let mut refs = Vec::new();
        let mut paths = Vec::new();
        for (_, obj) in &objects {
            let kind = obj["kind"].as_str().unwrap_or("");
            let mut these = Vec::new();
            service_refs(kind, obj, &mut these);
            refs.extend(these);
            strings_under(obj, "path", &mut paths);
            strings_under(obj, "pathPrefix", &mut paths);
        }
        assert!(!refs.is_empty(), "{folder} never names {SERVICE}");
        all_refs += refs.len();
        for (at, port) in &refs {
            // gRPC ext_authz: Envoy Gateway's `extAuth.grpc`, kgateway's GatewayExtension,
            // Istio's `envoyExtAuthzGrpc`, Contour's ExtensionService; everything else is HTTP.
            let grpc =
                at.to_ascii_lowercase().contains("grpc") || at.starts_with("ExtensionService");
            let expected = if grpc { grpc_port } else { http_port };
            assert_eq!(*port, expected, "{folder}: {at} names port {port}");
        }
        // Every auth path is a dialect keygate serves, with the acme tenant's requirements.
        for path in paths.iter().filter(|p| p.starts_with("/external-auth")) {
            assert!(is_keygate_external_auth_path(path), "{folder}: {path}");
        }
        // The handoff path reaches keygate unchecked on the app's host.
        let text: String = yaml_files(&examples().join(folder))
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect();
        assert!(
            text.contains("/.keygate/callback"),
            "{folder}: no handoff route"
        );
    }
    assert!(all_refs >= 12);
}

#[test]
fn vendor_resources_carry_requirements_where_their_proxy_reads_them() {
    let find = |folder: &str, kind: &str| -> Vec<Value> {
        folder_objects(folder)
            .into_iter()
            .map(|(_, o)| o)
            .filter(|o| o["kind"] == kind)
            .collect()
    };
    // Envoy Gateway: gRPC with the `keygate` context extension, HTTP with the dialect path.
    let policies = find("envoy-gateway", "SecurityPolicy");
    assert_eq!(policies.len(), 2);
    let grpc = policies
        .iter()
        .find(|p| p["spec"]["extAuth"]["grpc"].is_object())
        .unwrap();
    let ext = &grpc["spec"]["extAuth"]["contextExtensions"][0];
    assert_eq!(ext["name"], "keygate");
    assert!(ext["value"].as_str().unwrap().starts_with("tenant=acme&"));
    let http = policies
        .iter()
        .find(|p| p["spec"]["extAuth"]["http"].is_object())
        .unwrap();
    assert!(is_keygate_external_auth_path(
        http["spec"]["extAuth"]["http"]["path"].as_str().unwrap()
    ));
    for policy in &policies {
        assert_eq!(policy["spec"]["extAuth"]["failOpen"], false);
    }
    // kgateway: the TrafficPolicy's context extension, on the GatewayExtension it names.
    let extension = &find("kgateway", "GatewayExtension")[0];
    let policy = &find("kgateway", "TrafficPolicy")[0];
    assert_eq!(
        policy["spec"]["extAuth"]["extensionRef"]["name"],
        extension["metadata"]["name"]
    );
    assert!(
        policy["spec"]["extAuth"]["contextExtensions"]["keygate"]
            .as_str()
            .unwrap()
            .starts_with("tenant=acme&")
    );
    // Contour: the virtual host's authorization names the ExtensionService, with context.
    let service = &find("contour", "ExtensionService")[0];
    assert_eq!(service["spec"]["protocol"], "h2c");
    let root = find("contour", "HTTPProxy")
        .into_iter()
        .find(|p| p["spec"]["virtualhost"].is_object())
        .unwrap();
    let authz = &root["spec"]["virtualhost"]["authorization"];
    assert_eq!(authz["extensionRef"]["name"], service["metadata"]["name"]);
    assert_eq!(
        authz["extensionRef"]["namespace"],
        service["metadata"]["namespace"]
    );
    assert_eq!(authz["failOpen"], false);
    assert!(
        authz["authPolicy"]["context"]["keygate"]
            .as_str()
            .unwrap()
            .starts_with("tenant=acme&")
    );
    // Istio: a gRPC and an HTTP provider in the mesh config, neither failing open; the
    // AuthorizationPolicy names the gRPC one, whose requirements keygate takes by host from
    // the chart values beside the manifests (Istio sends no context extensions).
    let mesh = &find("istio", "ConfigMap")[0]["data"]["mesh"];
    let providers = mesh["extensionProviders"].as_array().unwrap();
    for kind in ["envoyExtAuthzGrpc", "envoyExtAuthzHttp"] {
        let p = providers
            .iter()
            .find(|p| p[kind].is_object())
            .unwrap_or_else(|| panic!("istio: no {kind} provider"));
        assert_eq!(p[kind]["failOpen"], false, "{kind}");
        assert_eq!(p[kind]["service"], SERVICE_HOST, "{kind}");
    }
    let policy = &find("istio", "AuthorizationPolicy")[0];
    assert_eq!(policy["spec"]["action"], "CUSTOM");
    let provider = providers
        .iter()
        .find(|p| p["name"] == policy["spec"]["provider"]["name"])
        .expect("the policy's provider is in the mesh config");
    assert!(provider["envoyExtAuthzGrpc"].is_object(), "{provider}");
    let values = fs::read_to_string(examples().join("istio/helm/keygate-values.yaml")).unwrap();
    let values: Value = serde_saphyr::from_str(&values).unwrap();
    let hosts = &values["gateway"]["extAuthz"]["hostRequirements"];
    let hosts_in_policy = &policy["spec"]["rules"][0]["to"][0]["operation"]["hosts"];
    for host in hosts_in_policy.as_array().unwrap() {
        let requirements = hosts[host.as_str().unwrap()].as_str();
        assert!(
            requirements.is_some_and(|r| r.starts_with("tenant=acme&")),
            "istio: no requirements for {host} in helm/keygate-values.yaml"
        );
    }
    // Traefik: the route's ExtensionRef names the ForwardAuth Middleware, which uses the
    // Traefik dialect (requirements in the query).
    let middleware = &find("traefik", "Middleware")[0];
    let address = middleware["spec"]["forwardAuth"]["address"]
        .as_str()
        .unwrap();
    assert!(
        address.starts_with(&format!(
            "http://{SERVICE_HOST}:{}/forward-auth?tenant=acme&",
            chart_ports().0
        )),
        "{address}"
    );
    let route = &find("traefik", "HTTPRoute")[0];
    let mut names = Vec::new();
    strings_under(route, "name", &mut names);
    assert!(names.contains(&middleware["metadata"]["name"].as_str().unwrap()));
}
