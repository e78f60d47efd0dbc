//! Masked mode against the real private Prosody: ten meters, two cohorts (nickname rotation
//! is re-enrolment), one meter killed mid-cohort, and a tap on every stanza the bot receives.

// Tests may unwrap (house rule); helpers outside `#[test]` fns need saying so.
#![allow(clippy::unwrap_used)]

use gridmuc::core::{AggregatorConfig, RoomNick, Watts};
use gridmuc::mask::MaskMessage;
use gridmuc::server::{PrivateServer, RoomPolicy, ServerConfig};
use gridmuc::xmpp::bot::BotConfig;
use gridmuc::xmpp::masked::{
    self, DpSettings, MaskedBotConfig, MaskedBotEvent, MaskedMeterConfig, MaskedMeterEvent,
    run_masked_bot, run_masked_meter,
};
use gridmuc::xmpp::meter::MeterConfig;
use gridmuc::xmpp::source::SourceConfig;
use minidom::Element;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const HOUSES: usize = 10;
mod common;
use common::{TestServer, runtime, stopped, users};

/// Reading of house `i` in its `row`-th round: five digits, distinct across houses and rounds.
fn reading(i: usize, row: usize) -> i64 {
    10_000 + 1_000 * i as i64 + 10 * row as i64
}

/// Every element's text and attributes except stanza ids (random, could hold any digits).
fn visible_text(el: &Element, out: &mut Vec<String>) {
    for ((_, name), value) in el.attrs() {
        if name.as_str() != "id" {
            out.push(value.to_owned());
        }
    }
    if el.name() != "mask" {
        out.push(el.text());
    }
    for child in el.children() {
        visible_text(child, out);
    }
}

/// A private Prosody with a room, a bot account and `houses` house accounts; the masked bot
/// and meter configs on 1-second rounds, each house replaying its [`reading`] rows.
struct Hood {
    server: PrivateServer,
    _dir: tempfile::TempDir,
    bot: MaskedBotConfig,
    meters: Vec<MaskedMeterConfig>,
}

