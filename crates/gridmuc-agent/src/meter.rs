//! The plain meter as a state machine: one house, a random nickname that rotates, one reading
//! per interval, each kept until the bot (or the room) answers for it.
//!
//! [`MeterCore`] holds every rule and does no I/O. Its driver reports what happened as an
//! [`Input`], carries out each [`Transmit`], and calls [`MeterCore::handle_timeout`] at
//! [`MeterCore::poll_timeout`]. The reading's value comes from outside: the core asks for it
//! ([`Transmit::Measure`]) and is told ([`Input::Measured`]).
//!
//! In broadcast mode a meter keeps at most one reading in flight: it sends the next only after
//! the room has echoed the previous one back to it, i.e. after the server has fanned it out to
//! every occupant and this session has drained everything queued before it. When the room is
//! slower than the interval the meter skips intervals (counted in [`MeterReport::paced`])
//! instead of piling readings into server queues that reach the bot too late (docs/flood.md).
//! Intervals a fault made it miss (a removal, a dead session) are not skipped but measured
//! after the rejoin: the outbox keeps them until they are too old for the bot.

use crate::bot::Verdict;
use crate::liveness::Liveness;
use crate::readout::{self, Responder};
use crate::room::NOT_AN_OCCUPANT;
use crate::room::{Agent, PrivacyRefusal, RoomTransmit, SelfPresence};
use gridmuc_core::{
    Alert, Millis, NickGenerator, Outbox, OutboxConfig, Quality, Reading, ReadingId, RoomNick,
    Timestamp, Watts,
};
use rand::{CryptoRng, Rng};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// Broadcast to the room or send privately to the bot through the room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `type='chat'` to `room/<botnick>`: other houses never see the reading (default).
    #[default]
    Direct,
    /// `type='groupchat'` to the room: every occupant, and any chat client, sees it.
    Broadcast,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "direct" => Ok(Mode::Direct),
            "broadcast" => Ok(Mode::Broadcast),
            other => Err(format!("unknown mode {other:?} (direct or broadcast)")),
        }
    }
}

/// A meter's rules in numbers, every span in milliseconds (the driver converts its config).
#[derive(Clone, Debug, PartialEq)]
pub struct MeterCoreConfig {
    /// Broadcast or direct.
    pub mode: Mode,
    /// Broadcast pacing (one reading in flight until the room echoes it); off only to
    /// reproduce the unpaced flood of `gridmuc loadtest --unpaced`.
    pub pace_broadcast: bool,
    /// Reporting interval; must equal the bot's so each nickname sends one reading per bucket.
    pub interval: Millis,
    /// Send time within the interval, as fractions `[min, max]` of it, drawn afresh each time.
    pub jitter: [f64; 2],
    /// Nickname lifetime range `[min, max]`; rotation is leave + rejoin, never a nick change.
    pub rotate: [Millis; 2],
    /// Pause between leaving and rejoining, so old and new nickname do not line up.
    pub rejoin_gap: [Millis; 2],
    /// Quantisation step (W) applied before sending.
    pub quantum_watts: u32,
    /// What is kept until the bot acknowledges it, and for how long.
    pub outbox: OutboxConfig,
    /// No reading before this time, so a load test starts a whole neighbourhood together.
    pub not_before: Option<Timestamp>,
    /// How long an answer (verdict, echo, join) may take before the session is probed.
    pub answer_timeout: Millis,
    /// Longest wait for outstanding answers before leaving (rotation or shutdown).
    pub drain: Millis,
    /// Answer XEP-0323 readout requests from occupants (see [`crate::readout`]).
    pub readout: bool,
    /// Hand the unacknowledged readings out ([`Transmit::SaveOutbox`]) whenever they change,
    /// so the driver can keep them where a crash or a power cut does not lose them.
    pub save_outbox: bool,
}

/// Things a meter tells its caller (demo view, tests); never includes its own JID.
///
/// `At` is the clock of whoever reports the event: the core's [`Timestamp`], or the driver's
/// own instant type (see [`MeterEvent::map_at`]) when it measures latency more finely.
#[derive(Clone, Debug, PartialEq)]
pub enum MeterEvent<At = Timestamp> {
    /// Joined under a fresh nickname.
    Joined(RoomNick),
    /// A reading left for the server for the first time (resends are only counted).
    Sent {
        /// Nickname it was sent under.
        nick: RoomNick,
        /// What was sent.
        reading: Reading,
        /// When it was handed over for sending (load tests measure latency from it).
        at: At,
    },
    /// A private message reached this nickname through the room (e.g. a house-spike alert).
    Private {
        /// Our nickname at the time.
        to: RoomNick,
        /// Sender's nickname.
        from: RoomNick,
        /// The human body.
        body: String,
        /// The alert payload, if any.
        alert: Option<Alert>,
    },
    /// The room bounced a direct reading (bot not in the room).
    Bounced(String),
    /// Left the room (rotation or shutdown).
    Left(RoomNick),
}

