//! Private mode's meter, leader and helper cores together in the in-memory room: what the
//! leader publishes equals what the meters sent, forged and replayed reports change nothing,
//! impostors are not believed, restarts, kicks, stalls, rotation and a lossy network lose
//! nothing held and count nothing twice, and the helper alarms on a thin interval. Virtual
//! clock, seeded.

use gridmuc_agent::Agent;
use gridmuc_agent::RoomTransmit;
use gridmuc_agent::private::harness::{EPOCH, Faults, PrivateWorld, Who};
use gridmuc_agent::private::{
    HelperConfig, HelperEvent, LeaderConfig, LeaderEvent, PrivateMeterConfig, PrivateMeterEvent,
};
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::{AggregatorConfig, RoomNick, Watts};
use gridmuc_private::hostile::{Forgery, forged_report};
use gridmuc_private::{IntervalResult, PrivateConfig, PrivateParams, Refusal, VerifyKey, report};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::sync::Arc;

const P: i64 = 5_000;

struct Setup {
    cfg: PrivateConfig,
    meter: PrivateMeterConfig,
    leader: LeaderConfig,
    helper: HelperConfig,
}

fn nick(s: &str) -> RoomNick {
    RoomNick::new(s).expect("a nickname")
}

fn setup(seed: u64, min_reports: u32) -> Setup {
    let mut rng = StdRng::seed_from_u64(seed);
    let lk = Arc::new(BotSecretKey::generate(&mut rng));
    let hk = Arc::new(BotSecretKey::generate(&mut rng));
    let mut params = PrivateParams::new("hood@rooms.test", 5, lk.public(), hk.public());
    params.min_reports = min_reports;
    let cfg = PrivateConfig::new(params).expect("config");
    let mut detectors = AggregatorConfig::default();
    detectors.overload.rating = Watts(40_000);
    Setup {
        meter: PrivateMeterConfig {
            private: cfg.clone(),
            leader_nick: nick("substation"),
            jitter: [0.1, 0.5],
            rotate: [3_600_000, 3_600_000],
            rejoin_gap: [1_000, 2_000],
            answer_timeout: 2_000,
            drain: 1_000,
            keep_intervals: 6,
            catch_up: 1_000,
            save_reports: false,
        },
        leader: LeaderConfig {
            nick: nick("substation"),
            helper_nick: nick("helper"),
            operators: vec!["op@grid.test".into()],
            private: cfg.clone(),
            key: lk,
            verify_key: VerifyKey::generate(&mut rng),
            detectors,
            spike_factor: 10.0,
            spike_floor_watts: 5_000,
            grace: 2_000,
            helper_timeout: 1_500,
            batch: 50,
            collect_attempts: 4,
            ping_timeout: 2_000,
        },
        helper: HelperConfig {
            nick: nick("helper"),
            leader_nick: nick("substation"),
            operators: vec!["regulator@other.test".into()],
            private: cfg.clone(),
            key: hk,
            alarm_ratio: 0.5,
            alarm_window: 8,
            ping_timeout: 2_000,
        },
        cfg,
    }
}

/// House `h`'s reading in interval `i`: 300 W upwards; house 0 spikes to 15 kW in even ones.
fn load(h: usize, i: u64) -> Option<u32> {
    if h == 0 && i.is_multiple_of(2) {
        return Some(15_000);
    }
    Some(300 + 37 * h as u32 + 11 * (i % 7) as u32)
}

fn world(
    seed: u64,
    houses: usize,
    s: &Setup,
    loads: gridmuc_agent::private::harness::Loads,
) -> PrivateWorld {
    PrivateWorld::new(
        seed,
        houses,
        s.meter.clone(),
        s.leader.clone(),
        s.helper.clone(),
        loads,
    )
}

fn published(w: &PrivateWorld) -> BTreeMap<u64, IntervalResult> {
    w.leader_events()
        .iter()
        .filter_map(|e| match e {
            LeaderEvent::Interval { result, .. } => Some((result.interval, result.clone())),
            _ => None,
        })
        .collect()
}

