//! Masked aggregation: the substation bot learns only the neighbourhood sum of a round.
//!
//! Sans-IO like `gridmuc-core`: no clock, no sockets; randomness comes from a caller's
//! [`rand::CryptoRng`]. The XMPP layer moves [`MaskMessage`]s (compact bytes, or base64 in
//! a payload element) between [`MaskedMeter`]s and one [`MaskedAggregator`].
//!
//! # Protocol (double masking after Bonawitz et al., CCS 2017, made multi-round)
//!
//! Enrollment, once per cohort (a set of `n` nicknames; redo it when nicknames rotate):
//! 1. meter → room: [`KeyAnnouncement`], a fresh X25519 key per nickname;
//! 2. bot → room: [`Roster`], the ordered keys plus a random cohort id. Every key below is
//!    derived from a hash of room, cohort id and all keys;
//! 3. meter → bot: [`ShareUpload`]: the meter draws a self-mask key `b` (a Ristretto255
//!    scalar), Shamir-splits it with threshold `t = n − ⌊n/3⌋` over the prime field
//!    ℤ/ℓ, and seals share `j` to member `j` with ChaCha20-Poly1305 under a key derived
//!    from their X25519 secret;
//! 4. bot → each meter: [`ShareBundle`] with the shares sealed to it (O(n²) bytes in total,
//!    not the O(n³) a room broadcast would cost).
//!
//! Each round `r` (at most one extra exchange, the unmask step):
//! 1. meter → bot: [`MaskedReading`] `y = x + F(b, r) + Σ_{j≠i} ±PRF(s_ij, r)` mod 2⁶⁴, with
//!    `x` the reading in 10 W quanta (two's complement, so export sums correctly) plus the DP
//!    noise share. Pairwise masks cancel in the sum; the pairwise PRF is ChaCha12 keyed by
//!    BLAKE3-KDF(X25519 secret ‖ cohort), word `r` of the keystream — random access for
//!    unmasking and amortised over a 4-block SIMD buffer for sequential rounds (BLAKE3 per
//!    pair per round would cost ~200 ns × n);
//! 2. bot → room: [`UnmaskRequest`] with the survivor set `S` (values received);
//! 3. survivor → bot: [`UnmaskResponse`] with the sum of its signed pairwise masks with the
//!    dropped members, and for each `u ∈ S` the evaluation `share_u · H(r)`;
//! 4. the bot interpolates `F(b_u, r) = b_u · H(r)` from `t` evaluations (Lagrange in the
//!    exponent), strips self-masks and dropped pairwise masks and gets the sum.
//!
//! Why a threshold PRF instead of Bonawitz's plain seed shares: with many rounds, revealing
//! a survivor's self-mask *seed* would unmask its self-mask in every later round, and a
//! later false "it dropped" claim would then expose its reading. Here the bot only ever
//! learns `F(b, r)` for rounds where the meter survived, which says nothing about other
//! rounds (DDH in the random-oracle model, Naor–Pinkas–Reingold 1999), and pairwise masks
//! are revealed per round, never the pairwise key — so a meter that drops is not burned and
//! simply takes part again in the next round.
//!
//! Rules the meter enforces: rounds strictly increase (no two values under one mask);
//! it answers an unmask request only if it sent a value for that round and is listed as a
//! survivor; it answers only the first survivor set it sees for a round and refuses any
//! other ([`MaskError::ConflictingSurvivorSet`]); seeing a request that excludes it closes
//! the round for it. So for a given round and member, a meter reveals either its pairwise
//! mask with that member (member dropped) or its share evaluation (member survived), never
//! both.
//!
//! Dropouts: up to `⌊n/3⌋` members may miss a round; with more,
//! [`MaskError::TooManyDropouts`]. If someone dropped, every survivor must answer the unmask
//! request (its pairwise masks with the dropped are known only to it); if nobody dropped,
//! any `t` answers suffice. A survivor that vanishes between its value and its answer in a
//! round with dropouts loses that round ([`MaskError::MissingResponse`]); the next round is
//! unaffected.
//!
//! # Call sequence for the XMPP layer
//!
//! Each value is a [`MaskMessage`]; put `to_base64()` in a payload element (e.g.
//! `<mask xmlns='urn:gridmuc:mask:0'>…</mask>`) and parse with `from_base64()`. Sizes are
//! binary bytes for a cohort of `n` (base64 adds a third).
//!
//! | step | who | call | sends | size |
//! |---|---|---|---|---|
//! | 1 | meter | [`MaskedMeter::new`], [`MaskedMeter::key_announcement`] | groupchat or PM to bot | 33 |
//! | 2 | bot | [`MaskedAggregator::handle_key`] per key, then [`MaskedAggregator::close_enrollment`] | [`Roster`] to the room | 19 + 32n |
//! | 3 | meter | [`MaskedMeter::handle_roster`] | [`ShareUpload`] PM to bot | 5 + 50(n−1) |
//! | 4 | bot | [`MaskedAggregator::handle_shares`] per upload, then [`MaskedAggregator::share_bundles`] | one [`ShareBundle`] PM to each meter | 5 + 50(n−1) |
//! | 5 | meter | [`MaskedMeter::handle_bundle`] | — | |
//! | per round | meter | [`MaskedMeter::prepare_round`] (optional, idle time), [`MaskedMeter::mask`] | [`MaskedReading`] PM to bot | 19 (26 base64 chars) |
//! | | bot | [`MaskedAggregator::handle_masked`] per value; after the grace time [`MaskedAggregator::unmask_request`] | [`UnmaskRequest`] to the room | 11 + ⌈n/8⌉ |
//! | | meter | [`MaskedMeter::answer_unmask`]; `Ok(None)` means send nothing | [`UnmaskResponse`] PM to bot | 21 + 34s for s survivors |
//! | | bot | [`MaskedAggregator::handle_unmask_response`] per answer, then [`MaskedAggregator::finish`] until `Ok` | [`RoundSum`] to the detectors | |
//!
//! The XMPP layer maps a nickname to its roster index with [`Roster::index_of`] on the key
//! that nickname announced, and should drop messages whose `from` index does not match the
//! sending nickname. Round numbers are the interval index (e.g. interval start / interval
//! length), the same for every meter. When nicknames rotate, the cohort is re-enrolled
//! with fresh keys (a new `MaskedMeter` per new nickname and a new `MaskedAggregator`).
//!
//! # Threat model
//!
//! * Semi-honest bot and XMPP server (they follow the protocol, read everything): they see
//!   uniformly distributed masked values and learn only the sum over the survivor set,
//!   unless `t` or more meters collude with them (then they can rebuild `b` of any member).
//! * A malicious bot that sends different survivor sets to different meters still cannot
//!   get both a member's complete set of pairwise masks and `t` share evaluations for the
//!   same round, as long as fewer than `t` meters collude with it.
//! * What a malicious bot *can* do, and this crate does not stop: (a) Sybil meters — join
//!   many nicknames of its own, so "the sum" is one honest reading plus known values; the
//!   room admin and account provisioning must prevent this; (b) substitute keys in the roster
//!   (man-in-the-middle on the key exchange) if meters cannot compare rosters: in broadcast
//!   mode every occupant sees the same roster message, and the cohort hash binds all keys,
//!   but a malicious *server* could still show different rosters to different meters;
//!   (c) difference attacks across rounds (a house present in one round and dropped in the
//!   next): DP noise bounds what each sum reveals, not what many sums reveal;
//!   (d) publish a wrong sum — nothing here is verifiable; (e) drop or delay messages.
//! * A malicious meter can spoil a round (wrong value, forged response); it cannot learn
//!   other meters' readings.
//! * Unlinkability of nicknames is not this crate's job: masked mode removes per-house load
//!   curves from the bot's view, which is what nickname linkage attacks use.
//!
//! # Differential privacy
//!
//! See [`dp`]: with [`DpConfig`] each meter adds a Pólya share of discrete Laplace noise,
//! so every unmasked sum (≥ `t` survivors) is ε-DP per interval against a change of up to
//! the configured sensitivity in one house. Accounting: per round, ε; over `k` rounds about
//! one house, basic composition gives `kε`. Meters that know their own noise share and
//! collude with the bot subtract it; with `c` such meters and `s` survivors the noise left
//! is `(s−c)/t` of a discrete Laplace, so the guarantee holds only while `s − c ≥ t`.
//! Sampling uses floating-point Gamma/Poisson draws (not hardened against floating-point
//! side channels).

