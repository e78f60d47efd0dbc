//! `gridmuc substation`: the operator bot against any XMPP server, configured by a TOML file.
//!
//! The console follows the bot's events, not its log: one line per interval that a meter
//! reported in, every alert and every refusal reason, in plain and in private mode (the
//! leader's published, withheld and lost intervals); `--json` prints the same events as one
//! JSON object a line for scripts, `--quiet` nothing but errors.

use crate::meter::read_config;
use gridmuc_core::aggregator::Counters;
use gridmuc_core::codec::Summary;
use gridmuc_core::{Alert, IntervalStats, Millis, Timestamp};
use gridmuc_xmpp::bot::{BotConfig, BotEvent, run_bot, summary_line};
use gridmuc_xmpp::private::{LeaderEvent, interval_line, run_leader};
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
    /// Private mode: an interval the leader published (never one without reports).
    #[serde(rename = "interval")]
    Published {
        #[serde(flatten)]
        summary: &'a Summary,
        /// The leader's line for people, as posted in the room.
        #[serde(skip)]
        line: String,
    },
    /// Private mode: an interval with too few reports for the helper to release.
    Skipped { start: Timestamp, reports: u64 },
    /// Private mode: an interval the helper never released.
    Lost { start: Timestamp },
    /// An alert raised or cleared.
    Alert(&'a Alert),
    /// A stanza, reading or report refused.
    Refused { reason: &'static str },
    /// The bot stopped; its final counts.
    Stopped {
        accepted: u64,
        rejected: u64,
        intervals: u64,
        alerts: u64,
    },
    /// Private mode's leader stopped; the reports it refused.
    #[serde(rename = "stopped")]
    LeaderStopped { refused: u64 },
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
                Event::Published { line, .. } => line.clone(),
                Event::Skipped { start, reports } => format!(
                    "interval {start}: {reports} reports, below the helper's minimum: nothing released"
                ),
                Event::Lost { start } => {
                    format!("interval {start}: the helper never released it; its reports are lost")
                }
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
                Event::LeaderStopped { refused } => format!("reports refused: {refused}"),
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

/// What the console shows of one private-mode leader event (intervals are `length` long); the
/// leader publishes no interval without reports, and an interval withheld with none says nothing.
fn leader_event(e: &LeaderEvent, length: Millis) -> Option<Event<'_>> {
    let start = |interval: u64| {
        Timestamp(
            i64::try_from(interval)
                .unwrap_or(i64::MAX)
                .saturating_mul(length),
        )
    };
    match e {
        LeaderEvent::Interval {
            result,
            spike,
            summary,
        } => Some(Event::Published {
            summary,
            line: interval_line(summary.start, result, *spike),
        }),
        // No line for an interval nobody reported in.
        LeaderEvent::Skipped { reports: 0, .. } => None,
        LeaderEvent::Skipped { interval, reports } => Some(Event::Skipped {
            start: start(*interval),
            reports: *reports,
        }),
        LeaderEvent::Lost { interval } => Some(Event::Lost {
            start: start(*interval),
        }),
        LeaderEvent::Alert(a) => Some(Event::Alert(a)),
        LeaderEvent::Refused { reason, .. } => Some(Event::Refused {
            reason: reason.name(),
        }),
        LeaderEvent::Joined { .. } | LeaderEvent::Unverified { .. } => None,
    }
}

/// The line `gridmuc substation` prints for a private-mode leader event; the demo prints the same.
pub(crate) fn leader_line(e: &LeaderEvent, length: Millis) -> Option<String> {
    leader_event(e, length).and_then(|shown| shown.render(Style::Lines))
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

/// Runs the bot until Ctrl-C or SIGTERM, printing its events, then the final counters.
pub fn run(args: Args) -> anyhow::Result<()> {
    let style = args.style();
    let cfg: BotConfig = read_config(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let stop = async {
        crate::shutdown::requested().await;
    };
    if cfg.private.is_some() {
        let length = cfg.aggregator.interval;
        let refusals = rt.block_on(with_printer(
            |tx| run_leader(cfg, Some(tx), stop),
            move |e| {
                if let Some(shown) = leader_event(&e, length) {
                    show(&shown, style);
                }
            },
        ))?;
        show(
            &Event::LeaderStopped {
                refused: refusals.total(),
            },
            style,
        );
        return Ok(());
    }
    let report = rt.block_on(with_printer(
        |tx| run_bot(cfg, Some(tx), stop),
        move |e| {
            if let Some(shown) = console_event(&e) {
                show(&shown, style);
            }
        },
    ))?;
    show(&Event::stopped(&report.counters), style);
    Ok(())
}

/// Runs a bot with an event channel whose events a printer task hands to `print` as they come;
/// the bot drops its sender when it returns, which ends the printer.
async fn with_printer<E: Send + 'static, R>(
    bot: impl FnOnce(mpsc::UnboundedSender<E>) -> R,
    mut print: impl FnMut(E) + Send + 'static,
) -> R::Output
where
    R: Future,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            print(e);
        }
    });
    let out = bot(tx).await;
    let _ = printer.await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_core::alert::AlertState;
    use gridmuc_core::codec::{SpikeSummary, SummaryMode};
    use gridmuc_core::{AlertKind, Rejection, RoomNick, Severity, Watts};
    use gridmuc_private::{IntervalResult, Refusal, SpikeCount};

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
            .replace("# max_wait = \"5s\"", "max_wait = \"5s\"");
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

    /// A leader's interval of three reports (0.5, 1 and 2.5 kW) starting at 10:00:05.
    fn published() -> LeaderEvent {
        let start = Timestamp::parse_rfc3339("2026-11-30T10:00:05Z").unwrap();
        let result = IntervalResult {
            interval: 120_000_001,
            reports: 3,
            total_watts: 4_000,
            histogram: vec![1, 1, 1],
            bucket_edges: vec![0, 1_000, 2_000],
            max_watts: 25_000,
            mean: 4_000.0 / 3.0,
            median_estimate: 1_250.4,
            p95_estimate: 2_400.0,
        };
        let spike = Some(SpikeCount {
            threshold_watts: 9_200,
            reports: 0,
        });
        LeaderEvent::Interval {
            summary: Box::new(Summary {
                mode: SummaryMode::Private,
                start,
                length: 5_000,
                meters: 3,
                total: Watts(4_000),
                mean: Watts(1_333),
                median: Watts(1_250),
                p95: Watts(2_400),
                rating: Watts(150_000),
                revision: 0,
                spikes: Some(SpikeSummary {
                    houses: 0,
                    threshold: Watts(9_200),
                }),
            }),
            result,
            spike,
        }
    }

    #[test]
    fn private_mode_prints_the_leaders_line_alerts_refusals_and_withheld_intervals() {
        let e = published();
        let LeaderEvent::Interval {
            result,
            spike,
            summary,
        } = &e
        else {
            unreachable!()
        };
        let line = leader_line(&e, 5_000).unwrap();
        assert_eq!(line, interval_line(summary.start, result, *spike));
        assert!(
            line.starts_with("interval 2026-11-30T10:00:05Z: 3 meters, total 4.00 kW"),
            "{line}"
        );
        let refused = LeaderEvent::Refused {
            from: RoomNick::new("amber-otter-1").unwrap(),
            reason: Refusal::Replay,
        };
        assert_eq!(
            leader_line(&refused, 5_000).as_deref(),
            Some("refused: replay"),
            "the reason, never the nickname"
        );
        // Interval 3 of 5-s intervals starts 15 s after the epoch.
        let skipped = LeaderEvent::Skipped {
            interval: 3,
            reports: 4,
        };
        assert_eq!(
            leader_line(&skipped, 5_000).as_deref(),
            Some(
                "interval 1970-01-01T00:00:15Z: 4 reports, below the helper's minimum: nothing released"
            )
        );
        let empty = LeaderEvent::Skipped {
            interval: 3,
            reports: 0,
        };
        assert_eq!(leader_line(&empty, 5_000), None, "nobody reported");
        assert!(
            leader_line(&LeaderEvent::Lost { interval: 3 }, 5_000)
                .unwrap()
                .contains("never released")
        );
        let joined = LeaderEvent::Joined {
            nick: RoomNick::new("substation").unwrap(),
            epoch: 1,
        };
        assert_eq!(leader_line(&joined, 5_000), None);
        assert_eq!(
            leader_event(&e, 5_000).unwrap().render(Style::Quiet),
            None,
            "--quiet prints none"
        );
    }

    #[test]
    fn private_mode_json_has_the_summary_elements_figures() {
        let e = published();
        let v = json(&leader_event(&e, 5_000).unwrap());
        assert_eq!(v["event"], "interval");
        assert_eq!(v["mode"], "private");
        assert_eq!(v["meters"], 3);
        assert_eq!(v["total"], 4_000);
        assert_eq!(v["median"], 1_250);
        assert_eq!(v["rating"], 150_000);
        assert_eq!(v["spikes"]["houses"], 0);
        assert!(v.get("line").is_none(), "the line is for people only");
        let refused = LeaderEvent::Refused {
            from: RoomNick::new("amber-otter-1").unwrap(),
            reason: Refusal::Replay,
        };
        assert_eq!(
            json(&leader_event(&refused, 5_000).unwrap()),
            serde_json::json!({"event": "refused", "reason": "replay"})
        );
        assert_eq!(
            Event::LeaderStopped { refused: 2 }
                .render(Style::Json)
                .unwrap(),
            r#"{"event":"stopped","refused":2}"#
        );
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
