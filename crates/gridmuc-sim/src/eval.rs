//! Per-detector scoring against ground truth: precision, recall, F1, median detection delay and a
//! NAB-style score (Numenta Anomaly Benchmark, standard profile: TP weight 1, FP weight 0.11,
//! FN weight 1, scaled sigmoid so earlier detection inside a window scores more).
//!
//! Truth windows per detector:
//! - `overload`: runs of intervals whose *physical* load exceeds the warning line
//!   (`warn_fraction × rating`), merged across gaps shorter than the alert policy's `clear_after`;
//! - `aggregate-spike`: injected neighbourhood overloads and coordinated EV surges;
//! - `house-spike`: injected single-house spikes, matched to the right house.
//!
//! Each window runs from the event start to its end plus two intervals of slack (the bot can only
//! speak once an interval closes). "Chance" is a detector that raises the same number of alerts
//! at uniformly random times (and, for house spikes, random houses).

use crate::anomaly::AnomalyKind;
use crate::runner::SimOutput;
use gridmuc_core::AlertKind;
use gridmuc_core::alert::AlertState;
use gridmuc_core::time::MINUTE;

/// NAB standard profile weights.
pub const NAB_TP: f64 = 1.0;
/// NAB standard profile: false positives cost 0.11.
pub const NAB_FP: f64 = 0.11;
/// NAB standard profile: a missed window costs 1.
pub const NAB_FN: f64 = 1.0;

/// NAB's scaled sigmoid: +1 towards the start of a window, 0 at its end, → −1 long after it.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// How one detector did on one run.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorScore {
    /// Detector (alert kind wire name).
    pub detector: String,
    /// Ground-truth windows.
    pub windows: usize,
    /// Windows with at least one alert inside.
    pub detected: usize,
    /// Raised alerts of this kind.
    pub alerts: usize,
    /// Raised alerts that fell inside a matching window.
    pub true_alerts: usize,
    /// `true_alerts / alerts`.
    pub precision: f64,
    /// `detected / windows`.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Median of (alert emitted − event start) over detected windows, in seconds.
    pub median_delay_s: Option<f64>,
    /// Raw NAB score (sum of weighted detections minus misses).
    pub nab_raw: f64,
    /// NAB normalised: 0 = never alerting, 100 = perfect.
    pub nab: Option<f64>,
    /// Expected F1 of a random detector with the same number of alerts.
    pub chance_f1: f64,
}

impl DetectorScore {
    /// Better than chance on both F1 and NAB (a run without windows cannot say).
    pub fn above_chance(&self) -> Option<bool> {
        (self.windows > 0).then(|| self.f1 > self.chance_f1 && self.nab.is_some_and(|n| n > 0.0))
    }
}

/// A ground-truth window in virtual milliseconds, optionally tied to one house.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: i64,
    end: i64,
    house: Option<usize>,
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

fn overload_windows(out: &SimOutput, clear_after: u32) -> Vec<Window> {
    let line = out.rating_w as f64 * out.warn_fraction;
    let gap = i64::from(clear_after.max(1)) * out.interval;
    let mut windows: Vec<Window> = Vec::new();
    for r in out
        .intervals
        .iter()
        .filter(|r| r.true_total_w as f64 > line)
    {
        let (s, e) = (r.start.0, r.start.0 + out.interval);
        match windows.last_mut() {
            Some(w) if s <= w.end + gap => w.end = e,
            _ => windows.push(Window {
                start: s,
                end: e,
                house: None,
            }),
        }
    }
    windows
}

fn label_windows(out: &SimOutput, kinds: &[AnomalyKind]) -> Vec<Window> {
    let mut windows = Vec::new();
    for l in out.labels.iter().filter(|l| kinds.contains(&l.kind)) {
        let start = out.start.0 + i64::from(l.start_min) * MINUTE;
        let end = out.start.0 + i64::from(l.end_min()) * MINUTE;
        if kinds == [AnomalyKind::HouseSpike] {
            windows.extend(l.houses.iter().map(|h| Window {
                start,
                end,
                house: Some(*h),
            }));
        } else {
            windows.push(Window {
                start,
                end,
                house: None,
            });
        }
    }
    windows
}

