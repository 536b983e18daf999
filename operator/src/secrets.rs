//! Secrets for the directory source: the `v1 Secret` manifests that sit beside the keygate
//! manifests (IdP client secrets), and the Secrets the operator writes for API
//! keys, one file per Secret under `<secrets dir>/<namespace>/<name>.yaml`, mode 0600.

use crate::effects::{SecretError, SecretSource};
use crate::file_cache::FileCache;
use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The value under `key` of a Secret, from `data` or (as `kubectl apply` merges it) `stringData`.
pub fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.as_bytes().to_vec());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
}

/// Reads `v1 Secret` documents out of a multi-document YAML text; other documents are skipped.
pub fn parse_secrets(yaml: &str) -> Result<Vec<Secret>, String> {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for document in documents {
        let is_secret = document.get("apiVersion").and_then(|v| v.as_str()) == Some("v1")
            && document.get("kind").and_then(|v| v.as_str()) == Some("Secret");
        if is_secret {
            let secret: Secret = serde_json::from_value(document)
                .map_err(|e| format!("not a valid v1 Secret: {e}"))?;
            out.push(secret);
        }
    }
    Ok(out)
}

/// Secrets of a manifest folder plus the operator's own Secret files.
#[derive(Debug, Default)]
pub struct DirectorySecrets {
    /// Secrets declared in the manifest folder, by (namespace, name).
    declared: HashMap<(String, String), Secret>,
    /// Where the operator writes the Secrets it owns.
    written: PathBuf,
    /// The owned Secret files, read once when the pass starts and kept current by
    /// `apply` and `delete`, so thousands of API keys do not each re-read their file.
    owned: Mutex<HashMap<(String, String), Secret>>,
    /// Parsed Secret files kept between passes, told about every file written here.
    files: Option<Arc<FileCache<Option<Secret>>>>,
}

impl DirectorySecrets {
    /// Secrets from the given manifest files, and `written` as the folder of owned Secrets.
    pub fn new(declared: impl IntoIterator<Item = Secret>, written: PathBuf) -> Self {
        let owned = written_secrets(&written, &FileCache::default());
        Self::with_owned(declared, written, owned)
    }

    /// Like [`DirectorySecrets::new`], with the owned Secret files already read.
    pub fn with_owned(
        declared: impl IntoIterator<Item = Secret>,
        written: PathBuf,
        owned: Vec<(String, String, Secret)>,
    ) -> Self {
        let declared = declared
            .into_iter()
            .filter_map(|s| {
                let name = s.metadata.name.clone()?;
                let namespace = s
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                Some(((namespace, name), s))
            })
            .collect();
        let owned = owned
            .into_iter()
            .map(|(ns, name, secret)| ((ns, name), secret))
            .collect();
        Self {
            declared,
            written,
            owned: Mutex::new(owned),
            files: None,
        }
    }

    /// Keeps `files` current with every Secret file this writes.
    pub fn with_file_cache(mut self, files: Arc<FileCache<Option<Secret>>>) -> Self {
        self.files = Some(files);
        self
    }

    /// The owned Secrets as (namespace, name, Secret), for sweeping those of deleted ApiKeys.
    pub fn owned(&self) -> Vec<(String, String, Secret)> {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        owned
            .iter()
            .map(|((ns, name), secret)| (ns.clone(), name.clone(), secret.clone()))
            .collect()
    }

    /// The file an owned Secret lives in.
    pub fn path_of(&self, namespace: &str, name: &str) -> PathBuf {
        secret_path(&self.written, namespace, name)
    }
}

/// `<dir>/<namespace>/<name>.yaml`; names are DNS subdomains, so they are safe path parts.
pub fn secret_path(dir: &Path, namespace: &str, name: &str) -> PathBuf {
    dir.join(namespace).join(format!("{name}.yaml"))
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> SecretError {
    SecretError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

#[async_trait]
impl SecretSource for DirectorySecrets {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SecretError> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(secret) = self
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Some(secret.clone()));
        }
        Ok(self
            .declared
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }

    async fn apply(&self, secret: &Secret) -> Result<(), SecretError> {
        let namespace = secret.metadata.namespace.as_deref().unwrap_or("default");
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let path = self.path_of(namespace, name);
        // Written as stringData so a person can read the key in dev; both forms load back.
        let mut readable = secret.clone();
        let mut strings = BTreeMap::new();
        let mut binary = BTreeMap::new();
        for (k, v) in secret.data.clone().unwrap_or_default() {
            match String::from_utf8(v.0) {
                Ok(s) => {
                    strings.insert(k, s);
                }
                Err(e) => {
                    binary.insert(k, ByteString(e.into_bytes()));
                }
            }
        }
        readable.string_data = (!strings.is_empty()).then_some(strings);
        readable.data = (!binary.is_empty()).then_some(binary);
        let mut document = serde_json::to_value(&readable).map_err(|e| file_error(&path, e))?;
        if let Some(object) = document.as_object_mut() {
            object.insert("apiVersion".into(), "v1".into());
            object.insert("kind".into(), "Secret".into());
        }
        let yaml = serde_saphyr::to_string(&document).map_err(|e| file_error(&path, e))?;
        write_private(&path, yaml.as_bytes()).map_err(|e| file_error(&path, e))?;
        if let Some(files) = &self.files {
            files.remember(&path, Some(secret.clone()));
        }
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_owned(), name.to_owned()), secret.clone());
        tracing::info!(secret = %format!("{namespace}/{name}"), path = %path.display(), "Secret written");
        Ok(())
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), SecretError> {
        let path = self.path_of(namespace, name);
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_owned(), name.to_owned()));
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(secret = %format!("{namespace}/{name}"), path = %path.display(), "Secret deleted");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(file_error(&path, e)),
        }
    }
}

/// Writes a file readable by its owner only, replacing it atomically (temp file + rename),
/// so a reader never sees half a key.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("yaml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // An existing temp file keeps its old mode; force 0600 either way.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    // No fsync: a Secret lost in a crash is a Secret deleted, which the next pass repairs
    // (new key, old one revoked); syncing every file would make large folders crawl.
    std::fs::rename(&tmp, path)
}

/// Every owned Secret file under `dir`, as (namespace, name, secret), for orphan cleanup.
pub fn written_secrets(
    dir: &Path,
    cache: &FileCache<Option<Secret>>,
) -> Vec<(String, String, Secret)> {
    let mut files = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for ns in namespaces.flatten() {
        let ns_path = ns.path();
        if !ns_path.is_dir() {
            continue;
        }
        let namespace = ns.file_name().to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir(&ns_path) else {
            continue;
        };
        for file in entries.flatten() {
            let path = file.path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            if let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) {
                files.push((namespace.clone(), name, path));
            }
        }
    }
    // An unreadable or unparsable file counts as absent: its ApiKey gets a new key.
    cache.retain(&files.iter().map(|(_, _, path)| path.clone()).collect());
    crate::parallel::map(&files, |(namespace, name, path)| {
        let secret = cache
            .read(path, |text| {
                parse_secrets(text).ok().and_then(|mut s| s.pop())
            })
            .ok()??;
        Some((namespace.clone(), name.clone(), secret))
    })
    .into_iter()
    .flatten()
    .collect()
}
