//! The substation bot's driver: one account, one session around a [`BotCore`].
//!
//! Every rule of the bot (verdicts, rate answers, interval closing and posting, alerts,
//! operator commands, liveness, privacy refusals, a taken nickname) lives in
//! `gridmuc_agent::bot` and is tested there in an in-memory room with real meter cores. This
//! module only does the I/O: stanzas become [`Input`]s (XML, the stanza guard's marks and
//! sealed readings are decoded here, with the bot key), the core's [`Transmit`]s become
//! stanzas (verdicts and posts signed here), and the district uplink rides beside the core.
//!
//! It keeps only room nicknames, and never logs the address of anything that is not an
//! operator.

use crate::connect::{self, ConnectConfig, ConnectError};
use crate::delivery;
use crate::district::{DistrictConfig, Uplink};
use crate::driver::{self, Stall, Wire, join_watching};
use crate::guard::{self, GuardMark};
use crate::metrics::{self, Metrics};
use crate::muc::{self, JoinOutcome, MucError, PrivacyError};
use crate::private::PrivateSettings;
use crate::readout;
use crate::session::Session;
use crate::{millis, now_ts};
use gridmuc_agent::PrivacyRefusal;
use gridmuc_agent::bot::{
    BotCore, BotCoreConfig, BotEvent as CoreEvent, Input, To, Transmit, nick_retry,
};
use gridmuc_agent::readout::PollAnswer;
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::aggregator::Counters;
use gridmuc_core::codec::{self, CodecLimits};
use gridmuc_core::{
    AggregatorConfig, Alert, Ingest, IntervalStats, Reading, ReadingId, Rejection, RoomNick, Watts,
};
use minidom::Element;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, Jid};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Lang, Message, MessageType};

pub use gridmuc_agent::bot::{AckBatch, summary_line};

/// The bot's settings; the TOML file of `gridmuc substation` maps onto it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    /// The bot's own account (not a room owner, not a server admin).
    pub account: ConnectConfig,
    /// Bare JID of the neighbourhood room.
    pub room: String,
    /// The bot's room nickname, which meters in direct mode address.
    #[serde(default = "default_nick")]
    pub nick: String,
    /// Bare JIDs allowed to ask `status`/`top` and told about every alert.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Interval, detectors and alert policy.
    #[serde(default)]
    pub aggregator: AggregatorConfig,
    /// Post a one-line summary of every interval to the room.
    #[serde(default = "yes")]
    pub post_summaries: bool,
    /// Publish each interval's total into a district room (a neighbourhood → district hierarchy).
    #[serde(default)]
    pub district: Option<DistrictConfig>,
    /// Largest value one occupant may report, in kW: a house (25), or a neighbourhood for a district bot.
    #[serde(default = "default_max_power_kw")]
    pub max_power_kw: f64,
    /// Report the XML of every received stanza as [`BotEvent::Stanza`] (tests auditing privacy).
    #[serde(skip)]
    pub tap_stanzas: bool,
    /// Serve Prometheus `/metrics` on this address (off by default); see [`crate::metrics`].
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Use this registry instead of a fresh one, so in-process callers read it directly.
    #[serde(skip)]
    pub registry: Option<Arc<Metrics>>,
    /// File holding the bot's long-term secret key (`gridmuc server` writes one): verdicts and
    /// posts are signed with it and sealed readings opened; meters pin its public half.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The secret key itself, for in-process callers (demo, tests); wins over `key_file`.
    #[serde(skip)]
    pub key: Option<Arc<BotSecretKey>>,
    /// Private mode (`[private]`): the bot is the Prio3 leader and collector and never sees
    /// a house's reading (see `gridmuc_xmpp::private::run_leader`).
    #[serde(default)]
    pub private: Option<PrivateSettings>,
    /// `[readout]`: XEP-0323 devices in the room that answer readout requests but never push.
    #[serde(default)]
    pub readout: Option<ReadoutPoll>,
    /// How direct readings are acknowledged (`[acks]`: `max_readings`, `max_wait`): one
    /// signed ack per nickname for up to 16 readings or 5 s by default.
    #[serde(default)]
    pub acks: AckBatch,
}