fn hood(houses: usize, dp: Option<DpSettings>) -> Hood {
    let cfg = ServerConfig {
        smacks: false,
        ..ServerConfig::default()
    };
    let TestServer { server, room } =
        TestServer::start(cfg, &users(&["bot"], houses), &RoomPolicy::default());
    let account = |user: &str| common::account(&server, user, Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let mut bot = BotConfig::new(account("bot"), &room);
    bot.aggregator = AggregatorConfig {
        interval: 1_000,
        grace: 400,
        ..AggregatorConfig::default()
    };
    bot.tap_stanzas = true;
    let mut bot = MaskedBotConfig::new(bot);
    bot.key_window = Duration::from_secs(3);
    bot.share_window = Duration::from_millis(1500);
    bot.cohort_rounds = 5;
    bot.dp = dp;
    let meters = (0..houses)
        .map(|i| {
            let path = dir.path().join(format!("house{i}.csv"));
            let rows: String = (0..60)
                .map(|r| format!("{r},{}\n", reading(i, r)))
                .collect();
            std::fs::write(&path, format!("timestamp,watts\n{rows}")).unwrap();
            let mut m = MeterConfig::new(account(&format!("house{i}")), &room);
            m.interval = Duration::from_secs(1);
            m.jitter = [0.05, 0.35];
            m.rejoin_gap = [0.1, 0.4];
            m.source = SourceConfig::Csv { path };
            MaskedMeterConfig { meter: m, dp }
        })
        .collect();
    Hood {
        server,
        _dir: dir,
        bot,
        meters,
    }
}

#[test]
fn masked_sums_equal_what_meters_sent_across_cohorts_and_a_dropout() {
    let Hood {
        server,
        _dir,
        bot,
        meters,
    } = hood(HOUSES, None);

    runtime().block_on(async {
        let started = std::time::Instant::now();
        let (bot_stop, bot_stop_rx) = watch::channel(false);
        let (bot_tx, mut bot_rx) = mpsc::unbounded_channel();
        let bot_task = tokio::spawn(run_masked_bot(bot, Some(bot_tx), stopped(bot_stop_rx)));
        match bot_rx.recv().await {
            Some(MaskedBotEvent::Joined(_)) => {}
            other => panic!("bot did not join: {other:?} / {:?}", bot_task.await),
        }
        let (stop, stop_rx) = watch::channel(false);
        let (meter_tx, mut meter_rx) = mpsc::unbounded_channel::<(usize, MaskedMeterEvent)>();
        let mut tasks = Vec::new();
        for (i, m) in meters.into_iter().enumerate() {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let fwd = meter_tx.clone();
            tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    let _ = fwd.send((i, e));
                }
            });
            tasks.push(tokio::spawn(run_masked_meter(m, Some(tx), stopped(stop_rx.clone()))));
        }

        let mut bot_events = Vec::new();
        let mut meter_events: Vec<(usize, MaskedMeterEvent)> = Vec::new();
        let mut cohorts: Vec<u64> = Vec::new();
        let mut killed_after: Option<u64> = None;
        let deadline = tokio::time::sleep(Duration::from_secs(45));
        tokio::pin!(deadline);
        // Run until the second cohort has summed three rounds after the kill.
        loop {
            tokio::select! {
                () = &mut deadline => panic!("timed out; bot events: {:?}", bot_events.iter().filter(|e| !matches!(e, MaskedBotEvent::Stanza(_))).collect::<Vec<_>>()),
                Some(e) = bot_rx.recv() => {
                    if let MaskedBotEvent::Enrolled { first_round, .. } = &e {
                        cohorts.push(*first_round);
                    }
                    let done = matches!((&e, killed_after), (MaskedBotEvent::Sum { round, .. }, Some(k)) if *round >= k + 3);
                    bot_events.push(e);
                    if done {
                        break;
                    }
                }
                Some((i, e)) = meter_rx.recv() => {
                    // Kill house 0 right after it sent the second round of the second cohort:
                    // the next round must be unmasked without it (dropout recovery).
                    if let (0, MaskedMeterEvent::Sent { round, .. }) = (i, &e)
                        && cohorts.len() == 2
                        && *round > cohorts[1]
                        && killed_after.is_none()
                    {
                        tasks[0].abort();
                        killed_after = Some(*round);
                    }
                    meter_events.push((i, e));
                }
            }
        }
        stop.send(true).unwrap();
        for (i, t) in tasks.into_iter().enumerate().skip(1) {
            t.await.unwrap().unwrap_or_else(|e| panic!("meter {i}: {e}"));
        }
        bot_stop.send(true).unwrap();
        let report = bot_task.await.unwrap().unwrap();
        while let Ok(e) = bot_rx.try_recv() {
            bot_events.push(e);
        }
        while let Ok(e) = meter_rx.try_recv() {
            meter_events.push(e);
        }
        let killed_after = killed_after.unwrap();
        eprintln!(
            "masked live run: {:.1} s, cohorts from rounds {cohorts:?}, {} sums, {} failed rounds, {} masked readings",
            started.elapsed().as_secs_f64(),
            report.sums,
            report.failed_rounds,
            report.accepted
        );

        // What each round's sum must be: everything the meters masked for that round.
        let mut sent: BTreeMap<u64, (i64, usize)> = BTreeMap::new();
        for (_, e) in &meter_events {
            if let MaskedMeterEvent::Sent { round, reading, .. } = e {
                let s = sent.entry(*round).or_default();
                s.0 += reading.0;
                s.1 += 1;
            }
        }
        let sums: Vec<_> = bot_events
            .iter()
            .filter_map(|e| match e {
                MaskedBotEvent::Sum { round, total, enrolled, .. } => Some((*round, total.clone(), *enrolled)),
                _ => None,
            })
            .collect();
        assert!(sums.len() >= 8, "too few sums: {sums:?}");
        for (round, total, _) in &sums {
            let (watts, meters) = sent[round];
            assert_eq!(total.total, Watts(watts), "round {round}");
            assert_eq!(total.meters, meters, "round {round}");
        }
        // Both cohorts summed full rounds of all ten houses …
        for first in &cohorts[..2] {
            assert!(
                sums.iter().any(|(r, t, e)| r >= first && t.meters == HOUSES && usize::from(*e) == HOUSES),
                "no full round in the cohort from {first}: {sums:?}"
            );
        }
        // … and the rounds after the kill are the nine survivors' sum, from a cohort of ten.
        let after: Vec<_> = sums.iter().filter(|(r, ..)| *r > killed_after).collect();
        assert!(!after.is_empty());
        for (round, total, enrolled) in &after {
            assert_eq!((total.meters, *enrolled), (HOUSES - 1, HOUSES as u16), "round {round}");
            let survivors: i64 = (1..HOUSES)
                .map(|i| {
                    meter_events.iter().find_map(|(m, e)| match e {
                        MaskedMeterEvent::Sent { round: r, reading, .. } if *m == i && r == round => Some(reading.0),
                        _ => None,
                    }).unwrap()
                })
                .sum();
            assert_eq!(total.total, Watts(survivors), "round {round}");
        }
        assert_eq!(report.sums as usize, sums.len());

        // Rotation is re-enrolment: each surviving house used a new nickname per cohort.
        let mut seen = HashSet::new();
        for i in 1..HOUSES {
            let nicks: Vec<&RoomNick> = meter_events
                .iter()
                .filter_map(|(m, e)| match e {
                    MaskedMeterEvent::Joined(n) if *m == i => Some(n),
                    _ => None,
                })
                .collect();
            assert!(nicks.len() >= 2, "house {i} did not rotate: {nicks:?}");
            assert!(nicks.iter().all(|n| seen.insert((*n).clone())), "nickname reused");
        }

        // The bot never received a plaintext reading or a house's address.
        let plain: Vec<(String, String)> = (0..HOUSES)
            .flat_map(|i| (0..60).map(move |r| reading(i, r)))
            .map(|w| (w.to_string(), Watts(w).to_string()))
            .collect();
        let stanzas: Vec<&String> = bot_events
            .iter()
            .filter_map(|e| match e {
                MaskedBotEvent::Stanza(xml) => Some(xml),
                _ => None,
            })
            .collect();
        assert!(stanzas.len() > 100, "tap too small: {}", stanzas.len());
        let mut masked_readings = 0;
        for xml in &stanzas {
            assert!(!xml.contains("urn:xmpp:iot:sensordata"), "sensor data reached the bot: {xml}");
            for i in 0..HOUSES {
                assert!(!xml.contains(&format!("house{i}@")), "house {i}'s JID reached the bot: {xml}");
            }
            assert!(!xml.contains(" jid="), "a real JID reached the bot: {xml}");
            let el: Element = xml.parse().unwrap();
            let mut texts = Vec::new();
            visible_text(&el, &mut texts);
            for text in &texts {
                for (w, kw) in &plain {
                    // Whole words only: a round number such as 1796018420 or a hex cohort id such
                    // as 15560a80… holds a reading's digits by chance.
                    let number = text.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| t == w);
                    assert!(!number && !text.contains(kw.as_str()), "reading {w} in: {xml}");
                }
            }
            if let Some(Ok(p)) = masked::decode(&el.children().cloned().collect::<Vec<_>>())
                && let MaskMessage::Masked(m) = p.message
            {
                masked_readings += 1;
                let plain_quanta: Vec<u64> = meter_events
                    .iter()
                    .filter_map(|(_, e)| match e {
                        MaskedMeterEvent::Sent { round, reading, .. } if *round == m.round => {
                            Some((reading.0 / 10) as u64)
                        }
                        _ => None,
                    })
                    .collect();
                assert!(!plain_quanta.contains(&m.value), "an unmasked value on the wire");
            }
        }
        assert!(masked_readings as u64 >= report.accepted);
    });
    server.stop().unwrap();
}

