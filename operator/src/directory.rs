//! The directory source: the same YAML manifests `kubectl apply` takes, read from a folder
//! (local runs, CI, air-gapped installs, `keygate dev`). `v1 Secret` manifests in the folder
//! are the Secrets IdentityProviders refer to; the Secrets the operator writes (API keys) go
//! to a separate folder. The folder is re-read when it changes and on a timer; a manifest
//! removed from it is a deletion. After each pass the statuses are written to a status file
//! and one line is logged per resource whose status changed.

use crate::effects::{Effects, LogEvents, PassCache};
use crate::file_cache::FileCache;
use crate::orphans::{self, LiveSet};
use crate::secrets::{self, DirectorySecrets};
use crate::view::publish_view;
pub use crate::view::{
    ApiKeySecretFile, NextSteps, OAuthClientEntry, Published, StatusView, TenantEndpoints,
};
use crate::{Context, ReconcileError, api_key};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use keygate_core::ephemeral::Ephemeral;
use keygate_crds::Resource;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many resources of one kind are reconciled at once (bounded by the store's pool).
const PARALLEL: usize = 16;

/// One resource read from a file.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The file it came from, for messages.
    pub path: PathBuf,
    /// The parsed resource.
    pub resource: Resource,
}

/// Everything a folder holds: keygate resources and the Secrets beside them.
#[derive(Clone, Debug, Default)]
pub struct Folder {
    /// keygate resources, in path order.
    pub manifests: Vec<Manifest>,
    /// `v1 Secret` documents.
    pub secrets: Vec<Secret>,
}

/// Where the directory source reads from and writes to.
#[derive(Debug)]
pub struct DirectorySource {
    /// Folder of manifests (keygate resources and the Secrets they reference).
    pub manifests: PathBuf,
    /// Folder the operator writes its own Secrets to (`<ns>/<name>.yaml`, mode 0600).
    pub secrets_dir: PathBuf,
    /// Where the status view is written after each pass; `None` to skip it.
    pub status_file: Option<PathBuf>,
    /// The gateway's revocation channel when it runs in the same process or shares Redis.
    pub revocations: Option<Arc<dyn Ephemeral>>,
    /// Statuses of the previous pass, to log only what changed and keep transition times.
    previous: Mutex<StatusView>,
    /// Manifest files parsed in earlier passes (an unchanged file is not parsed again).
    manifest_files: Arc<FileCache<ParsedManifest>>,
    /// Owned Secret files parsed in earlier passes.
    secret_files: Arc<FileCache<Option<Secret>>>,
    /// Rows per query when a pass reads a tenant's API keys.
    api_key_page: u32,
}

/// One manifest file's keygate resources and Secrets, or why it could not be parsed.
pub type ParsedManifest = Result<(Vec<Resource>, Vec<Secret>), ParseProblem>;

/// Why a manifest file's text is not keygate resources and Secrets (cached with the file,
/// so it is cheap to clone).
#[derive(Clone, Debug, thiserror::Error)]
pub enum ParseProblem {
    /// A keygate document is malformed or of an unknown kind.
    #[error("{0}")]
    Resources(Arc<keygate_crds::Error>),
    /// A `v1 Secret` document is malformed.
    #[error("{0}")]
    Secrets(String),
}

/// Why the manifest folder could not be read; the pass changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The folder (or a folder inside it) cannot be listed.
    #[error(
        "cannot read manifest folder {}: {cause} (pass --manifests DIR pointing at your YAML files)",
        path.display()
    )]
    Folder {
        /// The folder.
        path: PathBuf,
        /// What the file system said.
        #[source]
        cause: std::io::Error,
    },
    /// A manifest file cannot be read.
    #[error("cannot read {}: {cause}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        cause: std::io::Error,
    },
    /// A manifest file does not parse.
    #[error("{}: {cause}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with its text.
        #[source]
        cause: ParseProblem,
    },
    /// The blocking task that reads the folder panicked or was cancelled.
    #[error("reading the folder failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl DirectorySource {
    /// Reads `manifests`; keeps Secrets under `<data_dir>/secrets` and the status view in
    /// `<data_dir>/status.yaml`.
    pub fn new(manifests: PathBuf, data_dir: &Path) -> Self {
        Self {
            manifests,
            secrets_dir: data_dir.join("secrets"),
            status_file: Some(data_dir.join("status.yaml")),
            revocations: None,
            previous: Mutex::default(),
            manifest_files: Arc::default(),
            secret_files: Arc::default(),
            api_key_page: keygate_core::store::LIST_MAX,
        }
    }

    /// Reads a tenant's API keys `rows` at a time (default and maximum: the store's
    /// `LIST_MAX`); small pages let a test cover paging with a few keys.
    pub fn with_api_key_page_size(mut self, rows: u32) -> Self {
        self.api_key_page = rows;
        self
    }

    /// Pushes API-key revocations to gateway replicas through `revocations`.
    pub fn with_revocations(mut self, revocations: Arc<dyn Ephemeral>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Paths inside the manifest folder that are the operator's own output, not input.
    fn own_output(&self) -> Vec<PathBuf> {
        let mut out = vec![self.secrets_dir.clone()];
        out.extend(self.status_file.clone());
        out.iter().filter_map(|p| p.canonicalize().ok()).collect()
    }
}

