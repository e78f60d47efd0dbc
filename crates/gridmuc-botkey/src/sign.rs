//! What the bot signs, and the exact bytes behind each signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ParseError;

/// Fixed start of every signed byte string, so a bot signature can never be mistaken for a
/// signature of some other protocol or of a future version of this one.
const SIG_DOMAIN: &[u8] = b"gridmuc-sig-v1\0";

/// Keeps a signature made for one purpose from being accepted for another.
///
/// The signed bytes are `b"gridmuc-sig-v1\0" || tag || b"\0" || msg`. Tags hold no NUL byte,
/// so the NUL after the tag makes the set of prefixes prefix-free: no (context, message)
/// pair encodes to the same bytes as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignContext {
    /// A receipt or refusal of one reading (wire format v1): sign [`ack_message`] bytes.
    Ack,
    /// A cumulative ack of several readings of one nickname (wire format v2): sign
    /// [`acks_message`] bytes.
    Acks,
    /// A summary or alert posted to the room or to a nickname: sign the body sent.
    Post,
    /// A private-mode message between bots, or from the leader to meters (helper requests
    /// and answers, collection, verdicts on reports, interval notices): sign the whole
    /// `gridmuc-private` message, whose header (version, kind, task tag) keeps the kinds
    /// and configurations apart, so the helper can tell the pinned leader from whoever
    /// holds its nickname and the reverse.
    Private,
}

impl SignContext {
    /// The tag written into the signed bytes; part of the wire format, never change one.
    fn tag(self) -> &'static [u8] {
        match self {
            SignContext::Ack => b"ack",
            SignContext::Acks => b"acks",
            SignContext::Post => b"post",
            SignContext::Private => b"private",
        }
    }

    /// The exact bytes that Ed25519 signs for `msg` in this context, for peers written in
    /// other languages and for tests.
    pub fn signed_bytes(self, msg: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut out = Vec::with_capacity(SIG_DOMAIN.len() + tag.len() + 1 + msg.len());
        out.extend_from_slice(SIG_DOMAIN);
        out.extend_from_slice(tag);
        out.push(0);
        out.extend_from_slice(msg);
        out
    }
}

/// Canonical bytes of a receipt (`verdict` "accepted", `reason` "") or refusal (e.g.
/// "refused", "late") of one reading, so a signature covers exactly these three fields.
///
/// Layout: `reading_id` as 16 bytes big-endian, then `verdict` and `reason`, each preceded
/// by its length as 8 bytes big-endian; the length prefixes keep bytes from moving between
/// fields ("refused"+"late" never equals "refusedl"+"ate").
pub fn ack_message(reading_id: u128, verdict: &str, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 8 + verdict.len() + 8 + reason.len());
    out.extend_from_slice(&reading_id.to_be_bytes());
    for field in [verdict, reason] {
        // usize is at most 64 bits on every target Rust supports, so this never truncates.
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// Canonical bytes of a cumulative ack: the number of entries as 8 bytes big-endian, then
/// each entry `(reading_id, verdict, reason)` as [`ack_message`] lays it out, in the order the
/// ack lists them, so one signature covers exactly which readings were counted or refused why.
///
/// Every entry is self-delimiting (a fixed-size id, length-prefixed fields), so no two entry
/// lists encode to the same bytes.
pub fn acks_message<'a>(entries: impl IntoIterator<Item = (u128, &'a str, &'a str)>) -> Vec<u8> {
    let mut out = vec![0; 8];
    let mut n: u64 = 0;
    for (id, verdict, reason) in entries {
        out.extend_from_slice(&ack_message(id, verdict, reason));
        n += 1;
    }
    out[..8].copy_from_slice(&n.to_be_bytes());
    out
}

/// An Ed25519 signature by the bot, carried next to a receipt, refusal or post.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; Signature::LEN]);

impl Signature {
    /// Size of a signature in bytes, for stanza size budgets.
    pub const LEN: usize = 64;

    /// Wraps raw signature bytes, for callers that carry them in binary form.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Signature(bytes)
    }

    /// The raw signature bytes, for callers that carry them in binary form.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        self.0
    }

    /// Unpadded base64url (86 characters), safe in XML text and attributes.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses [`Signature::to_base64`] output; anything else is refused, never panics.
    pub fn from_base64(text: &str) -> Result<Self, ParseError> {
        decode_fixed(text.trim()).map(Signature)
    }

    /// The dalek form, for verification.
    pub(crate) fn to_dalek(self) -> ed25519_dalek::Signature {
        ed25519_dalek::Signature::from_bytes(&self.0)
    }
}

impl core::fmt::Debug for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

/// Unpadded base64url of exactly `N` bytes, the text form of every public value here
/// (public key, signature); a distinct error for bad text and for a wrong length.
pub(crate) fn decode_fixed<const N: usize>(text: &str) -> Result<[u8; N], ParseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ParseError::BadBase64)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| ParseError::WrongLength {
            expected: N,
            found: bytes.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bytes_layout() {
        assert_eq!(
            SignContext::Ack.signed_bytes(b"xy"),
            b"gridmuc-sig-v1\0ack\0xy".to_vec()
        );
        assert_eq!(
            SignContext::Post.signed_bytes(b""),
            b"gridmuc-sig-v1\0post\0".to_vec()
        );
        assert_eq!(
            SignContext::Private.signed_bytes(b"z"),
            b"gridmuc-sig-v1\0private\0z".to_vec()
        );
    }

    #[test]
    fn ack_message_layout() {
        let m = ack_message(1, "refused", "late");
        let mut want = vec![0u8; 15];
        want.push(1);
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(b"refused");
        want.extend_from_slice(&4u64.to_be_bytes());
        want.extend_from_slice(b"late");
        assert_eq!(m, want);
    }

    #[test]
    fn acks_message_counts_then_lists_each_entry() {
        let m = acks_message([(1, "accepted", ""), (2, "refused", "late")]);
        let mut want = 2u64.to_be_bytes().to_vec();
        want.extend_from_slice(&ack_message(1, "accepted", ""));
        want.extend_from_slice(&ack_message(2, "refused", "late"));
        assert_eq!(m, want);
        assert_eq!(acks_message([]), 0u64.to_be_bytes().to_vec());
        // Order matters: an ack is signed as listed.
        assert_ne!(
            acks_message([(1, "accepted", ""), (2, "accepted", "")]),
            acks_message([(2, "accepted", ""), (1, "accepted", "")])
        );
    }

    #[test]
    fn ack_fields_cannot_shift() {
        assert_ne!(
            ack_message(7, "refused", "late"),
            ack_message(7, "refusedl", "ate")
        );
        assert_ne!(
            ack_message(7, "accepted", ""),
            ack_message(7, "", "accepted")
        );
    }
}
