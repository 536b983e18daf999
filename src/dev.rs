//! `keygate dev`: gateway and operator in one process on SQLite with an in-process cache,
//! reconciling a manifest folder — the embedded default a newcomer runs first.

use crate::startup::{Fatal, bind, open_store, shutdown_signal};
use keygate_core::clock::SystemClock;
use keygate_core::config::{Sources, init_logging};
use keygate_core::crypto::envelope::MasterKeys;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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

/// Runs dev mode until Ctrl-C.
pub async fn run(manifests: PathBuf, listen: SocketAddr, data_dir: PathBuf) -> Result<(), Fatal> {
    std::fs::create_dir_all(&data_dir).map_err(|e| {
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
    // Two dev processes on one folder would each rewrite the other's Secrets and keys.
    let lock_path = data_dir.join("dev.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| Fatal::Other(format!("cannot create {}: {e}", lock_path.display())))?;
    if lock.try_lock().is_err() {
        return Err(Fatal::Other(format!(
            "another `keygate dev` is already using {}. Stop it, or pass --data-dir to another folder",
            data_dir.display()
        )));
    }
    let master = dev_master_keys(&data_dir)?;
    let db_default = format!("sqlite:{}", data_dir.join("keygate.db").display());
    // Bind first so `--listen 127.0.0.1:0` works and the printed URL has the real port.
    let listener = bind(listen).await?;
    let bound = listener
        .local_addr()
        .map_err(|e| Fatal::Other(format!("cannot read the bound address: {e}")))?;
    let public_default = format!("http://{bound}");
    let sources = Sources::from_process(None)?;
    // Dev defaults fill what the environment leaves unset.
    let common = sources.common_with_defaults(Some(&db_default), Some(&master))?;
    init_logging(common.log_format, &common.log_filter);
    let store = open_store(common.database_url.expose(), true).await?;
    let public_url = std::env::var("KEYGATE_PUBLIC_URL").unwrap_or(public_default);
    let public_url = public_url.trim_end_matches('/').to_owned();
    let clock = Arc::new(SystemClock);
    let ctx = keygate_operator::Context {
        store: store.clone(),
        master_keys: common.master_keys.clone(),
        public_url: public_url.clone(),
        clock: clock.clone(),
    };
    tracing::info!(manifests = %manifests.display(), "reconciling manifests");
    let source = Arc::new(keygate_operator::DirectorySource::new(
        manifests.clone(),
        &data_dir,
    ));
    let view = keygate_operator::directory::sync_once(&ctx, &source)
        .await
        .map_err(|e| Fatal::Other(format!("{e}. Fix the manifest and start again")))?;
    tokio::spawn(keygate_operator::directory::watch(
        ctx,
        source,
        Duration::from_secs(1),
        Duration::from_secs(60),
    ));

    // Plain HTTP on loopback: browsers drop `__Host-`/Secure cookies there, so dev (and only
    // dev) names the session cookie without the prefix.
    let cookie_mode = if public_url.starts_with("http://") {
        keygate_gateway::cookies::CookieMode::PlainHttpDev
    } else {
        keygate_gateway::cookies::CookieMode::Host
    };
    let deps =
        keygate_gateway::identity::IdentityDeps::new(store, common.master_keys, &public_url, clock)
            .map_err(|e| Fatal::Other(format!("cannot set up password hashing: {e}")))?;
    let identity = keygate_gateway::identity::IdentityService::new(deps);
    identity.spawn_bootstrap_from_env();
    let state = keygate_gateway::AppState::builder(identity)
        .cookie_mode(cookie_mode)
        .build();
    print_next_steps(&public_url, &manifests, &data_dir, &view);
    let _held_until_exit = lock;
    keygate_gateway::server::serve(
        listener,
        keygate_gateway::app(state),
        keygate_gateway::server::ClientTimeouts::default(),
        shutdown_signal(),
    )
    .await;
    Ok(())
}

fn print_next_steps(
    public_url: &str,
    manifests: &Path,
    data_dir: &Path,
    view: &keygate_operator::directory::StatusView,
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
    let mut first_tenant = None;
    for (name, status) in view {
        if let Some(issuer) = status.get("issuerUrl").and_then(|v| v.as_str()) {
            first_tenant
                .get_or_insert_with(|| issuer.rsplit('/').next().unwrap_or("demo").to_owned());
            lines.push(format!("  {name}"));
            lines.push(format!(
                "    sign in    {issuer}/signin  (or create an account: {issuer}/signup)"
            ));
            lines.push(format!(
                "    discovery  {issuer}/.well-known/openid-configuration"
            ));
            lines.push(format!("    JWKS       {issuer}/jwks.json"));
        }
        if let Some(secret) = status.get("secretName").and_then(|v| v.as_str()) {
            let namespace = name
                .split(' ')
                .nth(1)
                .and_then(|n| n.split('/').next())
                .unwrap_or("default");
            let path = data_dir
                .join("secrets")
                .join(namespace)
                .join(format!("{secret}.yaml"));
            lines.push(format!("  {name}: the key is in {}", path.display()));
        }
    }
    lines.push(format!(
        "  health      {public_url}/healthz and {public_url}/readyz"
    ));
    if let Some(tenant) = first_tenant {
        let key_file = data_dir.join("secrets/default/demo-api-key.yaml");
        lines.push("Try forward-auth as an ingress would, with the demo API key:".into());
        lines.push(format!(
            "  curl -si '{public_url}/forward-auth?tenant={tenant}' -H \"X-API-Key: $(sed -n 's/^ *apiKey: //p' {})\"",
            key_file.display()
        ));
    }
    lines.push("Stop with Ctrl-C; delete the data folder to start over.".into());
    println!("{}", lines.join("\n"));
}
