//! The two sign-ins a person answers. Authorization code with PKCE S256 on a loopback
//! redirect (RFC 8252 §7.3: `http://127.0.0.1:<port>/callback`, an address only this
//! machine reaches, on a port bound before the URL is printed), with `state` and `nonce`
//! checked; or the device grant (RFC 8628) for machines without a browser: a code the
//! person enters on any device where they are signed in, while this polls.

use super::LoginError;
use super::provider::{Provider, SignedIn, chain};
use axum::extract::{Query, State};
use axum::response::Html;
use openidconnect::core::{CoreAuthenticationFlow, CoreDeviceAuthorizationResponse};
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, RedirectUrl};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the person has to finish signing in.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

/// What the authorization server sent back to the loopback redirect.
#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The redirect's outcome: the code, or the error the server named.
type Outcome = Result<String, String>;

#[derive(Clone)]
struct Waiting {
    state: String,
    done: Arc<Mutex<Option<oneshot::Sender<Outcome>>>>,
}

/// `GET /callback`: a request with another `state` is not this sign-in's answer (a stale
/// tab, another page) and leaves it waiting.
async fn callback(State(w): State<Waiting>, Query(c): Query<Callback>) -> Html<&'static str> {
    if c.state.as_deref() != Some(w.state.as_str()) {
        return Html("<p>This is not the sign-in keygate login is waiting for.</p>");
    }
    let outcome = match (c.code, c.error) {
        (Some(code), None) => Ok(code),
        (_, Some(error)) => Err(match c.error_description {
            Some(d) => format!("{error}: {d}"),
            None => error,
        }),
        (None, None) => Err("the redirect carries neither code nor error".into()),
    };
    let page = if outcome.is_ok() {
        "<p>Signed in. You can close this tab and return to your terminal.</p>"
    } else {
        "<p>Sign-in failed. The terminal says why.</p>"
    };
    if let Ok(mut slot) = w.done.lock()
        && let Some(tx) = slot.take()
    {
        let _ = tx.send(outcome);
    }
    Html(page)
}

/// Authorization code with PKCE through the person's browser and a loopback redirect.
pub(super) async fn loopback(
    p: &Provider,
    port: u16,
    try_browser: bool,
) -> Result<SignedIn, LoginError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            LoginError::SignIn(format!(
                "cannot listen on 127.0.0.1:{port} for the redirect: {e}. Pick another --listen-port"
            ))
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| LoginError::SignIn(e.to_string()))?
        .port();
    let redirect = RedirectUrl::new(format!("http://127.0.0.1:{bound}/callback"))
        .map_err(|e| LoginError::SignIn(e.to_string()))?;
    let client = p.client.clone().set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scopes(p.scopes.iter().cloned())
        .set_pkce_challenge(challenge)
        .url();

    let (tx, rx) = oneshot::channel();
    let waiting = Waiting {
        state: state.secret().clone(),
        done: Arc::new(Mutex::new(Some(tx))),
    };
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(callback))
        .with_state(waiting);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    eprintln!("keygate: to sign in, open this URL in a browser on this machine:\n\n    {url}\n");
    if try_browser {
        open_browser(url.as_str());
    }
    let outcome = tokio::time::timeout(SIGN_IN_TIMEOUT, rx).await;
    let _ = stop.send(());
    // The browser's page is answered before the server stops; do not wait on a slow tab.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let code = match outcome {
        Ok(Ok(Ok(code))) => code,
        Ok(Ok(Err(refused))) => return Err(LoginError::SignIn(refused)),
        Ok(Err(_)) => return Err(LoginError::SignIn("the redirect server stopped".into())),
        Err(_) => {
            return Err(LoginError::SignIn(format!(
                "nobody finished signing in within {} minutes",
                SIGN_IN_TIMEOUT.as_secs() / 60
            )));
        }
    };
    let answer = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| LoginError::SignIn(e.to_string()))?
        .set_pkce_verifier(verifier)
        .request_async(&p.http)
        .await
        .map_err(|e| LoginError::SignIn(chain(&e)))?;
    p.verified(&answer, &nonce)
}

/// The device grant: prints where to go and the code, then polls until the person decides.
pub(super) async fn device(p: &Provider) -> Result<SignedIn, LoginError> {
    let endpoint = p.device_endpoint.clone().ok_or_else(|| {
        LoginError::SignIn(
            "the issuer offers no device grant (no device_authorization_endpoint)".into(),
        )
    })?;
    let client = p.client.clone().set_device_authorization_url(endpoint);
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(p.scopes.iter().cloned())
        .request_async(&p.http)
        .await
        .map_err(|e| LoginError::SignIn(chain(&e)))?;
    eprintln!(
        "keygate: to sign in, open {} on any device and enter the code\n\n    {}\n",
        details.verification_uri().as_str(),
        details.user_code().secret()
    );
    if let Some(complete) = details.verification_uri_complete() {
        eprintln!("(or open {} directly)\n", complete.secret());
    }
    let answer = client
        .exchange_device_access_token(&details)
        .map_err(|e| LoginError::SignIn(e.to_string()))?
        .request_async(&p.http, tokio::time::sleep, None)
        .await
        .map_err(|e| LoginError::SignIn(chain(&e)))?;
    // The device grant sends no nonce.
    p.verified(&answer, |n: Option<&Nonce>| match n {
        None => Ok(()),
        Some(_) => Err("an ID token of the device grant carries a nonce".to_owned()),
    })
}

/// Whether a browser can be opened here: macOS always; elsewhere `xdg-open` on the `PATH`
/// and a graphical session (`DISPLAY` or `WAYLAND_DISPLAY`), which SSH sessions and
/// containers lack.
fn browser_command() -> Option<&'static str> {
    if cfg!(target_os = "macos") {
        return Some("open");
    }
    let graphical = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path).any(|d| d.join("xdg-open").is_file());
    (graphical && found).then_some("xdg-open")
}

/// Opens `url` in the person's browser when there is one; the URL is printed either way.
fn open_browser(url: &str) {
    let Some(command) = browser_command() else {
        return;
    };
    let spawned = std::process::Command::new(command)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reaped in the background: the opener may outlive the sign-in.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("keygate: could not open a browser ({e}); open the URL yourself"),
    }
}
