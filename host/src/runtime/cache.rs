//! Compiled components cached on disk by content hash, so a restart with
//! unchanged plugins does not compile again.
//!
//! A cache file is named `{sha256 of the .wasm}-{engine compatibility hash}.cwasm`:
//! a different wasmtime version or engine configuration never reads another's
//! artifact. Files are written to a temporary name and renamed, so a crash
//! never leaves half a file under a real name.
//!
//! What is in that folder runs as native code, so the folder must be this
//! user's alone: it is created 0700, and one owned by another user or
//! writable by group or others is refused (start-up stops and says how to fix it).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept, or nowhere.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

/// A cache folder that others could have written native code into.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "cannot create the component cache folder {path}: {source}; set PORTICO_CACHE_DIR to a folder you can write (or to off)"
    )]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the component cache folder {path} belongs to user {owner}, not to this user ({me}): what is in it would run as native code; remove it or set PORTICO_CACHE_DIR to a folder of your own (or to off)"
    )]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "the component cache folder {path} is writable by others (mode {mode:o}): what is in it would run as native code; run `chmod 700 {path}` or set PORTICO_CACHE_DIR elsewhere (or to off)"
    )]
    OpenToOthers { path: PathBuf, mode: u32 },
}

impl ComponentCache {
    /// The cache in `dir`, created 0700 if missing and refused if others could write it.
    pub fn open(engine: &Engine, dir: Option<PathBuf>) -> Result<Self, CacheError> {
        if let Some(dir) = &dir {
            check_folder(dir)?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// A cached compilation of the component with this hash, if there is one.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256)?;
        if !path.is_file() {
            return None;
        }
        match deserialize(engine, &path) {
            Ok(component) => {
                // Used now: the last to be pruned (see `prune`).
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                Some(component)
            }
            Err(e) => {
                tracing::warn!(
                    "ignoring unreadable component cache {}: {e:#}",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Keep a compilation for next time; failures only cost a recompile later.
    pub fn store(&self, sha256: &str, component: &Component) {
        let Some(path) = self.path(sha256) else {
            return;
        };
        let write = || -> anyhow::Result<()> {
            if let Some(dir) = path.parent() {
                check_folder(dir)?;
            }
            let bytes = component.serialize()?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write component cache {}: {e:#}", path.display());
        }
        if let Some(dir) = path.parent() {
            prune(dir, CACHE_BYTES);
        }
    }
}

/// What the cache folder may hold: each rebuild of a Python or JavaScript
/// adapter is a new file of tens of MB (their toolchains never build the same
/// bytes twice), so the folder is pruned, least recently used first.
const CACHE_BYTES: u64 = 2 << 30;

/// Remove the least recently used compilations until `dir` holds at most `limit` bytes.
fn prune(dir: &Path, limit: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= limit {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            tracing::debug!(file = %path.display(), "component cache pruned");
            total = total.saturating_sub(len);
        }
    }
}

/// Create `dir` (0700) if missing; refuse it if another user owns it or
/// group or others may write it.
fn check_folder(dir: &Path) -> Result<(), CacheError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CacheError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let meta = std::fs::metadata(dir).map_err(|source| CacheError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(CacheError::NotOurs {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheError::OpenToOthers {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Load an artifact this module wrote.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the bytes come from `Component::serialize`
    // of a compatible engine. The file was written by `store` above (atomically,
    // in a folder only this user may write, see `check_folder`), and its name carries both the source's
    // sha256 and the engine's compatibility hash; wasmtime also checks the
    // artifact's header against this engine before using it.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Cranelift's per-function results, kept in memory for the life of the
/// process, so that recompiling a component whose code mostly did not change
/// reuses what did not. That is the common case for components built from
/// Python or JavaScript: an edit changes the interpreter's memory snapshot
/// (data), not its tens of thousands of compiled functions, and the toolchains
/// do not build the same file twice, so the whole-component cache above
/// cannot hit after a rebuild. Bounded: when a new function would pass the
/// limit, everything kept so far is dropped (what a long session kept is
/// mostly earlier builds' functions; the next compilation fills it again).
#[derive(Debug)]
pub struct FunctionCache {
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Vec<u8>>>,
    bytes: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl FunctionCache {
    /// Keep at most `limit` bytes of keys and compiled functions.
    pub fn new(limit: usize) -> Self {
        FunctionCache {
            entries: Default::default(),
            bytes: Default::default(),
            limit,
        }
    }

    /// Bytes kept now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).map(|v| std::borrow::Cow::Owned(v.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        use std::sync::atomic::Ordering;
        let size = key.len() + value.len();
        if size > self.limit {
            return false;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        if self.bytes.load(Ordering::Relaxed) + size > self.limit {
            entries.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        let previous = entries.insert(key.to_vec(), value);
        let freed = previous.map_or(0, |v| key.len() + v.len());
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_removes_the_least_recently_used_compilations_first() {
        let dir = tempfile::tempdir().unwrap();
        let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        for (name, used) in [("old", 1), ("new", 3), ("mid", 2)] {
            let path = dir.path().join(format!("{name}.cwasm"));
            std::fs::write(&path, vec![0u8; 100]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(at(used)).unwrap();
        }
        std::fs::write(dir.path().join("other.txt"), vec![0u8; 1000]).unwrap();
        prune(dir.path(), 200);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mid.cwasm", "new.cwasm", "other.txt"]);
    }

    #[test]
    fn the_function_cache_starts_over_when_full() {
        use wasmtime::CacheStore;
        let cache = FunctionCache::new(10);
        assert!(cache.insert(b"a", vec![0; 4]));
        assert!(cache.insert(b"b", vec![0; 4]));
        assert_eq!(cache.bytes(), 10);
        assert!(cache.insert(b"c", vec![0; 4]));
        assert_eq!(
            (cache.get(b"a").is_none(), cache.get(b"c").is_some()),
            (true, true)
        );
        assert_eq!(cache.bytes(), 5);
        assert!(cache.insert(b"c", vec![0; 2]));
        assert_eq!(cache.bytes(), 3);
        assert!(!cache.insert(b"big", vec![0; 20]));
    }
}
