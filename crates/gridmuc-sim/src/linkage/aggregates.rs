//! What private mode publishes to the leader per interval — count, exact total and histogram —
//! and what differences of those aggregates reveal about one house.
//!
//! An aggregate hides *which* house did what, but the difference of two aggregates over
//! different sets of houses is the load of the houses in one set and not the other. Prio3 lets
//! the helper release each interval once, so a difference must span intervals and then also
//! carries everyone else's change of load in between, unless the leader fills an interval with
//! its own reports. Three attacks are measured:
//!
//! - **leaver**: a house leaves half-way through the period (moves out, meter off). The attacker
//!   subtracts the after-mean of the totals from the before-mean for each hour of day: the
//!   leaver's mean daily profile plus the others' drift (plus noise). It names the house whose
//!   training profile fits best (the same classifier, shape features);
//! - **dropout**: a house reports in interval `r` and not in `r + 1` (an outage, or the leader
//!   refuses that nickname's report). `S_r − S_{r+1}` estimates its reading with the others'
//!   one-interval change as error. The histogram difference `H_r − H_{r+1}` is exact for every
//!   house whose bucket did not change: the house's bucket is one of its positive entries, and
//!   often the only one. Who the house is, the leader learns only with the XMPP server's help;
//! - **isolation** (n−1): the leader forwards one honest report and pads the interval with its
//!   own valid reports of known values up to the usual count, so `min_reports` and the helper's
//!   small-interval alarm see nothing odd. Total and histogram minus its own reports are the
//!   house's reading and bucket, exactly; only noise on the aggregates hides them.

use super::features::{Attacker, FeatureSet, HourObs, SeriesFeatures, rank_in};
use super::{LinkageConfig, Recorded};
use crate::neighbourhood::{Stream, derive_seed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Noise on every published aggregate: none (private mode today) or the discrete Laplace
/// mechanism an aggregator can add per interval, to show what optional DP would buy.
#[derive(Clone, Debug, PartialEq)]
pub struct Noise {
    /// Name for tables, e.g. `ε = 1, Δ = 1 kW`.
    pub label: String,
    /// Privacy budget per interval for the total and, separately, for the histogram (0 = none).
    pub epsilon: f64,
    /// Largest change of one house's reading the total's noise hides (W).
    pub sensitivity_w: f64,
}

/// Quantum of the total's noise (W): the wire's 10 W.
const NOISE_QUANTUM_W: f64 = 10.0;
/// L1 change of a histogram when one house's reading moves to another bucket.
const HISTOGRAM_SENSITIVITY: f64 = 2.0;

impl Noise {
    /// Exact aggregates, as private mode publishes them today.
    pub fn none() -> Noise {
        Noise {
            label: "none".to_owned(),
            epsilon: 0.0,
            sensitivity_w: 0.0,
        }
    }

    /// Discrete Laplace noise with `α = exp(−ε/Δ)`: Δ in 10 W quanta for the total, 2 counts
    /// (one house changing bucket) for each histogram bucket.
    pub fn dp(epsilon: f64, sensitivity_w: f64) -> Noise {
        Noise {
            label: format!("ε = {epsilon}, Δ = {} kW", sensitivity_w / 1000.0),
            epsilon,
            sensitivity_w,
        }
    }

    fn alpha(&self, sensitivity: f64) -> Option<f64> {
        (self.epsilon > 0.0 && sensitivity > 0.0).then(|| (-self.epsilon / sensitivity).exp())
    }

    fn total_alpha(&self) -> Option<f64> {
        self.alpha(self.sensitivity_w / NOISE_QUANTUM_W)
    }

    /// Standard deviation of one published total's noise (W).
    pub fn total_sd_w(&self) -> f64 {
        self.total_alpha()
            .map_or(0.0, |a| NOISE_QUANTUM_W * (2.0 * a).sqrt() / (1.0 - a))
    }

    /// Draws one total's noise (W).
    fn total<R: Rng>(&self, rng: &mut R) -> f64 {
        self.total_alpha()
            .map_or(0.0, |a| NOISE_QUANTUM_W * discrete_laplace(a, rng))
    }

    /// Draws one histogram bucket's noise (reports).
    fn bucket<R: Rng>(&self, rng: &mut R) -> f64 {
        self.alpha(HISTOGRAM_SENSITIVITY)
            .map_or(0.0, |a| discrete_laplace(a, rng))
    }

    /// A histogram as published: each bucket with its own noise.
    fn histogram<R: Rng>(&self, mut counts: Vec<f64>, rng: &mut R) -> Vec<f64> {
        counts.iter_mut().for_each(|c| *c += self.bucket(rng));
        counts
    }
}

/// The difference of two geometric variables with ratio `alpha`: discrete Laplace.
fn discrete_laplace<R: Rng>(alpha: f64, rng: &mut R) -> f64 {
    let mut geometric = || {
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        (u.ln() / alpha.ln()).floor()
    };
    geometric() - geometric()
}

/// Which aggregate attack a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateAttack {
    /// A house leaves half-way; before/after means of the totals by hour of day.
    Leaver,
    /// A house misses one interval; difference of consecutive totals and histograms.
    Dropout,
    /// The leader pads one honest report with its own: n−1.
    Isolation,
}

