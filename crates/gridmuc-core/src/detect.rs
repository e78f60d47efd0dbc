//! Detectors: each looks at one closed interval and says whether its condition holds now.
//!
//! Detectors only report *conditions*; turning conditions into a few alerts (dedup,
//! cooldown, escalation) is the job of [`crate::policy`].

use crate::alert::{AlertKind, Severity};
use crate::nick::RoomNick;
use crate::stats::{IntervalStats, quantile_sorted};
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// A condition that holds in the interval just closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which detector.
    pub kind: AlertKind,
    /// How bad right now.
    pub severity: Severity,
    /// The occupant concerned, for per-house findings.
    pub nick: Option<RoomNick>,
    /// Observed value.
    pub value: Watts,
    /// Threshold or baseline it was compared with.
    pub threshold: Watts,
}

/// Transformer-overload settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// Transformer rating: above it is critical.
    pub rating: Watts,
    /// Fraction of the rating above which a warning is raised.
    pub warn_fraction: f64,
    /// Relative hysteresis: a level holds until load falls this fraction below its threshold.
    pub hysteresis: f64,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            rating: Watts(400_000),
            warn_fraction: 0.9,
            hysteresis: 0.05,
        }
    }
}

/// Neighbourhood load against the transformer rating, with hysteresis so a load hovering at the limit does not flap.
#[derive(Clone, Debug)]
pub struct OverloadDetector {
    config: OverloadConfig,
    level: Option<Severity>,
}

impl OverloadDetector {
    /// A detector with nothing active.
    pub fn new(config: OverloadConfig) -> Self {
        OverloadDetector {
            config,
            level: None,
        }
    }

    /// Updates the level from one interval's total.
    pub fn observe(&mut self, stats: &IntervalStats) -> Option<Finding> {
        self.observe_total(stats.total)
    }

    /// Updates the level from a bare neighbourhood total: masked mode knows nothing else.
    pub fn observe_total(&mut self, total_watts: Watts) -> Option<Finding> {
        let c = &self.config;
        let rating = c.rating.as_f64();
        let warn = rating * c.warn_fraction;
        let total = total_watts.as_f64();
        let keep = 1.0 - c.hysteresis;
        let critical =
            total > rating || (self.level == Some(Severity::Critical) && total > rating * keep);
        let warning = total > warn || (self.level.is_some() && total > warn * keep);
        self.level = if critical {
            Some(Severity::Critical)
        } else if warning {
            Some(Severity::Warning)
        } else {
            None
        };
        self.level.map(|severity| Finding {
            kind: AlertKind::Overload,
            severity,
            nick: None,
            value: total_watts,
            threshold: c.rating,
        })
    }
}

/// Aggregate-spike settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpikeConfig {
    /// EWMA weight of the newest interval in the baseline.
    pub alpha: f64,
    /// One-sided false-alarm probability per interval under a normal model; sets the z threshold.
    pub false_alarm_rate: f64,
    /// Intervals to learn the baseline before any finding.
    pub warmup: u32,
    /// Minimum rise above baseline worth reporting, whatever the noise.
    pub min_rise: Watts,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            alpha: 0.1,
            false_alarm_rate: 1e-5,
            warmup: 10,
            min_rise: Watts(20_000),
        }
    }
}

/// Neighbourhood total far above its own recent level (robust EWMA baseline and EWMA absolute deviation).
#[derive(Clone, Debug)]
pub struct SpikeDetector {
    config: SpikeConfig,
    z: f64,
    mean: f64,
    abs_dev: f64,
    seen: u32,
}

/// Mean absolute deviation of a normal variable times this is its standard deviation.
const MEAN_ABS_DEV_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

impl SpikeDetector {
    /// A detector that first learns `warmup` intervals.
    pub fn new(config: SpikeConfig) -> Self {
        let p = config.false_alarm_rate.clamp(1e-12, 0.5);
        let z = Normal::standard().inverse_cdf(1.0 - p);
        SpikeDetector {
            config,
            z,
            mean: 0.0,
            abs_dev: 0.0,
            seen: 0,
        }
    }

    /// The z threshold derived from the false-alarm rate.
    pub fn z_threshold(&self) -> f64 {
        self.z
    }

    /// Scores one interval's total and then updates the baseline.
    pub fn observe(&mut self, stats: &IntervalStats) -> Option<Finding> {
        self.observe_total(stats.total)
    }

    /// Scores a bare neighbourhood total (masked mode) and then updates the baseline.
    pub fn observe_total(&mut self, total: Watts) -> Option<Finding> {
        let x = total.as_f64();
        if self.seen == 0 {
            self.mean = x;
            self.seen = 1;
            return None;
        }
        let rise = x - self.mean;
        let sigma = (self.abs_dev * MEAN_ABS_DEV_TO_SIGMA).max(1.0);
        let score = rise / sigma;
        let firing = self.seen > self.config.warmup
            && score > self.z
            && rise > self.config.min_rise.as_f64();
        // While firing, learn slowly so a spike is not absorbed but a lasting new level eventually is.
        let alpha = if firing {
            self.config.alpha / 10.0
        } else {
            self.config.alpha
        };
        self.abs_dev += alpha * ((x - self.mean).abs() - self.abs_dev);
        self.mean += alpha * (x - self.mean);
        self.seen = self.seen.saturating_add(1);
        firing.then(|| Finding {
            kind: AlertKind::AggregateSpike,
            severity: if score > 2.0 * self.z {
                Severity::Critical
            } else {
                Severity::Warning
            },
            nick: None,
            value: total,
            threshold: Watts((x - rise).round() as i64),
        })
    }
}