impl<A> MeterEvent<A> {
    /// The same event on another clock: `f` maps the time of a `Sent`.
    pub fn map_at<B>(self, f: impl FnOnce(A) -> B) -> MeterEvent<B> {
        match self {
            MeterEvent::Joined(n) => MeterEvent::Joined(n),
            MeterEvent::Sent { nick, reading, at } => MeterEvent::Sent {
                nick,
                reading,
                at: f(at),
            },
            MeterEvent::Private {
                to,
                from,
                body,
                alert,
            } => MeterEvent::Private {
                to,
                from,
                body,
                alert,
            },
            MeterEvent::Bounced(why) => MeterEvent::Bounced(why),
            MeterEvent::Left(n) => MeterEvent::Left(n),
        }
    }
}

/// Totals of a run, so callers and tests can check that nothing was lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterReport {
    /// Distinct readings taken and handed to the server (each at least once).
    pub sent: u64,
    /// Repeat sends of unacknowledged readings (after a reconnect, or `resend_after`).
    pub resent: u64,
    /// Readings the bot (direct) or the room (broadcast) acknowledged.
    pub acknowledged: u64,
    /// Acks from the bot acted on (each may cover several readings; broadcast echoes not included).
    pub acks: u64,
    /// Readings still unacknowledged when the meter stopped.
    pub unacknowledged: u64,
    /// Readings dropped because the outbox was full.
    pub dropped: u64,
    /// Readings given up because they grew too old for the bot to take.
    pub expired: u64,
    /// Direct readings the room bounced.
    pub bounced: u64,
    /// Nicknames used (1 + rotations + rejoins).
    pub nicks: u64,
    /// Nickname conflicts (409) survived.
    pub conflicts: u64,
    /// Intervals skipped because the previous broadcast reading had not come back from the room yet.
    pub paced: u64,
    /// Broadcast readings whose echo never came back within the answer timeout.
    pub echo_timeouts: u64,
    /// Readings the bot refused (not counted; resending would not change that), by reason.
    pub refused: BTreeMap<String, u64>,
    /// Answers from the bot's nickname not signed by the pinned bot key (an impostor's).
    pub unverified: u64,
    /// What the reading source skipped (the driver fills this in; the core never sees the source).
    pub source: SourceFaults,
}

/// Intervals a meter's source had no reading for, so a dead or garbled meter shows in the
/// report instead of hiding behind fewer readings sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceFaults {
    /// Intervals skipped because nothing arrived from the meter.
    pub dead_intervals: u64,
    /// Intervals skipped because only unusable frames arrived.
    pub garbled_intervals: u64,
    /// Frames refused (bad checksum, undecodable, without the expected field).
    pub garbled_frames: u64,
}

impl MeterReport {
    /// All refused readings, whatever the reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

impl fmt::Display for MeterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "readings sent: {} (acknowledged {} in {} acks, refused {}{}, resent {}, unacknowledged \
             at stop {}, dropped {}, expired {}), bounced: {}, unverified answers: {}, nicknames \
             used: {}, nickname conflicts: {}, source faults: {} dead and {} garbled intervals \
             skipped ({} garbled frames)",
            self.sent,
            self.acknowledged,
            self.acks,
            self.refused_total(),
            if self.refused.is_empty() {
                String::new()
            } else {
                format!(" {:?}", self.refused)
            },
            self.resent,
            self.unacknowledged,
            self.dropped,
            self.expired,
            self.bounced,
            self.unverified,
            self.nicks,
            self.conflicts,
            self.source.dead_intervals,
            self.source.garbled_intervals,
            self.source.garbled_frames
        )
    }
}

/// What happened, as the driver tells the core; everything but `Measured` and `Shutdown` came
/// from the session and proves that it still delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The room let us in under the pending join's nickname; the core checks that it keeps us
    /// anonymous.
    Joined(SelfPresence),
    /// The nickname of the pending join is taken (409).
    NickConflict,
    /// The room removed us (kick, ban, shutdown of the room).
    Removed,
    /// A presence from the room showed a real JID: the room changed under us.
    RoomShowsJids,
    /// The session was replaced or restarted without resumption: the room has forgotten us.
    SessionReset,
    /// The session delivered something that matters to nobody here (a ping's answer, say).
    Alive,
    /// A signed (or, without a pinned key, believed) ack from the bot: for each reading it
    /// covers, counted (or counted already), or refused for a reason resending cannot change
    /// (a `gridmuc_core::Rejection` kind, e.g. `late`).
    Verdicts(Vec<(ReadingId, Verdict)>),
    /// An ack from the bot's nickname that the pinned bot key did not sign, naming (one of)
    /// the readings it claims to cover.
    Unverified(ReadingId),
    /// The room reflected a groupchat reading: the acknowledgement of a broadcast.
    Echo(ReadingId),
    /// The room returned a reading (or another stanza of ours) as an error.
    Bounce {
        /// The reading, if the error names one of ours.
        id: Option<ReadingId>,
        /// The error condition, e.g. `item-not-found`.
        why: String,
    },
    /// A private message through the room.
    Private {
        /// Sender's nickname.
        from: RoomNick,
        /// The human body.
        body: String,
        /// The alert payload, if any.
        alert: Option<Alert>,
        /// False if it comes from the bot's nickname but the pinned bot key did not sign it.
        verified: bool,
    },
    /// The answer to [`Transmit::Measure`]: the load in the interval starting at `slot`, or
    /// `None` if the source has nothing new for it (stdin stayed quiet).
    Measured {
        /// The interval measured.
        slot: Timestamp,
        /// Watts, before quantisation.
        value: Option<Watts>,
    },
    /// Stop: drain outstanding answers (bounded), leave, and finish.
    Shutdown,
    /// An iq request (XEP-0323 readout, disco#info, anything else) to this session.
    Request(readout::Request),
}

