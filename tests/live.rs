//! The live neighbourhood against the real private Prosody and ejabberd: meters, the bot,
//! the room, TLS, a server crash; and a two-node ejabberd cluster with a node crash.
//!
//! Every test starts its own server (loopback, test CA) and uses 1-second intervals so the
//! whole file runs in a few minutes. Tests made with `on_each_server!` run once per server
//! (`…::prosody`, `…::ejabberd`).

// Tests may unwrap (house rule); helpers outside `#[test]` fns need saying so.
#![allow(clippy::unwrap_used)]

use gridmuc::core::{AggregatorConfig, AlertKind, Watts};
use gridmuc::server::{EjabberdCluster, PrivateServer, RoomPolicy, ServerConfig, ServerKind};
use gridmuc::xmpp::bot::{BotConfig, BotEvent, BotReport, run_bot};
use gridmuc::xmpp::connect::{ConnectConfig, ConnectError, connect};
use gridmuc::xmpp::listen::{Heard, ListenPlan, listen};
use gridmuc::xmpp::meter::{MeterConfig, MeterEvent, MeterReport, Mode, run_meter};
use gridmuc::xmpp::source::{Injection, SourceConfig};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const INTERVAL: Duration = Duration::from_secs(1);

mod common;
use common::{PASSWORD, TestServer, runtime, stopped, users};

/// A private server with a provisioned room and accounts for a bot, an operator, an observer and houses.
struct Hood {
    server: PrivateServer,
    room: String,
    houses: Vec<String>,
}

impl Hood {
    fn new(kind: ServerKind, houses: usize, policy: RoomPolicy) -> Hood {
        Hood::with_server(config(kind), houses, |_| policy)
    }

    fn with_server(
        cfg: ServerConfig,
        houses: usize,
        policy: impl FnOnce(&str) -> RoomPolicy,
    ) -> Hood {
        let domain = cfg.domain.clone();
        let bot = format!("bot@{domain}");
        let users = users(&["bot", "op", "observer"], houses);
        let TestServer { server, room } = TestServer::start(cfg, &users, &policy(&bot));
        let houses = (0..houses).map(|i| format!("house{i}@{domain}")).collect();
        Hood {
            server,
            room,
            houses,
        }
    }

    fn account(&self, user: &str) -> ConnectConfig {
        common::account(&self.server, user, Duration::from_secs(10))
    }

    fn bot(&self, operators: &[&str]) -> BotConfig {
        let operators = operators
            .iter()
            .map(|o| format!("{o}@{}", self.server.domain()))
            .collect();
        bot_config(self.account("bot"), &self.room, operators)
    }

    fn meter(&self, house: usize, mode: Mode, csv: &std::path::Path) -> MeterConfig {
        meter_config(self.account(&self.houses[house]), &self.room, mode, csv)
    }
}

/// The test bot: 1-s intervals, every stanza tapped, `operators` told about alerts.
fn bot_config(account: ConnectConfig, room: &str, operators: Vec<String>) -> BotConfig {
    let mut cfg = BotConfig::new(account, room);
    cfg.operators = operators;
    cfg.aggregator = AggregatorConfig {
        interval: 1_000,
        grace: 500,
        ..AggregatorConfig::default()
    };
    cfg.tap_stanzas = true;
    cfg
}

/// A test meter reading `csv` once a second.
fn meter_config(
    account: ConnectConfig,
    room: &str,
    mode: Mode,
    csv: &std::path::Path,
) -> MeterConfig {
    let mut cfg = MeterConfig::new(account, room);
    cfg.mode = mode;
    cfg.interval = INTERVAL;
    cfg.jitter = [0.05, 0.4];
    cfg.source = SourceConfig::Csv {
        path: csv.to_owned(),
    };
    cfg
}

/// The default server configuration on `kind`.
fn config(kind: ServerKind) -> ServerConfig {
    ServerConfig {
        kind,
        ..ServerConfig::default()
    }
}

/// A CSV of `rows` constant readings, so alerts in tests come only from the injections.
fn constant_csv(dir: &tempfile::TempDir, watts: i64, rows: usize) -> std::path::PathBuf {
    let path = dir.path().join("house.csv");
    let mut text = String::from("timestamp,watts\n");
    for i in 0..rows {
        text.push_str(&format!("2026-11-24T20:{:02}:00Z,{watts}\n", i % 60));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the bot and the meters for `run`, stops the meters, lets the last readings land, stops the bot.
/// Sends the stop signal and waits for every task, each of which must have ended cleanly.
async fn stop_all<T, E: std::fmt::Debug>(
    stop: &watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<T, E>>>,
) -> Vec<T> {
    stop.send(true).unwrap();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap().unwrap());
    }
    done
}

/// Records when each event `is_join` picks arrived, until the sender side is gone.
fn join_times<E: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<E>,
    is_join: fn(&E) -> bool,
) -> tokio::task::JoinHandle<Vec<Instant>> {
    tokio::spawn(async move {
        let mut at = Vec::new();
        while let Some(e) = rx.recv().await {
            if is_join(&e) {
                at.push(Instant::now());
            }
        }
        at
    })
}

