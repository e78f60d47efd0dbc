//! Per-interval load statistics: what the bot posts and what the detectors read.

use crate::time::{Millis, Timestamp};
use crate::units::Watts;
use serde::{Deserialize, Serialize};

/// Statistics of one closed reporting interval over the per-nickname values in it.
///
/// Each nickname contributes one value (the mean of its readings in the interval), so a
/// meter that reports twice is not counted twice. Spread figures are in watts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalStats {
    /// Start of the interval.
    pub start: Timestamp,
    /// Length of the interval.
    pub length: Millis,
    /// Number of nicknames that reported.
    pub meters: usize,
    /// Neighbourhood net load: the sum of all values.
    pub total: Watts,
    /// Mean per meter.
    pub mean: f64,
    /// Median per meter.
    pub median: f64,
    /// 5th percentile per meter (linear interpolation, as numpy's default).
    pub p5: f64,
    /// 95th percentile per meter.
    pub p95: f64,
    /// Population standard deviation across meters.
    pub std_dev: f64,
    /// Smallest value (largest export).
    pub min: Watts,
    /// Largest value.
    pub max: Watts,
    /// 0 when first closed; raised each time late readings amend the interval afterwards.
    #[serde(default)]
    pub revision: u32,
    /// Nicknames flagged as stuck or at 0 W in this interval.
    #[serde(default)]
    pub suspect_meters: usize,
    /// Load those meters may hide from `total` (a typical reading each).
    #[serde(default)]
    pub hidden_load: Watts,
}

impl IntervalStats {
    /// Statistics of `values`, which this sorts in place (callers reuse the buffer).
    pub fn compute(start: Timestamp, length: Millis, values: &mut [i64]) -> IntervalStats {
        values.sort_unstable();
        let n = values.len();
        if n == 0 {
            return IntervalStats::empty(start, length);
        }
        let total: i64 = values.iter().sum();
        let mean = total as f64 / n as f64;
        let var = values
            .iter()
            .map(|&v| {
                let d = v as f64 - mean;
                d * d
            })
            .sum::<f64>()
            / n as f64;
        IntervalStats {
            start,
            length,
            meters: n,
            total: Watts(total),
            mean,
            median: quantile_sorted(values, 0.5),
            p5: quantile_sorted(values, 0.05),
            p95: quantile_sorted(values, 0.95),
            std_dev: var.sqrt(),
            min: Watts(values[0]),
            max: Watts(values[n - 1]),
            revision: 0,
            suspect_meters: 0,
            hidden_load: Watts::ZERO,
        }
    }

    /// An interval in which nobody reported: shown to operators, skipped by detectors.
    pub fn empty(start: Timestamp, length: Millis) -> IntervalStats {
        IntervalStats {
            start,
            length,
            meters: 0,
            total: Watts::ZERO,
            mean: 0.0,
            median: 0.0,
            p5: 0.0,
            p95: 0.0,
            std_dev: 0.0,
            min: Watts::ZERO,
            max: Watts::ZERO,
            revision: 0,
            suspect_meters: 0,
            hidden_load: Watts::ZERO,
        }
    }

    /// One line for the room and the live view.
    pub fn summary_line(&self) -> String {
        let hidden = self
            .hidden_note()
            .map(|n| format!(" · {n}"))
            .unwrap_or_default();
        format!(
            "{} · {} meters · total {} · mean {:.2} kW · median {:.2} kW · p95 {:.2} kW · sd {:.2} kW · max {}",
            self.start,
            self.meters,
            self.total,
            self.mean / 1000.0,
            self.median / 1000.0,
            self.p95 / 1000.0,
            self.std_dev / 1000.0,
            self.max
        ) + &hidden
    }

    /// `N meters stuck or at 0 W may hide about X` when any were flagged, for summaries.
    pub fn hidden_note(&self) -> Option<String> {
        (self.suspect_meters > 0).then(|| {
            format!(
                "{} meters stuck or at 0 W may hide about {}",
                self.suspect_meters, self.hidden_load
            )
        })
    }
}

/// Quantile `q` in [0, 1] of an ascending slice by linear interpolation between order statistics (Hyndman–Fan type 7).
pub fn quantile_sorted(sorted: &[i64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0] as f64,
        n => {
            let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let frac = h - lo as f64;
            sorted[lo] as f64 + frac * (sorted[hi] - sorted[lo]) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Textbook recomputation, deliberately different code from `compute`.
    fn naive(values: &[i64]) -> (i64, f64, f64, f64, f64, f64) {
        let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let q = |p: f64| {
            let pos = p * (n - 1.0);
            let i = pos as usize;
            if i + 1 >= v.len() {
                v[v.len() - 1]
            } else {
                v[i] + (pos - i as f64) * (v[i + 1] - v[i])
            }
        };
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        (values.iter().sum(), mean, median, q(0.05), q(0.95), sd)
    }

    #[test]
    fn known_values() {
        let mut v = vec![400, 100, 300, 200];
        let s = IntervalStats::compute(Timestamp(0), 60_000, &mut v);
        assert_eq!(s.total, Watts(1000));
        assert_eq!(s.meters, 4);
        assert_eq!(s.mean, 250.0);
        assert_eq!(s.median, 250.0);
        assert!((s.p95 - 385.0).abs() < 1e-9);
        assert!((s.p5 - 115.0).abs() < 1e-9);
        assert!((s.std_dev - 111.803_398_874_989_5).abs() < 1e-9);
        assert_eq!((s.min, s.max), (Watts(100), Watts(400)));
    }

    #[test]
    fn empty_interval_is_zeroes() {
        let s = IntervalStats::compute(Timestamp(0), 1, &mut []);
        assert_eq!(s.meters, 0);
        assert_eq!(s.total, Watts::ZERO);
    }

    proptest! {
        #[test]
        fn equals_naive_recomputation(mut v in prop::collection::vec(-25_000i64..25_000, 1..300)) {
            let (total, mean, median, p5, p95, sd) = naive(&v);
            let s = IntervalStats::compute(Timestamp(0), 60_000, &mut v);
            prop_assert_eq!(s.total.0, total);
            prop_assert!((s.mean - mean).abs() < 1e-6);
            prop_assert!((s.median - median).abs() < 1e-6);
            prop_assert!((s.p5 - p5).abs() < 1e-6);
            prop_assert!((s.p95 - p95).abs() < 1e-6);
            prop_assert!((s.std_dev - sd).abs() < 1e-6 * sd.max(1.0));
        }
    }
}
