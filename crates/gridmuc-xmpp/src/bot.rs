//! The substation bot: a plain participant that turns room traffic into `gridmuc-core` inputs
//! and the aggregator's summaries and alerts back into messages.
//!
//! It keeps only room nicknames. It refuses to run when its own presence says it could see
//! real JIDs (moderator, owner/admin, non-anonymous room, occupant-id) and never logs the
//! address of anything that is not an operator.

use crate::connect::{self, ConnectConfig, ConnectError};
use crate::metrics::{self, Metrics};
use crate::muc::{self, JoinOutcome, MucError, PrivacyError};
use crate::{instant_at, now_ts};
use futures::StreamExt;
use gridmuc_core::aggregator::Counters;
use gridmuc_core::codec::{self, CodecLimits};
use gridmuc_core::{Aggregator, AggregatorConfig, Alert, AlertKind, IntervalStats, RoomNick};
use minidom::Element;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::{Client, Event, Stanza};
use xmpp_parsers::delay::Delay;
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
    /// Report the XML of every received stanza as [`BotEvent::Stanza`] (tests auditing privacy).
    #[serde(skip)]
    pub tap_stanzas: bool,
    /// Serve Prometheus `/metrics` on this address (off by default); see [`crate::metrics`].
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Use this registry instead of a fresh one, so in-process callers read it directly.
    #[serde(skip)]
    pub registry: Option<Arc<Metrics>>,
}

fn default_nick() -> String {
    "substation".to_owned()
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
            tap_stanzas: false,
            metrics: None,
            registry: None,
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
    /// Another occupant holds the bot's nickname.
    #[error("nickname {0} is taken in the room (another bot running?)")]
    NickTaken(String),
    /// The `/metrics` address could not be bound.
    #[error("cannot serve metrics on {0}: {1}")]
    Metrics(SocketAddr, std::io::Error),
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
    metrics: Arc<Metrics>,
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
    let mut client = connect::connect(&cfg.account).await?;
    let mut bot = Bot {
        room,
        nick,
        operators,
        agg: Aggregator::new(cfg.aggregator),
        limits: CodecLimits::default(),
        post_summaries: cfg.post_summaries,
        tap: cfg.tap_stanzas,
        events,
        timeout: cfg.account.timeout,
        account: cfg.account,
        metrics: registry,
    };
    let result = bot.run(&mut client, shutdown).await;
    connect::close(client).await;
    result.map(|()| BotReport {
        counters: bot.agg.counters().clone(),
    })
}