async fn run_hood(
    bot: BotConfig,
    meters: Vec<MeterConfig>,
    run: Duration,
) -> (
    BotReport,
    Vec<BotEvent>,
    Vec<MeterReport>,
    Vec<Vec<MeterEvent>>,
) {
    let (bot_stop, bot_stop_rx) = watch::channel(false);
    let (bot_tx, mut bot_rx) = mpsc::unbounded_channel();
    let bot_task = tokio::spawn(run_bot(bot, Some(bot_tx), stopped(bot_stop_rx)));
    // The bot must be in the room before direct readings can reach it.
    match bot_rx.recv().await {
        Some(BotEvent::Joined(_)) => {}
        other => panic!("bot did not join: {other:?} / {:?}", bot_task.await),
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut receivers = Vec::new();
    for m in meters {
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(run_meter(
            m,
            Some(tx),
            stopped(stop_rx.clone()),
        )));
        receivers.push(rx);
    }
    tokio::time::sleep(run).await;
    let reports = stop_all(&stop, tasks).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bot_stop.send(true).unwrap();
    let report = bot_task.await.unwrap().unwrap();
    let mut bot_events = Vec::new();
    while let Ok(e) = bot_rx.try_recv() {
        bot_events.push(e);
    }
    let meter_events = receivers
        .into_iter()
        .map(|mut rx| {
            let mut v = Vec::new();
            while let Ok(e) = rx.try_recv() {
                v.push(e);
            }
            v
        })
        .collect();
    (report, bot_events, reports, meter_events)
}

/// A plain client (an operator, or any chat client in the room) that records the messages it gets.
fn listener(
    cfg: ConnectConfig,
    plan: ListenPlan,
    delay: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<Heard>> {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        listen(cfg, plan, tx, stopped(stop)).await.unwrap();
        let mut got = Vec::new();
        while let Ok(h) = rx.try_recv() {
            got.push(h);
        }
        got
    })
}

fn sent_total(reports: &[MeterReport]) -> u64 {
    reports.iter().map(|r| r.sent).sum()
}

fn assert_no_house_jid(events: &[BotEvent], hood: &Hood) {
    let stanzas: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            BotEvent::Stanza(xml) => Some(xml),
            _ => None,
        })
        .collect();
    assert!(!stanzas.is_empty());
    for xml in stanzas {
        for house in &hood.houses {
            assert!(
                !xml.contains(house.as_str()),
                "house JID {house} in a stanza the bot got: {xml}"
            );
        }
        assert!(!xml.contains(" jid="), "real JID attribute in: {xml}");
        assert!(!xml.contains("occupant-id"), "occupant-id in: {xml}");
    }
}

fn count_ingested(report: &BotReport, meters: &[MeterReport]) {
    let sent = sent_total(meters);
    assert!(sent >= 5, "too few readings sent: {sent}");
    assert_eq!(
        report.counters.rejected.total(),
        0,
        "{:?}",
        report.counters.rejected
    );
    assert_eq!(
        report.counters.accepted, sent,
        "sent {sent} vs ingested {}",
        report.counters.accepted
    );
}

