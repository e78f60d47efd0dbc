//! Scores every detector on a scenario the way issue #13 asks: the transformer rated at the
//! clean run's 30-minute ADMD, precision and recall with 95 % intervals on the faulty run,
//! false alerts per day on the same neighbourhood without faults, and the ramp warning's lead.
//!
//! `cargo run --release -p gridmuc-sim --example score_detectors -- simulations/detectors-street.toml [seed…]`

use gridmuc_sim::eval::proportion_ci;
use gridmuc_sim::{Scenario, SimOutput, run};
use std::collections::BTreeMap;

/// Per detector over all seeds: windows, detected, alerts, true alerts, clean alerts, least lead (s).
type Sums = (usize, usize, usize, usize, usize, Option<f64>);

/// The highest mean of the physical total over `window` consecutive intervals (W).
fn admd(out: &SimOutput, window: usize) -> f64 {
    let totals: Vec<f64> = out
        .intervals
        .iter()
        .map(|r| r.true_total_w as f64)
        .collect();
    totals
        .windows(window.max(1))
        .map(|w| w.iter().sum::<f64>() / w.len() as f64)
        .fold(0.0, f64::max)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: score_detectors <scenario.toml> [seed…]")?;
    let text = std::fs::read_to_string(&path)?;
    let base = Scenario::from_toml_str(&text)?;
    let seeds: Vec<u64> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    let seeds = if seeds.is_empty() {
        vec![base.seed]
    } else {
        seeds
    };
    let mut sums: BTreeMap<String, Sums> = BTreeMap::new();
    let mut clean_days = 0u32;
    for seed in seeds {
        let mut clean = base.clone();
        clean.seed = seed;
        clean.anomalies.clear();
        let clean_out = run(&clean, |_| {});
        let per_30 = (30 * 60_000 / clean.detectors.interval).max(1) as usize;
        let rating_kw = admd(&clean_out, per_30) / 1000.0;
        clean.transformer_kw = rating_kw;
        clean.detectors.overload.rating = gridmuc_core::Watts::from_kw(rating_kw);
        let clean_out = run(&clean, |_| {});
        let mut faulty = base.clone();
        faulty.seed = seed;
        faulty.transformer_kw = rating_kw;
        faulty.detectors.overload.rating = clean.detectors.overload.rating;
        let out = run(&faulty, |_| {});
        println!(
            "seed {seed}: {} houses × {} days, rated at the clean 30-min ADMD {rating_kw:.1} kW",
            out.houses, out.days
        );
        clean_days += clean_out.days;
        for (s, c) in out.scores.iter().zip(&clean_out.scores) {
            let e = sums.entry(s.detector.clone()).or_default();
            e.0 += s.windows;
            e.1 += s.detected;
            e.2 += s.alerts;
            e.3 += s.true_alerts;
            e.4 += c.alerts;
            e.5 = match (e.5, s.min_lead_s) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        for l in out.labels.iter().filter(|l| l.kind.as_str() == "load-ramp") {
            let start = out.start.0 + i64::from(l.start_min) * 60_000;
            let end = out.start.0 + i64::from(l.end_min()) * 60_000;
            let crossing = out
                .intervals
                .iter()
                .find(|r| (start..end).contains(&r.start.0) && r.true_total_w > out.rating_w)
                .map(|r| r.start.0);
            let warned = out
                .alerts
                .iter()
                .find(|a| {
                    a.kind == gridmuc_core::AlertKind::Overload
                        && (start..end + 3_600_000).contains(&a.emitted.0)
                })
                .map(|a| a.emitted.0);
            let peak = out
                .intervals
                .iter()
                .filter(|r| (start..end).contains(&r.start.0))
                .map(|r| r.true_total_w)
                .max()
                .unwrap_or(0);
            println!(
                "  ramp at {}: peak {:.2} × rating, crosses the rating {}, first overload alert {}",
                gridmuc_core::Timestamp(start),
                peak as f64 / out.rating_w as f64,
                crossing.map_or("never".into(), |c| format!(
                    "{} min in",
                    (c - start) / 60_000
                )),
                match (warned, crossing) {
                    (Some(w), Some(c)) => format!("{} min before crossing", (c - w) / 60_000),
                    (Some(w), None) => format!("{} min in", (w - start) / 60_000),
                    (None, _) => "none".into(),
                }
            );
        }
    }
    println!();
    println!(
        "| detector | windows | recall (95 % CI) | alerts | precision (95 % CI) | false alerts/day, clean | least ramp/overload lead |"
    );
    println!("|---|---:|---|---:|---|---:|---:|");
    let ci = |k, n| {
        proportion_ci(k, n).map_or("–".into(), |(lo, hi)| {
            format!("{:.2} ({lo:.2}–{hi:.2})", k as f64 / n as f64)
        })
    };
    for (d, (w, det, a, t, clean, lead)) in &sums {
        println!(
            "| {d} | {w} | {} | {a} | {} | {:.3} | {} |",
            ci(*det, *w),
            ci(*t, *a),
            *clean as f64 / f64::from(clean_days.max(1)),
            lead.map_or("–".into(), |l| format!("{:.0} min", l / 60.0)),
        );
    }
    Ok(())
}
