//! The aggregator: readings in, interval summaries and alerts out; shared by the live bot and the simulator.
//!
//! In the style of quinn-proto: the caller feeds inputs with the current time
//! ([`Aggregator::handle_reading`], [`Aggregator::handle_timeout`]) and drains outputs
//! ([`Aggregator::poll_summaries`], [`Aggregator::poll_alerts`]); it asks
//! [`Aggregator::poll_timeout`] when to call again.

use crate::alert::{Alert, AlertState};
use crate::baseline::BaselineConfig;
use crate::detect::{OutlierConfig, OutlierDetector, OverloadConfig, SpikeConfig, StreetDetectors};
use crate::meters::{MeterHealth, MeterHealthConfig};
use crate::nick::RoomNick;
use crate::outbox::{ReadingId, SeenIds};
use crate::policy::{AlertPolicy, PolicyConfig};
use crate::reading::Reading;
use crate::reject::{Rejection, RejectionCounts};
use crate::stats::IntervalStats;
use crate::time::{Millis, Timestamp};
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Everything the aggregator can be tuned with; embeddable in TOML as a `[detectors]`-style table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Reporting interval: readings are bucketed by `reading.at` into intervals of this length.
    #[serde(with = "crate::time::span::ms")]
    pub interval: Millis,
    /// How long after an interval ends late readings are still taken before it is closed.
    #[serde(with = "crate::time::span::ms")]
    pub grace: Millis,
    /// Readings stamped further than this ahead of `now` are refused.
    #[serde(with = "crate::time::span::ms")]
    pub max_future: Millis,
    /// How long after closing an interval late readings (resent after an outage) still amend it,
    /// followed by a revised summary; 0 refuses them as late. Detectors act on the first close only.
    #[serde(with = "crate::time::span::ms")]
    pub backfill: Millis,
    /// Per-nickname rate limit: readings beyond this many in one interval are refused.
    pub max_readings_per_interval: u32,
    /// Transformer overload detection.
    pub overload: OverloadConfig,
    /// Aggregate spike detection.
    pub spike: SpikeConfig,
    /// Per-house outlier detection.
    pub outlier: OutlierConfig,
    /// Stuck- and zero-meter detection.
    pub meters: MeterHealthConfig,
    /// The time-of-week baseline the overload forecast and the spike detector compare with.
    pub baseline: BaselineConfig,
    /// Alert dedup and cooldown.
    pub policy: PolicyConfig,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            interval: 60_000,
            grace: 5_000,
            max_future: 30_000,
            backfill: 600_000,
            max_readings_per_interval: 4,
            overload: OverloadConfig::default(),
            spike: SpikeConfig::default(),
            outlier: OutlierConfig::default(),
            meters: MeterHealthConfig::default(),
            baseline: BaselineConfig::default(),
            policy: PolicyConfig::default(),
        }
    }
}

/// What happened to one reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingest {
    /// Counted in its interval.
    Accepted,
    /// Dropped, with the reason (also counted in [`Counters::rejected`]).
    Rejected(Rejection),
}

/// Running totals, so sent-versus-ingested can be checked and nothing is dropped silently.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Readings counted in an interval.
    pub accepted: u64,
    /// Readings and stanzas refused, by reason (codec rejections included via [`Aggregator::handle_rejection`]).
    pub rejected: RejectionCounts,
    /// Intervals closed (empty ones included).
    pub intervals: u64,
    /// Alerts raised (escalations included; clears not counted).
    pub alerts: u64,
    /// Of the accepted readings, those that arrived after their interval closed and amended it.
    pub backfilled: u64,
}

/// Per-nickname accumulation inside one interval.
#[derive(Clone, Debug)]
struct Slot {
    sum: i64,
    count: u32,
    first_seqnr: u64,
    more_seqnrs: Vec<u64>,
}

impl Slot {
    fn seen(&self, seqnr: u64) -> bool {
        self.first_seqnr == seqnr || self.more_seqnrs.contains(&seqnr)
    }
}