on_each_server!(
    direct_mode_every_reading_is_ingested_across_rotations_and_the_bot_sees_no_jid,
    direct_mode_on
);
fn direct_mode_on(kind: ServerKind) {
    let hood = Hood::new(kind, 5, RoomPolicy::default());
    let dir = tempfile::tempdir().unwrap();
    let csv = constant_csv(&dir, 900, 100);
    runtime().block_on(async {
        let meters = (0..5)
            .map(|i| {
                let mut m = hood.meter(i, Mode::Direct, &csv);
                // Rotate every ~2 s: leave, pause, rejoin under a fresh nickname.
                m.rotate = [1.5, 2.5];
                m.rejoin_gap = [0.1, 0.3];
                m
            })
            .collect();
        let (report, events, meters, meter_events) =
            run_hood(hood.bot(&[]), meters, Duration::from_secs(5)).await;
        count_ingested(&report, &meters);
        assert_no_house_jid(&events, &hood);
        assert!(events.iter().any(|e| matches!(e, BotEvent::Summary { .. })));
        let mut all_nicks = std::collections::HashSet::new();
        for (report, evs) in meters.iter().zip(&meter_events) {
            let nicks: Vec<_> = evs
                .iter()
                .filter_map(|e| match e {
                    MeterEvent::Joined(n) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            assert!(nicks.len() >= 2, "no rotation: {nicks:?}");
            assert_eq!(report.nicks, nicks.len() as u64);
            assert!(
                nicks.iter().all(|n| all_nicks.insert(n.clone())),
                "nickname reused"
            );
        }
    });
}

on_each_server!(
    broadcast_mode_every_reading_is_ingested_and_chat_clients_see_human_text,
    broadcast_mode_on
);
fn broadcast_mode_on(kind: ServerKind) {
    let hood = Hood::new(kind, 5, RoomPolicy::default());
    let dir = tempfile::tempdir().unwrap();
    let csv = constant_csv(&dir, 1_240, 100);
    runtime().block_on(async {
        let (stop, stop_rx) = watch::channel(false);
        let plan = ListenPlan {
            room: Some(hood.room.clone()),
            say: None,
        };
        let observer = listener(hood.account("observer"), plan, Duration::ZERO, stop_rx);
        let meters = (0..5)
            .map(|i| hood.meter(i, Mode::Broadcast, &csv))
            .collect();
        let (report, events, meters, _) =
            run_hood(hood.bot(&[]), meters, Duration::from_secs(4)).await;
        stop.send(true).unwrap();
        let seen = observer.await.unwrap();
        count_ingested(&report, &meters);
        assert_no_house_jid(&events, &hood);
        // What Gajim or Converse.js would show: plain text bodies, readings and summaries.
        // (The room's subject message has no body; everything with a body must be readable.)
        let bodies: Vec<&str> = seen
            .iter()
            .filter(|h| h.groupchat && !h.body.is_empty())
            .map(|h| h.body.as_str())
            .collect();
        assert!(bodies.contains(&"1.24 kW"), "{bodies:?}");
        assert!(
            bodies
                .iter()
                .any(|b| b.starts_with("interval ") && b.contains("5 meters")),
            "{bodies:?}"
        );
        assert!(bodies.iter().all(|b| !b.contains('<')), "{bodies:?}");
    });
}

on_each_server!(
    overload_reaches_room_and_operator_and_spike_only_the_offender,
    overload_on
);
fn overload_on(kind: ServerKind) {
    let hood = Hood::new(kind, 6, RoomPolicy::default());
    let dir = tempfile::tempdir().unwrap();
    let csv = constant_csv(&dir, 1_000, 100);
    runtime().block_on(async {
        let (stop, stop_rx) = watch::channel(false);
        let plan = ListenPlan {
            room: Some(hood.room.clone()),
            say: None,
        };
        let observer = listener(
            hood.account("observer"),
            plan,
            Duration::ZERO,
            stop_rx.clone(),
        );
        let bot_jid = format!("bot@{}", hood.server.domain());
        let plan = ListenPlan {
            room: None,
            say: Some((bot_jid, "status".into())),
        };
        // Asks `status` once the bot is surely online (it joins within the first second).
        let operator = listener(hood.account("op"), plan, Duration::from_secs(2), stop_rx);
        let mut bot = hood.bot(&["op"]);
        // Normal load 6 kW, spike 21 kW (under the 22.5 kW warning line), overload 36 kW.
        bot.aggregator.overload.rating = Watts(25_000);
        // A transformer heating 3,600 times faster (oil time constant 3 s): the 3-s overload
        // is as long for it as three hours are for a real one.
        bot.aggregator.overload.thermal =
            gridmuc::core::thermal::ThermalConfig::default().faster(3_600.0);
        let meters = (0..6)
            .map(|i| {
                let mut m = hood.meter(i, Mode::Direct, &csv);
                m.injections = if i == 0 {
                    vec![Injection {
                        from: Duration::from_millis(1_500),
                        to: Duration::from_millis(4_500),
                        add: 15_000,
                    }]
                } else {
                    vec![]
                };
                m.injections.push(Injection {
                    from: Duration::from_secs(5),
                    to: Duration::from_secs(8),
                    add: 5_000,
                });
                m
            })
            .collect();
        let (report, events, meters, meter_events) =
            run_hood(bot, meters, Duration::from_secs(9)).await;
        stop.send(true).unwrap();
        let seen_room = observer.await.unwrap();
        let seen_op = operator.await.unwrap();
        count_ingested(&report, &meters);

        let alerts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                BotEvent::Alert(a) => Some(a),
                _ => None,
            })
            .collect();
        assert!(
            alerts.iter().any(|a| a.kind == AlertKind::Overload),
            "{alerts:?}"
        );
        let spike = alerts
            .iter()
            .find(|a| a.kind == AlertKind::HouseSpike)
            .expect("house spike alert");
        let offender = spike.nick.clone().unwrap();

        let kinds = |heard: &[Heard]| {
            heard
                .iter()
                .filter_map(|h| h.alert.as_ref().map(|a| a.kind))
                .collect::<Vec<_>>()
        };
        let room_kinds = kinds(&seen_room);
        assert!(
            room_kinds.contains(&AlertKind::Overload),
            "room saw {room_kinds:?}"
        );
        assert!(
            !room_kinds.contains(&AlertKind::HouseSpike),
            "room saw {room_kinds:?}"
        );
        let op_kinds = kinds(&seen_op);
        assert!(
            op_kinds.contains(&AlertKind::Overload),
            "operator saw {op_kinds:?}"
        );
        assert!(
            op_kinds.contains(&AlertKind::HouseSpike),
            "operator saw {op_kinds:?}"
        );
        let bodies: Vec<&str> = seen_op.iter().map(|h| h.body.as_str()).collect();
        assert!(
            bodies.iter().any(|b| b.contains("accepted")),
            "no status answer: {bodies:?}"
        );

        // Only house 0 was told, under the nickname the alert names.
        for (i, evs) in meter_events.iter().enumerate() {
            let private: Vec<_> = evs
                .iter()
                .filter_map(|e| match e {
                    MeterEvent::Private {
                        to, alert: Some(a), ..
                    } => Some((to.clone(), a.kind)),
                    _ => None,
                })
                .collect();
            if i == 0 {
                assert!(
                    private.contains(&(offender.clone(), AlertKind::HouseSpike)),
                    "house 0 got {private:?}"
                );
            } else {
                assert!(private.is_empty(), "house {i} got {private:?}");
            }
        }
    });
}