/// Where a reading goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// Privately to the bot's nickname through the room (direct mode).
    Bot,
    /// To the room (broadcast mode).
    Room,
}

/// What the core asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    /// Join the room under this nickname and answer with [`Input::Joined`] or [`Input::NickConflict`].
    Join(RoomNick),
    /// Leave the room (rotation or shutdown).
    Leave(RoomNick),
    /// Send a reading; `reading.seqnr` is set.
    Send {
        /// The message id the answer will name.
        id: ReadingId,
        /// The reading, timestamped with its interval.
        reading: Reading,
        /// Bot or room.
        to: Recipient,
    },
    /// Ask the bot for the verdicts it still holds for this nickname (before leaving).
    FlushAcks,
    /// Probe the session with a ping (its answer arrives as any input).
    Ping,
    /// Replace the session with a fresh one, then report [`Input::SessionReset`].
    RenewSession,
    /// Measure the interval starting at `slot` and report [`Input::Measured`].
    Measure {
        /// The interval.
        slot: Timestamp,
    },
    /// Answer a request (an iq result or error, or a readout's `<fields/>` message).
    Answer(readout::Answer),
    /// Keep these readings, all the unacknowledged ones and oldest first, in place of what
    /// was kept before (only with [`MeterCoreConfig::save_outbox`]; see [`MeterCore::restore`]).
    /// It comes before the transmits that send a new reading: written ahead.
    SaveOutbox(Vec<(ReadingId, Reading)>),
}

crate::room::room_variants!(Input, Transmit);

/// Why a meter core gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MeterCoreError {
    /// Every nickname drawn was taken.
    #[error("no free nickname after {0} attempts")]
    NoFreeNick(usize),
    /// The room would link or reveal the house.
    #[error(transparent)]
    Privacy(#[from] PrivacyRefusal),
}

/// Nicknames drawn in a row before a meter gives up on a room where every one is taken.
pub const JOIN_ATTEMPTS: usize = 5;

/// A uniform draw from `[lo, hi)`, or `lo` for an empty range (config ranges may be points).
pub fn uniform(rng: &mut impl Rng, [lo, hi]: [f64; 2]) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// A fresh random nickname for the next join, or why to give up: [`JOIN_ATTEMPTS`] drawn in
/// a row were all taken. Both meters draw by this rule.
pub(crate) fn draw_nick(
    rng: &mut (impl Rng + CryptoRng),
    conflicts_in_row: usize,
) -> Result<RoomNick, MeterCoreError> {
    if conflicts_in_row >= JOIN_ATTEMPTS {
        return Err(MeterCoreError::NoFreeNick(JOIN_ATTEMPTS));
    }
    Ok(NickGenerator.generate(rng))
}

/// A uniform draw of a span from `[lo, hi)`, never negative.
pub(crate) fn uniform_millis(rng: &mut impl Rng, [lo, hi]: [Millis; 2]) -> Millis {
    let v = if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    };
    v.max(0)
}

/// The interval after `prev` (or after the current one) and a jittered send instant inside it.
///
/// Intervals that ended more than `catch_up` before `now` are skipped (every one that ended,
/// for 0); the others come due at once, so a meter back from a fault measures what it missed.
pub fn next_slot(
    now: Timestamp,
    interval: Millis,
    jitter: [f64; 2],
    rng: &mut impl Rng,
    prev: Option<Timestamp>,
    catch_up: Millis,
) -> (Timestamp, Timestamp) {
    let p = interval.max(1);
    let slot = prev.map_or(now.floor_to(p).plus(p), |s| s.plus(p));
    let oldest = if catch_up > 0 {
        now.plus(-catch_up).floor_to(p).plus(p)
    } else {
        now.floor_to(p)
    };
    jittered(slot.max(oldest), p, jitter, rng)
}

/// The slot with a send instant drawn inside it (never in its last 5 %).
fn jittered(
    slot: Timestamp,
    interval: Millis,
    jitter: [f64; 2],
    rng: &mut impl Rng,
) -> (Timestamp, Timestamp) {
    let offset = (uniform(rng, jitter).clamp(0.0, 0.95) * interval as f64) as Millis;
    (slot, slot.plus(offset))
}

/// In the room under `nick`, next reading due at `send_at` for the interval starting at `slot`.
#[derive(Clone, Debug)]
struct InRoom {
    nick: RoomNick,
    /// The next seqnr under this nickname (random start per nickname).
    seqnr: u64,
    slot: Timestamp,
    send_at: Timestamp,
    rotate_at: Timestamp,
}

/// What follows a drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterDrain {
    Rotate,
    Stop,
}

