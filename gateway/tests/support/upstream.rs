//! Upstream identity providers for the federation tests: `oidc-provider` (npm, OpenID
//! certified) over HTTPS with a CA the test makes, a minimal OpenID Provider minting ID tokens
//! with `jsonwebtoken` for the refusals a well-behaved provider never produces (wrong nonce,
//! audience or signature), the smallest stand-in answering GitHub's documented shapes, and a
//! browser: redirects followed by hand, cookies kept per host (parsed by the `cookie` crate).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::tls::Pki;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use keygate_core::crypto::signing::{self, GeneratedKey, SigningAlgorithm};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The client keygate is registered as at every test provider.
pub const CLIENT_ID: &str = "keygate-test";
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789-abcdef";

/// A running `oidc-provider`.
pub struct OidcProvider {
    pub issuer: String,
    pub ca_pem: String,
    child: Child,
    /// Its stdin and the lines it answers there with (provider.mjs's commands).
    control: Mutex<(ChildStdin, std::sync::mpsc::Receiver<String>)>,
    _pki: Pki,
    _config: tempfile::TempDir,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcProvider {
    /// Sends `command` to provider.mjs and waits for its answer, the line starting with
    /// `answer_prefix`.
    fn command(&self, command: &str, answer_prefix: &str) -> String {
        let mut control = self.control.lock().unwrap();
        writeln!(control.0, "{command}").unwrap();
        control.0.flush().unwrap();
        loop {
            let line = control
                .1
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("oidc-provider answers its command within 30 s");
            if let Some(rest) = line.strip_prefix(answer_prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Rotates the provider's signing key: a new key signs from now on and is published first
    /// in its JWKS, the old ones stay published. The new key's `kid`.
    pub fn rotate_keys(&self) -> String {
        self.command("rotate", "rotated ")
    }

    /// How many requests for `path` (say `/jwks`) the provider has served.
    pub fn requests(&self, path: &str) -> u64 {
        let prefix = format!("requests {path} ");
        self.command(&format!("requests {path}"), &prefix)
            .parse()
            .unwrap()
    }
}

/// How the provider is set up.
#[derive(Default)]
pub struct ProviderOptions {
    /// Redirect URIs registered for keygate's client.
    pub redirect_uris: Vec<String>,
    /// Put `hd` (the email's domain) into the claims and every claim into the ID token, as
    /// Google does.
    pub google: bool,
    /// Answer `prompt=login` and `max_age` from the existing session instead of asking the
    /// person to sign in again (a provider that does not re-authenticate).
    pub ignore_reauthentication: bool,
}

fn peer_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// Starts `oidc-provider` on a free port over HTTPS; panics (the test fails) when it cannot.
pub fn oidc_provider(opts: ProviderOptions) -> OidcProvider {
    let dir = peer_dir();
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed: run scripts/test (npm ci in gateway/tests/oidc-provider)"
    );
    let pki = Pki::new(&["localhost"]);
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("config.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&json!({
            "cert": pki.cert(),
            "key": pki.key(),
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "redirectUris": opts.redirect_uris,
            "hd": opts.google,
            "ignoreReauthentication": opts.ignore_reauthentication,
        }))
        .unwrap(),
    )
    .unwrap();
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (answers, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line.strip_prefix("listening ") {
                let _ = tx.send(port.trim().parse::<u16>().unwrap());
            } else {
                let _ = answers.send(line);
            }
        }
    });
    let port = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("oidc-provider prints its port within 30 s");
    OidcProvider {
        issuer: format!("https://localhost:{port}"),
        ca_pem: std::fs::read_to_string(pki.ca()).unwrap(),
        child,
        control: Mutex::new((stdin, answered)),
        _pki: pki,
        _config: config,
    }
}

/// A browser: follows redirects itself (recording each URL), keeps cookies per host.
pub struct Browser {
    http: reqwest::Client,
    jar: Mutex<HashMap<String, HashMap<String, String>>>,
    pub visited: Mutex<Vec<String>>,
}

/// A page the browser ended on.
pub struct Page {
    pub status: reqwest::StatusCode,
    pub url: String,
    pub body: String,
}

