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
use crate::guard::{self, GuardMark};
use crate::metrics::{self, Metrics};
use crate::muc::{self, JoinOutcome, MucError, PrivacyError, SessionEvent};
use crate::session::Session;
use crate::{instant_at, millis, now_ts};
use delivery::Verdict;
use futures::StreamExt;
use gridmuc_agent::bot::{
    BotCore, BotCoreConfig, BotCoreError, BotEvent as CoreEvent, Input, SelfPresence, To, Transmit,
    Verdict as CoreVerdict, nick_retry,
};
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::aggregator::Counters;
use gridmuc_core::codec::{self, CodecLimits};
use gridmuc_core::{
    AggregatorConfig, Alert, AlertKind, IntervalStats, Reading, ReadingId, Rejection, RoomNick,
    Watts,
};
use minidom::Element;
use rand::TryRngCore;
use rand::rand_core::UnwrapErr;
use rand::rngs::OsRng;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::muc::user::MucUser;

pub use gridmuc_agent::bot::summary_line;

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
    let uplink = cfg.district.map(Uplink::new).transpose()?;
    let limits = CodecLimits {
        max_house_power: Watts::from_kw(cfg.max_power_kw),
        ..CodecLimits::default()
    };
    let registry = cfg.registry.clone().unwrap_or_default();
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
    let key = match (cfg.key, &cfg.key_file) {
        (Some(key), _) => Some(key),
        (None, Some(path)) => Some(Arc::new(read_key(path)?)),
        (None, None) => {
            tracing::warn!(
                "no bot key configured (key_file): verdicts and posts are unsigned, so meters \
                 cannot tell this bot from an occupant that takes its nickname"
            );
            None
        }
    };
    if let Some(key) = &key {
        tracing::info!(fingerprint = %key.public().fingerprint(), "signing with the bot key");
    }
    let core_cfg = BotCoreConfig {
        nick: nick.clone(),
        operators: operators.iter().map(BareJid::to_string).collect(),
        aggregator: cfg.aggregator,
        post_summaries: cfg.post_summaries,
        ping_timeout: millis(connect::ping_bound(cfg.account.timeout)),
    };
    let mut client = connect::connect(&cfg.account).await?;
    let mut driver = Driver {
        core: BotCore::new(core_cfg, OsRng.unwrap_err(), now_ts()),
        room,
        nick,
        operators,
        limits,
        tap: cfg.tap_stanzas,
        events,
        account: cfg.account,
        uplink,
        metrics: registry,
        key,
        join_retries: 0,
    };
    let result = driver.run(&mut client, shutdown).await;
    connect::close(client).await;
    result.map(|()| BotReport {
        counters: driver.core.counters().clone(),
    })
}

/// The I/O half of the bot: stanzas in, [`Transmit`]s out, the district uplink beside.
struct Driver {
    core: BotCore<UnwrapErr<OsRng>>,
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
    /// Joins the room did not answer, in a row.
    join_retries: u32,
}

impl Driver {
    fn emit(&self, e: BotEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    async fn run(
        &mut self,
        client: &mut Session,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), BotError> {
        tokio::pin!(shutdown);
        let interval = Duration::from_millis(
            self.core
                .aggregator()
                .config()
                .interval
                .max(1)
                .unsigned_abs(),
        );
        let mut stopping = false;
        loop {
            self.pump(client).await?;
            if let Some(outcome) = self.core.outcome() {
                return match outcome {
                    Ok(()) => self.leave_district(client).await,
                    Err(e) => Err(self.privacy_error(e)),
                };
            }
            let wake = self
                .core
                .poll_timeout()
                .map_or_else(|| Instant::now() + Duration::from_secs(3600), instant_at);
            // What the session has already delivered is read before due intervals close (a
            // bot resumed after a pause would otherwise close them empty), unless a flood has
            // kept the timer waiting for a whole interval.
            let starved = Instant::now() > wake + interval;
            tokio::select! {
                biased;
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    self.core.handle(now_ts(), Input::Shutdown);
                }
                () = tokio::time::sleep_until(wake), if starved => self.tick(client).await?,
                event = client.next() => match muc::session_event(event)? {
                    SessionEvent::Restarted => {
                        connect::announce(client).await.map_err(MucError::Send)?;
                        self.core.handle(now_ts(), Input::SessionReset);
                    }
                    SessionEvent::Resumed => self.core.handle(now_ts(), Input::Alive),
                    SessionEvent::Stanza(s) => self.on_stanza(client, s)?,
                },
                () = tokio::time::sleep_until(wake) => self.tick(client).await?,
            }
        }
    }