/// Where the meter is in its join / send / rotate cycle.
#[derive(Clone, Debug)]
enum Phase {
    /// A join under `nick` is pending.
    Joining { nick: RoomNick },
    /// In the room, sending.
    InRoom(InRoom),
    /// Still in the room under `nick`, waiting (until `until` at most) for outstanding
    /// answers before leaving.
    Draining {
        nick: RoomNick,
        until: Timestamp,
        then: AfterDrain,
    },
    /// Between nicknames; rejoin at `until`.
    Away { until: Timestamp },
    /// The session is being replaced; [`Input::SessionReset`] follows.
    Renewing,
    /// Finished, cleanly or not.
    Stopped(Result<(), MeterCoreError>),
}

/// Which once-per-run warnings a meter has given, so a log is not flooded.
#[derive(Debug, Default)]
struct Warned {
    impostor: bool,
    clock: bool,
    refused: bool,
    no_answer: bool,
}

/// The meter agent's rules, driven from outside (see the module docs).
#[derive(Debug)]
pub struct MeterCore<R> {
    cfg: MeterCoreConfig,
    /// A CSPRNG for nicknames, seqnr starts, reading ids and jitter: nothing predictable.
    rng: R,
    phase: Phase,
    outbox: Outbox,
    report: MeterReport,
    /// The latest time the driver told us.
    now: Timestamp,
    /// The last interval a reading was taken for, while a fault (not a rotation) interrupts us:
    /// after rejoining, the intervals missed meanwhile are still measured and queued.
    last_slot: Option<Timestamp>,
    /// After a fault, intervals before this were missed and are measured now; pacing never
    /// skips them (only congestion does).
    catch_up_until: Option<Timestamp>,
    /// Broadcast pacing: the reading the room has not echoed yet, and when to stop waiting.
    in_flight: Option<(ReadingId, Timestamp)>,
    /// Every reading sent is answered (receipt, echo or bounce): one that is not gets the
    /// session probed and, if it is dead, replaced.
    liveness: Liveness,
    /// XEP-0323 readout answers, from what was measured under the current nickname only.
    readout: Responder,
    /// Nicknames found taken in a row.
    conflicts_in_row: usize,
    warned: Warned,
    /// The outbox generation last handed out to be saved.
    saved: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MeterEvent>,
}

