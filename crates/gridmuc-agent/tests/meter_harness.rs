//! The meter core in the in-memory room: rotation, crashes, stalls, pacing, refusals,
//! impostors and backoff, each on a virtual clock, deterministic for its seed.

use gridmuc_agent::Agent;
use gridmuc_agent::harness::{EPOCH, Faults, Occupant, Policy, World, load, meter_config};
use gridmuc_agent::liveness::ping_bound;
use gridmuc_agent::meter::{Input, MeterEvent, MeterReport, Mode, Transmit};
use gridmuc_core::Timestamp;
use gridmuc_core::time::{MINUTE, SECOND};
use std::collections::HashSet;

/// Every house acknowledged every reading it sent, and the bot counted each exactly once,
/// with the value measured for its interval.
fn assert_nothing_lost(world: &World) -> Vec<MeterReport> {
    let reports: Vec<MeterReport> = world.houses.iter().map(|h| h.core.report()).collect();
    for r in &reports {
        assert_eq!(r.acknowledged, r.sent, "{r:?}");
        assert_eq!((r.unacknowledged, r.dropped, r.expired), (0, 0, 0), "{r:?}");
    }
    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    assert_eq!(world.bot.counted.len() as u64, sent);
    for (house, h) in world.houses.iter().enumerate() {
        for (_, t) in &h.transmits {
            if let Transmit::Send { id, reading, .. } = t {
                let (_, counted) = &world.bot.counted[id];
                assert_eq!(counted.power, load(house, reading.at).quantise(10));
                assert_eq!(counted.at, reading.at);
            }
        }
    }
    reports
}

