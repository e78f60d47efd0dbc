//! What the meters and both aggregators must agree on: the room, the measurement's bounds
//! and buckets, and the two aggregators' public keys. Its hash, the task id, binds every
//! report and every share to exactly this configuration.

use gridmuc_botkey::BotPublicKey;
use prio::vdaf::prio3::{Prio3Histogram, Prio3Sum, optimal_chunk_length};
use sha2::{Digest as _, Sha256};

use crate::error::{ConfigError, ReportError};

/// Default quantum: readings are rounded to 10 W, as in the other modes.
pub const DEFAULT_QUANTUM_WATTS: u32 = 10;
/// Default bound: the 25 kW physical limit per house that direct mode also enforces.
pub const DEFAULT_MAX_WATTS: u32 = 25_000;
/// Default number of histogram buckets.
pub const DEFAULT_BUCKETS: usize = 32;
/// Default upper edge of the first bucket (standby loads fall below it).
pub const DEFAULT_LOWEST_EDGE_WATTS: u32 = 50;
/// Default smallest number of reports an interval needs before the helper releases it.
pub const DEFAULT_MIN_REPORTS: u32 = 10;
/// Most buckets allowed: each costs 16 bytes in the leader's share and proof work.
pub const MAX_BUCKETS: usize = 256;

/// Domain-separation prefix of the task id, the VDAF context and the HPKE associated data.
pub(crate) const DOMAIN: &[u8] = b"gridmuc-private-v1\0";

/// The settings of private mode, as plain data for config files; checked by
/// [`PrivateConfig::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateParams {
    /// Bare JID of the room: reports are bound to it and refused in any other room.
    pub room: String,
    /// Length of a reporting interval in seconds; bound into the task so meters and
    /// aggregators agree on what an interval number means.
    pub interval_secs: u32,
    /// Readings are rounded to a multiple of this many watts before sharding.
    pub quantum_watts: u32,
    /// Largest reading a report can carry; the validity proof enforces it.
    pub max_watts: u32,
    /// Lower edge of each histogram bucket in watts: starts at 0, strictly increasing, all
    /// at most `max_watts`. Bucket `i` holds quantised readings in `[edge[i], edge[i+1])`,
    /// the last one up to `max_watts` inclusive.
    pub bucket_edges: Vec<u32>,
    /// The helper never releases an interval's aggregate with fewer reports than this.
    pub min_reports: u32,
    /// The leader (the substation bot): opens leader shares and collects.
    pub leader: BotPublicKey,
    /// The helper (an independent party's bot): opens helper shares.
    pub helper: BotPublicKey,
}

impl PrivateParams {
    /// The defaults (10 W quantum, 25 kW bound, 32 log-spaced buckets from 50 W, at least
    /// 10 reports per interval) for a room, an interval length and two aggregators.
    pub fn new(
        room: impl Into<String>,
        interval_secs: u32,
        leader: BotPublicKey,
        helper: BotPublicKey,
    ) -> Self {
        PrivateParams {
            room: room.into(),
            interval_secs,
            quantum_watts: DEFAULT_QUANTUM_WATTS,
            max_watts: DEFAULT_MAX_WATTS,
            bucket_edges: log_bucket_edges(
                DEFAULT_BUCKETS,
                DEFAULT_LOWEST_EDGE_WATTS,
                DEFAULT_MAX_WATTS,
                DEFAULT_QUANTUM_WATTS,
            ),
            min_reports: DEFAULT_MIN_REPORTS,
            leader,
            helper,
        }
    }
}

/// `count` bucket edges: 0, then `lowest` and geometric steps towards `max`, each rounded
/// to the quantum; log spacing keeps relative resolution even from standby to heat pumps.
///
/// With the defaults (32, 50 W, 25 kW, 10 W) consecutive edges differ by about 22 %, and
/// the last bucket starts near 20.5 kW. Rounding never makes two edges equal: an edge that
/// would is pushed one quantum up. Returns fewer edges only if `max` leaves no room.
pub fn log_bucket_edges(count: usize, lowest: u32, max: u32, quantum: u32) -> Vec<u32> {
    let quantum = quantum.max(1);
    let mut edges = vec![0u32];
    if count < 2 || lowest == 0 || lowest >= max {
        return edges;
    }
    let ratio = (f64::from(max) / f64::from(lowest)).powf(1.0 / (count - 1) as f64);
    for k in 0..count - 1 {
        let ideal = f64::from(lowest) * ratio.powi(k as i32);
        let rounded = ((ideal / f64::from(quantum)).round() as u32).saturating_mul(quantum);
        let prev = edges.last().copied().unwrap_or(0);
        let edge = rounded.max(prev.saturating_add(quantum));
        if edge >= max {
            break;
        }
        edges.push(edge);
    }
    edges
}

/// A checked configuration with its two Prio3 instances and task id, shared by the meter,
/// the leader, the helper and the collector.
///
/// The measurement is two standard Prio3 instances (VDAF draft 18) sharded under one nonce
/// (the report id) and sealed together: `Prio3Sum` over the quantised reading
/// (`0..=max/quantum`) and `Prio3Histogram` over its bucket. See the crate doc for why two.
#[derive(Debug, Clone)]
pub struct PrivateConfig {
    params: PrivateParams,
    task_id: [u8; 32],
    ctx: Vec<u8>,
    pub(crate) sum: Prio3Sum,
    pub(crate) hist: Prio3Histogram,
    chunk_length: usize,
}

