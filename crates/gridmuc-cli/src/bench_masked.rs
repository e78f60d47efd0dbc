//! `gridmuc bench masked`: what masked mode costs a meter and the bot, measured in-process.

/// Arguments of `gridmuc bench masked`.
#[derive(clap::Args)]
pub struct Args {
    /// Enrolled meters in the cohort.
    #[arg(long, default_value_t = 200)]
    houses: u16,
    /// Masked rounds for the per-round figures.
    #[arg(long, default_value_t = 200)]
    rounds: u32,
    /// Seed, so runs are comparable.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

/// Runs the benchmark; the last line is `masked: <µs> µs CPU per house per round, <B> bytes per reading`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let b = gridmuc_mask::bench_masked(args.houses, args.rounds, args.seed)?;
    anyhow::ensure!(b.sums_exact, "an unmasked sum differed from the true sum");
    eprintln!("{b:#?}");
    let total_us = (b.prepare_ns_per_house_round + b.mask_ns_per_house_round) / 1000.0;
    eprintln!(
        "reading path {:.1} µs + precomputable {:.1} µs (self-mask PRF {:.1} µs) per house per round",
        b.mask_ns_per_house_round / 1000.0,
        b.prepare_ns_per_house_round / 1000.0,
        b.self_mask_prf_ns / 1000.0
    );
    println!(
        "masked: {total_us:.1} µs CPU per house per round, {} bytes per reading ({} base64 chars)",
        b.masked_reading_bytes, b.masked_reading_base64_chars
    );
    Ok(())
}
