//! Load behaviour against the real private Prosody: a broadcast flood loses nothing, and the
//! bot's `/metrics` counts what it ingested and refused.

// Tests may unwrap (house rule); helpers outside `#[test]` fns need saying so.
#![allow(clippy::unwrap_used)]

use gridmuc_core::{AggregatorConfig, RoomNick, Watts};
use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig};
use gridmuc_xmpp::bot::{BotConfig, BotEvent, BotReport, run_bot};
use gridmuc_xmpp::connect::ConnectConfig;
use gridmuc_xmpp::meter::{MeterConfig, MeterEvent, MeterReport, Mode, run_meter};
use gridmuc_xmpp::source::SourceConfig;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

#[path = "../../../tests/common/mod.rs"]
mod common;
mod promtool;
use common::{TestServer, runtime, stopped, users};

/// A private server (default config: STARTTLS, XEP-0198 on) with a room and `houses` accounts.
struct Hood {
    server: PrivateServer,
    room: String,
}

impl Hood {
    fn new(houses: usize) -> Hood {
        let users = users(&["bot"], houses);
        let TestServer { server, room } =
            TestServer::start(ServerConfig::default(), &users, &RoomPolicy::default());
        Hood { server, room }
    }

    fn account(&self, user: &str) -> ConnectConfig {
        common::account(&self.server, user, Duration::from_secs(20))
    }

    fn bot(&self) -> BotConfig {
        let mut cfg = BotConfig::new(self.account("bot"), &self.room);
        cfg.aggregator = AggregatorConfig {
            interval: 1_000,
            // The production default. In broadcast mode a reading can wait behind every other
            // meter's in-flight reading, n² deliveries: 50² / 5 s = 500 deliveries/s is the
            // slowest server this still covers (a starved debug run here managed ~2,000).
            grace: 5_000,
            // Flooding meters send up to 20 a second; the per-nickname limit is not under test.
            max_readings_per_interval: 25,
            ..AggregatorConfig::default()
        };
        cfg.aggregator.overload.rating = Watts(10_000_000);
        cfg
    }

    fn meter(&self, house: usize, mode: Mode, interval: Duration) -> MeterConfig {
        let mut cfg = MeterConfig::new(self.account(&format!("house{house}")), &self.room);
        cfg.mode = mode;
        cfg.interval = interval;
        cfg.jitter = [0.0, 0.9];
        cfg.rotate = [1e6, 1e6];
        cfg
    }
}

/// The bot's outcome, from its own thread.
type BotOutcome = tokio::sync::oneshot::Receiver<Result<BotReport, gridmuc_xmpp::BotError>>;

/// Starts the bot on its own thread and runtime (it is its own process in real life, not one
/// more task among 50 meters) and waits until it is in the room.
async fn start_bot(cfg: BotConfig) -> (watch::Sender<bool>, BotOutcome) {
    let (stop, stop_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (done, outcome) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || {
        let _ = done.send(rt.block_on(run_bot(cfg, Some(tx), stopped(stop_rx))));
    });
    match rx.recv().await {
        Some(BotEvent::Joined(_)) => {}
        other => panic!("bot did not join: {other:?} / {:?}", outcome.await),
    }
    (stop, outcome)
}

/// The live tests here each start 50-odd sessions; run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the meters until all joined and then until `until`, stops them and returns their reports and nicknames.
async fn run_meters(
    meters: Vec<MeterConfig>,
    until: tokio::time::Instant,
) -> (Vec<MeterReport>, Vec<RoomNick>, std::time::SystemTime) {
    let n = meters.len();
    let (stop, stop_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for m in meters {
        tasks.push(tokio::spawn(run_meter(
            m,
            Some(tx.clone()),
            stopped(stop_rx.clone()),
        )));
        // Logins spread out a little, as real houses would be.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tx);
    let mut nicks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while nicks.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(MeterEvent::Joined(nick))) => nicks.push(nick),
            Ok(Some(_)) => {}
            _ => {
                stop.send(true).unwrap();
                let mut errors = Vec::new();
                for t in tasks {
                    if let Err(e) = t.await.unwrap() {
                        errors.push(e.to_string());
                    }
                }
                panic!("only {} of {n} meters joined: {errors:?}", nicks.len());
            }
        }
    }
    let joined = std::time::SystemTime::now();
    tokio::time::sleep_until(until).await;
    stop.send(true).unwrap();
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await.unwrap().unwrap());
    }
    (reports, nicks, joined)
}

