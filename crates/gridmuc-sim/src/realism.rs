//! The figures that say whether simulated houses look like measured ones: energy, percentiles,
//! peak ÷ mean, seasonality, daily shape, load-duration curve and after-diversity maximum demand,
//! computed the same way on simulated and on real [`Traces`].

use crate::MINUTES_PER_DAY;
use crate::calendar::civil_from_days;
use crate::household::HouseholdConfig;
use crate::neighbourhood::Neighbourhood;
use crate::traces::Traces;
use crate::weather::WeatherConfig;
use gridmuc_core::Timestamp;
use gridmuc_core::time::{DAY, MINUTE, Millis};

/// Half-hours in a day: the daily shape's resolution, as in the UK settlement data.
pub const HALF_HOURS: usize = 48;

/// Seasons by meteorological months, for the per-season daily shapes.
pub const SEASONS: [&str; 4] = [
    "winter (DJF)",
    "spring (MAM)",
    "summer (JJA)",
    "autumn (SON)",
];

/// Pooled percentiles reported for single houses.
pub const PERCENTILES: [f64; 6] = [1.0, 10.0, 50.0, 90.0, 99.0, 99.9];

/// Points of the load-duration curve (share of time, %).
pub const LDC_POINTS: [f64; 9] = [0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 100.0];

/// One data set's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Realism {
    /// Houses.
    pub houses: usize,
    /// Days covered.
    pub days: f64,
    /// Resolution of the traces.
    pub step: Millis,
    /// Annual energy per house (kWh), scaled to 365 days: min, median, max over houses.
    pub annual_kwh: [f64; 3],
    /// Mean power per house (W).
    pub mean_w: f64,
    /// Pooled percentiles of single-house period means (W), at [`PERCENTILES`].
    pub percentiles_w: Vec<f64>,
    /// Median over houses of each house's 1st percentile (W): the always-on load.
    pub baseload_w: f64,
    /// Median over houses of each house's highest period ÷ its mean.
    pub peak_over_mean: f64,
    /// Highest single-house period mean (W).
    pub max_house_w: f64,
    /// Mean load in December–February ÷ mean load in June–August.
    pub winter_over_summer: f64,
    /// Highest half-hour between 16:00 and 22:00 of the mean summer day ÷ that day's mean.
    pub summer_evening_peak_over_mean: f64,
    /// Mean daily shape per season (W per house, per half-hour), for correlations.
    pub shapes: [[f64; HALF_HOURS]; 4],
    /// The street's (mean over houses) load-duration curve ÷ its mean, at [`LDC_POINTS`].
    pub ldc: Vec<f64>,
    /// Share of one house's periods whose reading, quantised to the codec's 10 W, repeats the
    /// previous one: what a stuck-meter detector must not mistake for a fault.
    pub repeat_share: f64,
    /// Longest run of one quantised reading of any house (minutes), and that reading (W).
    pub longest_repeat: (f64, f64),
}

/// Repeats of the previous 10 W-quantised reading, and the longest run (periods, reading) of one row.
fn repeats(row: &[f32]) -> (usize, (usize, f64)) {
    let q: Vec<i64> = row
        .iter()
        .map(|w| {
            if w.is_nan() {
                i64::MIN
            } else {
                (w / 10.0).round() as i64 * 10
            }
        })
        .collect();
    let (mut same, mut run, mut longest) = (0, 1, (1, f64::NAN));
    for pair in q.windows(2) {
        run = if pair[1] == pair[0] && pair[0] != i64::MIN {
            same += 1;
            run + 1
        } else {
            1
        };
        if run > longest.0 {
            longest = (run, pair[1] as f64);
        }
    }
    (same, longest)
}

fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn season_of(t: Timestamp) -> usize {
    let (_, month, _) = civil_from_days(t.0.div_euclid(DAY));
    (month as usize % 12) / 3
}