impl Browser {
    /// A browser trusting `ca_pem` besides the system roots.
    pub fn new(ca_pem: Option<&str>) -> Self {
        let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            b = b.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem.as_bytes()).unwrap());
        }
        Self {
            http: b.build().unwrap(),
            jar: Mutex::default(),
            visited: Mutex::default(),
        }
    }

    fn host(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        u.host_str().unwrap().to_owned()
    }

    fn cookie_header(&self, url: &str) -> Option<String> {
        let jar = self.jar.lock().unwrap();
        let cookies = jar.get(&Self::host(url))?;
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep_cookies(&self, url: &str, headers: &reqwest::header::HeaderMap) {
        let mut jar = self.jar.lock().unwrap();
        let cookies = jar.entry(Self::host(url)).or_default();
        for value in headers.get_all(reqwest::header::SET_COOKIE) {
            let c = cookie::Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
            let expired =
                c.max_age().is_some_and(|a| a.is_zero() || a.is_negative()) || c.value().is_empty();
            if expired {
                cookies.remove(c.name());
            } else {
                cookies.insert(c.name().to_owned(), c.value().to_owned());
            }
        }
    }

    /// The cookie `name` this browser holds for `url`'s host.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let jar = self.jar.lock().unwrap();
        jar.get(&Self::host(url))?.get(name).cloned()
    }

    /// Sets a cookie for `url`'s host (as another tab of the same browser would have it).
    pub fn set_cookie(&self, url: &str, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap();
        jar.entry(Self::host(url))
            .or_default()
            .insert(name.into(), value.into());
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
    ) -> reqwest::Response {
        self.visited.lock().unwrap().push(url.to_owned());
        let mut req = self.http.request(method, url);
        if let Some(c) = self.cookie_header(url) {
            req = req.header(reqwest::header::COOKIE, c);
        }
        if let Some(pairs) = form {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                s.append_pair(k, v);
            }
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(s.finish());
        }
        let r = req.send().await.unwrap();
        self.keep_cookies(url, r.headers());
        r
    }

    /// GET `url` and follow redirects until a page, or until `stop` says a URL is not to
    /// be followed (that URL is returned as the page's `url` with status 0-less 3xx).
    pub async fn get_until(&self, url: &str, stop: impl Fn(&str) -> bool) -> Page {
        let r = self.send(reqwest::Method::GET, url, None).await;
        self.follow(url.to_owned(), r, stop).await
    }

    /// GET `url`, following every redirect.
    pub async fn get(&self, url: &str) -> Page {
        self.get_until(url, |_| false).await
    }

    /// POST a form and follow the redirects, unless `stop` says otherwise.
    pub async fn post_until(
        &self,
        url: &str,
        form: &[(&str, &str)],
        stop: impl Fn(&str) -> bool,
    ) -> Page {
        let r = self.send(reqwest::Method::POST, url, Some(form)).await;
        self.follow(url.to_owned(), r, stop).await
    }

    async fn follow(
        &self,
        mut url: String,
        mut r: reqwest::Response,
        stop: impl Fn(&str) -> bool,
    ) -> Page {
        for _ in 0..30 {
            if !r.status().is_redirection() {
                break;
            }
            let location = r.headers()[reqwest::header::LOCATION].to_str().unwrap();
            let next = url::Url::parse(&url)
                .unwrap()
                .join(location)
                .unwrap()
                .to_string();
            if stop(&next) {
                return Page {
                    status: r.status(),
                    url: next,
                    body: String::new(),
                };
            }
            url = next;
            r = self.send(reqwest::Method::GET, &url, None).await;
        }
        Page {
            status: r.status(),
            url,
            body: r.text().await.unwrap(),
        }
    }

    /// Submits the first form of `page` (its `action`) with `fields`.
    pub async fn submit(
        &self,
        page: &Page,
        fields: &[(&str, &str)],
        stop: impl Fn(&str) -> bool,
    ) -> Page {
        let action = form_action(&page.body).expect("the page has a form");
        let target = url::Url::parse(&page.url)
            .unwrap()
            .join(&action)
            .unwrap()
            .to_string();
        self.post_until(&target, fields, stop).await
    }
}

/// The `action` of the first form in an HTML page (oidc-provider's forms put it first).
fn form_action(html: &str) -> Option<String> {
    let start = html.find("<form")?;
    let rest = &html[start..];
    let a = rest.find("action=\"")? + "action=\"".len();
    let end = rest[a..].find('"')?;
    Some(rest[a..a + end].replace("&amp;", "&"))
}

/// Signs in at oidc-provider's development login form as `login` (its account id; see
/// `provider.mjs`) starting from `start` (keygate's SSO start URL), consents, and stops when
/// the provider redirects back to keygate's callback (returned as `url`).
pub async fn through_provider(browser: &Browser, start: &str, login: &str) -> Page {
    let is_callback = |u: &str| u.contains("/sso/") && u.contains("/callback");
    let page = browser.get_until(start, is_callback).await;
    if is_callback(&page.url) {
        // Still signed in at the provider: it answers at once.
        return page;
    }
    assert_eq!(
        page.status, 200,
        "the provider's login form at {}: {}",
        page.url, page.body
    );
    let page = browser
        .submit(
            &page,
            &[("prompt", "login"), ("login", login), ("password", "any")],
            is_callback,
        )
        .await;
    if is_callback(&page.url) {
        return page;
    }
    assert_eq!(
        page.status, 200,
        "the provider's consent form: {}",
        page.body
    );
    browser
        .submit(&page, &[("prompt", "consent")], is_callback)
        .await
}

// ---------------------------------------------------------------------------------------
// A minimal OpenID Provider minting ID tokens with jsonwebtoken, for refusals.

/// What the minter puts wrong into the ID token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    None,
    WrongNonce,
    WrongAudience,
    /// Signed by a key the JWKS does not hold, under the published key's `kid`.
    WrongKey,
    Expired,
    /// `alg: none`-like downgrade: HS256 keyed with the client secret.
    Hs256,
}

struct MinterState {
    issuer: String,
    key: GeneratedKey,
    other: GeneratedKey,
    flaw: Mutex<Flaw>,
    nonce: Mutex<Option<String>>,
}

