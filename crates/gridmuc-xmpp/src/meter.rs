//! The meter agent: one house, one account, a random nickname that rotates, one reading per interval.
//!
//! One task owns the [`Session`] and `select!`s over incoming events, the next send slot, the
//! rotation deadline and shutdown (tokio-xmpp's `split()` can stall under load).
//!
//! In broadcast mode a meter keeps at most one reading in flight: it sends the next only after
//! the room has echoed the previous one back to it, i.e. after the server has fanned it out to
//! every occupant and this session has drained everything queued before it. When the room is
//! slower than the interval the meter skips intervals (counted in [`MeterReport::paced`])
//! instead of piling readings into server queues that reach the bot too late (docs/flood.md).

use crate::connect::{self, ConnectConfig, ConnectError};
use crate::delivery::{self, Answer, Verdict};
use crate::liveness::Liveness;
use crate::muc::{self, JoinOutcome, MucError, PrivacyError, SessionEvent};
use crate::session::Session;
use crate::source::{Injection, Sample, Source, SourceConfig, SourceError};
use crate::{instant_at, now_ts};
use futures::StreamExt;
use gridmuc_botkey::BotPublicKey;
use gridmuc_core::codec;
use gridmuc_core::{
    Alert, Millis, NickGenerator, Outbox, OutboxConfig, Quality, Reading, ReadingId, RoomNick,
    Timestamp,
};
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::jid::BareJid;
use tokio_xmpp::{Event, Stanza};
use xmpp_parsers::message::{Message, MessageType};

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

/// A meter's settings; the TOML file of `gridmuc meter` maps onto it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// The house's account.
    pub account: ConnectConfig,
    /// Bare JID of the neighbourhood room.
    pub room: String,
    /// Broadcast or direct.
    #[serde(default)]
    pub mode: Mode,
    /// The substation bot's room nickname (direct mode's recipient).
    #[serde(default = "default_bot_nick")]
    pub bot_nick: String,
    /// The bot's public key as `gridmuc server` prints it (`gridmuc-bot-v1:…`): direct readings
    /// are sealed to it, and only verdicts and posts signed with it are believed.
    #[serde(default)]
    pub bot_key: Option<BotPublicKey>,
    /// Reporting interval; must equal the bot's interval so each nickname sends one reading per bucket.
    #[serde(default = "default_interval", with = "crate::connect::secs")]
    pub interval: Duration,
    /// Send time within the interval, as fractions `[min, max]` of it, drawn afresh each time.
    #[serde(default = "default_jitter")]
    pub jitter: [f64; 2],
    /// Nickname lifetime range `[min, max]` in seconds; rotation is leave + rejoin, never a nick change.
    #[serde(default = "default_rotate")]
    pub rotate: [f64; 2],
    /// Pause between leaving and rejoining, `[min, max]` seconds, so old and new nickname do not line up.
    #[serde(default = "default_rejoin_gap")]
    pub rejoin_gap: [f64; 2],
    /// Quantisation step (W) applied before sending.
    #[serde(default = "default_quantum")]
    pub quantum_watts: u32,
    /// Where readings come from.
    #[serde(default)]
    pub source: SourceConfig,
    /// Staged load changes (demo and tests).
    #[serde(default)]
    pub injections: Vec<Injection>,
    /// What is kept until the bot acknowledges it, and for how long.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// No reading before this wall-clock time, so a load test starts a whole neighbourhood together.
    #[serde(skip)]
    pub not_before: Option<std::time::SystemTime>,
    /// Broadcast pacing (one reading in flight until the room echoes it); off only to
    /// reproduce the unpaced flood in `gridmuc loadtest --unpaced`.
    #[serde(skip, default = "yes")]
    pub pace_broadcast: bool,
}

fn yes() -> bool {
    true
}

