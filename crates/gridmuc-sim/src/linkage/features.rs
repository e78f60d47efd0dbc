//! Daily-shape features of one reading series and the attacker's per-house profiles.
//!
//! A series (one nickname's readings, or one training day of a house) is cut at clock hours.
//! Each clock hour gives an [`HourObs`]: its hour of day, mean load, base load (the hour's
//! lowest reading: standby plus cold appliances) and spread (standard deviation: how busy the
//! hour is). Rising steps between consecutive readings give the appliance signature: every
//! simulated house owns its own kettle, shower and hob at their own power, as real homes do.
//!
//! The attacker's classifier is a naive-Bayes nearest centroid: for each house it learns, per
//! hour of day, the mean and spread of each hour statistic over the training days, and a
//! smoothed step-size distribution. A series is scored against every house by its summed
//! log-likelihood (Gaussian per hour statistic with a clipped z so one odd hour cannot veto a
//! house, plus the log-likelihood ratio of each step against the neighbourhood's pooled steps).
//! Hour statistics live in an `asinh(w / 100 W)` domain: log-like for large loads (household
//! loads are roughly log-normal), linear near zero and defined for PV export.

/// Width of one step-size bin (W): a couple of quanta, so ±10 W quantisation stays in a bin.
pub const STEP_BIN_W: f64 = 20.0;
/// Smallest rising step counted (W); smaller ones are lighting drift and quantisation.
pub const STEP_MIN_W: f64 = 60.0;
/// Number of step bins: 20 W bins up to 12 kW (an electric shower is 7–10 kW).
pub const STEP_BINS: usize = 600;

/// Scale of the `asinh` transform (W): loads well above it are compared by ratio.
const ASINH_SCALE_W: f64 = 100.0;
/// Spread floor per hour statistic in the transformed domain, so a steady house is not overtrusted.
const SD_FLOOR: [f64; 3] = [0.08, 0.06, 0.1];
/// Largest z² one hour statistic contributes: a robust (clipped) Gaussian.
const Z2_CAP: f64 = 16.0;
/// Pseudo-steps of the neighbourhood's step distribution mixed into each house's.
const STEP_PRIOR: f64 = 20.0;

/// One clock hour of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HourObs {
    /// Hour of day, 0–23.
    pub hour: u8,
    /// Mean reading in the hour (W).
    pub mean_w: f64,
    /// Lowest reading in the hour (W): the base load.
    pub base_w: f64,
    /// Population standard deviation of the hour's readings (W).
    pub sd_w: f64,
}

impl HourObs {
    /// The three statistics in the classifier's `asinh` domain.
    fn transformed(&self) -> [f64; 3] {
        [
            (self.mean_w / ASINH_SCALE_W).asinh(),
            (self.base_w / ASINH_SCALE_W).asinh(),
            (self.sd_w / ASINH_SCALE_W).asinh(),
        ]
    }
}

/// The features of one series: what the attacker extracts from a nickname's readings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesFeatures {
    /// One entry per clock hour touched by the series, in time order.
    pub hours: Vec<HourObs>,
    /// Step-size bin of every rising step of at least [`STEP_MIN_W`].
    pub steps: Vec<u16>,
}

impl SeriesFeatures {
    /// Extracts features from `readings` (W) taken every `interval_min` minutes, the first at
    /// `start_min` minutes after some midnight (only the time of day matters).
    pub fn extract(readings: &[f64], start_min: u64, interval_min: u32) -> SeriesFeatures {
        let step = u64::from(interval_min.max(1));
        let mut hours = Vec::new();
        let mut i = 0;
        while i < readings.len() {
            let clock_hour = (start_min + i as u64 * step) / 60;
            let mut j = i + 1;
            while j < readings.len() && (start_min + j as u64 * step) / 60 == clock_hour {
                j += 1;
            }
            hours.push(hour_obs((clock_hour % 24) as u8, &readings[i..j]));
            i = j;
        }
        let steps = readings
            .windows(2)
            .filter_map(|w| step_bin(w[1] - w[0]))
            .collect();
        SeriesFeatures { hours, steps }
    }
}

