//! `portico dev`: build, serve, and rebuild a plugin when its sources change.
//!
//! Each plugin's `watch` folders (plugins.toml) are watched recursively. A
//! change rebuilds only the plugins whose folders it touched, one build at a
//! time, with the build's own output in full; the new .wasm is then picked up
//! by `serve`'s hot reload. A failed build leaves the running version serving.

use super::build::build_one;
use crate::config::PluginsFile;
use crate::config::Settings;
use crate::config::plugins::{FileCheck, load_plugins_file};
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

pub async fn dev(settings: &Settings) -> anyhow::Result<()> {
    let file = load_plugins_file(&settings.plugins_path, FileCheck::Skip)?;
    super::build::build_all(&file).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(
        Duration::from_millis(300),
        None,
        move |r: DebounceEventResult| {
            if let Ok(events) = r {
                // Builds read every manifest and source: reads are not changes.
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|e| crate::runtime::watch::is_change(&e.event.kind))
                    .flat_map(|e| e.event.paths)
                    .collect();
                if !paths.is_empty() {
                    let _ = tx.send(paths);
                }
            }
        },
    )?;
    let mut watched = 0;
    for plugin in &file.plugins {
        for dir in &plugin.watch {
            match debouncer.watch(dir, RecursiveMode::Recursive) {
                Ok(()) => watched += 1,
                Err(e) => eprintln!(
                    "[dev] cannot watch {} for plugin {}: {e}",
                    dir.display(),
                    plugin.name
                ),
            }
        }
        if plugin.watch.is_empty() && plugin.build.is_some() {
            eprintln!(
                "[dev] plugin {} lists no `watch` folders in plugins.toml: it is not rebuilt on change",
                plugin.name
            );
        }
    }
    eprintln!(
        "[dev] watching {watched} source folder(s); edit a plugin and it is rebuilt and reloaded"
    );
    let rebuilds = tokio::spawn(async move {
        // Keep the watcher alive as long as this task.
        let _debouncer = debouncer;
        while let Some(mut paths) = rx.recv().await {
            while let Ok(more) = rx.try_recv() {
                paths.extend(more);
            }
            rebuild_touched(&file, &paths).await;
        }
    });
    let served =
        super::serve::serve(settings, crate::runtime::engine::Recompile::ReuseFunctions).await;
    rebuilds.abort();
    served
}

async fn rebuild_touched(file: &PluginsFile, paths: &[PathBuf]) {
    // Build output, and what Python and npm write beside the sources
    // (bytecode caches, installed packages), is never a reason to rebuild.
    let relevant: Vec<&PathBuf> = paths
        .iter()
        .filter(|p| {
            !p.components().any(|c| {
                matches!(
                    c.as_os_str().to_str(),
                    Some("target" | "__pycache__" | "node_modules" | ".pytest_cache")
                )
            })
        })
        .collect();
    let mut names = BTreeSet::new();
    for plugin in &file.plugins {
        if plugin.build.is_some()
            && plugin.enabled
            && relevant
                .iter()
                .any(|p| plugin.watch.iter().any(|w| p.starts_with(w)))
        {
            names.insert(plugin.name.clone());
        }
    }
    for name in names {
        let Some(plugin) = file.plugins.iter().find(|p| p.name == name) else {
            continue;
        };
        let what: Vec<String> = relevant
            .iter()
            .filter(|p| plugin.watch.iter().any(|w| p.starts_with(w)))
            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        eprintln!(
            "[dev] {} changed: rebuilding plugin {name}",
            what.join(", ")
        );
        match build_one(file, plugin, None).await {
            Ok(secs) => eprintln!("[dev] rebuilt {name} in {secs:.1}s; hot reload picks it up"),
            Err(e) => eprintln!("[dev] {e:#}\n[dev] the running version of {name} keeps serving"),
        }
    }
}