fn joins(events: &[MeterEvent]) -> Vec<gridmuc_core::RoomNick> {
    events
        .iter()
        .filter_map(|e| match e {
            MeterEvent::Joined(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Every interval from the first measured to the last was measured, none twice.
fn assert_contiguous(measured: &[Timestamp], interval: i64) {
    let mut sorted = measured.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), measured.len(), "an interval measured twice");
    for w in sorted.windows(2) {
        assert_eq!(w[1].since(w[0]), interval, "a gap in {sorted:?}");
    }
}

#[test]
fn rotation_leaves_waits_the_gap_and_rejoins_under_a_new_nickname_losing_nothing() {
    let mut cfg = meter_config(Mode::Direct);
    cfg.rotate = [10 * MINUTE, 10 * MINUTE];
    cfg.rejoin_gap = [30 * SECOND, 30 * SECOND];
    let mut world = World::new(1, 2, &cfg);
    world.run_for(25 * MINUTE);
    world.shutdown(5 * SECOND);

    let reports = assert_nothing_lost(&world);
    for (h, r) in world.houses.iter().zip(&reports) {
        let nicks = joins(&h.events);
        assert_eq!(nicks.len(), 3, "{:?}", h.events);
        assert_eq!(r.nicks, 3);
        assert_eq!(
            nicks.iter().collect::<HashSet<_>>().len(),
            3,
            "a nickname came back"
        );
        assert_eq!(
            r.resent, 0,
            "nothing was left for the next nickname to resend"
        );
        // Leave, then the gap, then the next join: never two nicknames at once.
        let presence: Vec<(Timestamp, &Transmit)> = h
            .transmits
            .iter()
            .filter(|(_, t)| matches!(t, Transmit::Join(_) | Transmit::Leave(_)))
            .map(|(at, t)| (*at, t))
            .collect();
        assert_eq!(presence.len(), 6, "{presence:?}");
        for pair in presence[1..5].chunks(2) {
            let [(left, Transmit::Leave(old)), (joined, Transmit::Join(new))] = pair else {
                panic!("not leave then join: {pair:?}");
            };
            assert_ne!(old, new);
            assert_eq!(joined.since(*left), 30 * SECOND);
        }
        // Each reading went out under the nickname of its time, and the gap's intervals were
        // not caught up (that would link the new nickname to the old one).
        for (_, t) in &h.transmits {
            if let Transmit::Send { id, .. } = t {
                assert!(nicks.contains(&world.bot.counted[id].0));
            }
        }
        assert_eq!(h.measured.len() as u64, r.sent);
    }
    assert!(world.nicks_of(0).is_empty() && world.nicks_of(1).is_empty());
}

#[test]
fn after_a_server_crash_every_reading_is_resent_and_acknowledged_exactly_once() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(2, 5, &cfg);
    world.run_for(4 * MINUTE);
    // Crash while at least one reading is on its way.
    world.run_until_in_flight();
    world.crash(150 * SECOND);
    world.run_for(10 * MINUTE);
    world.shutdown(5 * SECOND);

    let reports = assert_nothing_lost(&world);
    let resent: u64 = reports.iter().map(|r| r.resent).sum();
    assert!(resent >= 1, "{reports:?}");
    for (h, r) in world.houses.iter().zip(&reports) {
        assert_eq!(r.nicks, 2, "one rejoin after the restart: {r:?}");
        // The intervals the crash made it miss were measured after the rejoin, not skipped.
        assert_eq!(r.paced, 0);
        assert_contiguous(&h.measured, cfg.interval);
        assert!(h.measured.len() >= 12, "{:?}", h.measured);
    }
    // Copies of readings whose verdict the crash took were answered again, not counted again.
    assert_eq!(
        world.bot.received,
        world.bot.counted.len() as u64 + world.bot.duplicates
    );
}

#[test]
fn a_stalled_session_is_pinged_then_renewed_and_nothing_is_lost() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(3, 2, &cfg);
    world.run_for(3 * MINUTE + 50 * SECOND);
    world.stall(0);
    world.run_for(5 * MINUTE);
    world.shutdown(5 * SECOND);

    let reports = assert_nothing_lost(&world);
    let stalled = &world.houses[0];
    assert_eq!(stalled.count(|t| *t == Transmit::Ping), 1);
    assert_eq!(stalled.count(|t| *t == Transmit::RenewSession), 1);
    assert_eq!(reports[0].nicks, 2);
    assert!(reports[0].resent >= 1);
    // The ping went out once the answer was overdue, the renewal once the ping was.
    let at = |want: &Transmit| {
        stalled
            .transmits
            .iter()
            .find(|(_, t)| t == want)
            .map(|(at, _)| *at)
    };
    let ping = at(&Transmit::Ping).expect("a ping");
    let renew = at(&Transmit::RenewSession).expect("a renewal");
    let unanswered = stalled
        .transmits
        .iter()
        .filter(|(at, t)| matches!(t, Transmit::Send { .. }) && *at < ping)
        .map(|(at, _)| *at)
        .next_back()
        .expect("a reading before the ping");
    assert_eq!(ping.since(unanswered), cfg.answer_timeout);
    assert_eq!(renew.since(ping), ping_bound(cfg.answer_timeout));
    // The healthy neighbour was never probed.
    let healthy = &world.houses[1];
    assert_eq!(healthy.count(|t| *t == Transmit::Ping), 0);
    assert_eq!(reports[1].nicks, 1);
    // The stalled reading reached the bot; only its verdict was lost.
    assert!(world.bot.duplicates >= 1);
}

#[test]
fn broadcast_pacing_skips_the_intervals_congestion_made_it_miss() {
    let mut cfg = meter_config(Mode::Broadcast);
    cfg.interval = 10 * SECOND;
    cfg.answer_timeout = MINUTE;
    let mut world = World::new(4, 3, &cfg);
    world.room_delay = 25 * SECOND;
    world.run_for(3 * MINUTE);
    world.room_delay = 0;
    world.run_for(2 * MINUTE);
    world.shutdown(5 * SECOND);

    let reports = assert_nothing_lost(&world);
    for (h, r) in world.houses.iter().zip(&reports) {
        assert!(r.paced >= 5, "{r:?}");
        assert_eq!((r.echo_timeouts, r.resent), (0, 0), "{r:?}");
        // Every interval was either measured or counted as skipped.
        let first = h.measured[0];
        let last = h.measured[h.measured.len() - 1];
        assert_eq!(
            last.since(first) / cfg.interval + 1,
            h.measured.len() as i64 + r.paced as i64,
            "{r:?}"
        );
        // Never two readings in the room at once.
        let sends = h.count(|t| matches!(t, Transmit::Send { .. }));
        assert_eq!(sends as u64, r.sent);
    }
    // Once the room is fast again, no interval is skipped.
    let tail = EPOCH.plus(3 * MINUTE + 30 * SECOND);
    for h in &world.houses {
        let late = h
            .measured
            .iter()
            .filter(|s| **s >= tail)
            .copied()
            .collect::<Vec<_>>();
        assert_contiguous(&late, cfg.interval);
        assert!(late.len() >= 8, "{late:?}");
    }
}

