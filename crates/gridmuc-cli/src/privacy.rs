//! `gridmuc privacy`: the linkage experiment — link rotating nicknames to houses from their load
//! shape, then attack masked mode's per-nickname values and sums — written to `reports/privacy/`.

use anyhow::Context as _;
use gridmuc_core::Watts;
use gridmuc_mask::{DpConfig, NoiseShare, QUANTUM};
use gridmuc_sim::linkage::sums::SumNoise;
use gridmuc_sim::linkage::{LinkageConfig, run_linkage};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Neighbourhood sizes to attack, comma-separated (nested: the first N houses of one street).
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    pub houses: Vec<usize>,
    /// Days of pseudonymous traffic.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Days of labelled per-house data the attacker holds (just before).
    #[arg(long, default_value_t = 14)]
    pub training_days: u32,
    /// Reporting interval in minutes (the meter default is 1).
    #[arg(long, default_value_t = 1)]
    pub interval_min: u32,
    /// Privacy budgets ε per interval for the masked sum's DP noise, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,0.1")]
    pub dp_epsilon: Vec<f64>,
    /// Change in one house (kW) each ε hides.
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
    let mut config = LinkageConfig::standard(args.seed);
    config.houses = args.houses.clone();
    config.days = args.days;
    config.training_days = args.training_days;
    config.interval_min = args.interval_min;
    let sensitivity = Watts::from_kw(args.dp_sensitivity_kw);
    let mut noises = vec![SumNoise::none()];
    for (i, &epsilon) in args.dp_epsilon.iter().enumerate() {
        let dp = DpConfig::new(epsilon, sensitivity)
            .with_context(|| format!("DP setting ε = {epsilon}"))?;
        // A round's noise is the sum of the survivors' shares: with exactly the threshold of
        // survivors it is one discrete Laplace variable, i.e. one share drawn for threshold 1.
        let share = NoiseShare::new(&dp, 1)?;
        let mut rng = ChaCha20Rng::seed_from_u64(args.seed.wrapping_add(1000 + i as u64));
        noises.push(SumNoise {
            label: format!("ε = {epsilon}, Δ = {} kW", args.dp_sensitivity_kw),
            sd_w: dp.sum_variance(1, 1).sqrt(),
            sample: Box::new(move || (share.sample(&mut rng) * QUANTUM.0) as f64),
        });
    }
    let started = Instant::now();
    let bar = crate::progress::bar(0, "[{elapsed}] [{bar:30}] {pos}/{len} {msg}")?;
    let output = run_linkage(&config, &mut noises, |p| {
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
        dp_note: format!(
            "DP noise as gridmuc-mask adds it: each meter adds a Pólya share, so a sum over the threshold of survivors carries one discrete Laplace variable with α = exp(−ε/Δ) in 10 W quanta (more survivors add a little more); ε per interval against a change of up to Δ = {} kW in one house. Noise levels: none, {}.",
            args.dp_sensitivity_kw,
            noises[1..]
                .iter()
                .map(|n| format!("{} (sd {:.0} W per sum)", n.label, n.sd_w))
                .collect::<Vec<_>>()
                .join(", ")
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
            "  {:<12} N={:<4} {:<28} top-1 {:>5.1} % top-5 {:>5.1} % (chance {:.1} % / {:.1} %){}",
            r.view.as_str(),
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
    for r in &output.sum_rows {
        println!(
            "  sum/{:<18} N={:<4} noise {:<22} top-1 {:>5.1} % RMSE {:>6.0} W median |err| {:>5.0} W",
            r.attack.as_str(),
            r.houses,
            r.noise,
            100.0 * r.top1,
            r.rmse_w,
            r.median_abs_err_w
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
