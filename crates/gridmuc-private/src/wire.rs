//! Byte-level reading and writing shared by every message: big-endian integers, byte
//! fields with a u16 length prefix, and strict end-of-message checks.
//!
//! Every message starts `version (u8) || kind (u8) || task tag (4 bytes)`. The reader never
//! allocates from a length it has not checked against the bytes actually present, and it
//! never panics: every shortfall is a [`DecodeError`].

use crate::error::DecodeError;

/// Wire version written by this build; anything else is refused, not guessed at.
pub const WIRE_VERSION: u8 = 1;

/// Which message a byte string claims to be, so one type is never parsed as another, and
/// so an agent can route what it received before checking a signature or parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Meter → leader.
    Report = 1,
    /// Leader → helper, a batch of reports to prepare.
    HelperRequest = 2,
    /// Helper → leader, the outcome of each report in a batch.
    HelperResponse = 3,
    /// Leader → helper, asks for an interval's aggregate share.
    CollectRequest = 4,
    /// Helper → leader, the interval's aggregate share.
    AggregateShare = 5,
    /// Leader → helper, the VDAF verify key sealed and signed.
    VerifyKeyOffer = 6,
    /// Leader → meter, the verdict on one report.
    Verdict = 7,
    /// Leader → room, one interval's published aggregate and house-spike count.
    IntervalNotice = 8,
    /// Leader → room, "a leader incarnation with this epoch is up".
    Hello = 9,
}

impl Kind {
    /// Every kind, in code order.
    const ALL: [Kind; 9] = [
        Kind::Report,
        Kind::HelperRequest,
        Kind::HelperResponse,
        Kind::CollectRequest,
        Kind::AggregateShare,
        Kind::VerifyKeyOffer,
        Kind::Verdict,
        Kind::IntervalNotice,
        Kind::Hello,
    ];

    /// The kind a message of this wire version claims to be, from its first two bytes;
    /// `None` for anything else. Says nothing about the rest being well formed.
    pub fn of(bytes: &[u8]) -> Option<Kind> {
        match bytes {
            [WIRE_VERSION, k, ..] => Kind::ALL.into_iter().find(|kind| *kind as u8 == *k),
            _ => None,
        }
    }
}

/// Appends big-endian fields to a buffer.
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    /// Starts a message with its header.
    pub(crate) fn new(kind: Kind, task_tag: [u8; 4], capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 6);
        out.push(WIRE_VERSION);
        out.push(kind as u8);
        out.extend_from_slice(&task_tag);
        Writer(out)
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }

    /// A byte field with a u16 length prefix. Every field this crate writes is far below
    /// 64 KiB (at most a few KiB for 64 buckets); longer input is a caller bug, clamped so
    /// the output stays decodable rather than panicking.
    pub(crate) fn field(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(&v[..usize::from(len)]);
    }
}

/// Reads big-endian fields from a byte slice, refusing what is not there.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the header (version, kind) and returns the reader and the task tag.
    pub(crate) fn open(bytes: &'a [u8], kind: Kind) -> Result<(Self, [u8; 4]), DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != WIRE_VERSION {
            return Err(DecodeError::Version { found: version });
        }
        let found = r.u8()?;
        if found != kind as u8 {
            return Err(DecodeError::Kind {
                expected: kind as u8,
                found,
            });
        }
        let tag = r.array::<4>()?;
        Ok((r, tag))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - remaining,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A byte field written by [`Writer::field`].
    pub(crate) fn field(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u16()?;
        Ok(self.take(usize::from(len))?.to_vec())
    }

    /// Whether bytes remain, for item loops.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// Ends the message: anything left over is an error.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let extra = self.bytes.len() - self.pos;
        if extra == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { extra })
        }
    }
}
