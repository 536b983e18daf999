//! `keygate login`: a client-go credential plugin (`ExecCredential`,
//! `client.authentication.k8s.io/v1`) that signs a person in to a tenant as one of its
//! OAuthClients and hands kubectl the tenant's ID token. A still-valid cached token is
//! handed over without a network call; an expired one is refreshed; otherwise the person
//! signs in — authorization code with PKCE on a loopback redirect (RFC 8252), or the device
//! grant (RFC 8628) on machines without a browser. Everything meant for the person goes to
//! stderr: kubectl reads stdout.

mod cache;
mod interactive;
mod provider;

use cache::{Cache, Entry};
use chrono::{DateTime, Utc};
use provider::Provider;
use serde::Deserialize;
use std::time::Duration;

/// How long before its expiry a cached ID token is no longer handed out: kubectl's request
/// must still reach the API server (and its clock) in time.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// `keygate login` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tenant's issuer, e.g. https://auth.example.com/t/acme (plain http only on
    /// loopback addresses).
    #[arg(long)]
    issuer: String,
    /// The OAuthClient to sign in as (its metadata.name).
    #[arg(long)]
    client_id: String,
    /// A confidential client's secret; public clients (the norm for kubectl) use PKCE alone.
    #[arg(long, env = "KEYGATE_LOGIN_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// The scopes to ask for (space-separated); they must be in the client's allowedScopes.
    #[arg(long, default_value = "openid email groups offline_access")]
    scope: String,
    /// Sign in with the device grant: print a code to enter on another device's browser.
    #[arg(long)]
    device: bool,
    /// Port of the loopback redirect (http://127.0.0.1:<port>/callback); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    listen_port: u16,
    /// Print the sign-in URL without trying to open a browser.
    #[arg(long)]
    no_browser: bool,
}

/// Why `keygate login` failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A sign-in is needed and kubectl said nobody can answer one.
    #[error(
        "signing in to {issuer} is needed, but kubectl runs this plugin without interaction \
         (interactiveMode: Never, or no terminal). Run `keygate login --issuer {issuer} \
         --client-id {client_id}` in a terminal once; kubectl then uses the cached tokens"
    )]
    InteractionNeeded {
        /// The issuer.
        issuer: String,
        /// The client.
        client_id: String,
    },
    /// The issuer could not be used (discovery, keys, a bad URL).
    #[error("cannot use the issuer {issuer}: {cause}")]
    Issuer {
        /// The issuer.
        issuer: String,
        /// Why.
        cause: String,
    },
    /// The sign-in failed or was refused.
    #[error("sign-in failed: {0}")]
    SignIn(String),
    /// The token cache could not be read or written.
    #[error("token cache {path}: {cause}")]
    Cache {
        /// The file or folder.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// `KUBERNETES_EXEC_INFO` was set but is no ExecCredential.
    #[error("KUBERNETES_EXEC_INFO is not an ExecCredential: {0}")]
    ExecInfo(String),
}

/// The part of `KUBERNETES_EXEC_INFO` that matters here.
#[derive(Deserialize)]
struct ExecInfo {
    #[serde(default)]
    spec: ExecSpec,
}

#[derive(Deserialize, Default)]
struct ExecSpec {
    #[serde(default)]
    interactive: bool,
}

/// Whether a person can answer a sign-in: kubectl says so in `KUBERNETES_EXEC_INFO`
/// (`spec.interactive`); run by hand (no such variable), a person is there.
fn interactive(exec_info: Option<&str>) -> Result<bool, LoginError> {
    match exec_info.filter(|v| !v.trim().is_empty()) {
        None => Ok(true),
        Some(json) => serde_json::from_str::<ExecInfo>(json)
            .map(|i| i.spec.interactive)
            .map_err(|e| LoginError::ExecInfo(e.to_string())),
    }
}

/// The `ExecCredential` kubectl reads on stdout.
fn exec_credential(token: &str, expires_at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "token": token,
            "expirationTimestamp": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    })
}

/// Runs the plugin: prints an `ExecCredential` on stdout.
pub async fn run(args: Args) -> Result<(), LoginError> {
    let interactive = interactive(std::env::var("KUBERNETES_EXEC_INFO").ok().as_deref())?;
    let cache = Cache::open(&args.issuer, &args.client_id)?;
    // One plugin run at a time per issuer and client: a second kubectl waits, then finds
    // the token the first one got, instead of spending the same refresh token or asking
    // the person to sign in twice.
    let _lock = cache.lock().await?;
    let entry = obtain(&args, &cache, interactive).await?;
    println!("{}", exec_credential(&entry.id_token, entry.expires_at));
    Ok(())
}

/// The cached token when still good, else a refreshed one, else a new sign-in.
async fn obtain(args: &Args, cache: &Cache, interactive: bool) -> Result<Entry, LoginError> {
    let cached = cache.read().filter(|e| e.scope == args.scope);
    let now = Utc::now();
    if let Some(e) = &cached
        && e.expires_at - chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default() > now
    {
        return Ok(e.clone());
    }
    let provider = Provider::discover(args).await?;
    if let Some(refresh_token) = cached.and_then(|e| e.refresh_token) {
        match provider.refresh(&refresh_token).await {
            Ok(signed_in) => {
                let entry = Entry::of(args, signed_in);
                cache.write(&entry)?;
                return Ok(entry);
            }
            Err(e) => {
                eprintln!("keygate: could not refresh the cached sign-in ({e})");
                cache.forget()?;
            }
        }
    }
    if !interactive {
        return Err(LoginError::InteractionNeeded {
            issuer: args.issuer.clone(),
            client_id: args.client_id.clone(),
        });
    }
    let signed_in = if args.device {
        interactive::device(&provider).await?
    } else {
        interactive::loopback(&provider, args.listen_port, !args.no_browser).await?
    };
    let entry = Entry::of(args, signed_in);
    cache.write(&entry)?;
    eprintln!(
        "keygate: signed in; tokens cached in {}",
        cache.dir().display()
    );
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_says_whether_a_person_can_answer() {
        assert!(interactive(None).unwrap());
        let never = r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#;
        assert!(!interactive(Some(never)).unwrap());
        let tty = r#"{"kind":"ExecCredential","spec":{"interactive":true}}"#;
        assert!(interactive(Some(tty)).unwrap());
        assert!(interactive(Some("not json")).is_err());
    }

    #[test]
    fn the_credential_names_its_expiry_in_rfc3339() {
        let at = DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = exec_credential("t", at);
        assert_eq!(c["status"]["expirationTimestamp"], "2030-01-02T03:04:05Z");
        assert_eq!(c["apiVersion"], "client.authentication.k8s.io/v1");
    }
}
