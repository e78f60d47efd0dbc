//! `gridmuc meter`: one house's meter agent against any XMPP server, configured by a TOML file.

use anyhow::Context;
use gridmuc_xmpp::meter::{MeterConfig, run_meter};
use gridmuc_xmpp::private::run_private_meter;
use std::path::PathBuf;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config (see examples/meter.toml): `[account]`, room, mode, interval, source.
    #[arg(long, short, default_value = "examples/meter.toml")]
    pub config: PathBuf,
}

/// Reads a TOML config into `T`, naming the file in every error, and saying plainly that a
/// `[masked]` table belongs to the retired masked mode.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing {}", path.display()))
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    let table: toml::Table = toml::from_str(text)?;
    anyhow::ensure!(
        !table.contains_key("masked"),
        "masked mode was retired: use a [private] table (private mode, Prio3 with a helper \
         bot; see examples/meter.toml)"
    );
    Ok(table.try_into()?)
}

/// Runs the meter until Ctrl-C, SIGTERM or until its source is exhausted.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg: MeterConfig = read_config(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let stop = async {
        crate::shutdown::requested().await;
    };
    if cfg.private.is_some() {
        let stats = rt.block_on(run_private_meter(cfg, None, stop))?;
        println!("{stats:?}");
    } else {
        println!("{}", rt.block_on(run_meter(cfg, None, stop))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_table_is_refused_with_a_pointer_to_private_mode() {
        let plain = include_str!("../../../examples/meter.toml");
        let cfg: MeterConfig = parse(plain).unwrap();
        assert_eq!(cfg.bot_nick, "substation");
        let with =
            format!("{plain}\n[masked]\ndp = {{ epsilon = 0.5, sensitivity_watts = 2000 }}\n");
        let err = parse::<MeterConfig>(&with).unwrap_err();
        assert!(
            format!("{err:#}").contains("use a [private] table"),
            "{err:#}"
        );
    }

    #[test]
    fn example_config_parses() {
        let cfg: MeterConfig =
            toml::from_str(include_str!("../../../examples/meter.toml")).unwrap();
        assert_eq!(cfg.room, "neighbourhood@rooms.grid.example");
        assert_eq!(cfg.outbox_file, None);
        let kept = include_str!("../../../examples/meter.toml")
            .replace("# outbox_file = ", "outbox_file = ");
        let cfg: MeterConfig = toml::from_str(&kept).unwrap();
        assert_eq!(
            cfg.outbox_file.as_deref(),
            Some(std::path::Path::new("/var/lib/gridmuc/house.outbox"))
        );
    }

    #[test]
    fn meter_and_bot_write_their_interval_alike_and_old_files_still_parse() {
        let meter: MeterConfig =
            toml::from_str(include_str!("../../../examples/meter.toml")).unwrap();
        let bot: gridmuc_xmpp::BotConfig =
            toml::from_str(include_str!("../../../examples/substation.toml")).unwrap();
        assert_eq!(meter.interval.as_millis(), 60_000);
        assert_eq!(bot.aggregator.interval, 60_000);
        // Before durations had units: seconds for the meter, milliseconds for the aggregator.
        let old_meter = include_str!("../../../examples/meter.toml")
            .replace("interval = \"60s\"", "interval = 30")
            .replace("timeout = \"15s\"", "timeout = 7.5");
        let old: MeterConfig = toml::from_str(&old_meter).unwrap();
        assert_eq!(old.interval.as_millis(), 30_000);
        assert_eq!(old.account.timeout.as_millis(), 7_500);
        let old_bot = include_str!("../../../examples/substation.toml")
            .replace("interval = \"60s\"", "interval = 30000");
        let old: gridmuc_xmpp::BotConfig = toml::from_str(&old_bot).unwrap();
        assert_eq!(old.aggregator.interval, 30_000);
        let typo = include_str!("../../../examples/meter.toml").replace("\"60s\"", "\"60 sex\"");
        let err = toml::from_str::<MeterConfig>(&typo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a duration"), "{err}");
    }
}
