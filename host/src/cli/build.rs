//! `portico build`: run each plugin's build command, with progress and timings.

use crate::config::{PluginSpec, PluginsFile};
use anyhow::{Context, bail};
use std::time::Instant;

pub async fn build_all(file: &PluginsFile) -> anyhow::Result<()> {
    for off in file
        .plugins
        .iter()
        .filter(|p| p.build.is_some() && !p.enabled)
    {
        eprintln!(
            "skipping plugin {}: it is disabled in {}",
            off.name,
            file.path.display()
        );
    }
    // A disabled plugin is not loaded, so it need not build (its toolchain may be missing).
    let to_build: Vec<_> = file
        .plugins
        .iter()
        .filter(|p| p.build.is_some() && p.enabled)
        .collect();
    if to_build.is_empty() {
        eprintln!(
            "no enabled plugin in {} declares a build command",
            file.path.display()
        );
        return Ok(());
    }
    let targets =
        super::toolchain::named_targets(to_build.iter().filter_map(|p| p.build.as_deref()));
    super::toolchain::ensure_targets(&targets, &file.base_dir)?;
    let all = Instant::now();
    for (i, plugin) in to_build.iter().enumerate() {
        build_one(file, plugin, Some((i + 1, to_build.len()))).await?;
    }
    eprintln!(
        "built {} plugin(s) in {:.1}s",
        to_build.len(),
        all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Build one plugin; returns the seconds it took.
pub async fn build_one(
    file: &PluginsFile,
    plugin: &PluginSpec,
    progress: Option<(usize, usize)>,
) -> anyhow::Result<f64> {
    let Some(command) = &plugin.build else {
        bail!(
            "plugin {} declares no build command in {}",
            plugin.name,
            file.path.display()
        );
    };
    let step = progress
        .map(|(i, n)| format!("[{i}/{n}] "))
        .unwrap_or_default();
    eprintln!("{step}building {}: {command}", plugin.name);
    let started = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&file.base_dir)
        // A cargo that runs us must not leak its target settings into the plugin build.
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .status()
        .await
        .with_context(|| format!("cannot run the build command of plugin {}", plugin.name))?;
    if !status.success() {
        bail!(
            "building plugin {} failed ({status}); the command was `{command}` in {}",
            plugin.name,
            file.base_dir.display()
        );
    }
    if !plugin.wasm_path.is_file() {
        bail!(
            "plugin {} built, but {} does not exist: fix `path` or `build` in {}",
            plugin.name,
            plugin.wasm_path.display(),
            file.path.display()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{step}built {} in {secs:.1}s", plugin.name);
    Ok(secs)
}