fn default_bot_nick() -> String {
    "substation".to_owned()
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_jitter() -> [f64; 2] {
    [0.1, 0.6]
}
fn default_rotate() -> [f64; 2] {
    [1800.0, 7200.0]
}
fn default_rejoin_gap() -> [f64; 2] {
    [5.0, 60.0]
}
fn default_quantum() -> u32 {
    10
}

impl MeterConfig {
    /// Defaults for everything but the account and room.
    pub fn new(account: ConnectConfig, room: &str) -> MeterConfig {
        MeterConfig {
            account,
            room: room.to_owned(),
            mode: Mode::default(),
            bot_nick: default_bot_nick(),
            bot_key: None,
            interval: default_interval(),
            jitter: default_jitter(),
            rotate: default_rotate(),
            rejoin_gap: default_rejoin_gap(),
            quantum_watts: default_quantum(),
            source: SourceConfig::default(),
            injections: Vec::new(),
            outbox: OutboxConfig::default(),
            not_before: None,
            pace_broadcast: true,
        }
    }
}

/// Things a meter tells its caller (demo view, tests); never includes its own JID.
#[derive(Clone, Debug)]
pub enum MeterEvent {
    /// Joined under a fresh nickname.
    Joined(RoomNick),
    /// A reading left for the server for the first time (resends are only counted).
    Sent {
        /// Nickname it was sent under.
        nick: RoomNick,
        /// What was sent.
        reading: Reading,
        /// When the stanza had been handed to the session (load tests measure latency from it).
        at: Instant,
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

/// Totals at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterReport {
    /// Distinct readings taken and handed to the server (each at least once).
    pub sent: u64,
    /// Repeat sends of unacknowledged readings (after a reconnect, or `resend_after`).
    pub resent: u64,
    /// Readings the bot (direct) or the room (broadcast) acknowledged.
    pub acknowledged: u64,
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
    /// Broadcast readings whose echo never came back within the account timeout.
    pub echo_timeouts: u64,
    /// Readings the bot refused (not counted; resending would not change that), by reason.
    pub refused: BTreeMap<String, u64>,
    /// Answers from the bot's nickname not signed by the pinned bot key (an impostor's).
    pub unverified: u64,
}

impl MeterReport {
    /// All refused readings, whatever the reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// Why a meter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// Could not log in.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Room trouble, including privacy refusals.
    #[error(transparent)]
    Muc(#[from] MucError),
    /// The reading source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The room is invalid.
    #[error("invalid room JID {0:?}: {1}")]
    BadRoom(String, String),
}

impl MeterError {
    /// True for refusals on privacy grounds, which callers must not retry.
    pub fn is_privacy_refusal(&self) -> bool {
        matches!(self, MeterError::Muc(MucError::Privacy(_)))
    }
}

/// Longest wait for outstanding acknowledgements when stopping.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

impl std::fmt::Display for MeterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "readings sent: {} (acknowledged {}, refused {}{}, resent {}, unacknowledged at stop {}, \
             dropped {}, expired {}), bounced: {}, unverified answers: {}, nicknames used: {}, \
             nickname conflicts: {}",
            self.sent,
            self.acknowledged,
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
            self.conflicts
        )
    }
}

/// A uniform draw from `[lo, hi)`, or `lo` for an empty range (config ranges may be points).
pub(crate) fn uniform(rng: &mut impl Rng, [lo, hi]: [f64; 2]) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Seconds as a duration, negative and non-finite values as zero.
pub(crate) fn secs(x: f64) -> Duration {
    Duration::try_from_secs_f64(x.max(0.0)).unwrap_or(Duration::ZERO)
}

/// What ended a wait in the main loop.
enum Wake {
    /// The session delivered something (or ended); boxed, events are large.
    Event(Box<Option<Event>>),
    /// A send slot, rotation or rejoin is due, or the session owes us an answer.
    Timer,
}

/// Where the agent is in its join/send/rotate cycle.
enum State {
    /// In the room under `nick`, next reading due at `send_at` for the interval starting at `slot`.
    Joined {
        nick: RoomNick,
        seqnr: u64,
        slot: Timestamp,
        send_at: Instant,
        rotate_at: Instant,
    },
    /// Between nicknames; rejoin at the instant.
    Away(Instant),
}

