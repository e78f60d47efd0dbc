//! Private mode on the private Prosody: the leader (substation bot), the helper bot and real
//! meters over TLS. Every published interval must hold exactly what the houses sent (count,
//! total, histogram), the house-spike count must reach exactly the spiking house, and neither
//! an impostor holding the leader's nickname nor one account behind many nicknames may change
//! a published figure.

// Tests may unwrap (house rule); helpers outside `#[test]` fns need saying so.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::AggregatorConfig;
use gridmuc_core::Watts;
use gridmuc_private::{IntervalResult, PrivateConfig, Refusals};
use gridmuc_server::raw::RawXmpp;
use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig};
use gridmuc_xmpp::bot::BotConfig;
use gridmuc_xmpp::connect::ConnectConfig;
use gridmuc_xmpp::meter::MeterConfig;
use gridmuc_xmpp::private::{
    HelperBotConfig, HelperEvent, LeaderEvent, NS_PRIVATE, PrivateError, PrivateMeterEvent,
    PrivateMeterStats, PrivateSettings, run_helper, run_leader, run_private_meter,
};
use gridmuc_xmpp::source::SourceConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[path = "../../../tests/common/mod.rs"]
mod common;
use common::{PASSWORD, TestServer, runtime, stopped, users};

const INTERVAL_MS: i64 = 2_000;

/// A room, both bots' keys and the settings every party shares.
struct Hood {
    server: PrivateServer,
    room: String,
    leader_key: Arc<BotSecretKey>,
    helper_key: Arc<BotSecretKey>,
    settings: PrivateSettings,
    task: PrivateConfig,
    dir: tempfile::TempDir,
}

