//! What can go wrong, one enum per layer and one variant per cause.

use prio::codec::CodecError;
use prio::vdaf::VdafError;
use thiserror::Error;

/// Why a [`crate::PrivateParams`] was refused when building a [`crate::PrivateConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A zero quantum would divide by zero when quantising readings.
    #[error("quantum_watts must be at least 1")]
    QuantumZero,
    /// The bound must be a whole number of quanta, or the largest reading has no encoding.
    #[error("max_watts {max} is not a positive multiple of quantum_watts {quantum}")]
    MaxNotMultiple {
        /// Configured bound.
        max: u32,
        /// Configured quantum.
        quantum: u32,
    },
    /// Fewer than two buckets make a histogram that says nothing.
    #[error("{count} buckets: need between 2 and {max}")]
    BucketCount {
        /// Buckets configured.
        count: usize,
        /// Most buckets allowed (bounds report size and aggregator work).
        max: usize,
    },
    /// The first bucket must start at 0 W so every reading falls in some bucket.
    #[error("the first bucket edge must be 0 W, found {found}")]
    FirstEdgeNotZero {
        /// The first edge given.
        found: u32,
    },
    /// Edges must rise strictly, or a bucket is empty by construction and buckets overlap.
    #[error("bucket edge {index} ({edge} W) is not above the previous one")]
    EdgesNotIncreasing {
        /// Index of the offending edge.
        index: usize,
        /// Its value in watts.
        edge: u32,
    },
    /// A bucket starting above the bound could never be filled.
    #[error("bucket edge {index} ({edge} W) is above max_watts")]
    EdgeAboveMax {
        /// Index of the offending edge.
        index: usize,
        /// Its value in watts.
        edge: u32,
    },
    /// An aggregate over fewer than two reports is one house's reading.
    #[error("min_reports is {found}; at least 2 are needed for an aggregate to hide anyone")]
    MinReportsTooSmall {
        /// The configured minimum.
        found: u32,
    },
    /// Leader and helper with one key are one party: the privacy promise needs two.
    #[error("the leader and the helper have the same public key")]
    SameAggregatorKey,
    /// The secret key handed to an aggregator is not the one the config pins for its role.
    #[error("the {role} secret key does not match the {role} public key in the config")]
    KeyMismatch {
        /// "leader" or "helper".
        role: &'static str,
    },
    /// prio refused the VDAF parameters (should not happen for checked parameters).
    #[error("prio refused the VDAF parameters: {0}")]
    Vdaf(String),
}

/// Why a meter could not make a report.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The reading exceeds the configured bound; it cannot be encoded and would be refused.
    #[error("{watts} W is above the {max} W bound of private mode")]
    OutOfRange {
        /// The reading.
        watts: u32,
        /// The configured bound.
        max: u32,
    },
    /// prio refused to shard a measurement that passed our range check: a bug, reported
    /// instead of panicking.
    #[error("prio could not shard the measurement: {0}")]
    Shard(#[source] VdafError),
    /// prio could not encode a share: a bug, reported instead of panicking.
    #[error("prio could not encode a share: {0}")]
    Encode(#[source] CodecError),
}

/// Why bytes received were not a well-formed message of this protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended inside a field: cut off in transit, or not ours.
    #[error("truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Offset where the missing bytes were expected.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A wire version this build does not speak; refused rather than misread.
    #[error("unknown wire version {found}")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// Another message type of this protocol, sent to the wrong handler.
    #[error("expected message kind {expected}, found {found}")]
    Kind {
        /// The kind this decoder reads.
        expected: u8,
        /// The kind byte found.
        found: u8,
    },
    /// Bytes after the end of the message: the strict format has no room for extras.
    #[error("{extra} bytes after the end of the message")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// An outcome tag in a helper response that is neither accepted nor refused.
    #[error("unknown outcome tag {found}")]
    Outcome {
        /// The tag found.
        found: u8,
    },
    /// A message for another room or configuration (its task tag differs).
    #[error("message for another room or configuration")]
    WrongTask,
    /// A refusal code this build does not know.
    #[error("unknown refusal code {found}")]
    RefusalCode {
        /// The code found.
        found: u8,
    },
}

/// Why an aggregator refused a report; each is counted, none moves an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Error)]
pub enum Refusal {
    /// Not a well-formed report (see [`DecodeError`]).
    #[error("malformed")]
    Malformed,
    /// Made for another room or another configuration (task id differs).
    #[error("for another room or configuration")]
    WrongTask,
    /// Its interval was already collected or forgotten: too late to count.
    #[error("interval already closed")]
    IntervalClosed,
    /// Its interval lies more than one interval ahead of the leader's clock.
    #[error("interval ahead of the clock")]
    IntervalAhead,
    /// A report with this id was already accepted for this interval.
    #[error("replayed report id")]
    Replay,
    /// The sealed share did not open: sealed to another key, bound to other metadata, or
    /// altered in transit.
    #[error("sealed share failed authentication")]
    Unauthentic,
    /// The shares have the wrong length or encoding for this configuration.
    #[error("shares do not decode for this configuration")]
    BadShares,
    /// The public share disagrees with the input shares (joint randomness check of Prio3).
    #[error("joint randomness mismatch")]
    JointRandMismatch,
    /// The validity proof failed: the measurement is out of range or not one-hot.
    #[error("validity proof failed")]
    ProofFailed,
    /// The other aggregator's verification message did not fit ours: a faulty or forged
    /// peer message, never a meter's doing once both sides checked their joint randomness.
    #[error("aggregators disagree")]
    AggregatorMismatch,
    /// The leader agent already holds another report from this nickname for this interval:
    /// one report per nickname and interval, decided before any cryptography.
    #[error("another report from this nickname in this interval")]
    RateLimited,
}

