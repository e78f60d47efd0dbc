//! The substation bot as a state machine: a plain participant that turns readings into the
//! aggregator's inputs and its summaries and alerts into posts.
//!
//! [`BotCore`] holds every rule and does no I/O. Its driver decodes stanzas into [`Input`]s
//! (XML, the stanza guard's marks and sealed readings stay there, with the bot key), carries
//! out each [`Transmit`] (signing what it says to sign), and calls [`BotCore::handle_timeout`]
//! at [`BotCore::poll_timeout`]. The core keeps only room nicknames; operators are opaque
//! addresses the driver gave it.
//!
//! What a session has already delivered should reach the core before a due interval closes
//! (a bot resumed after a pause would otherwise close intervals empty): the driver reads
//! pending input first, and the harness delivers what is due before firing timers.

use crate::readout::{PollAnswer, PollCounts, Poller};
use crate::room::{Agent, RoomInput, RoomTransmit};
pub use crate::room::{PrivacyRefusal, SelfPresence};
use crate::seat::{Seat, SeatTransmit};
use gridmuc_core::aggregator::{Counters, Ingest};
use gridmuc_core::codec::Summary;
use gridmuc_core::{
    Aggregator, AggregatorConfig, Alert, IntervalStats, Millis, Reading, ReadingId, Rejection,
    RejectionCounts, RoomNick, Timestamp,
};
use rand::Rng;
use std::collections::{HashMap, HashSet, VecDeque};

/// A bot's rules in numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct BotCoreConfig {
    /// The bot's room nickname, which meters in direct mode address.
    pub nick: RoomNick,
    /// Who may ask `status`/`top` and is told about every alert (the driver's bare JIDs).
    pub operators: Vec<String>,
    /// Interval, detectors and alert policy.
    pub aggregator: AggregatorConfig,
    /// Post a one-line summary of every interval in which someone reported.
    pub post_summaries: bool,
    /// How long a ping may take before the session counts as dead: the driver's account bound
    /// (half the account timeout, at least 2 s), never the interval, so a server busy with a
    /// thousand logins does not get the bot's session replaced on a 1-s interval.
    pub ping_timeout: Millis,
    /// XEP-0323 readout polling of third-party devices: how often (0: never, the default).
    pub poll: Millis,
    /// …and which nicknames: devices that answer requests but never push (see [`crate::readout`]).
    pub poll_devices: Vec<RoomNick>,
    /// How verdicts on direct readings are batched into cumulative acks.
    pub acks: AckBatch,
}

/// How the bot batches its verdicts: one signed ack per nickname covers up to `max_readings`
/// readings, and none waits longer than `max_wait`, so Prosody routes a fraction of a stanza
/// per reading instead of one, and the bot signs and sends a fraction as often.
///
/// `max_wait` must stay well inside what meters allow an answer: their first resend comes
/// 30 s after a send (`[outbox] resend_after`) and their session is probed after the account
/// timeout (15 s by default), so the default 5 s leaves room for a slow server. A meter about
/// to rotate or stop asks for its pending ack at once (wire: `<flush/>`), so a batch never
/// holds a reading across a nickname's end, which would make it resend under the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AckBatch {
    /// Verdicts for one nickname sent together at most; a full batch goes at once. The
    /// default, 16, equals a meter's default `max_in_flight`, so a meter catching up after a
    /// fault is answered as soon as its window is full.
    pub max_readings: usize,
    /// Longest a verdict waits for others (default `"5s"`; at most [`AckBatch::MAX_WAIT`]),
    /// written with its unit like every duration; a bare number counts milliseconds.
    #[serde(with = "gridmuc_core::time::span::ms")]
    pub max_wait: Millis,
}

impl AckBatch {
    /// The longest `max_wait` a bot accepts: half a meter's default answer timeout.
    pub const MAX_WAIT: Millis = 7_500;
    /// One verdict per ack, sent at once: wire format v1's rhythm.
    pub const EACH: AckBatch = AckBatch {
        max_readings: 1,
        max_wait: 0,
    };
}

impl Default for AckBatch {
    fn default() -> AckBatch {
        AckBatch {
            max_readings: 16,
            max_wait: 5_000,
        }
    }
}

impl BotCoreConfig {
    /// Defaults for everything but the nickname.
    pub fn new(nick: RoomNick) -> BotCoreConfig {
        BotCoreConfig {
            nick,
            operators: Vec::new(),
            aggregator: AggregatorConfig::default(),
            post_summaries: true,
            ping_timeout: 7_500,
            poll: 0,
            poll_devices: Vec::new(),
            acks: AckBatch::default(),
        }
    }
}