fn hour_obs(hour: u8, values: &[f64]) -> HourObs {
    let n = values.len().max(1) as f64;
    let mean_w = values.iter().sum::<f64>() / n;
    let var = values
        .iter()
        .map(|v| (v - mean_w) * (v - mean_w))
        .sum::<f64>()
        / n;
    HourObs {
        hour,
        mean_w,
        base_w: values.iter().copied().fold(f64::INFINITY, f64::min),
        sd_w: var.sqrt(),
    }
}

/// The bin of a rising step, or `None` if it is too small, too large or not a number.
pub fn step_bin(delta_w: f64) -> Option<u16> {
    if !(STEP_MIN_W..STEP_BIN_W * STEP_BINS as f64).contains(&delta_w) {
        return None;
    }
    Some((delta_w / STEP_BIN_W) as u16)
}

/// Which features the classifier uses, from the load shape alone up to appliance signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeatureSet {
    /// Mean load by hour of day only (the classic daily-shape attack).
    Shape,
    /// Plus base load and spread by hour of day.
    Levels,
    /// Plus appliance step sizes.
    Full,
}

impl FeatureSet {
    /// All sets, smallest first, for tables.
    pub const ALL: [FeatureSet; 3] = [FeatureSet::Shape, FeatureSet::Levels, FeatureSet::Full];

    /// Short name for tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureSet::Shape => "shape",
            FeatureSet::Levels => "shape+levels",
            FeatureSet::Full => "shape+levels+steps",
        }
    }

    fn hour_stats(self) -> usize {
        match self {
            FeatureSet::Shape => 1,
            FeatureSet::Levels | FeatureSet::Full => 3,
        }
    }
}

/// What the attacker learned about one house in the training period.
#[derive(Clone, Debug)]
pub struct HouseProfile {
    /// Per hour of day and statistic: (mean, 1/σ, ln σ) in the transformed domain.
    hour_stats: [[(f64, f64, f64); 3]; 24],
    /// Per step bin: ln P(bin | house) − ln P(bin | neighbourhood).
    step_llr: Vec<f32>,
}

/// The attacker: one profile per house, learned from each house's true training-period series.
#[derive(Clone, Debug)]
pub struct Attacker {
    profiles: Vec<HouseProfile>,
}

/// Step counts smoothed with a (¼, ½, ¼) kernel so a ±1-bin jitter still matches.
fn smoothed_step_counts(series: &[SeriesFeatures]) -> Vec<f64> {
    let mut counts = vec![0.0; STEP_BINS];
    for b in series.iter().flat_map(|s| &s.steps) {
        let b = usize::from(*b);
        counts[b] += 0.5;
        counts[b.saturating_sub(1)] += 0.25;
        counts[(b + 1).min(STEP_BINS - 1)] += 0.25;
    }
    counts
}

impl Attacker {
    /// Learns a profile per house from its training series (e.g. one [`SeriesFeatures`] per
    /// training day): `training[h]` belongs to house `h`.
    pub fn train(training: &[Vec<SeriesFeatures>]) -> Attacker {
        let per_house: Vec<Vec<f64>> = training.iter().map(|s| smoothed_step_counts(s)).collect();
        let mut pooled = vec![0.0; STEP_BINS];
        for counts in &per_house {
            for (p, c) in pooled.iter_mut().zip(counts) {
                *p += c;
            }
        }
        let pooled_total: f64 = pooled.iter().sum::<f64>() + 1.0;
        let background: Vec<f64> = pooled
            .iter()
            .map(|c| (c + 1.0 / STEP_BINS as f64) / pooled_total)
            .collect();
        let profiles = training
            .iter()
            .zip(&per_house)
            .map(|(series, counts)| {
                let total: f64 = counts.iter().sum();
                let step_llr = counts
                    .iter()
                    .zip(&background)
                    .map(|(c, bg)| {
                        let p = (c + STEP_PRIOR * bg) / (total + STEP_PRIOR);
                        (p.ln() - bg.ln()) as f32
                    })
                    .collect();
                HouseProfile {
                    hour_stats: hour_stats(series),
                    step_llr,
                }
            })
            .collect();
        Attacker { profiles }
    }

