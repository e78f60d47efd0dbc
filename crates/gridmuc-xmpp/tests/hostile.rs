//! Hostile occupants and outsiders against a live neighbourhood on the private Prosody:
//! nested stanzas, a spoofed room presence, an impostor holding the bot's nickname, and one
//! account posing as many houses. Each must neither crash, stop nor fool the bot or a meter.

// Tests may unwrap (house rule); helpers outside `#[test]` fns need saying so.
#![allow(clippy::unwrap_used)]

use gridmuc_botkey::BotSecretKey;
use gridmuc_core::codec::{self, MessageKind};
use gridmuc_core::{AggregatorConfig, Quality, Reading, ReadingId, Timestamp, Watts};
use gridmuc_server::raw::{self, Join, RawXmpp};
use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig};
use gridmuc_xmpp::bot::{BotConfig, BotEvent, BotReport, run_bot};
use gridmuc_xmpp::connect::ConnectConfig;
use gridmuc_xmpp::meter::{MeterConfig, MeterReport, Mode, run_meter};
use gridmuc_xmpp::source::SourceConfig;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[path = "../../../tests/common/mod.rs"]
mod common;
use common::{PASSWORD, TestServer, runtime, stopped, users};

const BOT_NICK: &str = "substation";

/// A room whose bot nickname is reserved, a bot key, meters pinning it, and a hostile account.
struct Hood {
    server: PrivateServer,
    room: String,
    key: Arc<BotSecretKey>,
    dir: tempfile::TempDir,
}

impl Hood {
    fn new(houses: usize, reserve_bot_nick: bool) -> Hood {
        // Plaintext allowed so the raw hostile client can log in; every agent still uses STARTTLS.
        let cfg = ServerConfig {
            require_tls: false,
            extra_config: "allow_unencrypted_plain_auth = true".to_owned(),
            ..ServerConfig::default()
        };
        let bot = format!("bot@{}", cfg.domain);
        let policy = RoomPolicy {
            reserved_nicks: if reserve_bot_nick {
                vec![(bot, BOT_NICK.to_owned())]
            } else {
                vec![]
            },
            ..RoomPolicy::default()
        };
        let users = users(&["bot", "mallory", "op"], houses);
        let TestServer { server, room } = TestServer::start(cfg, &users, &policy);
        let key = Arc::new(BotSecretKey::generate(&mut rand::rng()));
        let dir = tempfile::tempdir().unwrap();
        Hood {
            server,
            room,
            key,
            dir,
        }
    }

    fn account(&self, user: &str) -> ConnectConfig {
        common::account(&self.server, user, Duration::from_secs(10))
    }

    fn bot(&self) -> BotConfig {
        let mut cfg = BotConfig::new(self.account("bot"), &self.room);
        cfg.aggregator = AggregatorConfig {
            interval: 1_000,
            grace: 500,
            ..AggregatorConfig::default()
        };
        cfg.key = Some(self.key.clone());
        cfg.operators = vec![self.jid("op")];
        cfg
    }

    fn meter(&self, house: usize, watts: i64) -> MeterConfig {
        let mut cfg = MeterConfig::new(self.account(&format!("house{house}")), &self.room);
        cfg.mode = Mode::Direct;
        cfg.interval = Duration::from_secs(1);
        cfg.jitter = [0.05, 0.4];
        cfg.bot_key = Some(self.key.public());
        // A constant load for longer than any test runs.
        let path = self.dir.path().join(format!("house{house}.csv"));
        let rows: String = (0..600).map(|i| format!("{i},{watts}\n")).collect();
        std::fs::write(&path, format!("timestamp,watts\n{rows}")).unwrap();
        cfg.source = SourceConfig::Csv { path };
        cfg
    }

    /// The hostile account, logged in over plaintext with its own raw client.
    fn mallory(&self) -> RawXmpp {
        self.raw("mallory")
    }