/// Reads every `*.yaml`/`*.yml` file under `dir` (recursively, in path order).
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, ManifestError> {
    Ok(load_folder(dir, &[])?.manifests)
}

/// Reads keygate resources and `v1 Secret`s from every YAML file under `dir`, skipping `skip`.
pub fn load_folder(dir: &Path, skip: &[PathBuf]) -> Result<Folder, ManifestError> {
    load_folder_cached(dir, skip, &FileCache::default())
}

/// [`load_folder`], re-parsing only files that changed since `cache` saw them.
pub fn load_folder_cached(
    dir: &Path,
    skip: &[PathBuf],
    cache: &FileCache<ParsedManifest>,
) -> Result<Folder, ManifestError> {
    let mut files = Vec::new();
    collect(dir, skip, &mut files)?;
    files.sort();
    cache.retain(&files.iter().cloned().collect());
    let parsed = crate::parallel::map(&files, |path| match cache.read(path, parse_manifest_file) {
        Err(cause) => Err(ManifestError::File {
            path: path.clone(),
            cause,
        }),
        Ok(Err(cause)) => Err(ManifestError::Parse {
            path: path.clone(),
            cause,
        }),
        Ok(Ok(parsed)) => Ok(parsed),
    });
    let mut folder = Folder::default();
    for (path, result) in files.iter().zip(parsed) {
        let (resources, found) = result?;
        folder
            .manifests
            .extend(resources.into_iter().map(|resource| Manifest {
                path: path.clone(),
                resource,
            }));
        folder.secrets.extend(found);
    }
    Ok(folder)
}

/// The keygate resources and `v1 Secret`s of one file's text.
fn parse_manifest_file(text: &str) -> ParsedManifest {
    let resources =
        keygate_crds::load_manifests(text).map_err(|e| ParseProblem::Resources(Arc::new(e)))?;
    let found = if text.contains("Secret") {
        secrets::parse_secrets(text).map_err(ParseProblem::Secrets)?
    } else {
        Vec::new()
    };
    Ok((resources, found))
}

