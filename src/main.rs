//! The `keygate` binary: one image, several roles (gateway, operator, embedded dev mode)
//! plus the tools around them (CRDs, migrations).

mod dev;
mod explain;
mod kube_config;
mod logging;
mod login;
mod startup;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Kubernetes-native authentication and authorization.
#[derive(Parser, Debug)]
#[command(name = "keygate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run gateway and operator in one process on SQLite with an in-process cache, loading
    /// manifests from a folder: the quickest way to try keygate. Data lives in `.keygate/`.
    Dev {
        /// Folder of keygate manifests to reconcile (re-read when it changes).
        #[arg(long, default_value = "examples/dev")]
        manifests: PathBuf,
        /// Address to serve on.
        #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Address of the gRPC ext_authz service (Envoy's `Authorization/Check`), or `off`.
        #[arg(
            long,
            env = "KEYGATE_EXT_AUTHZ_LISTEN",
            default_value = "127.0.0.1:9191"
        )]
        ext_authz_listen: String,
        /// Where the SQLite database and the generated master key are kept.
        #[arg(long, default_value = ".keygate")]
        data_dir: PathBuf,
    },
    /// Run the HTTP gateway: sign-in, tokens, sessions, JWKS, discovery, forward-auth.
    /// Needs KEYGATE_DATABASE_URL, KEYGATE_MASTER_KEYS and KEYGATE_PUBLIC_URL; holds no
    /// Kubernetes credentials.
    Gateway {
        /// YAML config file (keys as in docs/install.md); environment variables override it.
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the operator: reconcile Tenant, IdentityProvider, Role, ApiKey and OAuthClient
    /// resources into the database and Secrets, from a manifest folder (`--manifests`) or the Kubernetes API.
    Operator {
        /// YAML config file; environment variables override it.
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Reconcile manifests from this folder instead of watching the Kubernetes API.
        #[arg(long)]
        manifests: Option<PathBuf>,
    },
    /// Explain a forward-auth decision: evaluate a route's requirements and a credential
    /// against a running gateway (its live tenants, keys, sessions and revocations, through
    /// the admin API) and print every check and its outcome. Exits 0 when the request would
    /// pass, 2 when it would be denied, 1 on error.
    Explain(explain::Args),
    /// kubectl's credential plugin (client.authentication.k8s.io/v1): signs a person in to a
    /// tenant as an OAuthClient and prints an ExecCredential holding their ID token. Tokens
    /// are cached under $XDG_CACHE_HOME/keygate and refreshed; see docs/kubectl.md.
    Login(login::Args),
    /// Print the kubeconfig user entry running `keygate login`, and the API server's
    /// AuthenticationConfiguration trusting the tenant's ID tokens for a client.
    KubeConfig(kube_config::Args),
    /// Print the four CustomResourceDefinitions as YAML (pipe into `kubectl apply -f -`).
    Crds,
    /// Apply database migrations to KEYGATE_DATABASE_URL and exit (run once per upgrade).
    Migrate {
        /// YAML config file; environment variables override it.
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // Already printed with its reason; not an error.
        Err(startup::Fatal::Denied) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), startup::Fatal> {
    match command {
        Command::Dev {
            manifests,
            listen,
            ext_authz_listen,
            data_dir,
        } => dev::run(manifests, listen, ext_authz_listen, data_dir).await,
        Command::Explain(args) => explain::run(args).await,
        Command::Login(args) => login::run(args)
            .await
            .map_err(|e| startup::Fatal::Other(e.to_string())),
        Command::KubeConfig(args) => {
            kube_config::run(&args).map_err(|e| startup::Fatal::Other(e.to_string()))
        }
        Command::Gateway { config } => startup::gateway(config.as_deref()).await,
        Command::Operator { config, manifests } => {
            startup::operator(config.as_deref(), manifests).await
        }
        Command::Crds => {
            let yaml =
                keygate_crds::crds_yaml().map_err(|e| startup::Fatal::Other(e.to_string()))?;
            print!("{yaml}");
            Ok(())
        }
        Command::Migrate { config } => startup::migrate(config.as_deref()).await,
    }
}
