//! The meter agent's driver: one house, one account, one session around a [`MeterCore`].
//!
//! Every rule of the meter (send slots, rotation, outbox and resends, broadcast pacing,
//! liveness, drain) lives in `gridmuc_agent::meter` and is tested there in an in-memory room.
//! This module only does the I/O: one task owns the [`Session`] and `select!`s over incoming
//! events, the core's next timeout and shutdown (tokio-xmpp's `split()` can stall under load);
//! stanzas become [`Input`]s, the core's [`Transmit`]s become stanzas, and the reading source
//! answers [`Transmit::Measure`].

use crate::connect::{ConnectConfig, ConnectError};
use crate::delivery::{self, Answer};
use crate::driver::{self, RoomRefusal, Stall, Wire};
use crate::muc::{self, MucError};
use crate::outbox_file::{self, OutboxFileError};
use crate::private::PrivateSettings;
use crate::readout::Replies;
use crate::session::Session;
use crate::source::{Injection, Sample, Source, SourceConfig, SourceError};
use crate::{instant_at, millis, now_ts};
use gridmuc_agent::meter::{
    self as agent, Input, MeterCore, MeterCoreConfig, MeterCoreError, Recipient, SourceFaults,
    Transmit,
};
use gridmuc_botkey::BotPublicKey;
use gridmuc_core::codec;
use gridmuc_core::{Millis, ReadingId, RoomNick, Timestamp};
use rand::rand_core::UnwrapErr;
use rand::rngs::OsRng;
use rand::{CryptoRng, Rng, TryRngCore};
use std::future::Future;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::jid::{BareJid, FullJid};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Message, MessageType};

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
    #[serde(default = "default_interval", with = "gridmuc_core::time::span::secs")]
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
    /// Quantisation step (W) applied before sending: a multiple of the bot's own step
    /// (`gridmuc_core::codec::QUANTUM_WATTS`, 10 W), which it would otherwise round again.
    #[serde(default = "default_quantum")]
    pub quantum_watts: u32,
    /// Where readings come from.
    #[serde(default)]
    pub source: SourceConfig,
    /// Private mode (`[private]`): Prio3 reports to the leader (`bot_nick`, `bot_key`) and the
    /// helper, so no one learns this house's reading unless both bots collude.
    #[serde(default)]
    pub private: Option<PrivateSettings>,
    /// Staged load changes (demo and tests).
    #[serde(default)]
    pub injections: Vec<Injection>,
    /// What is kept until the bot acknowledges it, and for how long.
    #[serde(default)]
    pub outbox: gridmuc_core::OutboxConfig,
    /// Where the readings the bot has not acknowledged yet are kept on disk, so a crash, a
    /// power cut or `kill -9` loses none: the next start resends them (see
    /// [`crate::outbox_file`]); a private-mode meter keeps its sealed reports there. Off
    /// unless set.
    #[serde(default)]
    pub outbox_file: Option<std::path::PathBuf>,
    /// No reading before this wall-clock time, so a load test starts a whole neighbourhood together.
    #[serde(skip)]
    pub not_before: Option<SystemTime>,
    /// Broadcast pacing (one reading in flight until the room echoes it); off only to
    /// reproduce the unpaced flood in `gridmuc loadtest --unpaced`.
    #[serde(skip, default = "yes")]
    pub pace_broadcast: bool,
    /// Answer XEP-0323 readout requests that occupants send to this meter's nickname (the last
    /// interval's power and the energy measured under the nickname). Default: only in broadcast
    /// mode, where every occupant sees the readings anyway; in direct mode an answer would show
    /// any occupant what is otherwise sealed to the bot.
    #[serde(default)]
    pub readout: Option<bool>,
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
    codec::QUANTUM_WATTS
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
            private: None,
            injections: Vec::new(),
            outbox: gridmuc_core::OutboxConfig::default(),
            outbox_file: None,
            not_before: None,
            pace_broadcast: true,
            readout: None,
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
            readout: self.readout.unwrap_or(self.mode == Mode::Broadcast),
            save_outbox: self.outbox_file.is_some(),
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
    /// The outbox file could not be read (or a damaged one set aside) at start.
    #[error(transparent)]
    OutboxFile(#[from] OutboxFileError),
    /// The room is invalid.
    #[error("invalid room JID {0:?}: {1}")]
    BadRoom(String, String),
    /// A setting is out of range.
    #[error("invalid setting {0}: {1}")]
    BadSetting(&'static str, String),
}

impl MeterError {
    /// True for refusals on privacy grounds, which callers must not retry.
    pub fn is_privacy_refusal(&self) -> bool {
        matches!(self, MeterError::Muc(MucError::Privacy(_)))
    }
}

/// Longest wait for outstanding acknowledgements when stopping or rotating.
pub(crate) const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Seconds as a duration, negative and non-finite values as zero.
pub(crate) fn secs(x: f64) -> Duration {
    Duration::try_from_secs_f64(x.max(0.0)).unwrap_or(Duration::ZERO)
}

/// The interval in whole milliseconds, at least one.
fn interval_ms(d: Duration) -> Millis {
    millis(d).max(1)
}

/// A wall-clock time as the core's [`Timestamp`] (the epoch for times before it).
fn timestamp_of(t: SystemTime) -> Timestamp {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp(millis(since))
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
        .map_err(|e| MeterError::BadSetting("bot_nick", format!("{:?}: {e}", cfg.bot_nick)))?;
    if cfg.quantum_watts == 0 || !cfg.quantum_watts.is_multiple_of(codec::QUANTUM_WATTS) {
        return Err(MeterError::BadSetting(
            "quantum_watts",
            format!(
                "{} (must be a positive multiple of the bot's {} W)",
                cfg.quantum_watts,
                codec::QUANTUM_WATTS
            ),
        ));
    }
    let bot = muc::occupant(&room, &bot_nick)?;
    if cfg.private.is_some() {
        return Err(MeterError::BadSetting(
            "private",
            "a [private] meter runs with gridmuc_xmpp::private::run_private_meter".into(),
        ));
    }
    // The OS CSPRNG for nicknames, seqnr starts, jitter and the model alike: nothing predictable.
    let mut rng = OsRng.unwrap_err();
    let source = Source::open(&cfg.source, &mut rng)?;
    let reader = Reader::new(source, cfg.injections.clone());
    if cfg.bot_key.is_none() && cfg.mode == Mode::Direct {
        tracing::warn!(
            "no bot_key pinned: readings go unsealed and any occupant holding the bot's \
             nickname can take them and acknowledge them"
        );
    }
    let mut core = MeterCore::new(cfg.core(), OsRng.unwrap_err(), now_ts());
    let (_outbox_lock, saved) =
        outbox_file::open(cfg.outbox_file.as_deref(), outbox_file::load_readings)?;
    core.restore(saved);
    let account = cfg.account.clone();
    let mut wire = MeterWire {
        cfg,
        room: room.clone(),
        bot,
        events,
        reader,
        rng,
        replies: Replies::default(),
    };
    driver::run(&mut core, &mut wire, &room, &account, true, shutdown).await?;
    Ok(MeterReport {
        source: wire.reader.faults(),
        ..core.report()
    })
}

/// The meter's XMPP side: readings on the wire, the bot's answers and the room's echoes off it,
/// and the reading source.
struct MeterWire {
    cfg: MeterConfig,
    room: BareJid,
    bot: FullJid,
    events: Option<mpsc::UnboundedSender<MeterEvent>>,
    reader: Reader,
    /// For sealing.
    rng: UnwrapErr<OsRng>,
    /// Where readout and disco#info answers go.
    replies: Replies,
}

/// A house's readings: the source, plus the staged injections of demos and tests.
pub(crate) struct Reader {
    source: Source,
    injections: Vec<Injection>,
    /// Injections are timed from here.
    started: Instant,
}

impl Reader {
    pub(crate) fn new(source: Source, injections: Vec<Injection>) -> Reader {
        Reader {
            source,
            injections,
            started: Instant::now(),
        }
    }

    /// What the source skipped so far, for the meter's report.
    pub(crate) fn faults(&self) -> SourceFaults {
        let c = self.source.counts();
        SourceFaults {
            dead_intervals: c.dead_intervals,
            garbled_intervals: c.garbled_intervals,
            garbled_frames: c.garbled_frames,
        }
    }

    /// The load of the interval starting at `slot` (`Some(None)`: nothing new for it), or
    /// `None` once the source has ended.
    pub(crate) fn measure(&mut self, slot: Timestamp) -> Option<Option<gridmuc_core::Watts>> {
        match self.source.sample(slot) {
            Sample::Finished => None,
            Sample::Skip => Some(None),
            Sample::Value(w) => Some(Some(
                w + Injection::total_at(&self.injections, self.started.elapsed()),
            )),
        }
    }
}

impl<R: Rng + CryptoRng> Wire<MeterCore<R>> for MeterWire {
    type Error = MeterError;

    fn message_input(&mut self, _core: &MeterCore<R>, m: &Message) -> Input {
        self.message_meaning(m)
    }

    fn iq_input(&mut self, _core: &MeterCore<R>, iq: &Iq) -> Input {
        self.replies
            .request(iq, &self.room)
            .map_or(Input::Alive, Input::Request)
    }

    async fn transmit(
        &mut self,
        client: &mut Session,
        t: Transmit,
    ) -> Result<Option<Input>, MeterError> {
        match t {
            Transmit::Send { id, reading, to } => {
                let stanza = self.message(id, &reading, to);
                muc::send(client, stanza.into(), self.cfg.account.timeout).await?;
                Ok(None)
            }
            Transmit::Answer(answer) => {
                if let Some(stanza) = self.replies.stanza(answer, &self.room) {
                    muc::send(client, stanza, self.cfg.account.timeout).await?;
                }
                Ok(None)
            }
            Transmit::FlushAcks => {
                let stanza = delivery::flush_message(self.bot.clone());
                muc::send(client, stanza.into(), self.cfg.account.timeout).await?;
                Ok(None)
            }
            Transmit::SaveOutbox(readings) => {
                if let Some(path) = self.cfg.outbox_file.clone() {
                    outbox_file::keep(path, readings, outbox_file::save_readings).await;
                }
                Ok(None)
            }
            Transmit::Measure { slot } => Ok(Some(match self.reader.measure(slot) {
                None => Input::Shutdown,
                Some(value) => Input::Measured { slot, value },
            })),
            // The room's own transmits never reach the wire.
            Transmit::Join(_) | Transmit::Leave(_) | Transmit::Ping | Transmit::RenewSession => {
                Ok(None)
            }
        }
    }

    fn event(&mut self, e: agent::MeterEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e.map_at(instant_at));
        }
    }

    fn gave_up(&self, e: MeterCoreError) -> MeterError {
        e.in_room(&self.room).into()
    }
}

