//! What can go wrong, one enum per operation and one variant per cause.

use thiserror::Error;

/// Why a text form (secret key file, pinned public key, signature) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The text does not start with the expected tag: a different kind or version of key.
    #[error("expected text starting with {expected:?}")]
    WrongPrefix {
        /// The prefix this form must start with.
        expected: &'static str,
    },
    /// The part after the prefix is not canonical unpadded base64url. Carries no detail
    /// because the decoder's detail would quote a character of a secret key.
    #[error("not canonical unpadded base64url")]
    BadBase64,
    /// The decoded bytes have the wrong length: truncated or extended when pasted.
    #[error("decoded to {found} bytes, expected {expected}")]
    WrongLength {
        /// How many bytes this form holds.
        expected: usize,
        /// How many bytes the text decoded to.
        found: usize,
    },
    /// The signing half is not the encoding of a point on the Ed25519 curve.
    #[error("the signing half is not a valid Ed25519 public key")]
    NotACurvePoint,
    /// A half is a small-order point: anyone could forge its signatures, or sealing to it
    /// would yield a key everyone knows.
    #[error("the {half} half is a small-order point, which no real key has")]
    WeakKey {
        /// Which half: "signing" (Ed25519) or "sealing" (X25519).
        half: &'static str,
    },
}

/// Why a signature was not accepted as the bot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// Not made by this key over these bytes in this context: forged, altered, or for
    /// another message or context.
    #[error("signature does not match the bot's key, context and message")]
    Mismatch,
}

/// Why a sealed reading could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SealError {
    /// Shorter than an encapsulated key plus an authentication tag: cut off in transit.
    #[error("sealed input is {len} bytes, shorter than the {min}-byte minimum")]
    Truncated {
        /// Length received.
        len: usize,
        /// Smallest possible sealed length (empty plaintext).
        min: usize,
    },
    /// The encapsulated key is a small-order point: crafted, never produced by `seal`.
    #[error("the encapsulated key is a small-order point")]
    BadEncapsulatedKey,
    /// Authentication failed: sealed to another key, other associated data, or altered.
    #[error("sealed reading failed authentication (wrong key, wrong associated data, or altered)")]
    Unauthentic,
}