#[test]
fn broadcast_catches_up_the_intervals_a_crash_made_it_miss() {
    let mut cfg = meter_config(Mode::Broadcast);
    cfg.interval = 10 * SECOND;
    let mut world = World::new(5, 2, &cfg);
    world.run_for(2 * MINUTE);
    world.crash(45 * SECOND);
    world.run_for(3 * MINUTE);
    world.shutdown(5 * SECOND);

    let reports = assert_nothing_lost(&world);
    for (h, r) in world.houses.iter().zip(&reports) {
        assert_eq!(r.paced, 0, "{r:?}");
        assert_eq!(r.nicks, 2, "{r:?}");
        assert!(
            r.resent >= 1,
            "what the crash swallowed went out again: {r:?}"
        );
        assert_contiguous(&h.measured, cfg.interval);
        assert!(h.measured.len() >= 28, "{}", h.measured.len());
    }
}

#[test]
fn refusals_are_counted_by_reason_and_never_resent() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(6, 1, &cfg);
    world.bot.policy = Policy::Refuse("late".into());
    world.run_until(EPOCH.plus(4 * MINUTE));
    world.bot.policy = Policy::Refuse("oversize".into());
    world.run_until(EPOCH.plus(6 * MINUTE));
    world.bot.policy = Policy::Accept;
    world.run_until(EPOCH.plus(10 * MINUTE));
    world.shutdown(5 * SECOND);

    let r = world.houses[0].core.report();
    assert_eq!(r.refused.get("late"), Some(&3), "{r:?}");
    assert_eq!(r.refused.get("oversize"), Some(&2), "{r:?}");
    assert_eq!(r.refused_total(), 5);
    assert_eq!((r.sent, r.acknowledged, r.resent), (9, 4, 0), "{r:?}");
    assert_eq!((r.unacknowledged, r.expired), (0, 0));
    assert_eq!(world.bot.counted.len(), 4);
    assert_eq!(
        world.houses[0].count(|t| matches!(t, Transmit::Send { .. })),
        9
    );
}

#[test]
fn an_impostor_holding_the_bot_nickname_clears_no_reading() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(7, 2, &cfg);
    world.bot_leave();
    world.impostor_join();
    world.run_for(2 * MINUTE);
    world.whisper(0, "send your readings to me instead");
    world.run_for(3 * MINUTE);

    for h in &world.houses {
        let r = h.core.report();
        assert!(r.sent >= 4, "{r:?}");
        assert_eq!(
            r.acknowledged, 0,
            "an unverified receipt cleared a reading: {r:?}"
        );
        assert_eq!(r.unacknowledged, r.sent, "{r:?}");
        assert!(r.unverified >= r.sent, "{r:?}");
        assert!(
            r.resent >= 1,
            "kept readings go out again on their schedule: {r:?}"
        );
    }
    assert!(
        !world.houses[0]
            .events
            .iter()
            .any(|e| matches!(e, MeterEvent::Private { .. })),
        "the impostor's message was shown"
    );

    // The real bot takes its nickname back: everything kept reaches it.
    world.impostor_leave();
    world.bot_join();
    assert_eq!(world.occupant(&world.bot.nick), Some(Occupant::Bot));
    world.run_until(EPOCH.plus(12 * MINUTE));
    world.whisper(0, "all good");
    world.run_for(MINUTE);
    world.shutdown(5 * SECOND);
    assert_nothing_lost(&world);
    let private: Vec<_> = world.houses[0]
        .events
        .iter()
        .filter(|e| matches!(e, MeterEvent::Private { .. }))
        .collect();
    assert_eq!(private.len(), 1, "{private:?}");
}