    /// Number of houses the attacker knows.
    pub fn houses(&self) -> usize {
        self.profiles.len()
    }

    /// Log-likelihood score of `series` for every house (higher = more likely that house).
    pub fn scores(&self, series: &SeriesFeatures, set: FeatureSet) -> Vec<f64> {
        let obs: Vec<(usize, [f64; 3])> = series
            .hours
            .iter()
            .map(|o| (usize::from(o.hour) % 24, o.transformed()))
            .collect();
        let k = set.hour_stats();
        self.profiles
            .iter()
            .map(|p| {
                let mut score = 0.0;
                for (hour, x) in &obs {
                    for (stat, (mean, inv_sd, ln_sd)) in p.hour_stats[*hour][..k].iter().enumerate()
                    {
                        let z = (x[stat] - mean) * inv_sd;
                        score -= 0.5 * (z * z).min(Z2_CAP) + ln_sd;
                    }
                }
                if set == FeatureSet::Full {
                    score += series
                        .steps
                        .iter()
                        .map(|b| f64::from(p.step_llr[usize::from(*b)]))
                        .sum::<f64>();
                }
                if score.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    score
                }
            })
            .collect()
    }

    /// Rank (1 = best) of house `truth` for `series`; ties count against the attacker.
    pub fn rank_of(&self, series: &SeriesFeatures, set: FeatureSet, truth: usize) -> usize {
        rank_in(&self.scores(series, set), truth)
    }
}

/// Rank (1 = best) of entry `truth` in `scores`; equal scores count as better, so a classifier
/// that cannot tell houses apart gets no credit for ties.
pub fn rank_in(scores: &[f64], truth: usize) -> usize {
    let own = scores[truth];
    1 + scores
        .iter()
        .enumerate()
        .filter(|(h, s)| *h != truth && **s >= own)
        .count()
}

