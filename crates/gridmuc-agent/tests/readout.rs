//! XEP-0323 readout on the cores: a meter answering requests through the room (who is answered,
//! what is refused, what a rotated nickname may show) and the bot polling configured devices
//! into the same aggregation path as pushed readings. Virtual clock, no I/O.

use gridmuc_agent::Agent;
use gridmuc_agent::bot::{self, BotCore, BotEvent, Verdict};
use gridmuc_agent::harness::{EPOCH, bot_config, meter_config};
use gridmuc_agent::meter::{Input, MeterCore, Mode, Transmit};
use gridmuc_agent::readout::{
    Answer, MAX_PENDING, MAX_READOUTS_PER_INTERVAL, Origin, PollAnswer, Query, ReadRequest,
    ReplyTo, Request,
};
use gridmuc_agent::{RoomInput, SelfPresence};
use gridmuc_core::time::{MINUTE, SECOND};
use gridmuc_core::{Quality, Reading, Rejection, RoomNick, Timestamp, Watts};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn nick(s: &str) -> RoomNick {
    RoomNick::new(s).expect("a nickname")
}

/// A meter driven by a room that lets it in, measures `watts` for every interval and accepts
/// every reading; it keeps the readout answers it transmitted.
struct Meter {
    core: MeterCore<StdRng>,
    now: Timestamp,
    watts: i64,
    answers: Vec<Answer>,
    joins: Vec<RoomNick>,
    next_reply: u64,
}

impl Meter {
    fn new(readout: bool, rotate: Option<i64>) -> Meter {
        let mut cfg = meter_config(Mode::Direct);
        cfg.readout = readout;
        if let Some(r) = rotate {
            cfg.rotate = [r, r];
            cfg.rejoin_gap = [5 * SECOND, 5 * SECOND];
        }
        let mut m = Meter {
            core: MeterCore::new(cfg, StdRng::seed_from_u64(7), EPOCH),
            now: EPOCH,
            watts: 1_234,
            answers: Vec::new(),
            joins: Vec::new(),
            next_reply: 0,
        };
        m.pump();
        m
    }

    /// Plays the room for everything the core asks, until it asks nothing more.
    fn pump(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let input = match t {
                Transmit::Join(n) => {
                    self.joins.push(n);
                    Some(Input::Joined(SelfPresence::default()))
                }
                Transmit::Measure { slot } => Some(Input::Measured {
                    slot,
                    value: Some(Watts(self.watts)),
                }),
                Transmit::Send { id, .. } => Some(Input::Verdicts(vec![(id, Verdict::Accepted)])),
                Transmit::Answer(a) => {
                    self.answers.push(a);
                    None
                }
                Transmit::Leave(_)
                | Transmit::Ping
                | Transmit::RenewSession
                | Transmit::FlushAcks
                | Transmit::SaveOutbox(_) => None,
            };
            if let Some(i) = input {
                self.core.handle(self.now, i);
            }
        }
    }

    /// Runs timers until `until`.
    fn run_until(&mut self, until: Timestamp) {
        while let Some(t) = self.core.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.core.handle_timeout(self.now);
            self.pump();
        }
        self.now = until;
    }

    /// Hands a request to the meter; what it answered.
    fn ask(&mut self, origin: Origin, query: Query) -> Vec<Answer> {
        self.next_reply += 1;
        let req = Request {
            reply: ReplyTo(self.next_reply),
            origin,
            query,
        };
        self.core.handle(self.now, Input::Request(req));
        let before = self.answers.len();
        self.pump();
        self.answers.split_off(before)
    }
}

fn momentary(seqnr: u64) -> Query {
    Query::Read(ReadRequest {
        seqnr,
        types: vec!["momentary".into()],
        ..ReadRequest::default()
    })
}

fn asker() -> Origin {
    Origin::Occupant(nick("asker"))
}

