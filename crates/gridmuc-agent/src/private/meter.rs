//! The meter in private mode: one house under random rotating nicknames (drawn, timed and
//! scheduled by the plain meter's rules: `draw_nick`, `next_slot`, `uniform_millis`,
//! [`Liveness`]), one Prio3 report per interval sent to the leader's nickname, kept until
//! the signed notice of its interval is published, and a local notice when its own reading
//! is at or above the published house-spike threshold. Nobody else learns that.
//!
//! After a fault (a removal, a dead session) it measures the intervals it missed that the
//! leader can still take (those that ended within [`PrivateMeterConfig::catch_up`]), as the
//! plain meter does within its outbox's age; after a rotation it does not, since a new
//! nickname reporting the old one's gap would link the two.
//!
//! So a rotation is timed to have no gap: once due it waits until this interval's report is
//! sent and answered, then leaves with a rejoin gap drawn from the part of the configured
//! range that brings the new nickname back before the next send (which it keeps). If no part
//! fits (a gap range longer than the time to the next send), the gap is drawn as configured
//! and the intervals whose sends fall into it are missed: the price of unlinkable nicknames.
//!
//! Reports are built once, so a resend is the same bytes: the leader holds one report per
//! nickname and interval and answers a copy with [`Refusal::Replay`] ("already held").
//! Resends: a report without a verdict goes again after the answer timeout, after a bounce,
//! and under the next nickname; a held report goes again only when a signed message names a
//! new leader epoch (the leader restarted and lost it). Only the pinned leader key's
//! signatures count: an impostor's answers are counted as unverified and clear nothing.

use super::{Input, To, Transmit, interval_millis, interval_of};
use crate::liveness::Liveness;
use crate::meter::{MeterCoreError, draw_nick, next_slot, uniform_millis};
use crate::room::{Agent, PrivacyRefusal, RoomInput, RoomTransmit};
use gridmuc_core::{Millis, RoomNick, Timestamp};
use gridmuc_private::{
    LeaderNotice, PrivateConfig, Refusal, ReportError, ReportId, open_signed, report,
};
use rand::{CryptoRng, Rng};
use std::collections::{BTreeMap, VecDeque};

/// How long a rejoin may take to be answered and still count as back before the next send:
/// a round trip through the room with room to spare; a slower join misses that interval.
const JOIN_MARGIN: Millis = 500;

/// A private meter's rules in numbers.
#[derive(Clone, Debug)]
pub struct PrivateMeterConfig {
    /// The configuration every meter and both bots share (pins both bot keys).
    pub private: PrivateConfig,
    /// The leader's nickname, where reports go.
    pub leader_nick: RoomNick,
    /// Send time within the interval, as fractions `[min, max]` of it.
    pub jitter: [f64; 2],
    /// Nickname lifetime range; rotation is leave + rejoin, never a nick change.
    pub rotate: [Millis; 2],
    /// Pause between leaving and rejoining; narrowed, where it can be, to end before the next
    /// send so that a rotation misses no interval.
    pub rejoin_gap: [Millis; 2],
    /// How long a verdict may take before the report goes again (and the session is probed).
    pub answer_timeout: Millis,
    /// Longest wait for outstanding verdicts before leaving to rotate, past the two intervals
    /// a due rotation may wait for a report after which the new nickname can be back in time.
    pub drain: Millis,
    /// Intervals a report is kept after its own, waiting for its interval's notice.
    pub keep_intervals: u64,
    /// How long after an interval's end the leader still takes its report (its grace, less
    /// a margin for the way there): after a fault the meter measures and sends the intervals
    /// it missed that ended within this, as the plain meter does within its outbox's age.
    /// 0: a missed interval is skipped.
    pub catch_up: Millis,
    /// Hand the pending reports out ([`Transmit::SaveReports`]) whenever they change, so the
    /// driver can keep them where a crash or a power cut does not lose them.
    pub save_reports: bool,
}

impl PrivateMeterConfig {
    /// The plain meter's defaults (send at 10–60 % of the interval, nicknames for 30 min to
    /// 2 h, 5–60 s between them, 15 s for an answer) for a task and a leader's nickname;
    /// catch-up within half the leader's default grace, leaving the other half for the path.
    pub fn new(private: PrivateConfig, leader_nick: RoomNick) -> PrivateMeterConfig {
        PrivateMeterConfig {
            private,
            leader_nick,
            jitter: [0.1, 0.6],
            rotate: [1_800_000, 7_200_000],
            rejoin_gap: [5_000, 60_000],
            answer_timeout: 15_000,
            drain: 2_000,
            keep_intervals: 6,
            catch_up: gridmuc_core::AggregatorConfig::default().grace / 2,
            save_reports: false,
        }
    }
}