impl AggregateAttack {
    /// Short name for tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateAttack::Leaver => "leaver",
            AggregateAttack::Dropout => "one-interval dropout",
            AggregateAttack::Isolation => "isolation (n−1)",
        }
    }
}

/// How one aggregate attack did at one noise level.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateRow {
    /// Houses in the neighbourhood.
    pub houses: usize,
    /// The attack.
    pub attack: AggregateAttack,
    /// Noise label.
    pub noise: String,
    /// Noise standard deviation per total (W).
    pub noise_sd_w: f64,
    /// Trials (houses leaving, dropouts or isolated reports).
    pub trials: usize,
    /// Share of trials where the attacker named the right house first from the value alone.
    pub top1: f64,
    /// Share of trials with the right house in the first five.
    pub top5: f64,
    /// Root-mean-square error of the load recovered from totals (W): the leaver's hourly
    /// profile, or the house's reading.
    pub rmse_w: f64,
    /// Median absolute error of the load recovered from totals (W).
    pub median_abs_err_w: f64,
    /// Share of values recovered from totals within ±50 W of the truth.
    pub within_50_w: f64,
    /// Share of trials where the histogram difference names the house's bucket (None: the
    /// attack uses totals only).
    pub bucket_hit: Option<f64>,
    /// Share of trials where the histogram difference is exactly one report in one bucket, so
    /// the attacker *knows* it holds the house's bucket.
    pub bucket_certain: Option<f64>,
    /// Median absolute error (W) of the total's estimate clamped into the guessed bucket.
    pub hist_median_abs_err_w: Option<f64>,
}

