//! The real bot core and real meter cores together in the in-memory room: crashes of the
//! server and of the bot, refusals, floods, empty intervals, a squatted nickname and a stalled
//! session, each on a virtual clock, deterministic for its seed.

use gridmuc_agent::Agent;
use gridmuc_agent::bot::{self, BotEvent, Transmit, echo_bound};
use gridmuc_agent::harness::{Faults, Occupant, World, bot_config, load, meter_config};
use gridmuc_agent::meter::{self, MeterReport, Mode};
use gridmuc_core::time::{MINUTE, SECOND};
use gridmuc_core::{Quality, Reading, ReadingId, Rejection, RoomNick, Timestamp, Watts};
use std::collections::{BTreeMap, HashSet};

/// Every house had every reading it sent acknowledged; the bot counted each exactly once
/// (over all its incarnations), and every interval's totals add up to what the houses measured.
fn assert_counted_once(world: &World) -> Vec<MeterReport> {
    let reports: Vec<MeterReport> = world.houses.iter().map(|h| h.core.report()).collect();
    for r in &reports {
        assert_eq!(r.acknowledged, r.sent, "{r:?}");
        assert_eq!((r.unacknowledged, r.dropped, r.expired), (0, 0, 0), "{r:?}");
        assert_eq!(r.refused_total(), 0, "{r:?}");
    }
    // What the houses measured, by interval, against what the bot's summaries say; readings
    // a test sent from outside the houses count where the bot took them.
    let mut want: BTreeMap<Timestamp, (usize, Watts)> = BTreeMap::new();
    let mut ours = HashSet::new();
    for (house, h) in world.houses.iter().enumerate() {
        for (_, t) in &h.transmits {
            if let meter::Transmit::Send { id, reading, .. } = t
                && ours.insert(*id)
            {
                let e = want.entry(reading.at).or_default();
                e.0 += 1;
                e.1 += load(house, reading.at).quantise(10);
            }
        }
    }
    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    assert_eq!(ours.len() as u64, sent);
    assert!(ours.iter().all(|id| world.bot.counted.contains_key(id)));
    // A nickname is one meter of an interval however many readings it had accepted there (the
    // tests send the same value each time).
    let mut foreign = 0;
    let mut foreign_slots = HashSet::new();
    for (id, (nick, r)) in &world.bot.counted {
        if !ours.contains(id) {
            foreign += 1;
            if foreign_slots.insert((nick.clone(), r.at)) {
                let e = want.entry(r.at).or_default();
                e.0 += 1;
                e.1 += r.power;
            }
        }
    }
    assert_eq!(
        world.bot_accepted(),
        sent + foreign,
        "a reading counted twice"
    );
    let sub = world.substation.as_ref().expect("the real bot");
    let mut got: BTreeMap<Timestamp, (usize, Watts)> = BTreeMap::new();
    for ((_, start), stats) in &sub.closed {
        if stats.meters > 0 {
            let e = got.entry(*start).or_default();
            e.0 += stats.meters;
            e.1 += stats.total;
        }
    }
    assert_eq!(got, want);
    reports
}

fn joined(world: &World) -> usize {
    let sub = world.substation.as_ref().expect("the real bot");
    sub.events
        .iter()
        .filter(|e| matches!(e, BotEvent::Joined(_)))
        .count()
}

fn reading(at: Timestamp, seqnr: u64) -> Reading {
    Reading {
        power: Watts(1_000),
        at,
        seqnr,
        quality: Quality::default(),
    }
}

#[test]
fn every_reading_is_counted_once_across_a_server_crash_and_a_bot_restart() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(11, 5, &cfg, bot_config());
    world.run_for(4 * MINUTE);
    world.run_until_in_flight();
    world.crash(150 * SECOND);
    world.run_for(5 * MINUTE);
    // The bot process dies with its aggregator; what it had not answered is resent to the new
    // one, which takes the readings of intervals before its start as backfill.
    world.run_until_in_flight();
    world.restart_bot(40 * SECOND);
    world.run_for(10 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    let reports = assert_counted_once(&world);
    let resent: u64 = reports.iter().map(|r| r.resent).sum();
    assert!(resent >= 2, "{reports:?}");
    let sub = world.substation.as_ref().expect("the real bot");
    assert_eq!(sub.past.len(), 1);
    assert!(
        sub.core.counters().backfilled >= 1,
        "{:?}",
        sub.core.counters()
    );
    // Joined at the start, after the crash, after the restart.
    assert_eq!(joined(&world), 3);
    assert!(sub.core.outcome() == Some(Ok(())));
}

