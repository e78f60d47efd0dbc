//! XEP-0323 readout against a third-party peer: slixmpp's `xep_0323` plugin (Debian's
//! `python3-slixmpp`, which `scripts/setup` installs) on the private Prosody. A slixmpp client
//! asks a gridmuc meter for a readout through the room; a slixmpp device that only answers
//! requests is polled by our bot and counted in its totals.

#![allow(clippy::unwrap_used)]

use gridmuc_core::{AggregatorConfig, RoomNick, Watts};
use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig};
use gridmuc_xmpp::bot::{BotConfig, BotEvent, ReadoutPoll, run_bot};
use gridmuc_xmpp::meter::{MeterConfig, MeterEvent, Mode, run_meter};
use gridmuc_xmpp::source::SourceConfig;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[path = "../../../tests/common/mod.rs"]
mod common;
use common::{PASSWORD, TestServer, runtime, stopped, users};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/xep0323_peer.py");
/// Debian's interpreter, where `python3-slixmpp` lives (a pyenv on PATH would not have it).
const PYTHON: &str = "/usr/bin/python3";

/// The peer script with the login arguments for `user` in `room` under `nick`.
fn peer(
    server: &PrivateServer,
    mode: &str,
    user: &str,
    room: &str,
    nick: &str,
    arg: &str,
) -> Command {
    let addr = server.c2s_addr();
    let mut c = Command::new(PYTHON);
    c.arg(PEER)
        .arg(mode)
        .arg(format!("{user}@{}", server.domain()))
        .arg(PASSWORD)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(server.ca_cert_path())
        .args([room, nick, arg]);
    c
}

/// Kills the peer however the test ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_slixmpp_client_reads_a_gridmuc_meter_through_the_room() {
    let TestServer { server, room } = TestServer::start(
        ServerConfig::default(),
        &users(&["asker"], 1),
        &RoomPolicy::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("house.csv");
    let rows: String = (0..600).map(|i| format!("{i},1234\n")).collect();
    std::fs::write(&csv, rows).unwrap();
    let rt = runtime();
    let (answer, report, nick) = rt.block_on(async {
        let mut m = MeterConfig::new(
            common::account(&server, "house0", Duration::from_secs(10)),
            &room,
        );
        // Broadcast mode: readout is on by default, as every occupant sees the readings anyway.
        m.mode = Mode::Broadcast;
        m.interval = Duration::from_secs(1);
        m.rotate = [3600.0, 3600.0];
        m.source = SourceConfig::Csv { path: csv.clone() };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let meter = tokio::spawn(run_meter(m, Some(tx), stopped(stop_rx)));
        // Its nickname (a test may know it; nobody else is told), and a first measured interval.
        let mut nick = None;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
        {
            match e {
                MeterEvent::Joined(n) => nick = Some(n),
                MeterEvent::Sent { .. } if nick.is_some() => break,
                _ => {}
            }
        }
        let nick: RoomNick = nick.unwrap();
        let out = tokio::task::spawn_blocking({
            let mut c = peer(&server, "ask", "asker", &room, "asker", nick.as_str());
            move || c.output().unwrap()
        })
        .await
        .unwrap();
        stop_tx.send(true).unwrap();
        let report = meter.await.unwrap().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (answer, report, nick)
    });
    // disco#info on the occupant JID: the feature, and nothing about the account.
    let features = answer["features"].as_array().unwrap();
    assert!(
        features.contains(&"urn:xmpp:iot:sensordata".into()),
        "{answer}"
    );
    let momentary = answer["momentary"].as_array().unwrap();
    let results: Vec<&str> = momentary
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["accepted", "fields", "done"], "{answer}");
    let fields = &momentary[1];
    assert_eq!(fields["node"], "meter", "{answer}");
    let values = fields["fields"].as_array().unwrap();
    let power = values.iter().find(|f| f["name"] == "Power").unwrap();
    assert_eq!(
        (power["value"].as_str(), power["unit"].as_str()),
        (Some("1230"), Some("W"))
    );
    let energy = values.iter().find(|f| f["name"] == "Energy").unwrap();
    assert_eq!(energy["unit"], "kWh", "{answer}");
    let kwh: f64 = energy["value"].as_str().unwrap().parse().unwrap();
    // At most a minute of 1,230 W under this nickname (one-second intervals): under 21 Wh.
    assert!((0.0..0.021).contains(&kwh), "{answer}");
    // The reply came from the occupant JID, never the account.
    assert!(
        fields["from"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{nick}")),
        "{answer}"
    );
    assert!(!answer.to_string().contains("house0"), "{answer}");
    // A historical readout is refused cleanly.
    let historical = answer["historical"].as_array().unwrap();
    assert_eq!(historical[0]["result"], "rejected", "{answer}");
    assert_eq!(
        historical[0]["error"],
        "only momentary values are available"
    );
    assert!(report.sent >= 1, "{report:?}");
}

#[test]
fn our_bot_polls_a_slixmpp_device_and_counts_it_in_the_totals() {
    const DEVICE_WATTS: i64 = 640;
    let TestServer { server, room } = TestServer::start(
        ServerConfig::default(),
        &users(&["bot", "plug"], 0),
        &RoomPolicy::default(),
    );
    let mut device = peer(
        &server,
        "device",
        "plug",
        &room,
        "pv-plug",
        &DEVICE_WATTS.to_string(),
    );
    let mut device = Peer(
        device
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(device.0.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let rt = runtime();
    let summaries = rt.block_on(async {
        let mut bot = BotConfig::new(
            common::account(&server, "bot", Duration::from_secs(10)),
            &room,
        );
        bot.aggregator = AggregatorConfig {
            interval: 1_000,
            grace: 500,
            ..AggregatorConfig::default()
        };
        bot.readout = Some(ReadoutPoll {
            poll: Duration::from_secs(1),
            devices: vec!["pv-plug".into()],
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bot = tokio::spawn(run_bot(bot, Some(tx), stopped(stop_rx)));
        let mut summaries = Vec::new();
        while summaries.iter().filter(|(m, _)| *m == 1).count() < 3 {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(BotEvent::Summary { stats, .. })) => {
                    summaries.push((stats.meters, stats.total))
                }
                Ok(Some(_)) => {}
                other => panic!("no polled reading: {other:?} after {summaries:?}"),
            }
        }
        stop_tx.send(true).unwrap();
        bot.await.unwrap().unwrap();
        summaries
    });
    let _ = device.0.stdin.as_mut().unwrap().write_all(b"");
    let counted: Vec<Watts> = summaries
        .iter()
        .filter(|(m, _)| *m == 1)
        .map(|(_, t)| *t)
        .collect();
    assert!(counted.len() >= 3, "{summaries:?}");
    assert!(
        counted.iter().all(|t| *t == Watts(DEVICE_WATTS)),
        "{summaries:?}"
    );
}
