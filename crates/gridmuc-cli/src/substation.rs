//! `gridmuc substation`: the operator bot against any XMPP server, configured by a TOML file.
//!
//! The console follows the bot's events, not its log: one line per interval that a meter
//! reported in, every alert and every refusal reason; `--json` prints the same events as one
//! JSON object a line for scripts, `--quiet` nothing but errors.

use crate::meter::read_config;
use gridmuc_core::aggregator::Counters;
use gridmuc_core::{Alert, IntervalStats};
use gridmuc_xmpp::bot::{BotConfig, BotEvent, run_bot, summary_line};
use gridmuc_xmpp::private::run_leader;
use serde::Serialize;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config (see examples/substation.toml): `[account]`, room, nick, operators, `[aggregator]`.
    #[arg(long, short, default_value = "examples/substation.toml")]
    pub config: PathBuf,
    /// Print errors only: no interval lines, alerts, refusals or info logs.
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// Print one JSON object per event on stdout (intervals, alerts, refusals, the final counts).
    #[arg(long)]
    pub json: bool,
}

/// How the console shows the bot's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Lines,
    Json,
    Quiet,
}

/// One console event, as `--json` prints it: `{"event": "interval", …}`.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    /// An interval that at least one meter reported in.
    Interval(&'a IntervalStats),
    /// An alert raised or cleared.
    Alert(&'a Alert),
    /// A stanza or reading refused.
    Refused { reason: &'static str },
    /// The bot stopped; its final counts.
    Stopped {
        accepted: u64,
        rejected: u64,
        intervals: u64,
        alerts: u64,
    },
}

impl Event<'_> {
    /// The console's text for this event under `style`, if it shows one.
    fn render(&self, style: Style) -> Option<String> {
        match style {
            Style::Quiet => None,
            // Serialising plain data to a String cannot fail.
            Style::Json => serde_json::to_string(self).ok(),
            Style::Lines => Some(match self {
                Event::Interval(stats) => summary_line(stats),
                Event::Alert(a) => format!("ALERT {}", a.body()),
                Event::Refused { reason } => format!("refused: {reason}"),
                Event::Stopped {
                    accepted,
                    rejected,
                    intervals,
                    alerts,
                } => format!(
                    "readings accepted: {accepted}, rejected: {rejected}, intervals: {intervals}, alerts: {alerts}"
                ),
            }),
        }
    }

    fn stopped(c: &Counters) -> Event<'static> {
        Event::Stopped {
            accepted: c.accepted,
            rejected: c.rejected.total(),
            intervals: c.intervals,
            alerts: c.alerts,
        }
    }
}

/// Prints `e` on stdout in `style`.
fn show(e: &Event<'_>, style: Style) {
    if let Some(line) = e.render(style) {
        println!("{line}");
    }
}

/// What the console shows of one bot event; nothing for an interval no meter reported in.
fn console_event(e: &BotEvent) -> Option<Event<'_>> {
    match e {
        BotEvent::Summary { stats, .. } if stats.meters > 0 => Some(Event::Interval(stats)),
        BotEvent::Alert(a) => Some(Event::Alert(a)),
        BotEvent::Refused(r) => Some(Event::Refused { reason: r.kind() }),
        BotEvent::Summary { .. } | BotEvent::Joined(_) | BotEvent::Stanza(_) => None,
    }
}

impl Args {
    /// The log level when `RUST_LOG` is unset: `--quiet` and `--json` keep stderr to errors.
    pub fn default_log_level(&self) -> &'static str {
        if self.quiet || self.json {
            "error"
        } else {
            "info"
        }
    }

    fn style(&self) -> Style {
        match (self.quiet, self.json) {
            (true, _) => Style::Quiet,
            (false, true) => Style::Json,
            (false, false) => Style::Lines,
        }
    }
}

