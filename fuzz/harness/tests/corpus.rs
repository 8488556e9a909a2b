//! Replays every file of fuzz/corpus/<target>/ and fuzz/regressions/<target>/ through the
//! harness the fuzz target calls, so `cargo test --workspace` (stable, debug build with
//! overflow checks) keeps what fuzzing found. A corpus directory must not be empty.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| panic!("harness has no parent dir"));
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{dir}/{target}: {e}"))
                .path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_file() && !hidden {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, harness: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        files
            .iter()
            .any(|f| f.components().any(|c| c.as_os_str() == "corpus")),
        "fuzz/corpus/{target}/ is empty or missing"
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| harness(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail for {target} (reproduce: cargo +nightly fuzz run {target} FILE):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    println!("{target}: replayed {} inputs", files.len());
}

#[test]
fn meta() {
    replay("meta", portico_fuzz_harness::meta);
}

#[test]
fn whatsapp() {
    replay("whatsapp", portico_fuzz_harness::whatsapp);
}

#[test]
fn standard_webhooks() {
    replay("standard_webhooks", portico_fuzz_harness::standard_webhooks);
}

#[test]
fn google_ads() {
    replay("google_ads", portico_fuzz_harness::google_ads);
}

#[test]
fn sdk_signature() {
    replay("sdk_signature", portico_fuzz_harness::sdk_signature);
}