#[test]
fn a_meter_answers_a_momentary_readout_with_its_last_interval_and_the_energy_since_joining() {
    let mut m = Meter::new(true, None);
    // Nothing measured yet: accepted, held until the first interval is measured.
    let early = m.ask(asker(), momentary(41));
    assert_eq!(
        early,
        [Answer::Accepted {
            reply: ReplyTo(1),
            seqnr: 41
        }]
    );
    m.run_until(EPOCH.plus(2 * MINUTE));
    let fields: Vec<_> = m
        .answers
        .iter()
        .filter_map(|a| match a {
            Answer::Fields { to, seqnr, values } => Some((to.clone(), *seqnr, *values)),
            _ => None,
        })
        .collect();
    assert_eq!(fields.len(), 1, "{:?}", m.answers);
    let (to, seqnr, v) = &fields[0];
    assert_eq!((to.as_str(), *seqnr), ("asker", 41));
    assert_eq!(v.power, Watts(1_230), "quantised like the pushed reading");
    assert_eq!(v.at, EPOCH.plus(MINUTE), "the first interval measured");
    // 1,230 W over one minute is 20.5 Wh; energy is whole Wh.
    assert_eq!(v.energy_wh, 20);
    assert!(v.with_power && v.with_energy);
    // Later requests are answered at once, with the energy of every interval so far.
    m.run_until(EPOCH.plus(5 * MINUTE));
    let now = m.ask(asker(), momentary(42));
    let [
        Answer::Accepted { seqnr: 42, .. },
        Answer::Fields {
            seqnr: 42, values, ..
        },
    ] = now.as_slice()
    else {
        panic!("{now:?}");
    };
    assert_eq!(values.at, EPOCH.plus(4 * MINUTE));
    assert_eq!(values.energy_wh, 4 * 1_230 / 60);
}

#[test]
fn only_occupants_are_answered_and_outsiders_learn_nothing() {
    let mut m = Meter::new(true, None);
    m.run_until(EPOCH.plus(3 * MINUTE));
    for q in [
        momentary(1),
        Query::DiscoInfo { node: None },
        Query::Unsupported,
    ] {
        let a = m.ask(Origin::Outside, q);
        assert!(
            matches!(a.as_slice(), [Answer::Unavailable { .. }]),
            "{a:?}"
        );
    }
    // disco#info on the occupant JID lists the feature; a node or an unknown request does not.
    let disco = m.ask(asker(), Query::DiscoInfo { node: None });
    assert!(
        matches!(
            disco.as_slice(),
            [Answer::DiscoInfo {
                sensordata: true,
                ..
            }]
        ),
        "{disco:?}"
    );
    let node = m.ask(
        asker(),
        Query::DiscoInfo {
            node: Some("x".into()),
        },
    );
    assert!(matches!(node.as_slice(), [Answer::Unavailable { .. }]));
    // A meter with readout off still answers disco#info, without the feature, and no readout.
    let mut off = Meter::new(false, None);
    off.run_until(EPOCH.plus(3 * MINUTE));
    let disco = off.ask(asker(), Query::DiscoInfo { node: None });
    assert!(matches!(
        disco.as_slice(),
        [Answer::DiscoInfo {
            sensordata: false,
            ..
        }]
    ));
    let read = off.ask(asker(), momentary(3));
    assert!(matches!(read.as_slice(), [Answer::Unavailable { .. }]));
    // Nobody is answered while the meter holds no nickname (stopped here).
    m.core.handle(m.now, Input::Shutdown);
    m.run_until(m.now.plus(MINUTE));
    assert!(m.core.outcome().is_some());
    let a = m.ask(asker(), momentary(4));
    assert!(
        matches!(a.as_slice(), [Answer::Unavailable { .. }]),
        "{a:?}"
    );
}

