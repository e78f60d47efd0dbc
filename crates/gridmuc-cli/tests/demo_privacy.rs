//! A whole demo, logged at the most verbose level of our crates: no house JID may appear in any
//! log line, in anything printed, or in any file written where the demo runs.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// `house<digits>@`: how the demo names house accounts.
fn house_jids(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("house") {
        let tail = &rest[i + 5..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail.as_bytes().get(digits) == Some(&b'@') {
            let line_end = tail.find('\n').unwrap_or(tail.len());
            found.push(format!("house{}", &tail[..line_end]));
        }
        rest = tail;
    }
    found
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn a_whole_demo_logs_prints_and_writes_no_house_jid() {
    assert_eq!(house_jids("x house12@grid.test y").len(), 1, "detector");
    assert!(
        house_jids("houses 12, household@x, house@x").is_empty(),
        "detector"
    );

    // Private mode (the default) and direct mode, where the bot sees every nickname's reading.
    for (mode, printed) in [("private", "reports sent:"), ("direct", "readings sent:")] {
        let cwd = tempfile::tempdir().unwrap();
        // The private server's own files (accounts, its log) live apart: they are the server's.
        let server_tmp = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gridmuc"))
            .args([
                "demo",
                "--mode",
                mode,
                "--houses",
                "6",
                "--minutes",
                "0.2",
                "--interval",
                "1",
            ])
            .current_dir(cwd.path())
            .env("TMPDIR", server_tmp.path())
            .env(
                "RUST_LOG",
                "warn,gridmuc=trace,gridmuc_xmpp=trace,gridmuc_core=trace,gridmuc_server=trace,\
                 gridmuc_cli=trace,gridmuc_agent=trace",
            )
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{mode} demo failed:\n{stdout}\n{stderr}"
        );
        // The run really happened and was logged.
        assert!(stdout.contains(printed), "{mode}: {stdout}");
        assert!(stderr.contains("joined"), "{mode}: {stderr}");
        assert!(stdout.contains("house-spike"), "{mode}: {stdout}");

        assert_eq!(
            house_jids(&stdout),
            Vec::<String>::new(),
            "{mode}: in stdout"
        );
        assert_eq!(
            house_jids(&stderr),
            Vec::<String>::new(),
            "{mode}: in the logs"
        );
        let mut files = Vec::new();
        files_under(cwd.path(), &mut files);
        for f in files {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            assert_eq!(
                house_jids(&text),
                Vec::<String>::new(),
                "{mode}: in {}",
                f.display()
            );
        }
    }
}