fn refused_meter(kind: ServerKind, policy: RoomPolicy) -> String {
    let hood = Hood::new(kind, 1, policy);
    let dir = tempfile::tempdir().unwrap();
    let csv = constant_csv(&dir, 500, 10);
    let cfg = hood.meter(0, Mode::Broadcast, &csv);
    runtime().block_on(async {
        // A guard against hanging, not a speed test: the refusal ends the meter by itself.
        let run = run_meter(cfg, None, std::future::pending());
        let err = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("the meter refused the room instead of hanging")
            .unwrap_err();
        assert!(err.is_privacy_refusal(), "{err}");
        err.to_string()
    })
}

#[test]
fn meter_refuses_a_room_with_occupant_id() {
    // Prosody only: ejabberd 23.01 has no XEP-0421 occupant-id to turn on.
    let msg = refused_meter(
        ServerKind::Prosody,
        RoomPolicy {
            occupant_id: true,
            ..RoomPolicy::default()
        },
    );
    assert!(msg.contains("occupant-id"), "{msg}");
}

on_each_server!(meter_refuses_a_non_anonymous_room, non_anonymous_on);
fn non_anonymous_on(kind: ServerKind) {
    let msg = refused_meter(
        kind,
        RoomPolicy {
            non_anonymous: true,
            ..RoomPolicy::default()
        },
    );
    assert!(msg.contains("non-anonymous"), "{msg}");
}

on_each_server!(bot_with_moderator_rights_refuses_to_run, moderator_bot_on);
fn moderator_bot_on(kind: ServerKind) {
    let hood = Hood::with_server(config(kind), 0, |bot| RoomPolicy {
        admins: vec![bot.to_owned()],
        ..RoomPolicy::default()
    });
    runtime().block_on(async {
        let err = run_bot(hood.bot(&[]), None, std::future::pending())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("moderator") && msg.contains("refusing"),
            "{msg}"
        );
    });
}

on_each_server!(
    tls_with_the_test_ca_works_and_failures_are_clear_and_bounded,
    tls_on
);
fn tls_on(kind: ServerKind) {
    let hood = Hood::new(kind, 0, RoomPolicy::default());
    let untrusted = PrivateServer::start(ServerConfig {
        untrusted_cert: true,
        ..config(kind)
    })
    .unwrap();
    untrusted.register("bot", PASSWORD).unwrap();
    runtime().block_on(async {
        let client = connect(&hood.account("bot")).await.unwrap();
        gridmuc::xmpp::connect::close(client).await;

        let mut bad_password = hood.account("bot");
        bad_password.password = "wrong".into();
        let err = connect(&bad_password).await.unwrap_err();
        assert!(matches!(err, ConnectError::Auth { .. }), "{err}");

        let mut cfg = hood.account("bot");
        cfg.server = Some(untrusted.c2s_addr().to_string());
        cfg.timeout = Duration::from_secs(5);
        // A transport error naming the certificate, not a timeout: the login gave up at once.
        let err = connect(&cfg).await.unwrap_err();
        assert!(matches!(err, ConnectError::Transport { .. }), "{err}");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );

        let mut plain = hood.account("bot");
        plain.transport = gridmuc::xmpp::connect::Transport::PlaintextLoopback;
        let err = connect(&plain).await.unwrap_err();
        // The server requires TLS, so plaintext is refused by the server; the point is a clear error.
        assert!(!err.to_string().is_empty());
    });
}

on_each_server!(
    a_server_crash_loses_no_reading_and_everyone_is_back_within_10_s,
    server_crash_on
);
fn server_crash_on(kind: ServerKind) {
    let mut hood = Hood::new(kind, 5, RoomPolicy::default());
    let dir = tempfile::tempdir().unwrap();
    let csv = constant_csv(&dir, 700, 100);
    let meters = (0..5).map(|i| hood.meter(i, Mode::Direct, &csv)).collect();
    let bot = hood.bot(&[]);
    // Like a crash: SIGKILL, same port and data; sessions cannot be resumed.
    // The bot joins once before the crash and once after; a third time only if its
    // watchdog had to replace a dead session.
    crash_loses_nothing(bot, meters, 2..=3, "crash", || {
        hood.server.restart().unwrap()
    });
}