impl Bot {
    fn emit(&self, e: BotEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    async fn run(
        &mut self,
        client: &mut Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), BotError> {
        self.join(client).await?;
        tokio::pin!(shutdown);
        loop {
            let wake = self
                .agg
                .poll_timeout()
                .map_or_else(|| Instant::now() + Duration::from_secs(3600), instant_at);
            let step = tokio::select! {
                () = &mut shutdown => break,
                event = client.next() => self.on_event(client, event).await,
                () = tokio::time::sleep_until(wake) => {
                    self.agg.handle_timeout(now_ts());
                    self.publish(client).await
                }
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
        Ok(())
    }

    /// Reacts to what the session delivered.
    async fn on_event(
        &mut self,
        client: &mut Client,
        event: Option<Event>,
    ) -> Result<(), BotError> {
        match event {
            None | Some(Event::Disconnected(_)) => Err(MucError::SessionEnded.into()),
            Some(Event::Online { resumed: false, .. }) => {
                tracing::info!("session restarted without resumption; rejoining the room");
                connect::announce(client).await.map_err(MucError::Send)?;
                self.join(client).await
            }
            Some(Event::Online { .. }) => Ok(()),
            Some(Event::Stanza(s)) => self.handle_stanza(client, s).await,
        }
    }

    /// Joins as a plain participant, or refuses to run if the room would show us real JIDs.
    async fn join(&mut self, client: &mut Client) -> Result<(), BotError> {
        let mut saw_jids = false;
        let mut retries = 0;
        let outcome = loop {
            let answer = muc::answer_bound(&self.account);
            let joined = muc::join(client, &self.room, &self.nick, answer, |s| {
                if let Stanza::Presence(p) = &s {
                    saw_jids |= presence_reveals_jid(&p.payloads);
                }
            })
            .await;
            match joined {
                Err(MucError::Timeout(..)) if retries < muc::FRESH_RETRIES => {
                    retries += 1;
                    tracing::warn!("no answer to the join; retrying on a fresh session");
                    connect::renew(client, &self.account).await?;
                }
                other => break other?,
            }
        };
        let me = match outcome {
            JoinOutcome::Conflict => return Err(BotError::NickTaken(self.nick.to_string())),
            JoinOutcome::Joined(me) => me,
        };
        let room = self.room.to_string();
        let refusal = if me.is_privileged() {
            Some(PrivacyError::Privileged {
                room,
                role: format!("{:?}", me.role).to_lowercase(),
                affiliation: format!("{:?}", me.affiliation).to_lowercase(),
            })
        } else if me.non_anonymous || saw_jids {
            Some(PrivacyError::NonAnonymous(room))
        } else if me.occupant_id {
            Some(PrivacyError::OccupantId(room))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            muc::leave(client, &self.room, &self.nick, self.timeout).await?;
            return Err(MucError::from(refusal).into());
        }
        tracing::info!(room = %self.room, nick = %self.nick, "joined as a plain participant");
        self.emit(BotEvent::Joined(self.nick.clone()));
        Ok(())
    }

    async fn handle_stanza(&mut self, client: &mut Client, stanza: Stanza) -> Result<(), BotError> {
        if self.tap {
            self.emit(BotEvent::Stanza(String::from(&Element::from(
                stanza_clone(&stanza),
            ))));
        }
        match stanza {
            Stanza::Message(m) => self.handle_message(client, m).await,
            Stanza::Presence(p) => {
                if presence_reveals_jid(&p.payloads) {
                    // The room changed under us (made non-anonymous or us a moderator): stop.
                    return Err(
                        MucError::from(PrivacyError::NonAnonymous(self.room.to_string())).into(),
                    );
                }
                if muc::nick_in_room(p.from.as_ref(), &self.room).as_ref() == Some(&self.nick)
                    && muc::removed(&p)
                {
                    tracing::warn!("removed from the room; rejoining");
                    self.join(client).await?;
                }
                Ok(())
            }
            Stanza::Iq(_) => Ok(()),
        }
    }

    async fn handle_message(&mut self, client: &mut Client, m: Message) -> Result<(), BotError> {
        if let Some(nick) = muc::nick_in_room(m.from.as_ref(), &self.room) {
            let live = matches!(m.type_, MessageType::Groupchat | MessageType::Chat);
            let delayed = m
                .payloads
                .iter()
                .any(|p| Delay::try_from(p.clone()).is_ok());
            if nick == self.nick || !live || delayed || codec::find_fields(&m.payloads).is_none() {
                return Ok(());
            }
            match codec::decode_payloads(&m.payloads, &self.limits) {
                Ok(reading) => {
                    let (now, seqnr, at) = (now_ts(), reading.seqnr, reading.at);
                    let outcome = self.agg.handle_reading(now, &nick, reading);
                    self.metrics.reading(&nick, seqnr, &outcome, now.since(at));
                }
                Err(rejection) => {
                    tracing::debug!(%nick, reason = rejection.kind(), "reading rejected");
                    self.agg.handle_rejection(&rejection);
                    self.metrics.rejection(&rejection);
                }
            }
            return Ok(());
        }
        let Some(from) = m.from.as_ref().map(Jid::to_bare) else {
            return Ok(());
        };
        if m.type_ != MessageType::Chat && m.type_ != MessageType::Normal {
            return Ok(());
        }
        if !self.operators.contains(&from) {
            // Not an operator: no answer and, since it might be a house, no address in the log.
            tracing::debug!("ignored a direct message from a non-operator");
            return Ok(());
        }
        let Some((_, body)) = m.get_best_body_cloned(vec![]) else {
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
        )
        .await
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
    async fn publish(&mut self, client: &mut Client) -> Result<(), BotError> {
        let now = now_ts();
        let summaries: Vec<IntervalStats> = self.agg.poll_summaries().collect();
        let alerts: Vec<Alert> = self.agg.poll_alerts().collect();
        for stats in summaries {
            if self.post_summaries {
                let to = self.room.clone().into();
                send_chat(
                    client,
                    self.timeout,
                    to,
                    MessageType::Groupchat,
                    summary_line(&stats),
                    None,
                )
                .await?;
            }
            self.metrics.interval();
            let counters = Box::new(self.agg.counters().clone());
            self.emit(BotEvent::Summary {
                stats,
                closed_at: now,
                counters,
            });
        }
        for alert in alerts {
            let body = alert.body();
            let payload = codec::encode_alert(&alert);
            let first: (Jid, MessageType) = match (&alert.nick, alert.kind) {
                // Only the offending occupant hears about it, through the room.
                (Some(nick), AlertKind::HouseSpike) => {
                    (muc::occupant(&self.room, nick)?.into(), MessageType::Chat)
                }
                _ => (self.room.clone().into(), MessageType::Groupchat),
            };
            let operators = self
                .operators
                .iter()
                .map(|op| (op.clone().into(), MessageType::Chat));
            for (to, type_) in std::iter::once(first).chain(operators) {
                send_chat(
                    client,
                    self.timeout,
                    to,
                    type_,
                    body.clone(),
                    Some(payload.clone()),
                )
                .await?;
            }
            tracing::debug!(%body, "alert delivered");
            self.metrics.alert(&alert);
            self.emit(BotEvent::Alert(alert));
        }
        Ok(())
    }
}

/// One line per interval for people in the room.
pub fn summary_line(s: &IntervalStats) -> String {
    format!(
        "interval {}: {} meters, total {}, mean {:.2} kW, p95 {:.2} kW, max {}",
        s.start,
        s.meters,
        s.total,
        s.mean / 1000.0,
        s.p95 / 1000.0,
        s.max
    )
}

async fn send_chat(
    client: &mut Client,
    bound: Duration,
    to: Jid,
    type_: MessageType,
    body: String,
    payload: Option<Element>,
) -> Result<(), BotError> {
    let mut m =
        Message::new_with_type(type_, Some(to)).with_payloads(payload.into_iter().collect());
    m.bodies.insert(Lang(String::new()), body);
    muc::send(client, m.into(), bound).await?;
    Ok(())
}

/// True if a MUC presence carries an item with a real JID: then we are privileged or the room is non-anonymous.
fn presence_reveals_jid(payloads: &[Element]) -> bool {
    payloads
        .iter()
        .filter_map(|e| MucUser::try_from(e.clone()).ok())
        .any(|u| u.items.iter().any(|i| i.jid.is_some()))
}

/// Stops the metrics responder when the bot returns, however it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn stanza_clone(s: &Stanza) -> Stanza {
    match s {
        Stanza::Message(m) => Stanza::Message(m.clone()),
        Stanza::Presence(p) => Stanza::Presence(p.clone()),
        Stanza::Iq(i) => Stanza::Iq(i.clone()),
    }
}
