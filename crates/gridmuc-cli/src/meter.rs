//! `gridmuc meter`: one house's meter agent against any XMPP server, configured by a TOML file.

use anyhow::Context;
use gridmuc_xmpp::masked::{DpSettings, MaskedMeterConfig, run_masked_meter};
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

/// The `[masked]` table of a meter or substation config: masked mode, where the bot learns
/// only the neighbourhood sum. Meters and bot must agree on it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedTable {
    /// ε-DP noise shares (`{ epsilon = 1.0, sensitivity_watts = 1000 }`); off when absent.
    pub dp: Option<DpSettings>,
    /// Substation only: rounds per cohort before re-enrolment under fresh nicknames.
    pub cohort_rounds: Option<u64>,
    /// Substation only: smallest cohort the bot forms.
    pub min_cohort: Option<usize>,
}

/// Reads a TOML config into `T` plus its optional `[masked]` table, naming the file in every error.
pub fn read_config_masked<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> anyhow::Result<(T, Option<MaskedTable>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_masked(&text).with_context(|| format!("parsing {}", path.display()))
}

fn parse_masked<T: serde::de::DeserializeOwned>(
    text: &str,
) -> anyhow::Result<(T, Option<MaskedTable>)> {
    let mut table: toml::Table = toml::from_str(text)?;
    let masked = table
        .remove("masked")
        .map(|m| m.try_into::<MaskedTable>().context("[masked]"))
        .transpose()?;
    Ok((table.try_into()?, masked))
}

/// Runs the meter until Ctrl-C or until its source is exhausted.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, masked): (MeterConfig, _) = read_config_masked(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    anyhow::ensure!(
        masked.is_none() || cfg.private.is_none(),
        "a meter runs either [masked] or [private], not both"
    );
    if cfg.private.is_some() {
        let stats = rt.block_on(run_private_meter(cfg, None, ctrl_c))?;
        println!("{stats:?}");
        return Ok(());
    }
    match masked {
        None => println!("{}", rt.block_on(run_meter(cfg, None, ctrl_c))?),
        Some(m) => {
            anyhow::ensure!(
                m.cohort_rounds.is_none() && m.min_cohort.is_none(),
                "[masked] cohort_rounds and min_cohort are substation settings"
            );
            let cfg = MaskedMeterConfig {
                meter: cfg,
                dp: m.dp,
            };
            let report = rt.block_on(run_masked_meter(cfg, None, ctrl_c))?;
            println!("{report:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_table_is_split_off_and_checked() {
        let plain = include_str!("../../../examples/meter.toml");
        let (cfg, masked): (MeterConfig, _) = parse_masked(plain).unwrap();
        assert!(masked.is_none());
        assert_eq!(cfg.bot_nick, "substation");
        let with =
            format!("{plain}\n[masked]\ndp = {{ epsilon = 0.5, sensitivity_watts = 2000 }}\n");
        let (_, masked): (MeterConfig, _) = parse_masked(&with).unwrap();
        let dp = masked.unwrap().dp.unwrap();
        assert_eq!((dp.epsilon, dp.sensitivity_watts), (0.5, 2000));
        let typo = format!("{plain}\n[masked]\ndp_epsilon = 1\n");
        let err = parse_masked::<MeterConfig>(&typo).unwrap_err();
        assert!(format!("{err:#}").contains("dp_epsilon"), "{err:#}");
    }

    #[test]
    fn example_config_parses() {
        let cfg: MeterConfig =
            toml::from_str(include_str!("../../../examples/meter.toml")).unwrap();
        assert_eq!(cfg.room, "neighbourhood@rooms.grid.example");
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
