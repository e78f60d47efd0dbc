//! The crate's invariant, checked: its sources name no async runtime, no socket and no clock
//! read, so every agent core stays a state machine driven from outside.

use std::path::Path;

/// What a sans-IO source must not contain.
const FORBIDDEN: [&str; 4] = ["tokio", "std::net", "SystemTime", "Instant::now"];

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn sources_have_no_runtime_no_sockets_and_no_clock_reads() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() >= 3, "found only {files:?}");
    let found: Vec<String> = files
        .iter()
        .flat_map(|(path, text)| {
            text.lines().enumerate().flat_map(move |(i, line)| {
                FORBIDDEN
                    .iter()
                    .filter(move |word| line.contains(*word))
                    .map(move |word| format!("{path}:{}: {word}", i + 1))
            })
        })
        .collect();
    assert!(
        found.is_empty(),
        "sans-IO crate touches the world:\n{}",
        found.join("\n")
    );
}
