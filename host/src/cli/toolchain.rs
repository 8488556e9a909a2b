//! The Rust targets plugin builds need, installed before they run.
//!
//! A fresh machine with only rustup has the host target alone; a build for
//! `wasm32-wasip2` then fails deep inside cargo with "can't find crate for
//! `core`". So `portico build` (and `up`, `dev`) reads the targets its build
//! commands name, and asks rustup for any that is missing, saying so; without
//! rustup, or when rustup cannot fetch it, it stops with the exact fix.

use anyhow::bail;
use std::path::Path;
use std::process::Command;

/// The targets named by `--target X` or `--target=X` in cargo commands (other
/// tools have `--target`s of their own: es2020, a JSON spec, …).
pub fn named_targets<'a>(commands: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut targets = Vec::new();
    for command in commands {
        if !command.split_whitespace().any(|w| w == "cargo") {
            continue;
        }
        let mut words = command.split_whitespace();
        while let Some(word) = words.next() {
            let target = match word.strip_prefix("--target=") {
                Some(t) => Some(t.to_string()),
                None if word == "--target" => words.next().map(str::to_string),
                None => None,
            };
            if let Some(t) = target.map(|t| t.trim_matches(['"', '\'']).to_string())
                && !t.is_empty()
                && !targets.contains(&t)
            {
                targets.push(t);
            }
        }
    }
    targets
}

/// Make sure every target in `targets` is installed for the toolchain that
/// builds in `dir`, adding missing ones with rustup.
pub fn ensure_targets(targets: &[String], dir: &Path) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let installed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).to_string(),
        // No rustup: a toolchain installed some other way; the build will say.
        _ => return Ok(()),
    };
    for target in targets {
        if installed.lines().any(|l| l.trim() == target) {
            continue;
        }
        eprintln!(
            "the Rust target {target} is not installed; installing it: rustup target add {target}"
        );
        let added = Command::new("rustup")
            .args(["target", "add", target])
            .current_dir(dir)
            .status();
        if !added.is_ok_and(|s| s.success()) {
            bail!(
                "the plugins build for the Rust target {target}, which is not installed and rustup \
                 could not add it: run `rustup target add {target}` (it needs the network), then build again"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_from_build_commands() {
        let commands = [
            "cargo build --profile plugin --target wasm32-wasip2 -p portico-meta",
            "cargo build --target=wasm32-wasip2 -p other",
            "cargo build --target 'wasm32-unknown-unknown'",
            "npm run build",
            "esbuild src/index.ts --target=es2020",
            "cargo build --target",
        ];
        assert_eq!(
            named_targets(commands),
            vec!["wasm32-wasip2", "wasm32-unknown-unknown"]
        );
    }
}