fn collect(dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let folder_error = |cause| ManifestError::Folder {
        path: dir.to_path_buf(),
        cause,
    };
    for entry in std::fs::read_dir(dir).map_err(folder_error)? {
        let path = entry.map_err(folder_error)?.path();
        if !skip.is_empty() && path.canonicalize().is_ok_and(|p| skip.contains(&p)) {
            continue;
        }
        if path.is_dir() {
            collect(&path, skip, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// A fingerprint of a folder's contents; a change triggers a new sync.
pub fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut files = Vec::new();
    let _ = collect(dir, &[], &mut files);
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.hash(&mut hasher);
        std::fs::read(&f).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

/// The owner id rows of a resource carry: the API server's uid, or for a manifest without
/// one a stable id from namespace, kind and name (so re-reading the folder finds the rows).
pub fn owner_uid(resource: &Resource) -> String {
    match &resource.metadata().uid {
        Some(uid) => uid.clone(),
        None => format!(
            "dir:{}/{}/{}",
            resource.namespace().unwrap_or("default"),
            resource.kind(),
            resource.name()
        ),
    }
}

/// `Kind namespace/name`, for logs and the status view.
pub fn display_name(resource: &Resource) -> String {
    format!(
        "{} {}/{}",
        resource.kind(),
        resource.namespace().unwrap_or("default"),
        resource.name()
    )
}

/// One resource to reconcile in a pass.
#[derive(Clone)]
struct Work {
    name: String,
    uid: String,
    resource: Resource,
}

/// What a pass read from disk, off the async workers.
struct Loaded {
    folder: Folder,
    owned_secrets: Arc<DirectorySecrets>,
    effects: Effects,
}

/// Reconciles every manifest in the folder once (tenants first, as everything else refers
/// to one), cleans rows of resources no longer in the folder, writes the status view and
/// returns it. A folder that cannot be read or parsed changes nothing.
pub async fn sync_once(
    ctx: &Context,
    source: &DirectorySource,
) -> Result<StatusView, ReconcileError> {
    let started = std::time::Instant::now();
    let Loaded {
        folder,
        owned_secrets,
        effects,
    } = load_pass(source).await?;
    let loaded = started.elapsed();
    // Deletions first, from the complete list of what the folder declares: a tenant that
    // is gone is disabled or erased before its children are looked at in this pass.
    let (live, work) = declared(&folder);
    let cleaned = orphans::clean(ctx, &effects, &live).await?;
    clean_secret_files(ctx, &effects, &owned_secrets, &live).await?;
    let swept = started.elapsed();
    if cleaned != orphans::Cleaned::default() {
        tracing::info!(
            ?cleaned,
            "rows of resources no longer declared were cleaned"
        );
    }
    let (mut view, failures, phases) = reconcile_by_kind(ctx, &effects, &work).await;
    if failures > 0 {
        return Err(ReconcileError::Incomplete { failed: failures });
    }
    publish_view(&source.previous, source.status_file.as_deref(), &mut view);
    tracing::debug!(
        resources = view.len(),
        load_ms = loaded.as_millis(),
        sweep_ms = (swept - loaded).as_millis(),
        kinds_ms = ?phases,
        total_ms = started.elapsed().as_millis(),
        "pass finished"
    );
    Ok(view)
}

/// Reads the folder and the Secrets the operator wrote (blocking work, so on a blocking
/// thread), and builds the pass's effects over them.
async fn load_pass(source: &DirectorySource) -> Result<Loaded, ReconcileError> {
    let (dir, skip, secrets_dir) = (
        source.manifests.clone(),
        source.own_output(),
        source.secrets_dir.clone(),
    );
    let (manifest_files, secret_files) =
        (source.manifest_files.clone(), source.secret_files.clone());
    let (folder, owned_secrets) = tokio::task::spawn_blocking(move || {
        let folder = load_folder_cached(&dir, &skip, &manifest_files)?;
        let written = secrets::written_secrets(&secrets_dir, &secret_files);
        let owned = DirectorySecrets::with_owned(folder.secrets.clone(), secrets_dir, written)
            .with_file_cache(secret_files);
        Ok::<_, ManifestError>((folder, owned))
    })
    .await
    .map_err(ManifestError::Task)??;
    let owned_secrets = Arc::new(owned_secrets);
    let effects = Effects {
        secrets: owned_secrets.clone(),
        events: Arc::new(LogEvents),
        revocations: source.revocations.clone(),
        cache: Some(Arc::new(PassCache::with_page_size(source.api_key_page))),
    };
    Ok(Loaded {
        folder,
        owned_secrets,
        effects,
    })
}

/// The live set (every declared uid) and the work of a pass; a resource declared twice is
/// reconciled once, from its first file.
fn declared(folder: &Folder) -> (LiveSet, Vec<Work>) {
    let mut live = LiveSet::default();
    let mut seen = HashSet::new();
    let mut work = Vec::new();
    for manifest in &folder.manifests {
        let name = display_name(&manifest.resource);
        let uid = owner_uid(&manifest.resource);
        live_set_for(&mut live, &manifest.resource).insert(uid.clone());
        if !seen.insert(name.clone()) {
            tracing::warn!(resource = %name, file = %manifest.path.display(), "declared twice; this copy is ignored");
            continue;
        }
        work.push(Work {
            name,
            uid,
            resource: manifest.resource.clone(),
        });
    }
    (live, work)
}

/// Reconciles the work kind by kind (tenants, identity providers, roles, API keys), each
/// kind in parallel; returns the statuses, how many failed (each is logged) and the
/// milliseconds each kind took.
async fn reconcile_by_kind(
    ctx: &Context,
    effects: &Effects,
    work: &[Work],
) -> (StatusView, usize, Vec<u128>) {
    let mut view = StatusView::default();
    let mut failures = 0usize;
    let mut phases = Vec::new();
    for rank in 0..4 {
        let phase = std::time::Instant::now();
        let batch: Vec<Work> = work
            .iter()
            .filter(|w| kind_rank(&w.resource) == rank)
            .cloned()
            .collect();
        let results: Vec<_> = futures::stream::iter(batch)
            .map(|w| {
                // Owned clones: a stream of futures borrowing locals is not `Send` enough
                // for `tokio::spawn` (higher-ranked lifetime limits of the compiler).
                // Spawned, so parsing and hashing spread over every core.
                let (ctx, effects) = (ctx.clone(), effects.clone());
                let (resource, uid) = (w.resource.clone(), w.uid.clone());
                let task = tokio::spawn(async move {
                    crate::metrics::timed(
                        ctx.metrics.as_ref(),
                        resource.kind(),
                        crate::reconcile::apply(&ctx, &effects, &resource, &uid),
                    )
                    .await
                });
                async move {
                    let result = task.await.unwrap_or_else(|e| Err(ReconcileError::Task(e)));
                    (w, result)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (w, result) in results {
            match result {
                Ok(status) => {
                    let published = Published {
                        namespace: w.resource.namespace().unwrap_or("default").to_owned(),
                        name: w.resource.name().to_owned(),
                        status,
                    };
                    view.0.insert(w.name, published);
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(resource = %w.name, error = %e, "not reconciled; retried on the next pass");
                }
            }
        }
        phases.push(phase.elapsed().as_millis());
    }
    (view, failures, phases)
}

/// Secret files whose ApiKey is gone: their keys are revoked and the files removed (what
/// Kubernetes' garbage collector does through the ownerReference).
async fn clean_secret_files(
    ctx: &Context,
    effects: &Effects,
    secrets: &DirectorySecrets,
    live: &LiveSet,
) -> Result<(), ReconcileError> {
    for (namespace, name, secret) in secrets.owned() {
        let client_secret = crate::oauth_client::is_client_secret(&secret);
        let annotations = secret.metadata.annotations.unwrap_or_default();
        let Some(owner) = annotations.get(api_key::ANNOTATION_OWNER_UID) else {
            continue;
        };
        if live.api_keys.contains(owner) || live.oauth_clients.contains(owner) {
            continue;
        }
        if client_secret {
            // The client itself is removed by the orphan sweep; only its file goes here.
            effects.secrets.delete(&namespace, &name).await?;
            continue;
        }
        let labels = secret.metadata.labels.unwrap_or_default();
        if let Some(tenant_name) = labels.get(api_key::LABEL_TENANT) {
            api_key::revoke_owner(ctx, effects, &namespace, tenant_name, owner).await?;
        }
        effects.secrets.delete(&namespace, &name).await?;
    }
    Ok(())
}

fn kind_rank(resource: &Resource) -> u8 {
    match resource {
        Resource::Tenant(_) => 0,
        Resource::IdentityProvider(_) => 1,
        Resource::Role(_) => 2,
        Resource::ApiKey(_) | Resource::OAuthClient(_) => 3,
    }
}

fn live_set_for<'a>(live: &'a mut LiveSet, resource: &Resource) -> &'a mut HashSet<String> {
    match resource {
        Resource::Tenant(_) => &mut live.tenants,
        Resource::IdentityProvider(_) => &mut live.identity_providers,
        Resource::Role(_) => &mut live.roles,
        Resource::ApiKey(_) => &mut live.api_keys,
        Resource::OAuthClient(_) => &mut live.oauth_clients,
    }
}

/// Keeps the folder reconciled: syncs now, then whenever the folder or the written Secrets
/// change, and every `resync` (rotation and expiry are due by time, not by edits).
pub async fn watch(ctx: Context, source: Arc<DirectorySource>, poll: Duration, resync: Duration) {
    let mut last_print = None;
    let mut last_sync = tokio::time::Instant::now();
    loop {
        let manifests = fingerprint(&source.manifests);
        let written = fingerprint(&source.secrets_dir);
        if last_print != Some((manifests, written)) || last_sync.elapsed() >= resync {
            match sync_once(&ctx, &source).await {
                Ok(view) => {
                    tracing::debug!(resources = view.len(), dir = %source.manifests.display(), "manifests reconciled")
                }
                Err(e) => {
                    tracing::error!(dir = %source.manifests.display(), "manifests not reconciled: {e}")
                }
            }
            // The pass writes Secrets itself: take their fingerprint after it, but the
            // manifests' from before, so an edit made during the pass is not missed.
            last_print = Some((manifests, fingerprint(&source.secrets_dir)));
            last_sync = tokio::time::Instant::now();
        }
        tokio::time::sleep(poll).await;
    }
}
