//! Protocol messages as plain Rust values and their compact byte / base64 form.
//!
//! Every message is one tag byte followed by fixed-width little-endian fields, so a masked
//! reading is [`MaskedReading::WIRE_LEN`] bytes (26 base64 characters) and fits any XMPP
//! payload element. Decoding never trusts a length field further than the bytes present.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

/// Length of an X25519 public key, the identity of a member within one cohort.
pub const KEY_LEN: usize = 32;
/// Length of a sealed Shamir share: a 32-byte scalar plus a 16-byte Poly1305 tag.
pub const SEALED_LEN: usize = 32 + 16;
/// Length of a compressed Ristretto point, the form of a self-mask evaluation.
pub const POINT_LEN: usize = 32;
/// Largest cohort the wire format carries (member indices are `u16`).
pub const MAX_COHORT: usize = u16::MAX as usize;

/// Why bytes from the room could not be read as a protocol message.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum WireError {
    /// The payload ended before the message did.
    #[error("message truncated")]
    Truncated,
    /// Bytes were left over after the message, so it was not produced by this codec.
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
    /// The tag byte names no message of this protocol version.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// The text was not URL-safe unpadded base64.
    #[error("invalid base64")]
    Base64,
    /// A member set's bitmap sets bits past its declared length.
    #[error("member set has bits beyond its length")]
    BadMemberSet,
}

/// A set of cohort members by roster index: survivor sets travel as a bitmap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberSet {
    len: u16,
    bits: Vec<u8>,
}

impl MemberSet {
    /// An empty set over a cohort of `len` members.
    pub fn empty(len: u16) -> Self {
        MemberSet {
            len,
            bits: vec![0; usize::from(len).div_ceil(8)],
        }
    }

    /// Size of the cohort the set ranges over (not the number of members in it).
    pub fn universe(&self) -> u16 {
        self.len
    }

    /// Adds `member`; indices outside the cohort are ignored because they cannot be members.
    pub fn insert(&mut self, member: u16) {
        if member < self.len {
            self.bits[usize::from(member / 8)] |= 1 << (member % 8);
        }
    }

    /// Whether `member` is in the set.
    pub fn contains(&self, member: u16) -> bool {
        member < self.len && self.bits[usize::from(member / 8)] & (1 << (member % 8)) != 0
    }

    /// Members in ascending index order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.len).filter(|m| self.contains(*m))
    }

    /// Number of members in the set.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.bits);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let len = r.u16()?;
        let bits = r.take(usize::from(len).div_ceil(8))?.to_vec();
        let set = MemberSet { len, bits };
        if set.count() != set.iter().count() {
            return Err(WireError::BadMemberSet);
        }
        Ok(set)
    }
}

/// Meter → room: the meter's ephemeral X25519 public key for this cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAnnouncement {
    /// X25519 public key (Montgomery u-coordinate).
    pub key: [u8; KEY_LEN],
}

/// Bot → room: the fixed, ordered cohort; a member's index is its Shamir x-coordinate − 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// Random cohort identifier so two cohorts with the same keys never share masks.
    pub cohort: [u8; 16],
    /// Members' public keys in index order.
    pub keys: Vec<[u8; KEY_LEN]>,
}

impl Roster {
    /// Index of the member that announced `key`, so the XMPP layer can map nickname ↔ index.
    pub fn index_of(&self, key: &[u8; KEY_LEN]) -> Option<u16> {
        self.keys
            .iter()
            .position(|k| k == key)
            .and_then(|i| u16::try_from(i).ok())
    }
}

/// One Shamir share sealed with ChaCha20-Poly1305 under a pairwise key; `peer` is the
/// recipient in a [`ShareUpload`] and the sender in a [`ShareBundle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedShare {
    /// The other end of the pairwise channel.
    pub peer: u16,
    /// Ciphertext and tag.
    pub sealed: [u8; SEALED_LEN],
}

/// Meter → bot: the meter's self-mask-key shares, one sealed to each other member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareUpload {
    /// Sender's roster index.
    pub from: u16,
    /// One share per other member.
    pub shares: Vec<SealedShare>,
}

/// Bot → one meter: every share sealed to that meter, routed so the room is not flooded (O(n²)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBundle {
    /// Recipient's roster index.
    pub to: u16,
    /// Shares addressed to `to`, `peer` = sender.
    pub shares: Vec<SealedShare>,
}

/// Meter → bot, once per round: the quantised reading plus all masks, mod 2⁶⁴.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskedReading {
    /// Round (reporting interval) number, strictly increasing per meter.
    pub round: u64,
    /// Sender's roster index.
    pub from: u16,
    /// Masked value; uniformly distributed to anyone without the masks.
    pub value: u64,
}

