//! `keygate explain`: asks a running gateway's admin API
//! (`POST /t/{tenant}/forward-auth/explain`) to run one forward-auth check with every step
//! traced, and prints the steps. The gateway evaluates it against its live state — the
//! tenants, keys, sessions, caches and revocations the proxies' checks see — which a copy of
//! the configuration read from the database could not (a revocation pushed through Redis,
//! a tenant cache a few seconds old).

use crate::startup::Fatal;
use keygate_gateway::forward_auth::explain::{ExplainRequest, Explanation};
use std::net::IpAddr;

/// `keygate explain` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tenant whose credentials count (the `tenant=` of the requirements).
    #[arg(long)]
    tenant: String,
    /// The route's requirements without `tenant=`, e.g. 'role=orders-reader&mfa=1'.
    #[arg(default_value = "")]
    requirements: String,
    /// The credential to explain: an access token or an API key (kg_…).
    #[arg(long, env = "KEYGATE_EXPLAIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The credential to explain: the value of the tenant's session cookie.
    #[arg(long, env = "KEYGATE_EXPLAIN_COOKIE", hide_env_values = true)]
    cookie: Option<String>,
    /// The original request's method.
    #[arg(long)]
    method: Option<String>,
    /// The original request's URL.
    #[arg(long)]
    url: Option<String>,
    /// Explain a browser navigation (denials redirect to sign in).
    #[arg(long)]
    browser: bool,
    /// The client's address (for tenants with network lists).
    #[arg(long)]
    client_ip: Option<IpAddr>,
    /// The gateway to ask.
    #[arg(
        long,
        env = "KEYGATE_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway: String,
    /// An access token or API key of the tenant with `keygate:admin`.
    #[arg(long, env = "KEYGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Print the gateway's JSON answer instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs `keygate explain`: `Ok` when the request would pass, [`Fatal::Denied`] when not.
pub async fn run(args: Args) -> Result<(), Fatal> {
    let url = format!(
        "{}/t/{}/forward-auth/explain",
        args.gateway.trim_end_matches('/'),
        args.tenant
    );
    let body = ExplainRequest {
        requirements: args.requirements,
        token: args.token,
        cookie: args.cookie,
        method: args.method,
        url: args.url,
        browser: args.browser,
        client_ip: args.client_ip,
    };
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.admin_token)
        .json(&body)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            Fatal::Other(format!(
                "cannot reach the gateway at {}: {e}. Pass --gateway or set KEYGATE_GATEWAY_URL",
                args.gateway
            ))
        })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| Fatal::Other(format!("cannot read the gateway's answer: {e}")))?;
    if !status.is_success() {
        return Err(Fatal::Other(format!(
            "the gateway refused to explain ({status}): {text}. The admin token must be an access token or API key of tenant {} with keygate:admin",
            args.tenant
        )));
    }
    let explanation: Explanation = serde_json::from_str(&text)
        .map_err(|e| Fatal::Other(format!("unexpected answer from the gateway: {e}")))?;
    if args.json {
        println!("{text}");
    } else {
        print!("{}", render(&explanation));
    }
    if explanation.allowed {
        Ok(())
    } else {
        Err(Fatal::Denied)
    }
}

/// The table `keygate explain` prints.
fn render(e: &Explanation) -> String {
    let mut out = format!(
        "{} ({}), HTTP {}, decision {}\n",
        if e.allowed { "allowed" } else { "denied" },
        e.reason,
        e.status,
        e.decision_id
    );
    for s in &e.steps {
        let outcome = serde_json::to_value(s.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!("  {:<13} {:<5} {}\n", s.step, outcome, s.detail));
    }
    if !e.headers.is_empty() {
        out.push_str("answer headers:\n");
        for (name, value) in &e.headers {
            out.push_str(&format!("  {name}: {value}\n"));
        }
    }
    out
}
