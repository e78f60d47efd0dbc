//! How the binaries stop. `gridmuc server`, `substation`, `meter` and `demo` stop cleanly on
//! SIGTERM as on Ctrl-C: systemd, `docker stop` and `kill` send SIGTERM, which used to kill a
//! meter before it asked the bot for the verdicts it held (its last readings lost), and
//! `gridmuc server` before it deleted its temporary directory (the bot's secret key and every
//! account's password left in /tmp). And a meter killed outright (`kill -9`, a power cut)
//! loses nothing when it keeps an `outbox_file`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `gridmuc` subcommand, its output captured, killed if the test fails before it stops.
struct Running(Option<Child>);

impl Running {
    fn start(args: &[&str]) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_gridmuc"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running(Some(child))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Sends SIGTERM and waits for the process to end, returning what it printed.
    fn terminate(mut self) -> Output {
        self.signal("-TERM");
        self.0.take().unwrap().wait_with_output().unwrap()
    }

    /// Sends `signal` (as `kill` spells it) to the process.
    fn signal(&mut self, signal: &str) {
        let pid = self.child().id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success());
    }
}

/// Waits until the meter's `outbox` holds at least `n` items, then kills the meter outright
/// (`kill -9`) and returns what the file held then.
fn kill_holding(mut meter: Running, outbox: &Path, n: usize) -> Vec<String> {
    wait_until(60, "items kept", || saved_in(outbox).len() >= n);
    meter.signal("-KILL");
    let _ = meter.child().wait();
    saved_in(outbox)
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The server's stdout lines, read on a thread so the pipe never fills.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `what` in `text`, or a panic showing both outputs.
fn assert_printed(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(what),
        "{what:?} not printed;\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// The number right after `prefix` in `out`'s stdout.
fn count_after(out: &Output, prefix: &str) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let at = stdout
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"));
    stdout[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// One account's `[account]` table for a config.
fn account_table(accounts: &toml::Table, user: &str) -> String {
    let domain = accounts["domain"].as_str().unwrap();
    let jid = format!("{user}@{domain}");
    let password = accounts["account"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["jid"].as_str() == Some(&jid))
        .unwrap()["password"]
        .as_str()
        .unwrap();
    format!(
        "[account]\njid = {jid:?}\npassword = {password:?}\nserver = {:?}\nca_file = {:?}\ntimeout = \"10s\"\n",
        accounts["server"].as_str().unwrap(),
        accounts["ca_cert"].as_str().unwrap(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A `gridmuc server` with two houses, and config files for its agents: direct mode with
/// 1-s intervals, or private mode (a helper bot, at least 2 reports) with 2-s intervals.
struct Street {
    server: Running,
    /// The server's stdout lines after the ones read at start.
    lines: mpsc::Receiver<String>,
    dir: PathBuf,
    accounts: toml::Table,
    /// `key_file` of the substation and of the helper, `bot_key`, `helper_key`, as printed.
    printed: [String; 4],
    private: bool,
}

impl Street {
    fn start(dir: &Path, private: bool) -> Street {
        let accounts_path = dir.join("accounts.toml");
        let mut server = Running::start(&[
            "server",
            "--houses",
            "2",
            "--accounts-file",
            accounts_path.to_str().unwrap(),
        ]);
        let lines = lines_of(server.child());
        let mut printed: [Option<String>; 4] = Default::default();
        while printed.iter().any(Option::is_none) {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("gridmuc server printed no keys");
            let line = line.trim();
            for (i, prefix) in ["bot key", "helper key", "bot_key = \"", "helper_key = \""]
                .iter()
                .enumerate()
            {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let value = match i {
                        0 | 1 => rest.split_whitespace().next(),
                        _ => rest.split('"').next(),
                    };
                    printed[i] = value.map(str::to_owned);
                }
            }
        }
        Street {
            server,
            lines,
            dir: dir.to_owned(),
            accounts: toml::from_str(&std::fs::read_to_string(&accounts_path).unwrap()).unwrap(),
            printed: printed.map(Option::unwrap_or_default),
            private,
        }
    }

    fn room(&self) -> &str {
        self.accounts["room"].as_str().unwrap()
    }

    fn interval(&self) -> &'static str {
        if self.private { "2s" } else { "1s" }
    }

    /// The `[private]` table every party shares, or nothing in direct mode.
    fn private_table(&self) -> String {
        match self.private {
            true => format!(
                "[private]\nhelper_key = {:?}\nmin_reports = 2\n",
                self.printed[3]
            ),
            false => String::new(),
        }
    }

    fn bot(&self) -> Running {
        let config = write(
            &self.dir,
            "substation.toml",
            &format!(
                "room = {:?}\nnick = \"substation\"\nkey_file = {:?}\npost_summaries = false\n\
                 [aggregator]\ninterval = {:?}\ngrace = \"500ms\"\n{}{}",
                self.room(),
                self.printed[0],
                self.interval(),
                account_table(&self.accounts, "substation"),
                self.private_table(),
            ),
        );
        Running::start(&["substation", "-c", config.to_str().unwrap()])
    }

    fn helper(&self) -> Running {
        let config = write(
            &self.dir,
            "helper.toml",
            &format!(
                "room = {:?}\nnick = \"helper\"\nleader_nick = \"substation\"\nleader_key = {:?}\n\
                 interval = {:?}\nkey_file = {:?}\n{}{}",
                self.room(),
                self.printed[2],
                self.interval(),
                self.printed[1],
                account_table(&self.accounts, "helper"),
                self.private_table(),
            ),
        );
        Running::start(&["helper", "-c", config.to_str().unwrap()])
    }

    /// The meter of `house` (`house-001`, …); `extra` goes at the top of its config.
    fn meter(&self, house: &str, extra: &str) -> Running {
        let config = write(
            &self.dir,
            &format!("{house}.toml"),
            &format!(
                "{extra}\nroom = {:?}\nmode = \"direct\"\nbot_nick = \"substation\"\n\
                 bot_key = {:?}\ninterval = {:?}\nsource = {{ kind = \"model\" }}\n{}{}",
                self.room(),
                self.printed[2],
                self.interval(),
                account_table(&self.accounts, house),
                self.private_table(),
            ),
        );
        Running::start(&["meter", "-c", config.to_str().unwrap()])
    }
}

/// Stops `bot` with SIGTERM and returns the readings it accepted, from its last line.
fn accepted_by(mut bot: Running) -> u64 {
    let lines = lines_of(bot.child());
    let out = bot.terminate();
    assert!(out.status.success(), "substation: {:?}", out.status);
    let last = lines.iter().last().unwrap_or_default();
    last.strip_prefix("readings accepted: ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counters on the bot's last line: {last:?}"))
}

#[test]
fn sigterm_stops_meter_bot_and_server_cleanly_losing_no_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let street = Street::start(tmp.path(), false);
    let bot = street.bot();
    let meter = street.meter("house-001", "");
    // Readings for a few intervals; the bot batches its acks (16 readings or 5 s), so some are
    // still unacknowledged when the meter is told to stop.
    std::thread::sleep(Duration::from_secs(6));

    let meter_out = meter.terminate();
    assert!(meter_out.status.success(), "meter: {:?}", meter_out.status);
    println!("meter: {}", String::from_utf8_lossy(&meter_out.stdout));
    let sent = count_after(&meter_out, "readings sent: ");
    assert!(sent >= 3, "{}", String::from_utf8_lossy(&meter_out.stdout));
    assert_eq!(count_after(&meter_out, "acknowledged "), sent);
    assert_printed(&meter_out, "unacknowledged at stop 0,");
    assert_eq!(accepted_by(bot), sent);

    let c2s = street.accounts["server"].as_str().unwrap().to_owned();
    let key_file = street.printed[0].clone();
    let Street { server, lines, .. } = street;
    let server_out = server.terminate();
    assert!(
        server_out.status.success(),
        "server: {:?}",
        server_out.status
    );
    assert!(
        lines.iter().any(|l| l == "stopping"),
        "gridmuc server did not stop cleanly"
    );
    assert!(
        !Path::new(&key_file).exists(),
        "{key_file} (the bot's secret key) left behind"
    );
    // Its Prosody went with it: nothing listens on the c2s port any more.
    assert!(
        TcpStream::connect(&c2s).is_err(),
        "something still listens on {c2s} after gridmuc server stopped"
    );
}

/// What a meter's outbox file holds, one string per item: a plain reading's id, or a private
/// report's bytes (base64).
fn saved_in(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Ok(saved) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let items = saved["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter_map(|item| item["id"].as_str().or(item.as_str()).map(str::to_owned))
        .collect()
}

/// Polls until `cond` holds, for at most `secs`.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {secs} s");
}

#[test]
fn a_meter_killed_outright_resends_what_its_outbox_file_held_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("house.outbox");
    let street = Street::start(tmp.path(), false);
    let keep = format!("outbox_file = {outbox:?}");
    // No bot yet: every direct reading bounces and stays unacknowledged.
    let held_ids = kill_holding(street.meter("house-001", &keep), &outbox, 3);
    let held = held_ids.len() as u64;
    println!("killed holding {held} readings");

    let bot = street.bot();
    // The bot in the room before the meter is back, so the first resend is not bounced.
    std::thread::sleep(Duration::from_secs(3));
    let meter = street.meter("house-001", &keep);
    wait_until(90, "the killed run's readings acknowledged", || {
        let now = saved_in(&outbox);
        held_ids.iter().all(|id| !now.contains(id))
    });
    let meter_out = meter.terminate();
    println!("meter: {}", String::from_utf8_lossy(&meter_out.stdout));
    assert!(meter_out.status.success(), "meter: {:?}", meter_out.status);
    let sent = count_after(&meter_out, "readings sent: ");
    assert!(count_after(&meter_out, "resent ") >= held);
    assert_eq!(count_after(&meter_out, "acknowledged "), sent + held);
    assert_printed(&meter_out, "unacknowledged at stop 0,");
    // What the killed run held was counted, once, with what the new run measured.
    assert_eq!(accepted_by(bot), sent + held);
}

#[test]
fn sigterm_ends_the_demo_early_with_its_summary_and_nothing_left_in_tmp() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Running(Some(
        Command::new(env!("CARGO_BIN_EXE_gridmuc"))
            .args([
                "demo",
                "--mode",
                "direct",
                "--houses",
                "6",
                "--minutes",
                "5",
            ])
            .args(["--interval", "1"])
            // The private server's directory goes here, so the test sees it is deleted.
            .env("TMPDIR", tmp.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let lines = lines_of(demo.child());
    let joined = lines.iter().any(|l| l.starts_with("substation joined"));
    if !joined {
        let out = demo.terminate();
        panic!(
            "the demo's bot never joined: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    let out = demo.terminate();
    let printed: Vec<String> = lines.iter().collect();
    let text = printed.join("\n");
    assert!(out.status.success(), "{:?}\n{text}", out.status);
    assert!(
        text.contains("Terminate: stopping the neighbourhood early"),
        "{text}"
    );
    let summary = printed
        .iter()
        .find(|l| l.starts_with("readings sent: "))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let numbers: Vec<u64> = summary
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // sent, ingested, rejected, resent, unacknowledged
    let [sent, ingested, rejected, _resent, unacked] = numbers[..] else {
        panic!("{summary}")
    };
    assert!(sent >= 8, "{summary}");
    assert_eq!((ingested, rejected, unacked), (sent, 0, 0), "{summary}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
fn a_private_meter_killed_outright_resends_its_saved_reports_and_nothing_counts_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("house.outbox");
    let street = Street::start(tmp.path(), true);
    let mut bot = street.bot();
    let bot_lines = lines_of(bot.child());
    let helper = street.helper();
    let keep = format!("outbox_file = {outbox:?}");
    let other = street.meter("house-002", "");
    // A report is kept until its interval is published: kill the meter while it keeps one.
    let held = kill_holding(street.meter("house-001", &keep), &outbox, 1);
    println!("killed keeping {} reports", held.len());
    let meter = street.meter("house-001", &keep);
    wait_until(60, "the killed run's reports settled", || {
        let now = saved_in(&outbox);
        held.iter().all(|r| !now.contains(r))
    });
    // A few more intervals under the new run.
    std::thread::sleep(Duration::from_secs(5));
    let out = meter.terminate();
    let stats = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("restarted meter: {stats}");
    assert!(out.status.success(), "{stats}");
    let resent = stats
        .split("resent: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no resent count in {stats}"));
    assert!(resent >= held.len(), "{stats}");
    assert!(other.terminate().status.success());
    assert!(helper.terminate().status.success());
    assert!(bot.terminate().status.success());
    // Two houses: no interval ever counted three, the restored copy included.
    let published: Vec<String> = bot_lines
        .iter()
        .filter(|l| l.contains(" meters, total "))
        .collect();
    assert!(published.len() >= 3, "{published:?}");
    for line in &published {
        let meters: u64 = line
            .split(": ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!((1..=2).contains(&meters), "{line}");
    }
}