/// What the meters sent per interval, from their own `Sent` events and the load table.
fn expected(
    w: &PrivateWorld,
    cfg: &PrivateConfig,
    loads: impl Fn(usize, u64) -> Option<u32>,
) -> BTreeMap<u64, (u64, u64, Vec<u64>)> {
    let mut want: BTreeMap<u64, (u64, u64, Vec<u64>)> = BTreeMap::new();
    for (i, e) in w.meter_events() {
        if let PrivateMeterEvent::Sent { interval, .. } = e {
            let watts = cfg
                .quantise(loads(w.meters[i].house, *interval).expect("a load"))
                .expect("in range");
            let e = want
                .entry(*interval)
                .or_insert((0, 0, vec![0; cfg.buckets()]));
            e.0 += 1;
            e.1 += u64::from(watts);
            e.2[cfg.bucket_of(watts)] += 1;
        }
    }
    want
}

fn first_interval() -> u64 {
    (EPOCH.millis() / P) as u64
}

#[test]
fn totals_and_histograms_equal_what_the_meters_sent_and_spike_notices_agree() {
    let s = setup(1, 3);
    let mut w = world(1, 12, &s, Box::new(load));
    w.run_for(60_000);
    let got = published(&w);
    let want = expected(&w, &s.cfg, load);
    // Every interval a meter reported in and that has closed was published exactly.
    let closed: BTreeMap<_, _> = want.iter().filter(|(i, _)| got.contains_key(i)).collect();
    assert!(closed.len() >= 9, "{} intervals published", closed.len());
    for (i, (n, total, hist)) in closed {
        let r = &got[i];
        assert_eq!(
            (r.reports, r.total_watts, &r.histogram),
            (*n, *total, hist),
            "interval {i}"
        );
    }
    // The spike count names house 0's intervals, and only house 0's meter is told.
    let spikes: Vec<(u64, u64)> = w
        .leader_events()
        .iter()
        .filter_map(|e| match e {
            LeaderEvent::Interval {
                result,
                spike: Some(s),
                ..
            } if s.reports > 0 => Some((result.interval, s.reports)),
            _ => None,
        })
        .collect();
    assert!(!spikes.is_empty());
    assert!(
        spikes.iter().all(|(i, n)| i.is_multiple_of(2) && *n == 1),
        "{spikes:?}"
    );
    let notices: Vec<(usize, u64)> = w
        .meter_events()
        .filter_map(|(m, e)| match e {
            PrivateMeterEvent::HouseAbove { interval, .. } => Some((m, *interval)),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices.iter().map(|n| n.1).collect::<Vec<_>>(),
        spikes.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    assert!(notices.iter().all(|(m, _)| *m == 0));
    // Every published report left its meter's keeping; no refusal, nothing unverified.
    assert_eq!(w.leader.core.refusals().total(), 0);
    assert!(w.meters.iter().all(|m| m.node.core.stats().unverified == 0));
}

#[test]
fn forged_reports_are_refused_counted_and_change_nothing() {
    let s = setup(2, 3);
    let mut w = world(2, 6, &s, Box::new(load));
    w.run_for(3_000);
    let i = first_interval() + 1;
    let mut rng = StdRng::seed_from_u64(99);
    // Wait until interval i has begun, then three forgers each send one report.
    while (w.now().millis() / P) as u64 != i {
        w.run_for(100);
    }
    for (k, f) in [
        Forgery::AboveBound,
        Forgery::TwoBuckets,
        Forgery::TamperedProof,
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = forged_report(&s.cfg, f, 1_000, i, &mut rng).to_bytes();
        w.hostile_send(
            nick(&format!("forger-{k}")),
            Some(nick("substation")),
            bytes,
        );
    }
    w.run_for(20_000);
    let r = published(&w).remove(&i).expect("interval published");
    let want = expected(&w, &s.cfg, load)
        .remove(&i)
        .expect("meters reported");
    assert_eq!((r.reports, r.total_watts, r.histogram), want);
    let refused = w.leader.core.refusals();
    assert_eq!(refused.get(Refusal::ProofFailed), 2, "{refused:?}");
    assert_eq!(refused.get(Refusal::JointRandMismatch), 1, "{refused:?}");
    // The forgers got signed verdicts naming the reason (not counted as held).
    let verdicts = w
        .hostile_inbox
        .iter()
        .filter(|(_, b)| {
            gridmuc_private::MessageKind::of(b) == Some(gridmuc_private::MessageKind::Verdict)
        })
        .count();
    assert_eq!(verdicts, 3);
}

#[test]
fn a_replayed_report_is_refused_and_a_second_report_per_nickname_is_rate_limited() {
    let s = setup(3, 3);
    let mut w = world(3, 5, &s, Box::new(load));
    w.run_for(8_000);
    // Replay a meter's report bytes under another nickname.
    let (_, t) = w.meters[1]
        .node
        .transmits
        .iter()
        .find(|(_, t)| {
            matches!(
                t,
                gridmuc_agent::private::Transmit::Send {
                    payload: Some(_),
                    ..
                }
            )
        })
        .cloned()
        .expect("a report sent");
    let gridmuc_agent::private::Transmit::Send {
        payload: Some(bytes),
        ..
    } = t
    else {
        unreachable!()
    };
    w.hostile_send(nick("replayer"), Some(nick("substation")), bytes);
    w.run_for(200);
    assert_eq!(w.leader.core.refusals().get(Refusal::Replay), 1);
    // One nickname, two different reports in one interval: the second is refused.
    let i = (w.now().millis() / P) as u64;
    let mut rng = StdRng::seed_from_u64(5);
    for watts in [500, 600] {
        let b = report(&s.cfg, watts, i, &mut rng)
            .expect("report")
            .to_bytes();
        w.hostile_send(nick("greedy"), Some(nick("substation")), b);
        w.run_for(100);
    }
    assert_eq!(w.leader.core.refusals().get(Refusal::RateLimited), 1);
}

#[test]
fn a_third_of_the_meters_missing_an_interval_only_lowers_the_count() {
    let s = setup(4, 3);
    let skip = first_interval() + 4;
    let loads = move |h: usize, i: u64| {
        if i == skip && h.is_multiple_of(3) {
            None
        } else {
            load(h, i)
        }
    };
    let mut w = world(4, 9, &s, Box::new(loads));
    w.run_for(40_000);
    let got = published(&w);
    let want = expected(&w, &s.cfg, loads);
    assert_eq!(got[&skip].reports, 6);
    assert_eq!(got[&(skip + 1)].reports, 9);
    for i in [skip, skip + 1] {
        assert_eq!(
            (
                got[&i].reports,
                got[&i].total_watts,
                got[&i].histogram.clone()
            ),
            want[&i]
        );
    }
}

#[test]
fn the_leader_learns_only_aggregates_of_at_least_min_reports() {
    let s = setup(5, 4);
    // Three houses: never enough for the helper to release anything.
    let mut w = world(5, 3, &s, Box::new(load));
    w.run_for(30_000);
    assert!(published(&w).is_empty());
    assert!(
        w.leader_events()
            .iter()
            .any(|e| matches!(e, LeaderEvent::Skipped { reports: 3, .. }))
    );
    // Nothing the leader told its caller carries a per-house value: only counts and refusals.
    for e in w.leader_events() {
        assert!(
            matches!(e, LeaderEvent::Joined { .. } | LeaderEvent::Skipped { .. }),
            "{e:?}"
        );
    }
    // And what it holds of a report, its sealed helper share, does not open with its key.
    let mut rng = StdRng::seed_from_u64(1);
    let r = report(&s.cfg, 1_840, 1, &mut rng).expect("report");
    assert!(s.leader.key.open(&[], r.helper_share()).is_err());
}

#[test]
fn an_impostor_holding_the_leader_nickname_is_not_believed() {
    let s = setup(6, 3);
    let mut w = world(6, 4, &s, Box::new(load));
    // The impostor takes the nickname first; the leader waits for it.
    assert!(w.hostile_join(nick("substation")));
    w.run_for(12_000);
    assert!(
        !w.hostile_inbox.is_empty(),
        "meters sent it their sealed reports"
    );
    // Its unsigned "verdict" and a notice signed by the wrong key are not believed.
    let mut rng = StdRng::seed_from_u64(2);
    let fake = BotSecretKey::generate(&mut rng);
    let notice = gridmuc_private::LeaderNotice::Hello { epoch: 1 }.to_bytes(&s.cfg);
    w.hostile_send(
        nick("substation"),
        None,
        gridmuc_private::sign_message(&fake, notice),
    );
    w.run_for(1_000);
    assert!(w.meters.iter().all(|m| m.node.core.stats().unverified >= 1));
    assert!(w.meters.iter().all(|m| m.node.core.stats().published == 0));
    // The helper ignores requests from the impostor's nickname too.
    assert_eq!(w.helper.core.unverified(), 1);
}

#[test]
fn a_sybil_house_counts_once_per_nickname_and_within_bounds() {
    let s = setup(7, 3);
    let mut w = world(7, 4, &s, Box::new(load));
    for _ in 0..4 {
        w.add_meter(3);
    }
    w.run_for(25_000);
    let got = published(&w);
    let want = expected(&w, &s.cfg, load);
    let some = got.keys().next().copied().expect("published");
    assert_eq!(got[&some].reports, 8);
    assert_eq!(
        (
            got[&some].reports,
            got[&some].total_watts,
            got[&some].histogram.clone()
        ),
        want[&some]
    );
    assert_eq!(w.leader.core.refusals().total(), 0);
}

#[test]
fn a_leader_restart_loses_no_report_a_meter_still_keeps() {
    let s = setup(8, 3);
    let mut w = world(8, 6, &s, Box::new(load));
    w.run_for(9_000);
    w.restart_leader(500);
    w.run_for(30_000);
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    let got = published(&w);
    assert!(got.len() >= 5, "{:?}", got.keys());
    assert!(
        w.meters.iter().all(|m| m.node.core.stats().expired == 0),
        "nothing given up"
    );
}

/// Meter 0 is killed outright while its report for an interval has reached nobody (every
/// payload lost meanwhile) and is back 3 s later, before that interval closes. Returns the
/// reports published for that interval (six houses).
fn killed_meter_interval(save_reports: bool) -> (u64, u64) {
    let mut s = setup(12, 3);
    s.meter.save_reports = save_reports;
    let mut w = world(12, 6, &s, Box::new(load));
    w.run_for(9_000);
    // 10 s: the start of an interval; every send of it is lost until 12.6 s.
    let start = w.now().plus(1_000);
    let interval = (start.millis() / P) as u64;
    w.run_for(1_000);
    w.faults.drop = 1.0;
    w.run_for(2_600);
    assert!(
        w.meters[0].node.core.pending() >= 1,
        "the report is still pending"
    );
    assert_eq!(w.meters[0].saved.is_empty(), !save_reports);
    w.faults.drop = 0.0;
    w.restart_meter(0, 3_000);
    w.run_for(30_000);
    (interval, published(&w)[&interval].reports)
}

#[test]
fn a_meter_killed_outright_resends_the_report_it_saved_and_its_interval_is_whole() {
    let (interval, reports) = killed_meter_interval(true);
    assert_eq!(reports, 6, "interval {interval}");
    // The same kill without saving loses the house from that interval.
    let (interval, reports) = killed_meter_interval(false);
    assert_eq!(reports, 5, "interval {interval}");
}

#[test]
fn a_helper_restart_loses_nothing() {
    let s = setup(9, 3);
    let mut w = world(9, 6, &s, Box::new(load));
    w.run_for(9_000);
    w.restart_helper(500);
    w.run_for(30_000);
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    let got = published(&w);
    assert!(got.len() >= 5, "{:?}", got.keys());
    assert!(
        !w.leader_events()
            .iter()
            .any(|e| matches!(e, LeaderEvent::Lost { .. }))
    );
    assert!(
        w.helper_events()
            .iter()
            .filter(|e| matches!(e, HelperEvent::KeyAccepted))
            .count()
            >= 2
    );
    assert!(w.meters.iter().all(|m| m.node.core.stats().expired == 0));
}

/// What the meters sent per interval, less what the leader refused to them (too late).
fn expected_less_refused(
    w: &PrivateWorld,
    cfg: &PrivateConfig,
    loads: impl Fn(usize, u64) -> Option<u32>,
) -> BTreeMap<u64, (u64, u64, Vec<u64>)> {
    let mut want = expected(w, cfg, &loads);
    for (i, e) in w.meter_events() {
        if let PrivateMeterEvent::Refused { interval, .. } = e {
            let watts = cfg
                .quantise(loads(w.meters[i].house, *interval).expect("a load"))
                .expect("in range");
            if let Some(e) = want.get_mut(interval) {
                e.0 -= 1;
                e.1 -= u64::from(watts);
                e.2[cfg.bucket_of(watts)] -= 1;
            }
        }
    }
    want
}

/// Each interval is published at most once, and exactly as `want` says.
fn assert_published_exactly(w: &PrivateWorld, want: &BTreeMap<u64, (u64, u64, Vec<u64>)>) {
    let mut seen = BTreeMap::new();
    for e in w.leader_events() {
        if let LeaderEvent::Interval { result, .. } = e {
            *seen.entry(result.interval).or_insert(0) += 1;
            assert_eq!(
                (result.reports, result.total_watts, result.histogram.clone()),
                want[&result.interval],
                "interval {}",
                result.interval
            );
        }
    }
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
}

fn count_transmits(
    node: &[(gridmuc_core::Timestamp, gridmuc_agent::private::Transmit)],
    t: &RoomTransmit,
) -> usize {
    node.iter()
        .filter(|(_, x)| matches!(x, gridmuc_agent::private::Transmit::Room(r) if r == t))
        .count()
}

#[test]
fn the_helper_alarms_its_operators_when_an_interval_holds_far_fewer_reports() {
    let s = setup(10, 3);
    let thin = first_interval() + 5;
    // Six of ten houses are silent in one interval: four reports against ten before.
    let loads = move |h: usize, i: u64| if i == thin && h < 6 { None } else { load(h, i) };
    let mut w = world(10, 10, &s, Box::new(loads));
    w.run_for(45_000);
    let alarms: Vec<&HelperEvent> = w
        .helper_events()
        .iter()
        .filter(|e| matches!(e, HelperEvent::Alarm { .. }))
        .collect();
    assert_eq!(
        alarms,
        [&HelperEvent::Alarm {
            interval: thin,
            reports: 4,
            typical: 10
        }]
    );
    // The helper's own operator is told; the leader's is not.
    let told: Vec<&(String, String)> = w
        .operator_inbox
        .iter()
        .filter(|(_, body)| body.contains("holds 4 reports against up to 10"))
        .collect();
    assert_eq!(told.len(), 1, "{:?}", w.operator_inbox);
    assert_eq!(told[0].0, "regulator@other.test");
    // The thin interval was still released and published, exactly.
    assert_published_exactly(&w, &expected(&w, &s.cfg, loads));
    assert_eq!(published(&w)[&thin].reports, 4);
}

#[test]
fn a_lossy_duplicating_delaying_network_loses_nothing_held_and_counts_nothing_twice() {
    let mut s = setup(11, 3);
    // Room for a lost report to go again before its interval is collected.
    s.meter.answer_timeout = 800;
    s.leader.grace = 4_000;
    let mut w = world(11, 10, &s, Box::new(load));
    w.faults = Faults {
        drop: 0.1,
        duplicate: 0.2,
        delay: 300,
    };
    w.run_for(60_000);
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    let got = published(&w);
    assert!(got.len() >= 9, "{:?}", got.keys());
    // Every meter's every report was counted: full intervals only, no refusal but replays.
    assert!(got.values().all(|r| r.reports == 10), "{got:?}");
    let refused = w.leader.core.refusals();
    assert_eq!(refused.total(), refused.get(Refusal::Replay), "{refused:?}");
    assert!(
        refused.get(Refusal::Replay) > 0,
        "duplicates reached the leader"
    );
    assert!(
        !w.leader_events()
            .iter()
            .any(|e| matches!(e, LeaderEvent::Lost { .. }))
    );
}

#[test]
fn nicknames_rotate_mid_run_and_every_report_counts_once() {
    let mut s = setup(12, 3);
    s.meter.rotate = [6_000, 11_000];
    s.meter.rejoin_gap = [300, 1_200];
    let mut w = world(12, 8, &s, Box::new(load));
    w.run_for(60_000);
    let mut nicks = Vec::new();
    for (_, e) in w.meter_events() {
        if let PrivateMeterEvent::Joined(n) = e {
            nicks.push(n.clone());
        }
    }
    let distinct: std::collections::BTreeSet<_> = nicks.iter().collect();
    assert_eq!(distinct.len(), nicks.len(), "a nickname came back");
    assert!(
        w.meters.iter().all(|m| m.node.core.stats().nicks >= 5),
        "{:?}",
        w.meters
            .iter()
            .map(|m| m.node.core.stats().nicks)
            .collect::<Vec<_>>()
    );
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    assert!(published(&w).len() >= 9);
    assert_eq!(w.leader.core.refusals().total(), 0);
}

/// Meter 2 of six is put out of the room by `out` 11 s in; 30 s later it is back under a new
/// nickname (its second), and every interval was published with all six reports. Returns the
/// world and the nickname it had before.
fn meter_back_in_the_room(
    seed: u64,
    out: impl FnOnce(&mut PrivateWorld),
) -> (PrivateWorld, RoomNick) {
    let s = setup(seed, 3);
    let mut w = world(seed, 6, &s, Box::new(load));
    w.run_for(11_000);
    let before = w.meters[2].node.core.nick().cloned().expect("in the room");
    out(&mut w);
    w.run_for(30_000);
    let after = w.meters[2]
        .node
        .core
        .nick()
        .cloned()
        .expect("back in the room");
    assert_ne!(before, after);
    assert_eq!(w.meters[2].node.core.stats().nicks, 2);
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    let got = published(&w);
    assert!(got.len() >= 5, "{:?}", got.keys());
    assert!(got.values().all(|r| r.reports == 6), "{got:?}");
    (w, before)
}

#[test]
fn a_kicked_meter_rejoins_under_a_new_nickname_and_loses_nothing() {
    meter_back_in_the_room(13, |w| w.kick(Who::Meter(2)));
}

#[test]
fn a_meter_the_room_forgot_rejoins_under_a_new_nickname_and_loses_nothing() {
    // The room restarts on another cluster node without the meter and tells it nothing; its
    // next report comes back `not-acceptable`, and it rejoins as in a rotation.
    let (w, before) = meter_back_in_the_room(15, |w| w.forget(Who::Meter(2)));
    let leaves = count_transmits(&w.meters[2].node.transmits, &RoomTransmit::Leave(before));
    assert_eq!(leaves, 1);
}

/// A stalled meter's world: its session stalls at 9 s and takes 4.5 s to replace, so it is out
/// of the room across an interval's end and back within the catch-up window.
fn stalled_meter(catch_up: i64) -> (PrivateWorld, Setup) {
    let mut s = setup(14, 3);
    s.meter.catch_up = catch_up;
    let mut w = world(14, 6, &s, Box::new(load));
    w.renew_delay = 4_500;
    w.run_for(9_000);
    w.stall(Who::Meter(1));
    w.run_for(30_000);
    (w, s)
}

#[test]
fn a_stalled_meter_session_is_pinged_renewed_and_catches_up_what_it_missed() {
    let (w, s) = stalled_meter(1_000);
    let m = &w.meters[1].node;
    let ping = count_transmits(&m.transmits, &RoomTransmit::Ping);
    let renew = count_transmits(&m.transmits, &RoomTransmit::RenewSession);
    assert_eq!((ping, renew), (1, 1));
    assert_eq!(m.core.stats().nicks, 2);
    // The interval it was out for was measured after it ended, and still counted.
    let late: Vec<u64> = m
        .transmits
        .iter()
        .filter_map(|(at, t)| match t {
            gridmuc_agent::private::Transmit::Measure { slot } if at.since(*slot) >= P => {
                Some((slot.millis() / P) as u64)
            }
            _ => None,
        })
        .collect();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    let got = published(&w);
    assert_eq!(got[&late[0]].reports, 6);
    assert!(got.values().all(|r| r.reports == 6), "{got:?}");
    // Its resends while stalled were refused as replays (held already) or, once their
    // interval had closed, as too late: counted once either way.
    let refused = w.leader.core.refusals();
    assert_eq!(
        refused.total(),
        refused.get(Refusal::Replay) + refused.get(Refusal::IntervalClosed),
        "{refused:?}"
    );
    // The meter does not take a late resend of a counted report for a refusal, and counts it
    // apart from reports that never had a verdict.
    let stats = m.core.stats();
    assert!(stats.refused.is_empty(), "{stats:?}");
    assert_eq!(
        (stats.late_resends, stats.expired),
        (refused.get(Refusal::IntervalClosed), 0),
        "{stats:?}"
    );
    // Without catch-up the same outage costs that interval its report.
    let (w, _) = stalled_meter(0);
    assert_eq!(published(&w)[&late[0]].reports, 5);
}

/// The leader of six meters is put out of the room by `out` 9 s in; 40 s later it has joined
/// twice and published full intervals again, exactly what reached it in time (the rest was
/// refused to meters as too late, and nothing was counted twice). Returns its pings and
/// session renewals.
fn leader_back_in_the_room(seed: u64, out: impl FnOnce(&mut PrivateWorld)) -> (usize, usize) {
    let s = setup(seed, 3);
    let mut w = world(seed, 6, &s, Box::new(load));
    w.run_for(9_000);
    out(&mut w);
    w.run_for(40_000);
    let joins = w
        .leader_events()
        .iter()
        .filter(|e| matches!(e, LeaderEvent::Joined { .. }))
        .count();
    assert_eq!(joins, 2);
    assert_published_exactly(&w, &expected_less_refused(&w, &s.cfg, load));
    let got = published(&w);
    let last: Vec<u64> = got.values().rev().take(4).map(|r| r.reports).collect();
    assert_eq!(last, [6, 6, 6, 6], "{got:?}");
    let l = &w.leader;
    let ping = count_transmits(&l.transmits, &RoomTransmit::Ping);
    let renew = count_transmits(&l.transmits, &RoomTransmit::RenewSession);
    (ping, renew)
}

#[test]
fn a_stalled_leader_session_is_pinged_renewed_and_publishes_again() {
    let probes = leader_back_in_the_room(15, |w| w.stall(Who::Leader));
    assert_eq!(probes, (1, 1));
}

#[test]
fn a_leader_the_room_forgot_finds_out_by_self_ping_and_publishes_again() {
    // The room restarts on another cluster node without the leader and tells it nothing;
    // reports to its nickname bounce, so it hears nothing, self-pings, and rejoins. Its
    // session was fine: one probe, and no renewal.
    let probes = leader_back_in_the_room(17, |w| w.forget(Who::Leader));
    assert_eq!(probes, (1, 0));
}

#[test]
fn a_flooding_nickname_is_told_rate_limited_once_per_interval() {
    let s = setup(16, 3);
    let mut w = world(16, 4, &s, Box::new(load));
    w.run_for(8_000);
    let i = (w.now().millis() / P) as u64;
    let mut rng = StdRng::seed_from_u64(6);
    // Five different reports from one nickname in one interval, then one in the next.
    for (k, interval) in [i, i, i, i, i, i + 1].into_iter().enumerate() {
        let b = report(&s.cfg, 500 + 10 * k as u32, interval, &mut rng)
            .expect("report")
            .to_bytes();
        w.hostile_send(nick("flood"), Some(nick("substation")), b);
        w.run_for(50);
    }
    w.run_for(500);
    assert_eq!(w.leader.core.refusals().get(Refusal::RateLimited), 4);
    let refused_events = w
        .leader_events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                LeaderEvent::Refused {
                    reason: Refusal::RateLimited,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refused_events, 4);
    // Verdicts: one held and one rate_limited for interval i, one held for i + 1.
    let verdicts = w
        .hostile_inbox
        .iter()
        .filter(|(_, b)| {
            gridmuc_private::MessageKind::of(b) == Some(gridmuc_private::MessageKind::Verdict)
        })
        .count();
    assert_eq!(verdicts, 3);
}

/// The live demo's rotation: 5-s intervals, nicknames for 40–80 s and `rejoin_gap` between
/// them; ten minutes.
fn demo_rotation(seed: u64, houses: usize, rejoin_gap: [i64; 2]) -> (PrivateWorld, Setup) {
    let mut s = setup(seed, 3);
    s.meter.jitter = [0.1, 0.6];
    s.meter.rotate = [40_000, 80_000];
    s.meter.rejoin_gap = rejoin_gap;
    s.meter.drain = 2_000;
    let mut w = world(seed, houses, &s, Box::new(load));
    w.run_for(600_000);
    (w, s)
}

/// Every rotation of every meter: the intervals missed between the last one measured under
/// the old nickname and the first under the new one, and when that first one was measured
/// relative to its start (a catch-up would be at least an interval late).
fn rotations(w: &PrivateWorld) -> Vec<(u64, i64)> {
    let mut out = Vec::new();
    for m in &w.meters {
        let (mut last, mut rotated) = (None, false);
        for (at, t) in &m.node.transmits {
            match t {
                gridmuc_agent::private::Transmit::Room(RoomTransmit::Leave(_)) => rotated = true,
                gridmuc_agent::private::Transmit::Measure { slot } => {
                    let i = (slot.millis() / P) as u64;
                    if let Some(l) = last.filter(|_| rotated) {
                        out.push((i - l - 1, at.since(*slot)));
                    }
                    (last, rotated) = (Some(i), false);
                }
                _ => {}
            }
        }
    }
    out
}

/// Published counts below `houses`: (interval, reports).
fn short_intervals(w: &PrivateWorld, houses: usize) -> Vec<(u64, u64)> {
    published(w)
        .values()
        .filter(|r| r.reports != houses as u64)
        .map(|r| (r.interval, r.reports))
        .collect()
}

#[test]
fn demo_rotation_loses_no_interval_when_the_gap_fits_before_the_next_send() {
    // Each house rotates every 40–80 s; the gap (0.5–2 s) always fits after a verdict.
    let houses = 50;
    let (w, s) = demo_rotation(17, houses, [500, 2_000]);
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    assert!(published(&w).len() >= 115, "{:?}", published(&w).keys());
    let r = rotations(&w);
    assert!(r.len() >= 6 * houses, "{} rotations", r.len());
    // Every interval after the first holds every meter's report, and no new nickname
    // reported an interval that had ended.
    assert_eq!(short_intervals(&w, houses), []);
    assert!(r.iter().all(|&(lost, late)| lost == 0 && late < P), "{r:?}");
    let mut nicks = std::collections::BTreeSet::new();
    for (_, e) in w.meter_events() {
        if let PrivateMeterEvent::Joined(n) = e {
            assert!(nicks.insert(n.clone()), "{n:?} came back");
        }
    }
}

#[test]
fn a_rejoin_gap_longer_than_the_time_to_the_next_send_misses_only_what_it_covers() {
    // 5–60 s away at a 5-s interval: a rotation waits up to two reports for a point where
    // 5 s fit before the next send; where none comes it leaves anyway and misses the
    // intervals whose sends fall into the gap. The new nickname starts with the interval it
    // joined in, or the next: from the leave (before the next send) to the join (60 s and a
    // round trip later at most) that is at most 60 / 5 + 2 intervals.
    let (gap, houses) = ([5_000, 60_000], 20);
    let (w, s) = demo_rotation(18, houses, gap);
    assert_published_exactly(&w, &expected(&w, &s.cfg, load));
    let r = rotations(&w);
    let bound = (gap[1] / P + 2) as u64;
    assert!(
        r.iter().all(|&(lost, late)| lost <= bound && late < P),
        "{r:?}"
    );
    // About half the rotations find room (seed 18: the counts lack 329 house-intervals after
    // 137 rotations); the loss is real and within the bound.
    let lossless = r.iter().filter(|x| x.0 == 0).count();
    assert!(
        lossless * 3 >= r.len() && lossless < r.len(),
        "{lossless} of {}",
        r.len()
    );
    let shortfall: u64 = short_intervals(&w, houses)
        .iter()
        .map(|&(_, n)| houses as u64 - n)
        .sum();
    let left = w
        .meter_events()
        .filter(|(_, e)| matches!(e, PrivateMeterEvent::Left(_)))
        .count() as u64;
    assert!(
        shortfall > 0 && shortfall <= left * bound,
        "{shortfall} of {left} rotations"
    );
}
