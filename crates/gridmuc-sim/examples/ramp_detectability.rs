//! Could any detector that looks at the load's level or its recent trend warn of issue #13's
//! ramps 30 minutes before they cross the rating, at under 0.1 false alerts a day? For each ramp,
//! at the last interval that closes 30 minutes before each of the scorer's two crossings
//! (`gridmuc_sim::eval::ramp_crossings`), it measures what the overload detector sees, on its own
//! time-of-week baseline (learnt from the reported totals as `StreetDetectors` learns it):
//!
//! - `k`: the load factor (reported total / rating), mean of the last 15 minutes;
//! - `excess`: the load's excess over its usual level, in rating, mean of the last 15 minutes;
//! - `e60`: the same over the last 60 minutes, what a cumulative (CUSUM-like) detector weighs;
//! - `z`: that excess in units of the slot's usual spread (the baseline's mean absolute deviation);
//! - `s30`, `s60`: the Theil–Sen slope of 5-minute means of the excess over the last 30 and 60
//!   minutes, in rating per hour;
//! - `fcst`: the load factor forecast for the crossing's instant, the usual level then plus
//!   `excess` plus half an hour of `s60`: the overload forecast's form without the thermal model;
//! - `hot`: the IEC 60076-7 hot spot (°C) the detector's model has reached, a thermally weighted level.
//!
//! and how often the clean twin (same street and rating, no faults) reaches as much: the number
//! of times a day a threshold set at exactly the ramp's value would fire, counted as the alert
//! policy merges findings. The threshold is the ramp's own and its instant the most favourable
//! one, so this is the most any such detector could do: each cell shows a feature's highest value
//! in the span and the clean rate at it; `k&s60`, `excess&s60`, `z&s60` need both at once; `best`
//! is the quietest of all. A ramp whose `best` is 0.1 a day or more cannot be told from the clean
//! street by level or trend that early. The pooled table asks the same of one threshold for all
//! ramps: the clean runs of all seeds together, ramps taken in order of the feature.
//!
//! `cargo run --release -p gridmuc-sim --example ramp_detectability -- simulations/detectors-street.toml 13 14 15 16 17 18`

use gridmuc_core::baseline::WeeklyBaseline;
use gridmuc_core::thermal::HotSpotModel;
use gridmuc_core::time::{DAY, MINUTE, Millis};
use gridmuc_sim::eval::{policy_gap, ramp_crossings};
use gridmuc_sim::{Scenario, SimOutput, run};

/// Span of the level features.
const LEVEL: Millis = 15 * MINUTE;
/// Blocks the slopes are fitted on, as the overload detector's `trend_block`.
const BLOCK: Millis = 5 * MINUTE;
/// How long before the crossing the goal wants the warning.
const LEAD: Millis = 30 * MINUTE;

/// Feature names, in the order of [`Features`].
const NAMES: [&str; 8] = ["k", "excess", "e60", "z", "s30", "s60", "fcst", "hot"];
/// Index of `s60` in [`NAMES`].
const S60: usize = 5;
/// Levels paired with `s60`: `k`, `excess`, `z`.
const PAIRED: [usize; 3] = [0, 1, 3];
/// Detectors compared: each feature alone, then each of [`PAIRED`] with `s60`.
const DETECTORS: usize = NAMES.len() + PAIRED.len();

/// What a level-or-trend detector could see at the end of one interval, in [`NAMES`]' order.
type Features = [f64; NAMES.len()];

