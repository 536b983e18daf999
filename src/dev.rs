//! `keygate dev`: gateway and operator in one process on SQLite with an in-process cache,
//! reconciling a manifest folder — the embedded default a newcomer runs first.

use crate::logging::init_logging;
use crate::startup::{Fatal, bind, gateway_state, open_store};
use keygate_core::clock::SystemClock;
use keygate_core::config::Sources;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::ephemeral::{Ephemeral, MemoryEphemeral};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `keygate dev` without SMTP: prints each mail's text to the terminal (stdout), labelled as
/// a dev-only stand-in, so links can be followed locally. It never goes through the log, and
/// `keygate gateway` has no such mailer: there a missing SMTP relay means no mail at all.
#[derive(Debug)]
struct TerminalMailer;

#[async_trait::async_trait]
impl keygate_gateway::identity::Mailer for TerminalMailer {
    async fn send(
        &self,
        email: keygate_gateway::identity::Email,
    ) -> Result<(), keygate_gateway::identity::MailError> {
        println!(
            "\n--- keygate dev only: this email was NOT sent (no SMTP configured) ---\nTo: {}\nSubject: {}\n\n{}\n--- end of email ---\n",
            email.to,
            email.subject,
            email.body.trim_end()
        );
        Ok(())
    }
}

/// Reads the dev master key from `data_dir`, creating it (mode 0600) on first run.
fn dev_master_keys(data_dir: &Path) -> Result<String, Fatal> {
    let path = data_dir.join("master.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    let spec = MasterKeys::generate_spec("dev").map_err(|e| Fatal::Other(e.to_string()))?;
    write_private(&path, &spec).map_err(|e| {
        Fatal::Other(format!(
            "cannot write {}: {e}. Check that the folder is writable or pass --data-dir",
            path.display()
        ))
    })?;
    Ok(spec)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Makes the data folder and takes its lock (two dev processes on one folder would each
/// rewrite the other's Secrets and keys); the lock is held while the file stays open.
fn claim_data_dir(manifests: &Path, data_dir: &Path) -> Result<std::fs::File, Fatal> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Fatal::Other(format!(
            "cannot create {}: {e}. Pass --data-dir to a writable folder",
            data_dir.display()
        ))
    })?;
    if !manifests.is_dir() {
        return Err(Fatal::Other(format!(
            "manifest folder {} not found. Run `keygate dev` from the repository root or pass --manifests DIR",
            manifests.display()
        )));
    }
    let lock_path = data_dir.join("dev.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| Fatal::Other(format!("cannot create {}: {e}", lock_path.display())))?;
    if lock.try_lock().is_err() {
        return Err(Fatal::Other(format!(
            "another `keygate dev` is already using {}. Stop it, or pass --data-dir to another folder",
            data_dir.display()
        )));
    }
    Ok(lock)
}

/// Runs dev mode until Ctrl-C.
pub async fn run(
    manifests: PathBuf,
    listen: SocketAddr,
    ext_authz_listen: String,
    data_dir: PathBuf,
) -> Result<(), Fatal> {
    let lock = claim_data_dir(&manifests, &data_dir)?;
    let master = dev_master_keys(&data_dir)?;
    let db_default = format!("sqlite:{}", data_dir.join("keygate.db").display());
    // Bind first so `--listen 127.0.0.1:0` works and the printed URL has the real port.
    let listener = bind(listen).await?;
    let bound = listener
        .local_addr()
        .map_err(|e| Fatal::Other(format!("cannot read the bound address: {e}")))?;
    let public_default = format!("http://{bound}");
    let sources = Sources::from_process(None)?;
    // The same settings `keygate gateway` reads (trusted proxies, public URL, SMTP, the
    // first admin, the breached list); dev defaults fill what the environment leaves unset.
    let common = sources.common_with_defaults(Some(&db_default), Some(&master))?;
    let mut gw = sources.gateway(Some(&public_default), &listen.to_string())?;
    let ext_authz = sources.ext_authz(&ext_authz_listen)?;
    let grpc_settings = crate::startup::grpc_settings(&ext_authz)?;
    let grpc = match ext_authz.listen {
        Some(addr) => Some(crate::startup::GrpcListener {
            listener: bind(addr).await?,
            settings: grpc_settings,
        }),
        None => None,
    };
    let grpc_bound = match &grpc {
        Some(g) => Some(
            g.listener
                .local_addr()
                .map_err(|e| Fatal::Other(format!("cannot read the bound gRPC address: {e}")))?,
        ),
        None => None,
    };
    // Dev keeps rate windows and revocations in this one process, even with a Redis URL set.
    gw.redis_url = None;
    init_logging(common.log_format, &common.log_filter);
    let store = open_store(common.database_url.expose(), true).await?;
    let clock: Arc<dyn keygate_core::clock::Clock> = Arc::new(SystemClock);
    let ctx = keygate_operator::Context::new(
        store.clone(),
        common.master_keys.clone(),
        &gw.public_url,
        clock.clone(),
    )
    // A local identity provider on loopback may speak plain HTTP in dev, and only there.
    .allowing_loopback_http();
    // One revocation channel for both halves: a deleted or rotated-out API key the
    // operator revokes is refused by forward-auth's next check, not when its cache expires.
    let ephemeral: Arc<dyn Ephemeral> = Arc::new(MemoryEphemeral::new());
    // One registry for both halves, so dev's one `/metrics` lists the reconcile metrics too.
    let registry = prometheus::Registry::new();
    let next_steps =
        start_operator(ctx, &manifests, &data_dir, ephemeral.clone(), &registry).await?;

    // Plain HTTP on loopback: browsers drop `__Host-`/Secure cookies there, so dev (and only
    // dev) names the session cookie without the prefix.
    let cookie_mode = if gw.public_url.starts_with("http://") {
        keygate_gateway::cookies::CookieMode::PlainHttpDev
    } else {
        keygate_gateway::cookies::CookieMode::Host
    };
    let state = gateway_state(
        store,
        common.master_keys,
        &gw,
        clock,
        cookie_mode,
        crate::startup::GatewayExtras {
            ephemeral: Some(ephemeral),
            without_smtp: Some(Arc::new(TerminalMailer)),
            registry,
            allow_loopback_http: true,
        },
    )
    .await?;
    print_next_steps(
        &gw.public_url,
        grpc_bound,
        &manifests,
        &data_dir,
        &next_steps,
    );
    let _held_until_exit = lock;
    // The same background work as `keygate gateway` (revocation re-check, expiry sweep).
    crate::startup::serve_gateway(listener, grpc, state, gw.shutdown_drain).await;
    Ok(())
}

/// Reconciles the manifest folder once (a broken manifest stops dev with its cause), keeps
/// it reconciled in the background, and returns what to tell the user next.
async fn start_operator(
    ctx: keygate_operator::Context,
    manifests: &Path,
    data_dir: &Path,
    revocations: Arc<dyn Ephemeral>,
    registry: &prometheus::Registry,
) -> Result<keygate_operator::directory::NextSteps, Fatal> {
    let metrics = keygate_operator::metrics::Metrics::register(registry)
        .map_err(keygate_operator::RunError::Metrics)?;
    let ctx = ctx.with_metrics(metrics);
    tracing::info!(manifests = %manifests.display(), "reconciling manifests");
    let source = Arc::new(
        keygate_operator::DirectorySource::new(manifests.to_path_buf(), data_dir)
            .with_revocations(revocations),
    );
    let view = keygate_operator::directory::sync_once(&ctx, &source)
        .await
        .map_err(|e| Fatal::Other(format!("{e}. Fix the manifest and start again")))?;
    let next_steps = source.next_steps(&view);
    tokio::spawn(keygate_operator::directory::watch(
        ctx,
        source,
        Duration::from_secs(1),
        Duration::from_secs(60),
    ));
    Ok(next_steps)
}

fn print_next_steps(
    public_url: &str,
    grpc: Option<SocketAddr>,
    manifests: &Path,
    data_dir: &Path,
    steps: &keygate_operator::directory::NextSteps,
) {
    let mut lines = vec![
        String::new(),
        format!("keygate dev is serving on {public_url}"),
        format!(
            "  data        {} (SQLite database, generated master key, Secrets, status.yaml)",
            data_dir.display()
        ),
        format!(
            "  manifests   {} (edit them; changes apply within seconds)",
            manifests.display()
        ),
    ];
    for tenant in &steps.tenants {
        let issuer = &tenant.issuer;
        lines.push(format!("  {}", tenant.resource));
        lines.push(format!(
            "    sign in    {issuer}/signin  (or create an account: {issuer}/signup)"
        ));
        lines.push(format!(
            "    metadata   {issuer}/.well-known/oauth-authorization-server"
        ));
        lines.push(format!("    JWKS       {issuer}/jwks.json"));
    }
    for key in &steps.api_keys {
        lines.push(format!(
            "  {}: the key is in {}",
            key.resource,
            key.file.display()
        ));
    }
    for client in &steps.oauth_clients {
        match &client.secret_file {
            Some(file) => lines.push(format!(
                "  {}: client_id {}, its secret is in {}",
                client.resource,
                client.client_id,
                file.display()
            )),
            None => lines.push(format!(
                "  {}: client_id {} (public: no secret)",
                client.resource, client.client_id
            )),
        }
    }
    lines.push(format!(
        "  health      {public_url}/healthz and {public_url}/readyz"
    ));
    match grpc {
        Some(addr) => lines.push(format!(
            "  ext_authz   gRPC on {addr} (envoy.service.auth.v3.Authorization/Check; requirements in the route's context_extensions key `keygate`)"
        )),
        None => lines.push("  ext_authz   gRPC service off (KEYGATE_EXT_AUTHZ_LISTEN=off)".into()),
    }
    if let (Some(tenant), Some(key)) = (steps.tenants.first(), steps.api_keys.first()) {
        lines.push("Try forward-auth as an ingress would, with the demo API key:".into());
        lines.push(format!(
            "  curl -si '{public_url}/forward-auth?tenant={}' -H \"X-API-Key: $(sed -n 's/^ *apiKey: //p' {})\"",
            tenant.tenant,
            key.file.display()
        ));
    }
    lines.push("Stop with Ctrl-C; delete the data folder to start over.".into());
    println!("{}", lines.join("\n"));
}