#[test]
fn under_a_silent_bot_resends_follow_the_outbox_backoff_with_a_stable_seqnr() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(8, 1, &cfg);
    world.bot.policy = Policy::Silent;
    world.run_for(15 * MINUTE);

    let h = &world.houses[0];
    let first = h
        .transmits
        .iter()
        .find_map(|(_, t)| match t {
            Transmit::Send { id, reading, .. } => Some((*id, reading.at)),
            _ => None,
        })
        .expect("a reading");
    let (id, at) = first;
    let sends = h.sends_of(id);
    assert!(sends.len() >= 4, "{sends:?}");
    for (n, pair) in sends.windows(2).enumerate() {
        let gap = pair[1].0.since(pair[0].0);
        assert_eq!(
            gap,
            cfg.outbox.resend_wait(id, n as u32 + 1),
            "resend {n}: {sends:?}"
        );
        assert_eq!(pair[0].1, pair[1].1, "the seqnr changed under one nickname");
    }
    // The last send came before the reading grew too old for the bot, and none after.
    let last = sends[sends.len() - 1].0;
    assert!(last.since(at) <= cfg.outbox.max_age);
    let r = h.core.report();
    assert!(r.expired >= 1, "{r:?}");
    assert_eq!((r.acknowledged, r.nicks, r.bounced), (0, 1, 0), "{r:?}");
    // Unanswered readings get the session probed; the pings are answered, so it is kept.
    assert!(h.count(|t| *t == Transmit::Ping) >= 1);
    assert_eq!(h.count(|t| *t == Transmit::RenewSession), 0);
}

#[test]
fn bounced_readings_wait_for_their_backoff_and_reach_a_bot_that_comes_back() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(9, 1, &cfg);
    world.bot_leave();
    world.run_for(4 * MINUTE);
    let h = &world.houses[0];
    let r = h.core.report();
    assert!(r.bounced >= 3, "{r:?}");
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, MeterEvent::Bounced(why) if why == "item-not-found"))
    );
    // A bounce is not answered by an immediate resend (that would only bounce again): the
    // first reading went out again on its backoff schedule.
    let first = h
        .transmits
        .iter()
        .find_map(|(_, t)| match t {
            Transmit::Send { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a reading");
    let sends = h.sends_of(first);
    assert!(sends.len() >= 3, "{sends:?}");
    for (n, pair) in sends.windows(2).enumerate() {
        let gap = pair[1].0.since(pair[0].0);
        assert_eq!(gap, cfg.outbox.resend_wait(first, n as u32 + 1));
    }
    world.bot_join();
    world.run_for(6 * MINUTE);
    world.shutdown(5 * SECOND);
    assert_nothing_lost(&world);
}

#[test]
fn removal_rejoins_under_a_new_nickname_and_catches_up() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(10, 1, &cfg);
    world.run_for(3 * MINUTE);
    world.kick(0);
    world.run_for(3 * MINUTE);
    world.shutdown(5 * SECOND);
    assert_nothing_lost(&world);
    let h = &world.houses[0];
    let nicks = joins(&h.events);
    assert_eq!(nicks.len(), 2);
    assert_ne!(nicks[0], nicks[1]);
    assert_contiguous(&h.measured, cfg.interval);
}

#[test]
fn taken_nicknames_are_counted_and_five_in_a_row_end_the_meter() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(11, 2, &cfg);
    world.conflicts_for(0, 2);
    world.conflicts_for(1, 5);
    world.run_for(3 * MINUTE);
    let ok = world.houses[0].core.report();
    assert_eq!((ok.conflicts, ok.nicks), (2, 1), "{ok:?}");
    assert!(ok.acknowledged >= 2);
    let stuck = &world.houses[1].core;
    assert_eq!(
        stuck.outcome().map(|o| o.map_err(|e| e.to_string())),
        Some(Err("no free nickname after 5 attempts".to_owned()))
    );
    assert_eq!(stuck.report().conflicts, 5);
}

#[test]
fn lossy_duplicating_network_loses_nothing_and_counts_nothing_twice() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(12, 4, &cfg);
    world.faults = Faults {
        drop: 0.05,
        duplicate: 0.2,
        delay: 2 * SECOND,
    };
    world.run_for(30 * MINUTE);
    world.faults = Faults::default();
    world.run_for(10 * MINUTE);
    world.shutdown(5 * SECOND);
    let reports = assert_nothing_lost(&world);
    assert!(
        reports.iter().map(|r| r.resent).sum::<u64>() >= 1,
        "{reports:?}"
    );
    assert!(world.bot.duplicates >= 1);
}

#[test]
fn a_clean_stop_waits_for_the_last_answer_then_leaves() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(13, 1, &cfg);
    world.latency = 400;
    world.run_for(2 * MINUTE);
    // Stop right after a send: its verdict is 1.6 s away, inside the 2-s drain.
    while world.houses[0].core.report().unacknowledged == 0 {
        world.run_for(10);
    }
    let now = world.now();
    world.houses[0].core.handle(now, Input::Shutdown);
    world.run_for(5 * SECOND);
    assert_nothing_lost(&world);
    let h = &world.houses[0];
    assert_eq!(h.core.outcome(), Some(Ok(())));
    assert!(matches!(h.events.last(), Some(MeterEvent::Left(_))));
}