/// What a private meter tells its household and its caller; never its JID.
#[derive(Clone, Debug, PartialEq)]
pub enum PrivateMeterEvent {
    /// Joined under a fresh nickname.
    Joined(RoomNick),
    /// Left the room (rotation or shutdown).
    Left(RoomNick),
    /// A report left for the first time.
    Sent {
        /// Its interval.
        interval: u64,
        /// Its id.
        id: ReportId,
        /// The quantised reading it carries: for this household's own records (and the
        /// demo's check of the published totals); it never leaves the meter in clear.
        watts: u32,
    },
    /// The leader refused a report; it is not counted and not sent again.
    Refused {
        /// Its interval.
        interval: u64,
        /// Why.
        reason: Refusal,
    },
    /// No report for this interval: the reading cannot be a report (e.g. above the bound).
    NotReported {
        /// The interval.
        interval: u64,
        /// Why.
        why: String,
    },
    /// The signed notice of an interval arrived.
    Published {
        /// The interval.
        interval: u64,
        /// Reports in it.
        reports: u64,
        /// Their total in watts.
        total_watts: u64,
    },
    /// Our own reading is at or above the published house-spike threshold: for this
    /// household only.
    HouseAbove {
        /// The interval.
        interval: u64,
        /// Our reading.
        reading_watts: u32,
        /// The threshold the leader published.
        threshold_watts: u32,
        /// Houses at or above it, ours included.
        houses: u64,
    },
}

/// Totals of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrivateMeterStats {
    /// Reports made and sent at least once.
    pub sent: u64,
    /// Repeat sends of the same bytes.
    pub resent: u64,
    /// Reports whose interval was published while we held them.
    pub published: u64,
    /// Reports refused by the leader, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Reports given up because no verdict came before they grew too old to matter.
    pub expired: u64,
    /// Resent reports that reached the leader after their interval closed: an earlier copy
    /// may have been counted, but the leader no longer knows, so neither do we.
    pub late_resends: u64,
    /// Payloads not signed by the pinned leader key (an impostor's).
    pub unverified: u64,
    /// Local notices given ("your house is at or above …").
    pub notices: u64,
    /// Nicknames used.
    pub nicks: u64,
    /// Nickname conflicts survived.
    pub conflicts: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    id: ReportId,
    bytes: Vec<u8>,
    /// The epoch of the leader that holds it, once a verdict said so.
    held_by: Option<u64>,
    /// When it goes (again) if still without a verdict.
    send_at: Timestamp,
    sent_once: bool,
    /// Sent more than once: an earlier copy may have been counted.
    resent: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Joining {
        nick: RoomNick,
    },
    InRoom {
        nick: RoomNick,
        rotate_at: Timestamp,
    },
    Away {
        until: Timestamp,
    },
    Renewing,
    Stopped(Result<(), MeterCoreError>),
}

/// The private meter's rules, driven from outside.
pub struct PrivateMeterCore<R> {
    cfg: PrivateMeterConfig,
    rng: R,
    phase: Phase,
    liveness: Liveness,
    /// The next interval to measure and when; kept across a rotation that is back in time.
    next: Option<(Timestamp, Timestamp)>,
    /// The interval asked for and not measured yet: a due rotation waits for its report, and
    /// no other measurement is taken.
    asked: Option<Timestamp>,
    /// The last interval measured under this run of nicknames: after a fault (not a
    /// rotation) the intervals missed since are measured if the leader can still take them.
    last_slot: Option<Timestamp>,
    pending: BTreeMap<u64, Pending>,
    /// The intervals of the pending reports last handed out to be saved.
    saved: Vec<u64>,
    /// Our quantised readings, for the local check against a published threshold.
    readings: BTreeMap<u64, u32>,
    epoch: Option<u64>,
    conflicts_in_row: usize,
    stats: PrivateMeterStats,
    now: Timestamp,
    transmits: VecDeque<Transmit>,
    events: VecDeque<PrivateMeterEvent>,
}

