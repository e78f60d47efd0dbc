//! The substation bot in private mode: a plain participant that takes meters' Prio3 reports,
//! answers each with a signed verdict, drives the helper, collects each interval after a
//! grace period and publishes it (a line for people, a signed [`IntervalNotice`] for meters),
//! with overload and aggregate-spike detection on the total and the house-spike count.
//!
//! **What a restart loses.** The leader holds reports only in memory. Meters keep every
//! report until its interval is published and resend the same bytes when a signed message
//! names a new epoch (the leader posts a hello on each join), so the new process gets them
//! again and the helper answers those it had already prepared with the same answer, counting
//! nothing twice. Lost for good: an interval the helper had already released whose result
//! the old process had not published (the helper releases an interval once), and the reports
//! of meters that stopped before the restart, which spoil their interval (the helper holds
//! them, the leader no longer does; after `collect_attempts` the interval is given up).

use super::{Input, To, Transmit, interval_millis, interval_of};
use crate::room::{Agent, PrivacyRefusal};
use crate::seat::Seat;
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::codec::{SpikeSummary, Summary, SummaryMode, whole_watts};
use gridmuc_core::{AggregatorConfig, Alert, Millis, RoomNick, Timestamp, TotalsMonitor, Watts};
use gridmuc_private::{
    AggregateShareMessage, CollectError, HelperResponse, IntervalNotice, IntervalResult, Leader,
    LeaderNotice, MessageKind, PrivateConfig, Refusal, Refusals, Report, ReportId, SpikeCount,
    VerifyKey, open_signed, sign_message,
};
use rand::{CryptoRng, Rng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// The leader's rules in numbers, and its keys.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Our room nickname, which meters address.
    pub nick: RoomNick,
    /// The helper's room nickname.
    pub helper_nick: RoomNick,
    /// Operators' bare JIDs: told about alerts and a taken nickname.
    pub operators: Vec<String>,
    /// The configuration every meter and the helper share.
    pub private: PrivateConfig,
    /// Our bot key (the config's leader key).
    pub key: Arc<BotSecretKey>,
    /// The Prio3 verify key, kept across restarts (the helper accepts one per task).
    pub verify_key: VerifyKey,
    /// Overload and aggregate-spike detectors and alert policy, run on each total.
    pub detectors: AggregatorConfig,
    /// A house spike is a reading at or above `spike_factor` × the median…
    pub spike_factor: f64,
    /// …and at least this many watts.
    pub spike_floor_watts: u32,
    /// How long after an interval's end reports may still arrive before it is collected.
    pub grace: Millis,
    /// How long the helper may take to answer before the leader sends again.
    pub helper_timeout: Millis,
    /// Most reports per helper request (one stanza).
    pub batch: usize,
    /// Collections the helper may leave unanswered before the interval is given up.
    pub collect_attempts: u32,
    /// How long a ping may take before the session counts as dead.
    pub ping_timeout: Millis,
}

/// What the leader tells its caller.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaderEvent {
    /// In the room as a plain participant, under a fresh epoch.
    Joined {
        /// Our nickname.
        nick: RoomNick,
        /// This process's epoch.
        epoch: u64,
    },
    /// A report was refused (counted in [`LeaderCore::refusals`]).
    Refused {
        /// Sender.
        from: RoomNick,
        /// Why.
        reason: Refusal,
    },
    /// A message from the helper's nickname not signed by the pinned helper key.
    Unverified {
        /// Sender.
        from: RoomNick,
    },
    /// An interval was published.
    Interval {
        /// What the collection gave.
        result: IntervalResult,
        /// The house-spike count published with it.
        spike: Option<SpikeCount>,
        /// What the post's `<summary/>` element carried (boxed: the result is large enough).
        summary: Box<Summary>,
    },
    /// An interval had too few reports to be released.
    Skipped {
        /// The interval.
        interval: u64,
        /// Reports it had.
        reports: u64,
    },
    /// The helper never released an interval; its reports are lost.
    Lost {
        /// The interval.
        interval: u64,
    },
    /// An alert raised or cleared on the totals.
    Alert(Alert),
}