/// An interval's readings by nickname; kept after closing for the backfill window.
#[derive(Debug)]
struct Interval {
    start: Timestamp,
    slots: HashMap<RoomNick, Slot>,
    /// Summaries published for it so far, minus one (the first close is revision 0).
    revision: u32,
    /// Amended since its last summary.
    dirty: bool,
}

impl Interval {
    /// Counts `reading` under `nick`, refusing repeats of a seqnr and readings over the rate limit.
    fn add(&mut self, nick: &RoomNick, reading: Reading, limit: u32) -> Result<(), Rejection> {
        match self.slots.get_mut(nick) {
            Some(slot) => {
                if slot.seen(reading.seqnr) {
                    return Err(Rejection::Duplicate);
                }
                if slot.count >= limit {
                    return Err(Rejection::RateLimited);
                }
                slot.sum += reading.power.0;
                slot.count += 1;
                slot.more_seqnrs.push(reading.seqnr);
            }
            None => {
                self.slots.insert(
                    nick.clone(),
                    Slot {
                        sum: reading.power.0,
                        count: 1,
                        first_seqnr: reading.seqnr,
                        more_seqnrs: Vec::new(),
                    },
                );
            }
        }
        Ok(())
    }

    /// One value per nickname: the mean of its readings in the interval.
    fn values(&self) -> impl Iterator<Item = (&RoomNick, Watts)> {
        self.slots.iter().map(|(nick, s)| {
            let mean = (s.sum as f64 / f64::from(s.count)).round() as i64;
            (nick, Watts(mean))
        })
    }
}

/// Streaming per-interval aggregation with detectors and an alert policy; no I/O, no clock.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    /// Start of the oldest interval not yet closed; `None` until the first reading.
    next_close: Option<Timestamp>,
    open: Vec<Interval>,
    /// Closed intervals still open to backfill, oldest first.
    closed: VecDeque<Interval>,
    seen: SeenIds,
    spare_maps: Vec<HashMap<RoomNick, Slot>>,
    street: StreetDetectors,
    outlier: OutlierDetector,
    meters: MeterHealth,
    policy: AlertPolicy,
    summaries: VecDeque<IntervalStats>,
    alerts: VecDeque<Alert>,
    last: Option<IntervalStats>,
    last_values: Vec<(RoomNick, Watts)>,
    counters: Counters,
    scratch_values: Vec<i64>,
    scratch_alerts: Vec<Alert>,
}

/// At most this many empty intervals are reported after a long silence; the rest are skipped.
const MAX_EMPTY_BACKFILL: i64 = 1_000;

/// Reading ids remembered at most, whatever the window: bounds memory under a flood of fresh ids.
const SEEN_IDS_CAPACITY: usize = 1 << 20;

impl Aggregator {
    /// An aggregator that starts its first interval at the first reading it accepts.
    pub fn new(config: AggregatorConfig) -> Self {
        let config = AggregatorConfig {
            interval: config.interval.max(1),
            grace: config.grace.max(0),
            backfill: config.backfill.max(0),
            ..config
        };
        let horizon = config.interval + config.grace + config.backfill.max(0) + config.max_future;
        Aggregator {
            seen: SeenIds::new(horizon, SEEN_IDS_CAPACITY),
            closed: VecDeque::new(),
            street: StreetDetectors::new(
                config.overload.clone(),
                config.spike.clone(),
                config.baseline.clone(),
                config.interval,
            ),
            outlier: OutlierDetector::new(config.outlier.clone()),
            meters: MeterHealth::new(config.meters.clone()),
            policy: AlertPolicy::new(config.policy.clone()),
            config,
            next_close: None,
            open: Vec::new(),
            spare_maps: Vec::new(),
            summaries: VecDeque::new(),
            alerts: VecDeque::new(),
            last: None,
            last_values: Vec::new(),
            counters: Counters::default(),
            scratch_values: Vec::new(),
            scratch_alerts: Vec::new(),
        }
    }

