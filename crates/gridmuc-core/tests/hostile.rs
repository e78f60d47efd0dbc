//! Hostile stanzas at system level: raw bytes → `decode_stanza` (or the typed
//! `decode_payloads` path the bot uses) → `Aggregator`, asserting that every drop is
//! *counted* under the right kind in `Aggregator::counters().rejected`, and nothing panics.
//!
//! The codec's unit tests already cover each decoder branch one by one; this file checks
//! what an operator sees: one counted reason per hostile input, no reading from it in any
//! summary, and identity taken only from the transport's room nickname.

use gridmuc_core::codec::{
    CodecLimits, MessageKind, decode_payloads, decode_stanza, encode_message,
};
use gridmuc_core::reject::{REJECTION_KINDS, Rejection};
use gridmuc_core::time::MINUTE;
use gridmuc_core::{
    Aggregator, AggregatorConfig, Ingest, Quality, Reading, RoomNick, Timestamp, Watts,
};
use minidom::Element;

/// 2026-11-24T20:00:00Z, the start of the interval every test reading falls into.
const T0: Timestamp = Timestamp(1_795_550_400_000);
/// `T0` as the wire writes it.
const T0_TEXT: &str = "2026-11-24T20:00:00Z";
/// A reading exactly as a meter sends it (DESIGN.md's shape); hostile rows edit this text.
const VALID: &str = "<message xmlns='jabber:client' type='chat' \
    to='neighbourhood@rooms.grid.example/bot' id='r-1'><body>1.84 kW</body>\
    <fields xmlns='urn:xmpp:iot:sensordata' seqnr='4711' done='true'><node nodeId='meter'>\
    <timestamp value='2026-11-24T20:00:00Z'><numeric name='Power' momentary='true' \
    automaticReadout='true' value='1840' unit='W'/></timestamp></node></fields></message>";

fn nick(s: &str) -> RoomNick {
    RoomNick::new(s).expect("test nicks are valid")
}

/// `VALID` with one piece of text replaced (the piece must be there: a typo fails loudly).
fn edit(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from:?} not in the valid stanza");
    VALID.replacen(from, to, 1)
}

/// `VALID` with another seqnr and timestamp, for stateful rows.
fn valid_at(seqnr: u64, at: Timestamp) -> String {
    edit("seqnr='4711'", &format!("seqnr='{seqnr}'")).replacen(T0_TEXT, &at.to_rfc3339(), 1)
}

/// What the bot does with raw bytes: decode, then either ingest or count the codec's refusal.
fn feed(agg: &mut Aggregator, now: Timestamp, from: &RoomNick, bytes: &[u8]) -> Ingest {
    match decode_stanza(bytes, &CodecLimits::default()) {
        Ok(reading) => agg.handle_reading(now, from, reading),
        Err(rejection) => {
            agg.handle_rejection(&rejection);
            Ingest::Rejected(rejection)
        }
    }
}

/// `<a><a>…</a></a>`, `depth` elements deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth))
}

/// One row: bytes from one nick after an optional accepted prefix, and the one counted outcome.
struct Case {
    name: &'static str,
    /// Stanzas the same nick sent before, all of which must be accepted.
    before: Vec<String>,
    hostile: String,
    /// When the hostile stanza arrives.
    now: Timestamp,
    /// The rejection kind counted for it, or `None` if it must be accepted.
    counted: Option<&'static str>,
}

fn case(name: &'static str, hostile: String, counted: &'static str) -> Case {
    Case {
        name,
        before: Vec::new(),
        hostile,
        now: T0.plus(2_000),
        counted: Some(counted),
    }
}

