//! Untrusted bytes → the bot's real decode path (`gridmuc_xmpp::bot::decode_reading`), twice:
//! as a whole stanza (minidom and xmpp-parsers, as tokio-xmpp hands it to the bot), and as the
//! fields of a sealed reading (anyone holding the bot's public key can seal any bytes to it).
//!
//! Besides "never panics": whatever is accepted is a usable reading, within the house power
//! limit and a multiple of the quantum. `crates/gridmuc-xmpp/tests/decode_reading.rs` runs the
//! same checks as a property test in CI.

#![no_main]

use base64::Engine;
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::codec::CodecLimits;
use gridmuc_core::{Reading, ReadingId, Rejection};
use gridmuc_xmpp::bot::decode_reading;
use libfuzzer_sys::fuzz_target;
use minidom::Element;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::LazyLock;
use xmpp_parsers::message::Message;

static KEY: LazyLock<BotSecretKey> =
    LazyLock::new(|| BotSecretKey::generate(&mut StdRng::seed_from_u64(7)));

const ID: ReadingId = ReadingId(0x5eed);

fuzz_target!(|data: &[u8]| {
    let limits = CodecLimits::default();
    // As a stanza.
    if let Ok(el) = Element::from_reader(data)
        && let Ok(m) = Message::try_from(el)
    {
        let id = gridmuc_xmpp::delivery::reading_id(&m);
        check(&decode_reading(&m, id, Some(&KEY), &limits), &limits);
    }
    // As sealed fields.
    let sealed = KEY
        .public()
        .seal(&ID.0.to_be_bytes(), data, &mut StdRng::seed_from_u64(1));
    let xml = format!(
        "<message xmlns='jabber:client' type='chat' id='{ID}'>\
         <sealed xmlns='urn:gridmuc:sealed:1'>{}</sealed></message>",
        base64::engine::general_purpose::STANDARD.encode(sealed)
    );
    let Ok(el) = Element::from_reader(xml.as_bytes()) else {
        unreachable!("the wrapper is well-formed");
    };
    let Ok(m) = Message::try_from(el) else {
        unreachable!("the wrapper is a message");
    };
    let decoded = decode_reading(&m, Some(ID), Some(&KEY), &limits);
    assert!(decoded.is_some(), "a sealed reading is always answered");
    check(&decoded, &limits);
});

fn check(decoded: &Option<Result<Reading, Rejection>>, limits: &CodecLimits) {
    if let Some(Ok(r)) = decoded {
        assert!(!r.quality.is_unusable(), "unusable reading accepted: {r:?}");
        assert!(r.power.abs() <= limits.max_house_power.abs(), "{r:?}");
        assert_eq!(r.power.0 % i64::from(limits.quantum_watts), 0, "{r:?}");
    }
}
