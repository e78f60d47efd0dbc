//! Detection on interval totals alone, for masked mode, where the bot learns only the
//! neighbourhood sum of each interval and how many meters are in it.
//!
//! Same detectors and alert policy as [`crate::Aggregator`] (overload and aggregate spike),
//! fed with a known total instead of per-nickname readings. Per-house detection cannot run
//! here by construction: there are no per-house values. Sans-IO like the rest of the core:
//! the caller passes each finished interval in and drains the alerts.

use crate::aggregator::AggregatorConfig;
use crate::alert::{Alert, AlertState};
use crate::detect::StreetDetectors;
use crate::policy::AlertPolicy;
use crate::time::{Millis, Timestamp};
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One interval as masked mode knows it: when, how many meters, and their sum; nothing per house.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalTotal {
    /// Start of the interval.
    pub start: Timestamp,
    /// Length of the interval.
    pub length: Millis,
    /// Meters whose readings are in the sum.
    pub meters: usize,
    /// Neighbourhood net load: the sum of those readings.
    pub total: Watts,
}

impl IntervalTotal {
    /// One line for the room and the live view: total and count, nothing that needs per-house values.
    pub fn summary_line(&self) -> String {
        format!(
            "{} · {} meters · total {}",
            self.start, self.meters, self.total
        )
    }
}

/// Running totals of the monitor, so operators can see what was evaluated and what was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TotalsCounters {
    /// Intervals evaluated (empty ones included, though they skip the detectors).
    pub intervals: u64,
    /// Intervals refused because they did not come after the last one evaluated.
    pub out_of_order: u64,
    /// Alerts raised (escalations included; clears not counted).
    pub alerts: u64,
}

/// What happened to one interval total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotalIngest {
    /// Evaluated by the detectors.
    Evaluated,
    /// Not after the last evaluated interval: the detectors' baselines assume time order.
    OutOfOrder,
}

/// Overload and aggregate-spike detection plus the alert policy over known interval totals.
#[derive(Debug)]
pub struct TotalsMonitor {
    length: Millis,
    street: StreetDetectors,
    policy: AlertPolicy,
    alerts: VecDeque<Alert>,
    last: Option<IntervalTotal>,
    counters: TotalsCounters,
    scratch: Vec<Alert>,
}

impl TotalsMonitor {
    /// A monitor with the overload, spike and policy settings of `config` (its per-house
    /// outlier settings do not apply: there are no per-house values).
    pub fn new(config: &AggregatorConfig) -> Self {
        TotalsMonitor {
            length: config.interval.max(1),
            street: StreetDetectors::new(
                config.overload.clone(),
                config.spike.clone(),
                config.baseline.clone(),
                config.interval.max(1),
            ),
            policy: AlertPolicy::new(config.policy.clone()),
            alerts: VecDeque::new(),
            last: None,
            counters: TotalsCounters::default(),
            scratch: Vec::new(),
        }
    }

    /// Takes the finished total of the interval starting at `start`; intervals must come in
    /// time order (gaps are fine: a round that could not be unmasked is simply missing).
    pub fn handle_total(&mut self, start: Timestamp, meters: usize, total: Watts) -> TotalIngest {
        if self.last.as_ref().is_some_and(|l| start <= l.start) {
            self.counters.out_of_order += 1;
            return TotalIngest::OutOfOrder;
        }
        self.counters.intervals += 1;
        let interval = IntervalTotal {
            start,
            length: self.length,
            meters,
            total,
        };
        if meters > 0 {
            let mut findings = Vec::new();
            self.street
                .observe(start, self.length, total, &mut findings);
            self.scratch.clear();
            self.policy.evaluate(start, findings, &mut self.scratch);
            for a in self.scratch.drain(..) {
                if a.state == AlertState::Raised {
                    self.counters.alerts += 1;
                }
                self.alerts.push_back(a);
            }
        }
        self.last = Some(interval);
        TotalIngest::Evaluated
    }