fn table() -> Vec<Case> {
    let one_mb_body = edit("1.84 kW", &"x".repeat(1 << 20));
    let deep_in_fields = edit(
        "<node nodeId='meter'>",
        &format!("{}<node nodeId='meter'>", nested(10_000)),
    );
    let occupant_id = "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged-house-A'/>";
    vec![
        case("NaN", edit("value='1840'", "value='NaN'"), "nan"),
        case("+infinity", edit("value='1840'", "value='inf'"), "infinite"),
        case(
            "1e300 W",
            edit("value='1840'", "value='1e300'"),
            "over_limit",
        ),
        case(
            "1e305 MW overflows to inf before the limit check",
            edit("value='1840' unit='W'", "value='1e305' unit='MW'"),
            "over_limit",
        ),
        case(
            "just over 25 kW",
            edit("value='1840'", "value='25001'"),
            "over_limit",
        ),
        case(
            "-5 W consumption",
            edit("value='1840'", "value='-5'"),
            "negative",
        ),
        case(
            "-5 W export is still a negative magnitude",
            edit("name='Power'", "name='Export Power'").replacen("value='1840'", "value='-5'", 1),
            "negative",
        ),
        case(
            "energy unit for power",
            edit("unit='W'", "unit='kWh'"),
            "bad_unit",
        ),
        case(
            "milliwatt is not megawatt",
            edit("unit='W'", "unit='mW'"),
            "bad_unit",
        ),
        case("1 MB body", one_mb_body, "oversize"),
        case(
            "10,000-deep nesting (size guard first)",
            nested(10_000),
            "oversize",
        ),
        case(
            "10,000-deep nesting inside the payload",
            deep_in_fields,
            "oversize",
        ),
        case(
            "9-deep nesting within 4 KiB",
            edit("</node>", &format!("{}</node>", nested(6))),
            "too_deep",
        ),
        case(
            "payload in a wrong namespace",
            edit("urn:xmpp:iot:sensordata", "urn:xmpp:iot:sensordata:1"),
            "wrong_namespace",
        ),
        case(
            "message in a wrong namespace",
            edit("jabber:client", "jabber:server"),
            "wrong_namespace",
        ),
        case(
            "no payload at all",
            edit("<fields", "<xfields").replacen("</fields>", "</xfields>", 1),
            "wrong_namespace",
        ),
        case("missing seqnr", edit("seqnr='4711' ", ""), "missing"),
        case("missing nodeId", edit(" nodeId='meter'", ""), "missing"),
        case(
            "missing timestamp value",
            edit(" value='2026-11-24T20:00:00Z'", ""),
            "missing",
        ),
        case("missing unit", edit(" unit='W'", ""), "missing"),
        case("missing value", edit(" value='1840'", ""), "missing"),
        case(
            "no Power field",
            edit("name='Power'", "name='Voltage'"),
            "no_power_field",
        ),
        case(
            "two payloads",
            edit(
                "</fields>",
                "</fields><fields xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>",
            ),
            "ambiguous_power_field",
        ),
        case(
            "unparseable seqnr",
            edit("seqnr='4711'", "seqnr='-1'"),
            "bad_attribute",
        ),
        case("not XML", edit("</message>", "</mess"), "malformed"),
        case(
            "meter flags an error",
            edit("automaticReadout='true'", "error='true'"),
            "unusable",
        ),
        Case {
            name: "forged occupant-id is ignored, not an identity",
            before: Vec::new(),
            hostile: edit("<body>", &format!("{occupant_id}<body>")),
            now: T0.plus(2_000),
            counted: None,
        },
        Case {
            name: "forged from= is ignored, not an identity",
            before: Vec::new(),
            hostile: edit(
                "type='chat'",
                "type='chat' from='neighbourhood@rooms.grid.example/house-A'",
            ),
            now: T0.plus(2_000),
            counted: None,
        },
        Case {
            name: "duplicate seqnr replay",
            before: vec![VALID.to_owned()],
            hostile: edit("value='1840'", "value='9990'"),
            now: T0.plus(3_000),
            counted: Some("duplicate"),
        },
        case(
            "far-future timestamp",
            valid_at(1, T0.plus(365 * 24 * 60 * MINUTE)),
            "future",
        ),
        case(
            "just beyond max_future",
            valid_at(1, T0.plus(2_000 + 30_000 + 1)),
            "future",
        ),
        Case {
            name: "stale timestamp past the backfill window",
            before: vec![valid_at(1, T0.plus(-MINUTE))],
            hostile: valid_at(2, T0.plus(-15 * MINUTE)),
            now: T0.plus(2_000),
            counted: Some("late"),
        },
        case(
            "stale timestamp as the very first reading",
            valid_at(1, T0.plus(-365 * 24 * 60 * MINUTE)),
            "late",
        ),
    ]
}