impl Refusal {
    /// Every refusal, in code order, for counters and tests.
    pub const ALL: [Refusal; 11] = [
        Refusal::Malformed,
        Refusal::WrongTask,
        Refusal::IntervalClosed,
        Refusal::IntervalAhead,
        Refusal::Replay,
        Refusal::Unauthentic,
        Refusal::BadShares,
        Refusal::JointRandMismatch,
        Refusal::ProofFailed,
        Refusal::AggregatorMismatch,
        Refusal::RateLimited,
    ];

    /// The byte that stands for this refusal in a helper response; part of the wire format.
    pub fn code(self) -> u8 {
        match self {
            Refusal::Malformed => 1,
            Refusal::WrongTask => 2,
            Refusal::IntervalClosed => 3,
            Refusal::IntervalAhead => 4,
            Refusal::Replay => 5,
            Refusal::Unauthentic => 6,
            Refusal::BadShares => 7,
            Refusal::JointRandMismatch => 8,
            Refusal::ProofFailed => 9,
            Refusal::AggregatorMismatch => 10,
            Refusal::RateLimited => 11,
        }
    }

    /// Reads [`Refusal::code`] back; unknown codes are a decoding error, never a panic.
    pub fn from_code(code: u8) -> Result<Self, DecodeError> {
        Refusal::ALL
            .into_iter()
            .find(|r| r.code() == code)
            .ok_or(DecodeError::RefusalCode { found: code })
    }

    /// Short stable name for log lines and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::WrongTask => "wrong_task",
            Refusal::IntervalClosed => "interval_closed",
            Refusal::IntervalAhead => "interval_ahead",
            Refusal::Replay => "replay",
            Refusal::Unauthentic => "unauthentic",
            Refusal::BadShares => "bad_shares",
            Refusal::JointRandMismatch => "joint_rand_mismatch",
            Refusal::ProofFailed => "proof_failed",
            Refusal::AggregatorMismatch => "aggregator_mismatch",
            Refusal::RateLimited => "rate_limited",
        }
    }

    /// Index into [`Refusal::ALL`], for counters.
    pub(crate) fn index(self) -> usize {
        usize::from(self.code() - 1)
    }
}

/// Why a signed private-mode message was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignedError {
    /// Shorter than a signature: cut off, or never signed.
    #[error("{len} bytes, too short to carry a signature")]
    TooShort {
        /// Length received.
        len: usize,
    },
    /// Not signed by the pinned key: an impostor holding the peer's nickname, or altered.
    #[error("not signed by the pinned key")]
    NotFromPeer,
}

/// Why an interval could not be collected (leader) or released (helper).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CollectError {
    /// The message is for another room or configuration.
    #[error("collection message for another room or configuration")]
    WrongTask,
    /// Nothing is known about this interval: no report accepted, or already forgotten.
    #[error("no reports held for interval {interval}")]
    UnknownInterval {
        /// The interval asked for.
        interval: u64,
    },
    /// This interval was already collected; collecting twice would let differences of
    /// aggregates isolate late reports.
    #[error("interval {interval} was already collected")]
    AlreadyCollected {
        /// The interval asked for.
        interval: u64,
    },
    /// Some reports of the interval still wait for the helper's answer.
    #[error("{reports} reports of the interval still wait for the helper")]
    InFlight {
        /// How many.
        reports: usize,
    },
    /// Too few reports to release an aggregate without exposing a house.
    #[error("{reports} reports, fewer than the {min} needed")]
    TooFewReports {
        /// Reports accepted.
        reports: u64,
        /// The configured minimum.
        min: u32,
    },
    /// The two aggregators did not accept the same set of reports; unsharding would give
    /// garbage, so nothing is released.
    #[error("aggregators hold different report sets ({leader} vs {helper} reports)")]
    ReportSetMismatch {
        /// Reports on the leader's side.
        leader: u64,
        /// Reports on the helper's side.
        helper: u64,
    },
    /// The helper's aggregate share does not decode for this configuration.
    #[error("aggregate share does not decode")]
    BadAggregateShare,
    /// prio could not combine the shares (should not happen for decoded shares).
    #[error("unsharding failed: {0}")]
    Unshard(String),
}

/// Why a verify-key offer from the leader was not accepted by the helper.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyOfferError {
    /// Not a well-formed offer.
    #[error("malformed offer: {0}")]
    Malformed(#[from] DecodeError),
    /// Made for another room or configuration.
    #[error("offer for another room or configuration")]
    WrongTask,
    /// Not signed by the leader pinned in the config: an impostor's key would let it
    /// forge proofs that pass.
    #[error("offer not signed by the pinned leader")]
    NotFromLeader,
    /// The sealed key did not open with the helper's key.
    #[error("sealed verify key failed to open: {0}")]
    Unseal(#[from] gridmuc_botkey::SealError),
    /// The opened key has the wrong length.
    #[error("verify key is {found} bytes, expected 32")]
    KeyLength {
        /// Length found.
        found: usize,
    },
}

/// Why [`crate::bench`] stopped; each is a bug in this crate, reported not panicked.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The bench's own configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A meter could not make a report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// An honest report was refused.
    #[error("an honest report was refused: {0}")]
    Refused(Refusal),
    /// A message between the aggregators did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An interval could not be collected.
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// Fewer than two houses cannot make an aggregate.
    #[error("need at least 2 houses, got {houses}")]
    TooFewHouses {
        /// Houses asked for.
        houses: u32,
    },
}
