//! Private mode over XMPP: the private meter, the leader (the substation bot) and the helper
//! bot, each a `gridmuc_agent::private` core run by the one [`driver`](crate::driver).
//!
//! The cores build, sign, seal and check every message themselves; this wire only moves their
//! bytes: a payload goes base64 in `<private xmlns='urn:gridmuc:private:0'>` beside an
//! optional body for people, the plain bot's `<alert/>` element and an interval's
//! `<summary/>`, to the room, to an occupant through the room, or to an operator. It signs
//! nothing and believes nothing.

use crate::bot::{BotConfig, BotError, bot_key, write_secret};
use crate::connect::{self, ConnectConfig, ConnectError};
use crate::driver::{self, RoomRefusal, Stall, Wire};
use crate::meter::{MeterConfig, MeterError, Reader, SHUTDOWN_DRAIN};
use crate::muc::{self, MucError};
use crate::outbox_file::{self, OutboxFileError, with_suffix};
use crate::session::Session;
use crate::source::Source;
use crate::{millis, now_ts};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use gridmuc_agent::Agent;
use gridmuc_agent::private::{
    HelperConfig, HelperCore, Input, LeaderConfig, LeaderCore, PrivateMeterConfig,
    PrivateMeterCore, To, Transmit,
};
use gridmuc_botkey::{BotPublicKey, BotSecretKey};
use gridmuc_core::codec;
use gridmuc_core::{Millis, RoomNick};
use gridmuc_private::{PrivateConfig, PrivateParams, Refusals, VerifyKey, log_bucket_edges};
use minidom::Element;
use rand::TryRngCore;
use rand::rngs::OsRng;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_xmpp::jid::{BareJid, Jid};
use xmpp_parsers::message::{Lang, Message, MessageType};

pub use gridmuc_agent::private::leader::interval_line;
pub use gridmuc_agent::private::{HelperEvent, LeaderEvent, PrivateMeterEvent, PrivateMeterStats};

/// Namespace of the element that carries a private-mode message.
pub const NS_PRIVATE: &str = "urn:gridmuc:private:0";

/// What meters, leader and helper must agree on beyond room and interval (their task id
/// hashes all of it); the `[private]` table of the meter's, the substation's and the helper's
/// TOML files.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateSettings {
    /// The helper bot's public key (`gridmuc server` prints it as `helper_key`).
    pub helper_key: BotPublicKey,
    /// The helper bot's room nickname.
    #[serde(default = "default_helper_nick")]
    pub helper_nick: String,
    /// The helper never releases an interval with fewer reports than this.
    #[serde(default = "default_min_reports")]
    pub min_reports: u32,
    /// Histogram buckets, log-spaced from 50 W to the 25 kW bound.
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    /// Leader only: where the Prio3 verify key is kept across restarts (created 0600 if
    /// missing; default: beside the bot's `key_file`, with `.verify` appended).
    #[serde(default)]
    pub verify_key_file: Option<PathBuf>,
    /// Leader only: a house spike is a reading at or above this many times the median…
    #[serde(default = "default_spike_factor")]
    pub spike_factor: f64,
    /// …and at least this many kW.
    #[serde(default = "default_spike_floor_kw")]
    pub spike_floor_kw: f64,
}

fn default_helper_nick() -> String {
    "helper".to_owned()
}
fn default_min_reports() -> u32 {
    gridmuc_private::DEFAULT_MIN_REPORTS
}
fn default_buckets() -> usize {
    gridmuc_private::DEFAULT_BUCKETS
}
fn default_spike_factor() -> f64 {
    10.0
}
fn default_spike_floor_kw() -> f64 {
    8.0
}

impl PrivateSettings {
    /// Defaults for everything but the helper's key.
    pub fn new(helper_key: BotPublicKey) -> PrivateSettings {
        PrivateSettings {
            helper_key,
            helper_nick: default_helper_nick(),
            min_reports: default_min_reports(),
            buckets: default_buckets(),
            verify_key_file: None,
            spike_factor: default_spike_factor(),
            spike_floor_kw: default_spike_floor_kw(),
        }
    }