/// What happened, as the driver tells the core.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The room let us in under our nickname; the core checks that it keeps us blind.
    Joined(SelfPresence),
    /// Our nickname is held by someone else (409).
    NickConflict,
    /// The room removed us (kick, ban, shutdown of the room).
    Removed,
    /// A presence from the room showed a real JID: the room changed under us.
    RoomShowsJids,
    /// The session was replaced or restarted without resumption: the room has forgotten us.
    SessionReset,
    /// The session delivered something that needs nothing (our own post's echo, a ping's answer).
    Alive,
    /// A reading from an occupant, decoded by the driver (or refused while decoding).
    Reading {
        /// The sender's nickname.
        from: RoomNick,
        /// The reading id (message id), if it carried one.
        id: Option<ReadingId>,
        /// The reading, or why it could not be read.
        reading: Result<Reading, Rejection>,
        /// A direct reading that asks for a verdict (a groupchat one is answered by the room).
        wants_verdict: bool,
    },
    /// An occupant about to leave (rotation, shutdown) asks for the verdicts the bot still
    /// holds for its nickname, so none is left to arrive after it has gone.
    FlushAcks {
        /// The occupant's nickname.
        from: RoomNick,
    },
    /// A direct message from an operator (the driver checked the sender's bare JID).
    Command {
        /// The operator, as in [`BotCoreConfig::operators`].
        from: String,
        /// The text.
        text: String,
    },
    /// Stop: close the open intervals, publish them and leave.
    Shutdown,
    /// A polled device's answer to our readout request `seqnr` (see [`BotCore::awaits_readout`]).
    Polled {
        /// The device's nickname.
        from: RoomNick,
        /// The request's seqnr, as the answer gave it.
        seqnr: u64,
        /// What it said.
        answer: PollAnswer,
    },
}

/// Who a post goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum To {
    /// Everyone in the room (`groupchat`).
    Room,
    /// One occupant, privately through the room.
    Occupant(RoomNick),
    /// An operator's account, directly.
    Operator(String),
}

/// The bot's answer to a direct reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted (or counted before: a duplicate).
    Accepted,
    /// Not counted, with the [`Rejection::kind`].
    Refused(String),
}

/// What the core asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    /// Join the room under our nickname; answer [`Input::Joined`] or [`Input::NickConflict`].
    Join(RoomNick),
    /// Leave the room.
    Leave(RoomNick),
    /// One cumulative ack to a nickname: the verdict on each of its direct readings it covers,
    /// signed as a whole when the driver holds the bot key.
    Acks {
        /// The sender of the readings.
        to: RoomNick,
        /// Each reading's verdict, in the order they were decided.
        verdicts: Vec<(ReadingId, Verdict)>,
    },
    /// A message for people, with an alert payload for programs.
    Post {
        /// Recipient.
        to: To,
        /// The body.
        body: String,
        /// The alert it announces, if any.
        alert: Option<Alert>,
        /// The interval it summarises, for programs (boxed: most posts carry none).
        summary: Option<Box<Summary>>,
        /// Sign the body with the bot key (everything but the nickname-taken warning, which
        /// may come from a bot that is not the one meters pinned).
        signed: bool,
    },
    /// Probe the session with a ping (its answer arrives as any input).
    Ping,
    /// Replace the session with a fresh one, then report [`Input::SessionReset`].
    RenewSession,
    /// Ask a device for a momentary XEP-0323 readout, through the room.
    Poll {
        /// The device's nickname.
        to: RoomNick,
        /// The request's seqnr, which its answers carry.
        seqnr: u64,
    },
}

/// Things the bot tells its caller (demo view, tests, metrics).
#[derive(Clone, Debug, PartialEq)]
pub enum BotEvent {
    /// In the room as a plain participant.
    Joined(RoomNick),
    /// A reading reached the aggregator.
    Ingested {
        /// Sender.
        nick: RoomNick,
        /// Its id, if any.
        id: Option<ReadingId>,
        /// The reading.
        reading: Reading,
        /// Counted, or why not.
        outcome: Ingest,
    },
    /// A reading could not be read (the driver's decoder or guard refused it).
    Unreadable(Rejection),
    /// An interval closed (revision 0) or was amended.
    Summary {
        /// Its statistics.
        stats: IntervalStats,
        /// When the bot closed it.
        closed_at: Timestamp,
        /// Running totals at that moment (boxed: the counters are large).
        counters: Box<Counters>,
    },
    /// An alert was raised or cleared and handed over for delivery.
    Alert(Alert),
}

crate::room::room_variants!(Input, Transmit);

/// First wait before asking again for a nickname someone else holds.
pub const NICK_RETRY_FIRST: Millis = 1_000;
/// Longest wait between attempts for a taken nickname.
pub const NICK_RETRY_MAX: Millis = 60_000;
/// Nicknames remembered for the once-per-nickname rate warning before the set starts afresh.
const RATE_WARNED_CAP: usize = 10_000;

/// The wait before attempt `taken + 1` at a taken nickname, before jitter: 1 s doubling to 60 s.
pub fn nick_retry(taken: u32) -> Millis {
    (NICK_RETRY_FIRST << taken.min(6)).min(NICK_RETRY_MAX)
}

/// How long our own room post may take to echo back: half an interval, at least 2 s.
pub fn echo_bound(interval: Millis) -> Millis {
    (interval / 2).max(2_000)
}

/// How long silence may last before the session is probed: 1.5 intervals, at least 2 s.
pub fn silence_bound(interval: Millis) -> Millis {
    (interval.max(1) * 3 / 2).max(2_000)
}

/// Verdicts held for one nickname until its ack is due.
#[derive(Debug)]
struct PendingAck {
    verdicts: Vec<(ReadingId, Verdict)>,
    /// When the ack goes out at the latest: `max_wait` after its first verdict.
    due: Timestamp,
}