pub mod aggregator;
pub mod bench;
mod crypto;
pub mod dp;
pub mod meter;
pub mod wire;

#[cfg(test)]
mod tests;

use gridmuc_core::Watts;
use thiserror::Error;

pub use aggregator::{MaskedAggregator, RoundSum};
pub use bench::{MaskedBench, bench_masked};
pub use dp::{DpConfig, NoiseShare};
pub use meter::MaskedMeter;
pub use wire::{
    KeyAnnouncement, MAX_COHORT, MaskMessage, MaskedReading, MemberSet, Roster, SealedShare,
    ShareBundle, ShareUpload, UnmaskRequest, UnmaskResponse, WireError,
};

/// Resolution of masked readings (the design's default quantisation); sums are exact in it.
pub const QUANTUM: Watts = Watts(10);

/// Smallest cohort worth masking: with two members the sum reveals the other's reading.
pub const MIN_COHORT: usize = 3;

/// Readings (plus noise) beyond ±2⁴⁷ quanta are refused so a sum of 65 535 members cannot
/// wrap around 2⁶⁴.
const MAX_READING_QUANTA: u64 = 1 << 47;

/// Survivors a round needs (and the Shamir threshold): `n − ⌊n/3⌋`, the largest threshold
/// that still tolerates a third of the cohort dropping, maximising collusion resistance.
pub fn survivor_threshold(cohort_size: u16) -> u16 {
    cohort_size - cohort_size / 3
}

