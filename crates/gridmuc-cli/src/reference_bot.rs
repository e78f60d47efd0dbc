//! `gridmuc loadtest --reference slixmpp`: a minimal Python bot on slixmpp in the same room,
//! taking the same broadcast readings, so our bot's CPU per reading is compared with the
//! field's Python library in one run on one machine (the ratio is what survives a noisy one).

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The script, carried in the binary so `gridmuc loadtest` runs from any directory.
const SCRIPT: &str = include_str!("reference_bot.py");
/// Debian's interpreter, where `python3-slixmpp` lives (a pyenv on PATH would not have it).
const PYTHON: &str = "/usr/bin/python3";
/// How long logging in and joining may take.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a count may take to come back.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Where the reference bot logs in and what it joins.
pub struct Login<'a> {
    /// Its account's bare JID.
    pub jid: &'a str,
    /// The account's password (passed on its command line: a throwaway load-test account).
    pub password: &'a str,
    /// The server's client port.
    pub addr: SocketAddr,
    /// The test CA's certificate.
    pub ca_pem: &'a str,
    /// The room's bare JID.
    pub room: &'a str,
    /// Its nickname.
    pub nick: &'a str,
}

/// The running reference bot; killed when dropped.
pub struct ReferenceBot {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Its `/proc/<pid>/stat`, for its CPU ticks.
    pub stat: String,
    /// Holds the script and the CA file for as long as it runs.
    _dir: tempfile::TempDir,
}

impl ReferenceBot {
    /// Starts it and waits until it is in the room.
    pub fn start(login: &Login) -> anyhow::Result<ReferenceBot> {
        let dir = tempfile::tempdir().context("a directory for the reference bot")?;
        let script = dir.path().join("reference_bot.py");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&script, SCRIPT).context("writing the reference bot")?;
        std::fs::write(&ca, login.ca_pem).context("writing the test CA")?;
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .args([login.jid, login.password, &login.addr.ip().to_string()])
            .arg(login.addr.port().to_string())
            .arg(&ca)
            .args([login.room, login.nick])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!("starting {PYTHON} (install Debian's python3-slixmpp: scripts/setup)")
            })?;
        let stdout = child.stdout.take().context("the reference bot's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stat = format!("/proc/{}/stat", child.id());
        let stdin = child.stdin.take();
        let bot = ReferenceBot {
            child,
            stdin,
            lines,
            stat,
            _dir: dir,
        };
        match bot.lines.recv_timeout(READY_WITHIN) {
            Ok(line) if line == "ready" => Ok(bot),
            Ok(other) => bail!("the reference bot said {other:?} instead of ready"),
            Err(_) => bail!(
                "the reference bot did not join within {READY_WITHIN:?} (its errors are above)"
            ),
        }
    }

    /// Readings it has taken so far.
    pub fn readings(&mut self) -> anyhow::Result<u64> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the reference bot was stopped")?;
        writeln!(stdin, "count").context("asking the reference bot")?;
        stdin.flush().context("asking the reference bot")?;
        let line = self
            .lines
            .recv_timeout(ANSWER_WITHIN)
            .context("the reference bot did not answer")?;
        line.strip_prefix("readings ")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("the reference bot answered {line:?}"))
    }
}

impl Drop for ReferenceBot {
    fn drop(&mut self) {
        // Closing stdin stops it cleanly; kill what is left.
        drop(self.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(300));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