/// Computes every figure of one data set.
pub fn measure(t: &Traces) -> Realism {
    let periods = t.periods();
    let at = |p: usize| Timestamp(t.start.0 + p as i64 * t.step);
    let mut pooled: Vec<f32> = Vec::with_capacity(t.houses.len() * periods);
    let (mut baseloads, mut peaks, mut annual) = (Vec::new(), Vec::new(), Vec::new());
    let mut max_house = f64::MIN;
    let (mut same, mut longest) = (0usize, (0usize, f64::NAN));
    for row in &t.watts {
        let (s, l) = repeats(row);
        same += s;
        if l.0 > longest.0 {
            longest = l;
        }
        let mut v: Vec<f32> = row.iter().copied().filter(|w| !w.is_nan()).collect();
        if v.is_empty() {
            continue;
        }
        let mean = v.iter().map(|w| f64::from(*w)).sum::<f64>() / v.len() as f64;
        annual.push(mean * 8.76);
        v.sort_by(f32::total_cmp);
        baseloads.push(percentile(&v, 1.0));
        let max = f64::from(v[v.len() - 1]);
        max_house = max_house.max(max);
        peaks.push(max / mean);
        pooled.extend_from_slice(&v);
    }
    pooled.sort_by(f32::total_cmp);
    let mut sums = [[0f64; HALF_HOURS]; 4];
    let mut counts = [[0u64; HALF_HOURS]; 4];
    let mut street = Vec::with_capacity(periods);
    for p in 0..periods {
        let (mut sum, mut n) = (0f64, 0u32);
        for row in &t.watts {
            if !row[p].is_nan() {
                sum += f64::from(row[p]);
                n += 1;
            }
        }
        if n == 0 {
            continue;
        }
        let mean = sum / f64::from(n);
        street.push(mean);
        let ts = at(p);
        let half_hour = (ts.0.rem_euclid(DAY) / (30 * MINUTE)) as usize;
        sums[season_of(ts)][half_hour] += mean;
        counts[season_of(ts)][half_hour] += 1;
    }
    let mut shapes = [[0f64; HALF_HOURS]; 4];
    for s in 0..4 {
        for h in 0..HALF_HOURS {
            shapes[s][h] = sums[s][h] / counts[s][h].max(1) as f64;
        }
    }
    let season_mean = |s: usize| shapes[s].iter().sum::<f64>() / HALF_HOURS as f64;
    let summer = &shapes[2];
    let evening_peak = summer[32..44].iter().copied().fold(f64::MIN, f64::max);
    let street_mean = street.iter().sum::<f64>() / street.len().max(1) as f64;
    let mut ldc_sorted = street.clone();
    ldc_sorted.sort_by(|a, b| b.total_cmp(a));
    let ldc = LDC_POINTS
        .iter()
        .map(|p| {
            let i = ((p / 100.0) * (ldc_sorted.len().max(1) - 1) as f64).round() as usize;
            ldc_sorted.get(i).map_or(f64::NAN, |v| v / street_mean)
        })
        .collect();
    Realism {
        houses: t.houses.len(),
        days: periods as f64 * t.step as f64 / DAY as f64,
        step: t.step,
        annual_kwh: {
            annual.sort_by(f64::total_cmp);
            [
                annual.first().copied().unwrap_or(f64::NAN),
                median(annual.clone()),
                annual.last().copied().unwrap_or(f64::NAN),
            ]
        },
        mean_w: pooled.iter().map(|w| f64::from(*w)).sum::<f64>() / pooled.len().max(1) as f64,
        percentiles_w: PERCENTILES
            .iter()
            .map(|p| percentile(&pooled, *p))
            .collect(),
        baseload_w: median(baseloads),
        peak_over_mean: median(peaks),
        max_house_w: max_house,
        winter_over_summer: season_mean(0) / season_mean(2),
        summer_evening_peak_over_mean: evening_peak / season_mean(2),
        shapes,
        ldc,
        repeat_share: same as f64 / (t.houses.len() * periods.saturating_sub(1)).max(1) as f64,
        longest_repeat: (longest.0 as f64 * t.step as f64 / MINUTE as f64, longest.1),
    }
}

/// Pearson correlation of two daily shapes.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// After-diversity maximum demand of the first `n` houses: the highest `window` mean of their
/// summed load, per house (W). Periods where a house has no value count it as absent.
pub fn admd_w(t: &Traces, n: usize, window: Millis) -> f64 {
    let n = n.min(t.houses.len());
    let per = (window / t.step).max(1) as usize;
    let totals: Vec<f64> = (0..t.periods())
        .map(|p| {
            t.watts[..n]
                .iter()
                .map(|row| f64::from(row[p]))
                .filter(|w| !w.is_nan())
                .sum()
        })
        .collect();
    totals
        .chunks_exact(per)
        .map(|c| c.iter().sum::<f64>() / per as f64)
        .fold(f64::MIN, f64::max)
        / n.max(1) as f64
}