/// 50 meters each try to broadcast 20 readings a second to a room of 51 occupants (51,000
/// deliveries a second offered, far beyond one Prosody core). Before pacing, the server's queues
/// grew until readings reached the bot after their interval had closed. Now every meter waits
/// for the room's echo of its previous reading, so the flood is throttled to what the room
/// carries and every reading sent is ingested.
#[test]
fn broadcast_flood_of_50_meters_is_paced_and_the_bot_ingests_every_reading() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let hood = Hood::new(50);
    // Everyone in the room first, then the burst starts together: a flood that starts while
    // houses are still logging in starves their TLS and SASL round trips (seen here: 4 of 50
    // probe logins timed out after 20 s).
    let burst = std::time::SystemTime::now() + Duration::from_secs(12);
    let meters: Vec<MeterConfig> = (0..50)
        .map(|i| {
            let mut m = hood.meter(i, Mode::Broadcast, Duration::from_millis(50));
            m.not_before = Some(burst);
            m
        })
        .collect();
    let rt = runtime();
    let registry = std::sync::Arc::new(gridmuc_xmpp::metrics::Metrics::new());
    let mut bot = hood.bot();
    bot.registry = Some(registry.clone());
    // A 10-s interval (production uses 60 s) holds 200 flood readings per nickname; a reading
    // counts unless it arrives more than interval end + 5 s grace after its timestamp.
    bot.aggregator.interval = 10_000;
    bot.aggregator.max_readings_per_interval = 250;
    let (report, meters) = rt.block_on(async {
        let (stop_bot, bot) = start_bot(bot).await;
        let to_burst = burst.duration_since(std::time::SystemTime::now()).unwrap();
        // Burst for 6 s.
        let until = tokio::time::Instant::now() + to_burst + Duration::from_secs(6);
        let (meters, _, joined) = run_meters(meters, until).await;
        assert!(
            joined < burst,
            "the ramp took longer than {:?}",
            started.elapsed()
        );
        // At most one reading per meter is still in flight: give it time to land.
        let sent: u64 = meters.iter().map(|r| r.sent).sum();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while registry.accepted() + registry.rejected_total() < sent
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop_bot.send(true).unwrap();
        (bot.await.unwrap().unwrap(), meters)
    });
    let sent: u64 = meters.iter().map(|r| r.sent).sum();
    let paced: u64 = meters.iter().map(|r| r.paced).sum();
    let timeouts: u64 = meters.iter().map(|r| r.echo_timeouts).sum();
    eprintln!(
        "flood: sent {sent}, ingested {}, paced {paced}, echo timeouts {timeouts}, {:.1} s",
        report.counters.accepted,
        started.elapsed().as_secs_f64()
    );
    // The flood was real: the meters wanted to send far more than the room carried …
    assert!(paced > sent, "paced {paced} vs sent {sent}");
    // … every meter still got readings through …
    assert!(
        meters.iter().all(|r| r.sent >= 1),
        "{:?}",
        meters.iter().map(|r| r.sent).collect::<Vec<_>>()
    );
    // … and nothing sent was lost or refused.
    assert_eq!(timeouts, 0);
    assert_eq!(
        report.counters.rejected.total(),
        0,
        "{}",
        report.counters.rejected
    );
    assert_eq!(report.counters.accepted, sent);
}

/// A free loopback port for the metrics listener.
/// Direct readings are acknowledged cumulatively (wire format v2): 20 meters sending one
/// reading a second get one signed ack per nickname every 5 s or so instead of one per reading,
/// so Prosody routes about 1.2 stanzas per reading instead of 2, and nothing is lost.
#[test]
fn direct_readings_are_acknowledged_with_far_fewer_acks_than_readings() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hood = Hood::new(20);
    let meters: Vec<MeterConfig> = (0..20)
        .map(|i| hood.meter(i, Mode::Direct, Duration::from_secs(1)))
        .collect();
    let rt = runtime();
    let mut bot = hood.bot();
    bot.post_summaries = false;
    let (report, meters) = rt.block_on(async {
        let (stop_bot, bot) = start_bot(bot).await;
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        let (meters, _, _) = run_meters(meters, until).await;
        stop_bot.send(true).unwrap();
        (bot.await.unwrap().unwrap(), meters)
    });
    let sent: u64 = meters.iter().map(|r| r.sent).sum();
    let acks: u64 = meters.iter().map(|r| r.acks).sum();
    eprintln!("direct: {sent} readings, {acks} acks");
    assert!(sent >= 20 * 10, "{sent}");
    for m in &meters {
        assert_eq!(
            (m.acknowledged, m.resent, m.unacknowledged),
            (m.sent, 0, 0),
            "{m:?}"
        );
    }
    assert_eq!(report.counters.accepted, sent);
    // One ack per 5 s and nickname, plus the one each meter asks for when it stops.
    assert!(acks * 3 <= sent, "{acks} acks for {sent} readings");
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    // hyper keeps HTTP/1.1 connections open unless asked not to; we read to the end.
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .parse()
        .unwrap()
}