    /// `user` logged in with the raw client and available (so it gets messages to its bare JID).
    fn raw(&self, user: &str) -> RawXmpp {
        let mut c =
            RawXmpp::login(self.server.c2s_addr(), self.server.domain(), user, PASSWORD).unwrap();
        c.initial_presence().unwrap();
        c
    }

    fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.server.domain())
    }
}

type Running = (
    // The meters' stop, then the bot's.
    [watch::Sender<bool>; 2],
    tokio::task::JoinHandle<Result<BotReport, gridmuc_xmpp::BotError>>,
    Vec<tokio::task::JoinHandle<Result<MeterReport, gridmuc_xmpp::MeterError>>>,
    mpsc::UnboundedReceiver<BotEvent>,
);

/// Starts the bot (unless `bot` is false) and `meters`, and waits until the bot has joined.
async fn start(hood: &Hood, bot: bool, meters: &[MeterConfig]) -> Running {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_bot_tx, stop_bot_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bot_task = if bot {
        let task = tokio::spawn(run_bot(hood.bot(), Some(tx), stopped(stop_bot_rx)));
        loop {
            match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
                Ok(Some(BotEvent::Joined(_))) => break,
                Ok(Some(_)) => {}
                other => panic!("bot did not join: {other:?}"),
            }
        }
        task
    } else {
        drop(tx);
        tokio::spawn(async { Ok(BotReport::default()) })
    };
    let meters = meters
        .iter()
        .map(|cfg| tokio::spawn(run_meter(cfg.clone(), None, stopped(stop_rx.clone()))))
        .collect();
    ([stop_tx, stop_bot_tx], bot_task, meters, rx)
}

/// Stops the meters, then the bot: a meter's last reading, or its request for the verdicts
/// the bot still holds, must not find the bot gone (it would bounce, unacknowledged).
async fn stop(running: Running) -> (BotReport, Vec<MeterReport>, Vec<BotEvent>) {
    let ([stop_meters, stop_bot], bot, meters, mut rx) = running;
    stop_meters.send(true).unwrap();
    let mut reports = Vec::new();
    for m in meters {
        reports.push(m.await.unwrap().unwrap());
    }
    // A bot-less run has already finished and dropped its receiver.
    let _ = stop_bot.send(true);
    let report = bot.await.unwrap().unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (report, reports, events)
}

/// A one-off 25 kW direct reading as a third-party meter would write it, for the current interval.
fn forged_reading(room: &str, seqnr: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let reading = Reading {
        power: Watts(25_000),
        at: Timestamp(i64::try_from(now).unwrap()).floor_to(1_000),
        seqnr,
        quality: Quality::AUTOMATIC_READOUT,
    };
    let id = ReadingId::random(&mut rand::rng()).to_string();
    let to = format!("{room}/{BOT_NICK}");
    let xml = String::from(&codec::encode_message(
        &reading,
        &to,
        MessageKind::Chat,
        &id,
    ));
    xml.replace(
        "</message>",
        "<request xmlns='urn:xmpp:receipts'/></message>",
    )
}

