//! `keygate kube-config`: what a cluster needs to accept a tenant's people through
//! `keygate login` — the kubeconfig `users` entry that runs the plugin, and the API server's
//! structured `AuthenticationConfiguration` (`apiserver.config.k8s.io/v1`, GA since
//! Kubernetes 1.34) that trusts the tenant's ID tokens for the client. The mappings are CEL:
//! the username is the verified email address, the groups are the person's keygate groups,
//! both prefixed with `keygate:<tenant>:` so they never collide with another authenticator's
//! names or Kubernetes' reserved `system:` ones (docs/decisions.md, "kubectl").

use serde::Serialize;

/// `keygate kube-config` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tenant whose people sign in.
    #[arg(long)]
    tenant: String,
    /// The OAuthClient kubectl signs in as (a public client with a loopback redirect).
    #[arg(long)]
    client: String,
    /// The tenant's issuer; by default `<KEYGATE_PUBLIC_URL>/t/<tenant>`.
    #[arg(long)]
    issuer: Option<String>,
    /// The gateway's public URL, to derive the issuer from.
    #[arg(long, env = "KEYGATE_PUBLIC_URL")]
    public_url: Option<String>,
    /// The `keygate` command the kubeconfig runs (a name on the PATH or a full path).
    #[arg(long, default_value = "keygate")]
    command: String,
    /// Make the plugin use the device grant (for machines without a browser).
    #[arg(long)]
    device: bool,
}

/// Why nothing was printed.
#[derive(Debug, thiserror::Error)]
pub enum KubeConfigError {
    /// Neither `--issuer` nor a public URL.
    #[error("pass --issuer https://…/t/{0}, or set KEYGATE_PUBLIC_URL to the gateway's public URL")]
    NoIssuer(String),
    /// The YAML could not be written.
    #[error("cannot render the YAML: {0}")]
    Render(String),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Exec {
    api_version: &'static str,
    command: String,
    args: Vec<String>,
    interactive_mode: &'static str,
    provide_cluster_info: bool,
}

#[derive(Serialize)]
struct UserSpec {
    exec: Exec,
}

#[derive(Serialize)]
struct NamedUser {
    name: String,
    user: UserSpec,
}

#[derive(Serialize)]
struct Users {
    users: Vec<NamedUser>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Issuer {
    url: String,
    audiences: Vec<String>,
    audience_match_policy: &'static str,
}

#[derive(Serialize)]
struct Rule {
    expression: String,
    message: String,
}

#[derive(Serialize)]
struct Expression {
    expression: String,
}

#[derive(Serialize)]
struct ClaimMappings {
    username: Expression,
    groups: Expression,
    uid: Expression,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Jwt {
    issuer: Issuer,
    claim_validation_rules: Vec<Rule>,
    claim_mappings: ClaimMappings,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationConfiguration {
    api_version: &'static str,
    kind: &'static str,
    jwt: Vec<Jwt>,
}

/// The kubeconfig user entry running `keygate login`.
fn users(args: &Args, issuer: &str) -> Users {
    let mut plugin_args = vec![
        "login".to_owned(),
        "--issuer".to_owned(),
        issuer.to_owned(),
        "--client-id".to_owned(),
        args.client.clone(),
    ];
    if args.device {
        plugin_args.push("--device".to_owned());
    }
    Users {
        users: vec![NamedUser {
            name: format!("keygate-{}", args.tenant),
            user: UserSpec {
                exec: Exec {
                    api_version: "client.authentication.k8s.io/v1",
                    command: args.command.clone(),
                    args: plugin_args,
                    // A terminal lets the plugin sign the person in; without one (scripts,
                    // CI) it only hands out cached or refreshed tokens.
                    interactive_mode: "IfAvailable",
                    provide_cluster_info: false,
                },
            },
        }],
    }
}

/// The API server's configuration trusting the tenant's ID tokens for `client`.
fn authentication(tenant: &str, client: &str, issuer: &str) -> AuthenticationConfiguration {
    let prefix = format!("keygate:{tenant}:");
    AuthenticationConfiguration {
        api_version: "apiserver.config.k8s.io/v1",
        kind: "AuthenticationConfiguration",
        jwt: vec![Jwt {
            issuer: Issuer {
                url: issuer.to_owned(),
                audiences: vec![client.to_owned()],
                audience_match_policy: "MatchAny",
            },
            claim_validation_rules: vec![Rule {
                // An expression mapping (unlike `claim: email`) gets no implicit check.
                expression: "claims.email_verified == true".into(),
                message: "keygate has not verified this person's email address".into(),
            }],
            claim_mappings: ClaimMappings {
                username: Expression {
                    expression: format!("'{prefix}' + claims.email"),
                },
                groups: Expression {
                    expression: format!(
                        "has(claims.groups) ? claims.groups.map(g, '{prefix}' + g) : []"
                    ),
                },
                uid: Expression {
                    expression: "claims.sub".into(),
                },
            },
        }],
    }
}

/// Both documents, each introduced by a comment saying where it goes.
pub fn render(args: &Args) -> Result<String, KubeConfigError> {
    let issuer = match (&args.issuer, &args.public_url) {
        (Some(i), _) => i.trim_end_matches('/').to_owned(),
        (None, Some(base)) => format!("{}/t/{}", base.trim_end_matches('/'), args.tenant),
        (None, None) => return Err(KubeConfigError::NoIssuer(args.tenant.clone())),
    };
    let users = yaml(&users(args, &issuer))?;
    let auth = yaml(&authentication(&args.tenant, &args.client, &issuer))?;
    Ok(format!(
        "# kubeconfig: merge this users entry into ~/.kube/config, then\n\
         #   kubectl config set-context --current --user=keygate-{tenant}\n\
         {users}---\n\
         # kube-apiserver: save as a file and pass --authentication-config=<file>\n\
         # (Kubernetes 1.34+; the issuer must be https and reachable from the API server).\n\
         # RBAC subjects: User keygate:{tenant}:<email>, Group keygate:{tenant}:<group>.\n\
         {auth}",
        tenant = args.tenant,
    ))
}

fn yaml<T: Serialize>(v: &T) -> Result<String, KubeConfigError> {
    serde_saphyr::to_string(v).map_err(|e| KubeConfigError::Render(e.to_string()))
}

/// Prints both documents; warns on stderr when the API server would refuse the issuer.
pub fn run(args: &Args) -> Result<(), KubeConfigError> {
    let text = render(args)?;
    print!("{text}");
    let issuer_is_https = args
        .issuer
        .as_deref()
        .or(args.public_url.as_deref())
        .is_some_and(|u| u.starts_with("https://"));
    if !issuer_is_https {
        eprintln!(
            "warning: the API server accepts https issuers only; this one is fine for kubectl \
             against `keygate dev`, not for a cluster"
        );
    }
    Ok(())
}