    /// Lets the core close due intervals and watch the session, then sends the district
    /// whatever is due.
    async fn tick(&mut self, client: &mut Session) -> Result<(), BotError> {
        self.core.handle_timeout(now_ts());
        self.pump(client).await?;
        if let Some(up) = &mut self.uplink {
            match up.flush(client, now_ts(), self.account.timeout).await {
                Err(MucError::Stalled(_)) => self.renew(client).await?,
                other => other?,
            }
        }
        Ok(())
    }

    /// Carries out everything the core asks for, then passes its events on (so a summary is
    /// reported after it was posted).
    async fn pump(&mut self, client: &mut Session) -> Result<(), BotError> {
        loop {
            let mut busy = false;
            while let Some(t) = self.core.poll_transmit() {
                busy = true;
                self.transmit(client, t).await?;
            }
            while let Some(e) = self.core.poll_event() {
                busy = true;
                self.on_core_event(e);
            }
            if !busy {
                return Ok(());
            }
        }
    }

    fn on_core_event(&mut self, e: CoreEvent) {
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
            }
            CoreEvent::Unreadable(r) => self.metrics.rejection(&r),
            CoreEvent::Summary {
                stats,
                closed_at,
                counters,
            } => {
                // A revision amends an interval already counted.
                if stats.revision == 0 {
                    self.metrics.interval();
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

    async fn transmit(&mut self, client: &mut Session, t: Transmit) -> Result<(), BotError> {
        let bound = self.account.timeout;
        let key = self.key.clone();
        let sent = match t {
            Transmit::Join(nick) => return self.join(client, nick).await,
            Transmit::Leave(nick) => {
                match muc::leave(client, &self.room, &nick, bound).await {
                    // Nothing left to replace a session for.
                    Err(MucError::Stalled(_)) if self.core.outcome().is_some() => Ok(()),
                    other => other,
                }
            }
            Transmit::Verdict { to, id, verdict } => {
                let verdict = match verdict {
                    CoreVerdict::Accepted => Verdict::Accepted,
                    CoreVerdict::Refused(reason) => Verdict::Refused(reason),
                };
                let to = muc::occupant(&self.room, &to)?;
                let answer = delivery::verdict_message(to, id, &verdict, key.as_deref());
                muc::send(client, answer.into(), bound).await
            }
            Transmit::Post {
                to,
                body,
                alert,
                signed,
            } => {
                let (to, type_): (Jid, MessageType) = match to {
                    To::Room => (self.room.clone().into(), MessageType::Groupchat),
                    To::Occupant(nick) => {
                        (muc::occupant(&self.room, &nick)?.into(), MessageType::Chat)
                    }
                    To::Operator(op) => match BareJid::new(&op) {
                        Ok(jid) => (jid.into(), MessageType::Chat),
                        Err(e) => return Err(BotError::BadJid(op, e.to_string())),
                    },
                };
                let payload = alert.as_ref().map(codec::encode_alert);
                let key = if signed { key.as_deref() } else { None };
                match send_chat(client, bound, to, type_, body, payload, key).await {
                    Err(BotError::Muc(e)) => Err(e),
                    other => return other,
                }
            }
            Transmit::Ping => {
                let wait = connect::ping_bound(self.account.timeout);
                let deadline = Instant::now() + wait;
                match connect::send_ping(client, deadline).await {
                    Some(_) => Ok(()),
                    None => Err(MucError::Stalled(wait)),
                }
            }
            Transmit::RenewSession => return self.renew(client).await,
        };
        match sent {
            Ok(()) => Ok(()),
            Err(MucError::Stalled(_)) => {
                tracing::warn!("session stalled; replacing it and rejoining the room");
                self.renew(client).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the session and tells the core, which rejoins.
    async fn renew(&mut self, client: &mut Session) -> Result<(), BotError> {
        connect::renew(client, &self.account).await?;
        self.core.handle(now_ts(), Input::SessionReset);
        Ok(())
    }

    /// One join attempt; the core judges our self-presence. What arrives before it is handed
    /// to the core after it. Once in, the district room is joined too and its backlog resent.
    async fn join(&mut self, client: &mut Session, nick: RoomNick) -> Result<(), BotError> {
        let mut early = Vec::new();
        let mut saw_jids = false;
        let own = client.bound_jid().cloned();
        let room = self.room.clone();
        let answer = muc::answer_bound(&self.account);
        let joined = muc::join(client, &room, &nick, answer, |s| {
            if let Stanza::Presence(p) = &s
                && from_room(p, &room)
            {
                saw_jids |= presence_reveals_jid(&p.payloads, own.as_ref());
            }
            early.push(s);
        })
        .await;
        match joined {
            Ok(JoinOutcome::Joined(me)) => {
                self.join_retries = 0;
                let privileged = me.is_privileged().then(|| {
                    (
                        format!("{:?}", me.role).to_lowercase(),
                        format!("{:?}", me.affiliation).to_lowercase(),
                    )
                });
                let presence = SelfPresence {
                    privileged,
                    non_anonymous: me.non_anonymous || saw_jids,
                    occupant_id: me.occupant_id,
                };
                self.core.handle(now_ts(), Input::Joined(presence));
            }
            Ok(JoinOutcome::Conflict) => self.core.handle(now_ts(), Input::NickConflict),
            Err(MucError::Reconnected) => self.core.handle(now_ts(), Input::SessionReset),
            Err(MucError::Stalled(_)) => {
                tracing::warn!("session stalled while joining; replacing it");
                self.renew(client).await?;
            }
            Err(MucError::Timeout(..)) if self.join_retries < muc::FRESH_RETRIES => {
                self.join_retries += 1;
                tracing::warn!("no answer to the join; retrying on a fresh session");
                self.renew(client).await?;
            }
            Err(e) => return Err(e.into()),
        }
        // Callers learn that we joined before they see what arrived meanwhile.
        while let Some(e) = self.core.poll_event() {
            self.on_core_event(e);
        }
        for s in early {
            self.on_stanza(client, s)?;
        }
        match self.join_district(client).await {
            Err(BotError::Muc(MucError::Stalled(_))) => {
                tracing::warn!("session stalled; replacing it and rejoining the room");
                self.renew(client).await
            }
            other => other,
        }
    }

    /// Once in the neighbourhood room: the district room too, and its backlog resent.
    async fn join_district(&mut self, client: &mut Session) -> Result<(), BotError> {
        if self.core.in_room()
            && let Some(up) = &mut self.uplink
        {
            join_as_participant(client, &up.room, &up.nick, &self.account, &self.operators).await?;
            up.resend_all();
            up.flush(client, now_ts(), self.account.timeout).await?;
        }
        Ok(())
    }

    /// Turns a stanza into the core's input.
    fn on_stanza(&mut self, client: &Session, stanza: Stanza) -> Result<(), BotError> {
        if self.tap {
            self.emit(BotEvent::Stanza(stanza_xml(&stanza)));
        }
        let input = match stanza {
            Stanza::Message(m) => self.message_input(&m),
            Stanza::Presence(p) => {
                match removed_by_presence(&p, &self.room, &self.nick, client.bound_jid()) {
                    Ok(true) => Input::Removed,
                    Ok(false) => Input::Alive,
                    Err(_) => Input::RoomShowsJids,
                }
            }
            Stanza::Iq(_) => Input::Alive,
        };
        self.core.handle(now_ts(), input);
        Ok(())
    }

    /// What a message means to the core: a reading from an occupant (decoded here), an
    /// operator's command, or only a sign of life (our own post's echo included).
    fn message_input(&mut self, m: &Message) -> Input {
        if self.uplink.as_mut().is_some_and(|up| up.on_message(m)) {
            return Input::Alive;
        }
        if let Some(nick) = muc::nick_in_room(m.from.as_ref(), &self.room) {
            let live = matches!(m.type_, MessageType::Groupchat | MessageType::Chat);
            let delayed = m
                .payloads
                .iter()
                .any(|p| p.is("delay", xmpp_parsers::ns::DELAY));
            if nick == self.nick || !live || delayed {
                return Input::Alive;
            }
            let id = delivery::reading_id(m);
            let Some(reading) = self.decode(m, id) else {
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

    /// The reading a message from an occupant carries (see [`decode_reading`]).
    fn decode(&self, m: &Message, id: Option<ReadingId>) -> Option<Result<Reading, Rejection>> {
        decode_reading(m, id, self.key.as_deref(), &self.limits)
    }

    /// After a clean stop: leave the district room too, saying what it still owes.
    async fn leave_district(&mut self, client: &mut Session) -> Result<(), BotError> {
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
        muc::leave(client, &up.room, &up.nick, self.account.timeout).await?;
        Ok(())
    }

    /// The core's privacy refusal as the error callers know.
    fn privacy_error(&self, e: BotCoreError) -> BotError {
        let name = self.room.to_string();
        let refusal = match e {
            BotCoreError::Privileged { role, affiliation } => PrivacyError::Privileged {
                room: name,
                role,
                affiliation,
            },
            BotCoreError::NonAnonymous => PrivacyError::NonAnonymous(name),
            BotCoreError::OccupantId => PrivacyError::OccupantId(name),
        };
        MucError::from(refusal).into()
    }
}

/// Joins as a plain participant, or leaves again and refuses to run if the room would show
/// us real JIDs (moderator or owner/admin, non-anonymous room, occupant-id): the masked bot's
/// join and the district uplink's (the plain bot's own join is [`BotCore`]'s rule).
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
        let own = client.bound_jid().cloned();
        let joined = muc::join(client, room, nick, answer, |s| {
            if let Stanza::Presence(p) = &s
                && from_room(p, room)
            {
                saw_jids |= presence_reveals_jid(&p.payloads, own.as_ref());
            }
        })
        .await;
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
    let name = room.to_string();
    let refusal = if me.is_privileged() {
        Some(PrivacyError::Privileged {
            room: name,
            role: format!("{:?}", me.role).to_lowercase(),
            affiliation: format!("{:?}", me.affiliation).to_lowercase(),
        })
    } else if me.non_anonymous || saw_jids {
        Some(PrivacyError::NonAnonymous(name))
    } else if me.occupant_id {
        Some(PrivacyError::OccupantId(name))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        muc::leave(client, room, nick, account.timeout).await?;
        return Err(MucError::from(refusal).into());
    }
    tracing::info!(%room, %nick, "joined as a plain participant");
    Ok(())
}

/// Whether a presence from the room says we were removed from it; an error if it shows real
/// JIDs, i.e. the room changed under us (made non-anonymous or us a moderator) and we must stop.
///
/// Only the room speaks for the room: any account can send us a presence carrying a `muc#user`
/// item with someone's JID, and such a presence is ignored.
pub(crate) fn removed_by_presence(
    p: &xmpp_parsers::presence::Presence,
    room: &BareJid,
    nick: &RoomNick,
    own: Option<&FullJid>,
) -> Result<bool, BotError> {
    if !from_room(p, room) {
        tracing::debug!("ignored a presence that does not come from the room");
        return Ok(false);
    }
    if presence_reveals_jid(&p.payloads, own) {
        return Err(MucError::from(PrivacyError::NonAnonymous(room.to_string())).into());
    }
    Ok(muc::nick_in_room(p.from.as_ref(), room).as_ref() == Some(nick) && muc::removed(p))
}

/// Whether a presence comes from the room itself or one of its occupants.
pub(crate) fn from_room(p: &xmpp_parsers::presence::Presence, room: &BareJid) -> bool {
    p.from.as_ref().is_some_and(|f| f.to_bare() == *room)
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

/// Sends one alert: a house spike privately to that nickname through the room, anything
/// else to the room; every alert also to each operator.
pub(crate) async fn deliver_alert(
    client: &mut Session,
    bound: Duration,
    room: &BareJid,
    operators: &[BareJid],
    alert: &Alert,
    key: Option<&BotSecretKey>,
) -> Result<(), BotError> {
    let body = alert.body();
    let payload = codec::encode_alert(alert);
    let first: (Jid, MessageType) = match (&alert.nick, alert.kind) {
        // Only the offending occupant hears about it, through the room.
        (Some(nick), AlertKind::HouseSpike) => {
            (muc::occupant(room, nick)?.into(), MessageType::Chat)
        }
        _ => (room.clone().into(), MessageType::Groupchat),
    };
    let operators = operators
        .iter()
        .map(|op| (op.clone().into(), MessageType::Chat));
    for (to, type_) in std::iter::once(first).chain(operators) {
        send_chat(
            client,
            bound,
            to,
            type_,
            body.clone(),
            Some(payload.clone()),
            key,
        )
        .await?;
    }
    tracing::info!(%body, "alert delivered");
    Ok(())
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
) -> Result<(), BotError> {
    let signature = key.map(|k| delivery::post_signature(&body, k));
    let payloads = payload.into_iter().chain(signature).collect();
    let mut m = Message::new_with_type(type_, Some(to)).with_payloads(payloads);
    m.bodies.insert(Lang(String::new()), body);
    muc::send(client, m.into(), bound).await?;
    Ok(())
}

/// True if a MUC presence shows a real JID other than our own `own`: then we are privileged or
/// the room is non-anonymous.
///
/// Our own JID alone is what Prosody shows an account that is in the room twice under one
/// nickname (a replaced session that has not gone yet, on a busy server); it says nothing
/// about a house, and a non-anonymous room still says so with status code 100.
fn presence_reveals_jid(payloads: &[Element], own: Option<&FullJid>) -> bool {
    let own = own.map(|o| o.to_bare());
    payloads
        .iter()
        .filter_map(|e| MucUser::try_from(e.clone()).ok())
        .any(|u| {
            u.items
                .iter()
                .filter_map(|i| i.jid.as_ref())
                .any(|j| own.as_ref() != Some(&j.to_bare()))
        })
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

/// Reads the bot's secret key from `path` (written by `gridmuc server`).
pub(crate) fn read_key(path: &Path) -> Result<BotSecretKey, BotError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item_with(jid: &str) -> Vec<Element> {
        let x = format!(
            "<x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant' jid='{jid}'/></x>"
        );
        vec![x.parse().unwrap()]
    }

    #[test]
    fn only_the_room_can_say_it_shows_jids_or_removed_us() {
        let room = BareJid::new("hood@rooms.grid.test").unwrap();
        let nick = RoomNick::new("substation").unwrap();
        let own = FullJid::new("bot@grid.test/r").unwrap();
        let spoof = |from: &str| {
            let xml = format!(
                "<presence xmlns='jabber:client' from='{from}' to='bot@grid.test/r'>\
                 <x xmlns='http://jabber.org/protocol/muc#user'>\
                 <item affiliation='none' role='participant' jid='house-999@grid.test/x'/></x></presence>"
            );
            xmpp_parsers::presence::Presence::try_from(xml.parse::<Element>().unwrap()).unwrap()
        };
        // Any account may send this; from outside the room it says nothing.
        assert!(matches!(
            removed_by_presence(&spoof("house-999@grid.test/x"), &room, &nick, Some(&own)),
            Ok(false)
        ));
        assert!(matches!(
            removed_by_presence(
                &spoof("other@rooms.grid.test/substation"),
                &room,
                &nick,
                Some(&own)
            ),
            Ok(false)
        ));
        // From the room it means the room shows real JIDs: stop.
        assert!(
            removed_by_presence(
                &spoof("hood@rooms.grid.test/amber-otter-1"),
                &room,
                &nick,
                Some(&own)
            )
            .is_err()
        );
    }

    #[test]
    fn only_a_jid_other_than_our_own_reveals_anything() {
        let own = FullJid::new("bot@grid.test/new").unwrap();
        // A second session of our own account under our nickname.
        assert!(!presence_reveals_jid(
            &item_with("bot@grid.test/old"),
            Some(&own)
        ));
        assert!(presence_reveals_jid(
            &item_with("house7@homes.test/meter"),
            Some(&own)
        ));
        // Before we know who we are, any JID counts.
        assert!(presence_reveals_jid(&item_with("bot@grid.test/old"), None));
        let anonymous: Vec<Element> = vec![
            "<x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant'/></x>"
                .parse()
                .unwrap(),
        ];
        assert!(!presence_reveals_jid(&anonymous, Some(&own)));
    }
}