/// Per-house outlier settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Robust z (median/MAD) above which an occupant is an outlier.
    pub z: f64,
    /// Minimum excess over the median, so quiet evenings with tiny MAD do not flag a kettle.
    pub min_excess: Watts,
    /// Fewest occupants for peer comparison to mean anything.
    pub min_peers: usize,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            z: 8.0,
            min_excess: Watts(8_000),
            min_peers: 5,
        }
    }
}

/// MAD of a normal variable times this is its standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;

/// One anonymous occupant far above its peers in the same interval (median and MAD, so a few outliers cannot hide each other).
#[derive(Clone, Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    scratch: Vec<i64>,
}

impl OutlierDetector {
    /// A stateless-across-intervals detector (state is only a reusable buffer).
    pub fn new(config: OutlierConfig) -> Self {
        OutlierDetector {
            config,
            scratch: Vec::new(),
        }
    }

    /// Findings for every occupant far above the interval's median.
    pub fn observe(&mut self, values: &[(RoomNick, Watts)], median: f64, out: &mut Vec<Finding>) {
        if values.len() < self.config.min_peers {
            return;
        }
        self.scratch.clear();
        self.scratch.extend(
            values
                .iter()
                .map(|(_, w)| (w.as_f64() - median).abs().round() as i64),
        );
        self.scratch.sort_unstable();
        let sigma = (quantile_sorted(&self.scratch, 0.5) * MAD_TO_SIGMA).max(50.0);
        let min_excess = self.config.min_excess.as_f64();
        for (nick, w) in values {
            let excess = w.as_f64() - median;
            let z = excess / sigma;
            if z > self.config.z && excess > min_excess {
                out.push(Finding {
                    kind: AlertKind::HouseSpike,
                    severity: if excess > 2.0 * min_excess {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    nick: Some(nick.clone()),
                    value: *w,
                    threshold: Watts(median.round() as i64),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn stats(total: i64) -> IntervalStats {
        let mut s = IntervalStats::empty(Timestamp(0), 60_000);
        s.total = Watts(total);
        s.meters = 1;
        s
    }

    #[test]
    fn overload_levels_with_hysteresis() {
        let mut d = OverloadDetector::new(OverloadConfig {
            rating: Watts(100_000),
            warn_fraction: 0.9,
            hysteresis: 0.05,
        });
        let sev = |d: &mut OverloadDetector, t| d.observe(&stats(t)).map(|f| f.severity);
        assert_eq!(sev(&mut d, 80_000), None);
        assert_eq!(sev(&mut d, 91_000), Some(Severity::Warning));
        assert_eq!(sev(&mut d, 101_000), Some(Severity::Critical));
        // 96 kW is under the rating but within 5 % hysteresis: still critical.
        assert_eq!(sev(&mut d, 96_000), Some(Severity::Critical));
        assert_eq!(sev(&mut d, 94_000), Some(Severity::Warning));
        // 86 kW is under the warning line but within hysteresis of it.
        assert_eq!(sev(&mut d, 86_000), Some(Severity::Warning));
        assert_eq!(sev(&mut d, 85_000), None);
        assert_eq!(sev(&mut d, 89_000), None);
    }

    #[test]
    fn spike_fires_on_jump_not_on_noise() {
        let mut d = SpikeDetector::new(SpikeConfig::default());
        let mut fired = 0;
        for i in 0..200 {
            // ±3 kW of deterministic wobble around 100 kW.
            let t = 100_000 + ((i * 7919) % 6000) - 3000;
            fired += d.observe(&stats(t)).is_some() as u32;
        }
        assert_eq!(fired, 0, "steady load must stay quiet");
        let f = d
            .observe(&stats(180_000))
            .expect("an 80 kW jump is a spike");
        assert_eq!(f.kind, AlertKind::AggregateSpike);
        assert!(f.threshold.0 > 95_000 && f.threshold.0 < 105_000, "{f:?}");
    }

    #[test]
    fn spike_respects_warmup_and_min_rise() {
        let mut d = SpikeDetector::new(SpikeConfig {
            warmup: 5,
            ..SpikeConfig::default()
        });
        for _ in 0..4 {
            assert!(d.observe(&stats(50_000)).is_none());
        }
        assert!(d.observe(&stats(500_000)).is_none(), "still warming up");
        let mut d = SpikeDetector::new(SpikeConfig::default());
        for _ in 0..50 {
            d.observe(&stats(50_000));
        }
        assert!(
            d.observe(&stats(60_000)).is_none(),
            "10 kW is below min_rise"
        );
        assert!(d.observe(&stats(90_000)).is_some());
    }

    #[test]
    fn outlier_flags_only_the_outlier() {
        let mut values: Vec<(RoomNick, Watts)> = (0..20)
            .map(|i| {
                (
                    RoomNick::new(format!("house-{i}")).unwrap(),
                    Watts(800 + i * 40),
                )
            })
            .collect();
        values.push((RoomNick::new("hot").unwrap(), Watts(19_000)));
        let mut sorted: Vec<i64> = values.iter().map(|(_, w)| w.0).collect();
        sorted.sort_unstable();
        let median = quantile_sorted(&sorted, 0.5);
        let mut out = Vec::new();
        OutlierDetector::new(OutlierConfig::default()).observe(&values, median, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nick.as_ref().unwrap().as_str(), "hot");
        assert_eq!(out[0].severity, Severity::Critical);
    }

    #[test]
    fn outlier_needs_peers() {
        let values = vec![
            (RoomNick::new("a").unwrap(), Watts(100)),
            (RoomNick::new("b").unwrap(), Watts(20_000)),
        ];
        let mut out = Vec::new();
        OutlierDetector::new(OutlierConfig::default()).observe(&values, 10_050.0, &mut out);
        assert!(out.is_empty());
    }
}
