//! kubectl signing people in through keygate, with the real `/usr/bin/kubectl`: a kubeconfig
//! whose user is the `keygate login` exec plugin as `keygate kube-config` prints it, pointed
//! at a loopback HTTPS "API server" this test starts, which records the bearer token kubectl
//! sends. The token is verified with an independent library (`jose`, under Node) against the
//! tenant's JWKS, and the printed `AuthenticationConfiguration`'s CEL rules and mappings are
//! evaluated on its claims with `kube-cel`, as the API server would.

use super::{BIN, Jar, Running, browse, dev_manifests, form_action, repo_root, start_dev_in};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const KUBECTL: &str = "/usr/bin/kubectl";
const EMAIL: &str = "root@example.com";
const PASSWORD: &str = "kubectl-admin-secret-93";
/// The kubectl client's ID-token lifetime in these tests: short, to watch a refresh.
const ID_TOKEN_SECONDS: i64 = 20;

/// Bearer tokens the fake API server was sent.
type Seen = Arc<Mutex<Vec<String>>>;

/// `GET /api` as a minimal API server answers it, to a request with a bearer token.
async fn api(State(seen): State<Seen>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) => {
            seen.lock().unwrap().push(token.to_owned());
            axum::Json(json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
            }))
            .into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401})),
        )
            .into_response(),
    }
}

/// A loopback HTTPS server answering `/api`, with a self-signed certificate for 127.0.0.1
/// made by `openssl`; returns its port, the certificate (kubectl's `certificate-authority`)
/// and what it records.
async fn fake_api_server(dir: &Path) -> (u16, PathBuf, Seen) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (cert, key) = (dir.join("api.pem"), dir.join("api.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("openssl (Debian `openssl`) makes the API server's certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let private = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/api", axum::routing::get(api))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .await;
            });
        }
    });
    (port, cert, seen)
}

/// `keygate dev` with the bootstrap admin (verified address, group `keygate-admins`) signed
/// in once so their first-boot password is changed, and the kubectl client's ID tokens
/// lasting [`ID_TOKEN_SECONDS`].
struct Cluster {
    _dev: Running,
    _manifests: tempfile::TempDir,
    _data: tempfile::TempDir,
    /// `$HOME` and `$XDG_CACHE_HOME` of every kubectl and plugin run.
    home: tempfile::TempDir,
    issuer: String,
    kubeconfig: PathBuf,
    authentication: Value,
    seen: Seen,
}

impl Cluster {
    async fn start() -> Self {
        let manifests = dev_manifests();
        let client = manifests.path().join("oauthclient-kubectl.yaml");
        let text = std::fs::read_to_string(&client).unwrap();
        assert!(text.contains("idToken: 15m"), "the example changed shape");
        std::fs::write(
            &client,
            text.replace("idToken: 15m", &format!("idToken: {ID_TOKEN_SECONDS}s")),
        )
        .unwrap();
        let data = tempfile::tempdir().unwrap();
        let (dev, base) = start_dev_in(
            manifests.path(),
            data.path(),
            &[
                ("KEYGATE_BOOTSTRAP_TENANT", "demo"),
                ("KEYGATE_BOOTSTRAP_EMAIL", EMAIL),
                ("KEYGATE_BOOTSTRAP_PASSWORD", "first-boot-secret-91"),
            ],
        );
        change_first_boot_password(&base).await;
        let issuer = format!("{base}/t/demo");
        let home = tempfile::tempdir().unwrap();
        let (port, ca, seen) = fake_api_server(home.path()).await;

        let printed = std::process::Command::new(BIN)
            .args(["kube-config", "--tenant", "demo", "--client", "kubectl"])
            .args(["--issuer", &issuer, "--command", BIN])
            .output()
            .unwrap();
        assert!(
            printed.status.success(),
            "{}",
            String::from_utf8_lossy(&printed.stderr)
        );
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&String::from_utf8(printed.stdout).unwrap()).unwrap();
        let [users, authentication]: [Value; 2] = docs.try_into().expect("two documents");
        assert_eq!(authentication["kind"], "AuthenticationConfiguration");
        assert_eq!(authentication["apiVersion"], "apiserver.config.k8s.io/v1");
        assert_eq!(authentication["jwt"][0]["issuer"]["url"], issuer);
        assert_eq!(
            authentication["jwt"][0]["issuer"]["audiences"],
            json!(["kubectl"])
        );
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {
                    "server": format!("https://127.0.0.1:{port}"),
                    "certificate-authority": ca,
                }}],
                "users": users["users"],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "keygate-demo"}}],
                "current-context": "test",
            })
            .to_string(),
        )
        .unwrap();
        Self {
            _dev: dev,
            _manifests: manifests,
            _data: data,
            home,
            issuer,
            kubeconfig,
            authentication,
            seen,
        }
    }

    fn cache_home(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    /// Runs `kubectl get --raw /api` (no terminal: kubectl tells the plugin nobody can
    /// answer a sign-in); returns (success, stdout, stderr).
    async fn kubectl(&self) -> (bool, String, String) {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(KUBECTL)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["get", "--raw", "/api"])
                .env("HOME", self.home.path())
                .env("XDG_CACHE_HOME", self.cache_home())
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("kubectl finishes")
        .expect("kubectl (installed at /usr/bin/kubectl) runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `keygate login` as a person runs it in a terminal.
    fn login(&self, extra: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(BIN)
            .args(["login", "--issuer", &self.issuer, "--client-id", "kubectl"])
            .args(extra)
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.cache_home())
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// The cache file `keygate login` wrote.
    fn cache_file(&self) -> PathBuf {
        let dir = self.cache_home().join("keygate");
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }

    fn cached(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.cache_file()).unwrap()).unwrap()
    }
}

