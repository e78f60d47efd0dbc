//! The meter agent's driver: one house, one account, one session around a [`MeterCore`].
//!
//! Every rule of the meter (send slots, rotation, outbox and resends, broadcast pacing,
//! liveness, drain) lives in `gridmuc_agent::meter` and is tested there in an in-memory room.
//! This module only does the I/O: one task owns the [`Session`] and `select!`s over incoming
//! events, the core's next timeout and shutdown (tokio-xmpp's `split()` can stall under load);
//! stanzas become [`Input`]s, the core's [`Transmit`]s become stanzas, and the reading source
//! answers [`Transmit::Measure`].

use crate::connect::{self, ConnectConfig, ConnectError};
use crate::delivery::{self, Answer, Verdict};
use crate::muc::{self, JoinOutcome, MucError, PrivacyError, SessionEvent};
use crate::session::Session;
use crate::source::{Injection, Sample, Source, SourceConfig, SourceError};
use crate::{instant_at, millis, now_ts};
use futures::StreamExt;
use gridmuc_agent::meter::{
    self as agent, Input, JOIN_ATTEMPTS, MeterCore, MeterCoreConfig, MeterCoreError, Recipient,
    Transmit,
};
use gridmuc_botkey::BotPublicKey;
use gridmuc_core::codec;
use gridmuc_core::{Millis, NickGenerator, ReadingId, RoomNick, Timestamp};
use rand::rand_core::UnwrapErr;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use std::future::Future;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, FullJid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::Presence;

pub(crate) use gridmuc_agent::meter::uniform;
pub use gridmuc_agent::meter::{MeterReport, Mode};

