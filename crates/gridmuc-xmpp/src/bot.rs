//! The substation bot: a plain participant that turns room traffic into `gridmuc-core` inputs
//! and the aggregator's summaries and alerts back into messages.
//!
//! It keeps only room nicknames. It refuses to run when its own presence says it could see
//! real JIDs (moderator, owner/admin, non-anonymous room, occupant-id) and never logs the
//! address of anything that is not an operator.

use crate::connect::{self, ConnectConfig, ConnectError};
use crate::delivery;
use crate::district::{DistrictConfig, Uplink};
use crate::guard::{self, GuardMark};
use crate::liveness::Liveness;
use crate::metrics::{self, Metrics};
use crate::muc::{self, JoinOutcome, MucError, PrivacyError, SessionEvent};
use crate::session::Session;
use crate::{instant_at, now_ts};
use delivery::Verdict;
use futures::StreamExt;
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::aggregator::Counters;
use gridmuc_core::aggregator::Ingest;
use gridmuc_core::codec::{self, CodecLimits};
use gridmuc_core::{
    Aggregator, AggregatorConfig, Alert, AlertKind, IntervalStats, Reading, ReadingId, Rejection,
    RejectionCounts, RoomNick, Watts,
};
use minidom::Element;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::{Event, Stanza};
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::muc::user::MucUser;

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

struct Bot {
    room: BareJid,
    nick: RoomNick,
    operators: Vec<BareJid>,
    agg: Aggregator,
    limits: CodecLimits,
    post_summaries: bool,
    tap: bool,
    events: Option<mpsc::UnboundedSender<BotEvent>>,
    timeout: Duration,
    account: ConnectConfig,
    uplink: Option<Uplink>,
    metrics: Arc<Metrics>,
    /// Catches a session that stops delivering while it still sends (tokio-xmpp 6).
    liveness: Liveness,
    /// Signs verdicts and posts, opens sealed readings.
    key: Option<Arc<BotSecretKey>>,
    /// Nicknames already told of in the log for reporting faster than the interval.
    rate_warned: HashSet<RoomNick>,
    /// Refusals already logged, so each interval's line names only the new ones.
    refusals_logged: RejectionCounts,
    /// Nicknames already told `rate_limited` since the last interval closed.
    rate_answered: HashSet<RoomNick>,
}

/// Nicknames remembered for the once-per-nickname rate warning before the set starts afresh.
const RATE_WARNED_CAP: usize = 10_000;

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
    let interval = Duration::from_millis(cfg.aggregator.interval.max(1).unsigned_abs());
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
    let mut client = connect::connect(&cfg.account).await?;
    let mut bot = Bot {
        room,
        nick,
        operators,
        agg: Aggregator::new(cfg.aggregator),
        limits,
        post_summaries: cfg.post_summaries,
        tap: cfg.tap_stanzas,
        events,
        timeout: cfg.account.timeout,
        account: cfg.account,
        uplink,
        metrics: registry,
        liveness: Liveness::new(interval * 3 / 2),
        key,
        rate_warned: HashSet::new(),
        refusals_logged: RejectionCounts::default(),
        rate_answered: HashSet::new(),
    };
    let result = bot.run(&mut client, shutdown).await;
    connect::close(client).await;
    result.map(|()| BotReport {
        counters: bot.agg.counters().clone(),
    })
}

