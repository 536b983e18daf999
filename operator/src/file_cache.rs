//! Parsed files kept between passes, keyed by path and re-read only when the file's
//! modification time or size changed: a resync of a folder of thousands of unchanged
//! manifests and Secret files then parses nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// What a file was parsed into, with the stamp it had then.
type Entry<T> = (SystemTime, u64, T);

/// Parsed contents of files, by path.
#[derive(Debug)]
pub struct FileCache<T> {
    entries: Mutex<HashMap<PathBuf, Entry<T>>>,
}

impl<T> Default for FileCache<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<T: Clone> FileCache<T> {
    /// The parsed file: from the cache when its stamp is unchanged, else read and parsed now.
    pub fn read(&self, path: &Path, parse: impl Fn(&str) -> T) -> std::io::Result<T> {
        let meta = std::fs::metadata(path)?;
        let stamp = (meta.modified()?, meta.len());
        if let Some((modified, len, value)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            && (*modified, *len) == stamp
        {
            return Ok(value.clone());
        }
        let value = parse(&std::fs::read_to_string(path)?);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), (stamp.0, stamp.1, value.clone()));
        Ok(value)
    }

    /// Records what a file just written holds, so the next pass need not parse it back.
    pub fn remember(&self, path: &Path, value: T) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let Ok(modified) = meta.modified() else {
            return;
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), (modified, meta.len(), value));
    }

    /// Forgets files that no longer exist.
    pub fn retain(&self, present: &HashSet<PathBuf>) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|path, _| present.contains(path));
    }
}
