//! The substation bot's long-term key: how a meter tells the real bot from whoever holds
//! its room nickname.
//!
//! # Why
//! In the neighbourhood room any occupant may take a free nickname, the bot's included,
//! while the bot is away (a restart, a replaced session). Without a key, meters would hand
//! that impostor their readings and accept its receipts as proof of delivery. So the bot
//! has a long-term key. Its public half ([`BotPublicKey`], text `gridmuc-bot-v1:…`, printed
//! by `gridmuc server`) is pinned in each meter's config as `bot_key = "…"`; its secret
//! half ([`BotSecretKey`], text `gridmuc-bot-secret-v1:…`) stays in the bot's key file.
//!
//! # Wire use
//! - **Sealed direct readings.** A direct-mode reading's payload is sealed to the bot with
//!   HPKE (RFC 9180), base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 /
//!   ChaCha20-Poly1305, single shot, `info` = [`SEAL_INFO`]: [`BotPublicKey::seal`] on the
//!   meter, [`BotSecretKey::open`] on the bot. The sealed bytes are the 32-byte encapsulated
//!   key then the ciphertext; [`SEAL_OVERHEAD`] is 48 bytes. Put what travels in clear and
//!   must not be swapped (the reading id) in the `aad`.
//! - **Signed acks and refusals.** The bot signs [`acks_message`] bytes (every reading id
//!   it covers with its verdict and reason) under [`SignContext::Acks`], one cumulative ack per
//!   nickname (wire format v2; v1's single-reading [`ack_message`] under [`SignContext::Ack`]
//!   is still verified); a meter clears a reading from its outbox only when
//!   [`BotPublicKey::verify`] accepts the ack, and never on an unsigned or wrongly signed one.
//! - **Signed posts.** Summaries and alerts, to the room or to a nickname, are signed under
//!   [`SignContext::Post`]. Ed25519 [`Signature`]s are 64 bytes, 86 characters of base64url.
//!
//! # Threats it answers
//! - **An impostor holding the bot's nickname** receives only sealed readings it cannot
//!   open, and cannot make a receipt, refusal, summary or alert that verifies; meters keep
//!   their readings and resend them to the real bot.
//! - **Other occupants** see nothing of a direct reading, even one misrouted to them.
//! - **The XMPP server's operator**, who sees every stanza in clear past c2s TLS, sees only
//!   sealed readings and cannot forge the bot's words.
//!
//! # What it does not answer
//! - **A compromised bot key.** Whoever holds the secret is the bot: it opens every sealed
//!   reading, including recorded ones (no forward secrecy: one long-term key), and signs
//!   anything. The cure is a new key pinned again in every meter.
//! - **Traffic analysis.** Who sends when, how often and how much stays visible to the
//!   server and, for groupchat, to the room; sealing hides values, not lengths (pad the
//!   plaintext if lengths say something) and not timing. Broadcast-mode readings are public
//!   by design.
//! - **Replay.** Anyone who saw a sealed reading can resend it, and anyone can repost an
//!   old signed post: the bot deduplicates by reading id, and posts should carry their time
//!   or round inside the signed body.
//!
//! # Example
//! ```
//! use gridmuc_botkey::{BotPublicKey, BotSecretKey, SignContext, ack_message};
//!
//! let mut rng = rand::rng();
//! // Bot, once: make the key, keep `to_text()` in a 0600 file, print the public half.
//! let bot = BotSecretKey::generate(&mut rng);
//! let pinned: BotPublicKey = bot.public().to_string().parse()?; // the meter's `bot_key`
//!
//! // Meter: seal a direct reading to the pinned key, bound to its id sent in clear.
//! let id: u128 = 0x5eed;
//! let sealed = pinned.seal(&id.to_be_bytes(), b"1840 W", &mut rng);
//!
//! // Bot: open it, then sign the receipt.
//! assert_eq!(bot.open(&id.to_be_bytes(), &sealed)?, b"1840 W");
//! let sig = bot.sign(SignContext::Ack, &ack_message(id, "accepted", ""));
//!
//! // Meter: clear the reading only if the receipt verifies.
//! pinned.verify(SignContext::Ack, &ack_message(id, "accepted", ""), &sig)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sans-IO
//! No I/O, no clock, no async: callers read and write key files and pass a
//! [`rand::CryptoRng`] wherever randomness is needed (see `rng.rs` for how that RNG reaches
//! `hpke`, which speaks a newer `rand_core`).

mod error;
mod keys;
mod rng;
mod sign;

pub use error::{ParseError, SealError, SignatureError};
pub use keys::{BotPublicKey, BotSecretKey, SEAL_INFO, SEAL_OVERHEAD};
pub use sign::{SignContext, Signature, ack_message, acks_message};
