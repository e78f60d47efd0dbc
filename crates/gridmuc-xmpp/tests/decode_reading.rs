//! The bot's whole decode path after tokio-xmpp's parse (`gridmuc_xmpp::bot::decode_reading`),
//! fed what a hostile occupant can send: any stanza, and (since anyone may seal to the bot's
//! public key) any bytes sealed as a reading's fields. It never panics, and whatever it accepts
//! is a usable reading within the limits. `fuzz/fuzz_targets/bot_decode_reading.rs` runs the
//! same checks under libFuzzer; this runs in CI.

// Tests may unwrap (house rule); helpers outside `#[test]` fns need saying so.
#![allow(clippy::unwrap_used)]

use gridmuc_botkey::BotSecretKey;
use gridmuc_core::codec::{self, CodecLimits};
use gridmuc_core::{Quality, Reading, ReadingId, Rejection, Timestamp, Watts};
use gridmuc_xmpp::bot::decode_reading;
use gridmuc_xmpp::delivery;
use minidom::Element;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_xmpp::jid::Jid;
use xmpp_parsers::message::Message;

fn key() -> BotSecretKey {
    BotSecretKey::generate(&mut StdRng::seed_from_u64(7))
}

fn to() -> Jid {
    Jid::new("hood@rooms.grid.test/substation").unwrap()
}

/// What every accepted reading must be, whatever came in.
fn check(decoded: &Option<Result<Reading, Rejection>>, limits: &CodecLimits) {
    if let Some(Ok(r)) = decoded {
        assert!(!r.quality.is_unusable(), "unusable reading accepted: {r:?}");
        assert!(r.power.abs() <= limits.max_house_power.abs(), "{r:?}");
        assert_eq!(r.power.0 % i64::from(limits.quantum_watts), 0, "{r:?}");
    }
}

/// Replaces the sealed payload of a sealed reading with `inner` sealed the same way.
fn sealed_with(inner: &[u8], id: ReadingId, key: &BotSecretKey, seed: u64) -> Message {
    let reading = Reading {
        power: Watts(1_840),
        at: Timestamp(1_764_000_000_000),
        seqnr: 1,
        quality: Quality::AUTOMATIC_READOUT,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = delivery::sealed_reading_message(to(), id, &reading, &key.public(), &mut rng);
    let sealed = key.public().seal(&id.0.to_be_bytes(), inner, &mut rng);
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(sealed);
    for p in &mut m.payloads {
        if p.name() == "sealed" {
            *p = Element::builder("sealed", p.ns())
                .append(text.clone())
                .build();
        }
    }
    m
}

#[test]
fn a_sealed_reading_opens_to_what_was_sealed_and_only_with_its_id_and_key() {
    let k = key();
    let limits = CodecLimits::default();
    let reading = Reading {
        power: Watts(-2_310),
        at: Timestamp(1_764_000_060_000),
        seqnr: 9,
        quality: Quality::AUTOMATIC_READOUT,
    };
    let id = ReadingId(0x0123_4567_89ab_cdef);
    let mut rng = StdRng::seed_from_u64(1);
    let m = delivery::sealed_reading_message(to(), id, &reading, &k.public(), &mut rng);
    assert_eq!(
        decode_reading(&m, Some(id), Some(&k), &limits),
        Some(Ok(reading))
    );
    // Bound to the reading id: replayed under another id it does not open.
    let other = decode_reading(&m, Some(ReadingId(1)), Some(&k), &limits);
    assert!(
        matches!(other, Some(Err(Rejection::Malformed(_)))),
        "{other:?}"
    );
    // Sealed to someone else's key.
    let stranger = BotSecretKey::generate(&mut StdRng::seed_from_u64(99));
    let wrong = decode_reading(&m, Some(id), Some(&stranger), &limits);
    assert!(
        matches!(wrong, Some(Err(Rejection::Malformed(_)))),
        "{wrong:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes sealed to the bot's key, as a house that knows the public key can send.
    #[test]
    fn any_sealed_bytes_are_refused_or_a_usable_reading(inner in proptest::collection::vec(any::<u8>(), 0..600), seed in any::<u64>()) {
        let k = key();
        let id = ReadingId(u128::from(seed) | 1);
        let m = sealed_with(&inner, id, &k, seed);
        let limits = CodecLimits::default();
        let decoded = decode_reading(&m, Some(id), Some(&k), &limits);
        prop_assert!(decoded.is_some());
        check(&decoded, &limits);
    }

    /// Sealed fields that look almost right: the encoder's output with values, names and
    /// attributes mutated, as a fuzzer would find them.
    #[test]
    fn mutated_sealed_fields_are_refused_or_a_usable_reading(
        watts in -40_000i64..40_000,
        cut in 0usize..400,
        insert in "[<>/='\" a-zA-Z0-9.:-]{0,24}",
        seed in any::<u64>(),
    ) {
        let k = key();
        let id = ReadingId(u128::from(seed) | 1);
        let reading = Reading {
            power: Watts(watts),
            at: Timestamp(1_764_000_000_000),
            seqnr: 3,
            quality: Quality::AUTOMATIC_READOUT,
        };
        let mut fields = String::from(&codec::encode_fields(&reading)).into_bytes();
        let at = cut.min(fields.len());
        fields.splice(at..at, insert.bytes());
        let limits = CodecLimits::default();
        let decoded = decode_reading(&sealed_with(&fields, id, &k, seed), Some(id), Some(&k), &limits);
        check(&decoded, &limits);
    }

    /// Plain (unsealed) stanzas: whatever minidom and xmpp-parsers let through to the bot.
    #[test]
    fn any_parsed_message_is_refused_or_a_usable_reading(
        watts in -40_000i64..40_000,
        cut in 0usize..600,
        insert in "[<>/='\" a-zA-Z0-9.:-]{0,24}",
    ) {
        let reading = Reading {
            power: Watts(watts),
            at: Timestamp(1_764_000_000_000),
            seqnr: 3,
            quality: Quality::AUTOMATIC_READOUT,
        };
        let id = ReadingId(77);
        let m = delivery::reading_message(to(), xmpp_parsers::message::MessageType::Chat, id, &reading);
        let mut xml = String::from(&Element::from(m)).into_bytes();
        let at = cut.min(xml.len());
        xml.splice(at..at, insert.bytes());
        let Ok(el) = Element::from_reader(xml.as_slice()) else { return Ok(()) };
        let Ok(m) = Message::try_from(el) else { return Ok(()) };
        let limits = CodecLimits::default();
        let decoded = decode_reading(&m, delivery::reading_id(&m), Some(&key()), &limits);
        check(&decoded, &limits);
    }
}