/// Per hour of day and statistic: mean, inverse spread and log spread over the training hours.
fn hour_stats(series: &[SeriesFeatures]) -> [[(f64, f64, f64); 3]; 24] {
    let mut sum = [[0.0f64; 3]; 24];
    let mut sum2 = [[0.0f64; 3]; 24];
    let mut n = [0.0f64; 24];
    for o in series.iter().flat_map(|s| &s.hours) {
        let h = usize::from(o.hour) % 24;
        n[h] += 1.0;
        for (stat, x) in o.transformed().into_iter().enumerate() {
            sum[h][stat] += x;
            sum2[h][stat] += x * x;
        }
    }
    let mut out = [[(0.0, 1.0, 0.0); 3]; 24];
    for h in 0..24 {
        for stat in 0..3 {
            let count = n[h].max(1.0);
            let mean = sum[h][stat] / count;
            let var = (sum2[h][stat] / count - mean * mean).max(0.0);
            let sd = (var + SD_FLOOR[stat] * SD_FLOOR[stat]).sqrt();
            out[h][stat] = (mean, 1.0 / sd, sd.ln());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_cut_at_clock_hours_with_mean_base_and_spread() {
        // 90 one-minute readings from 23:30: 30 in hour 23, 60 in hour 0 of the next day.
        let readings: Vec<f64> = (0..90)
            .map(|i| {
                if i < 30 {
                    100.0
                } else {
                    200.0 + 100.0 * f64::from(i % 2)
                }
            })
            .collect();
        let f = SeriesFeatures::extract(&readings, 23 * 60 + 30, 1);
        assert_eq!(f.hours.len(), 2);
        assert_eq!(f.hours[0].hour, 23);
        assert_eq!(f.hours[0].mean_w, 100.0);
        assert_eq!(f.hours[0].sd_w, 0.0);
        assert_eq!(f.hours[1].hour, 0);
        assert_eq!(f.hours[1].mean_w, 250.0);
        assert_eq!(f.hours[1].base_w, 200.0);
        assert_eq!(f.hours[1].sd_w, 50.0);
    }

    #[test]
    fn coarser_intervals_group_by_the_reading_time() {
        // Half-hourly readings from 10:00: two per hour.
        let f = SeriesFeatures::extract(&[1.0, 3.0, 5.0, 7.0, 9.0], 600, 30);
        let hours: Vec<(u8, f64)> = f.hours.iter().map(|o| (o.hour, o.mean_w)).collect();
        assert_eq!(hours, vec![(10, 2.0), (11, 6.0), (12, 9.0)]);
    }

    #[test]
    fn only_rising_steps_in_range_are_counted() {
        // Kettle on (+2800 W), off (−2800 W), a 40 W wobble, then a fridge (+100 W).
        let f = SeriesFeatures::extract(&[200.0, 3000.0, 200.0, 240.0, 340.0], 0, 1);
        assert_eq!(f.steps, vec![140, 5]);
        assert_eq!(step_bin(59.0), None);
        assert_eq!(step_bin(60.0), Some(3));
        assert_eq!(step_bin(12_000.0), None);
        assert_eq!(step_bin(f64::NAN), None);
    }

    #[test]
    fn ranks_count_ties_against_the_attacker() {
        assert_eq!(rank_in(&[1.0, 3.0, 2.0], 1), 1);
        assert_eq!(rank_in(&[1.0, 3.0, 2.0], 0), 3);
        assert_eq!(rank_in(&[5.0, 5.0, 5.0], 2), 3);
        assert_eq!(rank_in(&[f64::NEG_INFINITY, 0.0], 0), 2);
    }

    /// Two synthetic houses, one with an evening peak and a 2 kW kettle, one flat with a 3 kW
    /// kettle: each is recognised by shape alone and by its steps alone.
    #[test]
    fn attacker_tells_apart_distinct_houses() {
        let day = |evening: f64, kettle: f64, wobble: f64| -> Vec<f64> {
            (0..1440)
                .map(|m| {
                    let base = if (1080..1320).contains(&m) {
                        evening
                    } else {
                        150.0
                    };
                    base + wobble * f64::from(m % 7) + if m % 300 == 1 { kettle } else { 0.0 }
                })
                .collect()
        };
        let train = |evening, kettle| -> Vec<SeriesFeatures> {
            (0..3)
                .map(|d| SeriesFeatures::extract(&day(evening, kettle, f64::from(d)), 0, 1))
                .collect()
        };
        let attacker = Attacker::train(&[train(1500.0, 2000.0), train(150.0, 3000.0)]);
        assert_eq!(attacker.houses(), 2);
        let evening_house = SeriesFeatures::extract(&day(1500.0, 2000.0, 1.5)[1000..1400], 1000, 1);
        let flat_house = SeriesFeatures::extract(&day(150.0, 3000.0, 1.5)[1000..1400], 1000, 1);
        for set in FeatureSet::ALL {
            assert_eq!(attacker.rank_of(&evening_house, set, 0), 1, "{set:?}");
            assert_eq!(attacker.rank_of(&flat_house, set, 1), 1, "{set:?}");
        }
        // The steps alone: a night-time slice with identical shape but each house's kettle.
        let night = |kettle| SeriesFeatures {
            hours: Vec::new(),
            steps: vec![step_bin(kettle).unwrap_or(0); 3],
        };
        let s = attacker.scores(&night(2000.0), FeatureSet::Full);
        assert!(s[0] > s[1], "{s:?}");
        let s = attacker.scores(&night(3000.0), FeatureSet::Full);
        assert!(s[1] > s[0], "{s:?}");
    }
}
