//! What the collector learns about one interval, and the statistics estimated from it.

use crate::config::PrivateConfig;

/// The aggregate of one interval: all that the leader, or anyone, learns from private mode.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalResult {
    /// The interval number.
    pub interval: u64,
    /// Valid reports aggregated (the number of active meters, if each sent one).
    pub reports: u64,
    /// Exact sum of the quantised readings, in watts.
    pub total_watts: u64,
    /// Reports per bucket; bucket `i` spans `[bucket_edges[i], bucket_edges[i+1])`.
    pub histogram: Vec<u64>,
    /// Lower edge of each bucket in watts (from the configuration).
    pub bucket_edges: Vec<u32>,
    /// Upper end of the last bucket: the configured bound.
    pub max_watts: u32,
    /// Exact mean in watts (`total_watts / reports`).
    pub mean: f64,
    /// Median estimated from the histogram (linear within its bucket).
    pub median_estimate: f64,
    /// 95th percentile estimated from the histogram (linear within its bucket).
    pub p95_estimate: f64,
}

/// How many reports were at or above a threshold: what the bot announces for house spikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpikeCount {
    /// The threshold actually counted against: the requested one rounded up to a bucket
    /// edge, so each meter can check itself with [`PrivateConfig::at_or_above`].
    pub threshold_watts: u32,
    /// Reports whose quantised reading was at or above it.
    pub reports: u64,
}

impl IntervalResult {
    /// Builds the result from unsharded values (sum in quanta, counts per bucket).
    pub(crate) fn new(
        cfg: &PrivateConfig,
        interval: u64,
        reports: u64,
        total_quanta: u64,
        histogram: &[u128],
    ) -> Self {
        let p = cfg.params();
        let total_watts = total_quanta.saturating_mul(u64::from(p.quantum_watts));
        let mut r = IntervalResult {
            interval,
            reports,
            total_watts,
            histogram: histogram
                .iter()
                .map(|&c| u64::try_from(c).unwrap_or(u64::MAX))
                .collect(),
            bucket_edges: p.bucket_edges.clone(),
            max_watts: p.max_watts,
            mean: if reports == 0 {
                0.0
            } else {
                total_watts as f64 / reports as f64
            },
            median_estimate: 0.0,
            p95_estimate: 0.0,
        };
        r.median_estimate = r.quantile_estimate(0.5);
        r.p95_estimate = r.quantile_estimate(0.95);
        r
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) estimated from the histogram: find the bucket holding
    /// rank `q·n`, interpolate linearly inside it. Its error is at most one bucket's width
    /// (about ±11 % of the value with the default log-spaced buckets).
    pub fn quantile_estimate(&self, q: f64) -> f64 {
        let n: u64 = self.histogram.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let target = q.clamp(0.0, 1.0) * n as f64;
        let mut below = 0.0;
        for (i, &count) in self.histogram.iter().enumerate() {
            let count = count as f64;
            if count > 0.0 && below + count >= target {
                let lo = f64::from(self.bucket_edges.get(i).copied().unwrap_or(0));
                let hi = f64::from(
                    self.bucket_edges
                        .get(i + 1)
                        .copied()
                        .unwrap_or(self.max_watts),
                );
                let frac = ((target - below) / count).clamp(0.0, 1.0);
                return lo + (hi - lo) * frac;
            }
            below += count;
        }
        f64::from(self.max_watts)
    }

    /// Spread as the interquartile range (p75 − p25) estimated from the histogram; robust
    /// to the few houses with a spike.
    pub fn spread_estimate(&self) -> f64 {
        self.quantile_estimate(0.75) - self.quantile_estimate(0.25)
    }

    /// Reports at or above `watts`, with the threshold rounded up to the next bucket edge
    /// (exact there); `None` above the last edge, where the histogram cannot tell.
    ///
    /// For "houses far above their peers" the bot picks e.g. `max(k · median, floor)`,
    /// publishes the returned threshold and count, and each meter compares its own reading.
    pub fn count_at_or_above(&self, watts: u32) -> Option<SpikeCount> {
        let first = self.bucket_edges.iter().position(|&e| e >= watts)?;
        Some(SpikeCount {
            threshold_watts: self.bucket_edges[first],
            reports: self.histogram.iter().skip(first).sum(),
        })
    }
}
