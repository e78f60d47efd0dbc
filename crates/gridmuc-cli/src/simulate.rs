//! `gridmuc simulate simulations/<name>.toml`: run a scenario through the real aggregator with a
//! virtual clock, then write tables, charts and `report.md` under `reports/<name>/`.
//!
//! The figure printed here covers everything: household model, anomaly injection, nickname
//! rotation, every reading through `gridmuc_core::Aggregator`, scoring and report writing. It is
//! slower than `gridmuc bench sim`, which times only the household model and summation.

use anyhow::Context as _;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Scenario file, e.g. simulations/winter-evening-peak.toml.
    pub scenario: PathBuf,
    /// Output folder; default `reports/<scenario name>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// One line per detector: windows, alerts, precision, recall, F1 against chance, NAB, delay.
pub(crate) fn print_scores(scores: &[gridmuc_sim::DetectorScore]) {
    for s in scores {
        println!(
            "  {:<16} windows {:>3} detected {:>3} alerts {:>4}  P {:.2} R {:.2} F1 {:.2} (chance {:.3})  NAB {}  median delay {}",
            s.detector,
            s.windows,
            s.detected,
            s.alerts,
            s.precision,
            s.recall,
            s.f1,
            s.chance_f1,
            s.nab.map_or("–".into(), |n| format!("{n:.1}")),
            s.median_delay_s.map_or("–".into(), |d| format!("{d:.0} s")),
        );
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.scenario)
        .with_context(|| format!("reading {}", args.scenario.display()))?;
    let mut scenario = gridmuc_sim::Scenario::from_toml_str(&text)
        .with_context(|| format!("parsing {}", args.scenario.display()))?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let out_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(&scenario.name));
    let bar = crate::progress::bar(
        u64::from(scenario.days),
        "{spinner} {msg} [{bar:30}] day {pos}/{len} ({elapsed}, eta {eta})",
    )?;
    bar.set_message(format!("{} ({} houses)", scenario.name, scenario.houses));
    let started = Instant::now();
    let output = gridmuc_sim::run(&scenario, |p| {
        bar.set_position(u64::from(p.done));
    });
    bar.finish_and_clear();
    let sim_secs = started.elapsed().as_secs_f64();
    let files = gridmuc_report::write_all(&output, &out_dir)
        .with_context(|| format!("writing report to {}", out_dir.display()))?;
    println!(
        "{}: {} houses × {} days, {} readings accepted, {} alerts, simulated with the aggregator in {:.1} s",
        output.scenario,
        output.houses,
        output.days,
        output.accepted,
        output.alerts.len(),
        sim_secs
    );
    print_scores(&output.scores);
    println!(
        "wrote {} files; report: {}",
        files.len(),
        out_dir.join("report.md").display()
    );
    Ok(())
}
