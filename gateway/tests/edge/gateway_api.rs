//! The Gateway API `ExternalAuth` filter's HTTP contract (GEP-1494), exactly what it sends,
//! and a real nginx configured as NGINX Gateway Fabric renders the filter.

use super::support::{self, Options, ada, client, free_port, real, start};
use super::{port_of, start_upstream};
use keygate_gateway::return_url::signin_url;
use reqwest::StatusCode;

/// The filter's `http.path` for `requirements` in `dialect`.
fn prefix(gw: &support::Gateway, dialect: &str, requirements: &str) -> String {
    format!(
        "{}/external-auth/{dialect}/tenant={}{requirements}",
        gw.url, gw.tenant.name
    )
}

fn metrics_line(proxy: &str, outcome: &str, n: u32) -> String {
    format!("keygate_forward_auth_decisions_total{{outcome=\"{outcome}\",proxy=\"{proxy}\"}} {n}\n")
}

#[tokio::test]
async fn gateway_api_external_auth_takes_requirements_from_the_path_prefix() {
    let gw = start(Options::default()).await;
    let http = client();
    let token = gw.ids.token(&ada(), "sid-gapi", 300, &["pwd"]);
    let base = prefix(&gw, "gateway-api", "&role=reader");

    // Only what the filter always sends: Host, method, path (prefix + original), and
    // Authorization. The identity headers go upstream (`allowedResponseHeaders`).
    let ok = http
        .put(format!("{base}/orders/1?x=2"))
        .header("host", "app.example.com")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-auth-request-user"], "ada@example.com");
    assert_eq!(ok.headers()["x-auth-request-groups"], "reader");
    assert_eq!(ok.headers()["x-keygate-tenant"], gw.tenant.name.as_str());
    // Headers that do not apply are named empty, so the filter overwrites a client's copies.
    assert_eq!(ok.headers()["x-keygate-jwt"], "");

    // The original query is the client's: it cannot loosen or replace the route's
    // requirements.
    let admin = prefix(&gw, "gateway-api", "&role=admin");
    let r = http
        .get(format!("{admin}/orders?role=reader&tenant=other"))
        .header("host", "app.example.com")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["x-keygate-reason"], "missing_role");

    // A browser (`Accept` listed in `allowedHeaders`): the filter relays our 302. No
    // `X-Forwarded-Proto` listed: the Gateway's scheme is taken as https. The app is on
    // another host than the gateway, so the way to sign in starts at its handoff path.
    let browser = http
        .get(format!("{base}/orders/1?x=2"))
        .header("host", "app.example.com")
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::FOUND);
    assert_eq!(
        browser.headers()["location"].to_str().unwrap(),
        format!(
            "https://app.example.com/.keygate/callback?tenant={}&rd=https%3A%2F%2Fapp.example.com%2Forders%2F1%3Fx%3D2",
            gw.tenant.name
        )
    );
    // An API client: 401 with a challenge and the reason.
    let api = http
        .get(format!("{base}/orders"))
        .header("host", "app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.headers()["www-authenticate"],
        format!("Bearer realm=\"{}\"", gw.tenant.name).as_str()
    );
    assert_eq!(api.headers()["x-keygate-reason"], "no_credentials");

    // A typo in the dialect or no requirements: denied with 403, never a 404 or 5xx, never
    // let through.
    for path in [
        format!(
            "{}/external-auth/gateway/tenant={}/orders",
            gw.url, gw.tenant.name
        ),
        format!("{}/external-auth/gateway-api//orders", gw.url),
    ] {
        let r = http
            .get(&path)
            .header("host", "app.example.com")
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(r.headers()["x-keygate-reason"], "misconfigured", "{path}");
    }

    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&metrics_line("gateway_api", "allow", 1)),
        "{metrics}"
    );
    assert!(
        metrics.contains(&metrics_line("gateway_api", "unauthenticated", 2)),
        "{metrics}"
    );
}

#[tokio::test]
async fn nginx_gateway_fabric_gets_a_401_that_names_the_sign_in_url_instead_of_a_302() {
    let gw = start(Options::default()).await;
    let http = client();
    let base = prefix(&gw, "nginx-gateway-fabric", "&role=reader");
    let r = http
        .get(format!("{base}/orders/1?x=2"))
        .header("host", "app.example.com")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        format!(
            "Bearer realm=\"{t}\", sign_in_url=\"https://app.example.com/.keygate/callback?tenant={t}&rd=https%3A%2F%2Fapp.example.com%2Forders%2F1%3Fx%3D2\"",
            t = gw.tenant.name
        )
    );
}