/// Signs the bootstrap admin in with the JSON API once, replacing the first-boot password.
async fn change_first_boot_password(base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = http
            .post(format!("{base}/t/demo/login"))
            .json(&json!({
                "email": EMAIL,
                "password": "first-boot-secret-91",
                "new_password": PASSWORD,
            }))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bootstrap admin never signed in: {}",
            response.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The hidden fields of the first form in `html`, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let unescape = |v: &str| {
        v.replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let form = &html[..html.find("</form>").unwrap_or(html.len())];
    form.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.strip_prefix(" value=\"")?.split('"').next()?;
            Some((name.to_owned(), unescape(value)))
        })
        .collect()
}

/// Opens `url` in the "browser"; signs in on keygate's page; returns where it ended.
async fn browse_signed_in(
    http: &reqwest::Client,
    jar: &mut Jar,
    url: &str,
) -> (u16, String, String) {
    let (status, page, html) = browse(http, jar, url.to_owned(), None).await;
    assert_eq!(status, 200, "{page}: {html}");
    assert!(page.contains("/t/demo/signin"), "sent to sign in: {page}");
    let mut form = hidden_fields(&html);
    form.push(("email".into(), EMAIL.into()));
    form.push(("password".into(), PASSWORD.into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    browse(http, jar, form_action(&page, &html), Some(pairs)).await
}

/// Reads `child`'s stderr until `pick` finds what it wants in a line; keeps draining it.
async fn from_stderr(
    child: &mut tokio::process::Child,
    pick: impl Fn(&str) -> Option<String>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let all = Arc::new(Mutex::new(Vec::new()));
    let found = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("keygate login prints where to sign in")
            .unwrap()
            .unwrap_or_else(|| panic!("stderr ended: {:?}", all.lock().unwrap()));
        all.lock().unwrap().push(line.clone());
        if let Some(found) = pick(&line) {
            break found;
        }
    };
    let kept = all.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    (found, all)
}

/// The `ExecCredential` a finished `keygate login` printed: (token, expirationTimestamp).
async fn credential(child: tokio::process::Child) -> (String, chrono::DateTime<chrono::Utc>) {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("keygate login finishes after the sign-in")
        .unwrap();
    assert!(out.status.success(), "keygate login failed");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(printed["kind"], "ExecCredential");
    let expiry = printed["status"]["expirationTimestamp"].as_str().unwrap();
    (
        printed["status"]["token"].as_str().unwrap().to_owned(),
        chrono::DateTime::parse_from_rfc3339(expiry).unwrap().into(),
    )
}

/// The claims of `token` as `jose` verifies them against the issuer's JWKS (issuer and
/// audience `kubectl` checked).
async fn verified_by_jose(issuer: &str, token: &str) -> Value {
    let peer = repo_root().join("gateway/tests/oauth-client");
    assert!(
        peer.join("node_modules/jose").is_dir(),
        "jose (with openid-client) is not installed: run scripts/test"
    );
    let discovery: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/cli/verify-jwt.mjs"))
        .arg(&peer)
        .arg(discovery["jwks_uri"].as_str().unwrap())
        .args([issuer, "kubectl", token])
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "jose refused the token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["header"]["typ"], "JWT");
    verified["claims"].clone()
}

/// A CEL value as JSON (the kinds claim mappings produce).
fn cel_json(v: &kube_cel::cel::Value) -> Value {
    use kube_cel::cel::Value as V;
    match v {
        V::String(s) => json!(s.as_str()),
        V::Bool(b) => json!(b),
        V::Int(i) => json!(i),
        V::List(items) => Value::Array(items.iter().map(cel_json).collect()),
        V::Null => Value::Null,
        other => panic!("unexpected CEL value {other:?}"),
    }
}

/// Evaluates `expression` with `claims` bound, as the API server evaluates claim rules.
fn cel(expression: &str, claims: &Value) -> Value {
    use kube_cel::KubeCelExt;
    let mut context = kube_cel::cel::Context::default().with_all();
    context.add_variable("claims", claims.clone()).unwrap();
    let program = kube_cel::cel::Program::compile(expression)
        .unwrap_or_else(|e| panic!("{expression}: {e:?}"));
    let value = program
        .execute(&context)
        .unwrap_or_else(|e| panic!("{expression}: {e:?}"));
    cel_json(&value)
}

/// What the API server would make of `claims` with the printed configuration:
/// Some((username, groups, uid)) when every claim validation rule holds.
fn api_server_user(authentication: &Value, claims: &Value) -> Option<(Value, Value, Value)> {
    let jwt = &authentication["jwt"][0];
    for rule in jwt["claimValidationRules"].as_array().unwrap() {
        if cel(rule["expression"].as_str().unwrap(), claims) != json!(true) {
            return None;
        }
    }
    let m = &jwt["claimMappings"];
    let eval = |k: &str| cel(m[k]["expression"].as_str().unwrap(), claims);
    Some((eval("username"), eval("groups"), eval("uid")))
}

/// Seconds since the epoch as the tokens count them.
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The whole path of a person on a laptop: kubectl without a sign-in fails saying what to
/// run; `keygate login` signs in through the browser (PKCE on a loopback redirect); kubectl
/// then sends the cached ID token, which `jose` verifies and the generated
/// AuthenticationConfiguration maps to the username and groups RBAC sees; when the token
/// nears its end the plugin refreshes it without a browser. The cache is private (0600).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_signs_in_through_keygate_login_and_refreshes_its_token() {
    let cluster = Cluster::start().await;

    let (ok, _, stderr) = cluster.kubectl().await;
    assert!(!ok, "kubectl got in without anyone signing in");
    assert!(
        stderr.contains("without interaction")
            && stderr.contains(&format!("keygate login --issuer {}", cluster.issuer)),
        "{stderr}"
    );
    assert!(cluster.seen.lock().unwrap().is_empty());

    let mut login = cluster.login(&["--no-browser"]);
    let (url, _) = from_stderr(&mut login, |l| {
        l.trim()
            .starts_with(&format!("{}/authorize?", cluster.issuer))
            .then(|| l.trim().to_owned())
    })
    .await;
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    let (status, landed, page) = browse_signed_in(&http, &mut jar, &url).await;
    assert_eq!(status, 200, "{landed}: {page}");
    assert!(
        landed.starts_with("http://127.0.0.1:") && landed.contains("/callback?"),
        "{landed}"
    );
    assert!(page.contains("Signed in"), "{page}");
    let (token, expires) = credential(login).await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&cluster.cache_file()),
            0o600,
            "the cache file is private"
        );
        assert_eq!(
            mode(&cluster.cache_home().join("keygate")),
            0o700,
            "the cache folder is private"
        );
    }
    let cached = cluster.cached();
    assert_eq!(cached["id_token"], token.as_str());
    let first_refresh = cached["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    // kubectl (no terminal) runs the plugin, which hands over the cached token.
    let (ok, body, stderr) = cluster.kubectl().await;
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["kind"],
        "APIVersions"
    );
    assert_eq!(
        cluster.seen.lock().unwrap().as_slice(),
        std::slice::from_ref(&token)
    );

    let claims = verified_by_jose(&cluster.issuer, &token).await;
    assert_eq!(claims["email"], EMAIL, "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    assert_eq!(claims["groups"], json!(["keygate-admins"]), "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap(), expires.timestamp());
    let (username, groups, uid) =
        api_server_user(&cluster.authentication, &claims).expect("the claim rules hold");
    assert_eq!(username, "keygate:demo:root@example.com");
    assert_eq!(groups, json!(["keygate:demo:keygate-admins"]));
    assert_eq!(uid, claims["sub"]);
    // The same person with an unverified address is no user to the API server.
    let mut unverified = claims.clone();
    unverified["email_verified"] = json!(false);
    assert!(api_server_user(&cluster.authentication, &unverified).is_none());

    // Within ten seconds of its end the token is refreshed, no browser involved.
    let wait = expires.timestamp() - 10 - now() + 1;
    assert!(wait <= ID_TOKEN_SECONDS, "{wait}");
    tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;
    let (ok, _, stderr) = cluster.kubectl().await;
    assert!(ok, "{stderr}");
    let refreshed = cluster.seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(refreshed, token, "kubectl sent the old token again");
    let cached = cluster.cached();
    assert_eq!(cached["id_token"], refreshed.as_str());
    assert_ne!(
        cached["refresh_token"],
        first_refresh.as_str(),
        "the refresh token rotated"
    );
    let renewed = verified_by_jose(&cluster.issuer, &refreshed).await;
    assert!(renewed["exp"].as_i64().unwrap() > claims["exp"].as_i64().unwrap());
    assert_eq!(renewed["sub"], claims["sub"]);
    assert_eq!(
        renewed["auth_time"], claims["auth_time"],
        "the sign-in it renews"
    );
    assert_eq!(
        api_server_user(&cluster.authentication, &renewed).map(|u| u.0),
        Some(json!("keygate:demo:root@example.com"))
    );
}

