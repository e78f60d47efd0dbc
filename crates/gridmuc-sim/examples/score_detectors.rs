//! Scores every detector on a scenario the way issue #13 asks: the transformer rated at the
//! clean run's 30-minute ADMD, precision and recall with 95 % intervals on the faulty run,
//! false alerts per day on the same neighbourhood without faults, and the ramp warning's lead.
//!
//! `cargo run --release -p gridmuc-sim --example score_detectors -- simulations/detectors-street.toml [seed…]`
//! `… -- --replay <traces.csv> <plan.toml> <houses> <days> [seed…]` scores replayed real traces
//! (long CSV, London or SimBench's LoadProfile.csv) with the plan's injected faults instead.

use gridmuc_sim::eval::{proportion_ci, ramp_crossings};
use gridmuc_sim::scenario::ReplayPlan;
use gridmuc_sim::traces::{SimBenchHouses, TraceBuilder, Traces};
use gridmuc_sim::{Scenario, replay, run};
use std::collections::BTreeMap;

/// Per detector over all seeds: windows, detected, alerts, true alerts, clean alerts, least lead (s).
type Sums = (usize, usize, usize, usize, usize, Option<f64>);

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
    // Ramps, warned ≥ 30 min before the first interval above the rating, before the 30-min mean.
    let mut ramps = (0usize, 0usize, 0usize);
    for seed in seeds {
        let (faulty, clean) = base.rated_at_clean_admd(seed, run);
        let rating_kw = faulty.transformer_kw;
        let per_30 = faulty.intervals_per_30_min();
        let clean_out = run(&clean);
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
        for r in ramp_crossings(&out, per_30) {
            let (start, end) = (r.start, r.end);
            let warned = out
                .alerts
                .iter()
                .find(|a| {
                    a.kind == gridmuc_core::AlertKind::Overload
                        && (start..end + 3_600_000).contains(&a.emitted.0)
                })
                .map(|a| a.emitted.0);
            let lead = |c: Option<i64>| match (warned, c) {
                (Some(w), Some(c)) => Some((c - w) / 60_000),
                _ => None,
            };
            ramps.0 += 1;
            ramps.1 += usize::from(lead(r.first_interval).is_some_and(|m| m >= 30));
            ramps.2 += usize::from(lead(r.centred_mean).is_some_and(|m| m >= 30));
            let minutes = |c: Option<i64>| {
                c.map_or("never".into(), |c| {
                    format!("{} min in", (c - start) / 60_000)
                })
            };
            println!(
                "  ramp at {}: {:.2} kW a house at the end, peak {:.2} × rating, crosses the rating {} ({} on the 30-min mean), first overload alert {}",
                gridmuc_core::Timestamp(start),
                r.extra_w / 1000.0,
                r.peak_w as f64 / out.rating_w as f64,
                minutes(r.first_interval),
                minutes(r.centred_mean),
                match (warned, lead(r.first_interval), lead(r.centred_mean)) {
                    (Some(_), Some(a), Some(b)) =>
                        format!("{a} min before crossing ({b} on the 30-min mean)"),
                    (Some(w), _, _) => format!("{} min in", (w - start) / 60_000),
                    (None, _, _) => "none".into(),
                }
            );
        }
    }
    println!();
    println!(
        "ramps warned ≥ 30 min before the crossing: {} of {} (first interval above the rating), {} of {} (centred 30-min mean above it)",
        ramps.1, ramps.0, ramps.2, ramps.0
    );
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
