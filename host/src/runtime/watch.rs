//! Hot reload: watch plugins.toml and every plugin's .wasm, and reload what changed.
//!
//! Folders are watched, not files: editors and builds replace files by rename,
//! which a file watch loses. Events are debounced, filtered down to the paths
//! that matter, and a .wasm whose content hash did not change is ignored, so
//! one `cp` that fires several events reloads once and no reload loops on
//! Portico's own writes (its cache lives elsewhere and is never watched).

use super::registry::Runtime;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the watcher waits for a burst of events to settle.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Whether an event changes content: reads, and the access-time updates they cause, do not.
pub fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Other => false,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    let canon = |p: &Path| {
        p.parent()
            .and_then(|d| d.canonicalize().ok())
            .map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// The folders to watch for the current set and its manifest.
fn folders(runtime: &Runtime, manifest: &Path) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    if let Some(d) = manifest.parent() {
        dirs.insert(d.to_path_buf());
    }
    for slot in &runtime.snapshot().slots {
        if let Some(d) = slot.spec.wasm_path.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    dirs
}

/// Start watching; reloads run on the returned task until the process ends.
pub fn spawn(
    runtime: Arc<Runtime>,
    manifest: PathBuf,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let manifest = std::path::absolute(&manifest)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer =
        new_debouncer(
            DEBOUNCE,
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) => {
                    // Reads (ours included: loading a plugin reads its file) are not changes.
                    let paths: Vec<PathBuf> = events
                        .into_iter()
                        .filter(|e| is_change(&e.event.kind))
                        .flat_map(|e| e.event.paths)
                        .collect();
                    if !paths.is_empty() {
                        let _ = tx.send(paths);
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!("file watch error: {e}");
                    }
                }
            },
        )?;
    let mut watched = BTreeSet::new();
    for dir in folders(&runtime, &manifest) {
        match debouncer.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir);
            }
            Err(e) => tracing::warn!("cannot watch {}: {e}", dir.display()),
        }
    }
    tracing::info!(
        folders = watched.len(),
        "watching plugins.toml and plugin files for changes"
    );
    Ok(tokio::spawn(async move {
        while let Some(mut paths) = rx.recv().await {
            // Fold everything that arrived meanwhile into one pass.
            while let Ok(more) = rx.try_recv() {
                paths.extend(more);
            }
            if paths.iter().any(|p| same_file(p, &manifest)) {
                match runtime.reload_manifest().await {
                    Ok(set) => tracing::info!(plugins = set.slots.len(), "plugins.toml reloaded"),
                    Err(e) => tracing::error!("{e}"),
                }
                // A new plugin may live in a folder not watched yet.
                for dir in folders(&runtime, &manifest) {
                    if !watched.contains(&dir)
                        && debouncer.watch(&dir, RecursiveMode::NonRecursive).is_ok()
                    {
                        watched.insert(dir);
                    }
                }
            }
            let set = runtime.snapshot();
            let changed: Vec<String> = set
                .slots
                .iter()
                .filter(|s| paths.iter().any(|p| same_file(p, &s.spec.wasm_path)))
                .map(|s| s.spec.name.clone())
                .collect();
            for name in changed {
                runtime.reload_plugin(&name).await;
            }
        }
    }))
}