/// A collection sent to the helper and not yet answered.
#[derive(Debug)]
struct Collecting {
    signed: Vec<u8>,
    due: Timestamp,
    attempts: u32,
}

/// The leader's rules, driven from outside.
pub struct LeaderCore<R> {
    cfg: LeaderConfig,
    rng: R,
    seat: Seat<Transmit>,
    leader: Leader,
    epoch: u64,
    monitor: TotalsMonitor,
    /// The report each nickname holds per interval: one per nickname and interval.
    by_nick: HashMap<(u64, RoomNick), ReportId>,
    /// Nicknames already told `rate_limited` for an interval: a flood is answered once per
    /// nickname and interval (as the plain bot does), not report for report.
    rate_answered: HashSet<(u64, RoomNick)>,
    /// Intervals with held reports, not yet collected.
    open: BTreeSet<u64>,
    collecting: BTreeMap<u64, Collecting>,
    helper_due: Option<Timestamp>,
    collect_not_before: Timestamp,
    own_refusals: Refusals,
    unverified: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<LeaderEvent>,
}

impl<R: Rng + CryptoRng> LeaderCore<R> {
    /// A leader about to join; fails if the key is not the configuration's leader key.
    pub fn new(
        cfg: LeaderConfig,
        mut rng: R,
        now: Timestamp,
    ) -> Result<LeaderCore<R>, gridmuc_private::ConfigError> {
        let leader = Leader::new(cfg.private.clone(), cfg.key.clone(), cfg.verify_key.clone())?;
        let mut transmits = VecDeque::new();
        let p = interval_millis(&cfg.private);
        let seat = Seat::new(
            cfg.nick.clone(),
            cfg.operators.clone(),
            p,
            cfg.ping_timeout,
            now,
            &mut transmits,
        );
        let mut detectors = cfg.detectors.clone();
        detectors.interval = p;
        Ok(LeaderCore {
            epoch: rng.random(),
            monitor: TotalsMonitor::new(&detectors),
            cfg,
            rng,
            seat,
            leader,
            by_nick: HashMap::new(),
            rate_answered: HashSet::new(),
            open: BTreeSet::new(),
            collecting: BTreeMap::new(),
            helper_due: None,
            collect_not_before: now,
            own_refusals: Refusals::default(),
            unverified: 0,
            transmits,
            events: VecDeque::new(),
        })
    }

    /// Reports refused so far by reason: ours (the rate limit) and the cryptography's.
    pub fn refusals(&self) -> Refusals {
        let mut all = self.leader.refusals().clone();
        for (r, n) in self.own_refusals.iter() {
            for _ in 0..n {
                all.add(r);
            }
        }
        all
    }

    /// Messages from the helper's nickname that the pinned helper key did not sign.
    pub fn unverified(&self) -> u64 {
        self.unverified
    }

