//! `gridmuc report reports/<name>`: re-render charts and `report.md` from a finished run's Parquet
//! tables, e.g. after changing chart code, without simulating again.

use anyhow::Context as _;
use std::path::PathBuf;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Folder written by `gridmuc simulate` (holds intervals.parquet, alerts.parquet, …).
    pub dir: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let files = gridmuc_report::rerender(&args.dir)
        .with_context(|| format!("re-rendering {}", args.dir.display()))?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