/// Scores every detector of the aggregator on a finished run.
pub fn score_detectors(out: &SimOutput, clear_after: u32) -> Vec<DetectorScore> {
    let slack = 2 * out.interval;
    let span = (out.intervals.len() as f64 * out.interval as f64).max(1.0);
    [
        (
            AlertKind::Overload,
            overload_windows(out, clear_after),
            1usize,
        ),
        (
            AlertKind::AggregateSpike,
            label_windows(
                out,
                &[AnomalyKind::NeighbourhoodOverload, AnomalyKind::EvSurge],
            ),
            1,
        ),
        (
            AlertKind::HouseSpike,
            label_windows(out, &[AnomalyKind::HouseSpike]),
            out.houses.max(1),
        ),
    ]
    .into_iter()
    .map(|(kind, mut windows, subjects)| {
        for w in &mut windows {
            w.end += slack;
        }
        score_one(out, kind, &windows, span * subjects as f64)
    })
    .collect()
}

fn score_one(out: &SimOutput, kind: AlertKind, windows: &[Window], space: f64) -> DetectorScore {
    let raised: Vec<_> = out
        .alerts
        .iter()
        .filter(|a| a.kind == kind && a.state == AlertState::Raised)
        .collect();
    let mut first_hit: Vec<Option<i64>> = vec![None; windows.len()];
    let mut nab_raw = 0.0;
    let mut true_alerts = 0;
    for a in &raised {
        let t = a.at.0;
        let matches = |w: &Window| w.house.is_none_or(|h| a.house == Some(h));
        match windows
            .iter()
            .position(|w| matches(w) && (w.start..w.end).contains(&t))
        {
            Some(i) => {
                true_alerts += 1;
                if first_hit[i].is_none() {
                    let w = windows[i];
                    let position = -((w.end - t) as f64) / (w.end - w.start).max(1) as f64;
                    nab_raw += NAB_TP * scaled_sigmoid(position);
                    first_hit[i] = Some(a.emitted.0 - w.start);
                }
            }
            None => {
                // Penalty relative to the latest matching window that ended before this alert.
                let before = windows
                    .iter()
                    .filter(|w| matches(w) && w.end <= t)
                    .max_by_key(|w| w.end);
                nab_raw += match before {
                    Some(w) => {
                        let position = (t - w.end) as f64 / (w.end - w.start).max(1) as f64;
                        NAB_FP * scaled_sigmoid(position)
                    }
                    None => -NAB_FP,
                };
            }
        }
    }
    let detected = first_hit.iter().filter(|h| h.is_some()).count();
    nab_raw -= NAB_FN * (windows.len() - detected) as f64;
    let null = -NAB_FN * windows.len() as f64;
    let perfect = windows.len() as f64 * NAB_TP * scaled_sigmoid(-1.0);
    let nab = (!windows.is_empty()).then(|| 100.0 * (nab_raw - null) / (perfect - null));
    let mut delays: Vec<f64> = first_hit
        .iter()
        .flatten()
        .map(|d| *d as f64 / 1000.0)
        .collect();
    delays.sort_by(f64::total_cmp);
    let median_delay_s = (!delays.is_empty()).then(|| {
        let n = delays.len();
        if n % 2 == 1 {
            delays[n / 2]
        } else {
            (delays[n / 2 - 1] + delays[n / 2]) / 2.0
        }
    });
    let precision = if raised.is_empty() {
        0.0
    } else {
        true_alerts as f64 / raised.len() as f64
    };
    let recall = if windows.is_empty() {
        0.0
    } else {
        detected as f64 / windows.len() as f64
    };
    // Chance: the same number of alerts at random points of the (time × subject) space.
    let covered: f64 = windows.iter().map(|w| (w.end - w.start) as f64).sum();
    let n = raised.len() as f64;
    let chance_p = (covered / space).min(1.0);
    let chance_r = if windows.is_empty() {
        0.0
    } else {
        windows
            .iter()
            .map(|w| 1.0 - (1.0 - ((w.end - w.start) as f64 / space).min(1.0)).powf(n))
            .sum::<f64>()
            / windows.len() as f64
    };
    DetectorScore {
        detector: kind.as_str().to_owned(),
        windows: windows.len(),
        detected,
        alerts: raised.len(),
        true_alerts,
        precision,
        recall,
        f1: f1(precision, recall),
        median_delay_s,
        nab_raw,
        nab,
        chance_f1: f1(chance_p, chance_r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_shape() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-4);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
        assert!(scaled_sigmoid(0.5) < -0.8);
        assert_eq!(scaled_sigmoid(10.0), -1.0);
    }
}