impl<R: Rng + CryptoRng> MeterCore<R> {
    /// A meter about to join: its first transmit is the [`Transmit::Join`] of a fresh nickname.
    pub fn new(cfg: MeterCoreConfig, mut rng: R, now: Timestamp) -> MeterCore<R> {
        let mut core = MeterCore {
            outbox: Outbox::new(cfg.outbox.clone()),
            liveness: Liveness::new(cfg.answer_timeout).with_spread(rng.random()),
            readout: Responder::new(cfg.readout, cfg.interval),
            cfg,
            rng,
            phase: Phase::Renewing,
            report: MeterReport::default(),
            now,
            last_slot: None,
            catch_up_until: None,
            in_flight: None,
            conflicts_in_row: 0,
            warned: Warned::default(),
            saved: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        core.join(now);
        core
    }

    /// Takes back the readings an earlier run saved unacknowledged (see
    /// [`Transmit::SaveOutbox`]), before this one joins: they go out first, as resends with
    /// their original ids and timestamps, so the bot counts each once even if that run had
    /// delivered it. Those too old for the bot are given up and counted as expired.
    pub fn restore(&mut self, readings: impl IntoIterator<Item = (ReadingId, Reading)>) {
        for (id, reading) in readings {
            self.outbox.restore(id, reading);
        }
    }

    /// The totals so far (final once [`MeterCore::outcome`] is `Some`).
    pub fn report(&self) -> MeterReport {
        MeterReport {
            unacknowledged: self.outbox.len() as u64,
            dropped: self.outbox.dropped(),
            expired: self.outbox.expired(),
            ..self.report.clone()
        }
    }

    /// Draws a fresh nickname and asks to join under it (or gives up after too many conflicts).
    fn join(&mut self, now: Timestamp) {
        match draw_nick(&mut self.rng, self.conflicts_in_row) {
            Ok(nick) => {
                self.transmits.push_back(Transmit::Join(nick.clone()));
                self.liveness.posted(now);
                self.phase = Phase::Joining { nick };
            }
            Err(e) => self.stop(Err(e)),
        }
    }

    fn on_joined(&mut self, now: Timestamp, me: &SelfPresence) {
        let Phase::Joining { nick } = &self.phase else {
            return;
        };
        let nick = nick.clone();
        if let Some(refusal) = me.refusal() {
            self.refuse(refusal);
            return;
        }
        tracing::debug!(%nick, "joined the room");
        self.conflicts_in_row = 0;
        // An echo for the previous nickname will not be recognised: stop waiting.
        self.in_flight = None;
        let p = self.cfg.interval.max(1);
        if self.last_slot.is_some() {
            self.catch_up_until = Some(now.floor_to(p));
        }
        self.report.nicks += 1;
        self.readout.reset();
        self.events.push_back(MeterEvent::Joined(nick.clone()));
        // A load test starts a whole neighbourhood together: no slot before `not_before`.
        let prev = match (self.last_slot, self.cfg.not_before) {
            (None, Some(t)) if t > now => Some(t.floor_to(p)),
            (prev, _) => prev,
        };
        // After a fault the missed intervals' readings are still taken and queued.
        let catch_up = self.cfg.outbox.max_age;
        let (slot, send_at) = next_slot(now, p, self.cfg.jitter, &mut self.rng, prev, catch_up);
        // Random start per nickname, kept small enough never to overflow.
        let seqnr = self.rng.random_range(0..u64::from(u32::MAX));
        let rotate_at = now.plus(uniform_millis(&mut self.rng, self.cfg.rotate));
        // Whatever the old nickname (or session) left unacknowledged goes out again now,
        // with its original timestamp and a seqnr of the new nickname.
        self.outbox.resend_all();
        self.phase = Phase::InRoom(InRoom {
            nick,
            seqnr,
            slot,
            send_at,
            rotate_at,
        });
    }

    fn on_removed(&mut self, now: Timestamp) {
        match &self.phase {
            Phase::InRoom(_) => {
                tracing::warn!("removed from the room; rejoining under a new nickname");
                self.join(now);
            }
            Phase::Draining { then, .. } => {
                let then = *then;
                self.after_leaving(now, then);
            }
            _ => {}
        }
    }

    fn on_reset(&mut self, now: Timestamp) {
        match &self.phase {
            Phase::InRoom(_) | Phase::Joining { .. } | Phase::Renewing => self.join(now),
            // The room has forgotten us: nothing left to leave.
            Phase::Draining { then, .. } => {
                let then = *then;
                self.after_leaving(now, then);
            }
            Phase::Away { .. } | Phase::Stopped(_) => {}
        }
    }

    fn on_shutdown(&mut self, now: Timestamp) {
        match &mut self.phase {
            Phase::InRoom(_) => self.drain(now, AfterDrain::Stop),
            Phase::Draining { then, .. } => *then = AfterDrain::Stop,
            Phase::Joining { nick } => {
                // The room may have taken the join already.
                self.transmits.push_back(Transmit::Leave(nick.clone()));
                self.stop(Ok(()));
            }
            Phase::Away { .. } | Phase::Renewing => self.stop(Ok(())),
            Phase::Stopped(_) => {}
        }
    }

    /// Direct: the bot is not in the room, so the reading stays queued and goes out again on
    /// its backoff schedule (resending at once would only bounce again). Broadcast: the room
    /// refused the reading in flight; the next one may go.
    fn on_bounce(&mut self, now: Timestamp, id: Option<ReadingId>, why: String) {
        if why == NOT_AN_OCCUPANT && matches!(self.phase, Phase::InRoom(_)) {
            // Left and rejoined as in a rotation (leave, random gap, fresh nickname), so even
            // a forged bounce for a nickname still in the room links nothing; the reading is
            // resent under the new one with everything else unacknowledged.
            self.report.bounced += 1;
            tracing::warn!(
                "the room no longer counts us as an occupant (restarted, or its node did); \
                 rejoining under a new nickname"
            );
            self.drain(now, AfterDrain::Rotate);
            return;
        }
        match self.cfg.mode {
            Mode::Direct => {
                self.report.bounced += 1;
                tracing::warn!(%why, "the room bounced a direct reading (is the bot in the room?)");
                self.events.push_back(MeterEvent::Bounced(why));
            }
            Mode::Broadcast => {
                if id.is_some() && self.in_flight.map(|(f, _)| f) == id {
                    tracing::warn!(%why, "the room refused a broadcast reading; it stays queued");
                    self.in_flight = None;
                }
            }
        }
    }

    /// Reading `id` was answered: forgotten if we still held it (an ack for an id we do not
    /// hold, a replayed one say, changes nothing), and the pacing window opens if it was the
    /// one in flight.
    fn on_verdict(&mut self, id: ReadingId, verdict: Verdict) {
        if self.outbox.acknowledge(id) {
            match verdict {
                Verdict::Accepted => self.report.acknowledged += 1,
                Verdict::Refused(reason) => {
                    *self.report.refused.entry(reason.clone()).or_default() += 1;
                    self.warn_refused(&reason);
                }
            }
        }
        if self.in_flight.is_some_and(|(f, _)| f == id) {
            self.in_flight = None;
        }
    }

    /// The send slot has come: measure, or skip the intervals congestion made us miss.
    fn tick(&mut self, now: Timestamp) {
        let Phase::InRoom(r) = &mut self.phase else {
            return;
        };
        let slot = r.slot;
        self.last_slot = Some(slot);
        // Only reached once the echo's deadline passed.
        if self.in_flight.take().is_some() {
            self.report.echo_timeouts += 1;
            tracing::warn!("the room did not echo a broadcast reading in time; sending on");
        }
        let p = self.cfg.interval.max(1);
        let behind = now.since(slot).div_euclid(p).max(0);
        let catching_up = self.catch_up_until.is_some_and(|t| slot < t);
        if behind > 0 && !catching_up {
            // Intervals that passed while the previous reading was in flight are skipped, not
            // queued: go on with the current one.
            self.report.paced += behind.unsigned_abs();
            (r.slot, r.send_at) =
                jittered(slot.plus(behind * p), p, self.cfg.jitter, &mut self.rng);
            return;
        }
        self.transmits.push_back(Transmit::Measure { slot });
        let catch_up = self.cfg.outbox.max_age;
        (r.slot, r.send_at) =
            next_slot(now, p, self.cfg.jitter, &mut self.rng, Some(slot), catch_up);
    }

    /// Stops sending and waits (bounded) for outstanding answers before leaving. A direct
    /// meter asks the bot for the verdicts it holds back for batching: left to arrive after
    /// the nickname has gone, they would be lost, and the readings resent under the next
    /// nickname would link the two.
    fn drain(&mut self, now: Timestamp, then: AfterDrain) {
        let Phase::InRoom(r) = &self.phase else {
            return;
        };
        if self.cfg.mode == Mode::Direct && !self.outbox.is_empty() {
            self.transmits.push_back(Transmit::FlushAcks);
        }
        self.phase = Phase::Draining {
            nick: r.nick.clone(),
            until: now.plus(self.cfg.drain),
            then,
        };
    }

    fn finish_drain(&mut self, now: Timestamp) {
        let Phase::Draining { nick, then, .. } = &self.phase else {
            return;
        };
        let (nick, then) = (nick.clone(), *then);
        tracing::debug!(%nick, "leaving the room");
        self.transmits.push_back(Transmit::Leave(nick.clone()));
        self.events.push_back(MeterEvent::Left(nick));
        self.after_leaving(now, then);
    }

    fn after_leaving(&mut self, now: Timestamp, then: AfterDrain) {
        match then {
            AfterDrain::Rotate => {
                // The new nickname starts afresh: catching up the gap would link it to the old one.
                self.last_slot = None;
                self.catch_up_until = None;
                let gap = uniform_millis(&mut self.rng, self.cfg.rejoin_gap);
                self.phase = Phase::Away {
                    until: now.plus(gap),
                };
            }
            AfterDrain::Stop => self.stop(Ok(())),
        }
    }

    /// Leaves a room that would link or reveal the house, for good.
    fn refuse(&mut self, why: PrivacyRefusal) {
        let nick = match &self.phase {
            Phase::Joining { nick } | Phase::Draining { nick, .. } => Some(nick.clone()),
            Phase::InRoom(r) => Some(r.nick.clone()),
            Phase::Away { .. } | Phase::Renewing => None,
            Phase::Stopped(_) => return,
        };
        tracing::error!(%why, "leaving the room for good");
        self.transmits.extend(nick.map(Transmit::Leave));
        self.stop(Err(why.into()));
    }

    fn stop(&mut self, outcome: Result<(), MeterCoreError>) {
        if !self.outbox.is_empty() {
            tracing::warn!(
                unacknowledged = self.outbox.len(),
                "stopping with readings the bot has not acknowledged"
            );
        }
        self.phase = Phase::Stopped(outcome);
    }

    /// After every input or timer: end a drain that has nothing left to wait for, and send
    /// what the outbox says is due.
    fn settle(&mut self, now: Timestamp) {
        if matches!(self.phase, Phase::Draining { .. }) && self.outbox.is_empty() {
            self.finish_drain(now);
        }
        self.flush(now);
    }

    /// Sends what the outbox says is due, each under the current nickname's seqnr for it.
    fn flush(&mut self, now: Timestamp) {
        let Phase::InRoom(r) = &mut self.phase else {
            return;
        };
        let (paced, to) = match self.cfg.mode {
            Mode::Direct => (false, Recipient::Bot),
            Mode::Broadcast => (self.cfg.pace_broadcast, Recipient::Room),
        };
        // Broadcast pacing: one reading in flight until the room echoes it (docs/flood.md).
        let window = match (paced, self.in_flight) {
            (false, _) => usize::MAX,
            (true, None) => 1,
            (true, Some(_)) => 0,
        };
        for out in self.outbox.due(now, window) {
            if paced {
                self.in_flight = Some((out.id, now.plus(self.cfg.answer_timeout)));
            }
            // A resend under the same nickname keeps its seqnr, so a peer deduplicating by
            // seqnr counts it once; a new nickname starts a new seqnr space.
            let seqnr = out.seqnr.unwrap_or_else(|| {
                let next = r.seqnr;
                r.seqnr += 1;
                self.outbox.assign_seqnr(out.id, next);
                next
            });
            let reading = Reading {
                seqnr,
                ..out.reading
            };
            if out.resend {
                self.report.resent += 1;
                if !std::mem::replace(&mut self.warned.no_answer, true) {
                    tracing::warn!(
                        "a reading got no answer in time; resending with backoff (is the bot in \
                         the room, and does it answer?)"
                    );
                }
            } else {
                self.report.sent += 1;
                self.events.push_back(MeterEvent::Sent {
                    nick: r.nick.clone(),
                    reading,
                    at: now,
                });
            }
            self.transmits.push_back(Transmit::Send {
                id: out.id,
                reading,
                to,
            });
            self.liveness.posted(now);
        }
    }

    fn warn_impostor(&mut self) {
        if !std::mem::replace(&mut self.warned.impostor, true) {
            tracing::warn!(
                "an answer or message from the bot's nickname is not signed by the pinned bot \
                 key: whoever holds that nickname is not the substation bot; readings stay \
                 queued (and sealed: it cannot read them)"
            );
        }
    }

    /// Logs a refusal clearly, and once says so if the reasons point at this meter's clock.
    fn warn_refused(&mut self, reason: &str) {
        let clock = matches!(reason, "late" | "future");
        if clock && !std::mem::replace(&mut self.warned.clock, true) {
            tracing::warn!(
                %reason,
                "the bot refused a reading as {reason}: if this keeps happening, this meter's \
                 clock is probably wrong (readings carry its local time); check NTP"
            );
        } else if !std::mem::replace(&mut self.warned.refused, true) {
            tracing::warn!(%reason, "the bot refused a reading; it is not counted (see the report)");
        } else {
            tracing::info!(%reason, "the bot refused a reading");
        }
    }
}

impl<R: Rng + CryptoRng> Agent for MeterCore<R> {
    type Input = Input;
    type Transmit = Transmit;
    type Event = MeterEvent;
    type Error = MeterCoreError;

