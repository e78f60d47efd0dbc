//! What the contrib tests share: `contrib/`'s files, `promtool`, and the series the dashboard
//! and the alert rules query.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A file under the repository's `contrib/`.
pub fn contrib(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib")
        .join(path)
}

/// `promtool`, or `None` with a note on stderr when it is not installed (`scripts/setup`
/// installs it; CI always has it).
pub fn promtool() -> Option<Command> {
    match Command::new("promtool").arg("--version").output() {
        Ok(out) if out.status.success() => Some(Command::new("promtool")),
        _ => {
            eprintln!(
                "SKIPPED: promtool not found; run scripts/setup (Debian package `prometheus`)"
            );
            None
        }
    }
}

/// Runs `cmd` with `stdin` and panics with its output unless it succeeds.
pub fn succeeds(mut cmd: Command, stdin: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// Every `gridmuc_*` name in `text`.
fn names_in(text: &str) -> impl Iterator<Item = String> + '_ {
    text.match_indices("gridmuc_").map(|(at, _)| {
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    })
}

/// Every `gridmuc_*` series the dashboard's panel queries and the alert rules name.
pub fn queried_series() -> BTreeSet<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(contrib("grafana/gridmuc.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty(), "a dashboard without panels");
    let mut names = BTreeSet::new();
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty(),
            "panel {} queries nothing",
            panel["title"]
        );
        for t in targets {
            names.extend(names_in(t["expr"].as_str().unwrap()));
        }
    }
    let rules = std::fs::read_to_string(contrib("prometheus/alerts.yml")).unwrap();
    names.extend(names_in(&rules));
    names
}

/// The series names in a text-format exposition.
fn exposed_series(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// A text-format exposition passes `promtool check metrics` (lint included) and holds every
/// series the dashboard and the alert rules query.
pub fn check_exposition(body: &str) {
    let exposed = exposed_series(body);
    let missing: Vec<_> = queried_series().difference(&exposed).cloned().collect();
    assert!(missing.is_empty(), "queried but not exposed: {missing:?}");
    if let Some(mut cmd) = promtool() {
        cmd.args(["check", "metrics"]);
        succeeds(cmd, body);
    }
}
