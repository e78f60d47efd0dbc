//! What the leader tells meters, signed with [`crate::sign_message`]: a verdict on each
//! report, each interval's published aggregate with its house-spike count, and a hello
//! naming the leader's epoch. A meter acts only on these, and only once the pinned leader
//! key verified them.
//!
//! The epoch is a random number per leader process. A meter keeps every report until its
//! interval is published; a signed message with an epoch other than the one that received a
//! report says the leader restarted and lost it, so the meter sends the same bytes again.

use crate::config::PrivateConfig;
use crate::error::{DecodeError, Refusal};
use crate::report::ReportId;
use crate::result::SpikeCount;
use crate::wire::{Kind, Reader, Writer};

/// One interval as the leader publishes it: what any occupant may know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalNotice {
    /// The interval number.
    pub interval: u64,
    /// Valid reports aggregated.
    pub reports: u64,
    /// Exact sum of the quantised readings, in watts.
    pub total_watts: u64,
    /// Reports per bucket (bucket edges come from the shared configuration).
    pub histogram: Vec<u64>,
    /// The house-spike count and the bucket edge it was counted at, if the leader ran the
    /// check; each meter compares its own reading with `threshold_watts`.
    pub spike: Option<SpikeCount>,
}

/// A leader's signed word to meters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderNotice {
    /// A leader process with this epoch is in the room.
    Hello {
        /// Random per leader process.
        epoch: u64,
    },
    /// The verdict on one report: held (`None`) or refused with a reason.
    Verdict {
        /// The epoch of the leader that holds it.
        epoch: u64,
        /// The report's interval.
        interval: u64,
        /// The report's id.
        id: ReportId,
        /// Why it was refused; [`Refusal::Replay`] means "already held".
        refusal: Option<Refusal>,
    },
    /// An interval's published aggregate.
    Interval {
        /// The epoch of the leader that published it.
        epoch: u64,
        /// What it published.
        notice: IntervalNotice,
    },
}

impl LeaderNotice {
    /// Wire form, unsigned: `01 kind tag[4] epoch[8]` then, for a verdict, `interval[8]
    /// id[16] code` (0 = held); for an interval, `interval[8] reports[8] total[8] spike`
    /// (`00`, or `01 threshold[8] count[8]`) and one `count[8]` per bucket.
    pub fn to_bytes(&self, cfg: &PrivateConfig) -> Vec<u8> {
        let tag = cfg.task_tag();
        match self {
            LeaderNotice::Hello { epoch } => {
                let mut w = Writer::new(Kind::Hello, tag, 8);
                w.u64(*epoch);
                w.0
            }
            LeaderNotice::Verdict {
                epoch,
                interval,
                id,
                refusal,
            } => {
                let mut w = Writer::new(Kind::Verdict, tag, 33);
                w.u64(*epoch);
                w.u64(*interval);
                w.raw(&id.0);
                w.u8(refusal.map_or(0, Refusal::code));
                w.0
            }
            LeaderNotice::Interval { epoch, notice } => {
                let mut w = Writer::new(Kind::IntervalNotice, tag, 49 + 8 * notice.histogram.len());
                w.u64(*epoch);
                w.u64(notice.interval);
                w.u64(notice.reports);
                w.u64(notice.total_watts);
                match notice.spike {
                    None => w.u8(0),
                    Some(s) => {
                        w.u8(1);
                        w.u64(u64::from(s.threshold_watts));
                        w.u64(s.reports);
                    }
                }
                for c in &notice.histogram {
                    w.u64(*c);
                }
                w.0
            }
        }
    }

    /// Parses [`LeaderNotice::to_bytes`] output for `cfg`'s task; never panics. A notice
    /// for another task is [`DecodeError::WrongTask`].
    pub fn from_bytes(cfg: &PrivateConfig, bytes: &[u8]) -> Result<Self, DecodeError> {
        let kind = Kind::of(bytes).ok_or(DecodeError::Kind {
            expected: Kind::Verdict as u8,
            found: bytes.get(1).copied().unwrap_or(0),
        })?;
        let (mut r, tag) = Reader::open(bytes, kind)?;
        if tag != cfg.task_tag() {
            return Err(DecodeError::WrongTask);
        }
        let epoch = r.u64()?;
        let out = match kind {
            Kind::Hello => LeaderNotice::Hello { epoch },
            Kind::Verdict => {
                let interval = r.u64()?;
                let id = ReportId(r.array()?);
                let refusal = match r.u8()? {
                    0 => None,
                    code => Some(Refusal::from_code(code)?),
                };
                LeaderNotice::Verdict {
                    epoch,
                    interval,
                    id,
                    refusal,
                }
            }
            Kind::IntervalNotice => {
                let interval = r.u64()?;
                let reports = r.u64()?;
                let total_watts = r.u64()?;
                let spike = match r.u8()? {
                    0 => None,
                    1 => Some(SpikeCount {
                        threshold_watts: u32::try_from(r.u64()?)
                            .map_err(|_| DecodeError::Outcome { found: 1 })?,
                        reports: r.u64()?,
                    }),
                    found => return Err(DecodeError::Outcome { found }),
                };
                let mut histogram = Vec::with_capacity(cfg.buckets());
                for _ in 0..cfg.buckets() {
                    histogram.push(r.u64()?);
                }
                LeaderNotice::Interval {
                    epoch,
                    notice: IntervalNotice {
                        interval,
                        reports,
                        total_watts,
                        histogram,
                        spike,
                    },
                }
            }
            other => {
                return Err(DecodeError::Kind {
                    expected: Kind::Verdict as u8,
                    found: other as u8,
                });
            }
        };
        r.finish()?;
        Ok(out)
    }

    /// The epoch of the leader that said it.
    pub fn epoch(&self) -> u64 {
        match self {
            LeaderNotice::Hello { epoch }
            | LeaderNotice::Verdict { epoch, .. }
            | LeaderNotice::Interval { epoch, .. } => *epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrivateParams;
    use gridmuc_botkey::BotSecretKey;
    use rand::SeedableRng;

    #[test]
    fn notices_round_trip_and_refuse_another_task() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let l = BotSecretKey::generate(&mut rng).public();
        let h = BotSecretKey::generate(&mut rng).public();
        let cfg = PrivateConfig::new(PrivateParams::new("a@rooms.test", 5, l.clone(), h.clone()))
            .expect("config");
        let other =
            PrivateConfig::new(PrivateParams::new("b@rooms.test", 5, l, h)).expect("config");
        let notices = [
            LeaderNotice::Hello { epoch: 7 },
            LeaderNotice::Verdict {
                epoch: 7,
                interval: 42,
                id: ReportId([3; 16]),
                refusal: Some(Refusal::ProofFailed),
            },
            LeaderNotice::Interval {
                epoch: 7,
                notice: IntervalNotice {
                    interval: 42,
                    reports: 12,
                    total_watts: 9_390,
                    histogram: (0..cfg.buckets() as u64).collect(),
                    spike: Some(SpikeCount {
                        threshold_watts: 14_000,
                        reports: 2,
                    }),
                },
            },
        ];
        for n in notices {
            let bytes = n.to_bytes(&cfg);
            assert_eq!(LeaderNotice::from_bytes(&cfg, &bytes), Ok(n.clone()));
            assert_eq!(
                LeaderNotice::from_bytes(&other, &bytes),
                Err(DecodeError::WrongTask)
            );
            for cut in 0..bytes.len() {
                assert!(LeaderNotice::from_bytes(&cfg, &bytes[..cut]).is_err());
            }
        }
    }
}
