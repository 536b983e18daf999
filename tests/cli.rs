//! End-to-end tests of the `keygate` binary as a user runs it: `keygate dev` from a clean
//! folder, and the one-line failures of `keygate gateway` when configuration is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "cli/kubectl.rs"]
mod kubectl;
#[path = "cli/schemathesis.rs"]
mod schemathesis;

const BIN: &str = env!("CARGO_BIN_EXE_keygate");

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `keygate dev` on a free port in a fresh data folder; returns the base URL.
fn start_dev(data_dir: &Path) -> (Running, String) {
    start_dev_with(data_dir, &[])
}

/// [`start_dev`] with extra environment variables.
fn start_dev_with(data_dir: &Path, env: &[(&str, &str)]) -> (Running, String) {
    let (running, url, _) = start_dev_capturing(&repo_root().join("examples/dev"), data_dir, env);
    (running, url)
}

/// [`start_dev_with`] on the manifest folder `manifests`.
fn start_dev_in(manifests: &Path, data_dir: &Path, env: &[(&str, &str)]) -> (Running, String) {
    let (running, url, _) = start_dev_capturing(manifests, data_dir, env);
    (running, url)
}

/// Every line `keygate dev` has written to stdout so far (its log and what it prints).
type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`start_dev_in`], also keeping every stdout line.
fn start_dev_capturing(
    manifests: &Path,
    data_dir: &Path,
    env: &[(&str, &str)],
) -> (Running, String, Lines) {
    start_dev_listening(manifests, data_dir, env, "127.0.0.1:0")
}

/// [`start_dev_capturing`] on the address `listen`.
fn start_dev_listening(
    manifests: &Path,
    data_dir: &Path,
    env: &[(&str, &str)],
    listen: &str,
) -> (Running, String, Lines) {
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--listen",
            listen,
            "--ext-authz-listen",
            "127.0.0.1:0",
            "--manifests",
        ])
        .arg(manifests)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("KEYGATE_DATABASE_URL")
        .env_remove("KEYGATE_MASTER_KEYS")
        .env_remove("KEYGATE_PUBLIC_URL")
        .env_remove("KEYGATE_LISTEN")
        .env_remove("KEYGATE_TRUSTED_PROXIES")
        .env_remove("KEYGATE_SMTP_URL")
        .env_remove("KEYGATE_SMTP_FROM")
        .env("KEYGATE_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("keygate dev starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Lines::default();
    let kept = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("keygate dev is serving on ") {
                let _ = tx.send(url.trim().to_owned());
            }
            kept.lock().unwrap().push(line);
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("keygate dev printed its URL");
    (Running(child), url, lines)
}

