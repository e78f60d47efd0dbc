//! Lists every house-spike alert raised on a scenario's clean run (no injected faults), with
//! the house's features, so false alerts can be traced to what the house was doing.
//!
//! `cargo run --release -p gridmuc-sim --example trace_house_spikes -- simulations/detectors-street.toml [seed…]`

use gridmuc_core::AlertKind;
use gridmuc_core::alert::AlertState;
use gridmuc_sim::{Scenario, run};
use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: trace_house_spikes <scenario.toml> [seed…]")?;
    let base = Scenario::from_toml_str(&std::fs::read_to_string(&path)?)?;
    let seeds: Vec<u64> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    for seed in if seeds.is_empty() {
        vec![base.seed]
    } else {
        seeds
    } {
        let mut clean = base.clone();
        clean.seed = seed;
        clean.anomalies.clear();
        let out = run(&clean, |_| {});
        let mut by_house: BTreeMap<usize, Vec<(String, i64, i64)>> = BTreeMap::new();
        for a in out
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::HouseSpike && a.state == AlertState::Raised)
        {
            by_house
                .entry(a.house.unwrap_or(usize::MAX))
                .or_default()
                .push((a.at.to_string(), a.value_w, a.threshold_w));
        }
        println!("seed {seed}: {} days", out.days);
        for (h, alerts) in by_house {
            let info = out.houses_summary.get(h).and_then(|r| r.info.clone());
            let peak = out.houses_summary.get(h).map_or(0.0, |r| r.peak_w);
            println!(
                "  house {h}: {} raised, {info:?}, peak {:.1} kW",
                alerts.len(),
                peak / 1000.0
            );
            for (at, v, med) in alerts.iter().take(4) {
                println!(
                    "    {at} {:.1} kW (median {:.2} kW)",
                    *v as f64 / 1e3,
                    *med as f64 / 1e3
                );
            }
        }
    }
    Ok(())
}