    /// This process's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn interval(&self) -> Millis {
        interval_millis(&self.cfg.private)
    }

    fn signed(&self, notice: &LeaderNotice) -> Vec<u8> {
        sign_message(&self.cfg.key, notice.to_bytes(&self.cfg.private))
    }

    fn send_helper(&mut self, bytes: Vec<u8>) {
        let t = Transmit::payload(To::Nick(self.cfg.helper_nick.clone()), bytes);
        self.seat.send(t, &mut self.transmits);
    }

    fn offer_key(&mut self) {
        let offer = self
            .cfg
            .verify_key
            .offer(&self.cfg.private, &self.cfg.key, &mut self.rng);
        self.send_helper(offer);
    }

    fn on_joined(&mut self, now: Timestamp) {
        let hello = self.signed(&LeaderNotice::Hello { epoch: self.epoch });
        let body = format!(
            "private-mode leader up (epoch {:016x}): meters, send again what is not yet published",
            self.epoch
        );
        self.seat.send(
            Transmit::Send {
                to: To::Room,
                body: Some(body),
                payload: Some(hello),
                alert: None,
                summary: None,
            },
            &mut self.transmits,
        );
        self.seat.posted(now);
        self.offer_key();
        // Meters resend what an earlier process held: give them a grace period.
        self.collect_not_before = now.plus(self.cfg.grace);
        self.events.push_back(LeaderEvent::Joined {
            nick: self.cfg.nick.clone(),
            epoch: self.epoch,
        });
    }

    fn refuse(&mut self, from: RoomNick, reason: Refusal) {
        tracing::debug!(nick = %from, reason = reason.name(), "report refused");
        self.events.push_back(LeaderEvent::Refused { from, reason });
    }

    fn on_report(&mut self, now: Timestamp, from: RoomNick, bytes: &[u8]) {
        let current = interval_of(now, self.interval());
        let Ok(report) = Report::from_bytes(bytes) else {
            // No id to answer: counted only.
            let _ = self.leader.handle_report(current, bytes);
            self.refuse(from, Refusal::Malformed);
            return;
        };
        let (interval, id) = (report.interval(), report.id());
        let key = (interval, from.clone());
        let refusal = match self.by_nick.get(&key) {
            Some(held) if *held != id => {
                self.own_refusals.add(Refusal::RateLimited);
                Some(Refusal::RateLimited)
            }
            _ => match self.leader.handle_report(current, bytes) {
                Ok(_) => {
                    self.by_nick.insert(key, id);
                    self.open.insert(interval);
                    None
                }
                Err(r) => Some(r),
            },
        };
        if let Some(r) = refusal {
            self.refuse(from.clone(), r);
        }
        if refusal == Some(Refusal::RateLimited)
            && !self.rate_answered.insert((interval, from.clone()))
        {
            return;
        }
        let verdict = self.signed(&LeaderNotice::Verdict {
            epoch: self.epoch,
            interval,
            id,
            refusal,
        });
        self.seat.send(
            Transmit::payload(To::Nick(from), verdict),
            &mut self.transmits,
        );
    }

    fn on_helper(&mut self, now: Timestamp, from: RoomNick, bytes: &[u8]) {
        let Ok(msg) = open_signed(&self.cfg.private.params().helper, bytes) else {
            self.unverified += 1;
            tracing::warn!(nick = %from, "a message from the helper's nickname is not signed by the pinned helper key");
            self.events.push_back(LeaderEvent::Unverified { from });
            return;
        };
        match MessageKind::of(msg) {
            Some(MessageKind::HelperResponse) => {
                if let Ok(resp) = HelperResponse::from_bytes(msg) {
                    self.leader.handle_helper_response(&resp);
                    self.helper_due =
                        (self.leader.in_flight() > 0).then(|| now.plus(self.cfg.helper_timeout));
                }
            }
            Some(MessageKind::AggregateShare) => {
                if let Ok(share) = AggregateShareMessage::from_bytes(msg) {
                    let interval = share.interval();
                    match self.leader.finish_collect(&share) {
                        Ok(result) => {
                            self.collecting.remove(&interval);
                            self.publish(now, result);
                        }
                        Err(e) => tracing::warn!(interval, %e, "the helper's share does not fit"),
                    }
                }
            }
            _ => tracing::debug!("an unexpected message from the helper"),
        }
    }

    /// Sends the helper what waits for it.
    fn flush(&mut self, now: Timestamp) {
        while let Some(req) = self.leader.poll_helper_request(self.cfg.batch) {
            let signed = sign_message(&self.cfg.key, req.to_bytes());
            self.send_helper(signed);
            self.helper_due
                .get_or_insert(now.plus(self.cfg.helper_timeout));
        }
    }

    /// Collects the intervals whose grace has passed, in order, and forgets what is done.
    fn collect_due(&mut self, now: Timestamp) {
        let p = self.interval();
        // Intervals up to this one have ended more than a grace period ago.
        let first_open = interval_of(now.plus(-self.cfg.grace), p);
        if now >= self.collect_not_before {
            while let Some(&i) = self.open.first() {
                if i >= first_open {
                    break;
                }
                match self.leader.collect_request(i) {
                    Ok(req) => {
                        let signed = sign_message(&self.cfg.key, req.to_bytes());
                        self.send_helper(signed.clone());
                        self.collecting.insert(
                            i,
                            Collecting {
                                signed,
                                due: now.plus(self.cfg.helper_timeout),
                                attempts: 1,
                            },
                        );
                    }
                    Err(CollectError::InFlight { .. }) => break,
                    Err(CollectError::TooFewReports { reports, .. }) => {
                        self.events.push_back(LeaderEvent::Skipped {
                            interval: i,
                            reports,
                        });
                    }
                    Err(e) => tracing::warn!(interval = i, %e, "cannot collect"),
                }
                self.open.remove(&i);
            }
        }
        let floor = [self.open.first(), self.collecting.keys().next()]
            .into_iter()
            .flatten()
            .copied()
            .fold(first_open, u64::min);
        self.leader.forget_before(floor);
        self.by_nick.retain(|(i, _), _| *i >= floor);
        self.rate_answered.retain(|(i, _)| *i >= floor);
    }

    /// Sends again what the helper owes: reports and unanswered collections.
    fn chase_helper(&mut self, now: Timestamp) {
        if self.helper_due.is_some_and(|t| now >= t) {
            if self.leader.in_flight() > 0 {
                // It may have missed the key too (it joined after our offer).
                self.offer_key();
                self.leader.resend_in_flight();
                self.helper_due = Some(now.plus(self.cfg.helper_timeout));
            } else {
                self.helper_due = None;
            }
        }
        let overdue: Vec<u64> = self
            .collecting
            .iter()
            .filter(|(_, c)| now >= c.due)
            .map(|(i, _)| *i)
            .collect();
        for i in overdue {
            let Some(c) = self.collecting.get_mut(&i) else {
                continue;
            };
            if c.attempts >= self.cfg.collect_attempts {
                self.collecting.remove(&i);
                tracing::warn!(interval = i, "the helper never released the interval");
                self.events.push_back(LeaderEvent::Lost { interval: i });
                continue;
            }
            c.attempts += 1;
            c.due = now.plus(self.cfg.helper_timeout);
            let signed = c.signed.clone();
            // A helper that restarted lost them; one that did not answers the same again.
            self.offer_key();
            self.leader.resend_interval(i);
            self.flush(now);
            self.send_helper(signed);
        }
    }

    /// Posts an interval: a line for people, the signed notice for meters, and the alerts.
    fn publish(&mut self, now: Timestamp, result: IntervalResult) {
        let p = self.interval();
        let start = Timestamp(
            i64::try_from(result.interval)
                .unwrap_or(i64::MAX)
                .saturating_mul(p),
        );
        let threshold = (self.cfg.spike_factor * result.median_estimate)
            .max(f64::from(self.cfg.spike_floor_watts));
        let spike = result.count_at_or_above(threshold.min(f64::from(u32::MAX)) as u32);
        let notice = LeaderNotice::Interval {
            epoch: self.epoch,
            notice: IntervalNotice {
                interval: result.interval,
                reports: result.reports,
                total_watts: result.total_watts,
                histogram: result.histogram.clone(),
                spike,
            },
        };
        let body = interval_line(start, &result, spike);
        tracing::info!("{body}");
        let payload = self.signed(&notice);
        let summary = Box::new(Summary {
            mode: SummaryMode::Private,
            start,
            length: p,
            meters: result.reports,
            total: Watts(i64::try_from(result.total_watts).unwrap_or(i64::MAX)),
            mean: whole_watts(result.mean),
            median: whole_watts(result.median_estimate),
            p95: whole_watts(result.p95_estimate),
            rating: self.cfg.detectors.overload.rating,
            revision: 0,
            spikes: spike.map(|s| SpikeSummary {
                houses: s.reports,
                threshold: Watts(i64::from(s.threshold_watts)),
            }),
        });
        self.seat.send(
            Transmit::Send {
                to: To::Room,
                body: Some(body),
                payload: Some(payload),
                alert: None,
                summary: Some(summary.clone()),
            },
            &mut self.transmits,
        );
        self.seat.posted(now);
        let meters = usize::try_from(result.reports).unwrap_or(usize::MAX);
        self.monitor.handle_total(start, meters, summary.total);
        let alerts: Vec<Alert> = self.monitor.poll_alerts().collect();
        self.events.push_back(LeaderEvent::Interval {
            result,
            spike,
            summary,
        });
        for alert in alerts {
            let body = alert.body();
            let targets = std::iter::once(To::Room)
                .chain(self.cfg.operators.iter().cloned().map(To::Operator));
            for to in targets.collect::<Vec<_>>() {
                self.seat.send(
                    Transmit::Send {
                        to,
                        body: Some(body.clone()),
                        payload: None,
                        alert: Some(alert.clone()),
                        summary: None,
                    },
                    &mut self.transmits,
                );
            }
            self.events.push_back(LeaderEvent::Alert(alert));
        }
    }
}