struct Meter {
    cfg: MeterConfig,
    room: BareJid,
    bot: tokio_xmpp::jid::FullJid,
    events: Option<mpsc::UnboundedSender<MeterEvent>>,
    report: MeterReport,
    started: Instant,
    source: Source,
    outbox: Outbox,
    /// The last interval a reading was taken for, while a fault (not a rotation) interrupts us:
    /// after rejoining, the intervals missed meanwhile are still measured and queued.
    last_slot: Option<Timestamp>,
    /// Broadcast pacing: the reading the room has not echoed yet, and when to stop waiting.
    in_flight: Option<(ReadingId, Instant)>,
    /// After a fault, intervals before this were missed and are measured now; pacing never
    /// skips them (only congestion does).
    catch_up_until: Option<Timestamp>,
    /// Every reading sent is answered (receipt, echo or bounce): one that is not gets the
    /// session probed and, if it is dead, replaced. Silence alone is fine: a meter waiting
    /// for its slot owes nothing.
    liveness: Liveness,
    /// Warnings given once per run (impostor, clock), so a log is not flooded.
    warned: Warned,
}

/// Which once-per-run warnings a meter has given.
#[derive(Default)]
struct Warned {
    impostor: bool,
    clock: bool,
    refused: bool,
    no_answer: bool,
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

/// Runs one meter until `shutdown` resolves, the source ends, or a fatal error (privacy refusals included).
pub async fn run_meter(
    cfg: MeterConfig,
    events: Option<mpsc::UnboundedSender<MeterEvent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<MeterReport, MeterError> {
    let room = BareJid::new(&cfg.room)
        .map_err(|e| MeterError::BadRoom(cfg.room.clone(), e.to_string()))?;
    let bot_nick = RoomNick::new(cfg.bot_nick.as_str())
        .map_err(|e| MeterError::BadRoom(cfg.room.clone(), format!("bot nickname: {e}")))?;
    let bot = muc::occupant(&room, &bot_nick)?;
    // The OS CSPRNG for nicknames, seqnr starts, jitter and the model alike: nothing predictable.
    let mut rng = OsRng.unwrap_err();
    let source = Source::open(&cfg.source, &mut rng)?;
    let cfg_outbox = cfg.outbox.clone();
    let mut client = connect::connect(&cfg.account).await?;
    let mut meter = Meter {
        cfg,
        room,
        bot,
        events,
        report: MeterReport::default(),
        started: Instant::now(),
        source,
        outbox: Outbox::new(cfg_outbox),
        last_slot: None,
        in_flight: None,
        catch_up_until: None,
        liveness: Liveness::answers_only(),
        warned: Warned::default(),
    };
    if meter.cfg.bot_key.is_none() && meter.cfg.mode == Mode::Direct {
        tracing::warn!(
            "no bot_key pinned: readings go unsealed and any occupant holding the bot's \
             nickname can take them and acknowledge them"
        );
    }
    let result = meter.run(&mut client, &mut rng, shutdown).await;
    connect::close(client).await;
    let outbox = &meter.outbox;
    meter.report.unacknowledged = outbox.len() as u64;
    meter.report.dropped = outbox.dropped();
    meter.report.expired = outbox.expired();
    if !outbox.is_empty() {
        tracing::warn!(
            unacknowledged = outbox.len(),
            "stopping with readings the bot has not acknowledged"
        );
    }
    result.map(|()| meter.report)
}

impl Meter {
    fn emit(&self, e: MeterEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    async fn run<R: Rng + rand::CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MeterError> {
        preflight(client, &self.room, &self.cfg.account).await?;
        let mut state = self.join(client, rng).await?;
        tokio::pin!(shutdown);
        loop {
            let own = match (&state, &self.in_flight) {
                // Paced: the next send waits for the echo (or its deadline).
                (State::Joined { rotate_at, .. }, Some((_, deadline))) => {
                    (*deadline).min(*rotate_at)
                }
                (
                    State::Joined {
                        send_at, rotate_at, ..
                    },
                    None,
                ) => (*send_at).min(*rotate_at),
                (State::Away(at), _) => *at,
            };
            // Only a session we are in a room with owes us anything.
            let probe = match state {
                State::Joined { .. } => self.liveness.deadline(),
                State::Away(_) => own,
            };
            let woke = tokio::select! {
                () = &mut shutdown => break,
                event = client.next() => Wake::Event(Box::new(event)),
                () = tokio::time::sleep_until(own.min(probe)) => Wake::Timer,
            };
            let next = match woke {
                Wake::Event(event) => {
                    self.liveness.heard();
                    self.on_event(client, rng, *event, state).await
                }
                Wake::Timer if Instant::now() < own => self.probe(client, rng, state).await,
                Wake::Timer => self.tick(client, rng, state).await,
            };
            state = match next {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(()),
                Err(MeterError::Muc(MucError::Stalled(_))) => {
                    tracing::warn!(
                        "session stalled; replacing it and rejoining under a new nickname"
                    );
                    connect::renew(client, &self.cfg.account).await?;
                    self.join(client, rng).await?
                }
                Err(e) => return Err(e),
            };
        }
        if let State::Joined { nick, .. } = &state {
            self.drain(client, nick).await;
            self.leave(client, nick).await?;
        }
        Ok(())
    }

    /// Pings a session that owes an answer; rejoins (resending everything unacknowledged)
    /// on the fresh session if a ping already went unanswered.
    async fn probe<R: Rng + rand::CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        state: State,
    ) -> Result<Option<State>, MeterError> {
        if self.liveness.check(client, &self.cfg.account).await? {
            return Ok(Some(self.join(client, rng).await?));
        }
        Ok(Some(state))
    }

    /// On shutdown, waits briefly for acknowledgements still in flight, so a clean stop
    /// does not report the last reading as unacknowledged.
    async fn drain(&mut self, client: &mut Session, nick: &RoomNick) {
        let deadline = Instant::now() + SHUTDOWN_DRAIN.min(self.cfg.account.timeout);
        while !self.outbox.is_empty() {
            match tokio::time::timeout_at(deadline, client.next()).await {
                Ok(Some(Event::Stanza(s))) => {
                    self.handle_stanza(s, Some(nick));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Reacts to what the session delivered; `None` never happens here (only the source ends a run).
    async fn on_event<R: Rng + rand::CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        event: Option<Event>,
        state: State,
    ) -> Result<Option<State>, MeterError> {
        match muc::session_event(event)? {
            SessionEvent::Restarted => Ok(Some(self.join(client, rng).await?)),
            SessionEvent::Resumed => Ok(Some(state)),
            SessionEvent::Stanza(s) => {
                let me = match &state {
                    State::Joined { nick, .. } => Some(nick),
                    State::Away(_) => None,
                };
                let paced = self.in_flight.is_some();
                if self.handle_stanza(s, me) {
                    tracing::warn!("removed from the room; rejoining under a new nickname");
                    return Ok(Some(self.join(client, rng).await?));
                }
                // The echo freed the pacing window, or an answer freed a place among the readings
                // in flight: a queued reading (after a fault) goes out now.
                let mut state = state;
                let freed = (paced && self.in_flight.is_none())
                    || (!paced && self.outbox.has_waiting(now_ts()));
                if freed && let State::Joined { nick, seqnr, .. } = &mut state {
                    let nick = nick.clone();
                    self.flush(client, &nick, seqnr).await?;
                }
                Ok(Some(state))
            }
        }
    }

    async fn leave(&self, client: &mut Session, nick: &RoomNick) -> Result<(), MeterError> {
        muc::leave(client, &self.room, nick, self.cfg.account.timeout).await?;
        tracing::debug!(%nick, "left the room");
        self.emit(MeterEvent::Left(nick.clone()));
        Ok(())
    }

    /// Joins under a fresh CSPRNG nickname, retrying on 409, and checks what the room says about us.
    async fn join<R: Rng + rand::CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
    ) -> Result<State, MeterError> {
        let nick = join_fresh(
            client,
            &self.room,
            &self.cfg.account,
            rng,
            &mut self.report.conflicts,
        )
        .await?;
        // An echo for the previous nickname will not be recognised: stop waiting.
        self.in_flight = None;
        // The room answered our join: whatever the old session owed us is moot.
        self.liveness.heard();
        if self.last_slot.is_some() {
            let p = interval_ms(self.cfg.interval);
            self.catch_up_until = Some(now_ts().floor_to(p));
        }
        self.report.nicks += 1;
        self.emit(MeterEvent::Joined(nick.clone()));
        let (slot, send_at) = self.next_slot(rng, self.last_slot);
        // Random start per nickname, kept small enough never to overflow.
        let mut seqnr = rng.random_range(0..u64::from(u32::MAX));
        // Whatever the old nickname (or session) left unacknowledged goes out again now,
        // with its original timestamp.
        self.outbox.resend_all();
        self.flush(client, &nick, &mut seqnr).await?;
        Ok(State::Joined {
            nick,
            seqnr,
            slot,
            send_at,
            rotate_at: Instant::now() + secs(uniform(rng, self.cfg.rotate)),
        })
    }

    /// The interval after `prev` (or after the current one) and a jittered send instant inside it.
    fn next_slot(&self, rng: &mut impl Rng, prev: Option<Timestamp>) -> (Timestamp, Instant) {
        let p = interval_ms(self.cfg.interval);
        // A load test starts a whole neighbourhood together: no slot before `not_before`.
        let prev = match (prev, self.cfg.not_before) {
            (None, Some(t)) => {
                let ms = t
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let start = Timestamp(i64::try_from(ms).unwrap_or(i64::MAX));
                (start > now_ts()).then(|| start.floor_to(p))
            }
            (prev, _) => prev,
        };
        // After a fault the missed intervals' readings are still taken and queued.
        let catch_up = self.cfg.outbox.max_age;
        next_slot(self.cfg.interval, self.cfg.jitter, rng, prev, catch_up)
    }

    /// Sends the due reading or rotates; `None` when the source is exhausted.
    async fn tick<R: Rng + rand::CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        state: State,
    ) -> Result<Option<State>, MeterError> {
        match state {
            State::Away(_) => Ok(Some(self.join(client, rng).await?)),
            State::Joined {
                nick, rotate_at, ..
            } if Instant::now() >= rotate_at => {
                self.drain(client, &nick).await;
                self.leave(client, &nick).await?;
                // The new nickname starts afresh: catching up the gap would link it to the old one.
                self.last_slot = None;
                Ok(Some(State::Away(
                    Instant::now() + secs(uniform(rng, self.cfg.rejoin_gap)),
                )))
            }
            State::Joined {
                nick,
                seqnr,
                slot,
                send_at,
                rotate_at,
            } => {
                self.last_slot = Some(slot);
                // Woken early: the echo of the reading in flight has not come back yet.
                let waiting = self.in_flight.is_some_and(|(_, d)| Instant::now() < d);
                if !waiting && self.in_flight.take().is_some() {
                    self.report.echo_timeouts += 1;
                    tracing::warn!("the room did not echo a broadcast reading in time; sending on");
                }
                let p = interval_ms(self.cfg.interval);
                let behind = now_ts().since(slot) / p;
                let catching_up = self.catch_up_until.is_some_and(|t| slot < t);
                // A window that passed while the previous reading was in flight is skipped, not
                // queued; one a fault made us miss is still measured.
                let skip = !waiting && behind > 0 && !catching_up;
                if waiting || skip {
                    let (slot, send_at) = if skip {
                        self.report.paced += behind.unsigned_abs();
                        self.next_slot(rng, Some(slot))
                    } else {
                        (slot, send_at)
                    };
                    return Ok(Some(State::Joined {
                        nick,
                        seqnr,
                        slot,
                        send_at,
                        rotate_at,
                    }));
                }
                let value = match self.source.sample(slot, rng) {
                    Sample::Finished => {
                        self.leave(client, &nick).await?;
                        return Ok(None);
                    }
                    Sample::Skip => None,
                    Sample::Value(w) => Some(w),
                };
                let mut seqnr = seqnr;
                if let Some(w) = value {
                    let reading = Reading {
                        power: (w + self.injected()).quantise(self.cfg.quantum_watts),
                        at: slot,
                        seqnr: 0,
                        quality: Quality::AUTOMATIC_READOUT,
                    };
                    self.outbox.push(ReadingId::random(rng), reading);
                }
                self.flush(client, &nick, &mut seqnr).await?;
                let (slot, send_at) = self.next_slot(rng, Some(slot));
                Ok(Some(State::Joined {
                    nick,
                    seqnr,
                    slot,
                    send_at,
                    rotate_at,
                }))
            }
        }
    }

    /// Sends what the outbox says is due, each under the current nickname's next seqnr.
    ///
    /// A failed send leaves the reading in the outbox, so a stall loses nothing.
    async fn flush(
        &mut self,
        client: &mut Session,
        nick: &RoomNick,
        seqnr: &mut u64,
    ) -> Result<(), MeterError> {
        // Broadcast pacing: one reading in flight until the room echoes it (docs/flood.md).
        let paced = self.cfg.mode == Mode::Broadcast && self.cfg.pace_broadcast;
        let window = match (paced, self.in_flight) {
            (false, _) => usize::MAX,
            (true, None) => 1,
            (true, Some(_)) => 0,
        };
        for out in self.outbox.due(now_ts(), window) {
            if paced {
                self.in_flight = Some((out.id, Instant::now() + self.cfg.account.timeout));
            }
            // A resend under the same nickname keeps its seqnr, so a peer deduplicating by
            // seqnr counts it once; a new nickname starts a new seqnr space.
            let seqnr = out.seqnr.unwrap_or_else(|| {
                let next = *seqnr;
                *seqnr += 1;
                self.outbox.assign_seqnr(out.id, next);
                next
            });
            let reading = Reading {
                seqnr,
                ..out.reading
            };
            let stanza = self.message(out.id, &reading).into();
            // Counted before the send: a stalled send keeps the reading in the outbox for the
            // next session, where it goes out as a resend.
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
                self.emit(MeterEvent::Sent {
                    nick: nick.clone(),
                    reading,
                    at: Instant::now(),
                });
            }
            muc::send(client, stanza, self.cfg.account.timeout).await?;
            self.liveness.posted(self.cfg.account.timeout);
        }
        Ok(())
    }

    fn injected(&self) -> gridmuc_core::Watts {
        Injection::total_at(&self.cfg.injections, self.started.elapsed())
    }

    /// The reading stanza: a human body plus the XEP-0323 payload, and nothing about the house.
    ///
    /// The id is the random [`ReadingId`]; a direct reading asks the bot for an XEP-0184
    /// receipt, a broadcast one is acknowledged by the room's reflection of it.
    fn message(&self, id: ReadingId, reading: &Reading) -> Message {
        match (self.cfg.mode, &self.cfg.bot_key) {
            (Mode::Direct, Some(key)) => {
                let to = self.bot.clone().into();
                delivery::sealed_reading_message(to, id, reading, key, &mut rand::rng())
            }
            (Mode::Direct, None) => {
                let to = self.bot.clone().into();
                delivery::reading_message(to, MessageType::Chat, id, reading)
            }
            (Mode::Broadcast, _) => {
                let to = self.room.clone().into();
                delivery::reading_message(to, MessageType::Groupchat, id, reading)
            }
        }
    }

    /// What a message says about one of our readings: the bot's verdict (direct) or the room's
    /// reflection of our own groupchat reading (broadcast), which may arrive for an earlier
    /// nickname.
    fn acknowledgement(&self, m: &Message) -> Option<Answer> {
        let from = m.from.as_ref()?;
        match m.type_ {
            MessageType::Groupchat if self.cfg.mode == Mode::Broadcast => {
                let ours = muc::nick_in_room(Some(from), &self.room).is_some()
                    && codec::find_fields(&m.payloads).is_some();
                let id = ours.then(|| delivery::reading_id(m))??;
                Some(Answer::Verdict(id, Verdict::Accepted))
            }
            MessageType::Groupchat => None,
            _ => delivery::answer_from(m, &self.bot, self.cfg.bot_key.as_ref()),
        }
    }

    /// Acts on the bot's word about reading `id`.
    fn on_answer(&mut self, answer: Answer) {
        let id = match answer {
            Answer::Verdict(id, Verdict::Accepted) => {
                if self.outbox.acknowledge(id) {
                    self.report.acknowledged += 1;
                }
                id
            }
            Answer::Verdict(id, Verdict::Refused(reason)) => {
                if self.outbox.acknowledge(id) {
                    *self.report.refused.entry(reason.clone()).or_default() += 1;
                    self.warn_refused(&reason);
                }
                id
            }
            Answer::Unverified(_) => {
                // Kept: the real bot has not seen it. Resent on the usual schedule.
                self.report.unverified += 1;
                if !std::mem::replace(&mut self.warned.impostor, true) {
                    tracing::warn!(
                        bot_nick = %self.cfg.bot_nick,
                        "an answer from the bot's nickname is not signed by the pinned bot key: \
                         whoever holds that nickname is not the substation bot; readings stay \
                         queued (and sealed: it cannot read them)"
                    );
                }
                return;
            }
        };
        if self.in_flight.is_some_and(|(f, _)| f == id) {
            self.in_flight = None;
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

    /// Handles an incoming stanza; true if it says we were removed from the room.
    fn handle_stanza(&mut self, stanza: Stanza, me: Option<&RoomNick>) -> bool {
        if let Stanza::Message(m) = &stanza
            && let Some(answer) = self.acknowledgement(m)
        {
            self.on_answer(answer);
            return false;
        }
        if let Stanza::Message(m) = &stanza
            && m.type_ == MessageType::Error
            && let Some(id) = delivery::reading_id(m)
            && self.in_flight.is_some_and(|(f, _)| f == id)
        {
            tracing::warn!("the room refused a broadcast reading; it stays queued");
            self.outbox.retry(id);
            self.in_flight = None;
        }
        let Some(me) = me else {
            return false;
        };
        match stanza {
            Stanza::Message(m) if m.type_ == MessageType::Error => {
                if m.from.as_ref().is_some_and(|f| *f == self.bot) {
                    self.report.bounced += 1;
                    if let Some(id) = delivery::reading_id(&m) {
                        // Kept, and sent again at the next slot or rejoin.
                        self.outbox.retry(id);
                    }
                    let why = m
                        .payloads
                        .iter()
                        .find(|e| e.name() == "error")
                        .and_then(|e| e.children().next().map(|c| c.name().to_owned()))
                        .unwrap_or_default();
                    tracing::warn!(%why, "the room bounced a direct reading (is the bot in the room?)");
                    self.emit(MeterEvent::Bounced(why));
                }
                false
            }
            Stanza::Message(m) if m.type_ == MessageType::Chat => {
                if let Some(from) = muc::nick_in_room(m.from.as_ref(), &self.room) {
                    let heard = crate::listen::heard(&m);
                    let from_bot = m.from.as_ref().is_some_and(|f| *f == self.bot);
                    if let (true, Some(key)) = (from_bot, &self.cfg.bot_key)
                        && !delivery::post_signed_by(&m, &heard.body, key)
                    {
                        self.report.unverified += 1;
                        tracing::warn!(
                            "ignored a message from the bot's nickname that the pinned bot key did not sign"
                        );
                        return false;
                    }
                    tracing::debug!(%from, body = %heard.body, "private message through the room");
                    self.emit(MeterEvent::Private {
                        to: me.clone(),
                        from,
                        body: heard.body,
                        alert: heard.alert,
                    });
                }
                false
            }
            Stanza::Presence(p) => {
                muc::nick_in_room(p.from.as_ref(), &self.room).as_ref() == Some(me)
                    && muc::removed(&p)
            }
            _ => false,
        }
    }
}

/// Checks the room's privacy settings (disco#info), retrying a silent room on fresh sessions.
pub(crate) async fn preflight(
    client: &mut Session,
    room: &BareJid,
    account: &ConnectConfig,
) -> Result<(), MeterError> {
    let mut retries = 0;
    while let Err(e) = muc::preflight(client, room, muc::answer_bound(account)).await {
        if !matches!(e, MucError::Timeout(..)) || retries == muc::FRESH_RETRIES {
            return Err(e.into());
        }
        retries += 1;
        tracing::warn!("no answer from the room; retrying on a fresh session");
        connect::renew(client, account).await?;
    }
    Ok(())
}

/// Joins under a fresh CSPRNG nickname, retrying on 409 (counted in `conflicts`), and leaves
/// again with a privacy refusal if our own presence shows real JIDs, occupant-id or a new room.
pub(crate) async fn join_fresh<R: Rng + rand::CryptoRng>(
    client: &mut Session,
    room: &BareJid,
    account: &ConnectConfig,
    rng: &mut R,
    conflicts: &mut u64,
) -> Result<RoomNick, MeterError> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let nick = NickGenerator.generate(rng);
        let answer = muc::answer_bound(account);
        let outcome = match muc::join(client, room, &nick, answer, drop).await {
            Err(MucError::Timeout(..)) => {
                tracing::warn!("no answer to the join; retrying on a fresh session");
                connect::renew(client, account).await?;
                continue;
            }
            other => other?,
        };
        match outcome {
            JoinOutcome::Conflict => {
                *conflicts += 1;
                tracing::debug!(%nick, "nickname taken; drawing another");
            }
            JoinOutcome::Joined(me) => {
                let name = room.to_string();
                if me.non_anonymous || me.occupant_id || me.created {
                    muc::leave(client, room, &nick, account.timeout).await?;
                    return Err(MucError::from(if me.occupant_id {
                        PrivacyError::OccupantId(name)
                    } else if me.created {
                        PrivacyError::NoSuchRoom(name)
                    } else {
                        PrivacyError::NonAnonymous(name)
                    })
                    .into());
                }
                tracing::debug!(%nick, "joined the room");
                return Ok(nick);
            }
        }
    }
    Err(MucError::NoFreeNick(ATTEMPTS).into())
}

/// The interval after `prev` (or after the current one) and a jittered send instant inside it.
pub(crate) fn next_slot(
    interval: Duration,
    jitter: [f64; 2],
    rng: &mut impl Rng,
    prev: Option<Timestamp>,
    catch_up: Millis,
) -> (Timestamp, Instant) {
    let p = interval_ms(interval);
    let now = now_ts();
    let slot = prev.map_or(now.floor_to(p).plus(p), |s| s.plus(p));
    // After a stall, intervals that ended more than `catch_up` ago are skipped (all that ended,
    // for 0); the others are due at once.
    let oldest = if catch_up > 0 {
        now.plus(-catch_up).floor_to(p).plus(p)
    } else {
        now.floor_to(p)
    };
    let slot = slot.max(oldest);
    let offset = (uniform(rng, jitter).clamp(0.0, 0.95) * p as f64) as i64;
    (slot, instant_at(slot.plus(offset)))
}

/// The interval in whole milliseconds, at least one.
pub(crate) fn interval_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