#[tokio::test]
async fn dev_serves_metadata_and_a_usable_jwks_for_the_demo_tenant() {
    let data = tempfile::tempdir().unwrap();
    let (_dev, base) = start_dev(data.path());
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let discovery: serde_json::Value = http
        .get(format!(
            "{base}/.well-known/oauth-authorization-server/t/demo"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], format!("{base}/t/demo"));
    // Each tenant is an OpenID Provider: the discovery document names the same issuer and
    // the authorization endpoint the metadata does.
    let oidc: serde_json::Value = http
        .get(format!("{base}/t/demo/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc["issuer"], discovery["issuer"]);
    assert_eq!(
        oidc["authorization_endpoint"],
        format!("{base}/t/demo/authorize")
    );
    assert_eq!(discovery["jwks_uri"], format!("{base}/t/demo/jwks.json"));
    let kid = discovery["keygate_signing_kid"]
        .as_str()
        .expect("signing kid advertised");

    let jwks_response = http
        .get(format!("{base}/t/demo/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        jwks_response.headers()["content-type"],
        "application/jwk-set+json"
    );
    let jwks: jsonwebtoken::jwk::JwkSet = jwks_response.json().await.unwrap();
    let key = jwks.find(kid).expect("the advertised kid is in the JWKS");
    assert!(
        key.common.key_algorithm.is_some(),
        "the signing key names its algorithm"
    );
    assert!(
        matches!(
            key.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                | jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)
        ),
        "demo key is RSA or EC"
    );
    jsonwebtoken::DecodingKey::from_jwk(key).expect("the JWK is a usable public key");
    let raw = serde_json::to_value(key).unwrap();
    assert!(
        raw.get("d").is_none() && raw.get("p").is_none(),
        "no private parts in JWKS"
    );

    let missing = http
        .get(format!("{base}/t/nope/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(problem["code"], "tenant_not_found");

    // One `/metrics` for both halves of dev: the operator's reconciles and the gateway's
    // requests (a separate registry used to hide the operator's).
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keygate_operator_reconciles_total{kind=\"tenant\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keygate_http_requests_total{code=\"404\",method=\"GET\",route=\"/t/{tenant}/jwks.json\"} 1"),
        "{metrics}"
    );

    // The data folder holds the database and a private master key, created on first run.
    assert!(data.path().join("keygate.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "master key readable by others: {mode:o}");
    }
}

#[test]
fn dev_keeps_its_keys_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let jwks = |base: &str| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            reqwest::get(format!("{base}/t/demo/jwks.json"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let first = {
        let (_dev, base) = start_dev(data.path());
        jwks(&base)
    };
    let (_dev, base) = start_dev(data.path());
    assert_eq!(
        first,
        jwks(&base),
        "a restart must not replace the tenant's keys"
    );
}

/// Runs `keygate gateway` with only the given environment; returns (exit ok, stderr).
fn gateway_with(env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("gateway").env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = cmd.output().expect("keygate gateway runs");
    assert!(
        Instant::now() < deadline,
        "gateway took too long to give up"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn master_key() -> String {
    "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned()
}

#[test]
fn gateway_without_master_key_exits_with_cause_and_fix() {
    let (ok, stderr) = gateway_with(&[
        (
            "KEYGATE_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("KEYGATE_PUBLIC_URL", "https://auth.example.com"),
    ]);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("KEYGATE_MASTER_KEYS") && stderr.contains("head -c32 /dev/urandom"),
        "{stderr}"
    );
}

#[test]
fn gateway_with_unreachable_database_exits_with_cause_and_fix() {
    // Port 1 on loopback refuses connections at once.
    let key = master_key();
    let (ok, stderr) = gateway_with(&[
        (
            "KEYGATE_DATABASE_URL",
            "postgres://keygate:s3cret-pw@127.0.0.1:1/keygate",
        ),
        ("KEYGATE_MASTER_KEYS", &key),
        ("KEYGATE_PUBLIC_URL", "https://auth.example.com"),
        ("KEYGATE_LOG", "off"),
    ]);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("cannot reach the database at postgres://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(stderr.contains("KEYGATE_DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "password leaked: {stderr}");
}

#[test]
fn crds_subcommand_prints_all_five_kinds() {
    let out = Command::new(BIN).arg("crds").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    for kind in [
        "Tenant",
        "IdentityProvider",
        "Role",
        "ApiKey",
        "OAuthClient",
    ] {
        assert!(printed.contains(&format!("kind: {kind}")), "{kind} missing");
    }
}

#[test]
fn a_second_dev_on_the_same_folder_is_refused_with_a_hint() {
    let data = tempfile::tempdir().unwrap();
    let (_dev, _base) = start_dev(data.path());
    let out = Command::new(BIN)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--ext-authz-listen",
            "127.0.0.1:0",
            "--manifests",
        ])
        .arg(repo_root().join("examples/dev"))
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another `keygate dev` is already using"),
        "{stderr}"
    );
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

/// `keygate dev` reads the settings `keygate gateway` reads: a bad trusted-proxy list is a
/// one-line config error at start-up, not silently ignored.
#[test]
fn dev_refuses_an_invalid_trusted_proxy_list() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--ext-authz-listen",
            "127.0.0.1:0",
            "--manifests",
        ])
        .arg(repo_root().join("examples/dev"))
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("KEYGATE_DATABASE_URL")
        .env_remove("KEYGATE_MASTER_KEYS")
        .env_remove("KEYGATE_PUBLIC_URL")
        .env_remove("KEYGATE_LISTEN")
        .env("KEYGATE_TRUSTED_PROXIES", "10.0.0.0/8,not-a-proxy")
        .env("KEYGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keygate dev starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keygate dev kept running with KEYGATE_TRUSTED_PROXIES=not-a-proxy");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("KEYGATE_TRUSTED_PROXIES") && stderr.contains("not-a-proxy"),
        "{stderr}"
    );
}

/// `keygate dev` reads the settings `keygate gateway` reads: with the test's loopback
/// address as a trusted proxy, a session records the forwarded client address; the
/// bootstrap admin of `KEYGATE_BOOTSTRAP_*` is created too.
#[tokio::test]
async fn dev_believes_forwarded_addresses_only_from_trusted_proxies() {
    let data = tempfile::tempdir().unwrap();
    let (_dev, base) = start_dev_with(
        data.path(),
        &[
            ("KEYGATE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("KEYGATE_BOOTSTRAP_TENANT", "demo"),
            ("KEYGATE_BOOTSTRAP_EMAIL", "root@example.com"),
            ("KEYGATE_BOOTSTRAP_PASSWORD", "first-boot-secret-91"),
        ],
    );
    let http = reqwest::Client::new();
    // The bootstrap runs in the background: retry until the account exists.
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let response = http
            .post(format!("{base}/t/demo/login"))
            .header("X-Forwarded-For", "203.0.113.7")
            .json(&serde_json::json!({
                "email": "root@example.com",
                "password": "first-boot-secret-91",
                "new_password": "admin-chosen-secret-92",
            }))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: serde_json::Value = response.json().await.unwrap();
            break body["access_token"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "bootstrap admin never signed in: {}",
            response.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let sessions: serde_json::Value = http
        .get(format!("{base}/t/demo/me/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ips: Vec<&str> = sessions["sessions"]
        .as_array()
        .expect("a list of sessions")
        .iter()
        .filter_map(|s| s["ip"].as_str())
        .collect();
    assert_eq!(ips, ["203.0.113.7"], "{sessions}");
}

/// A copy of `examples/dev` the test may edit.
fn dev_manifests() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_root().join("examples/dev")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// The raw key `keygate dev` wrote to the demo key's Secret file, once it is there.
fn demo_api_key(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("secrets/default/demo-api-key.yaml")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("apiKey:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
}

/// Forward-auth's answer to a check with `key`, as an ingress would ask it.
async fn check_key(http: &reqwest::Client, base: &str, key: &str) -> u16 {
    http.get(format!("{base}/forward-auth?tenant=demo"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls forward-auth with `key` until it answers 401; returns how long that took, or
/// `None` if it still answered 200 after `within`.
async fn refused_within(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        match check_key(http, base, key).await {
            401 => return Some(started.elapsed()),
            200 => {}
            other => panic!("forward-auth answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Deleting an ApiKey manifest in `keygate dev` ends its key at the next forward-auth
/// check, not when forward-auth's 30 s cache of the proven key runs out.
#[tokio::test]
async fn dev_refuses_a_deleted_api_key_at_the_next_check() {
    let (manifests, data) = (dev_manifests(), tempfile::tempdir().unwrap());
    let (_dev, base) = start_dev_in(manifests.path(), data.path(), &[]);
    let http = reqwest::Client::new();
    let key = demo_api_key(data.path()).expect("dev wrote the demo key");
    assert_eq!(check_key(&http, &base, &key).await, 200);
    assert_eq!(
        check_key(&http, &base, &key).await,
        200,
        "served from the cache"
    );

    std::fs::remove_file(manifests.path().join("apikey-demo-key.yaml")).unwrap();
    // The folder is polled every second; the pass revokes the key and tells forward-auth.
    let took = refused_within(&http, &base, &key, Duration::from_secs(6)).await;
    assert!(took.is_some(), "the deleted key still works after 6 s");
}

/// A key rotated out in `keygate dev` keeps working through its grace period, then is
/// refused by forward-auth at once, though forward-auth proved (and cached) it before the
/// rotation.
#[tokio::test]
async fn dev_refuses_a_rotated_out_api_key_when_its_grace_ends() {
    let (manifests, data) = (dev_manifests(), tempfile::tempdir().unwrap());
    let manifest = manifests.path().join("apikey-demo-key.yaml");
    let rotating = std::fs::read_to_string(&manifest).unwrap().replace(
        "  # expiresAt: \"2030-01-01T00:00:00Z\"\n",
        "  rotation:\n    every: 5s\n    gracePeriod: 3s\n",
    );
    assert!(rotating.contains("every: 5s"), "the example changed shape");
    std::fs::write(&manifest, &rotating).unwrap();
    let (_dev, base) = start_dev_in(manifests.path(), data.path(), &[]);
    let http = reqwest::Client::new();
    let old = demo_api_key(data.path()).expect("dev wrote the demo key");

    tokio::time::sleep(Duration::from_secs(5)).await;
    // Proven (and cached for up to 30 s) just before the rotation is due.
    assert_eq!(check_key(&http, &base, &old).await, 200);
    // Rotation is due now; an edit makes dev reconcile without waiting for its resync.
    std::fs::write(&manifest, format!("{rotating}# edited\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        match demo_api_key(data.path()) {
            Some(key) if key != old => break key,
            _ => assert!(Instant::now() < deadline, "the key was not rotated"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        check_key(&http, &base, &new).await,
        200,
        "the new key works"
    );
    let took = refused_within(&http, &base, &old, Duration::from_secs(10))
        .await
        .expect("the rotated-out key still works 10 s after the rotation");
    assert!(
        took <= Duration::from_secs(3 + 2),
        "refused {took:?} after the rotation; the grace is 3 s"
    );
}

/// Without SMTP, `keygate dev` prints a mail's link to its terminal inside a block labelled
/// dev-only, and its log (here at TRACE, on the same stdout) never carries the link.
#[tokio::test]
async fn dev_prints_mails_labelled_dev_only_and_never_logs_them() {
    let data = tempfile::tempdir().unwrap();
    let (_dev, base, lines) = start_dev_capturing(
        &repo_root().join("examples/dev"),
        data.path(),
        &[("KEYGATE_LOG", "trace")],
    );
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/t/demo/accounts"))
        .json(&serde_json::json!({"email": "new@example.com", "password": "ochre-dune-willow-58"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let (block, outside) = loop {
        let all = lines.lock().unwrap().clone();
        let start = all
            .iter()
            .position(|l| l.starts_with("--- keygate dev only: this email was NOT sent"));
        let end = all.iter().position(|l| l == "--- end of email ---");
        if let (Some(start), Some(end)) = (start, end) {
            let block = all[start..=end].to_vec();
            let outside: Vec<String> = all[..start]
                .iter()
                .chain(&all[end + 1..])
                .cloned()
                .collect();
            break (block, outside);
        }
        assert!(Instant::now() < deadline, "no mail printed: {all:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        block.iter().any(|l| l == "To: new@example.com"),
        "{block:#?}"
    );
    let token = block
        .iter()
        .find_map(|l| l.split("token=").nth(1))
        .expect("the verification link")
        .to_owned();
    assert!(token.len() >= 32, "{token}");
    assert!(
        outside
            .iter()
            .any(|l| l.contains("TRACE") || l.contains("DEBUG")),
        "the log runs at TRACE"
    );
    assert!(
        !outside.iter().any(|l| l.contains(&token)),
        "the verification token reached the log"
    );
}

/// `keygate dev` prints where its gRPC ext_authz service listens, and `keygate explain`
/// asks the running gateway about a credential: every check with its outcome, exit status 0
/// when the request would pass and 2 when not, refused without an admin credential.
#[tokio::test]
async fn explain_prints_each_check_of_the_live_decision() {
    let manifests = dev_manifests();
    std::fs::write(
        manifests.path().join("apikey-explainer.yaml"),
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: explainer\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: explainer-key\n  permissions: [\"keygate:admin\"]\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (_dev, url, lines) = start_dev_capturing(manifests.path(), data.path(), &[]);
    let printed = Instant::now() + Duration::from_secs(10);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("ext_authz   gRPC on 127.0.0.1:"))
    {
        assert!(
            Instant::now() < printed,
            "keygate dev prints the gRPC address: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let key_of = |file: &str| {
        let text =
            std::fs::read_to_string(data.path().join(format!("secrets/default/{file}.yaml")))
                .ok()?;
        text.lines()
            .find_map(|l| l.trim().strip_prefix("apiKey:"))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (demo, admin) = loop {
        if let (Some(d), Some(a)) = (key_of("demo-api-key"), key_of("explainer-key")) {
            break (d, a);
        }
        assert!(Instant::now() < deadline, "the keys' Secret files appear");
        std::thread::sleep(Duration::from_millis(200));
    };
    let explain = |requirements: &str, admin: &str| {
        Command::new(BIN)
            .args([
                "explain",
                "--gateway",
                &url,
                "--tenant",
                "demo",
                requirements,
            ])
            .env("KEYGATE_EXPLAIN_TOKEN", &demo)
            .env("KEYGATE_ADMIN_TOKEN", admin)
            .output()
            .unwrap()
    };
    let ok = explain("role=viewer", &admin);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("allowed (allowed), HTTP 200, decision "),
        "{text}"
    );
    assert!(
        text.contains("\n  role          pass  any of viewer; held viewer"),
        "{text}"
    );
    assert!(text.contains("\n  credential    pass  ApiKey"), "{text}");
    assert!(!text.contains(&demo), "the key is never printed");

    let denied = explain("role=demo-admin&perm=users.write", &admin);
    let text = String::from_utf8_lossy(&denied.stdout);
    assert_eq!(denied.status.code(), Some(2), "{text}");
    assert!(
        text.starts_with("denied (missing_role), HTTP 403"),
        "{text}"
    );
    assert!(text.contains("\n  role          fail  "), "{text}");
    assert!(
        text.contains("\n  perm          fail  "),
        "every check is listed: {text}"
    );

    let refused = explain("role=viewer", &demo);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("keygate:admin"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// `oidc-provider` (npm) on plain HTTP on 127.0.0.1, with keygate registered as a client
/// redirecting to `redirect`; returns it with its issuer.
fn oidc_provider_http(dir: &Path, redirect: &str) -> (Running, String) {
    let peer = repo_root().join("gateway/tests/oidc-provider");
    assert!(
        peer.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed: run scripts/test"
    );
    let config = dir.join("provider.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "clientId": "keygate-dev",
            "clientSecret": "dev-client-secret-0123456789",
            "redirectUris": [redirect],
        })
        .to_string(),
    )
    .unwrap();
    let mut child = Command::new("node")
        .arg(peer.join("provider.mjs"))
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line.strip_prefix("listening ") {
                let _ = tx.send(port.trim().to_owned());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("oidc-provider prints its port");
    (Running(child), format!("http://127.0.0.1:{port}"))
}

/// Cookies by host, as a browser keeps them (ports do not separate hosts).
#[derive(Default)]
struct Jar(std::collections::HashMap<String, std::collections::BTreeMap<String, String>>);

impl Jar {
    fn host(url: &str) -> String {
        url::Url::parse(url).unwrap().host_str().unwrap().to_owned()
    }
    fn header(&self, url: &str) -> String {
        self.0
            .get(&Self::host(url))
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
    fn keep(&mut self, url: &str, r: &reqwest::Response) {
        let cookies = self.0.entry(Self::host(url)).or_default();
        for v in r.headers().get_all("set-cookie") {
            let c = cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap();
            if c.value().is_empty() || c.max_age().is_some_and(|a| a.is_zero()) {
                cookies.remove(c.name());
            } else {
                cookies.insert(c.name().to_owned(), c.value().to_owned());
            }
        }
    }
}

/// Sends a request as the browser, following redirects; returns the last URL and body.
async fn browse(
    http: &reqwest::Client,
    jar: &mut Jar,
    mut url: String,
    mut form: Option<Vec<(&str, &str)>>,
) -> (u16, String, String) {
    for _ in 0..20 {
        let mut req = match form.take() {
            Some(pairs) => {
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish();
                http.post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            None => http.get(&url),
        };
        let cookies = jar.header(&url);
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        let r = req.send().await.unwrap();
        jar.keep(&url, &r);
        if !r.status().is_redirection() {
            let status = r.status().as_u16();
            return (status, url, r.text().await.unwrap());
        }
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        url = url::Url::parse(&url)
            .unwrap()
            .join(&location)
            .unwrap()
            .to_string();
    }
    panic!("too many redirects from {url}");
}

fn form_action(page_url: &str, html: &str) -> String {
    let at = html.find("action=\"").unwrap() + "action=\"".len();
    let action = &html[at..at + html[at..].find('"').unwrap()];
    url::Url::parse(page_url)
        .unwrap()
        .join(action)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn dev_signs_people_in_through_an_identity_provider_manifest_and_its_secret() {
    let data = tempfile::tempdir().unwrap();
    let manifests = dev_manifests();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let (_provider, issuer) =
        oidc_provider_http(data.path(), &format!("{base}/t/demo/sso/corp/callback"));
    std::fs::write(
        manifests.path().join("identity-provider-corp.yaml"),
        format!(
            "apiVersion: keygate.dev/v1alpha1
kind: IdentityProvider
metadata:
  name: corp
  namespace: default
spec:
  tenantRef:
    name: demo
  displayName: Sign in with Corp
  type: oidc
  oidc:
    issuer: {issuer}
    clientId: keygate-dev
    clientSecretRef:
      name: corp-sso
      key: client-secret
---
apiVersion: v1
kind: Secret
metadata:
  name: corp-sso
  namespace: default
stringData:
  client-secret: dev-client-secret-0123456789
"
        ),
    )
    .unwrap();
    let (_dev, url, _) = start_dev_listening(
        manifests.path(),
        data.path(),
        &[],
        &format!("127.0.0.1:{port}"),
    );
    assert_eq!(url, base);

    // The status view says it is usable and which redirect URI to register.
    let status = std::fs::read_to_string(data.path().join("status.yaml")).unwrap();
    // Its own entry only: the lines below its key, up to the next resource.
    let corp: String = status
        .lines()
        .skip_while(|l| !l.contains("IdentityProvider default/corp"))
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.starts_with('-'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        corp.contains(&format!("{base}/t/demo/sso/corp/callback")),
        "{status}"
    );
    assert!(corp.contains("True") && !corp.contains("False"), "{status}");

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    let (_, _, signin) = browse(&http, &mut jar, format!("{base}/t/demo/signin"), None).await;
    assert!(signin.contains("/t/demo/sso/corp/start"), "{signin}");
    let (status, page, login) = browse(
        &http,
        &mut jar,
        format!("{base}/t/demo/sso/corp/start"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}: {login}");
    let (_, page, consent) = browse(
        &http,
        &mut jar,
        form_action(&page, &login),
        Some(vec![
            ("prompt", "login"),
            ("login", "grace@example.com"),
            ("password", "x"),
        ]),
    )
    .await;
    let (status, page, _) = browse(
        &http,
        &mut jar,
        form_action(&page, &consent),
        Some(vec![("prompt", "consent")]),
    )
    .await;
    assert_eq!(
        (status, page.as_str()),
        (200, format!("{base}/t/demo/account").as_str())
    );
    let me: serde_json::Value = http
        .get(format!("{base}/t/demo/userinfo"))
        .header("cookie", jar.header(&base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "grace@example.com", "{me}");
}

/// The resident memory of process `pid` in MiB (`VmRSS`).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib / 1024.0
}

/// `rounds` sign-ins of unknown accounts (each runs a full argon2id verification), `at_once`
/// at a time, each from its own forwarded address so the per-address budget never refuses
/// one; every one must be answered 401.
async fn unknown_sign_ins(http: &reqwest::Client, base: &str, rounds: usize, at_once: usize) {
    for batch in 0..rounds.div_ceil(at_once) {
        let calls: Vec<_> = (0..at_once)
            .map(|i| {
                let n = batch * at_once + i;
                tokio::spawn(
                    http.post(format!("{base}/t/demo/login"))
                        .header("X-Forwarded-For", format!("198.51.100.{}", n % 250 + 1))
                        .json(&serde_json::json!({
                            "email": format!("nobody{n}@example.com"),
                            "password": "not-a-real-password-7",
                        }))
                        .send(),
                )
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().status(), 401);
        }
    }
}

/// Issue 19: memory of `keygate dev` under sign-ins is bounded by its hashing threads
/// (each keeps one 19 MiB argon2id block) and does not grow with the number of sign-ins.
/// Generous bounds, not a measurement: the point is that a second round adds nothing.
#[tokio::test]
async fn dev_memory_stays_bounded_across_many_sign_ins() {
    let data = tempfile::tempdir().unwrap();
    let (dev, base) = start_dev_with(
        data.path(),
        &[
            ("KEYGATE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("KEYGATE_PASSWORD_HASH_THREADS", "2"),
        ],
    );
    let pid = dev.0.id();
    let http = reqwest::Client::new();
    let idle = rss_mib(pid);
    unknown_sign_ins(&http, &base, 30, 8).await;
    let first = rss_mib(pid);
    unknown_sign_ins(&http, &base, 30, 8).await;
    let second = rss_mib(pid);
    eprintln!("RSS {idle:.1} MiB idle, {first:.1} after 30 sign-ins, {second:.1} after 60");
    // Two hashing threads hold 2 × 19 MiB; allow as much again for everything else.
    assert!(
        first < idle + 80.0,
        "RSS {idle:.0} MiB idle, {first:.0} MiB after 30 sign-ins"
    );
    assert!(
        second < first + 20.0,
        "RSS kept growing: {first:.0} MiB after 30 sign-ins, {second:.0} MiB after 60"
    );
}

/// SIGTERM with sign-ins in flight: they are answered, and the process exits on its own
/// (status 0) well within the drain, after which nothing accepts connections.
#[tokio::test]
async fn dev_finishes_requests_in_flight_on_sigterm_and_exits() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const SIGN_INS: usize = 48;
    let data = tempfile::tempdir().unwrap();
    let (mut dev, base) = start_dev_with(
        data.path(),
        &[
            ("KEYGATE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("KEYGATE_PASSWORD_HASH_THREADS", "1"),
            ("KEYGATE_SHUTDOWN_DRAIN_SECONDS", "20"),
        ],
    );
    let http = reqwest::Client::new();
    // Many sign-ins queue on one hashing thread: most are still waiting when SIGTERM comes.
    let answered = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..SIGN_INS)
        .map(|n| {
            let request = http
                .post(format!("{base}/t/demo/login"))
                .header("X-Forwarded-For", format!("198.51.100.{}", n + 1))
                .json(&serde_json::json!({
                    "email": format!("nobody{n}@example.com"),
                    "password": "not-a-real-password-7",
                }));
            let answered = answered.clone();
            tokio::spawn(async move {
                let status = request.send().await.map(|r| r.status().as_u16());
                answered.fetch_add(1, Ordering::SeqCst);
                status
            })
        })
        .collect();
    let started = Instant::now();
    while answered.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no sign-in answered"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &dev.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let at_signal = answered.load(Ordering::SeqCst);
    assert!(
        at_signal < SIGN_INS,
        "every sign-in was answered before SIGTERM: nothing was in flight"
    );
    let sent = Instant::now();
    for call in calls {
        let status = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("a sign-in in flight is answered")
            .unwrap();
        assert_eq!(status.unwrap(), 401);
    }
    let status = loop {
        if let Some(status) = dev.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(25),
            "keygate dev still running 25 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "still accepting after exit"
    );
    eprintln!("{at_signal} of {SIGN_INS} sign-ins answered when SIGTERM was sent");
}
