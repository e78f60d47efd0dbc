//! The bot key through its public API only, as the agents will use it.

use gridmuc_botkey::{
    BotPublicKey, BotSecretKey, ParseError, SEAL_OVERHEAD, SealError, SignContext, Signature,
    SignatureError, ack_message,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn key(seed: u64) -> BotSecretKey {
    BotSecretKey::generate(&mut rng(seed))
}

/// Base64url of `bytes` without padding, built by hand so the tests do not trust the crate's
/// encoder to check its decoder.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

// ---- text forms ----

#[test]
fn secret_text_round_trip() {
    let k = key(1);
    let text = k.to_text();
    assert!(text.starts_with("gridmuc-bot-secret-v1:"));
    assert!(!text.contains('\n') && !text.contains('='));
    let back = BotSecretKey::from_text(&format!("  {}\n", text.as_str())).expect("parses");
    assert_eq!(back.public(), k.public());
    assert_eq!(back.to_text().as_str(), text.as_str());
}

#[test]
fn public_text_round_trip() {
    let p = key(2).public();
    let text = p.to_string();
    assert!(text.starts_with("gridmuc-bot-v1:"));
    assert_eq!(text.len(), "gridmuc-bot-v1:".len() + 86);
    assert_eq!(text.parse::<BotPublicKey>(), Ok(p.clone()));
    assert_eq!(format!(" {text}\n").parse::<BotPublicKey>(), Ok(p.clone()));
    assert_eq!(BotPublicKey::from_bytes(&p.to_bytes()), Ok(p));
}

#[test]
fn keys_differ_and_are_deterministic_in_the_rng() {
    assert_eq!(key(3).public(), key(3).public());
    assert_ne!(key(3).public(), key(4).public());
}

#[test]
fn public_key_in_meter_toml() {
    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct MeterConfig {
        bot_key: BotPublicKey,
    }
    let p = key(5).public();
    let toml_text = format!("bot_key = \"{p}\"\n");
    let cfg: MeterConfig = toml::from_str(&toml_text).expect("parses");
    assert_eq!(cfg.bot_key, p);
    assert_eq!(toml::to_string(&cfg).expect("serialises"), toml_text);

    let bad = toml::from_str::<MeterConfig>("bot_key = \"gridmuc-bot-v2:AAAA\"\n")
        .expect_err("wrong prefix");
    assert!(bad.to_string().contains("gridmuc-bot-v1:"), "{bad}");
}

#[test]
fn fingerprint_shape() {
    let p = key(6).public();
    let fp = p.fingerprint();
    assert_eq!(fp.len(), 19, "{fp}");
    let groups: Vec<&str> = fp.split('-').collect();
    assert_eq!(groups.len(), 4);
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|c| c.is_ascii_hexdigit()))
    );
    assert_eq!(fp, p.clone().fingerprint());
    assert_ne!(fp, key(7).public().fingerprint());
}

#[test]
fn parsing_refuses_wrong_prefix() {
    let p = key(8).public().to_string();
    let body = p.trim_start_matches("gridmuc-bot-v1:");
    assert_eq!(
        format!("gridmuc-bot-v2:{body}").parse::<BotPublicKey>(),
        Err(ParseError::WrongPrefix {
            expected: "gridmuc-bot-v1:"
        })
    );
    assert!(matches!(
        body.parse::<BotPublicKey>(),
        Err(ParseError::WrongPrefix { .. })
    ));
    // A secret key where the public key belongs, and the other way round.
    let s = key(8).to_text();
    assert!(matches!(
        s.parse::<BotPublicKey>(),
        Err(ParseError::WrongPrefix { .. })
    ));
    assert!(matches!(
        BotSecretKey::from_text(&p),
        Err(ParseError::WrongPrefix { .. })
    ));
}

#[test]
fn parsing_refuses_wrong_length() {
    let p = key(9).public().to_bytes();
    assert_eq!(
        format!("gridmuc-bot-v1:{}", b64(&p[..63])).parse::<BotPublicKey>(),
        Err(ParseError::WrongLength {
            expected: 64,
            found: 63
        })
    );
    let mut long = p.to_vec();
    long.push(0);
    assert_eq!(
        format!("gridmuc-bot-v1:{}", b64(&long)).parse::<BotPublicKey>(),
        Err(ParseError::WrongLength {
            expected: 64,
            found: 65
        })
    );
    assert_eq!(
        BotSecretKey::from_text(&format!("gridmuc-bot-secret-v1:{}", b64(&[7u8; 31]))).err(),
        Some(ParseError::WrongLength {
            expected: 32,
            found: 31
        })
    );
    assert_eq!(
        Signature::from_base64(&b64(&[1u8; 65])),
        Err(ParseError::WrongLength {
            expected: 64,
            found: 65
        })
    );
}