    /// Drains the alerts produced so far, oldest first.
    pub fn poll_alerts(&mut self) -> impl Iterator<Item = Alert> + '_ {
        self.alerts.drain(..)
    }

    /// The most recently evaluated interval, for `status`.
    pub fn last(&self) -> Option<&IntervalTotal> {
        self.last.as_ref()
    }

    /// Running totals.
    pub fn counters(&self) -> &TotalsCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregator::Aggregator;
    use crate::alert::{AlertKind, Severity};
    use crate::detect::OverloadConfig;
    use crate::nick::RoomNick;
    use crate::reading::{Quality, Reading};
    use crate::time::MINUTE;

    fn config(rating_kw: f64) -> AggregatorConfig {
        AggregatorConfig {
            overload: OverloadConfig {
                rating: Watts::from_kw(rating_kw),
                ..OverloadConfig::default()
            },
            ..AggregatorConfig::default()
        }
    }

    /// Deterministic per-house wobble of ±300 W around 1 kW, as in the aggregator tests.
    fn steady(m: i64, h: usize) -> i64 {
        1000 + ((m * 7 + h as i64 * 13) % 61 - 30) * 10
    }

    fn load(m: i64, h: usize) -> i64 {
        let overload = if (40..100).contains(&m) { 1200 } else { 0 };
        let spike = if m == 20 && h < 25 { 1500 } else { 0 };
        steady(m, h) + overload + spike
    }

    #[test]
    fn overload_from_totals_raises_once_and_clears_once() {
        let mut mon = TotalsMonitor::new(&config(60.0));
        let mut alerts = Vec::new();
        for m in 0..600 {
            let total: i64 = (0..50).map(|h| load(m, h)).sum();
            let got = mon.handle_total(Timestamp(m * MINUTE), 50, Watts(total));
            assert_eq!(got, TotalIngest::Evaluated);
            alerts.extend(mon.poll_alerts());
        }
        let overload: Vec<_> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::Overload)
            .collect();
        // 110 kW on a 60 kW transformer for an hour: warned within minutes, then critical, one clear.
        let states: Vec<_> = overload.iter().map(|a| (a.state, a.severity)).collect();
        assert_eq!(
            states,
            [
                (AlertState::Raised, Severity::Warning),
                (AlertState::Raised, Severity::Critical),
                (AlertState::Cleared, Severity::Critical)
            ]
        );
        let at = overload[0].at;
        assert!((40 * MINUTE..50 * MINUTE).contains(&at.0), "{at}");
        assert_eq!(
            overload[0].value,
            Watts((0..50).map(|h| load(at.0 / MINUTE, h)).sum())
        );
        assert!(alerts.iter().all(|a| a.nick.is_none()));
        assert_eq!(mon.counters().intervals, 600);
        assert_eq!(mon.last().map(|l| l.meters), Some(50));
    }

    #[test]
    fn same_neighbourhood_alerts_as_the_per_house_aggregator() {
        // The per-house path sees every reading; the totals path only the sums. For the
        // neighbourhood detectors the two must agree exactly.
        let cfg = config(60.0);
        let mut agg = Aggregator::new(cfg.clone());
        let mut mon = TotalsMonitor::new(&cfg);
        let (mut full, mut masked) = (Vec::new(), Vec::new());
        for m in 0..140 {
            let at = m * MINUTE;
            for h in 0..50 {
                let nick = RoomNick::new(format!("n{h}")).unwrap_or_else(|_| unreachable!());
                let r = Reading {
                    power: Watts(load(m, h)),
                    at: Timestamp(at),
                    seqnr: (m as u64) << 16 | h as u64,
                    quality: Quality::AUTOMATIC_READOUT,
                };
                agg.handle_reading(Timestamp(at + 2_000), &nick, r);
            }
            agg.handle_timeout(Timestamp(at + MINUTE + 6_000));
            for s in agg.poll_summaries() {
                mon.handle_total(s.start, s.meters, s.total);
            }
            full.extend(agg.poll_alerts().filter(|a| a.nick.is_none()));
            masked.extend(mon.poll_alerts());
        }
        assert!(masked.iter().any(|a| a.kind == AlertKind::AggregateSpike));
        assert!(masked.iter().any(|a| a.kind == AlertKind::Overload));
        assert_eq!(full, masked);
    }

    #[test]
    fn out_of_order_and_empty_intervals() {
        let mut mon = TotalsMonitor::new(&config(1.0));
        assert_eq!(
            mon.handle_total(Timestamp(MINUTE), 0, Watts::ZERO),
            TotalIngest::Evaluated
        );
        // An empty interval skips the detectors even far above the rating.
        assert_eq!(mon.poll_alerts().count(), 0);
        assert_eq!(
            mon.handle_total(Timestamp(MINUTE), 3, Watts(5_000)),
            TotalIngest::OutOfOrder
        );
        assert_eq!(
            mon.handle_total(Timestamp(0), 3, Watts(5_000)),
            TotalIngest::OutOfOrder
        );
        assert_eq!(
            mon.handle_total(Timestamp(3 * MINUTE), 3, Watts(5_000)),
            TotalIngest::Evaluated
        );
        let alerts: Vec<_> = mon.poll_alerts().collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, AlertKind::Overload);
        assert_eq!(alerts[0].value, Watts(5_000));
        let c = mon.counters();
        assert_eq!((c.intervals, c.out_of_order, c.alerts), (2, 2, 1));
    }

    #[test]
    fn summary_line_shows_total_and_count_only() {
        let t = IntervalTotal {
            start: Timestamp(0),
            length: MINUTE,
            meters: 10,
            total: Watts(16_450),
        };
        assert_eq!(
            t.summary_line(),
            "1970-01-01T00:00:00Z · 10 meters · total 16.45 kW"
        );
    }
}