    /// Takes in what happened at `now`.
    fn handle(&mut self, now: Timestamp, input: Input) {
        self.now = now;
        if !matches!(input, Input::Measured { .. } | Input::Shutdown) {
            self.liveness.heard(now);
        }
        match input {
            Input::Joined(me) => self.on_joined(now, &me),
            Input::NickConflict => {
                if matches!(self.phase, Phase::Joining { .. }) {
                    self.report.conflicts += 1;
                    self.conflicts_in_row += 1;
                    tracing::debug!("nickname taken; drawing another");
                    self.join(now);
                }
            }
            Input::Removed => self.on_removed(now),
            Input::RoomShowsJids => self.refuse(PrivacyRefusal::NonAnonymous),
            Input::SessionReset => self.on_reset(now),
            Input::Alive => {}
            Input::Echo(id) => self.on_verdict(id, Verdict::Accepted),
            Input::Verdicts(verdicts) => {
                self.report.acks += 1;
                for (id, verdict) in verdicts {
                    self.on_verdict(id, verdict);
                }
            }
            Input::Unverified(_) => {
                // Kept: the real bot has not seen it. Resent on the usual schedule.
                self.report.unverified += 1;
                self.warn_impostor();
            }
            Input::Bounce { id, why } => self.on_bounce(now, id, why),
            Input::Private {
                from,
                body,
                alert,
                verified,
            } => {
                if !verified {
                    self.report.unverified += 1;
                    self.warn_impostor();
                } else if let Some(to) = self.nick().cloned() {
                    tracing::debug!(%from, %body, "private message through the room");
                    self.events.push_back(MeterEvent::Private {
                        to,
                        from,
                        body,
                        alert,
                    });
                }
            }
            Input::Measured { slot, value } => {
                if let (Some(w), false) = (value, matches!(self.phase, Phase::Stopped(_))) {
                    let reading = Reading {
                        power: w.quantise(self.cfg.quantum_watts),
                        at: slot,
                        seqnr: 0,
                        quality: Quality::AUTOMATIC_READOUT,
                    };
                    self.outbox.push(ReadingId::random(&mut self.rng), reading);
                    let mut answers = Vec::new();
                    self.readout.measured(now, reading, &mut answers);
                    self.transmits
                        .extend(answers.into_iter().map(Transmit::Answer));
                }
            }
            Input::Shutdown => self.on_shutdown(now),
            Input::Request(req) => {
                let mut answers = Vec::new();
                let in_room = self.nick().is_some();
                self.readout.handle(now, in_room, req, &mut answers);
                self.transmits
                    .extend(answers.into_iter().map(Transmit::Answer));
            }
        }
        self.settle(now);
    }