impl MaskedReading {
    /// Encoded size in bytes: tag + round + index + value.
    pub const WIRE_LEN: usize = 1 + 8 + 2 + 8;
}

/// Bot → room, once per round: who survived; the one extra exchange of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskRequest {
    /// Round to unmask.
    pub round: u64,
    /// Members whose masked value the bot holds.
    pub survivors: MemberSet,
}

/// Survivor → bot: what the bot needs to remove this survivor's share of the masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskResponse {
    /// Round being unmasked.
    pub round: u64,
    /// Sender's roster index.
    pub from: u16,
    /// Sum of the sender's signed pairwise masks with the dropped members (0 if none dropped).
    pub dropped_masks: u64,
    /// Threshold-PRF evaluations `share_{u→from} · H(round)` for surviving members `u`.
    pub evaluations: Vec<(u16, [u8; POINT_LEN])>,
}

/// Any protocol message, for dispatch on receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskMessage {
    /// See [`KeyAnnouncement`].
    Key(KeyAnnouncement),
    /// See [`Roster`].
    Roster(Roster),
    /// See [`ShareUpload`].
    Shares(ShareUpload),
    /// See [`ShareBundle`].
    Bundle(ShareBundle),
    /// See [`MaskedReading`].
    Masked(MaskedReading),
    /// See [`UnmaskRequest`].
    UnmaskRequest(UnmaskRequest),
    /// See [`UnmaskResponse`].
    UnmaskResponse(UnmaskResponse),
}

const TAG_KEY: u8 = 0x01;
const TAG_ROSTER: u8 = 0x02;
const TAG_SHARES: u8 = 0x03;
const TAG_BUNDLE: u8 = 0x04;
const TAG_MASKED: u8 = 0x05;
const TAG_UNMASK_REQUEST: u8 = 0x06;
const TAG_UNMASK_RESPONSE: u8 = 0x07;

impl MaskMessage {
    /// Compact binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            MaskMessage::Key(m) => {
                out.push(TAG_KEY);
                out.extend_from_slice(&m.key);
            }
            MaskMessage::Roster(m) => {
                out.push(TAG_ROSTER);
                out.extend_from_slice(&m.cohort);
                put_count(&mut out, m.keys.len());
                m.keys.iter().for_each(|k| out.extend_from_slice(k));
            }
            MaskMessage::Shares(m) => {
                out.push(TAG_SHARES);
                out.extend_from_slice(&m.from.to_le_bytes());
                put_shares(&mut out, &m.shares);
            }
            MaskMessage::Bundle(m) => {
                out.push(TAG_BUNDLE);
                out.extend_from_slice(&m.to.to_le_bytes());
                put_shares(&mut out, &m.shares);
            }
            MaskMessage::Masked(m) => {
                out.push(TAG_MASKED);
                out.extend_from_slice(&m.round.to_le_bytes());
                out.extend_from_slice(&m.from.to_le_bytes());
                out.extend_from_slice(&m.value.to_le_bytes());
            }
            MaskMessage::UnmaskRequest(m) => {
                out.push(TAG_UNMASK_REQUEST);
                out.extend_from_slice(&m.round.to_le_bytes());
                m.survivors.encode(&mut out);
            }
            MaskMessage::UnmaskResponse(m) => {
                out.push(TAG_UNMASK_RESPONSE);
                out.extend_from_slice(&m.round.to_le_bytes());
                out.extend_from_slice(&m.from.to_le_bytes());
                out.extend_from_slice(&m.dropped_masks.to_le_bytes());
                put_count(&mut out, m.evaluations.len());
                for (member, point) in &m.evaluations {
                    out.extend_from_slice(&member.to_le_bytes());
                    out.extend_from_slice(point);
                }
            }
        }
        out
    }

    /// Parses bytes received from the room; rejects anything not produced by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(bytes);
        let msg = match r.u8()? {
            TAG_KEY => MaskMessage::Key(KeyAnnouncement { key: r.array()? }),
            TAG_ROSTER => {
                let cohort = r.array()?;
                let keys = r.list(KEY_LEN, |r| r.array())?;
                MaskMessage::Roster(Roster { cohort, keys })
            }
            TAG_SHARES => MaskMessage::Shares(ShareUpload {
                from: r.u16()?,
                shares: get_shares(&mut r)?,
            }),
            TAG_BUNDLE => MaskMessage::Bundle(ShareBundle {
                to: r.u16()?,
                shares: get_shares(&mut r)?,
            }),
            TAG_MASKED => MaskMessage::Masked(MaskedReading {
                round: r.u64()?,
                from: r.u16()?,
                value: r.u64()?,
            }),
            TAG_UNMASK_REQUEST => MaskMessage::UnmaskRequest(UnmaskRequest {
                round: r.u64()?,
                survivors: MemberSet::decode(&mut r)?,
            }),
            TAG_UNMASK_RESPONSE => MaskMessage::UnmaskResponse(UnmaskResponse {
                round: r.u64()?,
                from: r.u16()?,
                dropped_masks: r.u64()?,
                evaluations: r.list(2 + POINT_LEN, |r| Ok((r.u16()?, r.array()?)))?,
            }),
            tag => return Err(WireError::UnknownTag(tag)),
        };
        match r.0.len() {
            0 => Ok(msg),
            n => Err(WireError::Trailing(n)),
        }
    }

    /// Text form for an XMPP element body: URL-safe base64 without padding.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    /// Parses the text form produced by [`Self::to_base64`].
    pub fn from_base64(text: &str) -> Result<Self, WireError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| WireError::Base64)?;
        Self::from_bytes(&bytes)
    }
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    // Every list is bounded by the cohort size, which the state machines cap at MAX_COHORT.
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes());
}

