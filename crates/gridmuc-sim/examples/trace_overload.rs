//! Follows the overload detector through a scenario's ramps and clean false warnings: every five
//! minutes of each ramp, the load, its usual level and the forecast; every warning raised on the
//! clean run with the load and usual level then. For tuning the forecast against issue #13's
//! ramps without rerunning the simulator for each setting.
//!
//! `cargo run --release -p gridmuc-sim --example trace_overload -- simulations/detectors-street.toml seed`

use gridmuc_core::alert::AlertState;
use gridmuc_core::baseline::WeeklyBaseline;
use gridmuc_core::detect::OverloadDetector;
use gridmuc_core::{AlertKind, Timestamp, Watts};
use gridmuc_sim::{Scenario, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: trace_overload <scenario.toml> <seed>";
    let base = Scenario::from_toml_str(&std::fs::read_to_string(args.next().ok_or(usage)?)?)?;
    let seed: u64 = args.next().ok_or(usage)?.parse()?;
    let (faulty, clean) = base.rated_at_clean_admd(seed, |s| run(s, |_| {}));
    let rating = clean.transformer_kw * 1000.0;
    for (name, s) in [("clean", &clean), ("faulty", &faulty)] {
        let out = run(s, |_| {});
        let cfg = &s.detectors;
        let mut baseline = WeeklyBaseline::new(cfg.baseline.clone(), cfg.interval);
        let mut det = OverloadDetector::new(cfg.overload.clone());
        let ramps: Vec<(i64, i64)> = out
            .labels
            .iter()
            .filter(|l| l.kind.as_str() == "load-ramp")
            .map(|l| {
                (
                    out.start.0 + i64::from(l.start_min) * 60_000,
                    out.start.0 + i64::from(l.end_min()) * 60_000,
                )
            })
            .collect();
        let raised: Vec<Timestamp> = out
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::Overload && a.state == AlertState::Raised)
            .map(|a| a.at)
            .collect();
        println!("{name}: {} overload raises", raised.len());
        for r in &out.intervals {
            let end = r.start.plus(out.interval);
            let usual = baseline.expected(end.plus(-1)).map_or(f64::NAN, |e| e.mean);
            let finding = det.observe(r.start, out.interval, Watts(r.reported_total_w), &baseline);
            let forecast = det.forecast_minutes(end, &baseline);
            baseline.update(r.start, r.reported_total_w as f64);
            let in_ramp = ramps
                .iter()
                .any(|(s, e)| (*s - 30 * 60_000..*e).contains(&r.start.0));
            let raise = raised.contains(&r.start);
            if (in_ramp && (r.start.0 / 60_000) % 5 == 0) || (raise && name == "clean") {
                println!(
                    "  {} load {:.2} usual {:.2} hot {:.1} forecast {:?} {}{}",
                    r.start,
                    r.true_total_w as f64 / rating,
                    usual / rating,
                    det.hot_spot().unwrap_or(0.0),
                    forecast.map(|m| m.round()),
                    finding.map_or("", |_| "WARN"),
                    if raise { " RAISED" } else { "" },
                );
            }
        }
    }
    Ok(())
}
