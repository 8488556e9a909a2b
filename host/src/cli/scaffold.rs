//! `portico plugin new NAME --lang rust|python|javascript`: a working adapter
//! to start from, in the author's language, with its build, test and
//! plugins.toml lines printed.
//!
//! Rust adapters are crates of the workspace; Python and JavaScript adapters
//! are built by the guest library's `build.sh` (plugins/sdk-python,
//! plugins/sdk-js), which installs its pinned toolchain on first use.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The language of a new adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Javascript,
}

/// One file of a template: its path in the plugin folder and its text.
type TemplateFile = (&'static str, &'static str);

const RUST: &[TemplateFile] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/plugin/lib.rs.tmpl"),
    ),
    (
        "src/logic.rs",
        include_str!("../../templates/plugin/logic.rs.tmpl"),
    ),
];

const PYTHON: &[TemplateFile] = &[
    (
        "app.py",
        include_str!("../../templates/plugin-python/app.py.tmpl"),
    ),
    (
        "logic.py",
        include_str!("../../templates/plugin-python/logic.py.tmpl"),
    ),
    (
        "test_logic.py",
        include_str!("../../templates/plugin-python/test_logic.py.tmpl"),
    ),
];

const JAVASCRIPT: &[TemplateFile] = &[
    (
        "adapter.js",
        include_str!("../../templates/plugin-javascript/adapter.js.tmpl"),
    ),
    (
        "logic.js",
        include_str!("../../templates/plugin-javascript/logic.js.tmpl"),
    ),
    (
        "logic.test.js",
        include_str!("../../templates/plugin-javascript/logic.test.js.tmpl"),
    ),
    (
        "package.json",
        include_str!("../../templates/plugin-javascript/package.json.tmpl"),
    ),
];

/// How a scaffolded adapter is built, tested and listed in plugins.toml.
struct Recipe {
    files: &'static [TemplateFile],
    /// The component the build writes, relative to plugins.toml.
    wasm: String,
    build: String,
    test: String,
    /// The guest library it is built with: its `watch` list names it too, and
    /// the workspace must have it (checked, with a hint).
    library: &'static str,
}

impl Recipe {
    /// A Python or JavaScript adapter, built and tested by its guest library's build.sh.
    fn by_script(name: &str, files: &'static [TemplateFile], library: &'static str) -> Recipe {
        let wasm = format!(
            "target/wasm32-wasip2/plugin/{}.wasm",
            name.replace('-', "_")
        );
        Recipe {
            files,
            build: format!("sh {library}/build.sh build plugins/{name} {wasm}"),
            test: format!("sh {library}/build.sh test plugins/{name}"),
            wasm,
            library,
        }
    }
}

impl Lang {
    fn recipe(self, name: &str) -> Recipe {
        let package = format!("portico-{name}");
        match self {
            Lang::Rust => Recipe {
                files: RUST,
                wasm: format!(
                    "target/wasm32-wasip2/plugin/{}.wasm",
                    package.replace('-', "_")
                ),
                build: format!("cargo build --profile plugin --target wasm32-wasip2 -p {package}"),
                test: format!("cargo test -p {package}"),
                library: "plugins/sdk",
            },
            Lang::Python => Recipe::by_script(name, PYTHON, "plugins/sdk-python"),
            Lang::Javascript => Recipe::by_script(name, JAVASCRIPT, "plugins/sdk-js"),
        }
    }
}