/// Which third-party XEP-0323 devices the bot polls, and how often. Devices are named, not
/// discovered: in a provisioned room presence goes to moderators only, so the bot cannot see who
/// is there, and probing every occupant would also poll gridmuc meters that already push.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadoutPoll {
    /// How often each device is asked for a momentary readout; set it to the aggregator's
    /// interval so each device is counted once per interval.
    #[serde(with = "gridmuc_core::time::span::secs")]
    pub poll: Duration,
    /// The devices' nicknames in the room (they must not rotate).
    pub devices: Vec<String>,
}

fn default_nick() -> String {
    "substation".to_owned()
}
fn default_max_power_kw() -> f64 {
    25.0
}
fn yes() -> bool {
    true
}

impl BotConfig {
    /// Defaults for everything but the account and room.
    pub fn new(account: ConnectConfig, room: &str) -> BotConfig {
        BotConfig {
            account,
            room: room.to_owned(),
            nick: default_nick(),
            operators: Vec::new(),
            aggregator: AggregatorConfig::default(),
            post_summaries: true,
            district: None,
            max_power_kw: default_max_power_kw(),
            tap_stanzas: false,
            metrics: None,
            registry: None,
            key_file: None,
            key: None,
            private: None,
            readout: None,
            acks: AckBatch::default(),
        }
    }
}

/// What the bot tells its caller (demo view, tests).
#[derive(Clone, Debug)]
pub enum BotEvent {
    /// In the room as a plain participant.
    Joined(RoomNick),
    /// An interval closed and was posted.
    Summary {
        /// Its statistics.
        stats: IntervalStats,
        /// When the bot closed it (for latency after the interval's end).
        closed_at: gridmuc_core::Timestamp,
        /// Running totals at that moment (boxed: the counters are large).
        counters: Box<Counters>,
    },
    /// An alert was raised or cleared and delivered.
    Alert(Alert),
    /// A stanza or reading was refused, for this reason (never the sender: consoles print it).
    Refused(Rejection),
    /// XML of a received stanza, when [`BotConfig::tap_stanzas`] is set.
    Stanza(String),
}

/// Totals when the bot stops.
#[derive(Clone, Debug, Default)]
pub struct BotReport {
    /// The aggregator's counters after the final flush.
    pub counters: Counters,
}