    /// The configuration in force (after sanitising).
    pub fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    /// Takes one decoded reading from the occupant `nick`, at time `now`.
    pub fn handle_reading(&mut self, now: Timestamp, nick: &RoomNick, reading: Reading) -> Ingest {
        match self.ingest(now, nick, reading) {
            Ok(()) => {
                self.counters.accepted += 1;
                Ingest::Accepted
            }
            Err(r) => {
                self.counters.rejected.record(&r);
                Ingest::Rejected(r)
            }
        }
    }

    /// Like [`Aggregator::handle_reading`] for a reading that carries its sender's random id:
    /// a copy resent after an outage, even under another nickname, is counted once.
    pub fn handle_reading_once(
        &mut self,
        now: Timestamp,
        nick: &RoomNick,
        id: ReadingId,
        reading: Reading,
    ) -> Ingest {
        if self.seen.contains(id, now) {
            self.handle_rejection(&Rejection::Duplicate);
            return Ingest::Rejected(Rejection::Duplicate);
        }
        let ingest = self.handle_reading(now, nick, reading);
        if ingest == Ingest::Accepted {
            self.seen.insert(id, now);
        }
        ingest
    }

    fn ingest(
        &mut self,
        now: Timestamp,
        nick: &RoomNick,
        reading: Reading,
    ) -> Result<(), Rejection> {
        if reading.quality.is_unusable() {
            return Err(Rejection::Unusable);
        }
        if reading.at.since(now) > self.config.max_future {
            return Err(Rejection::Future);
        }
        let limit = self.config.max_readings_per_interval;
        let start = reading.at.floor_to(self.config.interval);
        let closes = start.plus(self.config.interval + self.config.grace);
        // Past its end plus grace plus backfill an interval is closed for good, even before
        // `handle_timeout` runs, so a stale reading never sets the origin further back than
        // the backfill window. Within it, even a bot that has just (re)started takes the
        // readings its outage held back.
        if closes.plus(self.config.backfill) <= now {
            return Err(Rejection::Late);
        }
        let mut next_close = *self.next_close.get_or_insert(start);
        if start < next_close && self.closed.is_empty() && self.counters.intervals == 0 {
            // Nothing published yet: move the origin back rather than refuse the backfill.
            next_close = start;
            self.next_close = Some(start);
        }
        if start < next_close {
            let closed = self
                .closed
                .iter_mut()
                .find(|c| c.start == start)
                .ok_or(Rejection::Late)?;
            closed.add(nick, reading, limit)?;
            closed.dirty = true;
            self.counters.backfilled += 1;
            return Ok(());
        }
        let idx = match self.open.iter().position(|o| o.start == start) {
            Some(i) => i,
            None => {
                let slots = self.spare_maps.pop().unwrap_or_default();
                self.open.push(Interval {
                    start,
                    slots,
                    revision: 0,
                    dirty: false,
                });
                self.open.len() - 1
            }
        };
        self.open[idx].add(nick, reading, limit)
    }

    /// Counts a stanza the codec refused, so every drop shows up in the counters.
    pub fn handle_rejection(&mut self, rejection: &Rejection) {
        self.counters.rejected.record(rejection);
    }