/// Runs the bot until Ctrl-C, printing its events, then the final counters.
pub fn run(args: Args) -> anyhow::Result<()> {
    let style = args.style();
    let cfg: BotConfig = read_config(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if cfg.private.is_some() {
        let refusals = rt.block_on(run_leader(cfg, None, ctrl_c))?;
        if style != Style::Quiet {
            println!("reports refused: {}", refusals.total());
        }
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let report = rt.block_on(async {
        let printer = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if let Some(shown) = console_event(&e) {
                    show(&shown, style);
                }
            }
        });
        // The bot drops its sender when it returns, which ends the printer.
        let report = run_bot(cfg, Some(tx), ctrl_c).await;
        let _ = printer.await;
        report
    })?;
    show(&Event::stopped(&report.counters), style);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_core::alert::AlertState;
    use gridmuc_core::{AlertKind, Rejection, Severity, Timestamp, Watts};

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
        // The commented [acks] table states the defaults.
        let acks = include_str!("../../../examples/substation.toml")
            .replace("# [acks]", "[acks]")
            .replace("# max_readings = 16", "max_readings = 16")
            .replace("# max_wait_ms = 5000", "max_wait_ms = 5000");
        let cfg: BotConfig = toml::from_str(&acks).unwrap();
        assert_eq!(cfg.acks, gridmuc_xmpp::bot::AckBatch::default());
    }

    fn json(e: &Event<'_>) -> serde_json::Value {
        serde_json::from_str(&e.render(Style::Json).unwrap()).unwrap()
    }

    #[test]
    fn json_events_are_one_tagged_object_each() {
        let mut values = [1_000, 2_000, 3_000];
        let stats = IntervalStats::compute(Timestamp(60_000), 60_000, &mut values);
        let v = json(&Event::Interval(&stats));
        assert_eq!(v["event"], "interval");
        assert_eq!(v["meters"], 3);
        assert_eq!(v["total"], 6_000);
        assert_eq!(v["start"], 60_000);
        assert_eq!(v["median"], 2_000.0);

        let alert = Alert {
            kind: AlertKind::Overload,
            severity: Severity::Critical,
            state: AlertState::Raised,
            at: Timestamp(120_000),
            nick: None,
            value: Watts(412_300),
            threshold: Watts(400_000),
        };
        let v = json(&Event::Alert(&alert));
        assert_eq!(v["event"], "alert");
        assert_eq!(
            v["kind"],
            serde_json::to_value(AlertKind::Overload).unwrap()
        );
        assert_eq!(v["value"], 412_300);
        assert_eq!(v["threshold"], 400_000);
        assert_eq!(v["nick"], serde_json::Value::Null);

        let v = json(&Event::Refused {
            reason: Rejection::Late.kind(),
        });
        assert_eq!(v, serde_json::json!({"event": "refused", "reason": "late"}));

        let line = Event::stopped(&Counters::default())
            .render(Style::Json)
            .unwrap();
        assert_eq!(
            line,
            r#"{"event":"stopped","accepted":0,"rejected":0,"intervals":0,"alerts":0}"#
        );
        assert!(!line.contains('\n'), "one line per event");
    }

    #[test]
    fn lines_show_intervals_alerts_and_refusals_and_quiet_shows_none() {
        let mut values = [1_500];
        let stats = IntervalStats::compute(Timestamp(0), 60_000, &mut values);
        let line = Event::Interval(&stats).render(Style::Lines).unwrap();
        assert_eq!(line, summary_line(&stats));
        assert!(line.contains("1 meters"), "{line}");
        assert_eq!(
            Event::Refused {
                reason: "over_limit"
            }
            .render(Style::Lines)
            .as_deref(),
            Some("refused: over_limit")
        );
        assert_eq!(Event::Interval(&stats).render(Style::Quiet), None);
    }

    #[test]
    fn an_interval_without_meters_prints_nothing() {
        let summary = |values: &mut [i64]| BotEvent::Summary {
            stats: IntervalStats::compute(Timestamp(0), 60_000, values),
            closed_at: Timestamp(60_000),
            counters: Box::default(),
        };
        assert!(console_event(&summary(&mut [])).is_none());
        assert!(matches!(
            console_event(&summary(&mut [2_000])),
            Some(Event::Interval(s)) if s.meters == 1
        ));
        assert!(matches!(
            console_event(&BotEvent::Refused(Rejection::NotANumber)),
            Some(Event::Refused { reason: "nan" })
        ));
    }
}
