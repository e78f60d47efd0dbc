//! Per-detector scoring against ground truth: precision, recall, F1, median detection delay and a
//! NAB-style score (Numenta Anomaly Benchmark, standard profile: TP weight 1, FP weight 0.11,
//! FN weight 1, scaled sigmoid so earlier detection inside a window scores more).
//!
//! Truth windows per detector:
//! - `overload`: runs of intervals in which the *physical* load heats the transformer's hot spot
//!   (same IEC 60076-7 model and settings) to its warning temperature, opened [`OVERLOAD_LEAD`]
//!   early so a forecast warning counts as the early warning it is;
//! - `aggregate-spike`: injected neighbourhood overloads and coordinated EV surges;
//! - `house-spike`, `stuck-meter`, `zero-meter`: injected single-house faults, matched to the
//!   right house; `suspect-meters`: any stuck or zero meter (the room's count).
//!
//! Windows and alerts are counted the way the alert policy merges them: windows closer than the
//! policy's quiet time (`clear_after` intervals and `cooldown`) are one event, and a raised alert
//! that follows a raise of the same kind and subject without a clear in between is that event's
//! escalation, not a new alert. Each window runs to its end plus two intervals of slack (the bot
//! can only speak once an interval closes). "Chance" is a detector that raises the same number of
//! alerts at uniformly random times (and, for per-house kinds, random houses).

use crate::anomaly::AnomalyKind;
use crate::runner::{AlertRecord, SimOutput};
use gridmuc_core::AlertKind;
use gridmuc_core::alert::AlertState;
use gridmuc_core::detect::OverloadConfig;
use gridmuc_core::policy::PolicyConfig;
use gridmuc_core::thermal::HotSpotModel;
use gridmuc_core::time::{HOUR, MINUTE};
use statrs::distribution::{Beta, ContinuousCDF};
use std::collections::HashMap;

/// How long before the load crosses the rating an overload warning still counts as true: the
/// thermal forecast is meant to speak that early.
pub const OVERLOAD_LEAD: i64 = HOUR;

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
    /// Overload only: the least time (s) from the first alert to the physical load crossing the
    /// rating, over the crossings an alert came within an hour of (negative when after it).
    pub min_lead_s: Option<f64>,
}