#[test]
fn refusals_are_answered_with_their_reason_and_not_counted() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(12, 2, &cfg, bot_config());
    world.run_for(3 * MINUTE);
    let mallory = RoomNick::new("mallory-1").expect("a nickname");
    let now = world.now();
    world.send_to_bot(
        mallory.clone(),
        ReadingId(1),
        Ok(reading(now.plus(-60 * MINUTE), 1)),
    );
    world.send_to_bot(
        mallory.clone(),
        ReadingId(2),
        Ok(reading(now.plus(10 * MINUTE), 2)),
    );
    let oversize = Rejection::Oversize {
        size: 9_000,
        limit: 4_096,
    };
    world.send_to_bot(mallory.clone(), ReadingId(3), Err(oversize));
    world.run_for(3 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    assert_counted_once(&world);
    let sub = world.substation.as_ref().expect("the real bot");
    for reason in ["late", "future", "oversize"] {
        assert_eq!(sub.refusals_to(&mallory, reason).len(), 1, "{reason}");
        assert_eq!(sub.core.counters().rejected.get(reason), 1, "{reason}");
    }
    assert_eq!(sub.verdicts_to(&mallory).count(), 3);
}

#[test]
fn a_flood_from_one_nickname_gets_one_rate_limited_answer_per_interval() {
    let cfg = meter_config(Mode::Direct);
    // Each verdict goes at once, so a refusal's time says which interval it answered.
    let mut bot = bot_config();
    bot.acks = bot::AckBatch::EACH;
    let mut world = World::with_bot(13, 3, &cfg, bot);
    world.run_for(2 * MINUTE);
    let flood = RoomNick::new("flood-7").expect("a nickname");
    // 100 readings in each of three intervals, all stamped with the current one.
    let mut n = 0u64;
    for _ in 0..3 {
        for _ in 0..100 {
            n += 1;
            let at = world.now().floor_to(MINUTE);
            world.send_to_bot(flood.clone(), ReadingId(u128::from(n)), Ok(reading(at, n)));
            world.run_for(500);
        }
        world.run_for(MINUTE - 50 * SECOND);
    }
    world.run_for(2 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    // The houses did not suffer for it.
    assert_counted_once(&world);
    let sub = world.substation.as_ref().expect("the real bot");
    let limited = sub.refusals_to(&flood, "rate_limited");
    // The answered set starts afresh when an interval closes, `grace` after its end.
    let grace = bot_config().aggregator.grace;
    let per_interval: BTreeMap<Timestamp, usize> =
        limited.iter().fold(BTreeMap::new(), |mut m, t| {
            *m.entry(t.plus(-grace).floor_to(MINUTE)).or_default() += 1;
            m
        });
    assert!((3..=5).contains(&per_interval.len()), "{per_interval:?}");
    assert!(per_interval.values().all(|&k| k == 1), "{per_interval:?}");
    let cap = bot_config().aggregator.max_readings_per_interval as u64;
    let accepted = sub
        .verdicts_to(&flood)
        .filter(|(_, _, v)| **v == bot::Verdict::Accepted)
        .count() as u64;
    assert!(accepted <= 4 * cap, "{accepted}");
    assert!(sub.core.counters().rejected.get("rate_limited") >= 300 - 4 * cap);
}

#[test]
fn an_interval_nobody_reported_in_is_closed_but_not_posted() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(14, 1, &cfg, bot_config());
    world.run_for(3 * MINUTE);
    world.shutdown(5 * SECOND);
    // Its last interval closes after it left.
    world.run_for(MINUTE);
    let posted = world
        .substation
        .as_ref()
        .expect("the real bot")
        .summaries_posted();
    assert!(posted >= 1);
    world.run_for(5 * MINUTE);

    let sub = world.substation.as_ref().expect("the real bot");
    assert_eq!(sub.summaries_posted(), posted, "{:?}", sub.room_posts);
    let empty_closes = sub
        .events
        .iter()
        .filter(|e| matches!(e, BotEvent::Summary { stats, .. } if stats.meters == 0))
        .count();
    assert!(empty_closes >= 4, "{:?}", sub.events);
    // Every first close counts as an interval, posted or not.
    let firsts = sub
        .events
        .iter()
        .filter(|e| matches!(e, BotEvent::Summary { stats, .. } if stats.revision == 0))
        .count() as u64;
    assert_eq!(sub.core.counters().intervals, firsts);
}