impl Bot {
    /// How long our own room post may take to echo back: half an interval, at least 2 s.
    fn echo_bound(&self) -> Duration {
        let interval = Duration::from_millis(self.agg.config().interval.unsigned_abs());
        (interval / 2).max(Duration::from_secs(2))
    }

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
        self.join(client).await?;
        tokio::pin!(shutdown);
        let interval = Duration::from_millis(self.agg.config().interval.max(1).unsigned_abs());
        loop {
            let wake = self
                .agg
                .poll_timeout()
                .map_or_else(|| Instant::now() + Duration::from_secs(3600), instant_at)
                .min(self.liveness.deadline());
            // What the session has already delivered is read before due intervals close (a
            // bot resumed after a pause would otherwise close them empty), unless a flood has
            // kept the timer waiting for a whole interval.
            let starved = Instant::now() > wake + interval;
            let step = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(wake), if starved => self.tick(client).await,
                event = client.next() => {
                    self.liveness.heard();
                    self.on_event(client, event).await
                }
                () = tokio::time::sleep_until(wake) => self.tick(client).await,
            };
            match step {
                Ok(()) => {}
                Err(BotError::Muc(MucError::Stalled(_))) => {
                    tracing::warn!("session stalled; replacing it and rejoining the room");
                    connect::renew(client, &self.account).await?;
                    self.join(client).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.agg.flush();
        self.publish(client).await?;
        muc::leave(client, &self.room, &self.nick, self.timeout).await?;
        if let Some(up) = &self.uplink {
            if up.pending() > 0 {
                tracing::warn!(
                    pending = up.pending(),
                    "stopping with totals the district has not acknowledged"
                );
            }
            muc::leave(client, &up.room, &up.nick, self.timeout).await?;
        }
        Ok(())
    }

    /// Closes due intervals and publishes them, after making sure the session still delivers.
    async fn tick(&mut self, client: &mut Session) -> Result<(), BotError> {
        if self.liveness.check(client, &self.account).await? {
            self.join(client).await?;
        }
        self.agg.handle_timeout(now_ts());
        self.publish(client).await
    }

    /// Reacts to what the session delivered.
    async fn on_event(
        &mut self,
        client: &mut Session,
        event: Option<Event>,
    ) -> Result<(), BotError> {
        match muc::session_event(event)? {
            SessionEvent::Restarted => {
                connect::announce(client).await.map_err(MucError::Send)?;
                self.join(client).await
            }
            SessionEvent::Resumed => Ok(()),
            SessionEvent::Stanza(s) => self.handle_stanza(client, s).await,
        }
    }

    /// Joins the neighbourhood room (and the district room, if any) and resends what the
    /// district has not acknowledged.
    async fn join(&mut self, client: &mut Session) -> Result<(), BotError> {
        join_as_participant(
            client,
            &self.room,
            &self.nick,
            &self.account,
            &self.operators,
        )
        .await?;
        // The room answered: whatever an earlier session owed us is moot.
        self.liveness.heard();
        self.emit(BotEvent::Joined(self.nick.clone()));
        if let Some(up) = &mut self.uplink {
            join_as_participant(client, &up.room, &up.nick, &self.account, &self.operators).await?;
            up.resend_all();
            up.flush(client, now_ts(), self.timeout).await?;
        }
        Ok(())
    }

    async fn handle_stanza(
        &mut self,
        client: &mut Session,
        stanza: Stanza,
    ) -> Result<(), BotError> {
        if self.tap {
            self.emit(BotEvent::Stanza(stanza_xml(&stanza)));
        }
        match stanza {
            Stanza::Message(m) => self.handle_message(client, m).await,
            Stanza::Presence(p) => {
                if removed_by_presence(&p, &self.room, &self.nick, client.bound_jid())? {
                    tracing::warn!("removed from the room; rejoining");
                    self.join(client).await?;
                }
                Ok(())
            }
            Stanza::Iq(_) => Ok(()),
        }
    }

    async fn handle_message(&mut self, client: &mut Session, m: Message) -> Result<(), BotError> {
        if self.uplink.as_mut().is_some_and(|up| up.on_message(&m)) {
            return Ok(());
        }
        if let Some(nick) = muc::nick_in_room(m.from.as_ref(), &self.room) {
            let live = matches!(m.type_, MessageType::Groupchat | MessageType::Chat);
            let delayed = m
                .payloads
                .iter()
                .any(|p| p.is("delay", xmpp_parsers::ns::DELAY));
            if nick == self.nick || !live || delayed {
                return Ok(());
            }
            let id = delivery::reading_id(&m);
            let Some(decoded) = self.decode(&m, id) else {
                return Ok(());
            };
            let verdict = match decoded {
                Ok(reading) => {
                    let (now, seqnr, at) = (now_ts(), reading.seqnr, reading.at);
                    let outcome = match id {
                        Some(id) => self.agg.handle_reading_once(now, &nick, id, reading),
                        None => self.agg.handle_reading(now, &nick, reading),
                    };
                    self.metrics.reading(&nick, seqnr, &outcome, now.since(at));
                    match outcome {
                        // A resent copy of a counted reading: counted, so the sender may forget it.
                        Ingest::Accepted | Ingest::Rejected(Rejection::Duplicate) => {
                            Verdict::Accepted
                        }
                        Ingest::Rejected(r) => {
                            if r == Rejection::RateLimited {
                                self.warn_rate_limited(&nick);
                            }
                            tracing::debug!(%nick, reason = r.kind(), "reading refused");
                            Verdict::Refused(r.kind().to_owned())
                        }
                    }
                }
                Err(rejection) => {
                    tracing::debug!(%nick, reason = rejection.kind(), "reading refused");
                    self.agg.handle_rejection(&rejection);
                    self.metrics.rejection(&rejection);
                    Verdict::Refused(rejection.kind().to_owned())
                }
            };
            // Direct readings get the verdict: a receipt only if counted, a refusal with its
            // reason otherwise, so the meter neither forgets a refused reading silently nor
            // resends one that will meet the same verdict. In the room, the reflection is the
            // sender's receipt.
            let wants_receipt =
                m.type_ == MessageType::Chat && delivery::wants_receipt(&m.payloads);
            // A flood is not answered reading for reading: one rate_limited refusal per
            // nickname and interval tells an honest sender to slow down.
            let flood = verdict == Verdict::Refused(Rejection::RateLimited.kind().to_owned())
                && !self.rate_answered.insert(nick.clone());
            if let (Some(id), true, false) = (id, wants_receipt, flood) {
                let to = muc::occupant(&self.room, &nick)?;
                let answer = delivery::verdict_message(to, id, &verdict, self.key.as_deref());
                muc::send(client, answer.into(), self.timeout).await?;
            }
            return Ok(());
        }
        let Some((from, body)) = operator_command(&m, &self.operators) else {
            return Ok(());
        };
        let reply = self.answer(body.trim());
        send_chat(
            client,
            self.timeout,
            from.into(),
            MessageType::Chat,
            reply,
            None,
            self.key.as_deref(),
        )
        .await
    }

    /// The reading a message from an occupant carries, `None` if it carries none; refused if
    /// the guard cut or measured it, or if it is sealed but not to our key.
    fn decode(&self, m: &Message, id: Option<ReadingId>) -> Option<Result<Reading, Rejection>> {
        if let Some(mark) = GuardMark::find(&m.payloads) {
            let limit = self.limits.max_stanza_bytes;
            if mark.too_deep {
                return Some(Err(Rejection::TooDeep(guard::MAX_STANZA_DEPTH)));
            }
            // The whole stanza as it came over the wire, body and all, not just the payload.
            if let Some(size) = mark.bytes.filter(|&b| b > limit) {
                return Some(Err(Rejection::Oversize { size, limit }));
            }
        }
        let sealed = match (&self.key, id) {
            (Some(key), Some(id)) => delivery::unseal(&m.payloads, id, key),
            _ => None,
        };
        match sealed {
            Some(Ok(fields)) => {
                let mut xml = b"<message xmlns='jabber:client'>".to_vec();
                xml.extend_from_slice(&fields);
                xml.extend_from_slice(b"</message>");
                Some(codec::decode_stanza(&xml, &self.limits))
            }
            Some(Err(e)) => Some(Err(Rejection::Malformed(e.to_string()))),
            None => {
                codec::find_fields(&m.payloads)?;
                Some(codec::decode_payloads(&m.payloads, &self.limits))
            }
        }
    }

    /// One log line per interval at the default level: its summary (if anyone reported) and the
    /// refusals since the previous one by reason, however many readings a flood brings.
    fn log_interval(&mut self, stats: &IntervalStats) {
        if stats.meters > 0 {
            tracing::info!("{}", summary_line(stats));
        }
        let counts = &self.agg.counters().rejected;
        let fresh: Vec<String> = counts
            .iter()
            .map(|(kind, n)| (kind, n - self.refusals_logged.get(kind)))
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        if !fresh.is_empty() {
            tracing::info!(refused = %fresh.join(", "), "readings refused since the last interval");
        }
        self.refusals_logged = counts.clone();
    }

    /// Says once per nickname that it reports faster than the interval, so a third-party meter
    /// configured for 1-s readings under a 60-s bot is noticed rather than silently thinned.
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
    fn answer(&self, command: &str) -> String {
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

    /// Posts what the aggregator produced: summaries and alerts to the room, house alerts privately.
    async fn publish(&mut self, client: &mut Session) -> Result<(), BotError> {
        let now = now_ts();
        let summaries: Vec<IntervalStats> = self.agg.poll_summaries().collect();
        let alerts: Vec<Alert> = self.agg.poll_alerts().collect();
        for stats in summaries {
            // An interval nobody reported in says nothing worth a line in the room.
            if self.post_summaries && stats.meters > 0 {
                let to = self.room.clone().into();
                // Our own post echoes back from the room; if it does not, the session is probed.
                self.liveness.posted(self.echo_bound());
                send_chat(
                    client,
                    self.timeout,
                    to,
                    MessageType::Groupchat,
                    summary_line(&stats),
                    None,
                    self.key.as_deref(),
                )
                .await?;
            }
            if let Some(up) = &mut self.uplink {
                up.queue(&stats);
            }
            // A revision amends an interval already counted.
            if stats.revision == 0 {
                self.metrics.interval();
                self.log_interval(&stats);
                self.rate_answered.clear();
            }
            let counters = Box::new(self.agg.counters().clone());
            self.emit(BotEvent::Summary {
                stats,
                closed_at: now,
                counters,
            });
        }
        for alert in alerts {
            let (room, ops, key) = (&self.room, &self.operators, self.key.as_deref());
            deliver_alert(client, self.timeout, room, ops, &alert, key).await?;
            self.metrics.alert(&alert);
            self.emit(BotEvent::Alert(alert));
        }
        if let Some(up) = &mut self.uplink {
            up.flush(client, now, self.timeout).await?;
        }
        Ok(())
    }
}

/// Joins as a plain participant, or leaves again and refuses to run if the room would show
/// us real JIDs (moderator or owner/admin, non-anonymous room, occupant-id).
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
                let wait = NICK_RETRY_FIRST * 2u32.pow(taken.min(6));
                taken += 1;
                tokio::time::sleep(
                    wait.min(NICK_RETRY_MAX)
                        .mul_f64(rand::random_range(0.5..1.5)),
                )
                .await;
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

/// First wait before asking again for a nickname someone else holds.
const NICK_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between attempts for a taken nickname.
const NICK_RETRY_MAX: Duration = Duration::from_secs(60);

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