#[test]
fn parsing_refuses_bad_base64() {
    let p = key(10).public().to_string();
    // Standard alphabet, padding, stray characters, a non-canonical last character.
    let mut std_alphabet = p.clone();
    std_alphabet.replace_range(20..21, "+");
    let padded = format!("{p}==");
    let inner_space = format!("{} {}", &p[..30], &p[30..]);
    let mut last = p.clone();
    // 64 bytes leave one byte for the last two characters, so the last one carries 2 bits
    // and 4 zero bits; "B" sets one of those zero bits: a non-canonical encoding.
    last.replace_range(p.len() - 1.., "B");
    for bad in [std_alphabet, padded, inner_space, last] {
        assert_eq!(
            bad.parse::<BotPublicKey>(),
            Err(ParseError::BadBase64),
            "{bad}"
        );
    }
    assert_eq!(
        BotSecretKey::from_text("gridmuc-bot-secret-v1:not*base64").err(),
        Some(ParseError::BadBase64)
    );
    assert_eq!(Signature::from_base64("a/b"), Err(ParseError::BadBase64));
}

#[test]
fn parsing_refuses_points_no_real_key_has() {
    let good = key(11).public().to_bytes();
    // Ed25519: the identity point (small order) and a y with no curve point.
    let mut weak_signing = good;
    weak_signing[..32].copy_from_slice(&{
        let mut id = [0u8; 32];
        id[0] = 1;
        id
    });
    assert_eq!(
        BotPublicKey::from_bytes(&weak_signing),
        Err(ParseError::WeakKey { half: "signing" })
    );
    let mut off_curve = good;
    off_curve[..32].copy_from_slice(&{
        let mut y = [0u8; 32];
        y[0] = 2;
        y
    });
    assert_eq!(
        BotPublicKey::from_bytes(&off_curve),
        Err(ParseError::NotACurvePoint)
    );
    // X25519: zero and one are small-order u-coordinates; sealing to them would fail.
    for u in [0u8, 1] {
        let mut weak_sealing = good;
        weak_sealing[32..].copy_from_slice(&{
            let mut x = [0u8; 32];
            x[0] = u;
            x
        });
        assert_eq!(
            BotPublicKey::from_bytes(&weak_sealing),
            Err(ParseError::WeakKey { half: "sealing" })
        );
    }
}

#[test]
fn secret_debug_hides_the_secret() {
    let k = key(12);
    let text = k.to_text();
    let body = text.trim_start_matches("gridmuc-bot-secret-v1:");
    let dbg = format!("{k:?} {k:#?}");
    assert!(!dbg.contains(body), "{dbg}");
    assert!(!dbg.contains(&body[..12]), "{dbg}");
    assert!(dbg.contains(&k.public().to_string()), "{dbg}");
}

#[test]
fn parse_errors_never_quote_the_secret() {
    let text = key(13).to_text();
    let body = text.trim_start_matches("gridmuc-bot-secret-v1:");
    let mut broken = text.to_string();
    broken.push('!');
    let err = BotSecretKey::from_text(&broken).expect_err("bad base64");
    assert!(!err.to_string().contains(&body[..8]));
}

// ---- signatures ----

#[test]
fn sign_verify_round_trip() {
    let k = key(20);
    let p = k.public();
    let msg = ack_message(42, "accepted", "");
    let sig = k.sign(SignContext::Ack, &msg);
    assert_eq!(p.verify(SignContext::Ack, &msg, &sig), Ok(()));
    let back = Signature::from_base64(&sig.to_base64()).expect("parses");
    assert_eq!(back, sig);
    assert_eq!(sig.to_base64().len(), 86);
    assert_eq!(Signature::from_bytes(sig.to_bytes()), sig);
    assert_eq!(Signature::LEN, 64);
}