fn median_abs(errors: &[f64]) -> f64 {
    let mut abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    abs.get(abs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What one attack found per trial, summarised into a row.
#[derive(Default)]
struct Trials {
    ranks: Vec<usize>,
    errors: Vec<f64>,
    bucket_hits: Vec<bool>,
    bucket_certain: Vec<bool>,
    hist_errors: Vec<f64>,
}

impl Trials {
    fn row(self, houses: usize, attack: AggregateAttack, noise: &Noise) -> AggregateRow {
        let trials = self.ranks.len().max(1) as f64;
        let top = |k| self.ranks.iter().filter(|r| **r <= k).count() as f64 / trials;
        let errors = self.errors.len().max(1) as f64;
        let share = |xs: &[bool]| {
            (!xs.is_empty()).then(|| xs.iter().filter(|x| **x).count() as f64 / xs.len() as f64)
        };
        AggregateRow {
            houses,
            attack,
            noise: noise.label.clone(),
            noise_sd_w: noise.total_sd_w(),
            trials: self.ranks.len(),
            top1: top(1),
            top5: top(5),
            rmse_w: (self.errors.iter().map(|e| e * e).sum::<f64>() / errors).sqrt(),
            median_abs_err_w: median_abs(&self.errors),
            within_50_w: self.errors.iter().filter(|e| e.abs() <= 50.0).count() as f64 / errors,
            bucket_hit: share(&self.bucket_hits),
            bucket_certain: share(&self.bucket_certain),
            hist_median_abs_err_w: (!self.hist_errors.is_empty())
                .then(|| median_abs(&self.hist_errors)),
        }
    }
}

/// A load estimate for some hours of day, as a series the attacker's classifier can score.
fn as_series(hours: impl Iterator<Item = (u8, f64)>) -> SeriesFeatures {
    SeriesFeatures {
        hours: hours
            .map(|(hour, w)| HourObs {
                hour,
                mean_w: w,
                base_w: w,
                sd_w: 0.0,
            })
            .collect(),
        steps: Vec::new(),
    }
}

/// Private mode's histogram buckets, given by their lower edges in watts (the first is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    edges: Vec<u32>,
}

impl Buckets {
    /// Buckets from lower edges; `None` unless they start at 0 and strictly increase.
    pub fn new(edges: Vec<u32>) -> Option<Buckets> {
        (edges.first() == Some(&0) && edges.windows(2).all(|w| w[0] < w[1]))
            .then_some(Buckets { edges })
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// Never: a bucket list holds at least the one starting at 0.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// The bucket of a reading (W); export and values past the last edge fall in the ends.
    pub fn of(&self, watts: f64) -> usize {
        let w = watts.max(0.0);
        self.edges.partition_point(|e| f64::from(*e) <= w).max(1) - 1
    }

    /// The readings bucket `b` holds, as `[low, high]` watts (the last one up to `max_w`).
    fn range(&self, b: usize, max_w: f64) -> (f64, f64) {
        let low = f64::from(self.edges[b]);
        let high = self
            .edges
            .get(b + 1)
            .map_or(max_w, |e| f64::from(*e) - NOISE_QUANTUM_W);
        (low, high.max(low))
    }

    /// The histogram of `readings`.
    fn histogram(&self, readings: impl Iterator<Item = f64>) -> Vec<f64> {
        let mut h = vec![0.0; self.len()];
        for x in readings {
            h[self.of(x)] += 1.0;
        }
        h
    }
}

/// The attacker's guess of one report's bucket from a histogram difference `diff` (the report
/// counted once more in the first histogram) and its value estimate from the totals: of the
/// buckets that gained, the one nearest the estimate; the estimate clamped into it.
fn guess_bucket(buckets: &Buckets, diff: &[f64], estimate_w: f64, max_w: f64) -> (usize, f64) {
    let distance = |b: usize| {
        let (low, high) = buckets.range(b, max_w);
        (low - estimate_w).max(estimate_w - high).max(0.0)
    };
    let best = (0..buckets.len())
        .filter(|&b| diff[b] > 0.0)
        .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
        .unwrap_or_else(|| buckets.of(estimate_w.clamp(0.0, max_w)));
    let (low, high) = buckets.range(best, max_w);
    (best, estimate_w.clamp(low, high))
}

/// Largest reading a report may carry (W): private mode's default bound.
const MAX_REPORT_W: f64 = 25_000.0;

/// Runs the three aggregate attacks on the first `n` houses at every noise level.
pub(crate) fn attack_aggregates(
    rec: &Recorded,
    config: &LinkageConfig,
    n: usize,
    attacker: &Attacker,
    noises: &[Noise],
) -> Vec<AggregateRow> {
    let buckets = &config.buckets;
    let len = rec.attack(0).len();
    let hour_of = |i: usize| ((i * config.interval_min as usize / 60) % 24) as u8;
    let total: Vec<f64> = (0..len)
        .map(|i| (0..n).map(|h| rec.attack(h)[i]).sum())
        .collect();
    // Leaver: per-house and total sums by hour of day, before and after the half-way day.
    let half = (config.days as usize / 2) * rec.per_day;
    let by_hour = |xs: &[f64], range: std::ops::Range<usize>| {
        let mut sums = [0.0f64; 24];
        for i in range {
            sums[usize::from(hour_of(i))] += xs[i];
        }
        sums
    };
    let per_hour_before = (half / 24) as f64;
    let per_hour_after = ((len - half) / 24) as f64;
    let total_before = by_hour(&total, 0..half);
    let total_after = by_hour(&total, half..len);
    let leavers = config.leaver_trials.min(n);
    let seed = |tag: u64| derive_seed(config.seed, Stream::Linkage, (tag << 32) | n as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed(u64::from(u32::MAX)));
    let dropouts: Vec<(usize, usize)> = (0..config.dropout_trials)
        .map(|_| (rng.random_range(0..n), rng.random_range(0..len - 1)))
        .collect();
    let histogram_of = |i: usize, skip: Option<usize>| {
        buckets.histogram(
            (0..n)
                .filter(|h| Some(*h) != skip)
                .map(|h| rec.attack(h)[i]),
        )
    };
    let mut rows = Vec::new();
    for (k, noise) in noises.iter().enumerate() {
        let mut noise_rng = ChaCha8Rng::seed_from_u64(seed(u64::from(u32::MAX) - 1 - k as u64));
        let mut trials = Trials::default();
        for h in 0..leavers {
            let house_before = by_hour(rec.attack(h), 0..half);
            let house_after = by_hour(rec.attack(h), half..len);
            let mut noise_before = [0.0f64; 24];
            let mut noise_after = [0.0f64; 24];
            for i in 0..len {
                let bucket = if i < half {
                    &mut noise_before
                } else {
                    &mut noise_after
                };
                bucket[usize::from(hour_of(i))] += noise.total(&mut noise_rng);
            }
            let estimate: Vec<(u8, f64)> = (0..24)
                .map(|hr| {
                    let before = (total_before[hr] + noise_before[hr]) / per_hour_before;
                    let after =
                        (total_after[hr] - house_after[hr] + noise_after[hr]) / per_hour_after;
                    (hr as u8, before - after)
                })
                .collect();
            trials.errors.extend(
                estimate
                    .iter()
                    .map(|(hr, w)| w - house_before[usize::from(*hr)] / per_hour_before),
            );
            let scores = attacker.scores(&as_series(estimate.into_iter()), FeatureSet::Shape);
            trials.ranks.push(rank_in(&scores, h));
        }
        rows.push(trials.row(n, AggregateAttack::Leaver, noise));

        for attack in [AggregateAttack::Dropout, AggregateAttack::Isolation] {
            let mut trials = Trials::default();
            for &(h, r) in &dropouts {
                let truth = rec.attack(h)[r];
                let rng = &mut noise_rng;
                let (estimate, diff) = match attack {
                    AggregateAttack::Isolation => {
                        // The leader's own reports cancel exactly: what is left is the house
                        // and one total's and histogram's noise.
                        let mut own = vec![0.0; buckets.len()];
                        own[buckets.of(truth)] = 1.0;
                        (truth + noise.total(rng), noise.histogram(own, rng))
                    }
                    _ => {
                        let with = total[r] + noise.total(rng);
                        let without = total[r + 1] - rec.attack(h)[r + 1] + noise.total(rng);
                        let before = noise.histogram(histogram_of(r, None), rng);
                        let after = noise.histogram(histogram_of(r + 1, Some(h)), rng);
                        let diff = before.iter().zip(&after).map(|(a, b)| a - b).collect();
                        (with - without, diff)
                    }
                };
                trials.errors.push(estimate - truth);
                let (bucket, clamped) = guess_bucket(buckets, &diff, estimate, MAX_REPORT_W);
                trials.bucket_hits.push(bucket == buckets.of(truth));
                trials.bucket_certain.push(
                    diff.iter()
                        .enumerate()
                        .all(|(b, d)| *d == if b == bucket { 1.0 } else { 0.0 }),
                );
                trials.hist_errors.push(clamped - truth);
                let series = as_series(std::iter::once((hour_of(r), estimate)));
                trials
                    .ranks
                    .push(rank_in(&attacker.scores(&series, FeatureSet::Shape), h));
            }
            rows.push(trials.row(n, attack, noise));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets() -> Buckets {
        Buckets::new(vec![0, 50, 100, 200, 400, 800]).unwrap()
    }

    #[test]
    fn readings_fall_in_their_bucket_and_ends_catch_the_rest() {
        let b = buckets();
        assert_eq!(b.of(0.0), 0);
        assert_eq!(b.of(49.0), 0);
        assert_eq!(b.of(50.0), 1);
        assert_eq!(b.of(799.0), 4);
        assert_eq!(b.of(30_000.0), 5);
        assert_eq!(b.of(-300.0), 0, "export counts as zero");
        assert_eq!(Buckets::new(vec![10, 20]), None);
        assert_eq!(Buckets::new(vec![0, 20, 20]), None);
    }

    #[test]
    fn the_gaining_bucket_nearest_the_total_is_guessed() {
        let b = buckets();
        // The house (bucket 2) and a mover leaving bucket 4 both gained; the total says ~150 W.
        let diff = [0.0, 0.0, 1.0, 0.0, 1.0, -1.0];
        assert_eq!(guess_bucket(&b, &diff, 150.0, 25_000.0), (2, 150.0));
        // A total estimate outside the bucket is clamped into it.
        assert_eq!(guess_bucket(&b, &diff, 260.0, 25_000.0), (2, 190.0));
        // No bucket gained (noise): the estimate's own bucket.
        assert_eq!(guess_bucket(&b, &[0.0; 6], 900.0, 25_000.0), (5, 900.0));
    }

    #[test]
    fn dp_noise_has_its_stated_spread() {
        let noise = Noise::dp(1.0, 1000.0);
        // α = exp(−1/100): sd = 10 W × √(2α)/(1 − α) ≈ 1414 W.
        assert!(
            (noise.total_sd_w() - 1414.0).abs() < 2.0,
            "{}",
            noise.total_sd_w()
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<f64> = (0..20_000).map(|_| noise.total(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let sd = (draws.iter().map(|x| x * x).sum::<f64>() / draws.len() as f64).sqrt();
        assert!(mean.abs() < 40.0, "{mean}");
        assert!((sd / 1414.0 - 1.0).abs() < 0.05, "{sd}");
        assert!(draws.iter().all(|x| x % 10.0 == 0.0), "whole quanta");
        assert_eq!(Noise::none().total(&mut rng), 0.0);
        assert_eq!(Noise::none().bucket(&mut rng), 0.0);
    }
}