/// Why the bot stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// Could not log in.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Room trouble, including refusing to run with privileges.
    #[error(transparent)]
    Muc(#[from] MucError),
    /// A JID in the config is invalid.
    #[error("invalid JID {0:?} in config: {1}")]
    BadJid(String, String),
    /// A setting is out of range.
    #[error("invalid setting {0}: {1}")]
    BadSetting(&'static str, String),
    /// The `/metrics` address could not be bound.
    #[error("cannot serve metrics on {0}: {1}")]
    Metrics(SocketAddr, std::io::Error),
    /// The key file could not be read or holds no valid bot key.
    #[error("cannot use bot key {0}: {1}")]
    Key(String, String),
}

/// Runs the bot until `shutdown` resolves; flushes the open intervals before returning.
pub async fn run_bot(
    cfg: BotConfig,
    events: Option<mpsc::UnboundedSender<BotEvent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<BotReport, BotError> {
    if cfg.private.is_some() {
        return Err(BotError::BadSetting(
            "private",
            "a [private] substation runs with gridmuc_xmpp::private::run_leader".into(),
        ));
    }
    let room =
        BareJid::new(&cfg.room).map_err(|e| BotError::BadJid(cfg.room.clone(), e.to_string()))?;
    let nick = RoomNick::new(cfg.nick.as_str())
        .map_err(|e| BotError::BadJid(cfg.nick.clone(), e.to_string()))?;
    let operators = cfg
        .operators
        .iter()
        .map(|o| BareJid::new(o).map_err(|e| BotError::BadJid(o.clone(), e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if !(cfg.max_power_kw.is_finite() && cfg.max_power_kw > 0.0) {
        return Err(BotError::BadSetting(
            "max_power_kw",
            format!("{} (must be a positive number of kW)", cfg.max_power_kw),
        ));
    }
    if cfg.acks.max_readings == 0 || !(0..=AckBatch::MAX_WAIT).contains(&cfg.acks.max_wait) {
        return Err(BotError::BadSetting(
            "acks",
            format!(
                "{:?} (max_readings at least 1, max_wait from 0 to {} ms: meters probe or \
                 resend when an answer takes longer)",
                cfg.acks,
                AckBatch::MAX_WAIT
            ),
        ));
    }
    let uplink = cfg.district.map(Uplink::new).transpose()?;
    let limits = CodecLimits {
        max_house_power: Watts::from_kw(cfg.max_power_kw),
        ..CodecLimits::default()
    };
    let registry = cfg.registry.clone().unwrap_or_default();
    registry.rating(cfg.aggregator.overload.rating);
    // Bound before logging in so a taken port is an error, not a silent absence of metrics.
    let _serving = match cfg.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr)
                .await
                .map_err(|e| BotError::Metrics(addr, e))?;
            Some(AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                registry.clone(),
                std::future::pending(),
            ))))
        }
        None => None,
    };
    let key = bot_key(cfg.key.clone(), cfg.key_file.as_deref())?;
    if key.is_none() {
        tracing::warn!(
            "no bot key configured (key_file): verdicts and posts are unsigned, so meters \
             cannot tell this bot from an occupant that takes its nickname"
        );
    }
    let interval = Duration::from_millis(cfg.aggregator.interval.max(1).unsigned_abs());
    let (poll, poll_devices) = match &cfg.readout {
        Some(r) => (
            millis(r.poll),
            r.devices
                .iter()
                .map(|d| {
                    RoomNick::new(d.as_str())
                        .map_err(|e| BotError::BadSetting("readout.devices", format!("{d:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => (0, Vec::new()),
    };
    let core_cfg = BotCoreConfig {
        nick: nick.clone(),
        operators: operators.iter().map(BareJid::to_string).collect(),
        aggregator: cfg.aggregator,
        post_summaries: cfg.post_summaries,
        ping_timeout: millis(connect::ping_bound(cfg.account.timeout)),
        poll,
        poll_devices,
        acks: cfg.acks,
    };
    let mut core = BotCore::new(core_cfg, OsRng.unwrap_err(), now_ts());
    let mut wire = BotWire {
        room: room.clone(),
        nick,
        operators,
        limits,
        tap: cfg.tap_stanzas,
        events,
        account: cfg.account.clone(),
        uplink,
        metrics: registry,
        key,
        interval,
    };
    driver::run(&mut core, &mut wire, &room, &cfg.account, false, shutdown).await?;
    Ok(BotReport {
        counters: core.counters().clone(),
    })
}

/// The bot's XMPP side: readings decoded (sealed ones opened with the bot key), verdicts and
/// posts signed, the operators' commands, metrics, and the district uplink beside the core.
struct BotWire {
    room: BareJid,
    nick: RoomNick,
    operators: Vec<BareJid>,
    limits: CodecLimits,
    tap: bool,
    events: Option<mpsc::UnboundedSender<BotEvent>>,
    account: ConnectConfig,
    uplink: Option<Uplink>,
    metrics: Arc<Metrics>,
    /// Signs verdicts and posts, opens sealed readings.
    key: Option<Arc<BotSecretKey>>,
    /// The aggregator's interval, which bounds how long input may hold back a due close.
    interval: Duration,
}

impl<R: Rng> Wire<BotCore<R>> for BotWire {
    type Error = BotError;

    /// What a message means to the core: a reading from an occupant (decoded here), an
    /// operator's command, or only a sign of life (our own post's echo included).
    fn message_input(&mut self, core: &BotCore<R>, m: &Message) -> Input {
        if self.uplink.as_mut().is_some_and(|up| up.on_message(m)) {
            return Input::Alive;
        }
        if let Some(nick) = muc::nick_in_room(m.from.as_ref(), &self.room) {
            // A polled device's answer: any type but groupchat, decoded like a pushed reading.
            if core.awaits_readout(&nick)
                && m.type_ != MessageType::Groupchat
                && let Some((seqnr, done)) = readout::fields_header(m)
                && let Some(reading) = decode_reading(m, None, None, &self.limits)
            {
                return Input::Polled {
                    from: nick,
                    seqnr,
                    answer: PollAnswer::Fields { reading, done },
                };
            }
            let live = matches!(m.type_, MessageType::Groupchat | MessageType::Chat);
            let delayed = m
                .payloads
                .iter()
                .any(|p| p.is("delay", xmpp_parsers::ns::DELAY));
            if nick == self.nick || !live || delayed {
                return Input::Alive;
            }
            if m.type_ == MessageType::Chat && delivery::is_flush(&m.payloads) {
                return Input::FlushAcks { from: nick };
            }
            let id = delivery::reading_id(m);
            let Some(reading) = decode_reading(m, id, self.key.as_deref(), &self.limits) else {
                return Input::Alive;
            };
            // Direct readings get the verdict; in the room, the reflection is the receipt.
            let wants_verdict =
                m.type_ == MessageType::Chat && delivery::wants_receipt(&m.payloads);
            return Input::Reading {
                from: nick,
                id,
                reading,
                wants_verdict,
            };
        }
        match operator_command(m, &self.operators) {
            Some((from, text)) => Input::Command {
                from: from.to_string(),
                text,
            },
            None => Input::Alive,
        }
    }

    fn iq_input(&mut self, _core: &BotCore<R>, iq: &Iq) -> Input {
        match readout::poll_iq_answer(iq, &self.room) {
            Some((from, seqnr, answer)) => Input::Polled {
                from,
                seqnr,
                answer,
            },
            None => Input::Alive,
        }
    }

    async fn transmit(
        &mut self,
        client: &mut Session,
        t: Transmit,
    ) -> Result<Option<Input>, BotError> {
        let bound = self.account.timeout;
        let key = self.key.clone();
        match t {
            Transmit::Acks { to, verdicts } => {
                let to = muc::occupant(&self.room, &to)?;
                let answer = delivery::ack_stanza(to, &verdicts, key.as_deref());
                muc::send(client, answer.into(), bound).await?;
            }
            Transmit::Post {
                to,
                body,
                alert,
                summary,
                signed,
            } => {
                let (to, type_): (Jid, MessageType) = match to {
                    To::Room => (self.room.clone().into(), MessageType::Groupchat),
                    To::Occupant(nick) => {
                        (muc::occupant(&self.room, &nick)?.into(), MessageType::Chat)
                    }
                    To::Operator(op) => match BareJid::new(&op) {
                        Ok(jid) => (jid.into(), MessageType::Chat),
                        Err(e) => {
                            // Operators were parsed at start: only a core bug gets here.
                            tracing::error!(%e, "not an operator address; post dropped");
                            return Ok(None);
                        }
                    },
                };
                let payload = alert
                    .as_ref()
                    .map(codec::encode_alert)
                    .or_else(|| summary.as_deref().map(codec::encode_summary));
                let key = if signed { key.as_deref() } else { None };
                send_chat(client, bound, to, type_, body, payload, key).await?;
            }
            Transmit::Poll { to, seqnr } => {
                if let Some(iq) = readout::poll_request(&self.room, &to, seqnr) {
                    muc::send(client, iq.into(), bound).await?;
                }
            }
            // The room's own transmits never reach the wire.
            Transmit::Join(_) | Transmit::Leave(_) | Transmit::Ping | Transmit::RenewSession => {}
        }
        Ok(None)
    }

    fn event(&mut self, e: CoreEvent) {
        match e {
            CoreEvent::Joined(nick) => self.emit(BotEvent::Joined(nick)),
            CoreEvent::Ingested {
                nick,
                reading,
                outcome,
                ..
            } => {
                let now = now_ts();
                self.metrics
                    .reading(&nick, reading.seqnr, &outcome, now.since(reading.at));
                if let Ingest::Rejected(r) = outcome {
                    self.emit(BotEvent::Refused(r));
                }
            }
            CoreEvent::Unreadable(r) => {
                self.metrics.rejection(&r);
                self.emit(BotEvent::Refused(r));
            }
            CoreEvent::Summary {
                stats,
                closed_at,
                counters,
            } => {
                // A revision amends an interval already counted.
                if stats.revision == 0 {
                    self.metrics.interval(&stats);
                }
                if let Some(up) = &mut self.uplink {
                    up.queue(&stats);
                }
                self.emit(BotEvent::Summary {
                    stats,
                    closed_at,
                    counters,
                });
            }
            CoreEvent::Alert(a) => {
                self.metrics.alert(&a);
                self.emit(BotEvent::Alert(a));
            }
        }
    }

    fn gave_up(&self, e: PrivacyRefusal) -> BotError {
        MucError::from(PrivacyError::refused(&self.room, e)).into()
    }

    /// What a session has already delivered is read before due intervals close (a bot
    /// resumed after a pause would otherwise close them empty), unless a flood has kept the
    /// timer waiting for a whole interval.
    fn timer_lag(&self) -> Duration {
        self.interval
    }

    fn renewed(&mut self) {
        self.metrics.session_replaced();
    }

    fn saw(&mut self, s: &Stanza) {
        if self.tap {
            self.emit(BotEvent::Stanza(stanza_xml(s)));
        }
    }

    /// Once in the neighbourhood room: the district room too, and its backlog resent.
    async fn after_join(&mut self, client: &mut Session) -> Result<(), BotError> {
        if let Some(up) = &mut self.uplink {
            join_as_participant(client, &up.room, &up.nick, &self.account, &self.operators).await?;
            up.resend_all();
            up.flush(client, now_ts(), self.account.timeout).await?;
        }
        Ok(())
    }

    /// Sends the district whatever is due.
    async fn after_timeout(&mut self, client: &mut Session) -> Result<(), BotError> {
        if let Some(up) = &mut self.uplink {
            up.flush(client, now_ts(), self.account.timeout).await?;
        }
        Ok(())
    }

    /// After a clean stop: leave the district room too, saying what it still owes.
    async fn on_stop(&mut self, client: &mut Session) -> Result<(), BotError> {
        let Some(up) = &mut self.uplink else {
            return Ok(());
        };
        up.flush(client, now_ts(), self.account.timeout).await?;
        if up.pending() > 0 {
            tracing::warn!(
                pending = up.pending(),
                "stopping with totals the district has not acknowledged"
            );
        }
        Ok(muc::leave(client, &up.room, &up.nick, self.account.timeout).await?)
    }
}

impl Stall for BotError {
    fn is_stall(&self) -> bool {
        matches!(self, BotError::Muc(MucError::Stalled(_)))
    }
}

impl BotWire {
    fn emit(&self, e: BotEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }
}

/// Joins as a plain participant, or leaves again and refuses to run if the room would show
/// us real JIDs (moderator or owner/admin, non-anonymous room, occupant-id): the district
/// uplink's join (the bot's own join is [`BotCore`]'s rule, run by the driver).
///
/// A nickname someone else holds (an impostor, a second bot) is not a reason to give up the
/// neighbourhood: the bot tells its operators once and retries with backoff until it is free.
pub(crate) async fn join_as_participant(
    client: &mut Session,
    room: &BareJid,
    nick: &RoomNick,
    account: &ConnectConfig,
    operators: &[BareJid],
) -> Result<(), BotError> {
    let mut saw_jids = false;
    let mut retries = 0;
    let mut taken: u32 = 0;
    let me = loop {
        let answer = muc::answer_bound(account);
        let joined = join_watching(client, room, nick, answer, &mut saw_jids, drop).await;
        match joined {
            Err(MucError::Timeout(..)) if retries < muc::FRESH_RETRIES => {
                retries += 1;
                tracing::warn!("no answer to the join; retrying on a fresh session");
                connect::renew(client, account).await?;
            }
            Ok(JoinOutcome::Conflict) => {
                if taken == 0 {
                    let text = format!(
                        "my nickname {nick} is taken in {room}: another occupant holds it (an \
                         impostor, or a second bot); meters that pinned my key will not believe \
                         it. Retrying until it is free."
                    );
                    tracing::error!("{text}");
                    for op in operators {
                        let to = op.clone().into();
                        send_chat(
                            client,
                            account.timeout,
                            to,
                            MessageType::Chat,
                            text.clone(),
                            None,
                            None,
                        )
                        .await?;
                    }
                }
                let wait = Duration::from_millis(nick_retry(taken).unsigned_abs());
                taken += 1;
                tokio::time::sleep(wait.mul_f64(rand::random_range(0.5..1.5))).await;
            }
            Ok(JoinOutcome::Joined(me)) => break me,
            Err(e) => return Err(e.into()),
        }
    };
    if taken > 0 {
        tracing::warn!(%room, %nick, attempts = taken, "got our nickname back");
    }
    let refusal = me
        .judged(saw_jids)
        .refusal()
        .map(|why| PrivacyError::refused(room, why));
    if let Some(refusal) = refusal {
        muc::leave(client, room, nick, account.timeout).await?;
        return Err(MucError::from(refusal).into());
    }
    tracing::info!(%room, %nick, "joined as a plain participant");
    Ok(())
}

/// The operator and the command text if `m` is a direct message from a configured operator.
pub(crate) fn operator_command(m: &Message, operators: &[BareJid]) -> Option<(BareJid, String)> {
    let from = m.from.as_ref().map(Jid::to_bare)?;
    if m.type_ != MessageType::Chat && m.type_ != MessageType::Normal {
        return None;
    }
    if !operators.contains(&from) {
        // Not an operator: no answer and, since it might be a house, no address in the log.
        tracing::debug!("ignored a direct message from a non-operator");
        return None;
    }
    let (_, body) = m.get_best_body_cloned(vec![])?;
    Some((from, body))
}

/// Sends a message with a body for people and an optional payload for programs, bounded; with
/// a key, the body is signed so listeners that pinned the bot's key can check who posted it.
pub(crate) async fn send_chat(
    client: &mut Session,
    bound: Duration,
    to: Jid,
    type_: MessageType,
    body: String,
    payload: Option<Element>,
    key: Option<&BotSecretKey>,
) -> Result<(), MucError> {
    let signature = key.map(|k| delivery::post_signature(&body, k));
    let payloads = payload.into_iter().chain(signature).collect();
    let mut m = Message::new_with_type(type_, Some(to)).with_payloads(payloads);
    m.bodies.insert(Lang(String::new()), body);
    muc::send(client, m.into(), bound).await
}

/// The reading a message from an occupant carries, `None` if it carries none; refused if the
/// guard cut or measured it, or if it is sealed but not to `key`. This is the bot's whole decode
/// path after tokio-xmpp's parse, public so `gridmuc bench ingest` measures what the bot runs.
pub fn decode_reading(
    m: &Message,
    id: Option<ReadingId>,
    key: Option<&BotSecretKey>,
    limits: &CodecLimits,
) -> Option<Result<Reading, Rejection>> {
    if let Some(mark) = GuardMark::find(&m.payloads) {
        let limit = limits.max_stanza_bytes;
        if mark.too_deep {
            return Some(Err(Rejection::TooDeep(guard::MAX_STANZA_DEPTH)));
        }
        // The whole stanza as it came over the wire, body and all, not just the payload.
        if let Some(size) = mark.bytes.filter(|&b| b > limit) {
            return Some(Err(Rejection::Oversize { size, limit }));
        }
    }
    let sealed = match (key, id) {
        (Some(key), Some(id)) => delivery::unseal(&m.payloads, id, key),
        _ => None,
    };
    match sealed {
        Some(Ok(fields)) => {
            let mut xml = b"<message xmlns='jabber:client'>".to_vec();
            xml.extend_from_slice(&fields);
            xml.extend_from_slice(b"</message>");
            Some(codec::decode_stanza(&xml, limits))
        }
        Some(Err(e)) => Some(Err(Rejection::Malformed(e.to_string()))),
        None => {
            codec::find_fields(&m.payloads)?;
            Some(codec::decode_payloads(&m.payloads, limits))
        }
    }
}

/// A bot's secret key: the one passed in-process, else the one in `key_file`, logged by its
/// fingerprint so an operator can compare it with what the meters pinned.
pub(crate) fn bot_key(
    key: Option<Arc<BotSecretKey>>,
    key_file: Option<&Path>,
) -> Result<Option<Arc<BotSecretKey>>, BotError> {
    let key = match (key, key_file) {
        (Some(key), _) => Some(key),
        (None, Some(path)) => Some(Arc::new(read_key(path)?)),
        (None, None) => None,
    };
    if let Some(key) = &key {
        tracing::info!(fingerprint = %key.public().fingerprint(), "signing with the bot key");
    }
    Ok(key)
}

/// Writes a secret (a bot key, the Prio3 verify key) readable by its owner only (0600 where
/// the platform has modes), and never over an existing file.
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Reads the bot's secret key from `path` (written by `gridmuc server`).
fn read_key(path: &Path) -> Result<BotSecretKey, BotError> {
    let what = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| BotError::Key(what(), e.to_string()))?;
    BotSecretKey::from_text(&text).map_err(|e| BotError::Key(what(), e.to_string()))
}

/// Stops the metrics responder when the bot returns, however it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The XML of a received stanza, for [`BotEvent::Stanza`] taps in privacy tests.
pub(crate) fn stanza_xml(s: &Stanza) -> String {
    let copy = match s {
        Stanza::Message(m) => Stanza::Message(m.clone()),
        Stanza::Presence(p) => Stanza::Presence(p.clone()),
        Stanza::Iq(i) => Stanza::Iq(i.clone()),
    };
    String::from(&Element::from(copy))
}
