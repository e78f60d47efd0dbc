//! The live neighbourhood page in headless Chromium (Debian's `chromium`, which `scripts/setup`
//! installs), driven over the DevTools protocol: a whole demo, in private mode (the default)
//! and in direct mode, serves the page from its Prosody, the page joins the room anonymously
//! over the websocket, and its DOM must show the intervals and the alert the bot posted, and
//! no account's JID. Screenshots land in the test's target directory: `live-page-<mode>.png`
//! once three intervals and an alert are drawn, `live-page-<mode>-end.png` when the demo has
//! ended (the private one copied where `GRIDMUC_LIVE_PAGE_PNG` says; `docs/live-page.png` was
//! made so).

#![allow(clippy::unwrap_used)]

use base64::Engine;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Generous bounds for a loaded 2-core machine; the test waits for events, never for time.
const START_BOUND: Duration = Duration::from_secs(120);
const RUN_BOUND: Duration = Duration::from_secs(360);

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `child`'s pipe line by line on a thread: every line is kept, and each is also sent.
fn lines(
    pipe: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, mpsc::Receiver<String>) {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let store = kept.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            store.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (kept, rx)
}

/// The first line from `rx` containing `marker`, within `bound`.
fn wait_for_line(rx: &mpsc::Receiver<String>, marker: &str, bound: Duration) -> String {
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {marker:?}: {e}"),
        }
    }
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect(
            "chromium is not installed: scripts/setup installs it (apt-get install -y chromium)",
        )
}

/// A DevTools protocol session on one page of a headless Chromium.
struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    session: Option<String>,
}

impl Cdp {
    /// Calls `method` and answers its result, skipping the events that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.ws.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page of the browser at `browser_ws` and attaches to it.
    fn open(browser_ws: &str, url: &str) -> Cdp {
        let (ws, _) = tungstenite::connect(browser_ws).unwrap();
        let mut cdp = Cdp {
            ws,
            next: 0,
            session: None,
        };
        let target = cdp.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = cdp.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        cdp.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 1150, "deviceScaleFactor": 1, "mobile": false }),
        );
        cdp.call("Page.navigate", json!({ "url": url }));
        cdp
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

/// What the test reads from the page: its DOM, and what `app.js` keeps in `window.gridmuc`.
const READ_PAGE: &str = r#"JSON.stringify({
  status: window.gridmuc ? window.gridmuc.status : null,
  drawn: window.gridmuc ? window.gridmuc.drawn : 0,
  rows: [...document.querySelectorAll('#intervals tbody tr')].map(tr => ({...tr.dataset})),
  alerts: [...document.querySelectorAll('#alerts li[data-kind]')].map(li => ({...li.dataset})),
  mode: document.getElementById('mode').textContent,
  meters: document.getElementById('meters').textContent,
  age: document.getElementById('age').textContent,
  canvases: document.querySelectorAll('.uplot canvas').length,
  stanzas: window.gridmuc ? window.gridmuc.stanzas : [],
})"#;

fn read_page(cdp: &mut Cdp) -> Value {
    match cdp.eval(READ_PAGE).as_str() {
        Some(text) => serde_json::from_str(text).unwrap(),
        None => Value::Null,
    }
}

/// `(meters, total as printed)` of the last console line for the interval starting at `start`:
/// `interval <start>[ (revision n: …)]: N meters, total X kW, …` (the page shows the newest).
fn printed_interval(stdout: &[String], start: &str) -> Option<(String, String)> {
    let prefix = format!("interval {start}");
    let line = stdout.iter().rev().find(|l| {
        l.strip_prefix(&prefix)
            .is_some_and(|rest| rest.starts_with(": ") || rest.starts_with(" (revision "))
    })?;
    let before_meters = &line[..line.find(" meters,")?];
    let meters = before_meters.rsplit(' ').next()?.to_owned();
    let total = line
        .split(" total ")
        .nth(1)?
        .split(" kW")
        .next()?
        .to_owned();
    Some((meters, total))
}

/// The live tests run one neighbourhood at a time: two demos and two browsers at once would
/// only slow each other down on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn the_live_page_draws_the_leaders_intervals_and_alerts_and_sees_no_jid() {
    page_run("private", "private");
}

#[test]
fn the_live_page_draws_the_plain_bots_intervals_in_direct_mode_and_sees_no_jid() {
    page_run("direct", "pseudonymous");
}