impl Stall for MeterError {
    fn is_stall(&self) -> bool {
        matches!(self, MeterError::Muc(MucError::Stalled(_)))
    }
}

impl MeterWire {
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

    /// What a message means to the core: the bot's answer, the room's echo of our broadcast
    /// (possibly for an earlier nickname), a bounce, or a private message through the room.
    fn message_meaning(&self, m: &Message) -> Input {
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
            // From the bot's occupant JID (a direct reading) or the room itself (a groupchat
            // one): another occupant's error must not look like the room's.
            MessageType::Error
                if *from == self.bot
                    || (from.resource().is_none() && from.to_bare() == self.room) =>
            {
                Input::Bounce {
                    id: delivery::reading_id(m),
                    why: delivery::error_condition(m),
                }
            }
            MessageType::Error => Input::Alive,
            _ => {
                let pinned = self.cfg.bot_key.as_ref();
                match delivery::answer_from(m, &self.bot, pinned) {
                    Some(Answer::Verdicts(verdicts)) => return Input::Verdicts(verdicts),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readout_is_on_where_every_occupant_sees_the_readings_anyway_unless_told() {
        let account = ConnectConfig::private_tls("h@grid.test", "pw", "127.0.0.1:5222", "");
        let mut cfg = MeterConfig::new(account, "hood@rooms.grid.test");
        assert!(!cfg.core().readout, "direct mode: off by default");
        cfg.mode = Mode::Broadcast;
        assert!(cfg.core().readout, "broadcast mode: on by default");
        cfg.readout = Some(false);
        assert!(!cfg.core().readout);
        cfg.mode = Mode::Direct;
        cfg.readout = Some(true);
        assert!(cfg.core().readout, "direct mode when asked");
    }
}