#[test]
fn unsupported_types_nodes_fields_and_timed_requests_are_rejected_with_a_reason() {
    let mut m = Meter::new(true, None);
    m.run_until(EPOCH.plus(3 * MINUTE));
    let cases = [
        (
            ReadRequest {
                seqnr: 1,
                types: vec!["historicalDay".into()],
                ..ReadRequest::default()
            },
            "only momentary values are available",
        ),
        (
            ReadRequest {
                seqnr: 2,
                nodes: vec!["serial-123".into()],
                ..ReadRequest::default()
            },
            "no such node",
        ),
        (
            ReadRequest {
                seqnr: 3,
                fields: vec!["Voltage".into()],
                ..ReadRequest::default()
            },
            "no such field (Power in W, Energy in kWh)",
        ),
        (
            ReadRequest {
                seqnr: 4,
                timed: true,
                ..ReadRequest::default()
            },
            "timed readouts are not supported",
        ),
    ];
    for (req, reason) in cases {
        let seqnr = req.seqnr;
        let a = m.ask(asker(), Query::Read(req));
        assert!(
            matches!(a.as_slice(), [Answer::Rejected { seqnr: s, why, .. }] if *s == seqnr && *why == reason),
            "{a:?}"
        );
    }
    // Momentary among other types, the meter's node, and one known field: answered, with only it.
    let a = m.ask(
        asker(),
        Query::Read(ReadRequest {
            seqnr: 5,
            types: vec!["momentary".into(), "peak".into()],
            nodes: vec!["meter".into()],
            fields: vec!["Energy".into()],
            timed: false,
        }),
    );
    let [Answer::Accepted { .. }, Answer::Fields { values, .. }] = a.as_slice() else {
        panic!("{a:?}");
    };
    assert!(!values.with_power && values.with_energy);
}

