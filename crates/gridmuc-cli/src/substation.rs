//! `gridmuc substation`: the operator bot against any XMPP server, configured by a TOML file.

use crate::meter::read_config;
use gridmuc_xmpp::bot::{BotConfig, run_bot};
use gridmuc_xmpp::private::run_leader;
use std::path::PathBuf;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config (see examples/substation.toml): `[account]`, room, nick, operators, `[aggregator]`.
    #[arg(long, short, default_value = "examples/substation.toml")]
    pub config: PathBuf,
}

/// Runs the bot until Ctrl-C, then prints the final counters.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg: BotConfig = read_config(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if cfg.private.is_some() {
        let refusals = rt.block_on(run_leader(cfg, None, ctrl_c))?;
        println!("reports refused: {}", refusals.total());
        return Ok(());
    }
    let report = rt.block_on(run_bot(cfg, None, ctrl_c))?;
    let c = report.counters;
    println!(
        "readings accepted: {}, rejected: {}, intervals: {}, alerts: {}",
        c.accepted,
        c.rejected.total(),
        c.intervals,
        c.alerts
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let cfg: BotConfig =
            toml::from_str(include_str!("../../../examples/substation.toml")).unwrap();
        assert_eq!(cfg.room, "neighbourhood@rooms.grid.example");
        assert_eq!(cfg.metrics, None, "metrics are off unless configured");
        let on =
            include_str!("../../../examples/substation.toml").replace("# metrics = ", "metrics = ");
        let cfg: BotConfig = toml::from_str(&on).unwrap();
        assert_eq!(cfg.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    }
}