#[test]
fn a_hostile_occupant_can_neither_crash_nor_stop_the_neighbourhood() {
    let hood = Hood::new(3, true);
    let rt = runtime();
    let (bot, meters, cut) = rt.block_on(async {
        let meters: Vec<_> = (0..3).map(|h| hood.meter(h, 1_000)).collect();
        let running = start(&hood, true, &meters).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = gridmuc_xmpp::guard::CUT_TOO_DEEP.load(Ordering::Relaxed);
        let mut mallory = hood.mallory();
        assert!(mallory.join(&hood.room, "mallory-1").unwrap().is_joined());
        // A valid reading beside a 60 KB body: the whole stanza is measured, and refused with
        // a signed reason in the bot's next ack to that nickname (at most 5 s later), not a
        // receipt.
        let padded = forged_reading(&hood.room, 7).replacen(
            "<body>",
            &format!("<body>{}", "x".repeat(60_000)),
            1,
        );
        mallory.send(&padded).unwrap();
        let refusal = mallory
            .read_until("reason='oversize'", Duration::from_secs(10))
            .unwrap();
        assert!(
            refusal.contains("urn:gridmuc:ack:2") && refusal.contains("<refused"),
            "{refusal}"
        );
        assert!(
            !refusal.contains("urn:xmpp:receipts"),
            "a refused reading was receipted"
        );
        // 9,000 and 30,000 levels to the room (bot and all three meters receive both)…
        for depth in [9_000, 30_000] {
            mallory
                .send(&raw::nested_groupchat(
                    &hood.room,
                    &format!("deep-{depth}"),
                    depth,
                ))
                .unwrap();
        }
        // …and straight to the bot's and one house's account.
        let deep = format!("{}{}", "<a>".repeat(30_000), "</a>".repeat(30_000));
        for to in [hood.jid("bot"), hood.jid("house0")] {
            mallory
                .send(&format!(
                    "<message type='chat' to='{to}'><x xmlns='urn:evil'>{deep}</x></message>"
                ))
                .unwrap();
        }
        // A presence claiming, from outside the room, that the room shows real JIDs.
        mallory
            .send(&format!(
                "<presence to='{}'><x xmlns='http://jabber.org/protocol/muc#user'>\
                 <item affiliation='none' role='participant' jid='house-999@{}/x'/></x></presence>",
                hood.jid("bot"),
                hood.server.domain()
            ))
            .unwrap();
        mallory.drain(Duration::from_millis(500)).unwrap();
        // Everyone keeps working for a few more intervals, and for as long as a loaded machine
        // needs to route the 210 KB stanzas to all four (a fixed 3 s saw only 4 of 10 cut).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let cut_so_far = || gridmuc_xmpp::guard::CUT_TOO_DEEP.load(Ordering::Relaxed) - before;
        for _ in 0..120 {
            if cut_so_far() >= 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let cut = cut_so_far();
        let (bot, meters, _) = stop(running).await;
        (bot, meters, cut)
    });
    // Bot: 2 room + 1 direct; each of three meters: 2 room; house0: 1 direct.
    assert_eq!(cut, 10, "deep stanzas cut by the guard");
    let c = &bot.counters;
    assert_eq!(c.rejected.get("too_deep"), 2, "{:?}", c.rejected);
    assert_eq!(c.rejected.get("oversize"), 1, "{:?}", c.rejected);
    let sent: u64 = meters.iter().map(|m| m.sent).sum();
    assert!(sent >= 12, "meters kept sending: {sent}");
    assert_eq!(c.accepted, sent, "every reading counted: {meters:?}");
    for m in &meters {
        assert_eq!(m.acknowledged, m.sent, "{m:?}");
        assert_eq!(m.unverified, 0);
    }
}

#[test]
fn an_impostor_holding_the_bot_nickname_learns_no_value_and_is_not_believed() {
    // No reservation here: the meters themselves must tell the impostor from the pinned bot.
    let hood = Hood::new(2, false);
    let rt = runtime();
    let (meters, seen) = rt.block_on(async {
        let mut mallory = hood.mallory();
        assert!(mallory.join(&hood.room, BOT_NICK).unwrap().is_joined());
        let meters: Vec<_> = (0..2).map(|h| hood.meter(h, 1_230)).collect();
        let running = start(&hood, false, &meters).await;
        // Answer every reading with an unsigned receipt, as a naive impostor would.
        let mut seen = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let Ok(stanza) = mallory.next_stanza(Duration::from_millis(300)) else {
                continue;
            };
            if let (Some(from), Some(id)) = (attr(&stanza, "from"), attr(&stanza, "id"))
                && stanza.starts_with("<message")
            {
                mallory
                    .send(&format!(
                        "<message type='chat' to='{from}'><received xmlns='urn:xmpp:receipts' id='{id}'/></message>"
                    ))
                    .unwrap();
            }
            seen.push_str(&stanza);
        }
        let (_, meters, _) = stop(running).await;
        (meters, seen)
    });
    assert!(
        seen.contains("urn:gridmuc:sealed:1"),
        "readings reached the impostor sealed"
    );
    assert!(
        !seen.contains("urn:xmpp:iot:sensordata"),
        "no plain reading: {seen}"
    );
    assert!(
        !seen.contains("1230") && !seen.contains("1.23"),
        "no value in clear"
    );
    for m in &meters {
        assert!(m.sent >= 3, "{m:?}");
        assert_eq!(
            m.acknowledged, 0,
            "an unsigned receipt cleared a reading: {m:?}"
        );
        assert!(m.unverified >= 1, "{m:?}");
        assert_eq!(
            m.unacknowledged, m.sent,
            "every reading kept for the real bot: {m:?}"
        );
    }
}

