//! In-process cost measurement for `gridmuc bench private --houses N`.
//!
//! The only place in this crate that reads a clock, and only to time the protocol: the
//! thread's CPU clock, so figures are CPU time even on a busy machine. Every role runs in
//! one thread on the exact production path (wire bytes in, wire bytes out), and every
//! interval's total and histogram are checked against what the simulated meters sent.
//! Build with `--release`; a debug build is about 20 times slower.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cpu_time::ThreadTime;
use gridmuc_botkey::BotSecretKey;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::aggregator::{Helper, Leader};
use crate::config::{PrivateConfig, PrivateParams};
use crate::error::BenchError;
use crate::messages::{AggregateShareMessage, CollectRequest, HelperRequest, HelperResponse};
use crate::report::report;

/// Reports per leader → helper batch: about 100 KB of base64, well under Prosody's default
/// 256 KiB stanza limit.
pub const BENCH_BATCH: usize = 150;

/// What private mode costs, per report and per interval, as measured by [`bench()`].
#[derive(Debug, Clone, PartialEq)]
pub struct BenchFigures {
    /// Meters (reports per interval).
    pub houses: u32,
    /// Intervals run.
    pub rounds: u32,
    /// Meter CPU per report: quantise, shard both VDAFs, seal both shares, encode.
    pub meter_us_per_report: f64,
    /// Leader CPU per report: decode, open, `verify_init`, batch for the helper, then
    /// finish with the helper's message and aggregate.
    pub leader_us_per_report: f64,
    /// Helper CPU per report: decode the batch, open, `verify_init`, combine (decides the
    /// proof), `verify_next`, aggregate, encode the answer.
    pub helper_us_per_report: f64,
    /// Leader CPU per interval for collection: request, decode the helper's share, unshard,
    /// statistics.
    pub leader_collect_us_per_interval: f64,
    /// Helper CPU per interval to release its aggregate share.
    pub helper_collect_us_per_interval: f64,
    /// Bytes of one report on the wire (binary; base64 in a stanza adds a third).
    pub report_bytes: usize,
    /// Leader → helper bytes per report (binary).
    pub helper_request_bytes_per_report: f64,
    /// Helper → leader bytes per report (binary).
    pub helper_response_bytes_per_report: f64,
    /// Bytes of the helper's aggregate share message, once per interval.
    pub aggregate_share_bytes: usize,
    /// Whether every interval's total and histogram equalled the meters' (the figures
    /// mean nothing otherwise).
    pub exact: bool,
}

impl BenchFigures {
    /// The line scripts read: `private: <c> µs per report at the client, <a> µs per
    /// aggregator per report, <b> bytes per report` (the slower aggregator's figure).
    pub fn summary_line(&self) -> String {
        format!(
            "private: {:.1} µs per report at the client, {:.1} µs per aggregator per report, {} bytes per report",
            self.meter_us_per_report,
            self.leader_us_per_report.max(self.helper_us_per_report),
            self.report_bytes
        )
    }
}

/// Runs `rounds` intervals of `houses` reports through a meter, the leader and the helper
/// in one thread, deterministically apart from prio's own sharding randomness, and returns
/// the CPU and byte figures. Readings are spread from standby to a few 20 kW peaks.
pub fn bench(houses: u32, rounds: u32) -> Result<BenchFigures, BenchError> {
    if houses < 2 {
        return Err(BenchError::TooFewHouses { houses });
    }
    let rounds = rounds.max(1);
    let mut rng = StdRng::seed_from_u64(0x9e1d);
    let leader_key = Arc::new(BotSecretKey::generate(&mut rng));
    let helper_key = Arc::new(BotSecretKey::generate(&mut rng));
    let mut params = PrivateParams::new(
        "bench@rooms.grid.example",
        5,
        leader_key.public(),
        helper_key.public(),
    );
    params.min_reports = params.min_reports.min(houses);
    let cfg = PrivateConfig::new(params)?;
    let vk = crate::VerifyKey::generate(&mut rng);
    let mut leader = Leader::new(cfg.clone(), leader_key, vk.clone())?;
    let mut helper = Helper::new(cfg.clone(), helper_key, vk)?;

    let (mut meter_t, mut leader_t, mut helper_t) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut leader_collect_t, mut helper_collect_t) = (Duration::ZERO, Duration::ZERO);
    let (mut report_bytes, mut request_bytes, mut response_bytes, mut share_bytes) =
        (0usize, 0usize, 0usize, 0usize);
    let mut exact = true;

    for round in 0..u64::from(rounds) {
        let readings: Vec<u32> = (0..houses)
            .map(|_| match rng.random_range(0..100u32) {
                0 => rng.random_range(15_000..=25_000),
                1..=10 => rng.random_range(2_000..8_000),
                _ => rng.random_range(30..1_500),
            })
            .collect();

        let start = ThreadTime::now();
        let mut wire = Vec::with_capacity(readings.len());
        for &w in &readings {
            wire.push(report(&cfg, w, round, &mut rng)?.to_bytes());
        }
        meter_t += start.elapsed();
        report_bytes = wire.first().map_or(0, Vec::len);

        let start = ThreadTime::now();
        for bytes in &wire {
            leader
                .handle_report(round, bytes)
                .map_err(BenchError::Refused)?;
        }
        let mut requests = Vec::new();
        while let Some(req) = leader.poll_helper_request(BENCH_BATCH) {
            requests.push(req.to_bytes());
        }
        leader_t += start.elapsed();

        for req in requests {
            request_bytes += req.len();
            let start = ThreadTime::now();
            let resp = helper
                .handle_request(&HelperRequest::from_bytes(&req)?)
                .to_bytes();
            helper_t += start.elapsed();
            response_bytes += resp.len();
            let start = ThreadTime::now();
            let summary = leader.handle_helper_response(&HelperResponse::from_bytes(&resp)?);
            leader_t += start.elapsed();
            black_box(summary);
        }

        let start = ThreadTime::now();
        let collect = leader.collect_request(round)?.to_bytes();
        leader_collect_t += start.elapsed();
        let start = ThreadTime::now();
        let share = helper
            .handle_collect(&CollectRequest::from_bytes(&collect)?)?
            .to_bytes();
        helper_collect_t += start.elapsed();
        share_bytes = share.len();
        let start = ThreadTime::now();
        let result = leader.finish_collect(&AggregateShareMessage::from_bytes(&share)?)?;
        leader_collect_t += start.elapsed();

        let mut want_hist = vec![0u64; cfg.buckets()];
        let mut want_total = 0u64;
        for &w in &readings {
            let q = cfg.quantise(w)?;
            want_total += u64::from(q);
            want_hist[cfg.bucket_of(q)] += 1;
        }
        exact &= result.total_watts == want_total
            && result.histogram == want_hist
            && result.reports == u64::from(houses);
    }

    let reports = f64::from(houses) * f64::from(rounds);
    let us = |d: Duration, n: f64| d.as_secs_f64() * 1e6 / n;
    Ok(BenchFigures {
        houses,
        rounds,
        meter_us_per_report: us(meter_t, reports),
        leader_us_per_report: us(leader_t, reports),
        helper_us_per_report: us(helper_t, reports),
        leader_collect_us_per_interval: us(leader_collect_t, f64::from(rounds)),
        helper_collect_us_per_interval: us(helper_collect_t, f64::from(rounds)),
        report_bytes,
        helper_request_bytes_per_report: request_bytes as f64 / reports,
        helper_response_bytes_per_report: response_bytes as f64 / reports,
        aggregate_share_bytes: share_bytes,
        exact,
    })
}