impl Hood {
    fn new(houses: usize, reserve_bot_nicks: bool) -> Hood {
        // Plaintext allowed so the raw hostile client can log in; every agent still uses STARTTLS.
        let cfg = ServerConfig {
            require_tls: false,
            extra_config: "allow_unencrypted_plain_auth = true".to_owned(),
            ..ServerConfig::default()
        };
        let policy = RoomPolicy {
            reserved_nicks: if reserve_bot_nicks {
                vec![
                    (format!("bot@{}", cfg.domain), "substation".to_owned()),
                    (format!("helper@{}", cfg.domain), "helper".to_owned()),
                ]
            } else {
                vec![]
            },
            ..RoomPolicy::default()
        };
        let users = users(&["bot", "helper", "mallory", "sybil", "op"], houses);
        let TestServer { server, room } = TestServer::start(cfg, &users, &policy);
        let mut rng = rand::rng();
        let leader_key = Arc::new(BotSecretKey::generate(&mut rng));
        let helper_key = Arc::new(BotSecretKey::generate(&mut rng));
        let mut settings = PrivateSettings::new(helper_key.public());
        settings.min_reports = 3;
        settings.spike_floor_kw = 10.0;
        let task = settings
            .task(&room, INTERVAL_MS, leader_key.public())
            .unwrap();
        Hood {
            server,
            room,
            leader_key,
            helper_key,
            settings,
            task,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn account(&self, user: &str) -> ConnectConfig {
        common::account(&self.server, user, Duration::from_secs(10))
    }

    fn leader(&self, rating_watts: i64) -> BotConfig {
        let mut cfg = BotConfig::new(self.account("bot"), &self.room);
        cfg.aggregator = AggregatorConfig {
            interval: INTERVAL_MS,
            grace: 1_500,
            ..AggregatorConfig::default()
        };
        cfg.aggregator.overload.rating = Watts(rating_watts);
        cfg.key = Some(self.leader_key.clone());
        cfg.operators = vec![format!("op@{}", self.server.domain())];
        cfg.private = Some(self.settings.clone());
        cfg
    }

    fn helper(&self) -> HelperBotConfig {
        let mut cfg = HelperBotConfig::new(
            self.account("helper"),
            &self.room,
            INTERVAL_MS,
            self.leader_key.public(),
            self.settings.clone(),
        );
        cfg.key = Some(self.helper_key.clone());
        cfg
    }

    /// A meter reading a constant `watts`.
    fn meter(&self, house: usize, watts: i64) -> MeterConfig {
        let mut cfg = MeterConfig::new(self.account(&format!("house{house}")), &self.room);
        cfg.interval = Duration::from_millis(INTERVAL_MS.unsigned_abs());
        cfg.jitter = [0.05, 0.4];
        cfg.bot_key = Some(self.leader_key.public());
        cfg.private = Some(self.settings.clone());
        let path = self.dir.path().join(format!("house{house}.csv"));
        let rows: String = (0..600).map(|i| format!("{i},{watts}\n")).collect();
        std::fs::write(&path, format!("timestamp,watts\n{rows}")).unwrap();
        cfg.source = SourceConfig::Csv { path };
        cfg
    }

    fn raw(&self, user: &str) -> RawXmpp {
        let mut c =
            RawXmpp::login(self.server.c2s_addr(), self.server.domain(), user, PASSWORD).unwrap();
        c.initial_presence().unwrap();
        c
    }
}

/// A valid report of `watts` for the current interval, as a PM to the leader's nickname.
fn forged_report(task: &PrivateConfig, room: &str, watts: u32) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let interval = u64::try_from(now / u128::from(INTERVAL_MS.unsigned_abs())).unwrap();
    let bytes = gridmuc_private::report(task, watts, interval, &mut rand::rng())
        .unwrap()
        .to_bytes();
    format!(
        "<message to='{room}/substation' type='chat'><private xmlns='{NS_PRIVATE}'>{}</private></message>",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// What a run produced: the leader's and the helper's events and refusals, the meters' stats
/// and every report the meters sent (interval → quantised watts).
struct Run {
    leader: Vec<LeaderEvent>,
    leader_refusals: Refusals,
    helper: Vec<HelperEvent>,
    meters: Vec<PrivateMeterStats>,
    meter_events: Vec<PrivateMeterEvent>,
}

impl Run {
    fn published(&self) -> Vec<&IntervalResult> {
        self.leader
            .iter()
            .filter_map(|e| match e {
                LeaderEvent::Interval { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }

    /// Interval → the quantised readings the meters sent for it.
    fn sent(&self) -> BTreeMap<u64, Vec<u32>> {
        let mut sent: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for e in &self.meter_events {
            if let PrivateMeterEvent::Sent {
                interval, watts, ..
            } = e
            {
                sent.entry(*interval).or_default().push(*watts);
            }
        }
        sent
    }
}

/// Runs the helper, the leader and `meters` for `intervals` intervals while `during` plays
/// (on a blocking thread, e.g. a hostile raw client), then stops everything.
async fn run(
    hood: &Hood,
    rating_watts: i64,
    meters: Vec<MeterConfig>,
    intervals: u32,
    during: impl FnOnce() + Send + 'static,
) -> Run {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (helper_tx, mut helper_rx) = mpsc::unbounded_channel();
    let helper = tokio::spawn(run_helper(
        hood.helper(),
        Some(helper_tx),
        stopped(stop_rx.clone()),
    ));
    let (leader_tx, mut leader_rx) = mpsc::unbounded_channel();
    let leader = tokio::spawn(run_leader(
        hood.leader(rating_watts),
        Some(leader_tx),
        stopped(stop_rx.clone()),
    ));
    let (meter_tx, mut meter_rx) = mpsc::unbounded_channel();
    let (stop_meters, meters_rx) = watch::channel(false);
    let tasks: Vec<_> = meters
        .into_iter()
        .map(|m| {
            tokio::spawn(run_private_meter(
                m,
                Some(meter_tx.clone()),
                stopped(meters_rx.clone()),
            ))
        })
        .collect();
    drop(meter_tx);
    let hostile = tokio::task::spawn_blocking(during);
    tokio::time::sleep(Duration::from_millis(
        INTERVAL_MS.unsigned_abs() * u64::from(intervals),
    ))
    .await;
    hostile.await.unwrap();
    stop_meters.send(true).unwrap();
    let mut meters = Vec::new();
    for t in tasks {
        meters.push(t.await.unwrap().unwrap());
    }
    // The last intervals are collected after their grace.
    tokio::time::sleep(Duration::from_millis(2 * INTERVAL_MS.unsigned_abs())).await;
    stop_tx.send(true).unwrap();
    let leader_refusals = leader.await.unwrap().unwrap();
    let _: Result<Refusals, PrivateError> = helper.await.unwrap();
    Run {
        leader: drain(&mut leader_rx),
        leader_refusals,
        helper: drain(&mut helper_rx),
        meters,
        meter_events: drain(&mut meter_rx),
    }
}

fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

/// Every published interval holds exactly what the meters sent for it.
fn assert_exact(run: &Run, task: &PrivateConfig) {
    let sent = run.sent();
    for r in run.published() {
        let mine = sent.get(&r.interval).cloned().unwrap_or_default();
        let mut histogram = vec![0u64; r.histogram.len()];
        for &w in &mine {
            histogram[task.bucket_of(w)] += 1;
        }
        let total: u64 = mine.iter().map(|&w| u64::from(w)).sum();
        assert_eq!(
            (r.reports, r.total_watts, &r.histogram),
            (mine.len() as u64, total, &histogram),
            "interval {}",
            r.interval
        );
    }
}

#[test]
fn fifty_private_houses_publish_exactly_what_they_sent() {
    let houses = 50;
    let hood = Hood::new(houses, true);
    // House 0 draws 15 kW: far above its peers (200 W … 2 kW).
    let watts = |h: usize| if h == 0 { 15_000 } else { 200 + 37 * h as i64 };
    let meters: Vec<_> = (0..houses).map(|h| hood.meter(h, watts(h))).collect();
    let rt = runtime();
    let run = rt.block_on(run(&hood, 1_000_000, meters, 10, || {}));
    assert_exact(&run, &hood.task);
    let full: Vec<_> = run
        .published()
        .into_iter()
        .filter(|r| r.reports == houses as u64)
        .collect();
    assert!(full.len() >= 4, "{} full intervals", full.len());
    let expected: u64 = (0..houses)
        .map(|h| u64::from(hood.task.quantise(watts(h) as u32).unwrap()))
        .sum();
    assert!(full.iter().all(|r| r.total_watts == expected));
    // The spike is counted in every full interval, and exactly the spiking house is told of
    // each interval whose notice reached the meters before they stopped.
    let spikes: BTreeMap<u64, u64> = run
        .leader
        .iter()
        .filter_map(|e| match e {
            LeaderEvent::Interval {
                spike: Some(s),
                result,
                ..
            } if s.reports > 0 => Some((result.interval, s.reports)),
            _ => None,
        })
        .collect();
    assert!(
        full.iter().all(|r| spikes.get(&r.interval) == Some(&1)),
        "{spikes:?}"
    );
    let heard: std::collections::BTreeSet<u64> = run
        .meter_events
        .iter()
        .filter_map(|e| match e {
            PrivateMeterEvent::Published { interval, .. } => Some(*interval),
            _ => None,
        })
        .collect();
    let told: Vec<(u64, u32)> = run
        .meter_events
        .iter()
        .filter_map(|e| match e {
            PrivateMeterEvent::HouseAbove {
                interval,
                reading_watts,
                ..
            } => Some((*interval, *reading_watts)),
            _ => None,
        })
        .collect();
    let expected_told: Vec<(u64, u32)> = spikes
        .keys()
        .filter(|i| heard.contains(i))
        .map(|&i| (i, 15_000))
        .collect();
    assert!(!expected_told.is_empty());
    assert_eq!(told, expected_told);
    assert_eq!(run.leader_refusals.total(), 0);
    let released = run
        .helper
        .iter()
        .filter(|e| matches!(e, HelperEvent::Released { .. }))
        .count();
    assert!(released >= full.len(), "the helper released {released}");
    let unverified: u64 = run.meters.iter().map(|m| m.unverified).sum();
    assert_eq!(unverified, 0);
}

#[test]
fn an_impostor_and_one_account_behind_many_nicknames_change_no_published_figure() {
    let houses = 6;
    // The bots' nicknames are not reserved here: mallory holds the leader's before it starts.
    let hood = Hood::new(houses, false);
    let meters: Vec<_> = (0..houses).map(|h| hood.meter(h, 500)).collect();
    let mut impostor = hood.raw("mallory");
    assert!(impostor.join(&hood.room, "substation").unwrap().is_joined());
    // Twenty sessions of one more account, each under its own nickname: the room keeps one
    // occupant per account, so at most one of them is in the room at any time.
    let sybils: Vec<RawXmpp> = (0..20)
        .map(|i| {
            let mut s = hood.raw("sybil");
            let _ = s.join(&hood.room, &format!("sybil-{i}")).unwrap();
            s
        })
        .collect();
    let (task, room) = (hood.task.clone(), hood.room.clone());
    let during = move || {
        // The impostor answers every report it gets with noise for three intervals, then
        // leaves; then the sybils send a valid 25-kW report each, every interval.
        let mut sybils = sybils;
        let until = std::time::Instant::now() + Duration::from_millis(3 * 2_000);
        while std::time::Instant::now() < until {
            let got = impostor
                .drain(Duration::from_millis(200))
                .unwrap_or_default();
            for from in got
                .split("from='")
                .skip(1)
                .filter_map(|s| s.split('\'').next())
            {
                if !from.starts_with(&format!("{room}/")) || from.ends_with("/substation") {
                    continue;
                }
                let _ = impostor.send(&format!(
                    "<message to='{from}' type='chat'><private xmlns='{NS_PRIVATE}'>AAAA</private></message>"
                ));
            }
            for s in &mut sybils {
                let _ = s.drain(Duration::from_millis(1));
            }
        }
        let _ = impostor.leave(&room, "substation");
        drop(impostor);
        for _ in 0..8 {
            for s in &mut sybils {
                let _ = s.send(&forged_report(&task, &room, 25_000));
                let _ = s.drain(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(2_000));
        }
    };
    let rt = runtime();
    // Six honest houses at 500 W: 3 kW; twenty 25-kW sybils counted would be 500 kW.
    let run = rt.block_on(run(&hood, 40_000, meters, 14, during));
    // Whatever the sybils managed, every interval holds the honest reports plus at most one.
    let sent = run.sent();
    let published = run.published();
    assert!(
        published.len() >= 3,
        "{} intervals published",
        published.len()
    );
    for r in &published {
        let honest = sent.get(&r.interval).map_or(0, Vec::len) as u64;
        assert!(
            r.reports <= honest + 1,
            "interval {}: {} reports, {honest} honest",
            r.interval,
            r.reports
        );
        assert!(r.total_watts <= honest * 500 + 25_000);
    }
    assert!(
        !run.leader.iter().any(
            |e| matches!(e, LeaderEvent::Alert(a) if a.kind == gridmuc_core::AlertKind::Overload)
        ),
        "a faked overload"
    );
    // The impostor's answers were not believed, and the real leader took over once it left.
    let unverified: u64 = run.meters.iter().map(|m| m.unverified).sum();
    assert!(unverified >= 1, "{:?}", run.meters);
    let full = published
        .iter()
        .filter(|r| r.reports >= houses as u64)
        .count();
    assert!(full >= 3, "{full} intervals with every house");
}