/// The minting provider on a loopback port (plain HTTP: the gateway under test accepts
/// loopback issuers, as `keygate dev` does).
pub struct Minter {
    pub issuer: String,
    state: Arc<MinterState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Minter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Minter {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(MinterState {
            issuer: issuer.clone(),
            key: signing::generate(SigningAlgorithm::ES256).unwrap(),
            other: signing::generate(SigningAlgorithm::ES256).unwrap(),
            flaw: Mutex::new(Flaw::None),
            nonce: Mutex::default(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(minter_discovery))
            .route("/jwks", get(minter_jwks))
            .route("/authorize", get(minter_authorize))
            .route("/token", post(minter_token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            issuer,
            state,
            task,
        }
    }

    pub fn flaw(&self, flaw: Flaw) {
        *self.state.flaw.lock().unwrap() = flaw;
    }
}

async fn minter_discovery(State(s): State<Arc<MinterState>>) -> Json<Value> {
    let i = &s.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn minter_jwks(State(s): State<Arc<MinterState>>) -> Json<Value> {
    Json(json!({ "keys": [s.key.public_jwk] }))
}

async fn minter_authorize(
    State(s): State<Arc<MinterState>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    *s.nonce.lock().unwrap() = q.get("nonce").cloned();
    let mut target = url::Url::parse(&q["redirect_uri"]).unwrap();
    target
        .query_pairs_mut()
        .append_pair("code", "minted-code")
        .append_pair("state", &q["state"]);
    Redirect::to(target.as_str())
}

async fn minter_token(State(s): State<Arc<MinterState>>) -> Json<Value> {
    let flaw = *s.flaw.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let nonce = s.nonce.lock().unwrap().clone().unwrap_or_default();
    let claims = json!({
        "iss": s.issuer,
        "sub": "minted-subject",
        "aud": if flaw == Flaw::WrongAudience { "someone-else" } else { CLIENT_ID },
        "iat": now,
        "exp": if flaw == Flaw::Expired { now - 600 } else { now + 300 },
        "nonce": if flaw == Flaw::WrongNonce { "not-the-nonce".to_owned() } else { nonce },
        "email": "minted@example.com",
        "email_verified": true,
    });
    let id_token = match flaw {
        Flaw::Hs256 => jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
        )
        .unwrap(),
        _ => {
            let signer = if flaw == Flaw::WrongKey {
                &s.other
            } else {
                &s.key
            };
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some(s.key.kid.clone());
            jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_ec_pem(signer.private_pem.as_bytes()).unwrap(),
            )
            .unwrap()
        }
    };
    Json(json!({
        "access_token": "minted-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
}

// ---------------------------------------------------------------------------------------
// GitHub's OAuth and REST shapes, the smallest that answers them (docs.github.com: "Authorizing
// OAuth apps", "Get the authenticated user", "List email addresses for the authenticated
// user", "List organizations for the authenticated user").

/// The person the GitHub stand-in signs in.
#[derive(Clone)]
pub struct GithubPerson {
    pub id: u64,
    pub login: String,
    pub emails: Vec<(String, bool, bool)>,
    pub orgs: Vec<String>,
}

pub struct GithubStandIn {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GithubStandIn {
    pub async fn start(person: GithubPerson) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let person = Arc::new(person);
        let app = Router::new()
            .route(
                "/login/oauth/authorize",
                get(|Query(q): Query<HashMap<String, String>>| async move {
                    assert_eq!(q["client_id"], CLIENT_ID);
                    assert_eq!(q["code_challenge_method"], "S256");
                    let mut target = url::Url::parse(&q["redirect_uri"]).unwrap();
                    target
                        .query_pairs_mut()
                        .append_pair("code", "gh-code")
                        .append_pair("state", &q["state"]);
                    Redirect::to(target.as_str())
                }),
            )
            .route(
                "/login/oauth/access_token",
                post(|body: String| async move {
                    let form: HashMap<String, String> =
                        form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    assert_eq!(form["code"], "gh-code");
                    assert!(form.contains_key("code_verifier"));
                    Json(json!({"access_token": "gho_test", "token_type": "bearer", "scope": "read:user,user:email,read:org"}))
                }),
            )
            .route(
                "/user",
                get({
                    let p = person.clone();
                    move |h: axum::http::HeaderMap| async move {
                        assert_eq!(h["authorization"], "Bearer gho_test");
                        Json(json!({"id": p.id, "login": p.login, "name": null}))
                    }
                }),
            )
            .route(
                "/user/emails",
                get({
                    let p = person.clone();
                    move || async move {
                        Json(Value::Array(
                            p.emails
                                .iter()
                                .map(|(e, primary, verified)| {
                                    json!({"email": e, "primary": primary, "verified": verified, "visibility": null})
                                })
                                .collect(),
                        ))
                    }
                }),
            )
            .route(
                "/user/orgs",
                get({
                    let p = person.clone();
                    move || async move {
                        Json(Value::Array(
                            p.orgs.iter().map(|o| json!({"login": o, "id": 1})).collect(),
                        ))
                    }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, task }
    }
}