fn put_shares(out: &mut Vec<u8>, shares: &[SealedShare]) {
    put_count(out, shares.len());
    for s in shares {
        out.extend_from_slice(&s.peer.to_le_bytes());
        out.extend_from_slice(&s.sealed);
    }
}

fn get_shares(r: &mut Reader<'_>) -> Result<Vec<SealedShare>, WireError> {
    r.list(2 + SEALED_LEN, |r| {
        Ok(SealedShare {
            peer: r.u16()?,
            sealed: r.array()?,
        })
    })
}

/// Cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `u16` count then that many items of `item_len` bytes; the count is checked against
    /// the bytes present before anything is allocated.
    fn list<T>(
        &mut self,
        item_len: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let n = usize::from(self.u16()?);
        if self.0.len() < n * item_len {
            return Err(WireError::Truncated);
        }
        (0..n).map(|_| item(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: MaskMessage) {
        let text = m.to_base64();
        assert_eq!(MaskMessage::from_base64(&text).unwrap(), m);
    }

    #[test]
    fn every_message_roundtrips() {
        let mut survivors = MemberSet::empty(11);
        survivors.insert(0);
        survivors.insert(10);
        let share = SealedShare {
            peer: 3,
            sealed: [7; SEALED_LEN],
        };
        roundtrip(MaskMessage::Key(KeyAnnouncement { key: [1; KEY_LEN] }));
        roundtrip(MaskMessage::Roster(Roster {
            cohort: [2; 16],
            keys: vec![[3; KEY_LEN], [4; KEY_LEN]],
        }));
        roundtrip(MaskMessage::Shares(ShareUpload {
            from: 1,
            shares: vec![share.clone()],
        }));
        roundtrip(MaskMessage::Bundle(ShareBundle {
            to: 2,
            shares: vec![share],
        }));
        roundtrip(MaskMessage::Masked(MaskedReading {
            round: 9,
            from: 4,
            value: u64::MAX,
        }));
        roundtrip(MaskMessage::UnmaskRequest(UnmaskRequest {
            round: 9,
            survivors,
        }));
        roundtrip(MaskMessage::UnmaskResponse(UnmaskResponse {
            round: 9,
            from: 4,
            dropped_masks: 5,
            evaluations: vec![(0, [9; POINT_LEN])],
        }));
    }

    #[test]
    fn masked_reading_is_19_bytes_and_26_base64_chars() {
        let m = MaskMessage::Masked(MaskedReading {
            round: u64::MAX,
            from: u16::MAX,
            value: u64::MAX,
        });
        assert_eq!(m.to_bytes().len(), MaskedReading::WIRE_LEN);
        assert_eq!(MaskedReading::WIRE_LEN, 19);
        assert_eq!(m.to_base64().len(), 26);
    }

    #[test]
    fn hostile_bytes_are_rejected_not_panicked_on() {
        assert_eq!(MaskMessage::from_bytes(&[]), Err(WireError::Truncated));
        assert_eq!(
            MaskMessage::from_bytes(&[0x77]),
            Err(WireError::UnknownTag(0x77))
        );
        // A roster claiming 65535 keys but carrying none must not allocate or panic.
        assert_eq!(
            MaskMessage::from_bytes(&[
                TAG_ROSTER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
            ]),
            Err(WireError::Truncated)
        );
        let mut bytes = MaskMessage::Key(KeyAnnouncement { key: [0; KEY_LEN] }).to_bytes();
        bytes.push(0);
        assert_eq!(MaskMessage::from_bytes(&bytes), Err(WireError::Trailing(1)));
        // Three members but the bitmap sets bit 7.
        assert_eq!(
            MaskMessage::from_bytes(&[TAG_UNMASK_REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x80]),
            Err(WireError::BadMemberSet)
        );
        assert_eq!(MaskMessage::from_base64("!!"), Err(WireError::Base64));
    }
}
