//! `gridmuc bench sim --houses 1000 --days 365`: household-years per CPU-second of the household
//! model plus per-minute neighbourhood summation (no aggregator, no files), the figure compared
//! with the Python CREST port's ~2.1 CPU-seconds per household-year.
//!
//! CPU time is the whole process's user + system time from `/proc/self/stat` (all threads, in
//! clock ticks of 1/100 s, Linux's fixed USER_HZ), so using both cores does not flatter the rate.

use anyhow::Context as _;
use std::time::Instant;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Households on the feeder.
    #[arg(long, default_value_t = 1000)]
    pub houses: usize,
    /// Days to simulate.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of homes with EV chargers, PV and heat pumps (each), for a mixed street.
    #[arg(long, default_value_t = 0.2)]
    pub adoption: f64,
}

/// Linux reports process CPU times in USER_HZ ticks, fixed at 100 by the kernel ABI.
const USER_HZ: f64 = 100.0;

/// Process CPU seconds (user + system, all threads so far).
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/self/stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    Ok((tick(11)? + tick(12)?) / USER_HZ)
}

/// Peak resident set size in MiB, from /proc/self/status (VmHWM).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.houses > 0 && args.days > 0,
        "need at least one house and one day"
    );
    let households = gridmuc_sim::household::HouseholdConfig {
        ev_share: args.adoption,
        pv_share: args.adoption,
        heat_pump_share: args.adoption,
        ..Default::default()
    };
    let start_day = gridmuc_sim::calendar::parse_date("2026-01-01").context("start date")?;
    let cpu0 = cpu_seconds()?;
    let wall = Instant::now();
    let mut nb = gridmuc_sim::Neighbourhood::new(
        &households,
        gridmuc_sim::weather::WeatherConfig::default(),
        args.houses,
        start_day,
        args.seed,
        &[],
    );
    let summary = nb.bench(args.days);
    let wall_s = wall.elapsed().as_secs_f64();
    let cpu_s = (cpu_seconds()? - cpu0).max(0.01);
    let household_years = summary.house_days as f64 / 365.0;
    println!(
        "houses {} × days {} at 1-minute resolution ({} threads): wall {wall_s:.2} s, CPU {cpu_s:.2} s, peak RSS {}",
        args.houses,
        args.days,
        rayon_threads(),
        peak_rss_mib().map_or("n/a".into(), |m| format!("{m:.0} MiB")),
    );
    println!(
        "neighbourhood peak {:.1} kW ({:.2} kW per house), mean {:.1} kWh per house-day",
        summary.peak_total_w / 1000.0,
        summary.peak_total_w / 1000.0 / args.houses as f64,
        summary.mean_daily_kwh
    );
    println!(
        "covers: household model + per-minute neighbourhood sum; not the aggregator or files (see `gridmuc simulate`)"
    );
    println!(
        "sim: {:.1} household-years per CPU-second",
        household_years / cpu_s
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