/// Three honest meters and one whose every reading is beyond the 25-kW physical limit; the
/// scrape must agree with the bot's own counters and name no house.
#[test]
fn metrics_endpoint_counts_readings_rejections_and_reading_age() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hood = Hood::new(4);
    let dir = tempfile_dir();
    let csv = |watts: i64| {
        let path = dir.join(format!("{watts}.csv"));
        let rows: String = (0..60).map(|i| format!("{i},{watts}\n")).collect();
        std::fs::write(&path, format!("t,w\n{rows}")).unwrap();
        path
    };
    let (honest, hostile) = (csv(1_500), csv(30_000));
    let meters: Vec<MeterConfig> = (0..4)
        .map(|i| {
            let mut m = hood.meter(i, Mode::Direct, Duration::from_secs(1));
            let path = if i == 3 { &hostile } else { &honest };
            m.source = SourceConfig::Csv { path: path.clone() };
            m
        })
        .collect();
    let addr = free_port();
    let mut bot = hood.bot();
    bot.metrics = Some(addr);
    // Short, so the scrape 4 s after the meters stop sees every interval closed.
    bot.aggregator.grace = 500;
    let rt = runtime();
    let (report, meters, nicks, (head, body)) = rt.block_on(async {
        let (stop_bot, bot) = start_bot(bot).await;
        // Includes the logins, which take seconds on a busy machine.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let (meters, nicks, _) = run_meters(meters, until).await;
        // Past the last interval's end and grace, so every accepted reading is in a closed interval.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let scraped = tokio::task::spawn_blocking(move || scrape(addr, "/metrics"))
            .await
            .unwrap();
        assert!(
            scrape_status(addr, "/").starts_with("HTTP/1.1 404"),
            "unknown paths are 404"
        );
        stop_bot.send(true).unwrap();
        (bot.await.unwrap().unwrap(), meters, nicks, scraped)
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let honest_sent: u64 = meters[..3].iter().map(|r| r.sent).sum();
    let hostile_sent = meters[3].sent;
    // Enough of each to count; how many depends on how fast the logins were.
    assert!(honest_sent >= 6 && hostile_sent >= 2, "{meters:?}");
    // The scrape came before the final flush, which adds nothing new: the counts are final.
    let c = &report.counters;
    assert_eq!(c.accepted, honest_sent);
    assert_eq!(
        value(&body, "gridmuc_readings_accepted_total"),
        honest_sent as f64
    );
    assert_eq!(
        value(
            &body,
            "gridmuc_readings_rejected_total{reason=\"over_limit\"}"
        ),
        hostile_sent as f64
    );
    assert_eq!(c.rejected.get("over_limit"), hostile_sent);
    assert_eq!(
        value(&body, "gridmuc_readings_rejected_total{reason=\"nan\"}"),
        0.0
    );
    assert_eq!(
        value(&body, "gridmuc_reading_age_seconds_count"),
        honest_sent as f64
    );
    // Readings are stamped with their interval's start and sent within it (jitter ≤ 0.9 s).
    assert_eq!(
        value(&body, "gridmuc_reading_age_seconds_bucket{le=\"2.5\"}"),
        honest_sent as f64
    );
    let intervals = value(&body, "gridmuc_intervals_total");
    assert!(intervals >= 3.0, "{intervals}");
    assert!(
        value(
            &body,
            "gridmuc_alerts_total{kind=\"overload\",state=\"raised\"}"
        ) == 0.0
    );
    for nick in &nicks {
        assert!(!body.contains(nick.as_str()), "nickname {nick} in metrics");
    }
    for i in 0..4 {
        assert!(!body.contains(&format!("house{i}@")), "house{i} in metrics");
    }
    assert!(!body.contains(hood.server.domain()), "a JID in metrics");
    // The last closed interval may be one after the meters stopped, with no one in it.
    let meters_last = value(&body, "gridmuc_interval_meters");
    assert!(meters_last <= 3.0, "{meters_last}");
    assert_eq!(
        value(&body, "gridmuc_interval_load_watts"),
        1_500.0 * meters_last
    );
    assert_eq!(value(&body, "gridmuc_rating_watts"), 10_000_000.0);
    promtool::check_exposition(&body);
}

fn scrape_status(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gridmuc-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
