//! A hostile meter for tests, here and in the agents' harness: it shards a reading
//! honestly, then tampers with its shares and seals them as an honest meter would, so the
//! aggregators receive a well-formed, authentic report that only Prio3's checks can refuse.
//! Compiled only for tests and with the `hostile` feature; nothing ships it.

use prio::codec::Encode as _;
use prio::field::{Field64, Field128, FieldElement as _};
use prio::vdaf::Client as _;
use prio::vdaf::prio3::Prio3InputShare;
use prio::vdaf::xof::{Xof as _, XofTurboShake128};
use rand::CryptoRng;

use crate::config::PrivateConfig;
use crate::report::{Report, ReportId, seal_report};

/// The lies a meter can tell that the validity proofs must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// A sum share pushed far above the bound (hundreds of megawatts if unchecked).
    AboveBound,
    /// A second histogram bucket set, with the joint randomness fixed so only the proof
    /// can tell.
    TwoBuckets,
    /// A tampered share whose joint randomness was not fixed up.
    TamperedProof,
}

/// A report for `watts` in `interval` with `forgery` applied, sealed like an honest one.
pub fn forged_report<R: CryptoRng + ?Sized>(
    cfg: &PrivateConfig,
    forgery: Forgery,
    watts: u32,
    interval: u64,
    rng: &mut R,
) -> Report {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let nonce = id;
    malicious_report(cfg, watts, interval, ReportId(id), rng, |s| match forgery {
        Forgery::AboveBound => {
            let m = leader_sum_measurement(s);
            let top = m.len() - 1;
            m[top] += Field64::from(1_000u64);
        }
        Forgery::TwoBuckets => {
            let last = cfg.buckets() - 1;
            leader_hist_measurement(s)[last] += Field128::one();
            s.parts[0] = leader_part(cfg, &s.hist[0], &nonce);
        }
        Forgery::TamperedProof => {
            let last = cfg.buckets() - 1;
            leader_hist_measurement(s)[last] += Field128::one();
        }
    })
}

pub(crate) type SumIn = Prio3InputShare<Field64, 32>;
pub(crate) type HistIn = Prio3InputShare<Field128, 32>;

/// What a malicious meter may change after sharding honestly: its two leader input
/// shares and the public share's joint-randomness parts.
pub(crate) struct Shares {
    pub(crate) sum: Vec<SumIn>,
    pub(crate) hist: Vec<HistIn>,
    pub(crate) parts: [[u8; 32]; 2],
}

/// Shards `watts` honestly, lets `tamper` change the shares, then encodes and seals them
/// exactly as an honest meter would: the aggregators see a well-formed, authentic report.
pub(crate) fn malicious_report<R: CryptoRng + ?Sized>(
    cfg: &PrivateConfig,
    watts: u32,
    interval: u64,
    id: ReportId,
    rng: &mut R,
    tamper: impl FnOnce(&mut Shares),
) -> Report {
    let q = cfg.quantise(watts).expect("in range");
    let quanta = u64::from(q / cfg.params().quantum_watts);
    let bucket = cfg.bucket_of(q);
    let (sum_pub, sum) = cfg.sum.shard(cfg.ctx(), &quanta, &id.0).expect("shard");
    let (hist_pub, hist) = cfg.hist.shard(cfg.ctx(), &bucket, &id.0).expect("shard");
    assert!(sum_pub.get_encoded().expect("encodes").is_empty());
    let public = hist_pub.get_encoded().expect("encodes");
    let mut parts = [[0u8; 32]; 2];
    parts[0].copy_from_slice(&public[..32]);
    parts[1].copy_from_slice(&public[32..]);
    let mut shares = Shares { sum, hist, parts };
    tamper(&mut shares);
    let public: Vec<u8> = shares.parts.concat();
    let mut plains = [Vec::new(), Vec::new()];
    for (i, plain) in plains.iter_mut().enumerate() {
        shares.sum[i].encode(plain).expect("encodes");
        shares.hist[i].encode(plain).expect("encodes");
    }
    seal_report(cfg, interval, id, public, &plains[0], &plains[1], rng)
}

/// The leader's joint-randomness part for its (possibly tampered) histogram share, as
/// draft 18 derives it: XOF(blind, dst(usage 7), ctx; agg id 0, nonce, measurement share).
pub(crate) fn leader_part(cfg: &PrivateConfig, share: &HistIn, nonce: &[u8; 16]) -> [u8; 32] {
    let Prio3InputShare::Leader {
        measurement_share,
        joint_rand_blind: Some(blind),
        ..
    } = share
    else {
        panic!("expected the leader's histogram share with a blind");
    };
    // [draft version, class, algorithm id 4 (Prio3Histogram), usage 7 (joint rand part)]
    let dst = [18u8, 0, 0, 0, 0, 4, 0, 7];
    let mut xof = XofTurboShake128::init(blind.as_ref(), &[&dst, cfg.ctx()]);
    xof.update(&[0]);
    xof.update(nonce);
    for x in measurement_share {
        xof.update(&x.get_encoded().expect("encodes"));
    }
    *xof.into_seed().as_ref()
}

pub(crate) fn leader_hist_measurement(shares: &mut Shares) -> &mut Vec<Field128> {
    match &mut shares.hist[0] {
        Prio3InputShare::Leader {
            measurement_share, ..
        } => measurement_share,
        Prio3InputShare::Helper { .. } => panic!("share 0 is the leader's"),
    }
}

pub(crate) fn leader_sum_measurement(shares: &mut Shares) -> &mut Vec<Field64> {
    match &mut shares.sum[0] {
        Prio3InputShare::Leader {
            measurement_share, ..
        } => measurement_share,
        Prio3InputShare::Helper { .. } => panic!("share 0 is the leader's"),
    }
}