#[test]
fn a_squatted_bot_nickname_is_reported_once_and_taken_when_freed() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(15, 3, &cfg, bot_config());
    // Someone takes the nickname before the bot's join reaches the room.
    world.impostor_join();
    world.run_for(4 * MINUTE);
    let nick = world.bot.nick.clone();
    assert_eq!(world.occupant(&nick), Some(Occupant::Impostor));
    let sub = world.substation.as_ref().expect("the real bot");
    let joins: Vec<Timestamp> = sub
        .transmits
        .iter()
        .filter(|(_, t)| matches!(t, Transmit::Join(_)))
        .map(|(t, _)| *t)
        .collect();
    // 1 s doubling to 60 s, each ±50 %: 0.5-1.5, 1-3, 2-6, … s apart.
    for (k, w) in joins.windows(2).enumerate() {
        let wait = w[1].since(w[0]) - 2 * world.latency;
        let base = bot::nick_retry(k as u32);
        assert!(
            (base / 2..=base * 3 / 2).contains(&wait),
            "attempt {k}: {wait} ms"
        );
    }
    assert!(joins.len() >= 7, "{joins:?}");
    world.impostor_leave();
    world.run_for(3 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    assert_counted_once(&world);
    let sub = world.substation.as_ref().expect("the real bot");
    let told: Vec<&(Timestamp, String, String)> = sub
        .operator_inbox
        .iter()
        .filter(|(_, _, body)| body.contains("is taken"))
        .collect();
    assert_eq!(told.len(), 1, "{:?}", sub.operator_inbox);
    assert_eq!(joined(&world), 1);
    // The meters met the impostor first: their readings went unverified, then to the bot.
    let unverified: u64 = world
        .houses
        .iter()
        .map(|h| h.core.report().unverified)
        .sum();
    assert!(unverified >= 1);
}

#[test]
fn a_stalled_bot_session_is_pinged_then_renewed_and_loses_nothing() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(16, 3, &cfg, bot_config());
    world.run_for(3 * MINUTE + 50 * SECOND);
    world.stall_bot();
    world.run_for(8 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    assert_counted_once(&world);
    let sub = world.substation.as_ref().expect("the real bot");
    assert_eq!(sub.count(|t| *t == Transmit::Ping), 1);
    assert_eq!(sub.count(|t| *t == Transmit::RenewSession), 1);
    let at = |want: &Transmit| {
        sub.transmits
            .iter()
            .find(|(_, t)| t == want)
            .map(|(at, _)| *at)
            .expect("sent")
    };
    let (ping, renew) = (at(&Transmit::Ping), at(&Transmit::RenewSession));
    let interval = bot_config().aggregator.interval;
    // The ping gets the account's bound, not the interval's: a busy server is not a dead one.
    assert_eq!(renew.since(ping), bot_config().ping_timeout);
    // The ping went out because a summary's echo was overdue, within one interval of the stall.
    let post = sub
        .transmits
        .iter()
        .filter(|(t, tx)| matches!(tx, Transmit::Post { .. }) && *t < ping)
        .map(|(t, _)| *t)
        .next_back()
        .expect("a post before the ping");
    assert_eq!(ping.since(post), echo_bound(interval));
    assert_eq!(joined(&world), 2);
    // Readings the stalled session swallowed were resent by the meters and counted once.
    let resent: u64 = world.houses.iter().map(|h| h.core.report().resent).sum();
    assert!(resent >= 1);
}

#[test]
fn a_silent_room_gets_the_bot_session_probed_after_one_and_a_half_intervals() {
    // No meters: nothing to close, nothing to post; only silence can tell.
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(17, 0, &cfg, bot_config());
    world.run_for(5 * MINUTE);
    let sub = world.substation.as_ref().expect("the real bot");
    let pings: Vec<Timestamp> = sub
        .transmits
        .iter()
        .filter(|(_, t)| *t == Transmit::Ping)
        .map(|(t, _)| *t)
        .collect();
    let interval = bot_config().aggregator.interval;
    assert_eq!(
        pings
            .first()
            .map(|p| p.since(world.now().plus(-5 * MINUTE))),
        Some(bot::silence_bound(interval) + 2 * world.latency)
    );
    // Answered pings keep the session: no renewal.
    assert_eq!(sub.count(|t| *t == Transmit::RenewSession), 0);
    assert_eq!(joined(&world), 1);
}