/// What a meter tells its caller (demo view, tests); never includes its own JID. `Sent.at` is
/// when the driver handed the reading to the session (load tests measure latency from it).
pub type MeterEvent = agent::MeterEvent<Instant>;

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
    pub outbox: gridmuc_core::OutboxConfig,
    /// No reading before this wall-clock time, so a load test starts a whole neighbourhood together.
    #[serde(skip)]
    pub not_before: Option<SystemTime>,
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
            outbox: gridmuc_core::OutboxConfig::default(),
            not_before: None,
            pace_broadcast: true,
        }
    }

    /// The core's rules in milliseconds.
    fn core(&self) -> MeterCoreConfig {
        let range = |[lo, hi]: [f64; 2]| [millis(secs(lo)), millis(secs(hi))];
        MeterCoreConfig {
            mode: self.mode,
            pace_broadcast: self.pace_broadcast,
            interval: interval_ms(self.interval),
            jitter: self.jitter,
            rotate: range(self.rotate),
            rejoin_gap: range(self.rejoin_gap),
            quantum_watts: self.quantum_watts,
            outbox: self.outbox.clone(),
            not_before: self.not_before.map(timestamp_of),
            answer_timeout: millis(self.account.timeout),
            drain: millis(SHUTDOWN_DRAIN.min(self.account.timeout)),
        }
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

impl From<MeterCoreError> for MeterError {
    fn from(e: MeterCoreError) -> MeterError {
        match e {
            MeterCoreError::NoFreeNick(n) => MeterError::Muc(MucError::NoFreeNick(n)),
        }
    }
}

/// Longest wait for outstanding acknowledgements when stopping or rotating.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Seconds as a duration, negative and non-finite values as zero.
pub(crate) fn secs(x: f64) -> Duration {
    Duration::try_from_secs_f64(x.max(0.0)).unwrap_or(Duration::ZERO)
}

/// The interval in whole milliseconds, at least one.
pub(crate) fn interval_ms(d: Duration) -> Millis {
    millis(d).max(1)
}

/// A wall-clock time as the core's [`Timestamp`] (the epoch for times before it).
fn timestamp_of(t: SystemTime) -> Timestamp {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp(millis(since))
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
    let (slot, send_at) = agent::next_slot(now_ts(), p, jitter, rng, prev, catch_up);
    (slot, instant_at(send_at))
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
    let mut client = connect::connect(&cfg.account).await?;
    if cfg.bot_key.is_none() && cfg.mode == Mode::Direct {
        tracing::warn!(
            "no bot_key pinned: readings go unsealed and any occupant holding the bot's \
             nickname can take them and acknowledge them"
        );
    }
    let mut driver = Driver {
        core: MeterCore::new(cfg.core(), OsRng.unwrap_err(), now_ts()),
        cfg,
        room,
        bot,
        events,
        source,
        rng,
        started: Instant::now(),
    };
    let result = driver.run(&mut client, shutdown).await;
    connect::close(client).await;
    result.map(|()| driver.core.report())
}

/// The I/O half of one meter.
struct Driver {
    cfg: MeterConfig,
    core: MeterCore<UnwrapErr<OsRng>>,
    room: BareJid,
    bot: FullJid,
    events: Option<mpsc::UnboundedSender<MeterEvent>>,
    source: Source,
    /// For the household model and sealing.
    rng: UnwrapErr<OsRng>,
    /// Injections are timed from here.
    started: Instant,
}

impl Driver {
    async fn run(
        &mut self,
        client: &mut Session,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MeterError> {
        preflight(client, &self.room, &self.cfg.account).await?;
        tokio::pin!(shutdown);
        let mut stopping = false;
        loop {
            self.pump(client).await?;
            if let Some(outcome) = self.core.outcome() {
                return outcome.map_err(MeterError::from);
            }
            let wake = self
                .core
                .poll_timeout()
                .map_or_else(|| Instant::now() + Duration::from_secs(3600), instant_at);
            tokio::select! {
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    self.core.handle(now_ts(), Input::Shutdown);
                }
                event = client.next() => match muc::session_event(event)? {
                    SessionEvent::Restarted => self.core.handle(now_ts(), Input::SessionReset),
                    SessionEvent::Resumed => self.core.handle(now_ts(), Input::Alive),
                    SessionEvent::Stanza(s) => self.on_stanza(s),
                },
                () = tokio::time::sleep_until(wake) => self.core.handle_timeout(now_ts()),
            }
        }
    }

    /// Carries out everything the core asks for, passing its events on as they come.
    async fn pump(&mut self, client: &mut Session) -> Result<(), MeterError> {
        loop {
            let at = Instant::now();
            while let Some(e) = self.core.poll_event() {
                if let Some(tx) = &self.events {
                    let _ = tx.send(e.map_at(|_| at));
                }
            }
            let Some(t) = self.core.poll_transmit() else {
                return Ok(());
            };
            self.transmit(client, t).await?;
        }
    }

    async fn transmit(&mut self, client: &mut Session, t: Transmit) -> Result<(), MeterError> {
        let bound = self.cfg.account.timeout;
        let sent = match t {
            Transmit::Join(nick) => return self.join(client, nick).await,
            Transmit::Leave(nick) => {
                tracing::debug!(%nick, "leaving the room");
                match muc::leave(client, &self.room, &nick, bound).await {
                    // Nothing left to replace a session for.
                    Err(MucError::Stalled(_)) if self.core.outcome().is_some() => Ok(()),
                    other => other,
                }
            }
            Transmit::Send { id, reading, to } => {
                let stanza = self.message(id, &reading, to);
                muc::send(client, stanza.into(), bound).await
            }
            Transmit::Ping => {
                let ping = connect::ping_bound(bound);
                match connect::send_ping(client, Instant::now() + ping).await {
                    Some(_) => Ok(()),
                    None => Err(MucError::Stalled(ping)),
                }
            }
            Transmit::RenewSession => return self.renew(client).await,
            Transmit::Measure { slot } => {
                let input = match self.source.sample(slot, &mut self.rng) {
                    Sample::Finished => Input::Shutdown,
                    Sample::Skip => Input::Measured { slot, value: None },
                    Sample::Value(w) => Input::Measured {
                        slot,
                        value: Some(
                            w + Injection::total_at(&self.cfg.injections, self.started.elapsed()),
                        ),
                    },
                };
                self.core.handle(now_ts(), input);
                Ok(())
            }
        };
        match sent {
            Ok(()) => Ok(()),
            Err(MucError::Stalled(_)) => {
                tracing::warn!("session stalled; replacing it and rejoining under a new nickname");
                self.renew(client).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the session and tells the core, which rejoins under a new nickname.
    async fn renew(&mut self, client: &mut Session) -> Result<(), MeterError> {
        connect::renew(client, &self.cfg.account).await?;
        self.core.handle(now_ts(), Input::SessionReset);
        Ok(())
    }

    /// One join attempt; what arrives before the self-presence is handed to the core after it.
    async fn join(&mut self, client: &mut Session, nick: RoomNick) -> Result<(), MeterError> {
        let mut early = Vec::new();
        let attempt = join_as(client, &self.room, &self.cfg.account, &nick, |s| {
            early.push(s)
        })
        .await;
        match attempt {
            Ok(Attempt::Joined) => self.core.handle(now_ts(), Input::Joined(nick)),
            Ok(Attempt::Conflict) => self.core.handle(now_ts(), Input::NickConflict),
            Err(MeterError::Muc(MucError::Reconnected)) => {
                self.core.handle(now_ts(), Input::SessionReset);
            }
            Ok(Attempt::NoAnswer) | Err(MeterError::Muc(MucError::Stalled(_))) => {
                tracing::warn!("no answer to the join; retrying on a fresh session");
                self.renew(client).await?;
            }
            Err(e) => return Err(e),
        }
        for s in early {
            self.on_stanza(s);
        }
        Ok(())
    }

    /// The reading stanza: a human body plus the XEP-0323 payload, and nothing about the house.
    ///
    /// The id is the random [`ReadingId`]; a direct reading asks the bot for an XEP-0184
    /// receipt (sealed to the bot's key when one is pinned), a broadcast one is acknowledged
    /// by the room's reflection of it.
    fn message(
        &mut self,
        id: ReadingId,
        reading: &gridmuc_core::Reading,
        to: Recipient,
    ) -> Message {
        match (to, &self.cfg.bot_key) {
            (Recipient::Bot, Some(key)) => {
                let to = self.bot.clone().into();
                delivery::sealed_reading_message(to, id, reading, key, &mut self.rng)
            }
            (Recipient::Bot, None) => {
                let to = self.bot.clone().into();
                delivery::reading_message(to, MessageType::Chat, id, reading)
            }
            (Recipient::Room, _) => {
                let to = self.room.clone().into();
                delivery::reading_message(to, MessageType::Groupchat, id, reading)
            }
        }
    }

    fn on_stanza(&mut self, stanza: Stanza) {
        let input = match stanza {
            Stanza::Message(m) => self.message_input(&m),
            Stanza::Presence(p) if self.removes_us(&p) => Input::Removed,
            _ => Input::Alive,
        };
        self.core.handle(now_ts(), input);
    }

    /// What a message means to the core: the bot's answer, the room's echo of our broadcast
    /// (possibly for an earlier nickname), a bounce, or a private message through the room.
    fn message_input(&self, m: &Message) -> Input {
        let Some(from) = m.from.as_ref() else {
            return Input::Alive;
        };
        let in_room = muc::nick_in_room(Some(from), &self.room);
        match m.type_ {
            MessageType::Groupchat => {
                let echo = self.cfg.mode == Mode::Broadcast
                    && in_room.is_some()
                    && codec::find_fields(&m.payloads).is_some();
                match delivery::reading_id(m) {
                    Some(id) if echo => Input::Echo(id),
                    _ => Input::Alive,
                }
            }
            MessageType::Error if *from == self.bot || from.to_bare() == self.room => {
                let why = m
                    .payloads
                    .iter()
                    .find(|e| e.name() == "error")
                    .and_then(|e| e.children().next().map(|c| c.name().to_owned()))
                    .unwrap_or_default();
                Input::Bounce {
                    id: delivery::reading_id(m),
                    why,
                }
            }
            MessageType::Error => Input::Alive,
            _ => {
                let pinned = self.cfg.bot_key.as_ref();
                match delivery::answer_from(m, &self.bot, pinned) {
                    Some(Answer::Verdict(id, Verdict::Accepted)) => return Input::Accepted(id),
                    Some(Answer::Verdict(id, Verdict::Refused(reason))) => {
                        return Input::Refused { id, reason };
                    }
                    Some(Answer::Unverified(id)) => return Input::Unverified(id),
                    None => {}
                }
                match in_room {
                    Some(nick) if m.type_ == MessageType::Chat => {
                        let heard = crate::listen::heard(m);
                        let verified = *from != self.bot
                            || pinned.is_none_or(|k| delivery::post_signed_by(m, &heard.body, k));
                        Input::Private {
                            from: nick,
                            body: heard.body,
                            alert: heard.alert,
                            verified,
                        }
                    }
                    _ => Input::Alive,
                }
            }
        }
    }

    /// Only a presence from our own occupant JID says we were removed.
    fn removes_us(&self, p: &Presence) -> bool {
        let from = muc::nick_in_room(p.from.as_ref(), &self.room);
        from.is_some() && from.as_ref() == self.core.nick() && muc::removed(p)
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

/// How one join attempt went.
enum Attempt {
    /// In the room, and it keeps us anonymous.
    Joined,
    /// The nickname is taken.
    Conflict,
    /// The room did not answer in time: the session may be dead.
    NoAnswer,
}

/// Joins under `nick`, and leaves again with a privacy refusal if our own presence shows real
/// JIDs, occupant-id or a new room. Stanzas before the self-presence go to `other`.
async fn join_as(
    client: &mut Session,
    room: &BareJid,
    account: &ConnectConfig,
    nick: &RoomNick,
    other: impl FnMut(Stanza),
) -> Result<Attempt, MeterError> {
    let outcome = match muc::join(client, room, nick, muc::answer_bound(account), other).await {
        Err(MucError::Timeout(..)) => return Ok(Attempt::NoAnswer),
        other => other?,
    };
    let me = match outcome {
        JoinOutcome::Conflict => return Ok(Attempt::Conflict),
        JoinOutcome::Joined(me) => me,
    };
    if me.non_anonymous || me.occupant_id || me.created {
        muc::leave(client, room, nick, account.timeout).await?;
        let name = room.to_string();
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
    Ok(Attempt::Joined)
}

/// Joins under a fresh CSPRNG nickname, retrying on 409 (counted in `conflicts`) and on a
/// fresh session when the room does not answer, with [`join_as`]'s privacy checks.
pub(crate) async fn join_fresh<R: Rng + rand::CryptoRng>(
    client: &mut Session,
    room: &BareJid,
    account: &ConnectConfig,
    rng: &mut R,
    conflicts: &mut u64,
) -> Result<RoomNick, MeterError> {
    for _ in 0..JOIN_ATTEMPTS {
        let nick = NickGenerator.generate(rng);
        match join_as(client, room, account, &nick, drop).await? {
            Attempt::Joined => return Ok(nick),
            Attempt::Conflict => {
                *conflicts += 1;
                tracing::debug!(%nick, "nickname taken; drawing another");
            }
            Attempt::NoAnswer => {
                tracing::warn!("no answer to the join; retrying on a fresh session");
                connect::renew(client, account).await?;
            }
        }
    }
    Err(MucError::NoFreeNick(JOIN_ATTEMPTS).into())
}