#[test]
fn with_dp_noise_the_sums_stay_within_the_reported_noise() {
    // ε = 1 per interval against a 1 kW change in one house.
    let dp = DpSettings {
        epsilon: 1.0,
        sensitivity_watts: 1_000,
    };
    let Hood {
        server,
        _dir,
        bot,
        meters,
    } = hood(5, Some(dp));
    runtime().block_on(async {
        let (bot_stop, bot_stop_rx) = watch::channel(false);
        let (bot_tx, mut bot_rx) = mpsc::unbounded_channel();
        let bot_task = tokio::spawn(run_masked_bot(bot, Some(bot_tx), stopped(bot_stop_rx)));
        assert!(matches!(bot_rx.recv().await, Some(MaskedBotEvent::Joined(_))));
        let (stop, stop_rx) = watch::channel(false);
        let (meter_tx, mut meter_rx) = mpsc::unbounded_channel();
        let tasks: Vec<_> = meters
            .into_iter()
            .map(|m| tokio::spawn(run_masked_meter(m, Some(meter_tx.clone()), stopped(stop_rx.clone()))))
            .collect();
        let mut sums = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        while sums.len() < 4 {
            tokio::select! {
                () = &mut deadline => panic!("timed out with sums {sums:?}"),
                Some(e) = bot_rx.recv() => if let MaskedBotEvent::Sum { round, total, noise_sd, .. } = e {
                    sums.push((round, total, noise_sd));
                },
            }
        }
        stop.send(true).unwrap();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        bot_stop.send(true).unwrap();
        bot_task.await.unwrap().unwrap();
        let mut sent: BTreeMap<u64, i64> = BTreeMap::new();
        while let Ok(e) = meter_rx.try_recv() {
            if let MaskedMeterEvent::Sent { round, reading, .. } = e {
                *sent.entry(round).or_default() += reading.0;
            }
        }
        let mut errors = Vec::new();
        for (round, total, noise_sd) in &sums {
            let sd = noise_sd.expect("DP on: the bot reports the noise level").0;
            // Discrete Laplace with α = e^(−ε/100 quanta): sd ≈ 1.41 kW for one full share set.
            assert!((1_000..5_000).contains(&sd), "noise sd {sd} W");
            let error = total.total.0 - sent[round];
            assert!(error.abs() <= 8 * sd, "round {round}: error {error} W vs sd {sd} W");
            assert_eq!(error % 10, 0, "sums stay in 10 W quanta");
            errors.push(error);
        }
        // Noise is really added: four exact sums would be a 1-in-10⁸ event at this sd.
        assert!(errors.iter().any(|e| *e != 0), "{errors:?}");
        eprintln!("DP sums: errors {errors:?} W, reported sd {:?}", sums[0].2);
    });
    server.stop().unwrap();
}
