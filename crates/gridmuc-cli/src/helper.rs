//! `gridmuc helper`: private mode's helper bot, run by an independent party (a regulator, a
//! consumers' association, a cooperative), against any XMPP server from a TOML file.

use anyhow::Context;
use gridmuc_xmpp::private::{HelperBotConfig, run_helper};
use std::path::PathBuf;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config (see examples/helper.toml): `[account]`, room, leader_key, interval, `[private]`.
    #[arg(long, short, default_value = "examples/helper.toml")]
    pub config: PathBuf,
}

/// Runs the helper until Ctrl-C or SIGTERM, then prints what it refused.
pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let cfg: HelperBotConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", args.config.display()))?;
    let rt = tokio::runtime::Runtime::new()?;
    let stop = async {
        crate::shutdown::requested().await;
    };
    let refusals = rt.block_on(run_helper(cfg, None, stop))?;
    println!("reports refused: {}", refusals.total());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let cfg: HelperBotConfig =
            toml::from_str(include_str!("../../../examples/helper.toml")).unwrap();
        assert_eq!(cfg.interval, 60_000);
        assert_eq!(cfg.leader_nick, "substation");
        assert_eq!(cfg.private.helper_nick, cfg.nick);
    }
}