#[test]
fn a_meter_leaves_a_room_that_would_link_or_reveal_it_and_sends_nothing() {
    use gridmuc_agent::{PrivacyRefusal, SelfPresence};
    let cases = [
        (
            SelfPresence {
                occupant_id: true,
                ..SelfPresence::default()
            },
            PrivacyRefusal::OccupantId,
        ),
        (
            SelfPresence {
                created: true,
                ..SelfPresence::default()
            },
            PrivacyRefusal::NoSuchRoom,
        ),
        (
            SelfPresence {
                non_anonymous: true,
                ..SelfPresence::default()
            },
            PrivacyRefusal::NonAnonymous,
        ),
    ];
    for (presence, refusal) in cases {
        let cfg = meter_config(Mode::Direct);
        let mut world = World::new(21, 1, &cfg);
        world.house_presence = presence;
        world.run_for(5 * MINUTE);
        let h = &world.houses[0];
        assert_eq!(h.core.outcome(), Some(Err(refusal.into())));
        assert_eq!(h.count(|t| matches!(t, Transmit::Send { .. })), 0);
        assert_eq!(h.count(|t| matches!(t, Transmit::Leave(_))), 1);
        assert!(world.occupant(&joins_sent(h)).is_none());
    }
}

#[test]
fn a_room_that_starts_showing_jids_is_left_for_good() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(22, 1, &cfg);
    world.run_for(3 * MINUTE);
    let now = world.now();
    world.houses[0].core.handle(now, Input::RoomShowsJids);
    world.run_for(3 * MINUTE);
    let h = &world.houses[0];
    assert_eq!(
        h.core.outcome(),
        Some(Err(gridmuc_agent::PrivacyRefusal::NonAnonymous.into()))
    );
    assert!(
        world
            .nicks_of(0)
            .iter()
            .all(|n| world.occupant(n).is_none())
    );
}

/// The nickname of a house's first join.
fn joins_sent(h: &gridmuc_agent::harness::House) -> gridmuc_core::RoomNick {
    h.transmits
        .iter()
        .find_map(|(_, t)| match t {
            Transmit::Join(n) => Some(n.clone()),
            _ => None,
        })
        .expect("a join")
}