/// Every row: exactly one outcome counted, under the expected kind, and nothing else moved.
#[test]
fn hostile_table_is_counted_by_kind() {
    let house = nick("house-1");
    let mut seen_kinds = Vec::new();
    for c in table() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        for b in &c.before {
            assert_eq!(
                feed(&mut agg, T0.plus(1_000), &house, b.as_bytes()),
                Ingest::Accepted,
                "{}: prefix",
                c.name
            );
        }
        let before = agg.counters().clone();
        let outcome = feed(&mut agg, c.now, &house, c.hostile.as_bytes());
        let after = agg.counters();
        match c.counted {
            Some(kind) => {
                assert!(
                    matches!(&outcome, Ingest::Rejected(r) if r.kind() == kind),
                    "{}: {outcome:?}",
                    c.name
                );
                assert_eq!(
                    after.rejected.get(kind),
                    before.rejected.get(kind) + 1,
                    "{}",
                    c.name
                );
                assert_eq!(
                    after.rejected.total(),
                    before.rejected.total() + 1,
                    "{}",
                    c.name
                );
                assert_eq!(after.accepted, before.accepted, "{}", c.name);
                seen_kinds.push(kind);
            }
            None => {
                assert_eq!(outcome, Ingest::Accepted, "{}", c.name);
                assert_eq!(after.rejected.total(), 0, "{}", c.name);
            }
        }
        // Whatever was refused never reaches a summary: only the accepted prefix is counted.
        agg.flush();
        let meters: usize = agg.poll_summaries().map(|s| s.meters).sum();
        let accepted = c.before.len() + usize::from(c.counted.is_none());
        assert_eq!(meters, accepted, "{}", c.name);
    }
    // Every reason a remote occupant can trigger with one stanza; a flood is the test below.
    let missing: Vec<_> = REJECTION_KINDS
        .iter()
        .filter(|k| **k != "rate_limited" && !seen_kinds.contains(*k))
        .collect();
    assert!(missing.is_empty(), "no hostile row for {missing:?}");
}

