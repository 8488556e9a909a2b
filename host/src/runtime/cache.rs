//! Compiled components cached on disk by content hash, so a restart with
//! unchanged plugins does not compile again.
//!
//! A cache file is named `{sha256 of the .wasm}-{engine compatibility hash}.cwasm`:
//! a different wasmtime version or engine configuration never reads another's
//! artifact. Files are written to a temporary name and renamed, so a crash
//! never leaves half a file under a real name. Only this process writes there.

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

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
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
            Ok(component) => Some(component),
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
                std::fs::create_dir_all(dir)?;
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
    }
}

/// Load an artifact this module wrote.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the bytes come from `Component::serialize`
    // of a compatible engine. The file was written by `store` above (atomically,
    // in a folder only Portico writes), and its name carries both the source's
    // sha256 and the engine's compatibility hash; wasmtime also checks the
    // artifact's header against this engine before using it.
    unsafe { Component::deserialize_file(engine, path) }
}
