//! Envoy's gRPC ext_authz (`envoy.service.auth.v3.Authorization/Check`) driven by an
//! independent client — Python grpcio with grpc's generated Envoy stubs (xds-protos), not
//! built from our code — against a real gateway (the real identity service on SQLite):
//! every kind of credential, denial and malformed request, none answered with an internal
//! error; and `POST /t/{tenant}/forward-auth/explain` (what `keygate explain` prints)
//! agreeing with every live decision.
//!
//! Needs the peers' venv (`scripts/test` makes it from `gateway/tests/peers/requirements.txt`;
//! or `KEYGATE_TEST_PYTHON`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use keygate_core::crypto::random::random_token;
use keygate_core::store::NewApiKey;
use keygate_gateway::forward_auth::grpc::{self, ExtAuthz, GrpcSettings};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Gateway, Options, ada, client, real, start};

/// Starts the gRPC service over `gw`'s state on 127.0.0.1:0; returns `host:port`.
async fn serve_grpc(gw: &Gateway, settings: GrpcSettings) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ExtAuthz::new(gw.state.clone(), settings);
    tokio::spawn(grpc::serve(listener, service, std::future::pending()));
    addr.to_string()
}

/// Sends `cases` with the Python client; one answer per case, by name. It blocks its thread:
/// the tests run on a multi-thread runtime so the gateway keeps answering meanwhile.
fn send(target: &str, cases: &[Value]) -> BTreeMap<String, Value> {
    let python = support::smtp::python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/test once (it creates the peers' venv from gateway/tests/peers/requirements.txt) or set KEYGATE_TEST_PYTHON",
        python.display()
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ext_authz_client.py");
    let mut child = Command::new(&python)
        .arg(script)
        .arg(target)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the peers' Python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the ext_authz client failed (is grpcio/xds-protos installed in the peers' venv?)"
    );
    let answers: BTreeMap<String, Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["name"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    assert_eq!(answers.len(), cases.len(), "an answer for every case");
    answers
}

/// An API key of the gateway's tenant holding `keygate:admin` (the explain API's caller).
async fn admin_key(gw: &Gateway) -> String {
    let prefix = keygate_core::crypto::random::random_alphanumeric(12).unwrap();
    let raw = format!("kg_{prefix}_{}", random_token().unwrap());
    gw.store
        .insert_api_key(&NewApiKey {
            tenant_id: gw.tenant.id,
            owner_uid: uuid::Uuid::now_v7().to_string(),
            name: "explainer".into(),
            prefix,
            hash: keygate_core::crypto::sha256(raw.as_bytes()).to_vec(),
            roles: vec![],
            permissions: vec!["keygate:admin".into()],
            scopes: vec![],
            expires_at: None,
        })
        .await
        .unwrap();
    raw
}