    /// Lets timers that are due at `now` fire: send slots, rotation, rejoin, drain, liveness.
    fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        match &self.phase {
            Phase::Away { until } if now >= *until => self.join(now),
            Phase::Draining { until, .. } if now >= *until => self.finish_drain(now),
            Phase::InRoom(r) if now >= r.rotate_at => self.drain(now, AfterDrain::Rotate),
            Phase::InRoom(r)
                if now >= r.send_at && self.in_flight.is_none_or(|(_, d)| now >= d) =>
            {
                self.tick(now);
            }
            _ => {}
        }
        if matches!(self.phase, Phase::InRoom(_) | Phase::Joining { .. })
            && let Some(t) = self.liveness.act(now)
        {
            if t == RoomTransmit::RenewSession {
                self.phase = Phase::Renewing;
            }
            self.transmits.push_back(t.into());
        }
        self.settle(now);
    }

    /// The next thing to do, if any.
    fn poll_transmit(&mut self) -> Option<Transmit> {
        let generation = self.outbox.generation();
        if self.cfg.save_outbox && generation != self.saved {
            self.saved = generation;
            return Some(Transmit::SaveOutbox(self.outbox.unacknowledged().collect()));
        }
        self.transmits.pop_front()
    }

    /// The next event for the caller, if any.
    fn poll_event(&mut self) -> Option<MeterEvent> {
        self.events.pop_front()
    }