impl<R: Rng + CryptoRng> PrivateMeterCore<R> {
    /// A meter about to join under a fresh nickname.
    pub fn new(cfg: PrivateMeterConfig, mut rng: R, now: Timestamp) -> PrivateMeterCore<R> {
        let mut core = PrivateMeterCore {
            liveness: Liveness::new(cfg.answer_timeout).with_spread(rng.random()),
            cfg,
            rng,
            phase: Phase::Renewing,
            next: None,
            asked: None,
            last_slot: None,
            pending: BTreeMap::new(),
            saved: Vec::new(),
            readings: BTreeMap::new(),
            epoch: None,
            conflicts_in_row: 0,
            stats: PrivateMeterStats::default(),
            now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        core.join(now);
        core
    }

    /// Takes back the reports an earlier run saved (see [`Transmit::SaveReports`]), before
    /// this one joins: each goes out again as the same bytes, so the leader holds it once
    /// whichever run delivered it, and is given up like any resend if its interval has closed.
    /// Bytes that are not a report are skipped and logged.
    pub fn restore(&mut self, reports: impl IntoIterator<Item = Vec<u8>>) {
        for bytes in reports {
            let Ok(r) = gridmuc_private::Report::from_bytes(&bytes) else {
                tracing::warn!("a saved report that does not decode: skipped");
                continue;
            };
            self.pending.entry(r.interval()).or_insert(Pending {
                id: r.id(),
                bytes,
                held_by: None,
                send_at: self.now,
                // Sent by the earlier run, maybe counted: a resend, given up if late.
                sent_once: true,
                resent: true,
            });
        }
    }

    /// The totals so far.
    pub fn stats(&self) -> &PrivateMeterStats {
        &self.stats
    }

    /// Reports kept until their interval is published.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn p(&self) -> Millis {
        interval_millis(&self.cfg.private)
    }

    /// The interval after `prev` (or the next one) and when to measure it. `next_slot` keeps
    /// intervals that *start* within its window; one the leader still takes started up to an
    /// interval plus `catch_up` ago. Without catch-up that window is the current interval.
    fn next_slot(&mut self, now: Timestamp, prev: Option<Timestamp>) -> (Timestamp, Timestamp) {
        let p = self.p();
        let window = p.saturating_add(self.cfg.catch_up.max(0));
        next_slot(now, p, self.cfg.jitter, &mut self.rng, prev, window)
    }

    fn join(&mut self, now: Timestamp) {
        match draw_nick(&mut self.rng, self.conflicts_in_row) {
            Ok(nick) => {
                self.transmits
                    .push_back(Transmit::Room(RoomTransmit::Join(nick.clone())));
                self.liveness.posted(now);
                self.phase = Phase::Joining { nick };
            }
            Err(e) => self.phase = Phase::Stopped(Err(e)),
        }
    }

    fn on_joined(&mut self, now: Timestamp, refusal: Option<PrivacyRefusal>) {
        let Phase::Joining { nick } = &self.phase else {
            return;
        };
        let nick = nick.clone();
        if let Some(why) = refusal {
            self.transmits
                .push_back(Transmit::Room(RoomTransmit::Leave(nick)));
            self.phase = Phase::Stopped(Err(why.into()));
            return;
        }
        self.conflicts_in_row = 0;
        self.stats.nicks += 1;
        // A send still ahead stays: after a rotation that is the interval the gap was fitted
        // before, not a catch-up.
        self.next = match self.next {
            Some(next) if next.1 >= now => Some(next),
            _ => Some(self.next_slot(now, self.last_slot)),
        };
        self.phase = Phase::InRoom {
            nick: nick.clone(),
            rotate_at: now.plus(uniform_millis(&mut self.rng, self.cfg.rotate)),
        };
        // Reports still without a verdict go under the new nickname.
        for p in self.pending.values_mut().filter(|p| p.held_by.is_none()) {
            p.send_at = now;
        }
        self.events.push_back(PrivateMeterEvent::Joined(nick));
    }