#[test]
fn a_bot_the_room_forgot_finds_out_by_self_ping_and_rejoins_losing_nothing() {
    // The room restarts on another cluster node without the bot, whose session lives on and
    // is never told: it gets no reading, posts nothing, so nothing of its own bounces.
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(23, 5, &cfg, bot_config());
    world.run_for(3 * MINUTE);
    let forgotten = world.now();
    world.forget_bot();
    world.run_for(10 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    let reports = assert_counted_once(&world);
    // Readings sent meanwhile bounced off the empty nickname and were resent after the rejoin.
    let bounced: u64 = reports.iter().map(|r| r.bounced).sum();
    assert!(bounced >= 1, "{reports:?}");
    assert_eq!(joined(&world), 2);
    let sub = world.substation.as_ref().expect("the real bot");
    // The session was fine: the self-ping's answer made the bot rejoin, no renewal.
    assert_eq!(sub.count(|t| *t == Transmit::RenewSession), 0);
    let after = |want: fn(&Transmit) -> bool| {
        sub.transmits
            .iter()
            .find(|(at, t)| *at >= forgotten && want(t))
            .map(|(at, _)| *at)
            .expect("sent after the room forgot the bot")
    };
    let ping = after(|t| *t == Transmit::Ping);
    let join = after(|t| matches!(t, Transmit::Join(_)));
    // Within the silence bound of the last reading, and one round trip later back in.
    let interval = bot_config().aggregator.interval;
    assert!(ping.since(forgotten) <= bot::silence_bound(interval) + echo_bound(interval));
    assert_eq!(join.since(ping), 2 * world.latency);
}

#[test]
fn broadcast_readings_are_counted_once_and_answered_by_the_room_alone() {
    let cfg = meter_config(Mode::Broadcast);
    let mut world = World::with_bot(18, 4, &cfg, bot_config());
    world.faults.duplicate = 0.05;
    world.run_for(10 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    assert_counted_once(&world);
    let sub = world.substation.as_ref().expect("the real bot");
    assert_eq!(sub.acks_sent(), (0, 0));
    assert!(sub.summaries_posted() >= 9);
}

#[test]
fn a_room_that_would_show_the_bot_real_jids_is_left_at_once() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(19, 2, &cfg, bot_config());
    // The join is on its way; the room will answer that it is non-anonymous.
    world
        .substation
        .as_mut()
        .expect("the real bot")
        .presence
        .non_anonymous = true;
    world.run_for(2 * MINUTE);

    let nick = world.bot.nick.clone();
    assert_eq!(world.occupant(&nick), None);
    let sub = world.substation.as_ref().expect("the real bot");
    assert_eq!(
        sub.core.outcome(),
        Some(Err(gridmuc_agent::PrivacyRefusal::NonAnonymous))
    );
    assert_eq!(joined(&world), 0);
    assert_eq!(sub.count(|t| matches!(t, Transmit::Leave(_))), 1);
    // Nothing reached it: the meters' readings bounced and wait in their outboxes.
    assert_eq!(world.bot_accepted(), 0);
    assert!(world.houses.iter().all(|h| h.core.report().bounced >= 1));
}

#[test]
fn a_lossy_duplicating_network_loses_nothing_and_counts_nothing_twice() {
    let cfg = meter_config(Mode::Direct);
    let mut world = World::with_bot(20, 6, &cfg, bot_config());
    world.faults = Faults {
        drop: 0.05,
        duplicate: 0.05,
        delay: 200,
    };
    world.run_for(20 * MINUTE);
    world.faults = Faults::default();
    world.run_for(5 * MINUTE);
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);

    let reports = assert_counted_once(&world);
    assert!(reports.iter().map(|r| r.resent).sum::<u64>() >= 1);
    assert!(world.bot.duplicates >= 1);
}

