//! `gridmuc privacy`: the linkage experiment — link rotating nicknames to houses from their load
//! shape (pseudonymous mode), then attack what private mode leaves to the leader and to the
//! leader plus the XMPP server — written to `reports/privacy/`.

use anyhow::Context as _;
use gridmuc_private::{
    DEFAULT_BUCKETS, DEFAULT_LOWEST_EDGE_WATTS, DEFAULT_MAX_WATTS, DEFAULT_QUANTUM_WATTS,
    log_bucket_edges,
};
use gridmuc_sim::linkage::aggregates::{Buckets, Noise};
use gridmuc_sim::linkage::{LinkageConfig, run_linkage};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Neighbourhood sizes to attack, comma-separated (nested: the first N houses of one street).
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    pub houses: Vec<usize>,
    /// Days of attacked traffic.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Days of labelled per-house data the attacker holds (just before).
    #[arg(long, default_value_t = 14)]
    pub training_days: u32,
    /// Reporting interval in minutes (the meter default is 1).
    #[arg(long, default_value_t = 1)]
    pub interval_min: u32,
    /// Privacy budgets ε per interval of the DP noise private mode could add to its aggregates,
    /// comma-separated (what it would buy; private mode has no DP yet).
    #[arg(long, value_delimiter = ',', default_value = "1,0.1")]
    pub dp_epsilon: Vec<f64>,
    /// Change in one house (kW) each ε hides in the total.
    #[arg(long, default_value_t = 1.0)]
    pub dp_sensitivity_kw: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, default_value = "reports/privacy")]
    pub out: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    // The histogram the leader publishes: private mode's own default buckets.
    let buckets = Buckets::new(log_bucket_edges(
        DEFAULT_BUCKETS,
        DEFAULT_LOWEST_EDGE_WATTS,
        DEFAULT_MAX_WATTS,
        DEFAULT_QUANTUM_WATTS,
    ))
    .context("private mode's default bucket edges")?;
    let mut config = LinkageConfig::standard(args.seed, buckets);
    config.houses = args.houses.clone();
    config.days = args.days;
    config.training_days = args.training_days;
    config.interval_min = args.interval_min;
    if !(args.dp_sensitivity_kw.is_finite() && args.dp_sensitivity_kw > 0.0) {
        anyhow::bail!("--dp-sensitivity-kw must be positive");
    }
    let mut noises = vec![Noise::none()];
    for &epsilon in &args.dp_epsilon {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            anyhow::bail!("--dp-epsilon {epsilon}: each ε must be positive");
        }
        noises.push(Noise::dp(epsilon, args.dp_sensitivity_kw * 1000.0));
    }
    let started = Instant::now();
    let bar = crate::progress::bar(0, "[{elapsed}] [{bar:30}] {pos}/{len} {msg}")?;
    let output = run_linkage(&config, &noises, |p| {
        bar.set_length(u64::try_from(p.total).unwrap_or(u64::MAX));
        bar.set_position(u64::try_from(p.done).unwrap_or(u64::MAX));
        bar.set_message(p.stage);
    })?;
    bar.finish_and_clear();
    let runtime_s = started.elapsed().as_secs_f64();
    let houses: Vec<String> = args.houses.iter().map(usize::to_string).collect();
    let epsilons: Vec<String> = args.dp_epsilon.iter().map(f64::to_string).collect();
    let info = gridmuc_report::privacy::RunInfo {
        runtime_s,
        command: format!(
            "cargo run --release -p gridmuc-cli -- privacy --houses {} --days {} --training-days {} --interval-min {} --dp-epsilon {} --dp-sensitivity-kw {} --seed {} --out {}",
            houses.join(","),
            args.days,
            args.training_days,
            args.interval_min,
            epsilons.join(","),
            args.dp_sensitivity_kw,
            args.seed,
            args.out.display()
        ),
    };
    let files = gridmuc_report::privacy::write_privacy(&output, &info, &args.out)
        .with_context(|| format!("writing report to {}", args.out.display()))?;
    for r in output
        .rows
        .iter()
        .filter(|r| r.features == gridmuc_sim::linkage::features::FeatureSet::Full)
    {
        println!(
            "  pseudonymous N={:<4} {:<28} top-1 {:>5.1} % top-5 {:>5.1} % (chance {:.1} % / {:.1} %){}",
            r.houses,
            r.lifetime,
            100.0 * r.top1,
            100.0 * r.top5,
            100.0 * r.chance_top1(),
            100.0 * r.chance_top5(),
            r.assigned_top1
                .map_or(String::new(), |m| format!(", matched {:.1} %", 100.0 * m))
        );
    }
    for r in &output.participation {
        println!(
            "  private participation N={:<4} {:<42} {:<42} top-1 {:>5.1} % (chance {:.1} %)",
            r.houses,
            r.outages,
            r.lifetime,
            100.0 * r.top1,
            100.0 * r.chance_top1()
        );
    }
    for r in &output.aggregate_rows {
        println!(
            "  aggregates/{:<20} N={:<4} noise {:<20} median |err| {:>5.0} W, bucket {}",
            r.attack.as_str(),
            r.houses,
            r.noise,
            r.median_abs_err_w,
            r.bucket_hit
                .map_or("–".to_owned(), |b| format!("{:.1} %", 100.0 * b))
        );
    }
    println!(
        "privacy: {} files in {:.1} s; report: {}",
        files.len(),
        runtime_s,
        args.out.join("report.md").display()
    );
    Ok(())
}