#[test]
fn a_bot_whose_nickname_is_squatted_tells_the_operator_and_joins_once_it_is_free() {
    // No reservation: a server that cannot reserve nicknames.
    let hood = Hood::new(2, false);
    let rt = runtime();
    let (bot, meters) = rt.block_on(async {
        let mut op = hood.raw("op");
        let mut mallory = hood.mallory();
        assert!(mallory.join(&hood.room, BOT_NICK).unwrap().is_joined());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stop_bot_tx, stop_bot_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bot = tokio::spawn(run_bot(hood.bot(), Some(tx), stopped(stop_bot_rx)));
        let notice = tokio::task::spawn_blocking(move || {
            let n = op.read_until("is taken", Duration::from_secs(20));
            (op, n)
        });
        let (_op, notice) = notice.await.unwrap();
        assert!(notice.unwrap().contains(BOT_NICK));
        // Still trying, not gone.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!bot.is_finished(), "the bot gave up its neighbourhood");
        mallory.leave(&hood.room, BOT_NICK).unwrap();
        let joined = tokio::time::timeout(Duration::from_secs(90), async {
            while let Some(e) = rx.recv().await {
                if matches!(e, BotEvent::Joined(_)) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            joined,
            Ok(true),
            "the bot never joined after the nickname was freed"
        );
        let meters: Vec<_> = (0..2).map(|h| hood.meter(h, 700)).collect();
        let tasks: Vec<_> = meters
            .iter()
            .map(|cfg| tokio::spawn(run_meter(cfg.clone(), None, stopped(stop_rx.clone()))))
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop_tx.send(true).unwrap();
        let mut reports = Vec::new();
        for t in tasks {
            reports.push(t.await.unwrap().unwrap());
        }
        // The bot stops last, so no meter's last reading finds it gone.
        stop_bot_tx.send(true).unwrap();
        (bot.await.unwrap().unwrap(), reports)
    });
    let sent: u64 = meters.iter().map(|m| m.sent).sum();
    assert!(sent >= 4, "{meters:?}");
    assert_eq!(bot.counters.accepted, sent);
}

#[test]
fn a_refused_reading_is_answered_with_its_reason_counted_and_not_resent() {
    let hood = Hood::new(2, true);
    let rt = runtime();
    let (bot, meters) = rt.block_on(async {
        // Every reading of house 1 (700 W) is over this bot's 0.5 kW limit; house 0's 300 W is not.
        let meters = [hood.meter(0, 300), hood.meter(1, 700)];
        let mut cfg = hood.bot();
        cfg.max_power_kw = 0.5;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stop_bot_tx, stop_bot_rx) = watch::channel(false);
        let bot = tokio::spawn(run_bot(cfg, None, stopped(stop_bot_rx)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let tasks: Vec<_> = meters
            .iter()
            .map(|c| tokio::spawn(run_meter(c.clone(), None, stopped(stop_rx.clone()))))
            .collect();
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop_tx.send(true).unwrap();
        let mut reports = Vec::new();
        for t in tasks {
            reports.push(t.await.unwrap().unwrap());
        }
        // The bot stops last, so no meter's last reading finds it gone.
        stop_bot_tx.send(true).unwrap();
        (bot.await.unwrap().unwrap(), reports)
    });
    let (ok, refused) = (&meters[0], &meters[1]);
    assert!(refused.sent >= 3, "{refused:?}");
    assert_eq!(
        refused.refused.get("over_limit"),
        Some(&refused.sent),
        "{refused:?}"
    );
    assert_eq!(
        (refused.acknowledged, refused.unacknowledged, refused.resent),
        (0, 0, 0),
        "a refused reading is neither receipted nor kept nor resent: {refused:?}"
    );
    assert_eq!(ok.acknowledged, ok.sent);
    assert_eq!(bot.counters.rejected.get("over_limit"), refused.sent);
    assert_eq!(bot.counters.accepted, ok.sent);
}

#[test]
fn a_flood_from_one_occupant_is_counted_not_answered_reading_for_reading() {
    let hood = Hood::new(2, true);
    let rt = runtime();
    let (bot, meters, verdicts) = rt.block_on(async {
        let meters: Vec<_> = (0..2).map(|h| hood.meter(h, 400)).collect();
        let running = start(&hood, true, &meters).await;
        let mut mallory = hood.mallory();
        assert!(mallory.join(&hood.room, "mallory-1").unwrap().is_joined());
        // 300 readings for the current interval in a burst, each asking for an answer.
        let burst: String = (0..300).map(|i| forged_reading(&hood.room, i)).collect();
        mallory.send(&burst).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let heard = mallory.drain(Duration::from_millis(300)).unwrap();
        let (bot, meters, _) = stop(running).await;
        (bot, meters, heard.matches("<verdict").count())
    });
    let c = &bot.counters;
    let limited = c.rejected.get("rate_limited");
    // The burst spans at most two intervals of 4 readings each.
    assert!(limited >= 292, "{:?}", c.rejected);
    assert!(
        verdicts <= 10,
        "{verdicts} answers to a 300-reading flood ({limited} rate limited)"
    );
    let sent: u64 = meters.iter().map(|m| m.sent).sum();
    assert_eq!(
        c.accepted,
        sent + (300 - limited),
        "honest meters all counted"
    );
}

#[test]
fn the_reserved_bot_nickname_cannot_be_taken() {
    let hood = Hood::new(0, true);
    let mut mallory = hood.mallory();
    let join = mallory.join(&hood.room, BOT_NICK).unwrap();
    assert!(
        matches!(&join, Join::Refused { condition, .. } if condition == "conflict"),
        "{join:?}"
    );
}

#[test]
fn one_account_behind_fifty_nicknames_counts_once_and_fakes_no_overload() {
    let hood = Hood::new(3, true);
    let rt = runtime();
    let (bot, _, events) = rt.block_on(async {
        let meters: Vec<_> = (0..3).map(|h| hood.meter(h, 500)).collect();
        let running = start(&hood, true, &meters).await;
        let mut sybils = Vec::new();
        for i in 0..50 {
            let mut s = hood.mallory();
            s.join(&hood.room, &format!("sybil-{i}")).unwrap();
            sybils.push(s);
        }
        // Every session sends a 25 kW reading per interval, as if it were a house.
        for round in 0..4 {
            for s in &mut sybils {
                s.send(&forged_reading(&hood.room, round)).unwrap();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for s in &mut sybils {
            let _ = s.drain(Duration::from_millis(10));
        }
        stop(running).await
    });
    let most = events
        .iter()
        .filter_map(|e| match e {
            BotEvent::Summary { stats, .. } => Some(stats.meters),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(most <= 4, "one account counted as {most} meters");
    let overloads = events
        .iter()
        .filter(|e| matches!(e, BotEvent::Alert(a) if a.kind == gridmuc_core::AlertKind::Overload))
        .count();
    assert_eq!(overloads, 0, "a faked overload reached the operator");
    assert!(bot.counters.accepted >= 9);
}

/// The value of attribute `name` in the first tag of `stanza` (test helper for raw XML).
fn attr(stanza: &str, name: &str) -> Option<String> {
    let tag = &stanza[..stanza.find('>')?];
    let start = tag.find(&format!(" {name}='"))? + name.len() + 3;
    let len = tag[start..].find('\'')?;
    Some(tag[start..start + len].to_owned())
}