/// A simulated street as [`Traces`] at `step`, with what only a model can count.
#[derive(Clone, Debug)]
pub struct SimulatedStreet {
    /// Per-house period means.
    pub traces: Traces,
    /// Kettle boils per kettle-owning house per day.
    pub kettle_per_day: f64,
    /// Highest one-minute load of any house (W): what a fuse sees.
    pub max_minute_w: f64,
}

/// Simulates `houses` houses for `days` days from `start_day` and averages to `step`.
pub fn simulate_street(
    config: &HouseholdConfig,
    houses: usize,
    days: u32,
    start_day: i64,
    seed: u64,
    step: Millis,
) -> SimulatedStreet {
    let mut nb = Neighbourhood::new(
        config,
        WeatherConfig::default(),
        houses,
        start_day,
        seed,
        &[],
    );
    let per = (step / MINUTE).max(1) as usize;
    let periods_per_day = MINUTES_PER_DAY / per;
    let mut watts = vec![Vec::with_capacity(days as usize * periods_per_day); houses];
    let mut max_minute = f64::MIN;
    for _ in 0..days {
        let day = nb.next_day();
        for (h, row) in watts.iter_mut().enumerate() {
            let minutes = day.house(h);
            for chunk in minutes.chunks_exact(per) {
                row.push(chunk.iter().sum::<f32>() / per as f32);
            }
            max_minute = minutes.iter().fold(max_minute, |m, w| m.max(f64::from(*w)));
        }
    }
    let (boils, kettles) = nb
        .appliance_starts()
        .filter(|(name, _)| *name == "kettle")
        .fold((0u64, 0u64), |(b, k), (_, n)| (b + n, k + 1));
    SimulatedStreet {
        traces: Traces {
            start: Timestamp(start_day * DAY),
            step,
            houses: (0..houses).map(|h| format!("sim-{h}")).collect(),
            watts,
        },
        kettle_per_day: boils as f64 / kettles.max(1) as f64 / f64::from(days.max(1)),
        max_minute_w: max_minute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::days_from_civil;

    #[test]
    fn figures_of_a_known_trace() {
        // Two houses, one year at 30 minutes: 100 W always, plus 1 kW from 18:00 to 19:00 in
        // winter months for house 0.
        let start = days_from_civil(2026, 1, 1);
        let periods = 365 * 48;
        let at = |p: usize| Timestamp(start * DAY + p as i64 * 30 * MINUTE);
        let row0: Vec<f32> = (0..periods)
            .map(|p| {
                let hh = p % 48;
                let winter = season_of(at(p)) == 0;
                100.0
                    + if winter && (36..38).contains(&hh) {
                        1000.0
                    } else {
                        0.0
                    }
            })
            .collect();
        let t = Traces {
            start: Timestamp(start * DAY),
            step: 30 * MINUTE,
            houses: vec!["a".into(), "b".into()],
            watts: vec![row0, vec![100.0; periods]],
        };
        let r = measure(&t);
        assert_eq!(r.houses, 2);
        assert_eq!(r.percentiles_w[0], 100.0);
        assert_eq!(r.baseload_w, 100.0);
        assert_eq!(r.max_house_w, 1100.0);
        assert!((r.annual_kwh[0] - 876.0).abs() < 1e-6);
        assert_eq!(r.summer_evening_peak_over_mean, 1.0);
        // Winter: 100 W plus 1 kW × 2 of 48 half-hours for one of two houses.
        let winter = 100.0 + 1000.0 * 2.0 / 48.0 / 2.0;
        assert!((r.winter_over_summer - winter / 100.0).abs() < 1e-9);
        assert_eq!(admd_w(&t, 2, 30 * MINUTE), 600.0);
        assert_eq!(admd_w(&t, 1, 60 * MINUTE), 1100.0);
        assert!((correlation(&r.shapes[0], &r.shapes[0]) - 1.0).abs() < 1e-12);
    }
}