/// The substation bot's rules, driven from outside (see the module docs).
#[derive(Debug)]
pub struct BotCore<R> {
    cfg: BotCoreConfig,
    rng: R,
    agg: Aggregator,
    /// The join, the privacy check, a taken nickname, liveness, and what waits to go.
    seat: Seat<Transmit>,
    /// Nicknames already warned about in the log for reporting faster than the interval.
    rate_warned: HashSet<RoomNick>,
    /// Nicknames already told `rate_limited` since the last interval closed.
    rate_answered: HashSet<RoomNick>,
    /// Refusals already logged, so each interval's line names only the new ones.
    refusals_logged: RejectionCounts,
    /// Readout requests to configured devices, and their answers.
    poller: Poller,
    /// Verdicts not yet sent, by nickname.
    pending_acks: HashMap<RoomNick, PendingAck>,
    /// When each pending ack falls due, oldest first (entries of acks sent early are stale
    /// and skipped), so the next deadline is found without scanning every nickname.
    ack_deadlines: VecDeque<(Timestamp, RoomNick)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<BotEvent>,
}

impl<R: Rng> BotCore<R> {
    /// A bot about to join: its first transmit is the [`Transmit::Join`] of its nickname.
    pub fn new(cfg: BotCoreConfig, mut rng: R, now: Timestamp) -> BotCore<R> {
        let mut transmits = VecDeque::new();
        let seat = Seat::new(
            cfg.nick.clone(),
            cfg.operators.clone(),
            cfg.aggregator.interval,
            cfg.ping_timeout,
            now,
            &mut transmits,
        );
        // A random seqnr start, so a device cannot tell restarts (or two bots) apart by it.
        let poller = Poller::new(
            cfg.poll_devices.clone(),
            cfg.poll,
            cfg.ping_timeout.max(cfg.aggregator.interval / 2),
            rng.random_range(0..u64::from(u32::MAX)),
        );
        BotCore {
            poller,
            agg: Aggregator::new(cfg.aggregator.clone()),
            seat,
            cfg,
            rng,
            rate_warned: HashSet::new(),
            rate_answered: HashSet::new(),
            refusals_logged: RejectionCounts::default(),
            pending_acks: HashMap::new(),
            ack_deadlines: VecDeque::new(),
            transmits,
            events: VecDeque::new(),
        }
    }

    /// Whether we are in the room right now.
    pub fn in_room(&self) -> bool {
        self.seat.in_room()
    }

    /// The aggregator's running totals.
    pub fn counters(&self) -> &Counters {
        self.agg.counters()
    }

    /// Whether a readout request to `nick` awaits its answer: the driver reads that
    /// nickname's `<fields/>` messages as [`Input::Polled`].
    pub fn awaits_readout(&self, nick: &RoomNick) -> bool {
        self.poller.awaits(nick)
    }

    /// What readout polling has done so far.
    pub fn poll_counts(&self) -> PollCounts {
        self.poller.counts
    }

    /// The aggregator (read-only), for callers that show more than the counters.
    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    fn on_reading(
        &mut self,
        now: Timestamp,
        from: RoomNick,
        id: Option<ReadingId>,
        reading: Result<Reading, Rejection>,
        wants_verdict: bool,
    ) {
        if from == self.cfg.nick {
            return;
        }
        let verdict = match reading {
            Ok(reading) => {
                let outcome = match id {
                    Some(id) => self.agg.handle_reading_once(now, &from, id, reading),
                    None => self.agg.handle_reading(now, &from, reading),
                };
                let verdict = verdict_for(&outcome);
                if outcome == Ingest::Rejected(Rejection::RateLimited) {
                    self.warn_rate_limited(&from);
                }
                if let Ingest::Rejected(r) = &outcome {
                    tracing::debug!(nick = %from, reason = r.kind(), "reading refused");
                }
                self.events.push_back(BotEvent::Ingested {
                    nick: from.clone(),
                    id,
                    reading,
                    outcome,
                });
                verdict
            }
            Err(rejection) => {
                tracing::debug!(nick = %from, reason = rejection.kind(), "reading refused");
                self.agg.handle_rejection(&rejection);
                let verdict = Verdict::Refused(rejection.kind().to_owned());
                self.events.push_back(BotEvent::Unreadable(rejection));
                verdict
            }
        };
        // A flood is not answered reading for reading: one rate_limited refusal per nickname
        // and interval tells an honest sender to slow down.
        let flood = matches!(&verdict, Verdict::Refused(r) if r == Rejection::RateLimited.kind())
            && !self.rate_answered.insert(from.clone());
        if let (Some(id), true, false) = (id, wants_verdict, flood) {
            self.hold_verdict(now, from, id, verdict);
        }
    }

    /// Adds a verdict to its nickname's pending ack, which goes at once when full.
    fn hold_verdict(&mut self, now: Timestamp, to: RoomNick, id: ReadingId, verdict: Verdict) {
        let batch = self.cfg.acks;
        if batch.max_wait <= 0 || batch.max_readings <= 1 {
            self.room(Transmit::Acks {
                to,
                verdicts: vec![(id, verdict)],
            });
            return;
        }
        // Looked up before inserting: `entry` would take a copy of the nickname every reading.
        if !self.pending_acks.contains_key(&to) {
            let due = now.plus(batch.max_wait);
            self.ack_deadlines.push_back((due, to.clone()));
            let verdicts = Vec::with_capacity(batch.max_readings.min(64));
            self.pending_acks
                .insert(to.clone(), PendingAck { verdicts, due });
        }
        let Some(held) = self.pending_acks.get_mut(&to) else {
            return;
        };
        held.verdicts.push((id, verdict));
        if held.verdicts.len() >= batch.max_readings {
            self.send_ack(&to);
        }
    }

