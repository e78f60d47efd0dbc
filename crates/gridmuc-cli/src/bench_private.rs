//! `gridmuc bench private`: what private mode (Prio3 through the `prio` crate, HPKE-sealed
//! input shares) costs a meter and each aggregator, and its bytes on the wire, in-process.

/// Arguments of `gridmuc bench private`.
#[derive(clap::Args)]
pub struct Args {
    /// Meters reporting per interval.
    #[arg(long, default_value_t = 200)]
    houses: u32,
    /// Intervals aggregated and collected.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

/// Runs the benchmark; the last line is `private: <µs> µs per report at the client, <µs> µs per aggregator per report, <B> bytes per report`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let figures = gridmuc_private::bench(args.houses, args.rounds)?;
    eprintln!("{figures:#?}");
    println!("{}", figures.summary_line());
    Ok(())
}