#[test]
fn cancel_withdraws_a_waiting_readout_and_an_unknown_cancel_is_rejected() {
    let mut m = Meter::new(true, None);
    m.ask(asker(), momentary(10));
    m.ask(Origin::Occupant(nick("other")), momentary(10));
    // Only the asker's own request is withdrawn.
    let c = m.ask(asker(), Query::Cancel { seqnr: 10 });
    assert!(
        matches!(c.as_slice(), [Answer::Cancelled { seqnr: 10, .. }]),
        "{c:?}"
    );
    let again = m.ask(asker(), Query::Cancel { seqnr: 10 });
    assert!(
        matches!(again.as_slice(), [Answer::Rejected { seqnr: 10, .. }]),
        "{again:?}"
    );
    m.run_until(EPOCH.plus(2 * MINUTE));
    let to: Vec<&str> = m
        .answers
        .iter()
        .filter_map(|a| match a {
            Answer::Fields { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(to, ["other"]);
}

#[test]
fn a_flood_of_readouts_is_refused_past_the_per_interval_limit() {
    let mut m = Meter::new(true, None);
    // Before the first measurement only a few may wait.
    let waiting: Vec<Vec<Answer>> = (0..MAX_PENDING as u64 + 3)
        .map(|s| m.ask(asker(), momentary(s)))
        .collect();
    let refused = waiting
        .iter()
        .filter(|a| matches!(a.as_slice(), [Answer::Rejected { .. }]))
        .count();
    assert_eq!(refused, 3);
    m.run_until(EPOCH.plus(3 * MINUTE).plus(-1));
    // A fresh interval of the answer budget, then one too many.
    m.now = EPOCH.plus(3 * MINUTE);
    let answered = (0..u64::from(MAX_READOUTS_PER_INTERVAL) + 1)
        .map(|s| m.ask(asker(), momentary(100 + s)))
        .filter(|a| a.iter().any(|x| matches!(x, Answer::Fields { .. })))
        .count();
    assert_eq!(answered as u32, MAX_READOUTS_PER_INTERVAL);
    let last = m.ask(asker(), momentary(999));
    assert!(
        matches!(
            last.as_slice(),
            [Answer::Rejected {
                why: "too many readouts this interval",
                ..
            }]
        ),
        "{last:?}"
    );
}

#[test]
fn a_rotated_nickname_shows_nothing_measured_under_the_one_before() {
    let mut m = Meter::new(true, Some(5 * MINUTE));
    m.run_until(EPOCH.plus(5 * MINUTE + 30 * SECOND));
    assert_eq!(m.joins.len(), 2, "rotated once");
    // Just rejoined: the old nickname's interval and energy are not this nickname's.
    let a = m.ask(asker(), momentary(1));
    assert!(
        matches!(a.as_slice(), [Answer::Accepted { .. }]),
        "no values yet under the new nickname: {a:?}"
    );
    m.run_until(EPOCH.plus(7 * MINUTE));
    let fields: Vec<_> = m
        .answers
        .iter()
        .filter_map(|a| match a {
            Answer::Fields { values, .. } => Some(*values),
            _ => None,
        })
        .collect();
    assert_eq!(fields.len(), 1);
    // One interval measured under this nickname: its energy alone.
    assert_eq!(fields[0].energy_wh, 20);
    assert!(fields[0].at >= EPOCH.plus(6 * MINUTE));
}

/// A bot polling `pv-roof` every minute, in the room.
fn polling_bot() -> BotCore<StdRng> {
    let mut cfg = bot_config();
    cfg.poll = MINUTE;
    cfg.poll_devices = vec![nick("pv-roof")];
    cfg.post_summaries = false;
    let mut b = BotCore::new(cfg, StdRng::seed_from_u64(3), EPOCH);
    while b.poll_transmit().is_some() {}
    b.handle(
        EPOCH.plus(10),
        RoomInput::Joined(SelfPresence::default()).into(),
    );
    b
}

fn polls(b: &mut BotCore<StdRng>) -> Vec<(RoomNick, u64)> {
    std::iter::from_fn(|| b.poll_transmit())
        .filter_map(|t| match t {
            bot::Transmit::Poll { to, seqnr } => Some((to, seqnr)),
            _ => None,
        })
        .collect()
}

fn reading(watts: i64, at: Timestamp) -> Reading {
    Reading {
        power: Watts(watts),
        at,
        seqnr: 0,
        quality: Quality::AUTOMATIC_READOUT,
    }
}

/// A `<fields done='true'/>` answer from `from` to request `seqnr`, arriving at `at`.
fn answer(
    b: &mut BotCore<StdRng>,
    at: Timestamp,
    from: &RoomNick,
    seqnr: u64,
    reading: Result<Reading, Rejection>,
) {
    let answer = PollAnswer::Fields {
        reading,
        done: true,
    };
    let from = from.clone();
    b.handle(
        at,
        bot::Input::Polled {
            from,
            seqnr,
            answer,
        },
    );
}

fn summaries(b: &mut BotCore<StdRng>) -> Vec<(Timestamp, usize, Watts)> {
    std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            BotEvent::Summary { stats, .. } => Some((stats.start, stats.meters, stats.total)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_bot_polls_a_configured_device_and_counts_its_answer_like_a_pushed_reading() {
    let mut b = polling_bot();
    let t1 = EPOCH.plus(MINUTE);
    assert_eq!(b.poll_timeout().map(|t| t <= t1), Some(true));
    b.handle_timeout(t1);
    let sent = polls(&mut b);
    assert_eq!(sent.len(), 1);
    let (device, seqnr) = sent[0].clone();
    assert_eq!(device.as_str(), "pv-roof");
    assert!(b.awaits_readout(&device));
    let accepted = bot::Input::Polled {
        from: device.clone(),
        seqnr,
        answer: PollAnswer::Accepted,
    };
    b.handle(t1.plus(50), accepted);
    assert!(
        b.awaits_readout(&device),
        "accepted: the values are still to come"
    );
    answer(
        &mut b,
        t1.plus(80),
        &device,
        seqnr,
        Ok(reading(-2_500, t1.plus(40))),
    );
    assert!(!b.awaits_readout(&device), "one reading per request");
    // A second answer to the same request, and one for a request never made, count nothing.
    answer(
        &mut b,
        t1.plus(90),
        &device,
        seqnr,
        Ok(reading(9_000, t1.plus(40))),
    );
    let someone = nick("someone");
    answer(
        &mut b,
        t1.plus(95),
        &someone,
        seqnr + 1,
        Ok(reading(9_000, t1.plus(40))),
    );
    b.handle_timeout(EPOCH.plus(2 * MINUTE + 30 * SECOND));
    let closed = summaries(&mut b);
    assert!(
        closed.contains(&(t1, 1, Watts(-2_500))),
        "the device's export counted once: {closed:?}"
    );
    let c = b.poll_counts();
    assert_eq!((c.requested, c.readings, c.unsolicited), (2, 1, 2));
    assert_eq!(b.counters().accepted, 1);
}

#[test]
fn a_polled_answer_meets_the_same_refusals_as_a_pushed_one_and_counts_when_it_was_asked() {
    let mut b = polling_bot();
    let t1 = EPOCH.plus(MINUTE);
    b.handle_timeout(t1);
    let (device, s1) = polls(&mut b).remove(0);
    // What the codec refused (here: no Power field) is counted by reason, like a pushed one.
    answer(
        &mut b,
        t1.plus(10),
        &device,
        s1,
        Err(Rejection::NoPowerField),
    );
    // A momentary answer is the moment the bot asked: a device whose clock is half an hour
    // behind (or that writes local time without a zone) is counted where it was asked.
    let t2 = EPOCH.plus(2 * MINUTE);
    b.handle_timeout(t2);
    let (_, s2) = polls(&mut b).remove(0);
    answer(
        &mut b,
        t2.plus(10),
        &device,
        s2,
        Ok(reading(900, EPOCH.plus(-30 * MINUTE))),
    );
    // A good one is counted in its interval.
    let t3 = EPOCH.plus(3 * MINUTE);
    b.handle_timeout(t3);
    let (_, s3) = polls(&mut b).remove(0);
    answer(
        &mut b,
        t3.plus(10),
        &device,
        s3,
        Ok(reading(700, t3.plus(5))),
    );
    b.handle_timeout(EPOCH.plus(4 * MINUTE + 30 * SECOND));
    let closed = summaries(&mut b);
    assert!(closed.contains(&(t2, 1, Watts(900))), "{closed:?}");
    assert!(closed.contains(&(t3, 1, Watts(700))), "{closed:?}");
    let rejected = &b.counters().rejected;
    assert_eq!(rejected.get("no_power_field"), 1, "{rejected:?}");
    assert_eq!(rejected.total(), 1, "{rejected:?}");
    assert_eq!(b.counters().accepted, 2);
}

#[test]
fn refusals_and_silence_end_a_poll_and_the_device_is_asked_again_next_period() {
    let mut b = polling_bot();
    let t1 = EPOCH.plus(MINUTE);
    b.handle_timeout(t1);
    let (device, seqnr) = polls(&mut b).remove(0);
    b.handle(
        t1.plus(10),
        bot::Input::Polled {
            from: device.clone(),
            seqnr,
            answer: PollAnswer::Refused("item-not-found".into()),
        },
    );
    assert!(!b.awaits_readout(&device));
    // Next period: asked again, and this time it never answers.
    b.handle_timeout(EPOCH.plus(2 * MINUTE));
    assert_eq!(polls(&mut b).len(), 1);
    b.handle_timeout(EPOCH.plus(2 * MINUTE + 45 * SECOND));
    assert!(!b.awaits_readout(&device), "given up");
    let c = b.poll_counts();
    assert_eq!(
        (c.requested, c.refused, c.unanswered, c.readings),
        (2, 1, 1, 0)
    );
    // No polls at all when polling is off (the default).
    let mut quiet = BotCore::new(bot_config(), StdRng::seed_from_u64(4), EPOCH);
    quiet.handle(
        EPOCH.plus(10),
        RoomInput::Joined(SelfPresence::default()).into(),
    );
    quiet.handle_timeout(EPOCH.plus(10 * MINUTE));
    assert!(polls(&mut quiet).is_empty());
}
