//! Untrusted bytes → `decode_stanza` → `Aggregator`: the whole path a hostile occupant reaches.
//!
//! Besides "never panics" it checks what the rest of the system relies on:
//! - the zero-copy fast path and the minidom path give the same outcome (`decode_stanza` tries
//!   the fast path first; minidom via `decode_message` is the reference, as in the codec's own
//!   `fast_path_agrees_with_minidom` property test);
//! - an accepted reading is usable, within `CodecLimits::max_house_power` and quantised, also
//!   under odd limits where the power limit is not a multiple of the quantum;
//! - the aggregator counts every input exactly once, refuses a replay as a duplicate and
//!   reports the reading alone in its interval's summary.

#![no_main]

use gridmuc_core::codec::{CodecLimits, decode_message, decode_stanza};
use gridmuc_core::reject::Rejection;
use gridmuc_core::{Aggregator, AggregatorConfig, Ingest, Reading, RoomNick, Watts};
use libfuzzer_sys::fuzz_target;
use minidom::Element;

/// Limits where rounding to the quantum could cross the power limit.
const ODD_LIMITS: CodecLimits = CodecLimits {
    max_stanza_bytes: 4096,
    max_house_power: Watts(25_005),
    quantum_watts: 20,
    max_depth: 8,
};

fuzz_target!(|data: &[u8]| {
    let limits = CodecLimits::default();
    let decoded = decode_stanza(data, &limits);
    if data.len() <= limits.max_stanza_bytes {
        let reference = Element::from_reader(data)
            .map_err(|e| Rejection::Malformed(e.to_string()))
            .and_then(|el| decode_message(&el, &limits));
        assert_eq!(decoded, reference, "fast path and minidom disagree");
    }
    if let Ok(reading) = decode_stanza(data, &ODD_LIMITS) {
        check_reading(&reading, &ODD_LIMITS);
    }
    let mut agg = Aggregator::new(AggregatorConfig::default());
    match decoded {
        Ok(reading) => {
            check_reading(&reading, &limits);
            aggregate(&mut agg, reading);
        }
        Err(rejection) => {
            agg.handle_rejection(&rejection);
            assert_eq!(agg.counters().rejected.get(rejection.kind()), 1);
        }
    }
});

fn check_reading(r: &Reading, limits: &CodecLimits) {
    assert!(!r.quality.is_unusable(), "unusable reading accepted: {r:?}");
    assert!(
        r.power.abs() <= limits.max_house_power.abs(),
        "beyond the physical limit: {r:?}"
    );
    let quantum = i64::from(limits.quantum_watts.max(1));
    assert_eq!(r.power.0 % quantum, 0, "not quantised: {r:?}");
}

/// Feeds one accepted reading (and its replay) through ingest, timeout and both polls.
fn aggregate(agg: &mut Aggregator, reading: Reading) {
    let Ok(nick) = RoomNick::new("fuzz") else {
        unreachable!("constant nickname is valid");
    };
    let now = reading.at.plus(1_000);
    assert_eq!(agg.handle_reading(now, &nick, reading), Ingest::Accepted);
    assert_eq!(
        agg.handle_reading(now, &nick, reading),
        Ingest::Rejected(Rejection::Duplicate)
    );
    let Some(due) = agg.poll_timeout() else {
        unreachable!("a reading was accepted, so an interval is open");
    };
    agg.handle_timeout(due);
    let summaries: Vec<_> = agg.poll_summaries().collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(
        (summaries[0].meters, summaries[0].total),
        (1, reading.power)
    );
    assert_eq!(
        (summaries[0].min, summaries[0].max),
        (reading.power, reading.power)
    );
    // One meter never has peers enough for the outlier detector; any alert must still drain.
    agg.poll_alerts().for_each(drop);
    let c = agg.counters();
    assert_eq!((c.accepted, c.rejected.total(), c.intervals), (1, 1, 1));
}