    /// Sends the verdicts held for `nick` as one ack, if any are held.
    fn send_ack(&mut self, nick: &RoomNick) {
        if let Some(p) = self.pending_acks.remove(nick) {
            self.room(Transmit::Acks {
                to: nick.clone(),
                verdicts: p.verdicts,
            });
        }
    }

    /// Sends every ack due at `now` (all of them for `None`: the bot is stopping).
    fn send_due_acks(&mut self, now: Option<Timestamp>) {
        while let Some((due, _)) = self.ack_deadlines.front() {
            if now.is_some_and(|t| *due > t) {
                break;
            }
            let Some((due, nick)) = self.ack_deadlines.pop_front() else {
                break;
            };
            // Stale if that batch went early (full, or flushed) and a newer one started.
            if self.pending_acks.get(&nick).is_some_and(|p| p.due == due) {
                self.send_ack(&nick);
            }
        }
    }

    /// Queues something that goes through the room, or holds it until we are back in it.
    fn room(&mut self, t: Transmit) {
        self.seat.send(t, &mut self.transmits);
    }

    /// Posts what the aggregator produced: summaries and alerts to the room, house alerts
    /// privately, every alert to each operator.
    fn publish(&mut self, now: Timestamp) {
        let summaries: Vec<IntervalStats> = self.agg.poll_summaries().collect();
        let alerts: Vec<Alert> = self.agg.poll_alerts().collect();
        for stats in summaries {
            // An interval nobody reported in says nothing worth a line in the room.
            if self.cfg.post_summaries && stats.meters > 0 {
                // Our own post echoes back from the room; if it does not, the session is probed.
                self.seat.posted(now);
                self.room(Transmit::Post {
                    to: To::Room,
                    body: summary_line(&stats),
                    alert: None,
                    summary: Some(Box::new(Summary::from_stats(
                        &stats,
                        self.cfg.aggregator.overload.rating,
                    ))),
                    signed: true,
                });
            }
            // A revision amends an interval already counted.
            if stats.revision == 0 {
                self.log_interval(&stats);
                self.rate_answered.clear();
            }
            let counters = Box::new(self.agg.counters().clone());
            self.events.push_back(BotEvent::Summary {
                stats,
                closed_at: now,
                counters,
            });
        }
        for alert in alerts {
            let first = match &alert.nick {
                // Only the occupant concerned (a spike, a stuck or zero meter) hears about it, through the room.
                Some(nick) => To::Occupant(nick.clone()),
                None => To::Room,
            };
            let body = alert.body();
            self.room(Transmit::Post {
                to: first,
                body: body.clone(),
                alert: Some(alert.clone()),
                summary: None,
                signed: true,
            });
            for op in &self.cfg.operators {
                self.transmits.push_back(Transmit::Post {
                    to: To::Operator(op.clone()),
                    body: body.clone(),
                    alert: Some(alert.clone()),
                    summary: None,
                    signed: true,
                });
            }
            tracing::info!(%body, "alert delivered");
            self.events.push_back(BotEvent::Alert(alert));
        }
    }

    /// One log line per interval at the default level: its summary (if anyone reported) and
    /// the refusals since the previous one by reason, however many readings a flood brings.
    fn log_interval(&mut self, stats: &IntervalStats) {
        if stats.meters > 0 {
            tracing::info!("{}", summary_line(stats));
        }
        let counts = &self.agg.counters().rejected;
        if let Some(line) = fresh_refusals(counts, &self.refusals_logged) {
            tracing::info!(refused = %line, "readings refused since the last interval");
        }
        self.refusals_logged = counts.clone();
    }

    /// Says once per nickname that it reports faster than the interval, so a third-party
    /// meter set to 1-s readings under a 60-s bot is noticed rather than silently thinned.
    fn warn_rate_limited(&mut self, nick: &RoomNick) {
        if self.rate_warned.len() >= RATE_WARNED_CAP {
            self.rate_warned.clear();
        }
        if self.rate_warned.insert(nick.clone()) {
            let cfg = self.agg.config();
            tracing::warn!(
                %nick,
                interval_ms = cfg.interval,
                per_interval = cfg.max_readings_per_interval,
                "a nickname reports more often than the interval allows; the extra readings are \
                 refused as rate_limited (is its meter set to the bot's interval?)"
            );
        }
    }

    /// Operator commands: short human answers, nicknames only.
    pub fn answer(&self, command: &str) -> String {
        let c = self.agg.counters();
        match command.to_lowercase().as_str() {
            "status" => {
                let last = self
                    .agg
                    .last_summary()
                    .map_or_else(|| "no interval closed yet".to_owned(), summary_line);
                format!(
                    "{last} · accepted {}, rejected {}, intervals {}, alerts {}",
                    c.accepted,
                    c.rejected.total(),
                    c.intervals,
                    c.alerts
                )
            }
            "top" => {
                let top = self.agg.top(5);
                if top.is_empty() {
                    "no interval closed yet".to_owned()
                } else {
                    let list: Vec<String> = top.iter().map(|(n, w)| format!("{n} {w}")).collect();
                    format!("top in the last interval: {}", list.join(", "))
                }
            }
            "help" | "?" => {
                "commands: status (last interval and counters), top (highest nicknames), help"
                    .to_owned()
            }
            _ => "unknown command; try help".to_owned(),
        }
    }
}