/// One line per interval for people: statistics and the house-spike count.
pub fn interval_line(start: Timestamp, r: &IntervalResult, spike: Option<SpikeCount>) -> String {
    let kw = |w: f64| w / 1000.0;
    let spikes = match spike {
        Some(s) => format!(
            "; {} houses at or above {:.1} kW, peers' median {:.1} kW",
            s.reports,
            kw(f64::from(s.threshold_watts)),
            kw(r.median_estimate)
        ),
        None => String::new(),
    };
    format!(
        "interval {start}: {} meters, total {:.2} kW, mean {:.2} kW, median ~{:.2} kW, p95 ~{:.2} kW, spread ~{:.2} kW{spikes}",
        r.reports,
        kw(r.total_watts as f64),
        kw(r.mean),
        kw(r.median_estimate),
        kw(r.p95_estimate),
        kw(r.spread_estimate()),
    )
}

impl<R: Rng + CryptoRng> Agent for LeaderCore<R> {
    type Input = Input;
    type Transmit = Transmit;
    type Event = LeaderEvent;
    type Error = PrivacyRefusal;

    fn handle(&mut self, now: Timestamp, input: Input) {
        if self.seat.outcome().is_some() {
            return;
        }
        match input {
            Input::Room(r) => {
                if self
                    .seat
                    .on_room(now, r, &mut self.rng, &mut self.transmits)
                {
                    self.on_joined(now);
                }
            }
            Input::Payload { from, bytes } => {
                self.seat.heard(now);
                if &from == self.seat.own() {
                    // Our own post's echo: only proof that the session delivers.
                } else if from == self.cfg.helper_nick {
                    self.on_helper(now, from, &bytes);
                    self.collect_due(now);
                } else {
                    self.on_report(now, from, &bytes);
                }
            }
            Input::Bounced { .. } => self.seat.heard(now),
            Input::Measured { .. } => {}
        }
        self.flush(now);
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.seat.outcome().is_some() {
            return;
        }
        self.seat.handle_timeout(now, &mut self.transmits);
        self.chase_helper(now);
        self.collect_due(now);
        self.flush(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<LeaderEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        if self.seat.outcome().is_some() {
            return None;
        }
        let p = self.interval();
        // While reports wait for the helper, its answer (or `helper_due`) moves us on.
        let waiting = self.leader.in_flight() > 0;
        let collect = self.open.first().filter(|_| !waiting).map(|&i| {
            let end = Timestamp(i64::try_from(i + 1).unwrap_or(i64::MAX).saturating_mul(p));
            end.plus(self.cfg.grace).max(self.collect_not_before)
        });
        let chase = self.collecting.values().map(|c| c.due).min();
        [self.seat.poll_timeout(), collect, chase, self.helper_due]
            .into_iter()
            .flatten()
            .min()
    }

    fn outcome(&self) -> Option<Result<(), PrivacyRefusal>> {
        self.seat.outcome()
    }

    fn nick(&self) -> Option<&RoomNick> {
        self.seat.nick()
    }
}