fn checked_cohort_size(n: usize) -> Result<u16, MaskError> {
    match u16::try_from(n) {
        Ok(size) if n >= MIN_COHORT => Ok(size),
        _ => Err(MaskError::CohortSize(n)),
    }
}

fn to_quanta(reading: Watts) -> Option<i64> {
    Some(reading.quantise(QUANTUM.0 as u32).0 / QUANTUM.0)
        .filter(|q| q.unsigned_abs() <= MAX_READING_QUANTA)
}

/// Why a masked-mode step was refused; each names the rule it protects.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum MaskError {
    /// The bytes were not a message of this protocol.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    /// Cohorts must have between 3 and 65 535 members.
    #[error("cohort of {0} members; masking needs {MIN_COHORT}..={MAX_COHORT}")]
    CohortSize(usize),
    /// The same key twice would give one house two votes and break pairwise cancellation.
    #[error("duplicate key in the cohort")]
    DuplicateKey,
    /// This meter's key is not in the roster it was sent.
    #[error("this meter's key is not in the roster")]
    NotInRoster,
    /// A roster key is a low-order point, which would make the pairwise secret public.
    #[error("key of member {0} yields no shared secret")]
    WeakKey(u16),
    /// A member index outside the cohort or the wrong recipient.
    #[error("member {0} is not valid here")]
    UnknownMember(u16),
    /// The step does not fit the current phase.
    #[error("wrong phase: {0}")]
    WrongPhase(&'static str),
    /// A share failed authentication: forged, corrupted or misrouted.
    #[error("share from member {0} failed to decrypt")]
    BadShare(u16),
    /// An upload does not hold exactly one share for every other member.
    #[error("share upload from member {0} does not cover every other member once")]
    BadUpload(u16),
    /// Too few members uploaded shares to ever unmask a round.
    #[error("only {enrolled} members completed enrollment; {needed} needed")]
    TooFewEnrolled {
        /// Members with shares routed.
        enrolled: usize,
        /// Survivor threshold.
        needed: u16,
    },
    /// A member that did not complete enrollment sent a value.
    #[error("member {0} did not complete enrollment")]
    NotEnrolled(u16),
    /// Masking two values for one round would leak their difference.
    #[error("round {round} is not after the last masked round {last}")]
    RoundReused {
        /// Requested round.
        round: u64,
        /// Last round masked.
        last: u64,
    },
    /// The round is older than the meter's memory of answered requests.
    #[error("round {0} is too old")]
    RoundTooOld(u64),
    /// The round's survivor set is fixed; nothing more is accepted for it.
    #[error("round {0} is closed")]
    RoundClosed(u64),
    /// The reading (plus noise) would not sum safely in 64 bits.
    #[error("reading {0} is outside the masking range")]
    ReadingOutOfRange(Watts),
    /// The survivor set is over a different cohort size.
    #[error("survivor set covers {got} members, cohort has {expected}")]
    SurvivorSetSize {
        /// Cohort size.
        expected: u16,
        /// Set universe.
        got: u16,
    },
    /// A second, different survivor set for a round: answering would let the bot unmask
    /// the difference of two sums, i.e. individual readings.
    #[error("round {0} was already answered for a different survivor set")]
    ConflictingSurvivorSet(u64),
    /// Listed as a survivor without having sent a value: the request is bogus.
    #[error("round {0}: listed as survivor but sent no value")]
    NotSubmitted(u64),
    /// More than a third of the cohort missed the round.
    #[error("round {round}: {survivors} of {enrolled} members reported, {needed} needed")]
    TooManyDropouts {
        /// Round number.
        round: u64,
        /// Values received.
        survivors: usize,
        /// Cohort size.
        enrolled: u16,
        /// Survivor threshold.
        needed: u16,
    },
    /// A survivor's pairwise masks with dropped members are still missing.
    #[error("round {round}: no unmask answer yet from survivor {member}")]
    MissingResponse {
        /// Round number.
        round: u64,
        /// Silent survivor.
        member: u16,
    },
    /// Too few share evaluations to rebuild a survivor's self-mask.
    #[error("round {round}: {have} of {needed} evaluations for member {member}")]
    NotEnoughShares {
        /// Round number.
        round: u64,
        /// Survivor whose self-mask is short of evaluations.
        member: u16,
        /// Evaluations received.
        have: usize,
        /// Threshold.
        needed: u16,
    },
    /// No such open round (never seen, already finished, or not yet requested).
    #[error("round {0} is not open")]
    UnknownRound(u64),
    /// A member sent two values for one round.
    #[error("round {round}: second value from member {member}")]
    DuplicateReading {
        /// Round number.
        round: u64,
        /// Sender.
        member: u16,
    },
    /// An evaluation for this member's self-mask is not a valid group element.
    #[error("invalid evaluation for member {0}")]
    BadEvaluation(u16),
    /// DP configuration out of range.
    #[error("invalid DP configuration: {0}")]
    BadDpConfig(&'static str),
}