/// Runs a demo in `mode` with the page open, then checks what the page drew against what the
/// bot printed; its summaries must say `summary_mode`.
fn page_run(mode: &str, summary_mode: &str) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cwd = tempfile::tempdir().unwrap();
    let mut demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_gridmuc"))
            .args([
                "demo",
                "--mode",
                mode,
                "--houses",
                "8",
                "--minutes",
                "1.5",
                "--interval",
                "2",
            ])
            .current_dir(cwd.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (stdout, stdout_rx) = lines(demo.0.stdout.take().unwrap());
    let url_line = wait_for_line(&stdout_rx, "live page: ", START_BOUND);
    let url = url_line
        .split("live page: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let profile = tempfile::tempdir().unwrap();
    let mut browser = Killed(
        Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (_, chrome_rx) = lines(browser.0.stderr.take().unwrap());
    let listening = wait_for_line(&chrome_rx, "DevTools listening on ", START_BOUND);
    let browser_ws = listening
        .split("DevTools listening on ")
        .nth(1)
        .unwrap()
        .trim();
    let mut cdp = Cdp::open(browser_ws, &url);

    // Until three intervals are drawn and an alert was raised (the staged spike at 30–45 % or
    // overload at 60–80 % of the run); once the demo has stopped nothing more can arrive.
    let deadline = Instant::now() + RUN_BOUND;
    let live = loop {
        let page = read_page(&mut cdp);
        let drawn = page["drawn"].as_u64().unwrap_or(0);
        let raised = page["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["state"] == "raised"));
        let demo_done = demo.0.try_wait().unwrap().is_some();
        if (drawn >= 3 && raised) || demo_done || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    cdp.screenshot(&dir.join(format!("live-page-{mode}.png")));
    assert!(live["drawn"].as_u64().unwrap() >= 3, "{live}");
    assert_eq!(live["status"], "online", "{live}");
    assert!(live["age"].as_str().unwrap().ends_with(" s ago"), "{live}");

    // The demo runs to its end and prints its summary; the page keeps what it drew.
    let deadline = Instant::now() + RUN_BOUND;
    while demo.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(demo.0.wait().unwrap().success());
    let page = read_page(&mut cdp);
    let shot = dir.join(format!("live-page-{mode}-end.png"));
    cdp.screenshot(&shot);
    if let (Some(copy), "private") = (std::env::var_os("GRIDMUC_LIVE_PAGE_PNG"), mode) {
        std::fs::copy(&shot, copy).unwrap();
    }
    eprintln!("screenshots: {}", dir.join("live-page*.png").display());
    drop(browser);
    // The reader thread takes the demo's last lines once its pipe closes.
    std::thread::sleep(Duration::from_millis(200));
    let stdout = stdout.lock().unwrap().clone();
    let printed = stdout.join("\n");
    // "reports sent:" (private) or "readings sent:" (direct): the demo's summary.
    assert!(printed.contains(" sent: "), "{printed}");

    // At least three intervals drawn, each with the count and total the leader posted.
    let drawn = page["drawn"].as_u64().unwrap();
    let rows = page["rows"].as_array().unwrap();
    assert!(
        drawn >= 3,
        "only {drawn} intervals drawn: {page}\n{printed}"
    );
    assert_eq!(rows.len() as u64, drawn, "one table row per drawn interval");
    assert_eq!(page["canvases"].as_u64(), Some(2), "two uPlot charts");
    for row in rows {
        let start = row["start"].as_str().unwrap();
        let (meters, total) = printed_interval(&stdout, start).unwrap_or_else(|| {
            panic!("the page shows interval {start}, the bot never posted it:\n{printed}")
        });
        assert_eq!(row["meters"].as_str(), Some(meters.as_str()), "{start}");
        let watts: f64 = row["total"].as_str().unwrap().parse().unwrap();
        assert_eq!(format!("{:.2}", watts / 1000.0), total, "{start}");
        assert_eq!(row["mode"], summary_mode);
        assert_eq!(row["rating"], "24000", "8 houses × 3 kW");
    }
    assert_eq!(page["mode"], summary_mode);
    assert_eq!(
        page["meters"], rows[0]["meters"],
        "the newest interval's count"
    );

    // The alert raised in the run, listed with the time the leader announced it at.
    let alerts = page["alerts"].as_array().unwrap();
    let raised: Vec<&Value> = alerts.iter().filter(|a| a["state"] == "raised").collect();
    assert!(
        !raised.is_empty(),
        "no alert on the page: {page}\n{printed}"
    );
    for a in alerts {
        let at = a["at"].as_str().unwrap();
        assert!(
            stdout.iter().any(|l| l.contains("ALERT") && l.contains(at)),
            "the page lists an alert at {at} that the bot never raised:\n{printed}"
        );
        // A house's own alert goes privately to its nickname, never to the room.
        assert_ne!(a["kind"], "house-spike", "{a}");
    }

    // What the page received is what any occupant gets: nicknames, never an account's JID
    // (accounts live on grid.test; the room on rooms.grid.test, the page on watch.grid.test).
    let stanzas = page["stanzas"].as_array().unwrap();
    let summaries = stanzas
        .iter()
        .filter(|s| s.as_str().unwrap().contains("urn:gridmuc:summary:0"))
        .count();
    assert!(summaries >= 3, "{summaries} summaries received");
    for s in stanzas {
        let s = s.as_str().unwrap();
        assert!(
            !s.contains("@grid.test"),
            "an account's JID reached the page: {s}"
        );
        let house_account = s
            .match_indices("house")
            .any(|(i, _)| s.as_bytes().get(i + 5).is_some_and(u8::is_ascii_digit));
        assert!(
            !house_account,
            "a house's account name reached the page: {s}"
        );
    }
}