/// Whether `name` can name a plugin, a folder, a crate and a lead_sources kind.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `portico plugin new NAME --lang L`: scaffold plugins/NAME beside plugins.toml.
pub fn new_plugin(plugins_toml: &Path, name: &str, lang: Lang) -> anyhow::Result<()> {
    if !valid_name(name) {
        bail!(
            "plugin name {name:?}: use lower-case letters, digits and '-', starting with a letter (e.g. acme-crm)"
        );
    }
    // Rust packages are portico-NAME and their files portico_NAME.wasm: a plugin
    // named portico-x could write over the bundled adapter's file.
    if let Some(rest) = name.strip_prefix("portico-") {
        bail!(
            "plugin name {name:?}: the portico- prefix is added for you (packages are portico-NAME); name it {rest:?}"
        );
    }
    let base = std::path::absolute(plugins_toml)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = base.join("plugins").join(name);
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            dir.display()
        );
    }
    let recipe = lang.recipe(name);
    if !base.join(recipe.library).is_dir() || !base.join("wit/adapter.wit").is_file() {
        bail!(
            "{} needs {} and wit/adapter.wit beside {}: run it in a Portico checkout (or copy those folders from one)",
            dir.display(),
            recipe.library,
            plugins_toml.display()
        );
    }
    let package = format!("portico-{name}");
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{package}}", &package);
    for (path, text) in recipe.files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&file, fill(text))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    if lang == Lang::Rust {
        add_workspace_member(&base.join("Cargo.toml"), &format!("plugins/{name}"))?;
    }

    println!("created plugins/{name} ({lang:?})\n", lang = lang);
    println!("test it natively:    {}", recipe.test);
    println!("build the component: {}", recipe.build);
    println!(
        "try it offline:      portico plugin call {name} --body event.json --header 'X-Signature: sha256=...'\n"
    );
    println!("then add it to plugins.toml (a running Portico picks the edit up):\n");
    println!("[plugins.{name}]");
    println!("path = \"{}\"", recipe.wasm);
    println!("build = \"{}\"", recipe.build);
    println!("watch = [\"plugins/{name}\", \"{}\"]", recipe.library);
    println!("[plugins.{name}.secrets]");
    println!(
        "signing_secret = {{ env = \"{}_SIGNING_SECRET\" }}",
        name.to_ascii_uppercase().replace('-', "_")
    );
    Ok(())
}

/// Add `member` to the workspace's explicit `members = [...]` list (Python and
/// JavaScript adapters live beside Rust ones in plugins/, so the list cannot be
/// a `plugins/*` glob). Nothing to do when a glob already covers it.
fn add_workspace_member(manifest: &Path, member: &str) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return Ok(());
    };
    let Some(start) = text.find("members = [") else {
        return Ok(());
    };
    let open = start + "members = [".len();
    let Some(close) = text[open..].find(']').map(|i| open + i) else {
        return Ok(());
    };
    let list = &text[open..close];
    let (parent, _) = member.rsplit_once('/').unwrap_or(("", member));
    if list.contains(&format!("\"{member}\"")) || list.contains(&format!("\"{parent}/*\"")) {
        return Ok(());
    }
    let entry = if list.trim().is_empty() {
        format!("\"{member}\"")
    } else if list.trim_end().ends_with(',') {
        format!(" \"{member}\",")
    } else {
        format!(", \"{member}\"")
    };
    let insert_at = open + list.trim_end().len();
    let mut updated = text.clone();
    updated.insert_str(insert_at, &entry);
    std::fs::write(manifest, updated).with_context(|| {
        format!(
            "cannot add {member} to the workspace members in {}; add it by hand",
            manifest.display()
        )
    })?;
    println!("added {member} to the workspace members in Cargo.toml");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_added_once_and_a_glob_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(
            &manifest,
            "[workspace]\nmembers = [\"host\", \"plugins/sdk\"]\n",
        )
        .unwrap();
        add_workspace_member(&manifest, "plugins/acme").unwrap();
        add_workspace_member(&manifest, "plugins/acme").unwrap();
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "[workspace]\nmembers = [\"host\", \"plugins/sdk\", \"plugins/acme\"]\n"
        );
        std::fs::write(&manifest, "[workspace]\nmembers = [\"plugins/*\"]\n").unwrap();
        add_workspace_member(&manifest, "plugins/acme").unwrap();
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "[workspace]\nmembers = [\"plugins/*\"]\n"
        );
    }

    #[test]
    fn names_that_would_clash_with_the_bundled_adapters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("plugins.toml");
        let e = new_plugin(&toml, "portico-meta", Lang::Python).unwrap_err();
        assert!(e.to_string().contains("name it \"meta\""), "{e}");
        let e = new_plugin(&toml, "Acme", Lang::Rust).unwrap_err();
        assert!(e.to_string().contains("lower-case"), "{e}");
    }

    #[test]
    fn every_language_scaffolds_its_files_with_the_name_filled_in() {
        for lang in [Lang::Rust, Lang::Python, Lang::Javascript] {
            let recipe = lang.recipe("acme-crm");
            for (path, text) in recipe.files {
                assert!(text.contains("{{name}}"), "{lang:?} {path} names nothing");
            }
            assert!(recipe.build.contains("acme") && recipe.wasm.ends_with(".wasm"));
        }
    }
}