    /// Closes every interval whose end plus grace is at or before `now`, and publishes a revised
    /// summary of each closed interval that late readings amended since its last one.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let Some(mut next) = self.next_close else {
            return;
        };
        self.revise_and_expire(now);
        let step = self.config.interval;
        let wait = step + self.config.grace;
        let due = |start: Timestamp| start.plus(wait) <= now;
        let mut empties = 0;
        while due(next) {
            let has_data = self.open.iter().any(|o| o.start == next);
            if !has_data {
                empties += 1;
                if empties > MAX_EMPTY_BACKFILL {
                    // Jump to the next interval with data (or to now), reporting nothing in between.
                    let resume = self
                        .open
                        .iter()
                        .map(|o| o.start)
                        .min()
                        .unwrap_or_else(|| now.floor_to(step).plus(-step));
                    next = resume.max(next.plus(step));
                    continue;
                }
            }
            self.close(next);
            next = next.plus(step);
        }
        self.next_close = Some(next);
    }

    /// Closes every open interval now, whatever the time: for the end of a simulation or a shutdown.
    pub fn flush(&mut self) {
        while let Some(last) = self.open.iter().map(|o| o.start).max() {
            let next = self.next_close.unwrap_or(last);
            self.handle_timeout(
                next.max(last)
                    .plus(self.config.interval + self.config.grace),
            );
        }
    }

    /// When [`Aggregator::handle_timeout`] next has work; `None` before the first reading.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_close
            .map(|s| s.plus(self.config.interval + self.config.grace))
    }

    /// Drains the alerts produced so far, oldest first.
    pub fn poll_alerts(&mut self) -> impl Iterator<Item = Alert> + '_ {
        self.alerts.drain(..)
    }

    /// Drains the interval summaries produced so far, oldest first.
    pub fn poll_summaries(&mut self) -> impl Iterator<Item = IntervalStats> + '_ {
        self.summaries.drain(..)
    }

    /// Running totals.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The most recently closed interval's statistics, for `status`.
    pub fn last_summary(&self) -> Option<&IntervalStats> {
        self.last.as_ref()
    }

    /// The transformer's modelled hot-spot temperature (°C) after the last interval, for `status`.
    pub fn hot_spot(&self) -> Option<f64> {
        self.street.hot_spot()
    }

    /// The `n` highest nicknames of the last closed interval, for `top`.
    pub fn top(&self, n: usize) -> Vec<(RoomNick, Watts)> {
        self.last_values.iter().take(n).cloned().collect()
    }

    /// Revised summaries for amended closed intervals; forgets those past the backfill window.
    fn revise_and_expire(&mut self, now: Timestamp) {
        let length = self.config.interval;
        for c in self.closed.iter_mut().filter(|c| c.dirty) {
            c.dirty = false;
            c.revision += 1;
            self.scratch_values.clear();
            self.scratch_values.extend(c.values().map(|(_, w)| w.0));
            let mut stats = IntervalStats::compute(c.start, length, &mut self.scratch_values);
            stats.revision = c.revision;
            self.summaries.push_back(stats);
        }
        let keep = length + self.config.grace + self.config.backfill;
        while let Some(c) = self.closed.front() {
            if c.start.plus(keep) > now {
                break;
            }
            if let Some(mut old) = self.closed.pop_front() {
                old.slots.clear();
                self.spare_maps.push(old.slots);
            }
        }
    }

    fn close(&mut self, start: Timestamp) {
        self.counters.intervals += 1;
        let length = self.config.interval;
        let interval = match self.open.iter().position(|o| o.start == start) {
            Some(pos) => self.open.swap_remove(pos),
            None => Interval {
                start,
                slots: HashMap::new(),
                revision: 0,
                dirty: false,
            },
        };
        self.last_values.clear();
        self.last_values
            .extend(interval.values().map(|(nick, w)| (nick.clone(), w)));
        if self.config.backfill > 0 {
            self.closed.push_back(interval);
        } else {
            let mut slots = interval.slots;
            slots.clear();
            self.spare_maps.push(slots);
        }
        if self.last_values.is_empty() {
            let stats = IntervalStats::empty(start, length);
            self.summaries.push_back(stats.clone());
            self.last = Some(stats);
            return;
        }
        self.last_values
            .sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.scratch_values.clear();
        self.scratch_values
            .extend(self.last_values.iter().map(|(_, w)| w.0));
        let mut stats = IntervalStats::compute(start, length, &mut self.scratch_values);

        let mut findings = Vec::new();
        self.street
            .observe(start, length, stats.total, &mut findings);
        self.outlier
            .observe(&self.last_values, stats.median, &mut findings);
        let hidden = self
            .meters
            .observe(start, &self.last_values, stats.median, &mut findings);
        stats.suspect_meters = hidden.meters;
        stats.hidden_load = hidden.load;
        self.scratch_alerts.clear();
        self.policy
            .evaluate(start, findings, &mut self.scratch_alerts);
        for a in self.scratch_alerts.drain(..) {
            if a.state == AlertState::Raised {
                self.counters.alerts += 1;
            }
            self.alerts.push_back(a);
        }
        self.summaries.push_back(stats.clone());
        self.last = Some(stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use crate::reading::Quality;
    use crate::time::MINUTE;

    fn nick(i: usize) -> RoomNick {
        RoomNick::new(format!("n{i}")).unwrap()
    }

    fn reading(w: i64, at: i64, seqnr: u64) -> Reading {
        Reading {
            power: Watts(w),
            at: Timestamp(at),
            seqnr,
            quality: Quality::AUTOMATIC_READOUT,
        }
    }

    fn config(rating_kw: f64) -> AggregatorConfig {
        AggregatorConfig {
            overload: OverloadConfig {
                rating: Watts::from_kw(rating_kw),
                ..OverloadConfig::default()
            },
            ..AggregatorConfig::default()
        }
    }

    /// Feeds `houses` meters for `minutes`, with per-minute, per-house power from `power`.
    fn drive(
        agg: &mut Aggregator,
        houses: usize,
        minutes: i64,
        power: impl Fn(i64, usize) -> i64,
    ) -> (Vec<IntervalStats>, Vec<Alert>) {
        let (mut stats, mut alerts) = (Vec::new(), Vec::new());
        for m in 0..minutes {
            let at = m * MINUTE;
            for h in 0..houses {
                let r = reading(power(m, h), at, (m as u64) << 16 | h as u64);
                assert_eq!(
                    agg.handle_reading(Timestamp(at + 2_000), &nick(h), r),
                    Ingest::Accepted
                );
            }
            agg.handle_timeout(Timestamp(at + MINUTE + 6_000));
            stats.extend(agg.poll_summaries());
            alerts.extend(agg.poll_alerts());
        }
        (stats, alerts)
    }

    /// Deterministic per-house wobble of ±300 W around 1 kW.
    fn steady(m: i64, h: usize) -> i64 {
        1000 + ((m * 7 + h as i64 * 13) % 61 - 30) * 10
    }

    #[test]
    fn steady_load_is_quiet_and_counted() {
        let mut agg = Aggregator::new(config(100.0));
        let (stats, alerts) = drive(&mut agg, 50, 120, steady);
        assert_eq!(stats.len(), 120);
        assert!(alerts.is_empty(), "{alerts:?}");
        assert_eq!(agg.counters().accepted, 50 * 120);
        assert!(stats.iter().all(|s| s.meters == 50));
        let expected: i64 = (0..50).map(|h| steady(7, h)).sum();
        assert_eq!(stats[7].total, Watts(expected));
    }

    #[test]
    fn long_overload_gives_one_alert_an_escalation_and_one_clear() {
        let mut agg = Aggregator::new(config(60.0));
        // 50 houses at ~1 kW = 50 kW; minutes 40..160 every house draws +1.5 kW => 125 kW, 2.1 × 60 kW.
        let (_, alerts) = drive(&mut agg, 50, 600, |m, h| {
            steady(m, h) + if (40..160).contains(&m) { 1500 } else { 0 }
        });
        let overload: Vec<_> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::Overload)
            .map(|a| (a.state, a.severity))
            .collect();
        assert_eq!(
            overload,
            [
                (AlertState::Raised, Severity::Warning),
                (AlertState::Raised, Severity::Critical),
                (AlertState::Cleared, Severity::Critical)
            ],
            "{alerts:?}"
        );
        let first = alerts.iter().find(|a| a.kind == AlertKind::Overload);
        // The winding heats within minutes of the step: warned in the first quarter hour.
        assert!(first.is_some_and(|a| (40 * MINUTE..55 * MINUTE).contains(&a.at.0)));
        assert!(agg.hot_spot().is_some_and(|t| t < 98.0));
        assert_eq!(
            agg.counters().alerts as usize,
            alerts
                .iter()
                .filter(|a| a.state == AlertState::Raised)
                .count()
        );
    }

    use crate::alert::Severity;

    #[test]
    fn injected_house_spike_names_only_that_nick() {
        let mut agg = Aggregator::new(config(500.0));
        let (_, alerts) = drive(&mut agg, 40, 60, |m, h| {
            if h == 17 && (30..33).contains(&m) {
                15_000
            } else {
                steady(m, h)
            }
        });
        let spikes: Vec<_> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::HouseSpike && a.state == AlertState::Raised)
            .collect();
        assert_eq!(spikes.len(), 1, "{alerts:?}");
        assert_eq!(spikes[0].nick, Some(nick(17)));
        assert_eq!(spikes[0].at, Timestamp(30 * MINUTE));
        assert_eq!(spikes[0].value, Watts(15_000));
    }

    #[test]
    fn aggregate_spike_detected() {
        let mut agg = Aggregator::new(config(1000.0));
        let (_, alerts) = drive(&mut agg, 50, 80, |m, h| {
            steady(m, h) + if m == 60 && h < 25 { 3000 } else { 0 }
        });
        let spikes: Vec<_> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::AggregateSpike && a.state == AlertState::Raised)
            .collect();
        assert_eq!(spikes.len(), 1, "{alerts:?}");
        assert_eq!(spikes[0].at, Timestamp(60 * MINUTE));
    }

    #[test]
    fn duplicates_late_future_rate_and_unusable_are_counted() {
        let mut agg = Aggregator::new(AggregatorConfig {
            max_readings_per_interval: 2,
            backfill: 0,
            ..AggregatorConfig::default()
        });
        let now = Timestamp(10_000);
        let n = nick(1);
        assert_eq!(
            agg.handle_reading(now, &n, reading(500, 0, 1)),
            Ingest::Accepted
        );
        assert_eq!(
            agg.handle_reading(now, &n, reading(500, 0, 1)),
            Ingest::Rejected(Rejection::Duplicate)
        );
        assert_eq!(
            agg.handle_reading(now, &n, reading(700, 0, 2)),
            Ingest::Accepted
        );
        assert_eq!(
            agg.handle_reading(now, &n, reading(900, 0, 3)),
            Ingest::Rejected(Rejection::RateLimited)
        );
        assert_eq!(
            agg.handle_reading(now, &n, reading(500, 120_000, 4)),
            Ingest::Rejected(Rejection::Future)
        );
        let mut bad = reading(500, 0, 5);
        bad.quality = Quality::ERROR;
        assert_eq!(
            agg.handle_reading(now, &nick(2), bad),
            Ingest::Rejected(Rejection::Unusable)
        );
        agg.handle_timeout(Timestamp(65_000));
        let s: Vec<_> = agg.poll_summaries().collect();
        assert_eq!(s.len(), 1);
        // Two readings of one nick count once, at their mean.
        assert_eq!((s[0].meters, s[0].total), (1, Watts(600)));
        assert_eq!(
            agg.handle_reading(Timestamp(66_000), &n, reading(500, 30_000, 9)),
            Ingest::Rejected(Rejection::Late)
        );
        let c = agg.counters();
        assert_eq!(c.accepted, 2);
        for kind in ["duplicate", "rate_limited", "future", "unusable", "late"] {
            assert_eq!(c.rejected.get(kind), 1, "{kind}");
        }
    }

    #[test]
    fn late_readings_amend_closed_intervals_once_with_a_revised_summary() {
        let mut agg = Aggregator::new(AggregatorConfig {
            backfill: 2 * MINUTE,
            ..AggregatorConfig::default()
        });
        agg.handle_reading(Timestamp(1_000), &nick(1), reading(100, 0, 1));
        agg.handle_timeout(Timestamp(65_000));
        let first: Vec<_> = agg.poll_summaries().collect();
        assert_eq!((first[0].total, first[0].revision), (Watts(100), 0));
        // After an outage meter 2 resends its reading of interval 0 under a fresh nickname, twice.
        let id = ReadingId(42);
        let late = reading(250, 0, 7);
        assert_eq!(
            agg.handle_reading_once(Timestamp(70_000), &nick(20), id, late),
            Ingest::Accepted
        );
        assert_eq!(
            agg.handle_reading_once(Timestamp(71_000), &nick(21), id, late),
            Ingest::Rejected(Rejection::Duplicate)
        );
        // Nothing is published until the next timeout, and then one revision per amended interval.
        assert_eq!(agg.poll_summaries().count(), 0);
        agg.handle_timeout(Timestamp(125_000));
        let s: Vec<_> = agg.poll_summaries().collect();
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!((s[0].start, s[0].revision), (Timestamp(0), 1));
        assert_eq!((s[0].meters, s[0].total), (2, Watts(350)));
        assert_eq!(
            (s[1].start, s[1].meters, s[1].revision),
            (Timestamp(MINUTE), 0, 0)
        );
        // Past interval end + grace + backfill it is late for good.
        assert_eq!(
            agg.handle_reading_once(Timestamp(185_001), &nick(22), ReadingId(43), late),
            Ingest::Rejected(Rejection::Late)
        );
        let c = agg.counters();
        assert_eq!((c.accepted, c.backfilled), (2, 1));
        assert_eq!(
            (c.rejected.get("duplicate"), c.rejected.get("late")),
            (1, 1)
        );
    }

    #[test]
    fn a_restarted_bot_takes_backfill_from_before_its_start() {
        let config = AggregatorConfig {
            backfill: 5 * MINUTE,
            ..AggregatorConfig::default()
        };
        let mut agg = Aggregator::new(config);
        // Back 3.5 minutes after an outage: the meters resend what it missed, in any order.
        let now = Timestamp(3 * MINUTE + 30_000);
        let mut ingest = |minute: i64, n: usize| {
            let r = reading(100, minute * MINUTE, 1);
            agg.handle_reading_once(now, &nick(n), ReadingId(n as u128), r)
        };
        assert_eq!(ingest(2, 1), Ingest::Accepted);
        assert_eq!(ingest(0, 2), Ingest::Accepted);
        assert_eq!(ingest(1, 3), Ingest::Accepted);
        agg.handle_timeout(now);
        let s: Vec<_> = agg.poll_summaries().map(|s| (s.start, s.meters)).collect();
        let expected = vec![
            (Timestamp(0), 1),
            (Timestamp(MINUTE), 1),
            (Timestamp(2 * MINUTE), 1),
        ];
        assert_eq!(s, expected);
        // Older than the backfill window: refused as late, and counted.
        let stale = Timestamp(9 * MINUTE);
        assert_eq!(
            agg.handle_reading(stale, &nick(4), reading(100, 0, 2)),
            Ingest::Rejected(Rejection::Late)
        );
        assert_eq!(agg.counters().rejected.get("late"), 1);
    }

    #[test]
    fn grace_takes_stragglers_and_silence_gives_empty_intervals() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        agg.handle_reading(Timestamp(1_000), &nick(1), reading(100, 0, 1));
        assert_eq!(agg.poll_timeout(), Some(Timestamp(65_000)));
        agg.handle_timeout(Timestamp(64_999));
        assert_eq!(agg.poll_summaries().count(), 0);
        // Straggler within grace.
        assert_eq!(
            agg.handle_reading(Timestamp(62_000), &nick(2), reading(300, 0, 1)),
            Ingest::Accepted
        );
        agg.handle_timeout(Timestamp(3 * MINUTE + 5_000));
        let s: Vec<_> = agg.poll_summaries().collect();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].total, Watts(400));
        assert_eq!((s[1].meters, s[2].meters), (0, 0));
        assert_eq!(agg.poll_timeout(), Some(Timestamp(4 * MINUTE + 5_000)));
    }

    #[test]
    fn flush_closes_everything() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        agg.handle_reading(Timestamp(0), &nick(1), reading(100, 0, 1));
        agg.handle_reading(Timestamp(0), &nick(1), reading(100, MINUTE / 4, 2));
        agg.handle_reading(Timestamp(MINUTE), &nick(1), reading(200, MINUTE, 3));
        agg.flush();
        let s: Vec<_> = agg.poll_summaries().collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].total, Watts(200));
    }

    #[test]
    fn top_lists_highest_nicks() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        for i in 0..5 {
            agg.handle_reading(Timestamp(0), &nick(i), reading(100 * i as i64, 0, 1));
        }
        agg.flush();
        let top = agg.top(2);
        assert_eq!(top, vec![(nick(4), Watts(400)), (nick(3), Watts(300))]);
    }
}
