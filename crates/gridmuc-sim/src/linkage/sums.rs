//! What masked mode still leaves to attack: the neighbourhood sum of every interval.
//!
//! With masking the bot learns `S_t = Σ x_h(t)` (plus DP noise if configured) and nothing per
//! nickname. A sum hides *which* house did what, but the difference of two sums over different
//! sets of houses is the load of the houses in one and not the other. `gridmuc-mask` refuses to
//! unmask one round for two survivor sets, so the difference must span rounds, and then it also
//! carries everyone else's change of load between them. Two such attacks are measured:
//!
//! - **leaver**: a house leaves half-way through the period (moves out, meter off). The attacker
//!   subtracts the after-mean from the before-mean for each hour of day: that is the leaver's mean
//!   daily profile plus the others' drift (plus noise), and it picks the house whose training
//!   profile fits it best (the same classifier, shape features);
//! - **dropout**: a house drops out of one round (`r + 1`) after taking part in the previous one.
//!   `S_r − S_{r+1}` estimates that house's reading in round `r`; the error is the others'
//!   change in one interval (plus the noise of two sums); the attacker again names the house.

use super::features::{Attacker, FeatureSet, HourObs, SeriesFeatures, rank_in};
use super::{LinkageConfig, Recorded};
use crate::neighbourhood::{Stream, derive_seed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Noise on every published sum, drawn by the caller (e.g. from `gridmuc-mask`'s DP sampler).
pub struct SumNoise<'a> {
    /// Name for tables, e.g. `ε = 1, Δ = 1 kW`.
    pub label: String,
    /// Standard deviation of one sum's noise (W), for the report.
    pub sd_w: f64,
    /// Draws the noise of one published sum (W).
    pub sample: Box<dyn FnMut() -> f64 + 'a>,
}

impl SumNoise<'_> {
    /// Exact sums, as masked mode without DP publishes them.
    pub fn none() -> SumNoise<'static> {
        SumNoise {
            label: "none".to_owned(),
            sd_w: 0.0,
            sample: Box::new(|| 0.0),
        }
    }
}

/// Which sum attack a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumAttack {
    /// A house leaves half-way; before/after means by hour of day.
    Leaver,
    /// A house misses one round; difference of consecutive sums.
    Dropout,
}

impl SumAttack {
    /// Short name for tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            SumAttack::Leaver => "leaver",
            SumAttack::Dropout => "one-round dropout",
        }
    }
}

/// How one sum attack did at one noise level.
#[derive(Clone, Debug, PartialEq)]
pub struct SumAttackRow {
    /// Houses in the neighbourhood.
    pub houses: usize,
    /// The attack.
    pub attack: SumAttack,
    /// Noise label.
    pub noise: String,
    /// Noise standard deviation per sum (W).
    pub noise_sd_w: f64,
    /// Trials (houses leaving, or dropouts).
    pub trials: usize,
    /// Share of trials where the attacker named the right house first.
    pub top1: f64,
    /// Share of trials with the right house in the first five.
    pub top5: f64,
    /// Root-mean-square error of the recovered load (W): the leaver's hourly profile, or the
    /// dropped house's reading.
    pub rmse_w: f64,
    /// Median absolute error of the recovered load (W).
    pub median_abs_err_w: f64,
    /// Share of recovered values within ±50 W of the truth: how often the sum gives it away.
    pub within_50_w: f64,
}

fn summarise(
    houses: usize,
    attack: SumAttack,
    noise: &SumNoise<'_>,
    ranks: &[usize],
    mut errors: Vec<f64>,
) -> SumAttackRow {
    let trials = ranks.len().max(1) as f64;
    let top = |k| ranks.iter().filter(|r| **r <= k).count() as f64 / trials;
    let rmse_w = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len().max(1) as f64).sqrt();
    errors.iter_mut().for_each(|e| *e = e.abs());
    errors.sort_by(f64::total_cmp);
    let within_50_w = errors.partition_point(|e| *e <= 50.0) as f64 / errors.len().max(1) as f64;
    SumAttackRow {
        houses,
        attack,
        noise: noise.label.clone(),
        noise_sd_w: noise.sd_w,
        trials: ranks.len(),
        top1: top(1),
        top5: top(5),
        rmse_w,
        median_abs_err_w: errors.get(errors.len() / 2).copied().unwrap_or(f64::NAN),
        within_50_w,
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

/// Runs both sum attacks on the first `n` houses at every noise level.
pub(crate) fn attack_sums(
    rec: &Recorded,
    config: &LinkageConfig,
    n: usize,
    attacker: &Attacker,
    noises: &mut [SumNoise<'_>],
) -> Vec<SumAttackRow> {
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
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        config.seed,
        Stream::Linkage,
        (u64::from(u32::MAX) << 32) | n as u64,
    ));
    let dropouts: Vec<(usize, usize)> = (0..config.dropout_trials)
        .map(|_| (rng.random_range(0..n), rng.random_range(0..len - 1)))
        .collect();
    let mut rows = Vec::new();
    for noise in noises.iter_mut() {
        let mut ranks = Vec::with_capacity(leavers);
        let mut errors = Vec::with_capacity(leavers * 24);
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
                bucket[usize::from(hour_of(i))] += (noise.sample)();
            }
            let estimate: Vec<(u8, f64)> = (0..24)
                .map(|hr| {
                    let before = (total_before[hr] + noise_before[hr]) / per_hour_before;
                    let after =
                        (total_after[hr] - house_after[hr] + noise_after[hr]) / per_hour_after;
                    (hr as u8, before - after)
                })
                .collect();
            errors.extend(
                estimate
                    .iter()
                    .map(|(hr, w)| w - house_before[usize::from(*hr)] / per_hour_before),
            );
            let scores = attacker.scores(&as_series(estimate.into_iter()), FeatureSet::Shape);
            ranks.push(rank_in(&scores, h));
        }
        rows.push(summarise(n, SumAttack::Leaver, noise, &ranks, errors));

        let mut ranks = Vec::with_capacity(dropouts.len());
        let mut errors = Vec::with_capacity(dropouts.len());
        for &(h, r) in &dropouts {
            let with = total[r] + (noise.sample)();
            let without = total[r + 1] - rec.attack(h)[r + 1] + (noise.sample)();
            let estimate = with - without;
            errors.push(estimate - rec.attack(h)[r]);
            let series = as_series(std::iter::once((hour_of(r), estimate)));
            ranks.push(rank_in(&attacker.scores(&series, FeatureSet::Shape), h));
        }
        rows.push(summarise(n, SumAttack::Dropout, noise, &ranks, errors));
    }
    rows
}