/// nginx as NGINX Gateway Fabric renders an `ExternalAuth` filter of protocol HTTP on the
/// rule `/` (`backendRef` the gateway, `http.path` the prefix, `allowedHeaders: [Cookie,
/// X-API-Key, Accept]`, `allowedResponseHeaders` the identity headers): an internal
/// `auth_request` location that sends the original method, `Host`, `Authorization`, an
/// empty body and the listed headers to `prefix + $request_uri`; the listed response
/// headers set on the request upstream.
fn start_ngf_nginx(port: u16, auth_prefix: &str, upstream: u16) -> support::nginx::Nginx {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut copy = String::new();
    for (i, h) in [
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
        "X-Keygate-Tenant",
        "X-Keygate-Subject",
    ]
    .iter()
    .enumerate()
    {
        let var = h.to_ascii_lowercase().replace('-', "_");
        copy.push_str(&format!(
            "      auth_request_set $ext_auth_{i} $upstream_http_{var};\n      proxy_set_header {h} $ext_auth_{i};\n"
        ));
    }
    let conf = format!(
        r#"{user}
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /_ngf-external-auth-rule0 {{
      internal;
      proxy_method $request_method;
      proxy_pass_request_body off;
      proxy_pass_request_headers off;
      proxy_set_header Host $http_host;
      proxy_set_header Authorization $http_authorization;
      proxy_set_header Content-Length "0";
      proxy_set_header Cookie $http_cookie;
      proxy_set_header X-API-Key $http_x_api_key;
      proxy_set_header Accept $http_accept;
      proxy_http_version 1.1;
      proxy_pass {auth_prefix}$request_uri;
    }}
    location / {{
      auth_request /_ngf-external-auth-rule0;
{copy}      proxy_pass http://127.0.0.1:{upstream};
    }}
  }}
}}
"#,
        user = support::nginx::user_directive(),
    );
    support::nginx::run(dir, &conf, port)
}

#[tokio::test]
async fn nginx_as_nginx_gateway_fabric_renders_the_external_auth_filter() {
    let (upstream, _up) = start_upstream().await;
    let port = free_port();
    let app = format!("http://127.0.0.1:{port}");
    let gw = start(Options {
        real_identity: true,
        // The filter does not say the scheme: keygate takes the Gateway's as https.
        allowed_origins: vec![format!("https://127.0.0.1:{port}")],
        ..Options::default()
    })
    .await;
    let auth_prefix = format!(
        "http://127.0.0.1:{}/external-auth/nginx-gateway-fabric/tenant={}&role=reader",
        port_of(&gw.url),
        gw.tenant.name
    );
    let _nginx = start_ngf_nginx(port, &auth_prefix, upstream);
    let http = client();

    // A browser without a session: nginx passes our 401 and its challenge, which says where
    // to sign in and come back to (the app shares the gateway's host, so no handoff).
    let r = http
        .get(format!("{app}/orders?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let expected = signin_url(
        &gw.url,
        &gw.tenant.name,
        Some(&format!("https://127.0.0.1:{port}/orders?x=1")),
    );
    assert!(
        challenge.ends_with(&format!("sign_in_url=\"{expected}\"")),
        "{challenge}"
    );

    // The session cookie (`Cookie` in `allowedHeaders`): the upstream gets the identity;
    // a client-sent identity header is replaced.
    let (_, _, cookie) = real::sign_in_browser(gw.real(), &gw.tenant, &ada()).await;
    let r = http
        .get(format!("{app}/orders"))
        .header("cookie", format!("__Host-keygate_session={cookie}"))
        .header("x-auth-request-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["user"], "ada@example.com");
    assert_eq!(body["groups"], "reader");
    assert_eq!(body["tenant"], gw.tenant.name.as_str());

    // An API key (`X-API-Key` listed), on a POST.
    let (_, key) = real::api_key(&gw.store, &gw.tenant, "ci-bot", &["reader"]).await;
    let r = http
        .post(format!("{app}/orders"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["user"],
        "ci-bot"
    );

    // Missing role: nginx passes our 403.
    let (_, weak) = real::api_key(&gw.store, &gw.tenant, "weak-bot", &[]).await;
    let r = http
        .get(format!("{app}/orders"))
        .header("x-api-key", &weak)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Never a 500 from nginx: a forged cookie is a 401 too.
    let r = http
        .get(format!("{app}/orders"))
        .header("cookie", "__Host-keygate_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