/// On a machine without a browser: `keygate login --device` prints a code, the person
/// approves it on keygate's device page from another (signed-in) browser, and kubectl then
/// uses the cached token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygate_login_signs_in_with_the_device_grant_for_kubectl() {
    let cluster = Cluster::start().await;
    let mut login = cluster.login(&["--device"]);
    let (complete, said) = from_stderr(&mut login, |l| {
        let rest = l.trim().strip_prefix("(or open ")?;
        Some(rest.strip_suffix(" directly)")?.to_owned())
    })
    .await;
    let said = said.lock().unwrap().join("\n");
    assert!(
        said.contains(&format!("open {}/device", cluster.issuer)),
        "{said}"
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    let (status, page, html) = browse_signed_in(&http, &mut jar, &complete).await;
    assert_eq!(status, 200, "{page}: {html}");
    assert!(html.contains("kubectl asks to act as you"), "{html}");
    let mut form = hidden_fields(&html);
    form.push(("action".into(), "approve".into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, _, answer) = browse(&http, &mut jar, form_action(&page, &html), Some(pairs)).await;
    assert_eq!(status, 200, "{answer}");
    let (token, _) = credential(login).await;

    let (ok, _, stderr) = cluster.kubectl().await;
    assert!(ok, "{stderr}");
    assert_eq!(
        cluster.seen.lock().unwrap().as_slice(),
        std::slice::from_ref(&token)
    );
    let claims = verified_by_jose(&cluster.issuer, &token).await;
    assert!(claims.get("nonce").is_none(), "{claims}");
    assert_eq!(
        api_server_user(&cluster.authentication, &claims).map(|u| u.1),
        Some(json!(["keygate:demo:keygate-admins"]))
    );
}