/// The typed path (tokio-xmpp hands the bot `Message::payloads`) has the same guards: a
/// 10,000-deep payload is refused by depth without walking it, a 1 MB payload by size.
///
/// Runs on a 64 MiB stack because *dropping* a deeply nested `minidom::Element` recurses once
/// per level (parsing does not): 16,000 levels overflow a 2 MiB stack in a debug build. The
/// decoder never recurses past `max_depth`, but whoever owns the parsed element (tokio-xmpp in
/// the bot) must keep such stanzas out or drop them on a large stack; see the hostile-input report.
#[test]
fn typed_payload_path_guards_depth_and_size() {
    let big_stack = std::thread::Builder::new().stack_size(64 << 20);
    big_stack
        .spawn(|| {
            let limits = CodecLimits::default();
            let mut agg = Aggregator::new(AggregatorConfig::default());
            let deep: Element = format!("<x xmlns='urn:example'>{}</x>", nested(10_000))
                .parse()
                .unwrap();
            let huge: Element = format!("<x xmlns='urn:example'>{}</x>", "y".repeat(1 << 20))
                .parse()
                .unwrap();
            let fields: Element = VALID
                .split_once("<fields")
                .and_then(|(_, rest)| rest.split_once("</fields>"))
                .map(|(inner, _)| format!("<fields{inner}</fields>"))
                .unwrap()
                .parse()
                .unwrap();
            for (payloads, kind) in [
                (vec![fields.clone(), deep], "too_deep"),
                (vec![fields.clone(), huge], "oversize"),
            ] {
                let r = decode_payloads(&payloads, &limits).unwrap_err();
                assert_eq!(r.kind(), kind);
                agg.handle_rejection(&r);
            }
            assert_eq!(
                decode_payloads(&[fields], &limits).map(|r| r.power),
                Ok(Watts(1840))
            );
            let rejected = &agg.counters().rejected;
            assert_eq!((rejected.get("too_deep"), rejected.get("oversize")), (1, 1));
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The stanza text the hostile rows edit decodes exactly like the codec's own encoder output,
/// so the table attacks the real wire format and not a private variant of it.
#[test]
fn table_base_is_the_encoders_stanza() {
    let reading = Reading {
        power: Watts(1840),
        at: T0,
        seqnr: 4711,
        quality: Quality::AUTOMATIC_READOUT,
    };
    let encoded = String::from(&encode_message(
        &reading,
        "neighbourhood@rooms.grid.example/bot",
        MessageKind::Chat,
        "r-1",
    ));
    let limits = CodecLimits::default();
    assert_eq!(decode_stanza(encoded.as_bytes(), &limits), Ok(reading));
    assert_eq!(decode_stanza(VALID.as_bytes(), &limits), Ok(reading));
}

/// Identity is the room nickname the transport reports, never anything inside the stanza:
/// one forged occupant-id (or `from`) carried by two nicks counts as two meters, and one nick
/// switching forged ids between readings is still one meter (its seqnr replay is a duplicate).
#[test]
fn forged_identity_elements_never_merge_or_split_meters() {
    let forged = |id: &str, seqnr: u64, watts: i64| {
        edit(
            "<body>",
            &format!("<occupant-id xmlns='urn:xmpp:occupant-id:0' id='{id}'/><body>"),
        )
        .replacen(
            "type='chat'",
            &format!("type='chat' from='neighbourhood@rooms.grid.example/{id}'"),
            1,
        )
        .replacen("seqnr='4711'", &format!("seqnr='{seqnr}'"), 1)
        .replacen("value='1840'", &format!("value='{watts}'"), 1)
    };
    let mut agg = Aggregator::new(AggregatorConfig::default());
    let now = T0.plus(2_000);
    let (a, b) = (nick("house-a"), nick("house-b"));
    assert_eq!(
        feed(&mut agg, now, &a, forged("same", 1, 1000).as_bytes()),
        Ingest::Accepted
    );
    assert_eq!(
        feed(&mut agg, now, &b, forged("same", 1, 3000).as_bytes()),
        Ingest::Accepted
    );
    assert_eq!(
        feed(&mut agg, now, &a, forged("other", 2, 2000).as_bytes()),
        Ingest::Accepted
    );
    assert_eq!(
        feed(&mut agg, now, &a, forged("third", 2, 9000).as_bytes()),
        Ingest::Rejected(Rejection::Duplicate)
    );
    agg.flush();
    let s: Vec<_> = agg.poll_summaries().collect();
    // house-a: mean of 1000 and 2000; house-b: 3000. Two meters, whatever the forged ids said.
    assert_eq!((s[0].meters, s[0].total), (2, Watts(4500)));
    let mut top = agg.top(2);
    top.sort();
    assert_eq!(top, vec![(a, Watts(1500)), (b, Watts(3000))]);
}

/// A flood from one nick: `max_readings_per_interval` are taken, the rest counted as
/// `rate_limited`, and the flooder still counts as one meter at the mean of what was taken.
#[test]
fn reading_flood_from_one_nick_is_rate_limited() {
    let config = AggregatorConfig::default();
    let limit = u64::from(config.max_readings_per_interval);
    let mut agg = Aggregator::new(config);
    let flooder = nick("flooder");
    let honest = nick("honest");
    assert_eq!(
        feed(&mut agg, T0.plus(1_000), &honest, VALID.as_bytes()),
        Ingest::Accepted
    );
    let flood = 10_000u64;
    for seqnr in 0..flood {
        let bytes = valid_at(seqnr, T0).replacen(
            "value='1840'",
            &format!("value='{}'", 20_000 + seqnr % 2 * 10),
            1,
        );
        feed(&mut agg, T0.plus(2_000), &flooder, bytes.as_bytes());
    }
    let c = agg.counters();
    assert_eq!(c.accepted, 1 + limit);
    assert_eq!(c.rejected.get("rate_limited"), flood - limit);
    assert_eq!(c.rejected.total(), flood - limit);
    agg.flush();
    let s: Vec<_> = agg.poll_summaries().collect();
    assert_eq!(s[0].meters, 2);
    assert_eq!(
        s[0].max,
        Watts(20_005),
        "the flooder's {limit} readings count once, at their mean"
    );
}

/// `Slot.sum` is an i64 of up to `max_readings_per_interval` readings of at most
/// `max_house_power` each: even the widest rate limit (`u32::MAX`) times 25 kW is about
/// 1.1e14 W, five orders of magnitude below `i64::MAX`, so no saturating arithmetic is needed.
#[test]
fn slot_sum_cannot_overflow_for_codec_bounded_readings() {
    let worst = i128::from(u32::MAX) * i128::from(CodecLimits::default().max_house_power.0);
    assert!(worst < i128::from(i64::MAX) / 1_000, "{worst}");
    let mut agg = Aggregator::new(AggregatorConfig {
        max_readings_per_interval: u32::MAX,
        ..AggregatorConfig::default()
    });
    let flooder = nick("flooder");
    for seqnr in 0..1_000 {
        let bytes = valid_at(seqnr, T0).replacen("value='1840'", "value='25000'", 1);
        assert_eq!(
            feed(&mut agg, T0.plus(2_000), &flooder, bytes.as_bytes()),
            Ingest::Accepted
        );
    }
    agg.flush();
    assert_eq!(
        agg.poll_summaries().next().map(|s| s.total),
        Some(Watts(25_000))
    );
}

/// A stale first reading must not set the aggregator's clock origin far in the past: before
/// the first fix it was accepted, opened an interval a year back, and the next `handle_timeout`
/// posted 1,000 empty summaries. Now a fresh aggregator (a restarted bot) takes backfill only
/// within its window (10 minutes by default), so however stale the input, at most that many
/// intervals reopen.
#[test]
fn stale_readings_cannot_open_old_intervals_or_flood_summaries() {
    let mut agg = Aggregator::new(AggregatorConfig::default());
    let now = T0.plus(2_000);
    let hostile = nick("hostile");
    // Start two intervals back: the interval just before T0 is still within its grace.
    for i in 2..=501 {
        let stale = valid_at(i, T0.plus(-(i as i64) * MINUTE));
        // Intervals that closed (end + 5 s grace) less than 10 minutes before `now`.
        let expected = if i <= 11 {
            Ingest::Accepted
        } else {
            Ingest::Rejected(Rejection::Late)
        };
        assert_eq!(
            feed(&mut agg, now, &hostile, stale.as_bytes()),
            expected,
            "{i}"
        );
    }
    assert_eq!(
        feed(&mut agg, now, &nick("honest"), VALID.as_bytes()),
        Ingest::Accepted
    );
    agg.handle_timeout(T0.plus(MINUTE + 5_000));
    let s: Vec<_> = agg.poll_summaries().collect();
    // T0 - 11 min … T0: ten backfilled intervals, the empty one before T0, and T0's own.
    assert_eq!(s.len(), 12);
    assert_eq!((s[0].start, s[0].meters), (T0.plus(-11 * MINUTE), 1));
    assert_eq!((s[10].start, s[10].meters), (T0.plus(-MINUTE), 0));
    assert_eq!((s[11].start, s[11].meters), (T0, 1));
    assert_eq!(agg.counters().rejected.get("late"), 490);
}

/// With a limit that is not a multiple of the quantum, rounding must not lift an accepted
/// value over the limit: before the fix 25,005 W under a 25,005 W limit was accepted as 25,010 W.
#[test]
fn quantisation_never_lifts_a_reading_over_the_limit() {
    let limits = CodecLimits {
        max_house_power: Watts(25_005),
        ..CodecLimits::default()
    };
    let decode = |watts: &str| decode_stanza(edit("value='1840'", watts).as_bytes(), &limits);
    assert_eq!(
        decode("value='25005'").map_err(|r| r.kind()),
        Err("over_limit")
    );
    assert_eq!(
        decode("value='25004.6'").map_err(|r| r.kind()),
        Err("over_limit")
    );
    assert_eq!(decode("value='25000'").map(|r| r.power), Ok(Watts(25_000)));
    assert_eq!(decode("value='25004'").map(|r| r.power), Ok(Watts(25_000)));
}