impl SeatTransmit for Transmit {
    fn room(t: RoomTransmit) -> Transmit {
        match t {
            RoomTransmit::Join(nick) => Transmit::Join(nick),
            RoomTransmit::Leave(nick) => Transmit::Leave(nick),
            RoomTransmit::Ping => Transmit::Ping,
            RoomTransmit::RenewSession => Transmit::RenewSession,
        }
    }

    fn through_room(&self) -> bool {
        matches!(
            self,
            Transmit::Acks { .. }
                | Transmit::Post {
                    to: To::Room | To::Occupant(_),
                    ..
                }
        )
    }

    fn to_operator(op: &str, text: String) -> Transmit {
        Transmit::Post {
            to: To::Operator(op.to_owned()),
            body: text,
            alert: None,
            summary: None,
            signed: false,
        }
    }
}

/// The answer a reading's outcome earns: a resent copy of a counted reading is accepted, so
/// the sender may forget it.
pub fn verdict_for(outcome: &Ingest) -> Verdict {
    match outcome {
        Ingest::Accepted | Ingest::Rejected(Rejection::Duplicate) => Verdict::Accepted,
        Ingest::Rejected(r) => Verdict::Refused(r.kind().to_owned()),
    }
}

/// The refusals counted since `logged`, by reason (`late 3, rate_limited 12`), if any.
pub fn fresh_refusals(counts: &RejectionCounts, logged: &RejectionCounts) -> Option<String> {
    let fresh: Vec<String> = counts
        .iter()
        .map(|(kind, n)| (kind, n - logged.get(kind)))
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    (!fresh.is_empty()).then(|| fresh.join(", "))
}

/// One line per interval for people in the room.
pub fn summary_line(s: &IntervalStats) -> String {
    let revised = match s.revision {
        0 => String::new(),
        n => format!(" (revision {n}: late readings arrived)"),
    };
    format!(
        "interval {}{revised}: {} meters, total {}, mean {:.2} kW, p95 {:.2} kW, max {}",
        s.start,
        s.meters,
        s.total,
        s.mean / 1000.0,
        s.p95 / 1000.0,
        s.max
    )
}

impl<R: Rng> Agent for BotCore<R> {
    type Input = Input;
    type Transmit = Transmit;
    type Event = BotEvent;
    type Error = PrivacyRefusal;

    /// Takes in what happened at `now`.
    fn handle(&mut self, now: Timestamp, input: Input) {
        if self.seat.outcome().is_some() {
            return;
        }
        let room = match input {
            Input::Joined(me) => RoomInput::Joined(me),
            Input::NickConflict => RoomInput::NickConflict,
            Input::Removed => RoomInput::Removed,
            Input::RoomShowsJids => RoomInput::RoomShowsJids,
            Input::SessionReset => RoomInput::SessionReset,
            Input::Alive => RoomInput::Alive,
            Input::Shutdown => {
                // Answer every reading held, close and publish the open intervals while still
                // in the room, then leave.
                self.send_due_acks(None);
                self.agg.flush();
                self.publish(now);
                RoomInput::Shutdown
            }
            Input::Reading {
                from,
                id,
                reading,
                wants_verdict,
            } => {
                self.seat.heard(now);
                self.on_reading(now, from, id, reading, wants_verdict);
                return;
            }
            Input::Polled {
                from,
                seqnr,
                answer,
            } => {
                self.seat.heard(now);
                // The same path as a pushed reading: codec limits, rate limit, detectors.
                if let Some(reading) = self.poller.answer(&from, seqnr, answer) {
                    self.on_reading(now, from, None, reading, false);
                }
                return;
            }
            Input::FlushAcks { from } => {
                self.seat.heard(now);
                self.send_ack(&from);
                return;
            }
            Input::Command { from, text } => {
                // A command proves the session delivers, like anything else.
                self.seat.heard(now);
                if self.cfg.operators.contains(&from) {
                    let body = self.answer(text.trim());
                    self.transmits.push_back(Transmit::Post {
                        to: To::Operator(from),
                        body,
                        alert: None,
                        summary: None,
                        signed: true,
                    });
                }
                return;
            }
        };
        if self
            .seat
            .on_room(now, room, &mut self.rng, &mut self.transmits)
        {
            self.poller.start(now);
            self.events
                .push_back(BotEvent::Joined(self.cfg.nick.clone()));
        }
    }

    /// Closes due intervals and publishes them; probes or replaces a session that owes an
    /// answer or has been silent too long; asks again for a taken nickname.
    fn handle_timeout(&mut self, now: Timestamp) {
        if self.seat.outcome().is_some() {
            return;
        }
        self.seat.handle_timeout(now, &mut self.transmits);
        if self.seat.in_room() {
            for (to, seqnr) in self.poller.poll(now) {
                self.transmits.push_back(Transmit::Poll { to, seqnr });
            }
        } else {
            self.poller.stop();
        }
        self.send_due_acks(Some(now));
        self.agg.handle_timeout(now);
        self.publish(now);
    }

