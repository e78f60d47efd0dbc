//! Scores every detector on a scenario the way issue #13 asks: the transformer rated at the
//! clean run's 30-minute ADMD, precision and recall with 95 % intervals on the faulty run,
//! false alerts per day on the same neighbourhood without faults, and the ramp warning's lead.
//!
//! `cargo run --release -p gridmuc-sim --example score_detectors -- simulations/detectors-street.toml [seed…]`
//! `… -- --replay <traces.csv> <plan.toml> <houses> <days> [seed…]` scores replayed real traces
//! (long CSV, London or SimBench's LoadProfile.csv) with the plan's injected faults instead.

use gridmuc_sim::eval::proportion_ci;
use gridmuc_sim::scenario::ReplayPlan;
use gridmuc_sim::traces::{SimBenchHouses, TraceBuilder, Traces};
use gridmuc_sim::{Scenario, SimOutput, replay, run};
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

/// Reads `houses` houses of a trace file and the replay scenario of `plan` over `days` days.
fn replayed(
    path: &str,
    plan: &str,
    houses: usize,
    days: u32,
) -> Result<(Traces, Scenario), Box<dyn std::error::Error>> {
    let mut builder = TraceBuilder::new(
        SimBenchHouses {
            houses,
            ..SimBenchHouses::default()
        },
        houses,
    );
    for (i, line) in std::fs::read_to_string(path)?.lines().enumerate() {
        builder.push_line(i + 1, line)?;
    }
    let traces = builder.finish()?;
    let first = traces.start.0.div_euclid(gridmuc_core::time::DAY)
        + i64::from(traces.start.0.rem_euclid(gridmuc_core::time::DAY) != 0);
    let (y, m, d) = gridmuc_sim::calendar::civil_from_days(first);
    let scenario = ReplayPlan::from_toml_str(&std::fs::read_to_string(plan)?)?.scenario_for(
        traces.houses.len(),
        days.min(traces.whole_days()),
        format!("{y:04}-{m:02}-{d:02}"),
        u32::try_from(traces.step / gridmuc_core::time::MINUTE)?,
        100.0,
    )?;
    Ok((traces, scenario))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let usage = "usage: score_detectors <scenario.toml> [seed…] | --replay <traces> <plan.toml> <houses> <days> [seed…]";
    let path = args.next().ok_or(usage)?;
    let (traces, base) = if path == "--replay" {
        let mut next = || args.next().ok_or(usage);
        let (t, p, h, d) = (next()?, next()?, next()?.parse()?, next()?.parse()?);
        let (traces, scenario) = replayed(&t, &p, h, d)?;
        (Some(traces), scenario)
    } else {
        (
            None,
            Scenario::from_toml_str(&std::fs::read_to_string(&path)?)?,
        )
    };
    let run = |s: &Scenario| match &traces {
        Some(t) => replay(s, t, |_| {}),
        None => run(s, |_| {}),
    };
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
        let clean_out = run(&clean);
        let per_30 = (30 * 60_000 / clean.detectors.interval).max(1) as usize;
        let rating_kw = admd(&clean_out, per_30) / 1000.0;
        clean.transformer_kw = rating_kw;
        clean.detectors.overload.rating = gridmuc_core::Watts::from_kw(rating_kw);
        let clean_out = run(&clean);
        let mut faulty = base.clone();
        faulty.seed = seed;
        faulty.transformer_kw = rating_kw;
        faulty.detectors.overload.rating = clean.detectors.overload.rating;
        let out = run(&faulty);
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
