//! What the leader and the helper say to each other, in the ping-pong topology of VDAF
//! draft 18 (one round for Prio3): the leader sends a batch of reports with its verifier
//! shares; the helper answers each with the combined verifier message or a refusal; at the
//! end of an interval the leader asks for the helper's aggregate share.
//!
//! These messages carry no reading: verifier shares and messages reveal only a report's
//! validity, and the helper's aggregate share is uniformly random without the leader's.
//! They are not authenticated here: the agents must sign them (or carry them over a channel
//! that authenticates each bot): whoever can forge them (the XMPP server, any occupant
//! sending to a bot's nickname) could spoil intervals, and a forged aggregate share would
//! change an interval's result (see the crate doc, "What the agents must add").

use crate::error::{DecodeError, Refusal};
use crate::report::ReportId;
use crate::wire::{Kind, Reader, Writer};

/// Leader → helper: reports to prepare, each with the leader's first verifier shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperRequest {
    pub(crate) task_tag: [u8; 4],
    pub(crate) items: Vec<HelperItem>,
}

/// One report as the helper needs it: metadata, public share, the helper's sealed share
/// (forwarded unopened) and the leader's verifier shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HelperItem {
    pub(crate) interval: u64,
    pub(crate) id: ReportId,
    pub(crate) public_share: Vec<u8>,
    pub(crate) helper_share: Vec<u8>,
    pub(crate) leader_sum_share: Vec<u8>,
    pub(crate) leader_hist_share: Vec<u8>,
}

impl HelperRequest {
    /// How many reports the batch carries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty (the leader never sends one, but a peer might).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Wire form: `01 02 tag[4]`, then items until the end, each `interval[8] id[16]` and
    /// four u16-prefixed fields (public share, helper's sealed share, the leader's Sum and
    /// Histogram verifier shares).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Kind::HelperRequest, self.task_tag, self.items.len() * 600);
        for it in &self.items {
            w.u64(it.interval);
            w.raw(&it.id.0);
            w.field(&it.public_share);
            w.field(&it.helper_share);
            w.field(&it.leader_sum_share);
            w.field(&it.leader_hist_share);
        }
        w.0
    }

    /// Parses [`HelperRequest::to_bytes`] output; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, task_tag) = Reader::open(bytes, Kind::HelperRequest)?;
        let mut items = Vec::new();
        while !r.is_empty() {
            items.push(HelperItem {
                interval: r.u64()?,
                id: ReportId(r.array()?),
                public_share: r.field()?,
                helper_share: r.field()?,
                leader_sum_share: r.field()?,
                leader_hist_share: r.field()?,
            });
        }
        r.finish()?;
        Ok(HelperRequest { task_tag, items })
    }
}

/// Helper → leader: the outcome of each report of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperResponse {
    pub(crate) task_tag: [u8; 4],
    pub(crate) items: Vec<HelperOutcome>,
}

/// The helper's verdict on one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HelperOutcome {
    pub(crate) interval: u64,
    pub(crate) id: ReportId,
    pub(crate) outcome: Outcome,
}

/// Accepted with the verifier messages the leader needs to finish, or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted {
        sum_message: Vec<u8>,
        hist_message: Vec<u8>,
    },
    Refused(Refusal),
}

impl HelperResponse {
    /// How many reports it answers.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it answers none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many reports the helper refused, for the leader's log line.
    pub fn refused(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.outcome, Outcome::Refused(_)))
            .count()
    }

    /// Wire form: `01 03 tag[4]`, then items until the end, each `interval[8] id[16]` and
    /// `00` + two u16-prefixed verifier messages (accepted) or `01 code` (refused).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Kind::HelperResponse, self.task_tag, self.items.len() * 64);
        for it in &self.items {
            w.u64(it.interval);
            w.raw(&it.id.0);
            match &it.outcome {
                Outcome::Accepted {
                    sum_message,
                    hist_message,
                } => {
                    w.u8(0);
                    w.field(sum_message);
                    w.field(hist_message);
                }
                Outcome::Refused(r) => {
                    w.u8(1);
                    w.u8(r.code());
                }
            }
        }
        w.0
    }

    /// Parses [`HelperResponse::to_bytes`] output; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, task_tag) = Reader::open(bytes, Kind::HelperResponse)?;
        let mut items = Vec::new();
        while !r.is_empty() {
            let interval = r.u64()?;
            let id = ReportId(r.array()?);
            let outcome = match r.u8()? {
                0 => Outcome::Accepted {
                    sum_message: r.field()?,
                    hist_message: r.field()?,
                },
                1 => Outcome::Refused(Refusal::from_code(r.u8()?)?),
                found => return Err(DecodeError::Outcome { found }),
            };
            items.push(HelperOutcome {
                interval,
                id,
                outcome,
            });
        }
        r.finish()?;
        Ok(HelperResponse { task_tag, items })
    }
}

/// Leader → helper: "release interval N; I hold this many reports with this checksum".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectRequest {
    pub(crate) task_tag: [u8; 4],
    pub(crate) interval: u64,
    pub(crate) reports: u64,
    pub(crate) checksum: [u8; 32],
}

impl CollectRequest {
    /// The interval to release.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// Reports the leader aggregated for it.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// Wire form: `01 04 tag[4] interval[8] reports[8] checksum[32]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(Kind::CollectRequest, self.task_tag, 48);
        w.u64(self.interval);
        w.u64(self.reports);
        w.raw(&self.checksum);
        w.0
    }

    /// Parses [`CollectRequest::to_bytes`] output; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, task_tag) = Reader::open(bytes, Kind::CollectRequest)?;
        let out = CollectRequest {
            task_tag,
            interval: r.u64()?,
            reports: r.u64()?,
            checksum: r.array()?,
        };
        r.finish()?;
        Ok(out)
    }
}

/// Helper → leader: the helper's aggregate share of one interval, with the count and
/// checksum of the reports in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateShareMessage {
    pub(crate) task_tag: [u8; 4],
    pub(crate) interval: u64,
    pub(crate) reports: u64,
    pub(crate) checksum: [u8; 32],
    pub(crate) sum_share: Vec<u8>,
    pub(crate) hist_share: Vec<u8>,
}

impl AggregateShareMessage {
    /// The interval it aggregates.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// Wire form: `01 05 tag[4] interval[8] reports[8] checksum[32]`, then the Sum and
    /// Histogram aggregate shares, each with a u16 length prefix.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = 52 + self.sum_share.len() + self.hist_share.len();
        let mut w = Writer::new(Kind::AggregateShare, self.task_tag, len);
        w.u64(self.interval);
        w.u64(self.reports);
        w.raw(&self.checksum);
        w.field(&self.sum_share);
        w.field(&self.hist_share);
        w.0
    }

    /// Parses [`AggregateShareMessage::to_bytes`] output; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, task_tag) = Reader::open(bytes, Kind::AggregateShare)?;
        let out = AggregateShareMessage {
            task_tag,
            interval: r.u64()?,
            reports: r.u64()?,
            checksum: r.array()?,
            sum_share: r.field()?,
            hist_share: r.field()?,
        };
        r.finish()?;
        Ok(out)
    }
}
