//! Hot reload: watch plugins.toml and every plugin's .wasm, and reload what changed.
//!
//! Folders are watched, not files: editors and builds replace files by rename,
//! which a file watch loses. Events are debounced, filtered down to the paths
//! that matter, and a .wasm whose content hash did not change is ignored, so
//! one `cp` that fires several events reloads once and no reload loops on
//! Portico's own writes (its cache lives elsewhere and is never watched).
//!
//! On Linux a folder is watched for finished writes, renames, links and
//! removals only, not for each write: the default setup keeps the SQLite
//! database (./portico.db) beside ./plugins.toml, and a watch on every write
//! woke the watcher on each commit (a tenth of portico's CPU under ingest
//! load). Elsewhere notify's debouncer watches them.

use super::registry::Runtime;
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
    let mut watch = folder_watch::FolderWatch::start(tx)?;
    let mut watched = BTreeSet::new();
    for dir in folders(&runtime, &manifest) {
        match watch.add(&dir) {
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
                    if !watched.contains(&dir) && watch.add(&dir).is_ok() {
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

/// Linux: inotify, for the events that end a change only.
#[cfg(target_os = "linux")]
mod folder_watch {
    use super::DEBOUNCE;
    use futures_util::StreamExt;
    use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, PoisonError};
    use tokio::sync::mpsc::UnboundedSender;

    /// A write finished (an editor saving in place, `cp`), a file renamed in
    /// or out (an editor's or our tests' save), linked in (cargo removes its
    /// output and links the new one) or created, or removed. Not IN_MODIFY:
    /// every write raises it (so a file kept open and written, or written
    /// through a mapping, counts once closed).
    fn mask() -> WatchMask {
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
    }

    /// However busy a folder, changes are reported at least this often.
    const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

    type Folders = Arc<Mutex<HashMap<WatchDescriptor, PathBuf>>>;

    pub struct FolderWatch {
        watches: Watches,
        folders: Folders,
        reader: tokio::task::AbortHandle,
    }

    impl FolderWatch {
        /// Report the paths that changed, a settled burst at a time, to `changes`.
        pub fn start(changes: UnboundedSender<Vec<PathBuf>>) -> std::io::Result<FolderWatch> {
            let inotify = Inotify::init()?;
            let watches = inotify.watches();
            let folders = Folders::default();
            let events = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
            let reader = tokio::spawn(report(events, folders.clone(), changes)).abort_handle();
            Ok(FolderWatch {
                watches,
                folders,
                reader,
            })
        }

        pub fn add(&mut self, dir: &Path) -> std::io::Result<()> {
            let wd = self.watches.add(dir, mask())?;
            self.folders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(wd, dir.to_path_buf());
            Ok(())
        }
    }

    impl Drop for FolderWatch {
        fn drop(&mut self) {
            self.reader.abort();
        }
    }

    async fn report(
        mut events: EventStream<Vec<u8>>,
        folders: Folders,
        changes: UnboundedSender<Vec<PathBuf>>,
    ) {
        loop {
            let mut paths = Vec::new();
            match events.next().await {
                Some(Ok(event)) => note(event, &folders, &mut paths),
                Some(Err(e)) => return tracing::warn!("file watch error, hot reload stops: {e}"),
                None => return,
            }
            // Until the folders stay quiet for DEBOUNCE (or LONGEST_WAIT passed).
            let started = tokio::time::Instant::now();
            while started.elapsed() < LONGEST_WAIT {
                match tokio::time::timeout(DEBOUNCE, events.next()).await {
                    Ok(Some(Ok(event))) => note(event, &folders, &mut paths),
                    Ok(Some(Err(e))) => {
                        tracing::warn!("file watch error: {e}");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            if !paths.is_empty() && changes.send(paths).is_err() {
                return;
            }
        }
    }

    fn note(event: inotify::Event<OsString>, folders: &Folders, paths: &mut Vec<PathBuf>) {
        let mut folders = folders.lock().unwrap_or_else(PoisonError::into_inner);
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost: everything in the folders may have changed
            // (unchanged plugins are skipped by their hash).
            tracing::warn!("too many file changes at once: checking every watched file");
            for dir in folders.values() {
                if let Ok(entries) = std::fs::read_dir(dir) {
                    paths.extend(entries.flatten().map(|e| e.path()));
                }
            }
        } else if event.mask.contains(EventMask::IGNORED) {
            // The folder went away: its watch with it.
            folders.remove(&event.wd);
        } else if let (Some(dir), Some(name)) = (folders.get(&event.wd), event.name) {
            let path = dir.join(name);
            if event.mask.contains(EventMask::CREATE) && !complete_on_creation(&path) {
                // A file created empty is being written: its IN_CLOSE_WRITE
                // says when it is whole.
                return;
            }
            paths.push(path);
        }
    }

    /// Whether a file whose creation was just seen already has its content:
    /// a hard link to a written file (how cargo puts its outputs in place) or
    /// a symbolic link, unlike a file opened with O_CREAT and still being written.
    fn complete_on_creation(path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match std::fs::symlink_metadata(path) {
            Ok(m) => m.file_type().is_symlink() || m.nlink() > 1,
            // Gone again already: let the reload find out.
            Err(_) => true,
        }
    }
}

/// Elsewhere: notify's debouncer.
#[cfg(not(target_os = "linux"))]
mod folder_watch {
    use super::{DEBOUNCE, is_change};
    use notify::{RecommendedWatcher, RecursiveMode};
    use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
    use std::path::{Path, PathBuf};
    use tokio::sync::mpsc::UnboundedSender;

    pub struct FolderWatch {
        debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    }

    impl FolderWatch {
        /// Report the paths that changed, a settled burst at a time, to `changes`.
        pub fn start(changes: UnboundedSender<Vec<PathBuf>>) -> notify::Result<FolderWatch> {
            let debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
                match result {
                    Ok(events) => {
                        // Reads (ours included: loading a plugin reads its file) are not changes.
                        let paths: Vec<PathBuf> = events
                            .into_iter()
                            .filter(|e| is_change(&e.event.kind))
                            .flat_map(|e| e.event.paths)
                            .collect();
                        if !paths.is_empty() {
                            let _ = changes.send(paths);
                        }
                    }
                    Err(errors) => {
                        for e in errors {
                            tracing::warn!("file watch error: {e}");
                        }
                    }
                }
            })?;
            Ok(FolderWatch { debouncer })
        }

        pub fn add(&mut self, dir: &Path) -> notify::Result<()> {
            self.debouncer.watch(dir, RecursiveMode::NonRecursive)
        }
    }
}