impl PrivateConfig {
    /// Checks the parameters and builds the VDAF instances; every role must build it from
    /// the same parameters, or its reports will be refused as [`crate::Refusal::WrongTask`].
    pub fn new(params: PrivateParams) -> Result<Self, ConfigError> {
        let q = params.quantum_watts;
        if q == 0 {
            return Err(ConfigError::QuantumZero);
        }
        if params.max_watts == 0 || !params.max_watts.is_multiple_of(q) {
            return Err(ConfigError::MaxNotMultiple {
                max: params.max_watts,
                quantum: q,
            });
        }
        let n = params.bucket_edges.len();
        if !(2..=MAX_BUCKETS).contains(&n) {
            return Err(ConfigError::BucketCount {
                count: n,
                max: MAX_BUCKETS,
            });
        }
        if params.bucket_edges[0] != 0 {
            return Err(ConfigError::FirstEdgeNotZero {
                found: params.bucket_edges[0],
            });
        }
        for (index, pair) in params.bucket_edges.windows(2).enumerate() {
            if pair[1] <= pair[0] {
                return Err(ConfigError::EdgesNotIncreasing {
                    index: index + 1,
                    edge: pair[1],
                });
            }
            if pair[1] > params.max_watts {
                return Err(ConfigError::EdgeAboveMax {
                    index: index + 1,
                    edge: pair[1],
                });
            }
        }
        if params.min_reports < 2 {
            return Err(ConfigError::MinReportsTooSmall {
                found: params.min_reports,
            });
        }
        if params.leader == params.helper {
            return Err(ConfigError::SameAggregatorKey);
        }
        let max_quanta = u64::from(params.max_watts / q);
        let sum = Prio3Sum::new_sum(2, max_quanta).map_err(|e| ConfigError::Vdaf(e.to_string()))?;
        let chunk_length = optimal_chunk_length(n);
        let hist = Prio3Histogram::new_histogram(2, n, chunk_length)
            .map_err(|e| ConfigError::Vdaf(e.to_string()))?;
        let task_id = task_id(&params, chunk_length);
        let mut ctx = Vec::with_capacity(DOMAIN.len() + 32);
        ctx.extend_from_slice(DOMAIN);
        ctx.extend_from_slice(&task_id);
        Ok(PrivateConfig {
            params,
            task_id,
            ctx,
            sum,
            hist,
            chunk_length,
        })
    }

    /// The parameters this config was built from.
    pub fn params(&self) -> &PrivateParams {
        &self.params
    }

    /// SHA-256 over every parameter: what binds a report to this room and configuration.
    pub fn task_id(&self) -> [u8; 32] {
        self.task_id
    }

    /// First four bytes of the task id, sent in clear in every message so a report for
    /// another room or configuration is refused by name rather than as a failed seal.
    pub fn task_tag(&self) -> [u8; 4] {
        let mut tag = [0u8; 4];
        tag.copy_from_slice(&self.task_id[..4]);
        tag
    }

    /// The VDAF application context (`ctx` of draft 18): the domain prefix and task id.
    pub(crate) fn ctx(&self) -> &[u8] {
        &self.ctx
    }

    /// The chunk length of the histogram's parallel-sum gadget (prio's optimum for the
    /// bucket count), for size reports.
    pub fn chunk_length(&self) -> usize {
        self.chunk_length
    }

    /// Number of histogram buckets.
    pub fn buckets(&self) -> usize {
        self.params.bucket_edges.len()
    }

    /// The reading rounded to the quantum, in watts, or an error above the bound; what a
    /// report carries and what a meter compares with a published spike threshold.
    pub fn quantise(&self, watts: u32) -> Result<u32, ReportError> {
        let q = self.params.quantum_watts;
        let quanta = watts / q + u32::from(watts % q >= q.div_ceil(2));
        let rounded = quanta.saturating_mul(q);
        if rounded > self.params.max_watts {
            return Err(ReportError::OutOfRange {
                watts,
                max: self.params.max_watts,
            });
        }
        Ok(rounded)
    }

    /// Index of the bucket that holds a quantised reading.
    pub fn bucket_of(&self, quantised_watts: u32) -> usize {
        // Edges start at 0 and rise strictly, so the partition point is at least 1.
        self.params
            .bucket_edges
            .partition_point(|&e| e <= quantised_watts)
            .saturating_sub(1)
    }

    /// A meter's local spike check: whether its own reading is at or above a threshold that
    /// the bot published from [`crate::IntervalResult::count_at_or_above`]. Agrees exactly
    /// with the published count because the threshold is a bucket edge.
    pub fn at_or_above(&self, reading_watts: u32, threshold_watts: u32) -> bool {
        match self.quantise(reading_watts) {
            Ok(q) => q >= threshold_watts,
            // Above the bound: no report was sent, but the reading is surely above.
            Err(_) => true,
        }
    }
}

/// Hashes every parameter, length-prefixed so no two configurations share an encoding.
fn task_id(p: &PrivateParams, chunk_length: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gridmuc-private-task-v1\0");
    // VDAF draft version and prio's algorithm ids for Prio3Sum and Prio3Histogram.
    h.update([18u8]);
    h.update(2u32.to_be_bytes());
    h.update(4u32.to_be_bytes());
    h.update((p.room.len() as u64).to_be_bytes());
    h.update(p.room.as_bytes());
    for v in [p.interval_secs, p.quantum_watts, p.max_watts, p.min_reports] {
        h.update(v.to_be_bytes());
    }
    h.update((chunk_length as u64).to_be_bytes());
    h.update((p.bucket_edges.len() as u64).to_be_bytes());
    for e in &p.bucket_edges {
        h.update(e.to_be_bytes());
    }
    h.update(p.leader.to_bytes());
    h.update(p.helper.to_bytes());
    h.finalize().into()
}