/// When each reading went out first, after the start of the interval it measures.
fn first_send_delays(h: &gridmuc_agent::harness::House) -> Vec<i64> {
    h.events
        .iter()
        .filter_map(|e| match e {
            MeterEvent::Sent { reading, at, .. } => Some(at.since(reading.at)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_server_answering_late_gets_a_few_renewals_not_one_per_reading() {
    // Every hop takes 6 s: a ping is answered in 12 s (its bound is 7.5 s) and a verdict in
    // 24 s (it is due in 15 s), like a server at its limit. Before patience grew with each
    // session declared dead, each house replaced its session 200 times in these two hours
    // and 2,180 of 2,380 readings expired unacknowledged.
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(21, 20, &cfg);
    world.latency = 6_000;
    world.run_for(2 * 60 * MINUTE);
    world.shutdown(2 * MINUTE);
    let reports = assert_nothing_lost(&world);
    let renewals: Vec<usize> = world
        .houses
        .iter()
        .map(|h| h.count(|t| *t == Transmit::RenewSession))
        .collect();
    // The first probe fails (12 s > 7.5 s); the second is patient enough.
    assert!(renewals.iter().all(|&n| n <= 2), "{renewals:?}");
    assert!(renewals.iter().any(|&n| n >= 1), "{renewals:?}");
    // Two hours of readings, each counted once; a few resent, where the first resend's wait
    // (30 s ± 25 %) fell short of a verdict's 24 s (1,822 resends a house before).
    assert!(
        reports.iter().all(|r| r.sent >= 117 && r.resent <= 30),
        "{reports:?}"
    );
}

#[test]
fn a_full_window_of_unanswered_readings_never_holds_back_the_live_one() {
    // The bot counts but does not answer for 40 minutes: four readings fill the in-flight
    // window (16 by default, as many as a 1-s load test sends in 16 s), and their resends
    // keep it full. The reading of each new interval still goes out in its own interval, and
    // the bot counts each reading sent once.
    let mut cfg = meter_config(Mode::Direct);
    cfg.outbox.max_in_flight = 4;
    let mut world = World::new(22, 3, &cfg);
    world.bot.policy = Policy::Silent;
    world.run_for(40 * MINUTE);
    world.bot.policy = Policy::Accept;
    world.run_for(30 * MINUTE);
    world.shutdown(2 * MINUTE);
    for h in &world.houses {
        let delays = first_send_delays(h);
        assert!(delays.len() >= 68, "{}", delays.len());
        assert!(delays.iter().all(|&d| d < cfg.interval), "{delays:?}");
    }
    let counted = world.bot.counted.len() as u64;
    let sent: u64 = world.houses.iter().map(|h| h.core.report().sent).sum();
    assert_eq!(counted, sent);
}

#[test]
fn a_meter_the_room_forgot_rejoins_under_a_new_nickname_losing_nothing() {
    // The room restarts on another cluster node without the meter; its session is fine and
    // its pings are answered, so only the room's "not an occupant" says so.
    let cfg = meter_config(Mode::Direct);
    let mut world = World::new(23, 2, &cfg);
    world.run_for(5 * MINUTE);
    let before = world.nicks_of(0);
    world.forget(0);
    assert!(world.nicks_of(0).is_empty());
    world.run_for(5 * MINUTE);
    world.shutdown(5 * SECOND);

    let reports = assert_nothing_lost(&world);
    let after = joins(&world.houses[0].events);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1], before[0]);
    assert_eq!(reports[0].bounced, 1);
    // Rejoined as in a rotation: the old nickname left first, no session was replaced.
    let h = &world.houses[0];
    assert_eq!(h.count(|t| *t == Transmit::Leave(before[0].clone())), 1);
    assert_eq!(h.count(|t| *t == Transmit::RenewSession), 0);
    // The healthy neighbour kept its nickname.
    assert_eq!(reports[1].nicks, 1);
}

/// A direct meter whose bot is away is killed outright while it holds unacknowledged
/// readings, and restarted at once; the bot comes back. Returns the intervals the meter
/// measured that the bot never counted.
fn killed_while_the_bot_is_away(save_outbox: bool) -> Vec<Timestamp> {
    let cfg = gridmuc_agent::meter::MeterCoreConfig {
        save_outbox,
        ..meter_config(Mode::Direct)
    };
    let mut world = World::new(31, 2, &cfg);
    world.bot_leave();
    world.run_for(3 * MINUTE);
    let held = world.houses[0].core.report().unacknowledged;
    assert!(held >= 2, "{:?}", world.houses[0].core.report());
    if save_outbox {
        // Written ahead: what the meter holds is on its disk before it goes out.
        assert_eq!(world.houses[0].saved.len() as u64, held);
    } else {
        assert!(world.houses[0].saved.is_empty());
    }
    world.restart_house(0);
    world.run_for(30 * SECOND);
    world.bot_join();
    world.run_for(8 * MINUTE);
    world.shutdown(5 * SECOND);
    let h = &world.houses[0];
    let r = h.core.report();
    assert_eq!(r.unacknowledged, 0, "{r:?}");
    // Restored readings go out as resends, so a restart never counts a reading as new twice.
    if save_outbox {
        assert!(r.resent >= held, "{r:?}");
        assert_eq!(r.acknowledged, r.sent + held, "{r:?}");
        assert!(h.saved.is_empty(), "{:?}", h.saved);
    }
    // Every reading counted once, each with the value measured for its interval.
    let counted: Vec<Timestamp> = world
        .bot
        .counted
        .values()
        .filter(|(_, reading)| reading.power == load(0, reading.at).quantise(10))
        .map(|(_, reading)| reading.at)
        .collect();
    assert_eq!(world.bot.duplicates, 0);
    h.measured
        .iter()
        .filter(|slot| !counted.contains(slot))
        .copied()
        .collect()
}

#[test]
fn a_meter_killed_outright_resends_what_it_saved_and_loses_nothing() {
    assert_eq!(killed_while_the_bot_is_away(true), Vec::<Timestamp>::new());
    // The same kill without the saved outbox loses what the meter held: this is what the
    // file is for.
    let lost = killed_while_the_bot_is_away(false);
    assert!(lost.len() >= 2, "{lost:?}");
}
