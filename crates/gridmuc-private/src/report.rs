//! The meter's side: one report per interval, and its wire form.

use core::fmt;

use prio::codec::Encode as _;
use prio::vdaf::Client as _;
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::config::{DOMAIN, PrivateConfig};
use crate::error::{DecodeError, ReportError};
use crate::wire::{Kind, Reader, Writer};

/// A report's random 16-byte id: the VDAF nonce and the key for replay refusal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportId(pub [u8; 16]);

impl fmt::Debug for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReportId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Which aggregator a sealed share is for; part of the sealed share's associated data, so
/// a share cannot be presented to the other aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Leader = 0,
    Helper = 1,
}

/// One meter's contribution for one interval: Prio3 public share plus one sealed input share
/// per aggregator. Neither aggregator alone learns the reading from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    task_tag: [u8; 4],
    interval: u64,
    id: ReportId,
    public_share: Vec<u8>,
    leader_share: Vec<u8>,
    helper_share: Vec<u8>,
}

/// Shards a reading for `interval` into a [`Report`]: quantise, check the bound, shard the
/// quantised value (Prio3Sum) and its bucket (Prio3Histogram) under a fresh report id, and
/// seal each aggregator's input shares to its key (HPKE, RFC 9180).
///
/// `rng` draws the report id and the HPKE ephemeral keys. prio 0.18 draws the sharding
/// randomness itself, from its thread-local CSPRNG (`rand::rng()`, seeded by the OS); its
/// public API takes no RNG, so that is the one place this crate does not use the caller's.
pub fn report<R: CryptoRng + ?Sized>(
    cfg: &PrivateConfig,
    reading_watts: u32,
    interval: u64,
    rng: &mut R,
) -> Result<Report, ReportError> {
    let quantised = cfg.quantise(reading_watts)?;
    let quanta = u64::from(quantised / cfg.params().quantum_watts);
    let bucket = cfg.bucket_of(quantised);
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let id = ReportId(id);
    let (sum_public, sum_inputs) = cfg
        .sum
        .shard(cfg.ctx(), &quanta, &id.0)
        .map_err(ReportError::Shard)?;
    let (hist_public, hist_inputs) = cfg
        .hist
        .shard(cfg.ctx(), &bucket, &id.0)
        .map_err(ReportError::Shard)?;
    let mut public_share = Vec::new();
    sum_public
        .encode(&mut public_share)
        .map_err(ReportError::Encode)?;
    hist_public
        .encode(&mut public_share)
        .map_err(ReportError::Encode)?;
    let mut plains = [Zeroizing::new(Vec::new()), Zeroizing::new(Vec::new())];
    for (i, plain) in plains.iter_mut().enumerate() {
        // The two plaintexts together reveal the reading: wiped when dropped.
        let (Some(s), Some(h)) = (sum_inputs.get(i), hist_inputs.get(i)) else {
            return Err(ReportError::Shard(prio::vdaf::VdafError::Uncategorized(
                "prio returned fewer than two input shares".into(),
            )));
        };
        s.encode(plain).map_err(ReportError::Encode)?;
        h.encode(plain).map_err(ReportError::Encode)?;
    }
    let [leader_plain, helper_plain] = &plains;
    Ok(seal_report(
        cfg,
        interval,
        id,
        public_share,
        leader_plain,
        helper_plain,
        rng,
    ))
}

/// Seals each aggregator's encoded input shares to its key and assembles the report; also
/// what the tests' malicious meter uses after tampering with honest shares.
pub(crate) fn seal_report<R: CryptoRng + ?Sized>(
    cfg: &PrivateConfig,
    interval: u64,
    id: ReportId,
    public_share: Vec<u8>,
    leader_plain: &[u8],
    helper_plain: &[u8],
    rng: &mut R,
) -> Report {
    let aad = share_aad(cfg, Role::Leader, interval, &id, &public_share);
    let leader_share = cfg.params().leader.seal(&aad, leader_plain, rng);
    let aad = share_aad(cfg, Role::Helper, interval, &id, &public_share);
    let helper_share = cfg.params().helper.seal(&aad, helper_plain, rng);
    Report {
        task_tag: cfg.task_tag(),
        interval,
        id,
        public_share,
        leader_share,
        helper_share,
    }
}

/// Associated data of a sealed input share, as DAP's `InputShareAad`: domain, role, task
/// id, interval, report id and public share. Opening fails if any of them was changed.
pub(crate) fn share_aad(
    cfg: &PrivateConfig,
    role: Role,
    interval: u64,
    id: &ReportId,
    public_share: &[u8],
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DOMAIN.len() + 1 + 32 + 8 + 16 + public_share.len());
    aad.extend_from_slice(DOMAIN);
    aad.push(role as u8);
    aad.extend_from_slice(&cfg.task_id());
    aad.extend_from_slice(&interval.to_be_bytes());
    aad.extend_from_slice(&id.0);
    aad.extend_from_slice(public_share);
    aad
}

impl Report {
    /// The interval number the meter reported for (the agents derive it from their clock).
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// The report id (VDAF nonce).
    pub fn id(&self) -> ReportId {
        self.id
    }

    /// The task tag it was made for, to tell a misconfigured meter from a tampered report.
    pub fn task_tag(&self) -> [u8; 4] {
        self.task_tag
    }

    /// Encoded Prio3 public shares (Sum's, empty, then Histogram's), sent in clear.
    pub fn public_share(&self) -> &[u8] {
        &self.public_share
    }

    /// The leader's input shares, sealed to the leader.
    pub fn leader_share(&self) -> &[u8] {
        &self.leader_share
    }

    /// The helper's input shares, sealed to the helper; the leader forwards them unopened.
    pub fn helper_share(&self) -> &[u8] {
        &self.helper_share
    }

    /// Wire form, version 1: `01 01 tag[4] interval[8] id[16]` then the public share, the
    /// leader's and the helper's sealed shares, each with a u16 length prefix.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = 8
            + 16
            + 6
            + self.public_share.len()
            + self.leader_share.len()
            + self.helper_share.len();
        let mut w = Writer::new(Kind::Report, self.task_tag, len);
        w.u64(self.interval);
        w.raw(&self.id.0);
        w.field(&self.public_share);
        w.field(&self.leader_share);
        w.field(&self.helper_share);
        w.0
    }

    /// Parses [`Report::to_bytes`] output; any other input is an error, never a panic.
    /// Share lengths are checked against the configuration when an aggregator prepares it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, task_tag) = Reader::open(bytes, Kind::Report)?;
        let interval = r.u64()?;
        let id = ReportId(r.array()?);
        let public_share = r.field()?;
        let leader_share = r.field()?;
        let helper_share = r.field()?;
        r.finish()?;
        Ok(Report {
            task_tag,
            interval,
            id,
            public_share,
            leader_share,
            helper_share,
        })
    }
}