    /// When [`MeterCore::handle_timeout`] should be called next; `None` while only an input
    /// can move the meter on (a session being renewed, or a stopped meter).
    fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match &self.phase {
            Phase::Joining { .. } => None,
            Phase::InRoom(r) => {
                let next = match self.in_flight {
                    // Paced: the next slot also waits for the echo (or its deadline).
                    Some((_, deadline)) => deadline.max(r.send_at),
                    None => r.send_at,
                };
                let resend = self.outbox.next_resend_at(self.now);
                Some(resend.map_or(next, |t| t.min(next)).min(r.rotate_at))
            }
            Phase::Draining { until, .. } | Phase::Away { until } => return Some(*until),
            Phase::Renewing | Phase::Stopped(_) => return None,
        };
        match (own, self.liveness.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The nickname we are in the room under, if we are.
    fn nick(&self) -> Option<&RoomNick> {
        match &self.phase {
            Phase::InRoom(r) => Some(&r.nick),
            Phase::Draining { nick, .. } => Some(nick),
            _ => None,
        }
    }

    /// `Some` once the meter has finished: `Ok` after a shutdown, or why it gave up.
    fn outcome(&self) -> Option<Result<(), MeterCoreError>> {
        match &self.phase {
            Phase::Stopped(r) => Some(r.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const T0: Timestamp = Timestamp(1_795_996_800_000);

    #[test]
    fn next_slot_is_the_following_interval_with_the_send_time_inside_it() {
        let mut rng = StdRng::seed_from_u64(1);
        let now = T0.plus(12_345);
        for _ in 0..100 {
            let (slot, at) = next_slot(now, 60_000, [0.1, 0.6], &mut rng, None, 0);
            assert_eq!(slot, T0.plus(60_000));
            assert!(
                (slot.plus(6_000)..slot.plus(36_000)).contains(&at),
                "{at:?}"
            );
        }
        // A point range, and a range reaching past the interval's end (clamped to 95 %).
        let (_, at) = next_slot(now, 60_000, [0.2, 0.2], &mut rng, None, 0);
        assert_eq!(at, T0.plus(72_000));
        let (_, at) = next_slot(now, 60_000, [2.0, 3.0], &mut rng, None, 0);
        assert_eq!(at, T0.plus(117_000));
    }

    #[test]
    fn next_slot_catches_up_only_what_is_young_enough() {
        let mut rng = StdRng::seed_from_u64(2);
        let now = T0.plus(10 * 60_000 + 5);
        let prev = Some(T0);
        // Without catch-up, every interval that ended is skipped: the current one is next.
        assert_eq!(
            next_slot(now, 60_000, [0.0, 0.0], &mut rng, prev, 0).0,
            T0.plus(10 * 60_000)
        );
        // With 3 minutes of catch-up, the oldest interval still measured ended within them.
        assert_eq!(
            next_slot(now, 60_000, [0.0, 0.0], &mut rng, prev, 180_000).0,
            T0.plus(8 * 60_000)
        );
        // Within the window, simply the next one.
        let prev = Some(T0.plus(9 * 60_000));
        assert_eq!(
            next_slot(now, 60_000, [0.0, 0.0], &mut rng, prev, 180_000).0,
            T0.plus(10 * 60_000)
        );
    }

    #[test]
    fn no_reading_before_not_before() {
        let mut cfg = crate::harness::meter_config(Mode::Direct);
        let start = T0.plus(5 * 60_000 + 30_000);
        cfg.not_before = Some(start);
        let mut core = MeterCore::new(cfg, StdRng::seed_from_u64(3), T0);
        let Some(Transmit::Join(_)) = core.poll_transmit() else {
            panic!("a meter starts by joining");
        };
        core.handle(T0.plus(40), Input::Joined(SelfPresence::default()));
        // The first slot is the interval after the one holding `not_before`.
        let at = core.poll_timeout().expect("a send slot");
        assert!(at >= T0.plus(6 * 60_000), "{at:?}");
        core.handle_timeout(at);
        assert_eq!(
            core.poll_transmit(),
            Some(Transmit::Measure {
                slot: T0.plus(6 * 60_000)
            })
        );
    }

    #[test]
    fn the_report_names_the_intervals_the_source_skipped() {
        let report = MeterReport {
            sent: 7,
            source: SourceFaults {
                dead_intervals: 2,
                garbled_intervals: 1,
                garbled_frames: 5,
            },
            ..MeterReport::default()
        };
        let line = report.to_string();
        assert!(
            line.ends_with(
                "source faults: 2 dead and 1 garbled intervals skipped (5 garbled frames)"
            ),
            "{line}"
        );
    }

    #[test]
    fn events_move_to_another_clock() {
        let nick = RoomNick::new("amber-otter-1234").expect("valid");
        let reading = Reading {
            power: Watts(100),
            at: T0,
            seqnr: 7,
            quality: Quality::AUTOMATIC_READOUT,
        };
        let sent = MeterEvent::Sent {
            nick: nick.clone(),
            reading,
            at: T0,
        };
        assert_eq!(
            sent.map_at(|t| t.millis() + 1),
            MeterEvent::Sent {
                nick: nick.clone(),
                reading,
                at: T0.millis() + 1
            }
        );
        let left: MeterEvent<()> = MeterEvent::Left(nick.clone()).map_at(|_: Timestamp| ());
        assert_eq!(left, MeterEvent::Left(nick));
    }
}
