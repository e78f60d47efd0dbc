//! `gridmuc replay <traces>`: run the aggregator offline over measured household traces with
//! injected, labelled faults, and write the same scores and report as `gridmuc simulate`.
//! `gridmuc replay --realism <traces>` instead compares the simulator with those traces and
//! writes `reports/realism/`.
//!
//! Trace layouts (decided from the header): long CSV `timestamp,house,watts|kwh`, the London
//! smart-meter CSV `LCLid,stdorToU,DateTime,KWH/hh (per half hour)` and SimBench's
//! `LoadProfile.csv` (see `gridmuc_sim::traces`); a `.parquet` file holds the long format's
//! columns (see `gridmuc_report::traces`).

use anyhow::Context as _;
use gridmuc_report::realism::{RealismReport, write_realism};
use gridmuc_sim::realism::{admd_w, measure, simulate_street};
use gridmuc_sim::scenario::ReplayPlan;
use gridmuc_sim::traces::{Layout, SimBenchHouses, TraceBuilder, Traces};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Trace file: long CSV or Parquet, London smart-meter CSV or SimBench's LoadProfile.csv.
    pub traces: PathBuf,
    /// Faults to inject and detector settings (e.g. simulations/replay-faults.toml); none by default.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Output folder; default `reports/<plan name>` (`reports/realism` with --realism).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Houses: the first N of a long or London file, or N built from SimBench's profiles.
    #[arg(long, default_value_t = 50)]
    pub houses: usize,
    /// Days to replay from the first midnight; all whole days by default.
    #[arg(long)]
    pub days: Option<u32>,
    /// Annual energy SimBench's normalised profiles are scaled to (kWh).
    #[arg(long, default_value_t = 2_700.0)]
    pub annual_kwh: f64,
    /// Compare the simulator with the traces and write the realism report instead of replaying.
    #[arg(long)]
    pub realism: bool,
    /// Seeds of the simulated streets (--realism).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
    pub seeds: Vec<u64>,
}

/// Street sizes of the ADMD table.
const ADMD_SIZES: [usize; 4] = [10, 50, 100, 200];

/// Reads a trace file: Parquet (long format) through polars, text line by line with a progress
/// bar over bytes on stderr.
fn read_traces(path: &Path, houses: usize, annual_kwh: f64) -> anyhow::Result<(Traces, Layout)> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        let traces = gridmuc_report::traces::read_long_parquet(path, houses)?;
        return Ok((traces, Layout::Long));
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = crate::progress::bar(
        len,
        "reading {msg} [{bar:30}] {bytes}/{total_bytes} ({eta})",
    )?;
    bar.set_message(path.display().to_string());
    let mut builder = TraceBuilder::new(
        SimBenchHouses {
            houses,
            annual_kwh,
            ..SimBenchHouses::default()
        },
        houses,
    );
    let mut reader = std::io::BufReader::new(bar.wrap_read(file));
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("{}: reading line {}", path.display(), number + 1))?;
        if n == 0 {
            break;
        }
        number += 1;
        builder
            .push_line(number, &line)
            .with_context(|| path.display().to_string())?;
    }
    bar.finish_and_clear();
    let layout = builder
        .layout()
        .with_context(|| format!("{}: empty file", path.display()))?;
    let traces = builder
        .finish()
        .with_context(|| path.display().to_string())?;
    Ok((traces, layout))
}