/// Which detectors set at `at` fire on `f`.
fn at_least(f: &Features, at: &Features) -> [bool; DETECTORS] {
    let mut fires = [false; DETECTORS];
    for i in 0..NAMES.len() {
        fires[i] = f[i] >= at[i];
    }
    for (j, p) in PAIRED.iter().enumerate() {
        fires[NAMES.len() + j] = fires[*p] && fires[S60];
    }
    fires
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Theil–Sen slope (per hour) of `(minute, value)` points.
fn sen_slope(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::new();
    for (i, (ti, xi)) in points.iter().enumerate() {
        for (tj, xj) in &points[i + 1..] {
            slopes.push((xj - xi) / (tj - ti) * 60.0);
        }
    }
    median(slopes)
}

/// The features at the end of every interval of a run, once the baseline answers for the
/// whole 60 minutes before it.
fn features(out: &SimOutput, scenario: &Scenario) -> Vec<Option<Features>> {
    let cfg = &scenario.detectors;
    let rating = out.rating_w.max(1) as f64;
    let mut baseline = WeeklyBaseline::new(cfg.baseline.clone(), out.interval);
    // (minute at the interval's end, load factor, excess in rating, excess in usual spreads)
    let mut seen: Vec<Option<(f64, f64, f64, f64)>> = Vec::with_capacity(out.intervals.len());
    // The usual load factor 30 minutes after each interval's end, as known then.
    let mut ahead: Vec<Option<f64>> = Vec::with_capacity(out.intervals.len());
    let mut model: Option<HotSpotModel> = None;
    let mut hot = Vec::with_capacity(out.intervals.len());
    for r in &out.intervals {
        let end = r.start.plus(out.interval);
        let x = r.reported_total_w as f64;
        let m = model
            .get_or_insert_with(|| HotSpotModel::steady(cfg.overload.thermal.clone(), x / rating));
        m.advance(x / rating, out.interval as f64 / MINUTE as f64);
        hot.push(m.hot_spot());
        seen.push(baseline.expected(end.plus(-1)).map(|e| {
            (
                end.0 as f64 / MINUTE as f64,
                x / rating,
                (x - e.mean) / rating,
                (x - e.mean) / e.abs_dev.max(1.0),
            )
        }));
        ahead.push(
            baseline
                .expected(end.plus(LEAD - 1))
                .map(|e| e.mean / rating),
        );
        baseline.update(r.start, x);
    }
    let per = |span: Millis| (span / out.interval.max(1)).max(1) as usize;
    let (level, block, hour) = (per(LEVEL), per(BLOCK), per(60 * MINUTE));
    let slope = |window: &[Option<(f64, f64, f64, f64)>]| {
        let points: Vec<(f64, f64)> = window
            .chunks(block)
            .map(|c| {
                let n = c.len() as f64;
                c.iter()
                    .flatten()
                    .fold((0.0, 0.0), |(t, x), s| (t + s.0 / n, x + s.2 / n))
            })
            .collect();
        sen_slope(&points)
    };
    let mut features = Vec::with_capacity(seen.len());
    for (i, ahead) in ahead.iter().enumerate() {
        let window = (i + 1)
            .checked_sub(hour)
            .map(|from| &seen[from..=i])
            .filter(|w| w.iter().all(Option::is_some));
        let (Some(window), Some(ahead)) = (window, ahead) else {
            features.push(None);
            continue;
        };
        let mean = |span: usize, f: fn(&(f64, f64, f64, f64)) -> f64| {
            let last = &window[window.len() - span.min(window.len())..];
            last.iter().flatten().map(f).sum::<f64>() / last.len() as f64
        };
        let excess = mean(level, |s| s.2);
        let s60 = slope(window);
        features.push(Some([
            mean(level, |s| s.1),
            excess,
            mean(hour, |s| s.2),
            mean(level, |s| s.3),
            slope(&window[window.len() - per(30 * MINUTE).min(window.len())..]),
            s60,
            ahead + excess + s60 * LEAD as f64 / (60 * MINUTE) as f64,
            hot[i],
        ]));
    }
    features
}

/// A clean run's features and what it takes to count events on it.
struct Clean {
    features: Vec<Option<Features>>,
    gap: usize,
    days: f64,
}

impl Clean {
    /// How many times a day each detector set at `at` fires on the clean run, merged as the
    /// policy merges findings less than its quiet time apart.
    fn events(&self, at: &Features) -> [usize; DETECTORS] {
        let mut events = [0usize; DETECTORS];
        let mut last: [Option<usize>; DETECTORS] = [None; DETECTORS];
        for (i, f) in self.features.iter().enumerate() {
            let Some(f) = f else { continue };
            for (d, holds) in at_least(f, at).into_iter().enumerate() {
                if holds {
                    if last[d].is_none_or(|l| i > l + self.gap) {
                        events[d] += 1;
                    }
                    last[d] = Some(i);
                }
            }
        }
        events
    }
}

/// One ramp read at one crossing.
struct Row {
    seed: u64,
    label: String,
    crossing_min: i64,
    /// What the ramp itself had added 30 minutes before the crossing, in rating.
    added: f64,
    /// `None` when the baseline has not learnt the hour before (the first days).
    at: Option<Features>,
    per_day: [f64; DETECTORS],
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ramp_detectability <scenario.toml> [seed…]";
    let base = Scenario::from_toml_str(&std::fs::read_to_string(args.next().ok_or(usage)?)?)?;
    let seeds: Vec<u64> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    let seeds = if seeds.is_empty() {
        vec![base.seed]
    } else {
        seeds
    };
    let run = |s: &Scenario| run(s, |_| {});
    // Rows for the first interval above the rating, then for the centred 30-minute mean.
    let mut rows: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
    let mut cleans = Vec::new();
    for seed in seeds {
        let (faulty, clean) = base.rated_at_clean_admd(seed, run);
        let (out, clean_out) = (run(&faulty), run(&clean));
        let gap = policy_gap(&faulty.detectors.policy, out.interval);
        let clean_features = features(&clean_out, &clean);
        let defined = clean_features.iter().flatten().count();
        let clean = Clean {
            features: clean_features,
            gap: (gap / out.interval.max(1)) as usize,
            days: defined as f64 * out.interval as f64 / DAY as f64,
        };
        let faulty_features = features(&out, &faulty);
        for r in ramp_crossings(&out, faulty.intervals_per_30_min()) {
            for (n, crossing) in [r.first_interval, r.centred_mean].into_iter().enumerate() {
                let Some(c) = crossing else { continue };
                // A threshold warns in time if the ramp reaches it at any interval that closes
                // between the ramp's start and 30 minutes before the crossing: the quietest
                // detector over those instants, and each feature's highest value among them.
                let span: Vec<Features> = out
                    .intervals
                    .iter()
                    .zip(&faulty_features)
                    .filter(|(x, _)| (r.start..=c - LEAD).contains(&(x.start.0 + out.interval)))
                    .filter_map(|(_, f)| *f)
                    .collect();
                let at = span.iter().copied().reduce(|a, b| {
                    let mut m = a;
                    for (m, b) in m.iter_mut().zip(b) {
                        *m = m.max(b);
                    }
                    m
                });
                let mut events = [usize::MAX; DETECTORS];
                for f in &span {
                    for (e, n) in events.iter_mut().zip(clean.events(f)) {
                        *e = (*e).min(n);
                    }
                }
                rows[n].push(Row {
                    seed,
                    label: gridmuc_core::Timestamp(r.start).to_string(),
                    crossing_min: (c - r.start) / MINUTE,
                    added: r.extra_w * r.houses as f64 * ((c - LEAD - r.start) as f64)
                        / (r.end - r.start).max(1) as f64
                        / out.rating_w.max(1) as f64,
                    at,
                    per_day: events.map(|e| e as f64 / clean.days),
                });
            }
        }
        cleans.push(clean);
    }
    let pooled_days: f64 = cleans.iter().map(|c| c.days).sum();
    println!(
        "## The clean streets: events a day at or above a level ({pooled_days:.0} days, all seeds)"
    );
    println!();
    println!("| feature | 0.05 | 0.1 | 0.15 | 0.2 | 0.25 | 0.3 | 0.4 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (d, name) in NAMES
        .iter()
        .enumerate()
        .filter(|(d, _)| [1, 2, 4, S60].contains(d))
    {
        let cells: Vec<String> = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4]
            .iter()
            .map(|v| {
                let mut at = [f64::NEG_INFINITY; NAMES.len()];
                at[d] = *v;
                let n: usize = cleans.iter().map(|c| c.events(&at)[d]).sum();
                format!("{:.2}", n as f64 / pooled_days)
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!();
    for (rows, name) in rows.iter().zip([
        "first interval above the rating",
        "centred 30-minute mean above the rating",
    ]) {
        println!("## 30 minutes before the {name}");
        println!();
        println!(
            "Each feature: its highest value from the ramp's start to 30 minutes before the crossing, then (its clean twin's events a day at or above it); pairs and best: the quietest instant. ramp added: the ramp's own load 30 minutes before the crossing; it, k, excess, e60, fcst in rating; s30, s60 in rating an hour; z in usual spreads; hot in °C."
        );
        println!();
        let paired: Vec<String> = PAIRED
            .iter()
            .map(|p| format!("{}&s60", NAMES[*p]))
            .collect();
        println!(
            "| seed | ramp start | crossing | ramp added | {} | {} | best |",
            NAMES.join(" | "),
            paired.join(" | ")
        );
        println!(
            "|---|---|---:|---:|{}{}---:|",
            "---|".repeat(NAMES.len()),
            "---:|".repeat(PAIRED.len())
        );
        for r in rows {
            let cells = match r.at {
                None => "no baseline yet | ".repeat(DETECTORS) + "–",
                Some(at) => {
                    let best = r.per_day.iter().copied().fold(f64::INFINITY, f64::min);
                    (0..NAMES.len())
                        .map(|d| format!("{:.2} ({:.2})", at[d], r.per_day[d]))
                        .chain((NAMES.len()..DETECTORS).map(|d| format!("{:.2}", r.per_day[d])))
                        .chain(std::iter::once(format!("{best:.2}")))
                        .collect::<Vec<_>>()
                        .join(" | ")
                }
            };
            println!(
                "| {} | {} | {} min in | {:.2} | {cells} |",
                r.seed, r.label, r.crossing_min, r.added
            );
        }
        let separable: Vec<String> = rows
            .iter()
            .filter(|r| r.at.is_some() && r.per_day.iter().any(|p| *p < 0.1))
            .map(|r| format!("{} {}", r.seed, r.label))
            .collect();
        println!();
        println!(
            "ramps some level-or-trend threshold at the ramp's own value separates from its clean twin (< 0.1 a day): {} of {} ({})",
            separable.len(),
            rows.len(),
            separable.join(", ")
        );
        // One threshold for all ramps: lower it ramp by ramp in order of the feature and count
        // the clean runs' events a day over all seeds.
        println!();
        println!(
            "One threshold for all seeds' ramps (clean runs pooled, {pooled_days:.0} days): the most ramps one feature warns at < 0.1 a day, and what warning one more would cost."
        );
        println!();
        println!(
            "| feature | ramps warned | threshold | clean events a day | with one more ramp |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (d, name) in NAMES.iter().enumerate() {
            let mut order: Vec<Features> = rows.iter().filter_map(|r| r.at).collect();
            order.sort_by(|a, b| b[d].total_cmp(&a[d]));
            let rate = |at: &Features| {
                cleans.iter().map(|c| c.events(at)[d]).sum::<usize>() as f64 / pooled_days
            };
            let (mut warned, mut threshold, mut quiet, mut next) = (0, f64::NAN, 0.0, f64::NAN);
            for at in &order {
                let p = rate(at);
                if p >= 0.1 {
                    next = p;
                    break;
                }
                (warned, threshold, quiet) = (warned + 1, at[d], p);
            }
            println!(
                "| {name} | {warned} of {} | {} | {quiet:.3} | {} |",
                rows.len(),
                if warned == 0 {
                    "–".into()
                } else {
                    format!("{threshold:.2}")
                },
                if next.is_nan() {
                    "–".into()
                } else {
                    format!("{next:.2}")
                },
            );
        }
        println!();
    }
    Ok(())
}
