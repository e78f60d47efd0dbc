//! `gridmuc meter`: one house's meter agent against any XMPP server, configured by a TOML file.

use anyhow::Context;
use gridmuc_xmpp::meter::{MeterConfig, run_meter};
use std::path::PathBuf;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config (see examples/meter.toml): `[account]`, room, mode, interval, source.
    #[arg(long, short, default_value = "examples/meter.toml")]
    pub config: PathBuf,
}

/// Reads a TOML config file into `T`, naming the file in every error.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs the meter until Ctrl-C or until its source is exhausted.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg: MeterConfig = read_config(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(run_meter(cfg, None, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let cfg: MeterConfig =
            toml::from_str(include_str!("../../../examples/meter.toml")).unwrap();
        assert_eq!(cfg.room, "neighbourhood@rooms.grid.example");
    }
}