/// Exact (Clopper–Pearson) two-sided 95 % interval of a proportion `k` of `n`, for precision and recall.
pub fn proportion_ci(k: usize, n: usize) -> Option<(f64, f64)> {
    if n == 0 || k > n {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let quantile = |a: f64, b: f64, p: f64| Beta::new(a, b).ok().map(|d| d.inverse_cdf(p));
    let lo = if k == 0.0 {
        0.0
    } else {
        quantile(k, n - k + 1.0, 0.025)?
    };
    let hi = if k == n {
        1.0
    } else {
        quantile(k + 1.0, n - k, 0.975)?
    };
    Some((lo, hi))
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

/// Runs of intervals in which the *physical* load, through the same IEC 60076-7 model, brings
/// the hot spot to `hot_spot_warn_c`: what a transformer engineer calls an overload. Merged
/// across gaps shorter than `gap`.
fn overload_windows(out: &SimOutput, overload: &OverloadConfig, gap: i64) -> Vec<Window> {
    let rating = out.rating_w.max(1) as f64;
    let minutes = out.interval as f64 / MINUTE as f64;
    let mut model: Option<HotSpotModel> = None;
    let mut windows: Vec<Window> = Vec::new();
    for r in &out.intervals {
        let k = r.true_total_w as f64 / rating;
        let m = model.get_or_insert_with(|| HotSpotModel::steady(overload.thermal.clone(), k));
        m.advance(k, minutes);
        if m.hot_spot() < overload.hot_spot_warn_c {
            continue;
        }
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

/// Merges windows of one subject closer than `gap`, as the policy merges their findings.
fn merge(mut windows: Vec<Window>, gap: i64) -> Vec<Window> {
    windows.sort_by_key(|w| (w.house, w.start));
    let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
    for w in windows {
        match merged.last_mut() {
            Some(m) if m.house == w.house && w.start <= m.end + gap => m.end = m.end.max(w.end),
            _ => merged.push(w),
        }
    }
    merged
}

fn label_windows(out: &SimOutput, kinds: &[AnomalyKind], per_house: bool) -> Vec<Window> {
    let mut windows = Vec::new();
    for l in out.labels.iter().filter(|l| kinds.contains(&l.kind)) {
        let start = out.start.0 + i64::from(l.start_min) * MINUTE;
        let end = out.start.0 + i64::from(l.end_min()) * MINUTE;
        if per_house {
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

/// The raised alerts that open an event: a raise after a raise of the same kind and subject,
/// with no clear between, is an escalation of the event the first one opened.
fn event_openings(alerts: &[AlertRecord], kind: AlertKind) -> Vec<&AlertRecord> {
    let mut open: HashMap<Option<usize>, bool> = HashMap::new();
    let mut first = Vec::new();
    for a in alerts.iter().filter(|a| a.kind == kind) {
        let was_open = open.insert(a.house, a.state == AlertState::Raised);
        if a.state == AlertState::Raised && was_open != Some(true) {
            first.push(a);
        }
    }
    first
}

/// Scores every detector of the aggregator on a finished run, merging as `policy` does.
pub fn score_detectors(
    out: &SimOutput,
    overload: &OverloadConfig,
    policy: &PolicyConfig,
) -> Vec<DetectorScore> {
    let slack = 2 * out.interval;
    let gap = policy_gap(policy, out.interval);
    let span = (out.intervals.len() as f64 * out.interval as f64).max(1.0);
    let houses = out.houses.max(1);
    let meters = [AnomalyKind::StuckMeter, AnomalyKind::ZeroMeter];
    let mut overload = overload_windows(out, overload, gap);
    let crossings = rating_crossings(out);
    for w in &mut overload {
        w.start -= OVERLOAD_LEAD;
    }
    [
        (AlertKind::Overload, overload, 1usize),
        (
            AlertKind::AggregateSpike,
            label_windows(
                out,
                &[AnomalyKind::NeighbourhoodOverload, AnomalyKind::EvSurge],
                false,
            ),
            1,
        ),
        (
            AlertKind::HouseSpike,
            label_windows(out, &[AnomalyKind::HouseSpike], true),
            houses,
        ),
        (
            AlertKind::StuckMeter,
            label_windows(out, &[AnomalyKind::StuckMeter], true),
            houses,
        ),
        (
            AlertKind::ZeroMeter,
            label_windows(out, &[AnomalyKind::ZeroMeter], true),
            houses,
        ),
        (
            AlertKind::SuspectMeters,
            label_windows(out, &meters, false),
            1,
        ),
    ]
    .into_iter()
    .map(|(kind, windows, subjects)| {
        let mut windows = merge(windows, gap);
        for w in &mut windows {
            w.end += slack;
        }
        let mut score = score_one(out, kind, &windows, span * subjects as f64);
        if kind == AlertKind::Overload {
            score.min_lead_s = min_lead(out, &crossings);
        }
        score
    })
    .collect()
}

/// Where the physical load first goes above the rating after being at or below it.
fn rating_crossings(out: &SimOutput) -> Vec<i64> {
    out.intervals
        .windows(2)
        .filter(|w| w[0].true_total_w <= out.rating_w && w[1].true_total_w > out.rating_w)
        .map(|w| w[1].start.0)
        .collect()
}

/// Where issue #13's goal reads a ramp's crossing of the rating, so the scorer and the
/// detectability analysis measure leads from the same instants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RampCrossing {
    /// Ramp start (virtual ms).
    pub start: i64,
    /// Ramp end (virtual ms, exclusive).
    pub end: i64,
    /// Extra watts per house at the ramp's end.
    pub extra_w: f64,
    /// Houses the ramp adds to, so its share of an excess can be told from the street's own swing.
    pub houses: usize,
    /// Highest one-interval physical total during the ramp (W).
    pub peak_w: i64,
    /// Start of the first interval in the ramp whose physical total is above the rating.
    pub first_interval: Option<i64>,
    /// Start of the first interval in the ramp whose centred 30-minute mean is above the rating:
    /// the rating is a 30-minute ADMD, so this is the crossing the rating itself speaks of.
    pub centred_mean: Option<i64>,
}

/// Every injected load ramp of a run with both readings of its crossing; `per_30` is the
/// number of intervals in 30 minutes.
pub fn ramp_crossings(out: &SimOutput, per_30: usize) -> Vec<RampCrossing> {
    let totals: Vec<f64> = out
        .intervals
        .iter()
        .map(|r| r.true_total_w as f64)
        .collect();
    let rating = out.rating_w as f64;
    let half = per_30 / 2;
    let centred = |i: usize| {
        let (a, b) = (
            i.saturating_sub(half),
            (i + per_30 - half).min(totals.len()),
        );
        totals[a..b].iter().sum::<f64>() / (b - a).max(1) as f64
    };
    out.labels
        .iter()
        .filter(|l| l.kind == AnomalyKind::LoadRamp)
        .map(|l| {
            let start = out.start.0 + i64::from(l.start_min) * MINUTE;
            let end = out.start.0 + i64::from(l.end_min()) * MINUTE;
            let inside: Vec<usize> = (0..totals.len())
                .filter(|i| (start..end).contains(&out.intervals[*i].start.0))
                .collect();
            let first = |above: &dyn Fn(usize) -> bool| {
                inside
                    .iter()
                    .find(|i| above(**i))
                    .map(|i| out.intervals[*i].start.0)
            };
            RampCrossing {
                start,
                end,
                extra_w: f64::from(l.extra_w),
                houses: l.houses.len(),
                peak_w: inside
                    .iter()
                    .map(|i| out.intervals[*i].true_total_w)
                    .max()
                    .unwrap_or(0),
                first_interval: first(&|i| totals[i] > rating),
                centred_mean: first(&|i| centred(i) > rating),
            }
        })
        .collect()
}

/// The quiet time after which the alert policy counts a recurrence as a new event: findings
/// closer than this are one alert.
pub fn policy_gap(policy: &PolicyConfig, interval: i64) -> i64 {
    (i64::from(policy.clear_after.max(1)) * interval).max(policy.cooldown)
}

/// The least time from the first overload alert (within the lead before it) to each crossing.
fn min_lead(out: &SimOutput, crossings: &[i64]) -> Option<f64> {
    let alerts = event_openings(&out.alerts, AlertKind::Overload);
    crossings
        .iter()
        .filter_map(|c| {
            alerts
                .iter()
                .find(|a| (c - OVERLOAD_LEAD..c + OVERLOAD_LEAD).contains(&a.emitted.0))
                .map(|a| (c - a.emitted.0) as f64 / 1000.0)
        })
        .min_by(f64::total_cmp)
}

fn score_one(out: &SimOutput, kind: AlertKind, windows: &[Window], space: f64) -> DetectorScore {
    let raised = event_openings(&out.alerts, kind);
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
        min_lead_s: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportion_ci_brackets_the_estimate() {
        let (lo, hi) = proportion_ci(9, 10).expect("defined");
        // Clopper–Pearson for 9 of 10: 0.555 to 0.997.
        assert!(
            (lo - 0.5550).abs() < 1e-3 && (hi - 0.9975).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(proportion_ci(0, 5).map(|c| c.0), Some(0.0));
        assert_eq!(proportion_ci(5, 5).map(|c| c.1), Some(1.0));
        assert_eq!(proportion_ci(1, 0), None);
    }

    #[test]
    fn sigmoid_shape() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-4);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
        assert!(scaled_sigmoid(0.5) < -0.8);
        assert_eq!(scaled_sigmoid(10.0), -1.0);
    }
}
