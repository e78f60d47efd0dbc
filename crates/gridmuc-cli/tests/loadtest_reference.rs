//! `gridmuc loadtest --reference slixmpp` on a private Prosody: the Python reference bot takes
//! the same broadcast readings as ours, so the CPU-per-reading comparison compares like with
//! like (a change of our wire format that it could not read would show here, not as a ratio).

#![allow(clippy::unwrap_used)]

use std::process::Command;

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> f64 {
    let rest = &text[text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
        + prefix.len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?}"))
}

#[test]
fn the_reference_bot_takes_the_same_readings_as_ours() {
    let out = Command::new(env!("CARGO_BIN_EXE_gridmuc"))
        .args([
            "loadtest",
            "--houses",
            "3",
            "--rate",
            "5",
            "--mode",
            "broadcast",
            "--seconds",
            "6",
            "--start-after",
            "3",
            "--reference",
            "slixmpp",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let ours = number_after(&stdout, "ingested ");
    let theirs = number_after(&stdout, "% for ");
    // 3 houses × 5/s × 6 s; both counted between the same two snapshots.
    assert!(ours >= 60.0, "{stdout}");
    assert!((ours - theirs).abs() <= ours / 10.0 + 2.0, "{stdout}");
    assert!(number_after(&stdout, "ours uses ") > 0.0, "{stdout}");
}

#[test]
fn a_reference_bot_needs_broadcast_readings() {
    let out = Command::new(env!("CARGO_BIN_EXE_gridmuc"))
        .args(["loadtest", "--mode", "direct", "--reference", "slixmpp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--reference needs --mode broadcast"),
        "{stderr}"
    );
}