    fn on_room(&mut self, now: Timestamp, input: RoomInput) {
        match input {
            RoomInput::Joined(me) => self.on_joined(now, me.refusal()),
            RoomInput::NickConflict => {
                if matches!(self.phase, Phase::Joining { .. }) {
                    self.stats.conflicts += 1;
                    self.conflicts_in_row += 1;
                    self.join(now);
                }
            }
            RoomInput::Removed | RoomInput::SessionReset => {
                if matches!(
                    self.phase,
                    Phase::InRoom { .. } | Phase::Joining { .. } | Phase::Renewing
                ) {
                    self.join(now);
                }
            }
            RoomInput::RoomShowsJids => {
                if let Phase::InRoom { nick, .. } | Phase::Joining { nick } = &self.phase {
                    self.transmits
                        .push_back(Transmit::Room(RoomTransmit::Leave(nick.clone())));
                }
                self.phase = Phase::Stopped(Err(PrivacyRefusal::NonAnonymous.into()));
            }
            RoomInput::Alive => {}
            RoomInput::Shutdown => {
                if let Phase::InRoom { nick, .. } | Phase::Joining { nick } = &self.phase {
                    self.transmits
                        .push_back(Transmit::Room(RoomTransmit::Leave(nick.clone())));
                }
                self.phase = Phase::Stopped(Ok(()));
            }
        }
    }

    fn on_payload(&mut self, now: Timestamp, bytes: &[u8]) {
        let Ok(msg) = open_signed(&self.cfg.private.params().leader, bytes) else {
            self.stats.unverified += 1;
            tracing::warn!("a message not signed by the pinned leader key: not believed");
            return;
        };
        let Ok(notice) = LeaderNotice::from_bytes(&self.cfg.private, msg) else {
            return;
        };
        match &notice {
            LeaderNotice::Hello { .. } => {}
            LeaderNotice::Verdict {
                epoch,
                interval,
                id,
                refusal,
            } => {
                let Some(p) = self.pending.get_mut(interval).filter(|p| p.id == *id) else {
                    return;
                };
                match refusal {
                    None | Some(Refusal::Replay) => p.held_by = Some(*epoch),
                    Some(Refusal::IntervalClosed) if p.resent => {
                        // An earlier copy may have been counted (its verdict lost): the
                        // leader no longer knows. Given up, not refused.
                        self.pending.remove(interval);
                        self.stats.late_resends += 1;
                        tracing::debug!(
                            interval,
                            "a resent report arrived after its interval closed"
                        );
                    }
                    Some(reason) => {
                        self.pending.remove(interval);
                        *self.stats.refused.entry(reason.name()).or_default() += 1;
                        tracing::warn!(reason = reason.name(), "the leader refused our report");
                        self.events.push_back(PrivateMeterEvent::Refused {
                            interval: *interval,
                            reason: *reason,
                        });
                    }
                }
            }
            LeaderNotice::Interval { notice: n, .. } => {
                if self.pending.remove(&n.interval).is_some() {
                    self.stats.published += 1;
                }
                self.events.push_back(PrivateMeterEvent::Published {
                    interval: n.interval,
                    reports: n.reports,
                    total_watts: n.total_watts,
                });
                if let (Some(&mine), Some(s)) = (self.readings.get(&n.interval), n.spike)
                    && self.cfg.private.at_or_above(mine, s.threshold_watts)
                {
                    self.stats.notices += 1;
                    tracing::warn!(
                        "your house used {mine} W in interval {}: at or above the {} W that {} \
                         houses reached (peers far below); only this meter knows it is yours",
                        n.interval,
                        s.threshold_watts,
                        s.reports
                    );
                    self.events.push_back(PrivateMeterEvent::HouseAbove {
                        interval: n.interval,
                        reading_watts: mine,
                        threshold_watts: s.threshold_watts,
                        houses: s.reports,
                    });
                }
            }
        }
        self.on_epoch(now, notice.epoch());
    }

    /// A signed message named `epoch`: if the leader changed, what it held is lost with it.
    fn on_epoch(&mut self, now: Timestamp, epoch: u64) {
        if self.epoch.replace(epoch).is_some_and(|old| old != epoch) {
            for p in self.pending.values_mut() {
                if p.held_by.is_some_and(|e| e != epoch) {
                    p.held_by = None;
                    p.send_at = now;
                }
            }
        }
    }