    /// The next transmit, in order.
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, in order.
    fn poll_event(&mut self) -> Option<BotEvent> {
        self.events.pop_front()
    }

    /// When [`BotCore::handle_timeout`] is next due; `None` once stopped.
    fn poll_timeout(&self) -> Option<Timestamp> {
        if self.seat.outcome().is_some() {
            return None;
        }
        let ack = self.ack_deadlines.front().map(|(due, _)| *due);
        [
            self.seat.poll_timeout(),
            self.agg.poll_timeout(),
            self.poller.deadline(),
            ack,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// `Some` once stopped: `Ok` after a shutdown, the privacy refusal otherwise.
    fn outcome(&self) -> Option<Result<(), PrivacyRefusal>> {
        self.seat.outcome()
    }

    fn nick(&self) -> Option<&RoomNick> {
        self.seat.nick()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_core::AlertKind;
    use gridmuc_core::{Quality, Watts};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const T0: Timestamp = Timestamp(1_795_996_800_000);

    /// A bot answering each reading at once, as v1 did; batching has its own test.
    fn core() -> BotCore<StdRng> {
        core_with(AckBatch::EACH)
    }

    fn core_with(acks: AckBatch) -> BotCore<StdRng> {
        let mut cfg = BotCoreConfig::new(RoomNick::new("substation").expect("a nickname"));
        cfg.operators = vec!["op@grid.test".to_owned()];
        cfg.acks = acks;
        BotCore::new(cfg, StdRng::seed_from_u64(1), T0)
    }

    fn drain(c: &mut BotCore<StdRng>) -> Vec<Transmit> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    fn nick(s: &str) -> RoomNick {
        RoomNick::new(s).expect("a nickname")
    }

    fn reading(from: &str, id: u128, at: Timestamp) -> Input {
        Input::Reading {
            from: nick(from),
            id: Some(ReadingId(id)),
            reading: Ok(Reading {
                power: Watts(500),
                at,
                seqnr: id as u64,
                quality: Quality::default(),
            }),
            wants_verdict: true,
        }
    }

    #[test]
    fn nickname_retries_double_from_one_second_to_a_minute() {
        let waits: Vec<Millis> = (0..9).map(nick_retry).collect();
        assert_eq!(
            waits,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(nick_retry(u32::MAX), NICK_RETRY_MAX);
    }

    #[test]
    fn bounds_have_floors() {
        assert_eq!(echo_bound(60_000), 30_000);
        assert_eq!(echo_bound(1_000), 2_000);
        assert_eq!(silence_bound(60_000), 90_000);
        assert_eq!(silence_bound(1_000), 2_000);
    }

    #[test]
    fn a_room_that_would_show_jids_is_left_and_the_bot_stops() {
        let cases = [
            (
                SelfPresence {
                    privileged: Some(("moderator".into(), "none".into())),
                    ..SelfPresence::default()
                },
                PrivacyRefusal::Privileged {
                    role: "moderator".into(),
                    affiliation: "none".into(),
                },
            ),
            (
                SelfPresence {
                    non_anonymous: true,
                    ..SelfPresence::default()
                },
                PrivacyRefusal::NonAnonymous,
            ),
            (
                SelfPresence {
                    occupant_id: true,
                    ..SelfPresence::default()
                },
                PrivacyRefusal::OccupantId,
            ),
        ];
        for (presence, error) in cases {
            let mut c = core();
            assert_eq!(drain(&mut c), [Transmit::Join(nick("substation"))]);
            c.handle(T0, Input::Joined(presence));
            assert_eq!(drain(&mut c), [Transmit::Leave(nick("substation"))]);
            assert_eq!(c.outcome(), Some(Err(error)));
            assert_eq!(c.poll_timeout(), None);
        }
        // In the room, a presence showing JIDs stops it too.
        let mut c = core();
        c.handle(T0, Input::Joined(SelfPresence::default()));
        drain(&mut c);
        c.handle(T0, Input::RoomShowsJids);
        assert_eq!(drain(&mut c), [Transmit::Leave(nick("substation"))]);
        assert_eq!(c.outcome(), Some(Err(PrivacyRefusal::NonAnonymous)));
    }

    #[test]
    fn a_taken_nickname_is_told_to_operators_once_and_asked_for_again_with_jitter() {
        let mut c = core();
        drain(&mut c);
        let mut now = T0;
        for k in 0..8 {
            c.handle(now, Input::NickConflict);
            let told = drain(&mut c);
            if k == 0 {
                assert!(matches!(
                    &told[..],
                    [Transmit::Post { to: To::Operator(op), signed: false, .. }] if op == "op@grid.test"
                ));
            } else {
                assert!(told.is_empty(), "{told:?}");
            }
            let due = c.poll_timeout().expect("a retry");
            let wait = due.since(now);
            let base = nick_retry(k);
            assert!((base / 2..base * 3 / 2).contains(&wait), "{k}: {wait}");
            now = due;
            c.handle_timeout(now);
            assert_eq!(drain(&mut c), [Transmit::Join(nick("substation"))]);
        }
        c.handle(now, Input::Joined(SelfPresence::default()));
        assert!(c.in_room());
        // Taken again later: the operators hear of it again.
        c.handle(now, Input::Removed);
        drain(&mut c);
        c.handle(now, Input::NickConflict);
        assert_eq!(drain(&mut c).len(), 1);
    }

    #[test]
    fn verdicts_name_the_reason_and_duplicates_are_accepted() {
        assert_eq!(verdict_for(&Ingest::Accepted), Verdict::Accepted);
        assert_eq!(
            verdict_for(&Ingest::Rejected(Rejection::Duplicate)),
            Verdict::Accepted
        );
        assert_eq!(
            verdict_for(&Ingest::Rejected(Rejection::Late)),
            Verdict::Refused("late".into())
        );
        let mut c = core();
        c.handle(T0, Input::Joined(SelfPresence::default()));
        drain(&mut c);
        let at = T0.floor_to(60_000);
        c.handle(T0, reading("amber-otter-1", 7, at));
        c.handle(T0, reading("amber-otter-2", 7, at));
        let verdicts: Vec<Verdict> = drain(&mut c)
            .into_iter()
            .flat_map(|t| match t {
                Transmit::Acks { verdicts, .. } => verdicts.into_iter().map(|(_, v)| v),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(verdicts, [Verdict::Accepted, Verdict::Accepted]);
        assert_eq!(c.counters().accepted, 1);
        assert_eq!(c.counters().rejected.get("duplicate"), 1);
        // Our own nickname's traffic is not a reading; a groupchat one gets no verdict.
        c.handle(T0, reading("substation", 8, at));
        let mut broadcast = reading("amber-otter-3", 9, at);
        if let Input::Reading { wants_verdict, .. } = &mut broadcast {
            *wants_verdict = false;
        }
        c.handle(T0, broadcast);
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.counters().accepted, 2);
    }

    #[test]
    fn answers_wait_while_the_bot_is_out_of_the_room() {
        let mut c = core();
        drain(&mut c);
        let at = T0.floor_to(60_000);
        c.handle(T0, reading("amber-otter-1", 1, at));
        assert!(drain(&mut c).is_empty());
        c.handle(T0, Input::Joined(SelfPresence::default()));
        assert!(matches!(&drain(&mut c)[..], [Transmit::Acks { .. }]));
    }

    #[test]
    fn verdicts_are_batched_per_nickname_by_count_by_time_and_on_request() {
        let mut c = core_with(AckBatch {
            max_readings: 3,
            max_wait: 5_000,
        });
        c.handle(T0, Input::Joined(SelfPresence::default()));
        drain(&mut c);
        let at = T0.floor_to(60_000);
        let acks = |ts: Vec<Transmit>| -> Vec<(RoomNick, Vec<u128>)> {
            ts.into_iter()
                .filter_map(|t| match t {
                    Transmit::Acks { to, verdicts } => {
                        Some((to, verdicts.into_iter().map(|(id, _)| id.0).collect()))
                    }
                    _ => None,
                })
                .collect()
        };
        // Three readings of one nickname fill a batch: one ack at once, covering all three.
        for id in 1..=3 {
            c.handle(T0.plus(id as i64), reading("amber-otter-1", id, at));
        }
        assert_eq!(
            acks(drain(&mut c)),
            [(nick("amber-otter-1"), vec![1, 2, 3])]
        );
        // Two of another nickname wait for `max_wait` after the first.
        c.handle(T0.plus(100), reading("amber-otter-2", 4, at));
        c.handle(T0.plus(900), reading("amber-otter-2", 5, at));
        assert!(drain(&mut c).is_empty());
        // The first nickname's deadline is stale (its batch went when full) and fires nothing.
        c.handle_timeout(T0.plus(5_099));
        assert!(acks(drain(&mut c)).is_empty());
        assert_eq!(c.poll_timeout(), Some(T0.plus(5_100)));
        c.handle_timeout(T0.plus(5_100));
        assert_eq!(acks(drain(&mut c)), [(nick("amber-otter-2"), vec![4, 5])]);
        // A meter about to leave asks: it gets what is held at once; an empty ask costs nothing.
        c.handle(T0.plus(6_000), reading("amber-otter-3", 6, at));
        c.handle(
            T0.plus(6_010),
            Input::FlushAcks {
                from: nick("amber-otter-3"),
            },
        );
        assert_eq!(acks(drain(&mut c)), [(nick("amber-otter-3"), vec![6])]);
        c.handle(
            T0.plus(6_020),
            Input::FlushAcks {
                from: nick("amber-otter-3"),
            },
        );
        assert!(drain(&mut c).is_empty());
        // The stale deadline of the flushed batch fires nothing; a stop answers everything held.
        c.handle(T0.plus(7_000), reading("amber-otter-4", 7, at));
        c.handle_timeout(T0.plus(11_010));
        assert!(acks(drain(&mut c)).is_empty());
        c.handle(T0.plus(11_020), Input::Shutdown);
        assert_eq!(acks(drain(&mut c)), [(nick("amber-otter-4"), vec![7])]);
    }

    #[test]
    fn alerts_go_to_the_room_or_the_house_alone_and_always_to_every_operator() {
        let mut cfg = BotCoreConfig::new(nick("substation"));
        cfg.operators = vec!["op1@grid.test".to_owned(), "op2@grid.test".to_owned()];
        cfg.aggregator.overload.rating = Watts(10_000);
        cfg.aggregator.outlier.min_peers = 3;
        cfg.aggregator.outlier.min_excess = Watts(1_000);
        let mut c = BotCore::new(cfg, StdRng::seed_from_u64(2), T0);
        c.handle(T0, Input::Joined(SelfPresence::default()));
        drain(&mut c);
        let at = T0.floor_to(60_000);
        for (i, w) in [500, 520, 480, 510, 490, 15_000].into_iter().enumerate() {
            c.handle(
                T0,
                Input::Reading {
                    from: nick(&format!("house-{i}")),
                    id: Some(ReadingId(i as u128 + 1)),
                    reading: Ok(Reading {
                        power: Watts(w),
                        at,
                        seqnr: 1,
                        quality: Quality::default(),
                    }),
                    wants_verdict: false,
                },
            );
        }
        let close = c.poll_timeout().expect("a close");
        c.handle_timeout(close);
        let alerts: Vec<Alert> = std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e {
                BotEvent::Alert(a) => Some(a),
                _ => None,
            })
            .collect();
        assert!(
            alerts.iter().any(|a| a.kind == AlertKind::HouseSpike)
                && alerts.iter().any(|a| a.kind != AlertKind::HouseSpike),
            "{alerts:?}"
        );
        let posts: Vec<(To, Option<Alert>)> = drain(&mut c)
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Post {
                    to,
                    alert: Some(a),
                    signed: true,
                    ..
                } => Some((to, Some(a))),
                _ => None,
            })
            .collect();
        for a in &alerts {
            let to: Vec<&To> = posts
                .iter()
                .filter(|(_, p)| p.as_ref() == Some(a))
                .map(|(to, _)| to)
                .collect();
            let first = match a.kind {
                AlertKind::HouseSpike => To::Occupant(nick("house-5")),
                _ => To::Room,
            };
            assert_eq!(
                to,
                [
                    &first,
                    &To::Operator("op1@grid.test".into()),
                    &To::Operator("op2@grid.test".into())
                ],
                "{a:?}"
            );
        }
    }

    #[test]
    fn what_was_queued_for_the_room_waits_for_the_rejoin() {
        let mut c = core();
        c.handle(T0, Input::Joined(SelfPresence::default()));
        drain(&mut c);
        let at = T0.floor_to(60_000);
        c.handle(T0, reading("amber-otter-1", 1, at));
        // The session is replaced before the verdict went out.
        c.handle(T0, Input::SessionReset);
        assert_eq!(drain(&mut c), [Transmit::Join(nick("substation"))]);
        c.handle(T0, Input::Joined(SelfPresence::default()));
        assert!(matches!(&drain(&mut c)[..], [Transmit::Acks { .. }]));
    }

    #[test]
    fn operator_commands_are_answered_only_to_operators() {
        let mut c = core();
        drain(&mut c);
        c.handle(
            T0,
            Input::Command {
                from: "op@grid.test".into(),
                text: " HELP ".into(),
            },
        );
        assert!(matches!(
            &drain(&mut c)[..],
            [Transmit::Post { to: To::Operator(_), body, signed: true, .. }] if body.starts_with("commands:")
        ));
        c.handle(
            T0,
            Input::Command {
                from: "house@homes.test".into(),
                text: "status".into(),
            },
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.answer("top"), "no interval closed yet");
        assert_eq!(c.answer("reboot"), "unknown command; try help");
        assert!(
            c.answer("status")
                .starts_with("no interval closed yet · accepted 0")
        );
    }

    #[test]
    fn refusals_are_logged_as_news_only() {
        let mut logged = RejectionCounts::default();
        let mut counts = RejectionCounts::default();
        assert_eq!(fresh_refusals(&counts, &logged), None);
        counts.record(&Rejection::Late);
        counts.record(&Rejection::Late);
        counts.record(&Rejection::RateLimited);
        assert_eq!(
            fresh_refusals(&counts, &logged).as_deref(),
            Some("late 2, rate_limited 1")
        );
        logged = counts.clone();
        counts.record(&Rejection::RateLimited);
        assert_eq!(
            fresh_refusals(&counts, &logged).as_deref(),
            Some("rate_limited 1")
        );
    }

    #[test]
    fn a_closed_interval_is_posted_signed_and_reported() {
        let mut c = core();
        c.handle(T0, Input::Joined(SelfPresence::default()));
        drain(&mut c);
        let at = T0.floor_to(60_000);
        c.handle(T0, reading("amber-otter-1", 1, at));
        drain(&mut c);
        let close = c.poll_timeout().expect("a close");
        c.handle_timeout(close);
        let posts = drain(&mut c);
        assert!(matches!(
            &posts[..],
            [Transmit::Post { to: To::Room, body, signed: true, alert: None, summary: Some(s) }]
                if body.starts_with("interval ") && s.meters == 1 && s.total == Watts(500)
        ));
        let events: Vec<BotEvent> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(matches!(
            &events[..],
            [BotEvent::Joined(_), BotEvent::Ingested { .. }, BotEvent::Summary { stats, closed_at, .. }]
                if stats.meters == 1 && stats.revision == 0 && *closed_at == close
        ));
    }
}