/// Runs `meters` and `bot` (direct mode, 5 houses) for 3 s, calls `crash`, runs 12 s more,
/// and checks that every reading was acknowledged and counted exactly once, that the
/// crash cost some readings (resent), that a full interval came after it, and that the
/// bot joined the room a number of times in `bot_joins`.
fn crash_loses_nothing(
    mut bot: BotConfig,
    mut meters: Vec<MeterConfig>,
    bot_joins: std::ops::RangeInclusive<usize>,
    what: &str,
    crash: impl FnOnce(),
) {
    // A stuck session is detected by a send that does not complete within the account timeout.
    let stall = Duration::from_secs(3);
    for m in &mut meters {
        m.account.timeout = stall;
        // Scaled to the 1 s test interval (the default is 30 s for 60 s intervals).
        m.outbox.resend_after = 2_000;
    }
    bot.account.timeout = stall;
    // Acks scaled alike: a batch held 5 s (the default, for 30-s resends) outlived the 2-s
    // resend, so resends backed off past the run's end and one lost in the crash was never sent
    // again before the stop.
    bot.acks.max_wait = 1_000;
    let houses = meters.len();
    runtime().block_on(async {
        let (stop, stop_rx) = watch::channel(false);
        let (bot_stop, bot_stop_rx) = watch::channel(false);
        let (bot_tx, mut bot_rx) = mpsc::unbounded_channel();
        let bot_task = tokio::spawn(run_bot(bot, Some(bot_tx), stopped(bot_stop_rx)));
        let mut tasks = Vec::new();
        for m in meters {
            tasks.push(tokio::spawn(run_meter(m, None, stopped(stop_rx.clone()))));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let crashed = now();
        tokio::task::block_in_place(crash);
        tokio::time::sleep(Duration::from_secs(12)).await;
        let reports = stop_all(&stop, tasks).await;
        // A bot that already stopped has dropped its receiver; its error shows just below.
        let _ = bot_stop.send(true);
        let report = bot_task.await.unwrap().unwrap();
        let mut joins = 0;
        let mut full_again = None;
        while let Ok(e) = bot_rx.try_recv() {
            match e {
                BotEvent::Joined(_) => joins += 1,
                BotEvent::Summary { stats, .. }
                    if stats.start > crashed && stats.meters == houses && stats.revision == 0 =>
                {
                    full_again.get_or_insert(stats.start);
                }
                _ => {}
            }
        }
        assert!(bot_joins.contains(&joins), "the bot joined {joins} times");
        // Recovery: the first interval after the crash in which every house reported on time.
        let back = full_again.expect("no full interval after the restart");
        // Reported below, not asserted (a shared machine): that one exists in the run is the test.
        let recovery = back.since(crashed);
        // Zero loss: every reading taken was acknowledged and counted exactly once.
        let c = &report.counters;
        let sent = sent_total(&reports);
        assert!(sent >= 60, "{reports:?}");
        for r in &reports {
            assert_eq!((r.unacknowledged, r.dropped, r.expired), (0, 0, 0), "{r:?}");
            assert_eq!(r.acknowledged, r.sent, "{r:?}");
        }
        assert_eq!(c.accepted, sent, "sent {sent}, counters {c:?}");
        // What the crash took was resent; copies that had arrived after all were dropped once.
        let resent: u64 = reports.iter().map(|r| r.resent).sum();
        assert!(
            resent > 0,
            "the crash should have cost some readings: {reports:?}"
        );
        assert_eq!(c.rejected.total(), c.rejected.get("duplicate"), "{c:?}");
        eprintln!(
            "{what}: recovered in {recovery} ms; sent {sent}, resent {resent}, \
             backfilled {}, duplicates dropped {}",
            c.backfilled,
            c.rejected.get("duplicate")
        );
    });
}

#[test]
fn an_ejabberd_cluster_node_crash_loses_no_reading() {
    // Meters on node 0; the bot on node 1, where the room runs. Node 0 dies with the meters'
    // sessions; the bot's node and session live on: it joins once (twice if its watchdog
    // replaced a session slowed by the crash).
    cluster_node_crash(1, 1..=2);
}

#[test]
fn a_room_that_dies_with_its_node_takes_the_bot_back_and_loses_no_reading() {
    // Meters on node 0, where the room runs; the bot on node 1. The room dies with node 0 and
    // restarts without the bot, whose session on node 1 is fine and is never told. Its
    // self-ping (XEP-0410) finds out and it rejoins: at least twice in all.
    cluster_node_crash(0, 2..=4);
}

/// Five real direct meters on node 0 and the real bot on node 1 of a two-node cluster, the
/// room on `room_node`; node 0 is killed 3 s in and restarted a second later, comes back on its
/// spool and rejoins the cluster by itself, and the meters reconnect to it.
fn cluster_node_crash(room_node: usize, bot_joins: std::ops::RangeInclusive<usize>) {
    let mut cluster = EjabberdCluster::start(ServerConfig::default(), 2).unwrap();
    let accounts: Vec<(String, String)> = users(&["bot"], 5)
        .into_iter()
        .map(|u| (u, PASSWORD.to_owned()))
        .collect();
    cluster.register_many(&accounts).unwrap();
    let room = cluster
        .provision_room(room_node, "hood", &RoomPolicy::default())
        .unwrap();
    let account = |user: &str, node: usize| {
        common::account_at(
            &cluster.c2s_addr(node).to_string(),
            &format!("{user}@{}", cluster.domain()),
            cluster.ca_cert_pem(),
            Duration::from_secs(10),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = constant_csv(&dir, 700, 100);
    let meters = (0..5)
        .map(|i| meter_config(account(&format!("house{i}"), 0), &room, Mode::Direct, &csv))
        .collect();
    let bot = bot_config(account("bot", 1), &room, vec![]);
    let what = format!("cluster node crash, room on node {room_node}");
    crash_loses_nothing(bot, meters, bot_joins, &what, || {
        cluster.crash(0).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        cluster.restart(0).unwrap();
    });
}

/// A loopback TCP proxy to the server whose `freeze` stops delivering to the clients of the
/// connections open at that moment while still forwarding what they send: the read stall
/// tokio-xmpp 6 sessions show, on demand. Later connections are forwarded normally.
struct FreezingProxy {
    addr: std::net::SocketAddr,
    frozen_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FreezingProxy {
    async fn start(server: std::net::SocketAddr) -> FreezingProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen_below = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (frozen, count) = (frozen_below.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let generation = count.fetch_add(1, Ordering::SeqCst);
                let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                    continue;
                };
                let (mut c_rx, mut c_tx) = client.into_split();
                let (mut s_rx, mut s_tx) = upstream.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut c_rx, &mut s_tx).await });
                let frozen = frozen.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = s_rx.read(&mut buf).await {
                        if generation < frozen.load(Ordering::SeqCst) {
                            // Swallowed: the client's session goes silent but can still send.
                            continue;
                        }
                        if c_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        FreezingProxy {
            addr,
            frozen_below,
            accepted,
        }
    }

    /// Stops delivering to every connection accepted so far.
    fn freeze(&self) {
        use std::sync::atomic::Ordering;
        let n = self.accepted.load(Ordering::SeqCst);
        self.frozen_below.store(n, Ordering::SeqCst);
    }
}

/// Who stops being delivered to in [`stall`].
#[derive(Clone, Copy, PartialEq)]
enum Stalled {
    Meters,
    Bot,
}

/// What [`stall`] saw: the meters' and the bot's reports, and when each party had rejoined.
struct StallRun {
    meters: Vec<MeterReport>,
    bot: BotReport,
    meter_joins: Vec<Instant>,
    bot_joins: Vec<Instant>,
    frozen: Instant,
    connections: u64,
}

/// Two direct meters and the bot; `who` connects through a [`FreezingProxy`] that stops
/// delivering to it 3 s in; everyone runs 10 s more.
fn stall(kind: ServerKind, who: Stalled) -> StallRun {
    let hood = Hood::new(kind, 2, RoomPolicy::default());
    let dir = tempfile::tempdir().unwrap();
    let csv = constant_csv(&dir, 700, 100);
    let timeout = Duration::from_secs(3);
    runtime().block_on(async {
        let proxy = FreezingProxy::start(hood.server.c2s_addr()).await;
        // Through the proxy; the certificate names the domain, not the address.
        let via_proxy = |account: &mut ConnectConfig| {
            account.server = Some(proxy.addr.to_string());
        };
        let mut bot = hood.bot(&[]);
        bot.account.timeout = timeout;
        if who == Stalled::Bot {
            via_proxy(&mut bot.account);
        }
        let meters: Vec<MeterConfig> = (0..2)
            .map(|i| {
                let mut m = hood.meter(i, Mode::Direct, &csv);
                if who == Stalled::Meters {
                    via_proxy(&mut m.account);
                }
                m.account.timeout = timeout;
                m.outbox.resend_after = 2_000;
                m
            })
            .collect();
        let (bot_stop, bot_stop_rx) = watch::channel(false);
        let (bot_tx, bot_rx) = mpsc::unbounded_channel();
        let bot_task = tokio::spawn(run_bot(bot, Some(bot_tx), stopped(bot_stop_rx)));
        let bot_joins = join_times(bot_rx, |e| matches!(e, BotEvent::Joined(_)));
        let (stop, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks: Vec<_> = meters
            .into_iter()
            .map(|m| tokio::spawn(run_meter(m, Some(tx.clone()), stopped(stop_rx.clone()))))
            .collect();
        drop(tx);
        let meter_joins = join_times(rx, |e| matches!(e, MeterEvent::Joined(_)));
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.freeze();
        let frozen = Instant::now();
        // Unanswered post (3 s) + unanswered ping (2 s) + a new session: well inside 10 s.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let meters = stop_all(&stop, tasks).await;
        bot_stop.send(true).unwrap();
        let bot = bot_task.await.unwrap().unwrap();
        StallRun {
            meters,
            bot,
            meter_joins: meter_joins.await.unwrap(),
            bot_joins: bot_joins.await.unwrap(),
            frozen,
            connections: proxy.accepted.load(std::sync::atomic::Ordering::SeqCst),
        }
    })
}

impl StallRun {
    /// Every reading acknowledged and counted exactly once; returns the readings sent.
    fn assert_nothing_lost(&self) -> u64 {
        let c = &self.bot.counters;
        let sent = sent_total(&self.meters);
        assert!(sent >= 20, "{:?}", self.meters);
        for r in &self.meters {
            assert!(r.resent > 0, "the stall should have cost receipts: {r:?}");
            assert_eq!((r.unacknowledged, r.dropped, r.expired), (0, 0, 0), "{r:?}");
            assert_eq!(r.acknowledged, r.sent, "{r:?}");
        }
        assert_eq!(c.accepted, sent, "sent {sent}, counters {c:?}");
        assert_eq!(c.rejected.total(), c.rejected.get("duplicate"), "{c:?}");
        sent
    }

    /// How long after the freeze the last of `joins` happened.
    fn recovered(&self, joins: &[Instant]) -> Duration {
        joins.iter().max().unwrap().duration_since(self.frozen)
    }
}

on_each_server!(
    a_meter_whose_session_stops_delivering_replaces_it_and_loses_nothing,
    meter_stall_on
);
fn meter_stall_on(kind: ServerKind) {
    let run = stall(kind, Stalled::Meters);
    let sent = run.assert_nothing_lost();
    for r in &run.meters {
        assert_eq!(r.nicks, 2, "one rejoin on a fresh session: {r:?}");
    }
    // The frozen sessions' readings reached the bot, their receipts did not: resent copies.
    let duplicates = run.bot.counters.rejected.get("duplicate");
    assert!(duplicates > 0, "{:?}", run.bot.counters);
    // Probe login + session per meter before the freeze, two more after it.
    assert_eq!(run.connections, 8, "proxy connections");
    // How long it took is reported, not asserted: the machine is shared.
    let recovered = run.recovered(&run.meter_joins);
    eprintln!(
        "meters stalled: both on fresh sessions {recovered:?} after the freeze; {sent} readings \
         sent, {} resent, {duplicates} duplicates dropped",
        run.meters.iter().map(|r| r.resent).sum::<u64>(),
    );
}

on_each_server!(
    a_bot_whose_session_stops_delivering_replaces_it_and_healthy_meters_keep_theirs,
    bot_stall_on
);
fn bot_stall_on(kind: ServerKind) {
    let run = stall(kind, Stalled::Bot);
    let sent = run.assert_nothing_lost();
    // The meters' pings were answered, so their sessions and nicknames stayed.
    for r in &run.meters {
        assert_eq!(r.nicks, 1, "a healthy session was replaced: {r:?}");
    }
    assert_eq!(run.bot_joins.len(), 2, "the bot should rejoin once");
    assert_eq!(run.connections, 4, "proxy connections");
    let recovered = run.recovered(&run.bot_joins);
    eprintln!(
        "bot stalled: on a fresh session {recovered:?} after the freeze; {sent} readings sent, \
         {} resent",
        run.meters.iter().map(|r| r.resent).sum::<u64>(),
    );
}

on_each_server!(
    a_quiet_bot_keeps_its_seat_through_its_self_pings,
    quiet_bot_on
);
fn quiet_bot_on(kind: ServerKind) {
    // Nobody reports: every 2 s of silence the bot asks the room whether it still counts it
    // (XEP-0410), and the server answers (or forwards the ping to us, and we answer).
    let hood = Hood::new(kind, 0, RoomPolicy::default());
    let bot = hood.bot(&[]);
    let (joins, answers) = runtime().block_on(async {
        let (stop, stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_bot(bot, Some(tx), stopped(stop_rx)));
        tokio::time::sleep(Duration::from_secs(9)).await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let (mut joins, mut answers) = (0, 0);
        while let Ok(e) = rx.try_recv() {
            match e {
                BotEvent::Joined(_) => joins += 1,
                BotEvent::Stanza(xml) if xml.starts_with("<iq") && xml.contains("id='self-") => {
                    assert!(xml.contains("type='result'"), "{xml}");
                    answers += 1;
                }
                _ => {}
            }
        }
        (joins, answers)
    });
    assert_eq!(joins, 1, "a quiet room took the bot's seat");
    assert!(answers >= 2, "{answers} self-pings answered");
}

fn now() -> gridmuc::core::Timestamp {
    gridmuc::core::Timestamp(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    )
}

#[test]
fn two_neighbourhoods_feed_a_district_bot_with_totals_only() {
    use gridmuc::xmpp::district::DistrictConfig;
    let hood = Hood::new(ServerKind::Prosody, 6, RoomPolicy::default());
    let server = &hood.server;
    server
        .register_many(&[
            ("bot2".to_owned(), PASSWORD.to_owned()),
            ("district".to_owned(), PASSWORD.to_owned()),
        ])
        .unwrap();
    let hood_b = server
        .provision_room("hood2", &RoomPolicy::default())
        .unwrap();
    let district_room = server
        .provision_room("district", &RoomPolicy::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (csv_a, csv_b) = (constant_csv(&dir, 700, 100), constant_csv(&dir_b, 400, 100));
    let uplink = |nick: &str| DistrictConfig {
        room: district_room.clone(),
        nick: nick.to_owned(),
        bot_nick: "district".to_owned(),
        outbox: Default::default(),
        // Three houses per neighbourhood here; the default of 5 keeps single houses hidden.
        min_meters: 3,
    };
    let mut bot_a = hood.bot(&[]);
    bot_a.tap_stanzas = false;
    bot_a.district = Some(uplink("hood-a"));
    let mut bot_b = BotConfig {
        room: hood_b.clone(),
        account: hood.account("bot2"),
        ..bot_a.clone()
    };
    bot_b.district = Some(uplink("hood-b"));
    let mut district = BotConfig {
        room: district_room.clone(),
        account: hood.account("district"),
        nick: "district".to_owned(),
        district: None,
        // Neighbourhood totals, not houses; and later than house readings by the hood's grace.
        max_power_kw: 1_000.0,
        tap_stanzas: true,
        ..bot_a.clone()
    };
    district.aggregator.grace = 1_500;
    let meters: Vec<MeterConfig> = (0..6)
        .map(|i| {
            if i < 3 {
                hood.meter(i, Mode::Direct, &csv_a)
            } else {
                let mut m = hood.meter(i, Mode::Direct, &csv_b);
                m.room = hood_b.clone();
                m
            }
        })
        .collect();
    runtime().block_on(async {
        let (stop_d, stop_d_rx) = watch::channel(false);
        let (d_tx, mut d_rx) = mpsc::unbounded_channel();
        let d_task = tokio::spawn(run_bot(district, Some(d_tx), stopped(stop_d_rx)));
        assert!(matches!(d_rx.recv().await, Some(BotEvent::Joined(_))));
        let (stop_h, stop_h_rx) = watch::channel(false);
        let mut hood_bots = Vec::new();
        for cfg in [bot_a, bot_b] {
            let (tx, mut rx) = mpsc::unbounded_channel();
            hood_bots.push(tokio::spawn(run_bot(
                cfg,
                Some(tx),
                stopped(stop_h_rx.clone()),
            )));
            assert!(matches!(rx.recv().await, Some(BotEvent::Joined(_))));
        }
        let (stop, stop_rx) = watch::channel(false);
        let tasks: Vec<_> = meters
            .into_iter()
            .map(|m| tokio::spawn(run_meter(m, None, stopped(stop_rx.clone()))))
            .collect();
        tokio::time::sleep(Duration::from_secs(7)).await;
        stop_all(&stop, tasks).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let published: u64 = stop_all(&stop_h, hood_bots)
            .await
            .iter()
            .map(|r| r.counters.intervals)
            .sum();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop_d.send(true).unwrap();
        let report = d_task.await.unwrap().unwrap();
        let mut events = Vec::new();
        while let Ok(e) = d_rx.try_recv() {
            events.push(e);
        }
        // The district sees two occupants sending totals: 3 × 700 W + 3 × 400 W.
        let both: Vec<(usize, Watts)> = events
            .iter()
            .filter_map(|e| match e {
                BotEvent::Summary { stats, .. } if stats.meters > 0 => {
                    Some((stats.meters, stats.total))
                }
                _ => None,
            })
            .collect();
        assert!(both.iter().all(|&(n, _)| n <= 2), "{both:?}");
        let full = both.iter().filter(|&&s| s == (2, Watts(3_300))).count();
        assert!(full >= 4, "district intervals: {both:?}");
        assert_eq!(report.counters.rejected.total(), 0, "{:?}", report.counters);
        assert!(report.counters.accepted >= 8 && report.counters.accepted <= published);
        // Only totals reach the district: no house value, no house nickname, no JID.
        assert_no_house_jid(&events, &hood);
        for e in &events {
            if let BotEvent::Stanza(xml) = e {
                assert!(
                    !xml.contains("value='700'") && !xml.contains("value=\"700\""),
                    "{xml}"
                );
                assert!(
                    !xml.contains("value='400'") && !xml.contains("value=\"400\""),
                    "{xml}"
                );
                if xml.contains("urn:xmpp:iot:sensordata") {
                    let from = |n: &str| xml.contains(&format!("from='{district_room}/{n}'"));
                    assert!(from("hood-a") || from("hood-b"), "{xml}");
                }
            }
        }
    });
    hood.server.stop().unwrap();
}
