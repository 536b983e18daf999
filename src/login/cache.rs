//! The token cache of `keygate login`: one JSON file per issuer and client under
//! `$XDG_CACHE_HOME/keygate/` (`~/.cache/keygate/` without it), the folder private to its
//! owner (0700) and each file too (0600, written whole to a temporary file and renamed, so
//! a reader never sees half a file). It holds a refresh token: whoever reads it can act as
//! the person until the token is revoked.

use super::provider::SignedIn;
use super::{Args, LoginError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What is kept of one sign-in.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    /// The issuer it came from.
    pub issuer: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The scopes asked for: another set means another sign-in.
    pub scope: String,
    /// The verified ID token kubectl presents.
    pub id_token: String,
    /// Its `exp`.
    pub expires_at: DateTime<Utc>,
    /// The refresh token, if one was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl Entry {
    /// The entry for a sign-in (or refresh) made with `args`.
    pub fn of(args: &Args, s: SignedIn) -> Self {
        Self {
            issuer: args.issuer.clone(),
            client_id: args.client_id.clone(),
            scope: args.scope.clone(),
            id_token: s.id_token,
            expires_at: s.expires_at,
            refresh_token: s.refresh_token,
        }
    }
}

/// The cache file of one issuer and client.
pub(super) struct Cache {
    dir: PathBuf,
    file: PathBuf,
}

fn cache_error(path: &Path) -> impl FnOnce(std::io::Error) -> LoginError + '_ {
    move |cause| LoginError::Cache {
        path: path.display().to_string(),
        cause,
    }
}

/// `$XDG_CACHE_HOME/keygate`, or `$HOME/.cache/keygate`.
fn cache_dir() -> Result<PathBuf, LoginError> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .ok_or_else(|| LoginError::Cache {
            path: "$XDG_CACHE_HOME".into(),
            cause: std::io::Error::other("neither XDG_CACHE_HOME nor HOME is set"),
        })?;
    Ok(base.join("keygate"))
}

impl Cache {
    /// The cache of `issuer` and `client_id`, its folder created private if missing.
    pub fn open(issuer: &str, client_id: &str) -> Result<Self, LoginError> {
        let dir = cache_dir()?;
        create_private_dir(&dir).map_err(cache_error(&dir))?;
        // A name from a hash: issuers and client ids hold characters no file name may.
        let key = keygate_core::crypto::sha256(format!("{issuer}\n{client_id}").as_bytes());
        let name: String = key.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let file = dir.join(format!("{name}.json"));
        Ok(Self { dir, file })
    }

    /// The folder the cache lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Holds the cache's lock file until dropped (waiting for another run to finish).
    pub async fn lock(&self) -> Result<std::fs::File, LoginError> {
        let path = self.file.with_extension("lock");
        let file = open_private(&path).map_err(cache_error(&path))?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| LoginError::Cache {
                path: path.display().to_string(),
                cause: std::io::Error::other(e),
            })?
            .map_err(cache_error(&path))
    }

    /// The cached entry; a missing or unreadable file is no entry.
    pub fn read(&self) -> Option<Entry> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Replaces the entry.
    pub fn write(&self, entry: &Entry) -> Result<(), LoginError> {
        let json = serde_json::to_vec_pretty(entry).map_err(|e| LoginError::Cache {
            path: self.file.display().to_string(),
            cause: std::io::Error::other(e),
        })?;
        write_private(&self.dir, &self.file, &json).map_err(cache_error(&self.file))
    }

    /// Drops the entry (a refresh token the issuer refused is worth nothing).
    pub fn forget(&self) -> Result<(), LoginError> {
        match std::fs::remove_file(&self.file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(cache_error(&self.file)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An older folder keeps its mode through `create`: tighten it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Writes `contents` to `file` through a temporary file in `dir` (created 0600) and a rename.
fn write_private(dir: &Path, file: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn entries_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.json");
        write_private(dir.path(), &file, b"{}").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let sub = dir.path().join("keygate");
        create_private_dir(&sub).unwrap();
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }
}