fn header<'a>(answer: &'a Value, name: &str) -> &'a str {
    answer["headers"][name].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_grpc_checks_from_an_independent_client_and_explain_agrees() {
    let gw = start(Options {
        real_identity: true,
        ..Options::default()
    })
    .await;
    let target = serve_grpc(&gw, GrpcSettings::default()).await;
    let t = gw.tenant.name.clone();
    let live = gw.real().tenant(&t).await.unwrap();
    let cookie_name = gw.state.session_cookie(&live).name().to_owned();
    let ce = |extra: &str| json!({ "keygate": format!("tenant={t}{extra}") });

    let (token, _) = real::sign_in(gw.real(), &gw.tenant, &ada(), false).await;
    let (_, _, session) = real::sign_in_browser(gw.real(), &gw.tenant, &ada()).await;
    let (_, doomed_sid, doomed) = real::sign_in_browser(gw.real(), &gw.tenant, &ada()).await;
    let (_, api_key) = real::api_key(&gw.store, &gw.tenant, "ci", &["reader"]).await;
    let forged_jwt = format!("{}AAAA", &token[..token.len() - 4]);
    let forged_key = format!("kg_{}_{}", "abcdefabcdef", random_token().unwrap());
    let forged_cookie = random_token().unwrap();
    let bearer = format!("Bearer {token}");
    let cookie = |v: &str| format!("{cookie_name}={v}");

    // The doomed session is proven (and cached) first, then revoked as sign-out does.
    let first = send(
        &target,
        &[json!({"name": "doomed", "context_extensions": ce(""),
                 "headers": {"cookie": cookie(&doomed)}})],
    );
    assert_eq!(first["doomed"]["code"], 0, "{}", first["doomed"]);
    gw.ephemeral
        .revoke(&doomed_sid.to_string(), Duration::from_secs(600))
        .await
        .unwrap();

    let cases = vec![
        json!({"name": "no_credentials_api", "context_extensions": ce("")}),
        json!({"name": "no_credentials_browser", "context_extensions": ce(""),
               "headers": {"accept": "text/html,application/xhtml+xml"}}),
        json!({"name": "jwt", "context_extensions": ce("&role=reader"),
               "headers": {"authorization": bearer}}),
        json!({"name": "api_key", "context_extensions": ce("&role=reader"),
               "headers": {"x-api-key": api_key}}),
        json!({"name": "session", "context_extensions": ce(""),
               "headers": {"cookie": cookie(&session)}}),
        json!({"name": "revoked_session", "context_extensions": ce(""),
               "headers": {"cookie": cookie(&doomed)}}),
        json!({"name": "missing_role", "context_extensions": ce("&role=admin"),
               "headers": {"authorization": bearer}}),
        json!({"name": "step_up", "context_extensions": ce("&mfa=1&max_age=300"),
               "headers": {"authorization": bearer}}),
        json!({"name": "step_up_browser", "context_extensions": ce("&mfa=1"),
               "headers": {"cookie": cookie(&session), "accept": "text/html"}}),
        json!({"name": "forged_jwt", "context_extensions": ce(""),
               "headers": {"authorization": format!("Bearer {forged_jwt}")}}),
        json!({"name": "forged_api_key", "context_extensions": ce(""),
               "headers": {"authorization": format!("Bearer {forged_key}")}}),
        json!({"name": "forged_cookie", "context_extensions": ce(""),
               "headers": {"cookie": cookie(&forged_cookie)}}),
        json!({"name": "client_identity_headers", "context_extensions": ce(""),
               "headers": {"authorization": bearer, "x-auth-request-user": "mallory",
                           "x-auth-request-groups": "admin", "x-keygate-jwt": "forged",
                           "x-auth-request-extra": "x"}}),
        json!({"name": "method_not_allowed", "context_extensions": ce("&method=GET"),
               "method": "DELETE", "headers": {"authorization": bearer}}),
        // Malformed: the proxy's configuration or the message itself is wrong.
        json!({"name": "no_attributes", "no_attributes": true}),
        json!({"name": "no_http", "context_extensions": ce(""), "no_http": true}),
        json!({"name": "no_requirements", "headers": {"authorization": bearer}}),
        json!({"name": "bad_requirements", "context_extensions": {"keygate": format!("tenant={t}&rol=x")},
               "headers": {"authorization": bearer}}),
        json!({"name": "unknown_tenant", "context_extensions": {"keygate": "tenant=nobody-here"},
               "headers": {"authorization": bearer}}),
        json!({"name": "repeated_credentials", "context_extensions": ce(""),
               "headers": {"authorization": format!("{bearer}, Bearer other")}}),
        json!({"name": "garbage", "garbage": true}),
    ];
    let answers = send(&target, &cases);

    // Nothing is ever an internal error, and only the undecodable message fails the RPC.
    for (name, a) in &answers {
        assert_ne!(a["rpc"], "INTERNAL", "{name}: {a}");
        assert_ne!(a["code"], 13, "{name}: {a}");
        if name != "garbage" {
            assert_eq!(a["rpc"], "OK", "{name}: {a}");
        }
    }
    assert_eq!(answers["garbage"]["rpc"], "INVALID_ARGUMENT");

    // Denials: the HTTP endpoint's answer inside a DeniedHttpResponse, with reason and id.
    let denied = |name: &str, code: i64, status: i64, reason: &str| {
        let a = &answers[name];
        assert_eq!(a["kind"], "denied_response", "{name}: {a}");
        assert_eq!(a["code"], code, "{name}: {a}");
        assert_eq!(a["status"], status, "{name}: {a}");
        assert_eq!(header(a, "x-keygate-reason"), reason, "{name}: {a}");
        let id = header(a, "x-keygate-decision-id");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {a}"
        );
        a
    };
    let a = denied("no_credentials_api", 16, 401, "no_credentials");
    assert_eq!(
        header(a, "www-authenticate"),
        format!("Bearer realm=\"{t}\"")
    );
    assert!(a["body"].as_str().unwrap().contains("\"unauthenticated\""));
    let a = denied("no_credentials_browser", 16, 302, "no_credentials");
    assert!(
        header(a, "location").starts_with("https://app.example.com/.keygate/callback?"),
        "the browser goes through the app host's handoff path: {a}"
    );
    let a = denied("revoked_session", 16, 401, "session_revoked");
    assert!(header(a, "www-authenticate").contains("error=\"invalid_token\""));
    denied("missing_role", 7, 403, "missing_role");
    let a = denied("step_up", 7, 403, "mfa_required");
    let challenge = header(a, "www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\"")
            && challenge.contains("acr_values=\"urn:keygate:acr:mfa\"")
            && challenge.contains("max_age=300"),
        "{a}"
    );
    let a = denied("step_up_browser", 7, 302, "mfa_required");
    assert!(
        header(a, "location").contains(&format!("/t/{t}/step-up?")),
        "{a}"
    );
    denied("forged_jwt", 16, 401, "token_invalid");
    denied("forged_api_key", 16, 401, "api_key_invalid");
    denied("forged_cookie", 16, 401, "session_invalid");
    denied("method_not_allowed", 7, 403, "method_not_allowed");
    for name in [
        "no_attributes",
        "no_http",
        "no_requirements",
        "bad_requirements",
        "unknown_tenant",
    ] {
        denied(name, 7, 403, "misconfigured");
    }
    denied("repeated_credentials", 16, 401, "token_invalid");

    // Allowed: the identity headers overwrite the client's, the client's others go.
    for name in ["jwt", "api_key", "session", "client_identity_headers"] {
        let a = &answers[name];
        assert_eq!(a["code"], 0, "{name}: {a}");
        assert_eq!(a["kind"], "ok_response", "{name}: {a}");
        assert_eq!(header(a, "x-keygate-tenant"), t, "{name}");
        for (h, action) in a["actions"].as_object().unwrap() {
            assert_eq!(action, "OVERWRITE_IF_EXISTS_OR_ADD", "{name}: {h}");
        }
    }
    assert_eq!(
        header(&answers["jwt"], "x-auth-request-user"),
        "ada@example.com"
    );
    assert_eq!(header(&answers["api_key"], "x-auth-request-user"), "ci");
    let forged = &answers["client_identity_headers"];
    assert_eq!(header(forged, "x-auth-request-user"), "ada@example.com");
    assert_eq!(header(forged, "x-auth-request-groups"), "reader");
    let mut removed: Vec<&str> = forged["headers_to_remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    removed.sort_unstable();
    assert_eq!(removed, ["x-auth-request-extra", "x-keygate-jwt"]);

    // Counted by reason and by the gRPC proxy label.
    let metrics = client()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "keygate_forward_auth_decision_reasons_total{credential=\"session\",reason=\"session_revoked\"} 1\n"
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        "keygate_forward_auth_decisions_total{outcome=\"misconfigured\",proxy=\"envoy_grpc\"} 5\n"
    ));

    // Golden: the explain API (what `keygate explain` prints) decides every case a request
    // to it can describe as the live check did: the same reason, status, identity headers
    // and challenge, and a failed step exactly when the request is denied. The others are
    // malformed messages or name no requirements of this tenant (explain's path names it).
    let inexpressible = [
        "no_attributes",
        "no_http",
        "no_requirements",
        "unknown_tenant",
        "garbage",
    ];
    let admin = admin_key(&gw).await;
    let http = client();
    let mut explained = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        if inexpressible.contains(&name) {
            continue;
        }
        let requirements = case["context_extensions"]["keygate"].as_str().unwrap();
        let extra = requirements.strip_prefix(&format!("tenant={t}")).unwrap();
        let headers = &case["headers"];
        let auth = headers["authorization"]
            .as_str()
            .and_then(|v| v.strip_prefix("Bearer "));
        let api_key = headers["x-api-key"].as_str();
        let session = headers["cookie"]
            .as_str()
            .and_then(|v| v.strip_prefix(&format!("{cookie_name}=")));
        let body = json!({
            "requirements": extra.trim_start_matches('&'),
            "token": auth.or(api_key),
            "cookie": session,
            "method": case["method"].as_str().unwrap_or("GET"),
            "url": format!("https://app.example.com{}", case["path"].as_str().unwrap_or("/orders?id=1")),
            "browser": headers["accept"].as_str().is_some_and(|a| a.contains("text/html")),
            "client_ip": "203.0.113.9",
        });
        let r = http
            .post(format!("{}/t/{t}/forward-auth/explain", gw.url))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let e: Value = r.json().await.unwrap();
        let live = &answers[name];
        let live_reason = if live["code"] == 0 {
            "allowed"
        } else {
            header(live, "x-keygate-reason")
        };
        assert_eq!(e["reason"], live_reason, "{name}: {e}");
        let live_status = live["status"].as_i64().unwrap_or(200);
        assert_eq!(e["status"], live_status, "{name}: {e}");
        assert_eq!(e["allowed"], live["code"] == 0, "{name}: {e}");
        // What the client (denied) or the upstream (allowed) would have been told.
        let compared: &[&str] = if live["code"] == 0 {
            &[
                "x-auth-request-user",
                "x-auth-request-email",
                "x-auth-request-groups",
                "x-keygate-tenant",
                "x-keygate-subject",
            ]
        } else {
            &["www-authenticate", "location", "x-keygate-reason"]
        };
        for h in compared {
            assert_eq!(
                e["headers"][h].as_str().unwrap_or(""),
                header(live, h),
                "{name}: {h}: {e}"
            );
        }
        let steps = e["steps"].as_array().unwrap();
        assert!(!steps.is_empty(), "{name}: every check is listed");
        let failed: Vec<&str> = steps
            .iter()
            .filter(|s| s["outcome"] == "fail")
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(failed.is_empty(), live["code"] == 0, "{name}: {e}");
        // The step that decided it.
        let deciding = match live_reason {
            "missing_role" => Some("role"),
            "mfa_required" => Some("mfa"),
            "method_not_allowed" => Some("method"),
            "misconfigured" => Some("requirements"),
            "session_revoked" | "session_invalid" | "token_invalid" | "api_key_invalid" => {
                Some("identity")
            }
            "no_credentials" => Some("credential"),
            _ => None,
        };
        if let Some(step) = deciding {
            assert!(failed.contains(&step), "{name}: {step} failed: {e}");
        }
        explained.push(name);
    }
    assert_eq!(
        explained.len() + inexpressible.len(),
        cases.len(),
        "every case is explained or named inexpressible: {explained:?}"
    );

    // Only admins may explain.
    let r = http
        .post(format!("{}/t/{t}/forward-auth/explain", gw.url))
        .bearer_auth(&api_key)
        .json(&json!({"requirements": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{}/t/{t}/forward-auth/explain", gw.url))
        .json(&json!({"requirements": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirements_from_a_configured_header_or_a_host_default() {
    let gw = start(Options {
        real_identity: true,
        ..Options::default()
    })
    .await;
    let t = gw.tenant.name.clone();
    let mut hosts = BTreeMap::new();
    hosts.insert(
        "app.example.com".to_owned(),
        format!("tenant={t}&role=admin"),
    );
    let target = serve_grpc(
        &gw,
        GrpcSettings::new(Some("x-keygate-requirements"), &hosts).unwrap(),
    )
    .await;
    let (token, _) = real::sign_in(gw.real(), &gw.tenant, &ada(), false).await;
    let bearer = format!("Bearer {token}");
    let answers = send(
        &target,
        &[
            // The header the proxy sets wins over the host's default.
            json!({"name": "header", "headers": {"authorization": bearer,
                    "x-keygate-requirements": format!("tenant={t}&role=reader")}}),
            // Without it, the host's default applies (ada is no admin).
            json!({"name": "host", "headers": {"authorization": bearer}}),
            json!({"name": "host_with_port", "host": "app.example.com:8443",
                   "headers": {"authorization": bearer}}),
            // context_extensions win over both.
            json!({"name": "extensions", "context_extensions": {"keygate": format!("tenant={t}")},
                   "headers": {"authorization": bearer,
                    "x-keygate-requirements": format!("tenant={t}&role=nobody")}}),
            json!({"name": "other_host", "host": "other.example.com",
                   "headers": {"authorization": bearer}}),
        ],
    );
    assert_eq!(answers["header"]["code"], 0, "{}", answers["header"]);
    assert_eq!(header(&answers["host"], "x-keygate-reason"), "missing_role");
    assert_eq!(
        header(&answers["host_with_port"], "x-keygate-reason"),
        "missing_role"
    );
    assert_eq!(answers["extensions"]["code"], 0);
    assert_eq!(
        header(&answers["other_host"], "x-keygate-reason"),
        "misconfigured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_denials_name_their_reason_and_decision_id_too() {
    let gw = start(Options {
        real_identity: true,
        ..Options::default()
    })
    .await;
    let t = gw.tenant.name.clone();
    let (token, _) = real::sign_in(gw.real(), &gw.tenant, &ada(), false).await;
    let http = client();
    let check = |query: &str, token: Option<&str>| {
        let mut r = http.get(format!("{}/forward-auth?tenant={t}{query}", gw.url));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        r.send()
    };
    let ids = |r: &reqwest::Response| {
        (
            r.headers()
                .get("x-keygate-reason")
                .map(|v| v.to_str().unwrap().to_owned()),
            r.headers()
                .get("x-keygate-decision-id")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    };
    let r = check("&role=admin", Some(&token)).await.unwrap();
    assert_eq!(r.status(), 403);
    let (reason, id) = ids(&r);
    assert_eq!(reason.as_deref(), Some("missing_role"));
    let id = id.unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    let r = check("", None).await.unwrap();
    assert_eq!(r.status(), 401);
    let (reason, second) = ids(&r);
    assert_eq!(reason.as_deref(), Some("no_credentials"));
    assert_ne!(second.unwrap(), id, "every decision has its own id");
    let r = check("&role=reader", Some(&token)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        ids(&r),
        (None, None),
        "allows go upstream: no reason header"
    );
}