    fn on_measured(&mut self, slot: Timestamp, value: Option<gridmuc_core::Watts>) {
        // Only what was asked for: an answer arriving after a rotation's leave is dropped, since
        // the new nickname sending the old one's interval would link the two.
        if self.asked != Some(slot) {
            return;
        }
        self.asked = None;
        let interval = interval_of(slot, self.p());
        let Some(w) = value else {
            return;
        };
        let Ok(watts) = u32::try_from(w.0.max(0)) else {
            return;
        };
        if self.pending.contains_key(&interval) || matches!(self.phase, Phase::Stopped(_)) {
            return;
        }
        let quantised = self.cfg.private.quantise(watts).unwrap_or(watts);
        self.readings.insert(interval, quantised);
        match report(&self.cfg.private, watts, interval, &mut self.rng) {
            Ok(r) => {
                self.pending.insert(
                    interval,
                    Pending {
                        id: r.id(),
                        bytes: r.to_bytes(),
                        held_by: None,
                        send_at: self.now,
                        sent_once: false,
                        resent: false,
                    },
                );
            }
            Err(
                e @ (ReportError::OutOfRange { .. }
                | ReportError::Shard(_)
                | ReportError::Encode(_)),
            ) => {
                tracing::warn!(%e, "no report for this interval");
                self.events.push_back(PrivateMeterEvent::NotReported {
                    interval,
                    why: e.to_string(),
                });
            }
        }
    }

    /// Sends what is due, drops what is too old, rotates when nothing awaits a verdict.
    fn settle(&mut self, now: Timestamp) {
        let current = interval_of(now, self.p());
        let keep = self.cfg.keep_intervals;
        let before = self.pending.len();
        self.pending.retain(|&i, _| i + keep >= current);
        self.stats.expired += (before - self.pending.len()) as u64;
        self.readings.retain(|&i, _| i + keep >= current);
        let Phase::InRoom { nick, rotate_at } = &self.phase else {
            return;
        };
        let (nick, rotate_at) = (nick.clone(), *rotate_at);
        let leader = self.cfg.leader_nick.clone();
        for (interval, p) in self.pending.iter_mut() {
            if p.held_by.is_some() || now < p.send_at {
                continue;
            }
            if p.sent_once {
                p.resent = true;
                self.stats.resent += 1;
            } else {
                p.sent_once = true;
                self.stats.sent += 1;
                self.events.push_back(PrivateMeterEvent::Sent {
                    interval: *interval,
                    id: p.id,
                    watts: self.readings.get(interval).copied().unwrap_or_default(),
                });
            }
            p.send_at = now.plus(self.cfg.answer_timeout);
            self.transmits
                .push_back(Transmit::payload(To::Nick(leader.clone()), p.bytes.clone()));
            self.liveness.posted(now);
        }
        if now >= self.leave_at(rotate_at) {
            self.leave_for_rejoin(now, nick);
        }
    }

    /// Leaves under `nick` and rejoins under a fresh one after a random gap.
    fn leave_for_rejoin(&mut self, now: Timestamp, nick: RoomNick) {
        self.transmits
            .push_back(Transmit::Room(RoomTransmit::Leave(nick.clone())));
        self.events.push_back(PrivateMeterEvent::Left(nick));
        self.liveness.heard(now);
        // The new nickname starts afresh: catching up the gap would link it to the old one.
        self.last_slot = None;
        self.asked = None;
        self.phase = Phase::Away {
            until: now.plus(self.rejoin_gap(now)),
        };
    }

    /// The room answered a report to the leader with `not-acceptable`: it has forgotten us
    /// (a clustered room restarted on another node, say) while our session lived on. Leave and
    /// rejoin as in a rotation, so even a forged answer links nothing; reports without a
    /// verdict go again under the new nickname. Only the leader's nickname counts: no other
    /// occupant can answer in its name.
    fn on_bounce(&mut self, now: Timestamp, to: &RoomNick, why: &str) {
        let Phase::InRoom { nick, .. } = &self.phase else {
            return;
        };
        if why != crate::room::NOT_AN_OCCUPANT || *to != self.cfg.leader_nick {
            return;
        }
        tracing::warn!(
            "the room no longer counts us as an occupant (restarted, or its node did); \
             rejoining under a new nickname"
        );
        let nick = nick.clone();
        self.leave_for_rejoin(now, nick);
    }