    /// The task every party derives alike from the room, the interval and both keys.
    pub fn task(
        &self,
        room: &str,
        interval: Millis,
        leader: BotPublicKey,
    ) -> Result<PrivateConfig, PrivateError> {
        if interval <= 0 || interval % 1_000 != 0 {
            return Err(PrivateError::Setting(
                "interval",
                format!("{interval} ms (private mode counts intervals in whole seconds)"),
            ));
        }
        let secs = u32::try_from(interval / 1_000)
            .map_err(|_| PrivateError::Setting("interval", format!("{interval} ms")))?;
        let mut params = PrivateParams::new(room, secs, leader, self.helper_key.clone());
        params.min_reports = self.min_reports;
        params.bucket_edges = log_bucket_edges(
            self.buckets,
            gridmuc_private::DEFAULT_LOWEST_EDGE_WATTS,
            params.max_watts,
            params.quantum_watts,
        );
        PrivateConfig::new(params).map_err(|e| PrivateError::Setting("private", e.to_string()))
    }

    fn helper_nick(&self) -> Result<RoomNick, PrivateError> {
        nick("helper_nick", &self.helper_nick)
    }
}

/// Why a private-mode agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    /// Could not log in.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Room trouble, including privacy refusals.
    #[error(transparent)]
    Muc(#[from] MucError),
    /// A setting is missing or out of range.
    #[error("invalid setting {0}: {1}")]
    Setting(&'static str, String),
    /// A key or verify-key file could not be read or written.
    #[error("cannot use {0}: {1}")]
    KeyFile(String, String),
    /// The meter's own setup failed (room, source).
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// The outbox file could not be read (or a damaged one set aside) at start.
    #[error(transparent)]
    OutboxFile(#[from] OutboxFileError),
    /// The bot's own setup failed (key, JIDs).
    #[error(transparent)]
    Bot(#[from] BotError),
}

impl Stall for PrivateError {
    fn is_stall(&self) -> bool {
        matches!(self, PrivateError::Muc(MucError::Stalled(_)))
    }
}

fn nick(what: &'static str, s: &str) -> Result<RoomNick, PrivateError> {
    RoomNick::new(s).map_err(|e| PrivateError::Setting(what, format!("{s:?}: {e}")))
}

fn room_of(room: &str) -> Result<BareJid, PrivateError> {
    BareJid::new(room).map_err(|e| PrivateError::Setting("room", format!("{room:?}: {e}")))
}

/// The helper bot's settings: the TOML file of `gridmuc helper`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperBotConfig {
    /// The helper's own account (an independent party's; not a room owner).
    pub account: ConnectConfig,
    /// Bare JID of the neighbourhood room.
    pub room: String,
    /// The helper's room nickname.
    #[serde(default = "default_helper_nick")]
    pub nick: String,
    /// The leader's (substation bot's) room nickname: the only one requests are taken from.
    #[serde(default = "default_leader_nick")]
    pub leader_nick: String,
    /// The leader's public key (`bot_key` as `gridmuc server` prints it).
    pub leader_key: BotPublicKey,
    /// The reporting interval, as the meters and the leader have it.
    #[serde(with = "gridmuc_core::time::span::ms")]
    pub interval: Millis,
    /// The independent party's operators: told about intervals with suspiciously few reports.
    #[serde(default)]
    pub operators: Vec<String>,
    /// File holding the helper's secret key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The secret key itself, for in-process callers (demo, tests); wins over `key_file`.
    #[serde(skip)]
    pub key: Option<Arc<BotSecretKey>>,
    /// The task's other settings, as the meters and the leader have them.
    pub private: PrivateSettings,
}

fn default_leader_nick() -> String {
    "substation".to_owned()
}

impl HelperBotConfig {
    /// Defaults for everything but the account, room, interval and keys.
    pub fn new(
        account: ConnectConfig,
        room: &str,
        interval: Millis,
        leader_key: BotPublicKey,
        private: PrivateSettings,
    ) -> HelperBotConfig {
        HelperBotConfig {
            account,
            room: room.to_owned(),
            nick: default_helper_nick(),
            leader_nick: default_leader_nick(),
            leader_key,
            interval,
            operators: Vec::new(),
            key_file: None,
            key: None,
            private,
        }
    }
}

/// Runs a meter in private mode (its `[private]` table set, `bot_key` the leader's key)
/// until `shutdown` resolves or the source ends.
pub async fn run_private_meter(
    cfg: MeterConfig,
    events: Option<mpsc::UnboundedSender<PrivateMeterEvent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<PrivateMeterStats, PrivateError> {
    let settings = cfg.private.clone().ok_or_else(|| {
        PrivateError::Setting("private", "the meter has no [private] table".into())
    })?;
    let leader = cfg.bot_key.clone().ok_or_else(|| {
        PrivateError::Setting(
            "bot_key",
            "private mode needs the leader's key pinned".into(),
        )
    })?;
    let room = room_of(&cfg.room)?;
    let interval = millis(cfg.interval);
    let task = settings.task(&cfg.room, interval, leader)?;
    let range = |r: [f64; 2]| r.map(|s| millis(crate::meter::secs(s)));
    let core_cfg = PrivateMeterConfig {
        jitter: cfg.jitter,
        rotate: range(cfg.rotate),
        rejoin_gap: range(cfg.rejoin_gap),
        answer_timeout: millis(cfg.account.timeout),
        drain: millis(SHUTDOWN_DRAIN.min(cfg.account.timeout)),
        save_reports: cfg.outbox_file.is_some(),
        // Intervals missed in a fault are still reported within half the leader's default
        // grace; `PrivateMeterConfig::new` holds the rest of the defaults.
        ..PrivateMeterConfig::new(task, nick("bot_nick", &cfg.bot_nick)?)
    };
    let mut rng = OsRng.unwrap_err();
    let source = Source::open(&cfg.source, &mut rng).map_err(MeterError::from)?;
    let reader = Reader::new(source, cfg.injections.clone());
    let mut core = PrivateMeterCore::new(core_cfg, OsRng.unwrap_err(), now_ts());
    let (_outbox_lock, saved) =
        outbox_file::open(cfg.outbox_file.as_deref(), outbox_file::load_reports)?;
    core.restore(saved);
    let mut wire = PrivateWire::new(room.clone(), &cfg.account, events, Some(reader));
    wire.outbox_file = cfg.outbox_file.clone();
    driver::run(&mut core, &mut wire, &room, &cfg.account, true, shutdown).await?;
    Ok(core.stats().clone())
}

/// Runs the substation bot as private mode's leader and collector (its `[private]` table
/// set) until `shutdown` resolves; answers the refusals it counted.
pub async fn run_leader(
    cfg: BotConfig,
    events: Option<mpsc::UnboundedSender<LeaderEvent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<Refusals, PrivateError> {
    let settings = cfg.private.clone().ok_or_else(|| {
        PrivateError::Setting("private", "the substation has no [private] table".into())
    })?;
    let key = bot_key(cfg.key.clone(), cfg.key_file.as_deref())?.ok_or_else(|| {
        PrivateError::Setting("key_file", "private mode's leader needs its bot key".into())
    })?;
    let room = room_of(&cfg.room)?;
    let task = settings.task(&cfg.room, cfg.aggregator.interval, key.public())?;
    let verify_key = match settings
        .verify_key_file
        .clone()
        .or_else(|| cfg.key_file.as_ref().map(|k| with_suffix(k, ".verify")))
    {
        Some(path) => load_or_create_verify_key(&path)?,
        // In-process (demo, tests): a fresh key, offered to the helper on every join.
        None => VerifyKey::generate(&mut OsRng.unwrap_err()),
    };
    let core_cfg = LeaderConfig {
        nick: nick("nick", &cfg.nick)?,
        helper_nick: settings.helper_nick()?,
        operators: cfg.operators.clone(),
        private: task,
        key,
        verify_key,
        detectors: cfg.aggregator.clone(),
        spike_factor: settings.spike_factor,
        spike_floor_watts: kw_to_watts("spike_floor_kw", settings.spike_floor_kw)?,
        grace: cfg.aggregator.grace,
        helper_timeout: millis(muc::answer_bound(&cfg.account)),
        batch: gridmuc_private::BENCH_BATCH,
        collect_attempts: 4,
        ping_timeout: millis(connect::ping_bound(cfg.account.timeout)),
    };
    let mut core = LeaderCore::new(core_cfg, OsRng.unwrap_err(), now_ts())
        .map_err(|e| PrivateError::Setting("private", e.to_string()))?;
    let mut wire = PrivateWire::new(room.clone(), &cfg.account, events, None);
    driver::run(&mut core, &mut wire, &room, &cfg.account, false, shutdown).await?;
    Ok(core.refusals())
}

/// Runs the helper bot until `shutdown` resolves; answers the refusals it counted.
pub async fn run_helper(
    cfg: HelperBotConfig,
    events: Option<mpsc::UnboundedSender<HelperEvent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<Refusals, PrivateError> {
    let key = bot_key(cfg.key.clone(), cfg.key_file.as_deref())?
        .ok_or_else(|| PrivateError::Setting("key_file", "the helper needs its bot key".into()))?;
    if key.public() != cfg.private.helper_key {
        return Err(PrivateError::Setting(
            "key_file",
            "the helper's key is not the helper_key of [private]".into(),
        ));
    }
    let room = room_of(&cfg.room)?;
    let task = cfg
        .private
        .task(&cfg.room, cfg.interval, cfg.leader_key.clone())?;
    let core_cfg = HelperConfig {
        nick: nick("nick", &cfg.nick)?,
        leader_nick: nick("leader_nick", &cfg.leader_nick)?,
        operators: cfg.operators.clone(),
        private: task,
        key,
        alarm_ratio: 0.5,
        alarm_window: 8,
        ping_timeout: millis(connect::ping_bound(cfg.account.timeout)),
    };
    let mut core = HelperCore::new(core_cfg, OsRng.unwrap_err(), now_ts());
    let mut wire = PrivateWire::new(room.clone(), &cfg.account, events, None);
    driver::run(&mut core, &mut wire, &room, &cfg.account, false, shutdown).await?;
    Ok(core.refusals())
}

fn kw_to_watts(what: &'static str, kw: f64) -> Result<u32, PrivateError> {
    let w = kw * 1_000.0;
    if !(w.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&w)) {
        return Err(PrivateError::Setting(what, format!("{kw} kW")));
    }
    Ok(w.round() as u32)
}

/// The verify key the helper accepted before, or a fresh one written 0600 for next time:
/// the helper takes one verify key per task, so a restarted leader must keep it.
fn load_or_create_verify_key(path: &Path) -> Result<VerifyKey, PrivateError> {
    let what = || path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = BASE64
                .decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| PrivateError::KeyFile(what(), "not a base64 32-byte key".into()))?;
            Ok(VerifyKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = VerifyKey::generate(&mut OsRng.unwrap_err());
            let text = BASE64.encode(*key.to_bytes());
            write_secret(path, format!("{text}\n").as_bytes())
                .map_err(|e| PrivateError::KeyFile(what(), e.to_string()))?;
            tracing::info!(path = %path.display(), "created the Prio3 verify key");
            Ok(key)
        }
        Err(e) => Err(PrivateError::KeyFile(what(), e.to_string())),
    }
}

/// The XMPP side of any private-mode core: payloads in and out, the meter's readings.
struct PrivateWire<E> {
    room: BareJid,
    timeout: Duration,
    events: Option<mpsc::UnboundedSender<E>>,
    /// The meter's reading source; bots have none.
    reader: Option<Reader>,
    /// Where the meter keeps its pending reports (`outbox_file`), if anywhere.
    outbox_file: Option<PathBuf>,
}

impl<E> PrivateWire<E> {
    fn new(
        room: BareJid,
        account: &ConnectConfig,
        events: Option<mpsc::UnboundedSender<E>>,
        reader: Option<Reader>,
    ) -> Self {
        PrivateWire {
            room,
            timeout: account.timeout,
            events,
            reader,
            outbox_file: None,
        }
    }

    /// The message for a core's [`Transmit::Send`].
    fn message(
        &self,
        to: To,
        body: Option<String>,
        payload: Option<Vec<u8>>,
        alert: Option<gridmuc_core::Alert>,
        summary: Option<&codec::Summary>,
    ) -> Result<Message, MucError> {
        let (to, type_): (Jid, MessageType) = match to {
            To::Room => (self.room.clone().into(), MessageType::Groupchat),
            To::Nick(n) => (muc::occupant(&self.room, &n)?.into(), MessageType::Chat),
            To::Operator(op) => match BareJid::new(&op) {
                Ok(jid) => (jid.into(), MessageType::Chat),
                Err(e) => {
                    return Err(MucError::Refused {
                        room: op,
                        condition: format!("not an operator address: {e}"),
                    });
                }
            },
        };
        let payloads = payload
            .map(|bytes| {
                Element::builder("private", NS_PRIVATE)
                    .append(BASE64.encode(bytes))
                    .build()
            })
            .into_iter()
            .chain(alert.as_ref().map(codec::encode_alert))
            .chain(summary.map(codec::encode_summary))
            .collect();
        let mut m = Message::new_with_type(type_, Some(to)).with_payloads(payloads);
        if let Some(body) = body {
            m.bodies.insert(Lang(String::new()), body);
        }
        Ok(m)
    }
}

/// What a message means to a private core: a payload from an occupant, a bounce of one of
/// ours, or only a sign of life.
pub(crate) fn private_input(room: &BareJid, m: &Message) -> Input {
    let alive = Input::Room(gridmuc_agent::RoomInput::Alive);
    let Some(from) = muc::nick_in_room(m.from.as_ref(), room) else {
        return alive;
    };
    if m.type_ == MessageType::Error {
        return Input::Bounced {
            to: from,
            why: crate::delivery::error_condition(m),
        };
    }
    let delayed = m
        .payloads
        .iter()
        .any(|p| p.is("delay", xmpp_parsers::ns::DELAY));
    if delayed || !matches!(m.type_, MessageType::Chat | MessageType::Groupchat) {
        return alive;
    }
    let Some(el) = m.payloads.iter().find(|p| p.is("private", NS_PRIVATE)) else {
        return alive;
    };
    let text: String = el.text().chars().filter(|c| !c.is_whitespace()).collect();
    match BASE64.decode(text) {
        Ok(bytes) => Input::Payload { from, bytes },
        Err(_) => {
            tracing::debug!(%from, "a private payload that is not base64");
            alive
        }
    }
}

impl<C> Wire<C> for PrivateWire<C::Event>
where
    C: Agent<Input = Input, Transmit = Transmit>,
    C::Error: RoomRefusal,
{
    type Error = PrivateError;

    fn message_input(&mut self, _core: &C, m: &Message) -> Input {
        private_input(&self.room, m)
    }

    async fn transmit(
        &mut self,
        client: &mut Session,
        t: Transmit,
    ) -> Result<Option<Input>, PrivateError> {
        match t {
            Transmit::Send {
                to,
                body,
                payload,
                alert,
                summary,
            } => {
                let m = self.message(to, body, payload, alert, summary.as_deref())?;
                muc::send(client, m.into(), self.timeout).await?;
                Ok(None)
            }
            Transmit::Measure { slot } => Ok(self.reader.as_mut().map(|r| match r.measure(slot) {
                None => Input::Room(gridmuc_agent::RoomInput::Shutdown),
                Some(value) => Input::Measured { slot, value },
            })),
            Transmit::SaveReports(reports) => {
                if let Some(path) = self.outbox_file.clone() {
                    outbox_file::keep(path, reports, outbox_file::save_reports).await;
                }
                Ok(None)
            }
            // The room's own transmits never reach the wire.
            Transmit::Room(_) => Ok(None),
        }
    }

    fn event(&mut self, e: C::Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    fn gave_up(&self, e: C::Error) -> PrivateError {
        e.in_room(&self.room).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verify_key_is_created_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("bot.key.verify");
        let first = load_or_create_verify_key(&path).expect("created");
        let again = load_or_create_verify_key(&path).expect("read back");
        assert_eq!(*first.to_bytes(), *again.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key\n").expect("overwritten by hand");
        assert!(matches!(
            load_or_create_verify_key(&path),
            Err(PrivateError::KeyFile(..))
        ));
        // An existing file is never replaced.
        assert!(write_secret(&path, b"x").is_err());
    }
}