#[test]
fn verify_refuses_wrong_context_message_key_or_bit() {
    let k = key(21);
    let p = k.public();
    let msg = ack_message(42, "accepted", "");
    let sig = k.sign(SignContext::Ack, &msg);
    assert_eq!(
        p.verify(SignContext::Post, &msg, &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        p.verify(SignContext::Ack, &ack_message(43, "accepted", ""), &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        p.verify(SignContext::Ack, &ack_message(42, "refused", "late"), &sig),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        key(22).public().verify(SignContext::Ack, &msg, &sig),
        Err(SignatureError::Mismatch)
    );
    for bit in 0..(8 * Signature::LEN) {
        let mut bytes = sig.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            p.verify(SignContext::Ack, &msg, &Signature::from_bytes(bytes)),
            Err(SignatureError::Mismatch),
            "bit {bit}"
        );
    }
}

#[test]
fn post_signature_is_not_an_ack_signature() {
    // A post body that happens to equal an ack message must not pass as a receipt.
    let k = key(23);
    let msg = ack_message(1, "accepted", "");
    let sig = k.sign(SignContext::Post, &msg);
    assert_eq!(
        k.public().verify(SignContext::Ack, &msg, &sig),
        Err(SignatureError::Mismatch)
    );
}

// ---- sealing ----

#[test]
fn seal_open_round_trip_and_overhead() {
    let k = key(30);
    let p = k.public();
    let mut r = rng(31);
    let plaintext = vec![0x5a; 300];
    let sealed = p.seal(b"reading 7", &plaintext, &mut r);
    assert_eq!(sealed.len(), plaintext.len() + SEAL_OVERHEAD);
    assert_eq!(SEAL_OVERHEAD, 48);
    assert_eq!(k.open(b"reading 7", &sealed), Ok(plaintext.clone()));
    // Fresh randomness each time: two seals of one reading do not match.
    assert_ne!(p.seal(b"reading 7", &plaintext, &mut r), sealed);
    // Empty plaintext and empty aad work too.
    let empty = p.seal(b"", b"", &mut r);
    assert_eq!(empty.len(), SEAL_OVERHEAD);
    assert_eq!(k.open(b"", &empty), Ok(Vec::new()));
}

#[test]
fn seal_to_a_parsed_key() {
    let k = key(32);
    let p: BotPublicKey = k.public().to_string().parse().expect("parses");
    let sealed = p.seal(b"id", b"1840 W", &mut rng(33));
    assert_eq!(k.open(b"id", &sealed), Ok(b"1840 W".to_vec()));
}

#[test]
fn open_refuses_wrong_key_aad_flip_and_truncation() {
    let k = key(34);
    let sealed = k.public().seal(b"id 1", b"1840 W", &mut rng(35));
    assert_eq!(key(36).open(b"id 1", &sealed), Err(SealError::Unauthentic));
    assert_eq!(k.open(b"id 2", &sealed), Err(SealError::Unauthentic));
    assert_eq!(k.open(b"", &sealed), Err(SealError::Unauthentic));
    for i in 0..sealed.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = sealed.clone();
            bad[i] ^= bit;
            let got = k.open(b"id 1", &bad);
            assert!(
                matches!(
                    got,
                    Err(SealError::Unauthentic | SealError::BadEncapsulatedKey)
                ),
                "byte {i} bit {bit:#x}: {got:?}"
            );
        }
    }
    for len in 0..sealed.len() {
        let got = k.open(b"id 1", &sealed[..len]);
        if len < SEAL_OVERHEAD {
            assert_eq!(got, Err(SealError::Truncated { len, min: 48 }));
        } else {
            assert_eq!(got, Err(SealError::Unauthentic), "len {len}");
        }
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(k.open(b"id 1", &longer), Err(SealError::Unauthentic));
}

#[test]
fn open_refuses_small_order_encapsulated_key() {
    let k = key(37);
    let mut sealed = k.public().seal(b"", b"x", &mut rng(38));
    sealed[..32].fill(0);
    assert_eq!(k.open(b"", &sealed), Err(SealError::BadEncapsulatedKey));
}

// ---- properties ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever arrives as a "sealed reading", opening returns an error, never panics.
    #[test]
    fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), aad in proptest::collection::vec(any::<u8>(), 0..20)) {
        let k = key(40);
        prop_assert!(k.open(&aad, &bytes).is_err());
    }

    /// Whatever is pasted as a key or signature, parsing returns, never panics.
    #[test]
    fn parsing_never_panics(text in ".{0,120}", tail in proptest::collection::vec(any::<u8>(), 0..70)) {
        let _ = text.parse::<BotPublicKey>();
        let _ = BotSecretKey::from_text(&text);
        let _ = Signature::from_base64(&text);
        let _ = format!("gridmuc-bot-v1:{}", b64(&tail)).parse::<BotPublicKey>();
        let _ = BotSecretKey::from_text(&format!("gridmuc-bot-secret-v1:{}", b64(&tail)));
        let _ = Signature::from_base64(&b64(&tail));
    }

    /// Seal/open and sign/verify round-trip for any key, message and aad.
    #[test]
    fn round_trips(seed in any::<u64>(), msg in proptest::collection::vec(any::<u8>(), 0..400), aad in proptest::collection::vec(any::<u8>(), 0..40)) {
        let k = key(seed);
        let p: BotPublicKey = k.public().to_string().parse().expect("own key parses");
        let sealed = p.seal(&aad, &msg, &mut rng(seed ^ 1));
        prop_assert_eq!(sealed.len(), msg.len() + SEAL_OVERHEAD);
        prop_assert_eq!(k.open(&aad, &sealed), Ok(msg.clone()));
        let sig = k.sign(SignContext::Post, &msg);
        prop_assert_eq!(p.verify(SignContext::Post, &msg, &sig), Ok(()));
        let back = BotSecretKey::from_text(&k.to_text()).expect("own key parses");
        prop_assert_eq!(back.public(), p);
    }

    /// Two different receipts never have the same signed bytes.
    #[test]
    fn ack_message_is_injective(
        a in (any::<u128>(), "[a-z]{0,9}", "[a-z]{0,9}"),
        b in (any::<u128>(), "[a-z]{0,9}", "[a-z]{0,9}"),
    ) {
        let ma = ack_message(a.0, &a.1, &a.2);
        let mb = ack_message(b.0, &b.1, &b.2);
        prop_assert_eq!(ma == mb, a == b);
    }
}