fn layout_label(layout: Layout, traces: &Traces) -> String {
    match layout {
        Layout::SimBench => "SimBench H0".into(),
        Layout::London => "London smart meters".into(),
        Layout::Long => format!("traces ({} houses)", traces.houses.len()),
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.realism {
        return realism(args);
    }
    let (traces, layout) = read_traces(&args.traces, args.houses, args.annual_kwh)?;
    let plan = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ReplayPlan::from_toml_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => ReplayPlan::from_toml_str("name = \"replay\"")?,
    };
    let whole = traces.whole_days();
    let days = args.days.map_or(whole, |d| d.min(whole));
    anyhow::ensure!(
        days > 0,
        "{}: no whole day from midnight to midnight in the traces",
        args.traces.display()
    );
    let first_midnight = traces.start.0.div_euclid(gridmuc_core::time::DAY)
        + i64::from(traces.start.0.rem_euclid(gridmuc_core::time::DAY) != 0);
    let (y, m, d) = gridmuc_sim::calendar::civil_from_days(first_midnight);
    // As the scenarios do: the transformer is rated at the clean street's 30-minute peak.
    let clean_peak_kw = admd_w(
        &traces,
        traces.houses.len(),
        30 * gridmuc_core::time::MINUTE,
    ) * traces.houses.len() as f64
        / 1000.0;
    let mut scenario = plan
        .scenario_for(
            traces.houses.len(),
            days,
            format!("{y:04}-{m:02}-{d:02}"),
            u32::try_from(traces.step / gridmuc_core::time::MINUTE)?,
            clean_peak_kw,
        )
        .context("replay plan")?;
    scenario.description = format!(
        "{} Replayed: {}, {} houses × {days} days at {} min.",
        scenario.description,
        layout_label(layout, &traces),
        traces.houses.len(),
        traces.step / gridmuc_core::time::MINUTE
    )
    .trim()
    .to_owned();
    let out_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(&scenario.name));
    let bar = crate::progress::bar(
        u64::from(days),
        "replaying [{bar:30}] day {pos}/{len} ({elapsed}, eta {eta})",
    )?;
    let output = gridmuc_sim::replay(&scenario, &traces, |p| bar.set_position(u64::from(p.done)));
    bar.finish_and_clear();
    let files = gridmuc_report::write_all(&output, &out_dir)
        .with_context(|| format!("writing report to {}", out_dir.display()))?;
    println!(
        "{}: {} houses × {} days replayed, transformer {:.0} kW, {} readings accepted, {} alerts",
        output.scenario,
        output.houses,
        output.days,
        scenario.transformer_kw,
        output.accepted,
        output.alerts.len()
    );
    crate::simulate::print_scores(&output.scores);
    println!(
        "wrote {} files; report: {}",
        files.len(),
        out_dir.join("report.md").display()
    );
    Ok(())
}

fn realism(args: Args) -> anyhow::Result<()> {
    let houses = args.houses.max(ADMD_SIZES[3]);
    let (real, layout) = read_traces(&args.traces, houses, args.annual_kwh)?;
    anyhow::ensure!(!args.seeds.is_empty(), "--seeds: at least one seed");
    let start = gridmuc_sim::calendar::parse_date("2026-01-01").context("start date")?;
    let mut report = RealismReport {
        sim: Vec::new(),
        seeds: args.seeds.clone(),
        real: measure(&real),
        real_label: layout_label(layout, &real),
        real_note: match layout {
            Layout::SimBench => format!(
                "SimBench's single-home profiles {} (15-minute, 2016), each scaled to {:.0} kWh a year (so every SimBench house has that energy by construction) and repeated, shifted by a few days, into {houses} houses.",
                SimBenchHouses::default().profiles.join(", "),
                args.annual_kwh
            ),
            _ => String::new(),
        },
        admd: ADMD_SIZES
            .iter()
            .map(|n| {
                (
                    *n,
                    Vec::new(),
                    admd_w(&real, *n, 30 * gridmuc_core::time::MINUTE),
                )
            })
            .collect(),
        kettle_per_day: Vec::new(),
        max_minute_w: Vec::new(),
        published: published(),
        command: format!(
            "python3 -m venv /tmp/sb && /tmp/sb/bin/pip install simbench   # SimBench's CSVs\n\
             gridmuc replay --realism {} --seeds {}",
            args.traces.display(),
            args.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    for seed in &args.seeds {
        eprintln!("simulating {houses} houses × 365 days, seed {seed}");
        let street = simulate_street(&Default::default(), houses, 365, start, *seed, real.step);
        report.sim.push(measure(&street.traces));
        for (n, sims, _) in &mut report.admd {
            sims.push(admd_w(&street.traces, *n, 30 * gridmuc_core::time::MINUTE));
        }
        report.kettle_per_day.push(street.kettle_per_day);
        report.max_minute_w.push(street.max_minute_w);
    }
    let out_dir = args.out.unwrap_or_else(|| PathBuf::from("reports/realism"));
    let files = write_realism(&report, &out_dir)
        .with_context(|| format!("writing {}", out_dir.display()))?;
    println!(
        "wrote {} files; report: {}",
        files.len(),
        out_dir.join("report.md").display()
    );
    Ok(())
}

/// Published and measured figures the simulator is calibrated against (issue #13).
fn published() -> Vec<(String, String, String)> {
    [
        (
            "annual energy, typical house",
            "2,700 kWh",
            "Ofgem typical domestic consumption value (medium, electricity, profile class 1)",
        ),
        (
            "winter ÷ summer mean",
            "1.5–1.9",
            "measured UK households (issue #13)",
        ),
        (
            "summer evening peak ÷ daily mean",
            "1.35–1.6",
            "measured UK households (issue #13)",
        ),
        (
            "baseload (1st percentile)",
            "≈ 112 W",
            "a public 1-minute household trace (issue #13)",
        ),
        (
            "highest one-minute load of a house",
            "11.1 kW in four years",
            "the same trace (issue #13)",
        ),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect()
}