/// Meters and bot on one-second intervals, as in `gridmuc loadtest`, the bot batching its
/// verdicts by its defaults (16 readings or 5 s per nickname).
fn fast_world(seed: u64, houses: usize) -> (World, meter::MeterCoreConfig) {
    let mut cfg = meter_config(Mode::Direct);
    cfg.interval = SECOND;
    let mut bot = bot_config();
    bot.aggregator.interval = SECOND;
    bot.aggregator.grace = 500;
    (World::with_bot(seed, houses, &cfg, bot), cfg)
}

fn stop(world: &mut World) {
    world.shutdown(5 * SECOND);
    world.stop_bot(SECOND);
}

#[test]
fn direct_readings_are_acknowledged_cumulatively_with_a_fifth_of_the_stanzas() {
    let (mut world, _) = fast_world(21, 5);
    world.run_for(2 * MINUTE);
    stop(&mut world);

    let reports = assert_counted_once(&world);
    let sent: u64 = reports.iter().map(|r| r.sent).sum();
    assert!(sent >= 5 * 115, "{sent}");
    let sub = world.substation.as_ref().expect("the real bot");
    let (acks, verdicts) = sub.acks_sent();
    // One verdict per reading, carried by one ack per nickname every 5 s (4–6 readings).
    assert_eq!(verdicts as u64, sent);
    assert!(acks * 4 <= verdicts, "{acks} acks for {verdicts} verdicts");
    assert!(reports.iter().all(|r| r.resent == 0), "{reports:?}");
}

#[test]
fn a_lost_ack_leads_to_resends_that_the_bot_counts_once_and_acknowledges_again() {
    let (mut world, _) = fast_world(22, 3);
    world.run_for(20 * SECOND);
    world.lose_acks = 2;
    world.run_for(2 * MINUTE);
    stop(&mut world);

    let reports = assert_counted_once(&world);
    // The readings of two lost acks (4–6 each) came back after `resend_after` as duplicates.
    let resent: u64 = reports.iter().map(|r| r.resent).sum();
    assert!((8..=12).contains(&resent), "{reports:?}");
    assert_eq!(world.bot.duplicates, resent);
    let sub = world.substation.as_ref().expect("the real bot");
    assert_eq!(sub.core.counters().rejected.get("duplicate"), resent);
}