    /// When a rotation due at `rotate_at` leaves: then if this interval's report is sent and
    /// answered (or none is coming) and a rejoin gap fits before the next send, else at the
    /// next such point (after the next report's verdict, where the gap has most room), and
    /// two intervals plus `drain` late at the latest (a lost verdict, a silent source, a gap
    /// range that never fits); a report still without a verdict then goes again under the
    /// new nickname, as after any rotation.
    fn leave_at(&self, rotate_at: Timestamp) -> Timestamp {
        let unmeasured = self.next.is_some_and(|(slot, _)| slot <= self.now);
        let awaiting = self.pending.values().any(|p| p.held_by.is_none());
        let quiet = !unmeasured && !awaiting && self.asked.is_none();
        if quiet && self.gap_room(self.now).is_some() {
            rotate_at
        } else {
            rotate_at.plus(self.p().saturating_mul(2).saturating_add(self.cfg.drain))
        }
    }

    /// The longest rejoin gap leaving at `now` that has the new nickname in the room (its
    /// join answered within [`JOIN_MARGIN`]) before the next send, if the configured range
    /// allows one.
    fn gap_room(&self, now: Timestamp) -> Option<Millis> {
        let (_, at) = self.next?;
        Some(at.since(now) - JOIN_MARGIN).filter(|&room| room >= self.cfg.rejoin_gap[0])
    }

    /// A rejoin gap from the part of the configured range that fits before the next send;
    /// from the whole range if none does, and the sends it covers are missed.
    fn rejoin_gap(&mut self, now: Timestamp) -> Millis {
        let [lo, hi] = self.cfg.rejoin_gap;
        let hi = self.gap_room(now).map_or(hi, |room| hi.min(room));
        uniform_millis(&mut self.rng, [lo, hi])
    }
}

impl<R: Rng + CryptoRng> Agent for PrivateMeterCore<R> {
    type Input = Input;
    type Transmit = Transmit;
    type Event = PrivateMeterEvent;
    type Error = MeterCoreError;

    fn handle(&mut self, now: Timestamp, input: Input) {
        self.now = now;
        if matches!(self.phase, Phase::Stopped(_)) {
            return;
        }
        match input {
            Input::Room(r) => {
                if r != RoomInput::Shutdown {
                    self.liveness.heard(now);
                }
                self.on_room(now, r);
            }
            Input::Payload { bytes, .. } => {
                self.liveness.heard(now);
                self.on_payload(now, &bytes);
            }
            Input::Bounced { to, why } => {
                self.liveness.heard(now);
                self.on_bounce(now, &to, &why);
            }
            Input::Measured { slot, value } => self.on_measured(slot, value),
        }
        self.settle(now);
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        match &self.phase {
            Phase::Away { until } if now >= *until => self.join(now),
            Phase::InRoom { .. } => {
                if let Some((slot, at)) = self.next
                    && now >= at
                {
                    self.last_slot = Some(slot);
                    self.asked = Some(slot);
                    self.transmits.push_back(Transmit::Measure { slot });
                    self.next = Some(self.next_slot(now, Some(slot)));
                }
            }
            _ => {}
        }
        if matches!(self.phase, Phase::InRoom { .. } | Phase::Joining { .. })
            && let Some(t) = self.liveness.act(now)
        {
            if t == RoomTransmit::RenewSession {
                self.phase = Phase::Renewing;
            }
            self.transmits.push_back(Transmit::Room(t));
        }
        self.settle(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        // A report's bytes never change while it is pending: its interval names it.
        if self.cfg.save_reports && !self.pending.keys().eq(self.saved.iter()) {
            self.saved = self.pending.keys().copied().collect();
            let reports = self.pending.values().map(|p| p.bytes.clone()).collect();
            return Some(Transmit::SaveReports(reports));
        }
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<PrivateMeterEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match &self.phase {
            Phase::InRoom { rotate_at, .. } => {
                let awaiting = self.pending.values().filter(|p| p.held_by.is_none());
                let resend = awaiting.map(|p| p.send_at).min();
                let rotate = self.leave_at(*rotate_at);
                [self.next.map(|n| n.1), resend, Some(rotate)]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Phase::Away { until } => return Some(*until),
            Phase::Joining { .. } => None,
            Phase::Renewing | Phase::Stopped(_) => return None,
        };
        [own, self.liveness.deadline()].into_iter().flatten().min()
    }

    fn outcome(&self) -> Option<Result<(), MeterCoreError>> {
        match &self.phase {
            Phase::Stopped(r) => Some(r.clone()),
            _ => None,
        }
    }

    fn nick(&self) -> Option<&RoomNick> {
        match &self.phase {
            Phase::InRoom { nick, .. } => Some(nick),
            _ => None,
        }
    }
}