#[test]
fn a_forged_or_replayed_ack_clears_nothing() {
    let (mut world, _) = fast_world(23, 1);
    world.run_for(10 * SECOND);
    world.run_until_in_flight();
    let forged = world.houses[0]
        .transmits
        .iter()
        .rev()
        .find_map(|(_, t)| match t {
            meter::Transmit::Send { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a reading in flight");
    // An ack the pinned key did not sign (the driver says `Unverified`) clears nothing.
    let held = world.houses[0].core.report().unacknowledged;
    world.tell(0, meter::Input::Unverified(forged));
    world.run_for(30);
    let r = world.houses[0].core.report();
    assert_eq!((r.unverified, r.unacknowledged), (1, held), "{r:?}");
    world.run_for(30 * SECOND);
    let before = world.houses[0].core.report();
    assert_eq!(before.acknowledged, before.sent - before.unacknowledged);
    // A replay of a real ack (and a refusal for a reading already acknowledged) changes no count.
    let old = world
        .substation
        .as_ref()
        .expect("the real bot")
        .verdicts_to(&world.nicks_of(0)[0])
        .map(|(_, id, _)| id)
        .take(3)
        .collect::<Vec<_>>();
    let replay = old
        .iter()
        .map(|id| (*id, bot::Verdict::Accepted))
        .chain([(old[0], bot::Verdict::Refused("late".into()))])
        .collect();
    world.tell(0, meter::Input::Verdicts(replay));
    world.run_for(100);
    let after = world.houses[0].core.report();
    assert_eq!(
        (after.acknowledged, after.refused_total(), after.unverified),
        (before.acknowledged, 0, 1),
        "{after:?}"
    );
    stop(&mut world);
    assert_counted_once(&world);
}

#[test]
fn a_bot_restart_answers_every_reading_it_held_before_leaving() {
    let (mut world, _) = fast_world(24, 4);
    world.run_for(32 * SECOND);
    // Verdicts of the last few seconds are held in the bot's batches when it stops.
    let stopped = world.now();
    world.restart_bot(10 * SECOND);
    world.run_for(MINUTE);
    stop(&mut world);

    let sub = world.substation.as_ref().expect("the real bot");
    let held: usize = sub
        .transmits
        .iter()
        .filter(|(t, _)| *t == stopped)
        .map(|(_, tx)| match tx {
            Transmit::Acks { verdicts, .. } => verdicts.len(),
            _ => 0,
        })
        .sum();
    assert!(held >= 4, "{held}");
    // Nothing the first incarnation counted was resent to the second (which would count it
    // again): every reading was answered once, counted once or refused. Those that reached
    // neither (bounced while the bot was away) were resent; the new bot refuses those of
    // intervals it never opened as late.
    assert_eq!(world.bot.duplicates, 0);
    let reports: Vec<MeterReport> = world.houses.iter().map(|h| h.core.report()).collect();
    let acknowledged: u64 = reports.iter().map(|r| r.acknowledged).sum();
    for r in &reports {
        assert_eq!(r.acknowledged + r.refused_total(), r.sent, "{r:?}");
        assert!(r.bounced >= 1 && r.unacknowledged == 0, "{r:?}");
    }
    assert_eq!(world.bot_accepted(), acknowledged);
    assert_eq!(sub.past.len(), 1);
    assert!(sub.past[0].accepted >= 4 * 30, "{:?}", sub.past[0]);
}

#[test]
fn refusals_travel_in_a_batch_beside_acceptances_and_are_never_resent() {
    let mut cfg = meter_config(Mode::Direct);
    cfg.interval = SECOND;
    let mut bot = bot_config();
    bot.aggregator.interval = SECOND;
    bot.aggregator.grace = 300;
    bot.aggregator.backfill = 0;
    let mut world = World::with_bot(25, 3, &cfg, bot);
    // Up to 1.5 s on the way: some readings arrive after their interval has closed.
    world.faults.delay = 1_500;
    world.run_for(MINUTE);
    world.faults.delay = 0;
    world.run_for(10 * SECOND);
    stop(&mut world);

    let sub = world.substation.as_ref().expect("the real bot");
    let mixed = sub
        .transmits
        .iter()
        .filter(|(_, t)| {
            matches!(t, Transmit::Acks { verdicts, .. }
                if verdicts.iter().any(|(_, v)| *v == bot::Verdict::Accepted)
                    && verdicts.iter().any(|(_, v)| *v == bot::Verdict::Refused("late".into())))
        })
        .count();
    assert!(mixed >= 3, "{mixed}");
    let reports: Vec<MeterReport> = world.houses.iter().map(|h| h.core.report()).collect();
    let late: u64 = reports
        .iter()
        .map(|r| r.refused.get("late").copied().unwrap_or(0))
        .sum();
    let acknowledged: u64 = reports.iter().map(|r| r.acknowledged).sum();
    assert!(late >= 10, "{reports:?}");
    for r in &reports {
        assert_eq!(r.acknowledged + r.refused_total(), r.sent, "{r:?}");
        assert_eq!((r.resent, r.unacknowledged), (0, 0), "{r:?}");
    }
    assert_eq!(sub.core.counters().rejected.get("late"), late);
    assert_eq!(sub.core.counters().accepted, acknowledged);
}

#[test]
fn a_rotating_meter_collects_its_pending_ack_before_leaving_so_no_reading_links_two_nicknames() {
    let mut cfg = meter_config(Mode::Direct);
    cfg.interval = SECOND;
    cfg.rotate = [20 * SECOND, 40 * SECOND];
    cfg.rejoin_gap = [SECOND, 3 * SECOND];
    let mut bot = bot_config();
    bot.aggregator.interval = SECOND;
    bot.aggregator.grace = 500;
    let mut world = World::with_bot(26, 4, &cfg, bot);
    world.run_for(3 * MINUTE);
    stop(&mut world);

    let reports = assert_counted_once(&world);
    for (h, r) in world.houses.iter().zip(&reports) {
        assert!(r.nicks >= 5, "{r:?}");
        // Each rotation asked for the held verdicts, and nothing was resent under a new nickname.
        let flushes = h.count(|t| *t == meter::Transmit::FlushAcks) as u64;
        assert!(flushes >= r.nicks - 1, "{flushes} flushes, {r:?}");
        assert_eq!(r.resent, 0, "{r:?}");
    }
    assert_eq!(world.bot.duplicates, 0);
}
