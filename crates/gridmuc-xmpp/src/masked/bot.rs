//! The masked substation bot: enrols cohorts, routes key shares, collects masked readings,
//! unmasks each round's sum and runs the neighbourhood detectors on the sums only.
//!
//! Per-house detection is off by construction (the bot never holds a per-house value); the
//! bot says so when it joins, in every summary line and in its logs. Like the plain bot it
//! keeps only room nicknames and refuses to run with privileges.

use super::{DpSettings, MaskPayload, round_of, round_start};
use crate::bot::{self as plain, BotConfig, BotError};
use crate::connect::{self, ConnectConfig};
use crate::driver::room_presence;
use crate::liveness::Liveness;
use crate::muc::{self, MucError, PrivacyError, SessionEvent};
use crate::session::Session;
use crate::{instant_at, now_ts};
use futures::StreamExt;
use gridmuc_agent::RoomInput;
use gridmuc_core::{Alert, IntervalTotal, RoomNick, Timestamp, TotalIngest, TotalsMonitor, Watts};
use gridmuc_mask::wire::KEY_LEN;
use gridmuc_mask::{DpConfig, MIN_COHORT, MaskError, MaskMessage, MaskedAggregator, RoundSum};
use rand::rngs::OsRng;
use rand::{CryptoRng, TryRngCore};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::{Event, Stanza};
use xmpp_parsers::delay::Delay;
use xmpp_parsers::message::{Message, MessageType};

/// What people in the room are told when the bot joins, and what it logs.
pub const MASKED_NOTICE: &str = "masked mode: this substation learns only the neighbourhood sum of each interval; \
     per-house detection (house-spike alerts) is OFF; overload and aggregate-spike detection run on the sums";

/// The masked bot's settings: the plain bot's plus the enrolment and unmask timing.
#[derive(Clone, Debug)]
pub struct MaskedBotConfig {
    /// Account, room, nickname, operators, interval/grace and the overload, spike and policy
    /// settings (its per-house outlier settings do not apply), summaries, stanza tap.
    pub bot: BotConfig,
    /// How long keys are collected after an enrolment call before the roster is posted;
    /// while keys keep arriving (meters still joining) the bot waits for a pause of half
    /// this, up to four windows in all.
    pub key_window: Duration,
    /// How long share uploads are awaited after the roster before bundles are routed.
    pub share_window: Duration,
    /// How long unmask answers are awaited after a round's unmask request.
    pub unmask_timeout: Duration,
    /// Rounds a cohort masks before the bot calls a new enrolment (and nicknames rotate).
    pub cohort_rounds: u64,
    /// Smallest cohort the bot forms; with fewer keys it keeps waiting (at least 3).
    pub min_cohort: usize,
    /// DP setting the meters use, to report the noise level of each sum.
    pub dp: Option<DpSettings>,
}

impl MaskedBotConfig {
    /// Timing scaled to the bot's interval: two intervals for keys, two for shares, one for
    /// unmask answers, and 60 rounds per cohort.
    pub fn new(bot: BotConfig) -> MaskedBotConfig {
        let interval = interval_of(&bot);
        MaskedBotConfig {
            bot,
            key_window: interval * 2,
            share_window: interval * 2,
            unmask_timeout: interval,
            cohort_rounds: 60,
            min_cohort: MIN_COHORT,
            dp: None,
        }
    }
}

fn interval_of(bot: &BotConfig) -> Duration {
    Duration::from_millis(bot.aggregator.interval.max(1).unsigned_abs())
}

/// What the masked bot tells its caller (demo view, tests).
#[derive(Clone, Debug)]
pub enum MaskedBotEvent {
    /// In the room as a plain participant, masked-mode notice posted.
    Joined(RoomNick),
    /// A cohort completed enrolment.
    Enrolled {
        /// Members whose shares were routed.
        members: usize,
        /// Keys in the roster.
        roster: usize,
        /// First round the cohort masks.
        first_round: u64,
    },
    /// A round was unmasked: the neighbourhood sum and how many meters are in it.
    Sum {
        /// Round (interval index).
        round: u64,
        /// The interval's total and meter count.
        total: IntervalTotal,
        /// Cohort size the survivors came from.
        enrolled: u16,
        /// Standard deviation of the DP noise in the sum, if DP is on.
        noise_sd: Option<Watts>,
        /// When the bot had it (for latency after the interval's end).
        closed_at: Timestamp,
    },
    /// A round produced no sum.
    RoundFailed {
        /// Round.
        round: u64,
        /// Why, for people.
        reason: String,
    },
    /// An alert was raised or cleared and delivered.
    Alert(Alert),
    /// XML of a received stanza, when the stanza tap is on.
    Stanza(String),
}

/// Totals when the masked bot stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskedBotReport {
    /// Cohorts enrolled.
    pub cohorts: u64,
    /// Masked readings taken into a round.
    pub accepted: u64,
    /// Masked-mode messages refused (wrong nickname or index, malformed, wrong phase …).
    pub rejected: u64,
    /// Masked readings in no sum because they came after their round's unmask request or
    /// after their cohort ended (sent just before the meter saw the new enrolment call).
    pub late: u64,
    /// Rounds unmasked into a sum.
    pub sums: u64,
    /// Rounds that produced no sum (too many dropouts, missing answers).
    pub failed_rounds: u64,
    /// Alerts raised.
    pub alerts: u64,
}

/// One cohort: its aggregator, who is in it (by roster index) and which rounds it covers.
struct Cohort {
    id: [u8; 16],
    agg: MaskedAggregator,
    nicks: Vec<RoomNick>,
    /// Roster indices whose share upload arrived, so routing need not wait for the deadline.
    uploaded: Vec<bool>,
    first_round: u64,
    /// Set when a new enrolment is called; no rounds after it.
    last_round: Option<u64>,
    /// Latest round whose survivor set is fixed; values for it or earlier are late.
    closed_upto: Option<u64>,
}

impl Cohort {
    fn covers(&self, round: u64) -> bool {
        round >= self.first_round && self.last_round.is_none_or(|last| round <= last)
    }

    fn uploaded(&mut self, index: u16) {
        if let Some(u) = self.uploaded.get_mut(usize::from(index)) {
            *u = true;
        }
    }

    fn all_uploaded(&self) -> bool {
        self.uploaded.iter().all(|u| *u)
    }

    fn index_of(&self, nick: &RoomNick) -> Option<u16> {
        self.nicks
            .iter()
            .position(|n| n == nick)
            .and_then(|i| u16::try_from(i).ok())
    }
}

/// Where enrolment stands.
enum Enrolment {
    /// A cohort is running (or none yet and none due).
    Idle,
    /// Enrolment called; keys are collected until the deadline.
    Keys(Instant),
    /// Roster posted; uploads are collected until the deadline.
    Shares(Box<Cohort>, Instant),
}

/// A round whose unmask request is out.
struct Unmasking {
    cohort: [u8; 16],
    round: u64,
    deadline: Instant,
}

struct MaskedBot {
    cfg: MaskedBotConfig,
    dp: Option<DpConfig>,
    room: BareJid,
    room_bytes: Vec<u8>,
    nick: RoomNick,
    operators: Vec<BareJid>,
    interval: Duration,
    grace: Duration,
    events: Option<mpsc::UnboundedSender<MaskedBotEvent>>,
    report: MaskedBotReport,
    monitor: TotalsMonitor,
    /// Keys announced for the next cohort, in arrival order.
    pending: Vec<(RoomNick, [u8; KEY_LEN])>,
    /// Running cohorts: the current one last, retired ones until their last round is done.
    cohorts: Vec<Cohort>,
    enrolment: Enrolment,
    /// When the running enrolment was called and when its latest key arrived.
    called_at: Instant,
    last_key_at: Instant,
    /// The next round of the current cohort to ask the unmask for.
    next_round: Option<u64>,
    /// Our own posts echo back every round; silence or a missing echo gets the session probed.
    liveness: Liveness,
    unmasking: Vec<Unmasking>,
}

/// Runs the masked bot until `shutdown` resolves.
pub async fn run_masked_bot(
    cfg: MaskedBotConfig,
    events: Option<mpsc::UnboundedSender<MaskedBotEvent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<MaskedBotReport, BotError> {
    let b = &cfg.bot;
    let room =
        BareJid::new(&b.room).map_err(|e| BotError::BadJid(b.room.clone(), e.to_string()))?;
    let nick = RoomNick::new(b.nick.as_str())
        .map_err(|e| BotError::BadJid(b.nick.clone(), e.to_string()))?;
    let operators = b
        .operators
        .iter()
        .map(|o| BareJid::new(o).map_err(|e| BotError::BadJid(o.clone(), e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let dp = cfg
        .dp
        .map(DpSettings::to_config)
        .transpose()
        .map_err(|e| BotError::BadSetting("dp", e.to_string()))?;
    let mut client = connect::connect(&b.account).await?;
    let mut bot = MaskedBot {
        dp,
        room_bytes: room.to_string().into_bytes(),
        room,
        nick,
        operators,
        interval: interval_of(b),
        grace: Duration::from_millis(b.aggregator.grace.max(0).unsigned_abs()),
        events,
        report: MaskedBotReport::default(),
        monitor: TotalsMonitor::new(&b.aggregator),
        pending: Vec::new(),
        cohorts: Vec::new(),
        enrolment: Enrolment::Idle,
        called_at: Instant::now(),
        last_key_at: Instant::now(),
        next_round: None,
        liveness: Liveness::new(interval_of(b) * 3 / 2),
        unmasking: Vec::new(),
        cfg,
    };
    let mut rng = OsRng.unwrap_err();
    let result = bot.run(&mut client, &mut rng, shutdown).await;
    connect::close(client).await;
    result.map(|()| bot.report)
}

impl MaskedBot {
    fn emit(&self, e: MaskedBotEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    fn account(&self) -> &ConnectConfig {
        &self.cfg.bot.account
    }

    fn timeout(&self) -> Duration {
        self.cfg.bot.account.timeout
    }

    async fn run<R: CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), BotError> {
        self.join(client).await?;
        tracing::info!("{MASKED_NOTICE}");
        self.call_enrolment(client).await?;
        tokio::pin!(shutdown);
        loop {
            let wake = self.wake();
            let step = tokio::select! {
                () = &mut shutdown => break,
                event = client.next() => {
                    self.liveness.heard();
                    self.on_event(client, event).await
                }
                () = tokio::time::sleep_until(wake) => self.tick(client, rng).await,
            };
            match step {
                Ok(()) => {}
                Err(BotError::Muc(MucError::Stalled(_))) => {
                    tracing::warn!("session stalled; replacing it and rejoining the room");
                    connect::renew(client, self.account()).await?;
                    self.join(client).await?;
                }
                Err(e) => return Err(e),
            }
        }
        muc::leave(client, &self.room, &self.nick, self.timeout()).await?;
        Ok(())
    }

    async fn join(&mut self, client: &mut Session) -> Result<(), BotError> {
        plain::join_as_participant(
            client,
            &self.room,
            &self.nick,
            self.account(),
            &self.operators,
        )
        .await?;
        // The room answered: whatever an earlier session owed us is moot.
        self.liveness.heard();
        self.groupchat(client, MASKED_NOTICE.to_owned(), None)
            .await?;
        self.emit(MaskedBotEvent::Joined(self.nick.clone()));
        Ok(())
    }

    async fn groupchat(
        &mut self,
        client: &mut Session,
        body: String,
        payload: Option<minidom::Element>,
    ) -> Result<(), BotError> {
        self.liveness
            .posted((self.interval / 2).max(Duration::from_secs(2)));
        let to = self.room.clone().into();
        plain::send_chat(
            client,
            self.timeout(),
            to,
            MessageType::Groupchat,
            body,
            payload,
            None,
        )
        .await?;
        Ok(())
    }

    /// The earliest of: enrolment deadline, next unmask request, unmask answer deadline.
    fn wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let enrol = match &self.enrolment {
            Enrolment::Idle => far,
            Enrolment::Keys(at) | Enrolment::Shares(_, at) => *at,
        };
        let request = self.next_round.map_or(far, |r| self.request_at(r));
        let answers = self
            .unmasking
            .iter()
            .map(|u| u.deadline)
            .min()
            .unwrap_or(far);
        enrol
            .min(request)
            .min(answers)
            .min(self.liveness.deadline())
    }

    /// When round `r`'s unmask request is due: its end plus the grace time.
    fn request_at(&self, round: u64) -> Instant {
        let end = round_start(round + 1, self.interval);
        instant_at(end.plus(i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)))
    }

    async fn tick<R: CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
    ) -> Result<(), BotError> {
        if self.liveness.check(client, &self.cfg.bot.account).await? {
            self.join(client).await?;
            // Keys or share uploads may have died with the old session: enrol again (waiting
            // meters repeat their key, enrolling ones rotate).
            if !matches!(self.enrolment, Enrolment::Idle) {
                self.call_enrolment(client).await?;
            }
        }
        let now = Instant::now();
        match &self.enrolment {
            Enrolment::Keys(at) if *at <= now => self.close_keys(client, rng).await?,
            Enrolment::Shares(_, at) if *at <= now => self.route_shares(client).await?,
            _ => {}
        }
        while let Some(round) = self
            .next_round
            .filter(|&r| self.request_at(r) <= Instant::now())
        {
            self.request_unmask(client, round).await?;
        }
        let expired: Vec<Unmasking> = {
            let (gone, keep) = std::mem::take(&mut self.unmasking)
                .into_iter()
                .partition(|u| u.deadline <= now);
            self.unmasking = keep;
            gone
        };
        for u in expired {
            self.fail_round(u.round, "unmask answers missing at the deadline".to_owned());
        }
        Ok(())
    }

    /// Posts the enrolment call and starts collecting keys.
    async fn call_enrolment(&mut self, client: &mut Session) -> Result<(), BotError> {
        let body = "masked mode: enrolment of a new cohort; meters rotate their nicknames and announce fresh keys".to_owned();
        self.groupchat(client, body, Some(super::rekey_element()))
            .await?;
        self.called_at = Instant::now();
        self.enrolment = Enrolment::Keys(self.called_at + self.cfg.key_window);
        tracing::info!("enrolment called; collecting keys");
        Ok(())
    }

    /// Key window over: post the roster of all queued keys, or keep waiting for enough.
    async fn close_keys<R: CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
    ) -> Result<(), BotError> {
        let now = Instant::now();
        let quiet = self.cfg.key_window / 2;
        if now < self.last_key_at + quiet && now < self.called_at + self.cfg.key_window * 4 {
            // Keys still arriving (meters joining): wait until they pause, within a bound.
            self.enrolment = Enrolment::Keys(self.last_key_at + quiet);
            return Ok(());
        }
        let needed = self.cfg.min_cohort.max(MIN_COHORT);
        if self.pending.len() < needed {
            tracing::info!(
                keys = self.pending.len(),
                needed,
                "too few keys for a cohort; still collecting"
            );
            self.enrolment = Enrolment::Keys(Instant::now() + self.cfg.key_window);
            return Ok(());
        }
        let mut agg = MaskedAggregator::new(rng, &self.room_bytes, self.dp);
        let mut nicks = Vec::new();
        for (nick, key) in std::mem::take(&mut self.pending) {
            let announcement = gridmuc_mask::KeyAnnouncement { key };
            if agg.handle_key(&announcement).is_ok() {
                nicks.push(nick);
            }
        }
        let roster = match agg.close_enrollment() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not close enrolment; calling a new one");
                return self.call_enrolment(client).await;
            }
        };
        let ready =
            now_ts().plus(i64::try_from(self.cfg.share_window.as_millis()).unwrap_or(i64::MAX));
        let first_round = round_of(ready, self.interval) + 1;
        let body = format!(
            "masked mode: cohort of {} meters enrolled; masked readings from the interval starting {}",
            roster.keys.len(),
            round_start(first_round, self.interval)
        );
        let payload = super::encode(&MaskPayload {
            message: MaskMessage::Roster(roster.clone()),
            cohort: Some(roster.cohort),
            first_round: Some(first_round),
        });
        self.groupchat(client, body, Some(payload)).await?;
        tracing::info!(members = roster.keys.len(), first_round, "roster posted");
        let cohort = Cohort {
            id: roster.cohort,
            agg,
            uploaded: vec![false; nicks.len()],
            nicks,
            first_round,
            last_round: None,
            closed_upto: None,
        };
        self.enrolment =
            Enrolment::Shares(Box::new(cohort), Instant::now() + self.cfg.share_window);
        Ok(())
    }

    /// Share window over (or every member uploaded): route the bundles and start masking.
    async fn route_shares(&mut self, client: &mut Session) -> Result<(), BotError> {
        let Enrolment::Shares(mut cohort, _) =
            std::mem::replace(&mut self.enrolment, Enrolment::Idle)
        else {
            return Ok(());
        };
        let bundles = match cohort.agg.share_bundles() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "enrolment failed; calling a new one");
                return self.call_enrolment(client).await;
            }
        };
        for bundle in &bundles {
            let Some(nick) = cohort.nicks.get(usize::from(bundle.to)) else {
                continue;
            };
            let to: Jid = muc::occupant(&self.room, nick)?.into();
            let payload = super::encode(&MaskPayload {
                message: MaskMessage::Bundle(bundle.clone()),
                cohort: Some(cohort.id),
                first_round: None,
            });
            let body = "masked mode: key shares sealed to you".to_owned();
            plain::send_chat(
                client,
                self.timeout(),
                to,
                MessageType::Chat,
                body,
                Some(payload),
                None,
            )
            .await?;
        }
        self.report.cohorts += 1;
        tracing::info!(
            members = bundles.len(),
            roster = cohort.nicks.len(),
            first_round = cohort.first_round,
            "cohort enrolled"
        );
        self.emit(MaskedBotEvent::Enrolled {
            members: bundles.len(),
            roster: cohort.nicks.len(),
            first_round: cohort.first_round,
        });
        self.next_round = Some(cohort.first_round);
        self.drop_retired();
        self.cohorts.push(*cohort);
        Ok(())
    }

    /// Round `round`'s grace is over: post its survivor set, and end the cohort if its time is up.
    async fn request_unmask(&mut self, client: &mut Session, round: u64) -> Result<(), BotError> {
        self.next_round = Some(round + 1);
        let Some(cohort) = self.cohorts.iter_mut().rev().find(|c| c.covers(round)) else {
            self.next_round = None;
            return Ok(());
        };
        let id = cohort.id;
        cohort.closed_upto = Some(round);
        let mut epoch_over = round + 1 >= cohort.first_round + self.cfg.cohort_rounds.max(1);
        match cohort.agg.unmask_request(round) {
            Ok(request) => {
                let survivors = request.survivors.count();
                let body = format!(
                    "masked mode: unmask round {round}: {survivors} of {} meters reported",
                    request.survivors.universe()
                );
                let payload = super::encode(&MaskPayload {
                    message: MaskMessage::UnmaskRequest(request),
                    cohort: Some(id),
                    first_round: None,
                });
                self.groupchat(client, body, Some(payload)).await?;
                self.unmasking.push(Unmasking {
                    cohort: id,
                    round,
                    deadline: Instant::now() + self.cfg.unmask_timeout,
                });
            }
            Err(e) => {
                // More than a third of the cohort is gone (meters restarted, server restarted):
                // it cannot recover, so enrol a new one now rather than at the cohort's end.
                epoch_over = true;
                let reason = match e {
                    MaskError::UnknownRound(_) => "no masked readings arrived".to_owned(),
                    e => e.to_string(),
                };
                self.fail_round(round, format!("{reason}; enrolling a new cohort"));
            }
        }
        if epoch_over {
            if let Some(c) = self.cohorts.iter_mut().find(|c| c.id == id) {
                c.last_round = Some(round);
            }
            self.next_round = None;
            // After the unmask request: members answer it before they leave for new nicknames.
            self.call_enrolment(client).await?;
        }
        Ok(())
    }

    fn fail_round(&mut self, round: u64, reason: String) {
        self.report.failed_rounds += 1;
        tracing::warn!(round, %reason, "masked round produced no sum");
        self.emit(MaskedBotEvent::RoundFailed { round, reason });
    }

    /// Drops retired cohorts none of whose rounds is still being unmasked; called when a
    /// new cohort starts, so late answers to an old cohort's last round are still recognised.
    fn drop_retired(&mut self) {
        let unmasking = &self.unmasking;
        self.cohorts
            .retain(|c| c.last_round.is_none() || unmasking.iter().any(|u| u.cohort == c.id));
    }

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
            SessionEvent::Stanza(s) => {
                if self.cfg.bot.tap_stanzas {
                    self.emit(MaskedBotEvent::Stanza(plain::stanza_xml(&s)));
                }
                match s {
                    Stanza::Message(m) => self.on_message(client, m).await,
                    Stanza::Presence(p) => {
                        let own = client.bound_jid();
                        match room_presence(&p, &self.room, Some(&self.nick), own) {
                            RoomInput::RoomShowsJids => {
                                let name = self.room.to_string();
                                Err(MucError::from(PrivacyError::NonAnonymous(name)).into())
                            }
                            RoomInput::Removed => {
                                tracing::warn!("removed from the room; rejoining");
                                self.join(client).await
                            }
                            _ => Ok(()),
                        }
                    }
                    Stanza::Iq(_) => Ok(()),
                }
            }
        }
    }

    async fn on_message(&mut self, client: &mut Session, m: Message) -> Result<(), BotError> {
        let Some(nick) = muc::nick_in_room(m.from.as_ref(), &self.room) else {
            if let Some((from, command)) = plain::operator_command(&m, &self.operators) {
                let reply = self.answer(command.trim());
                plain::send_chat(
                    client,
                    self.timeout(),
                    from.into(),
                    MessageType::Chat,
                    reply,
                    None,
                    None,
                )
                .await?;
            }
            return Ok(());
        };
        let delayed = m
            .payloads
            .iter()
            .any(|p| Delay::try_from(p.clone()).is_ok());
        if nick == self.nick || m.type_ != MessageType::Chat || delayed {
            return Ok(());
        }
        let payload = match super::decode(&m.payloads) {
            None => return Ok(()),
            Some(Ok(p)) => p,
            Some(Err(e)) => return self.refuse(&nick, &e.to_string()),
        };
        match payload.message {
            MaskMessage::Key(k) => {
                if self.pending.contains(&(nick.clone(), k.key)) {
                    // Repeated after an enrolment call, in case the first one was lost.
                    return Ok(());
                }
                if self
                    .pending
                    .iter()
                    .any(|(n, key)| *n == nick || *key == k.key)
                    || self.cohorts.iter().any(|c| c.index_of(&nick).is_some())
                {
                    return self.refuse(&nick, "second key from one nickname");
                } else {
                    self.last_key_at = Instant::now();
                    self.pending.push((nick, k.key));
                }
            }
            MaskMessage::Shares(upload) => {
                let Enrolment::Shares(cohort, _) = &mut self.enrolment else {
                    return self.refuse(&nick, "share upload outside enrolment");
                };
                if cohort.index_of(&nick) != Some(upload.from) {
                    return self.refuse(&nick, "share upload for another member's index");
                }
                if let Err(e) = cohort.agg.handle_shares(&upload) {
                    return self.refuse(&nick, &e.to_string());
                }
                cohort.uploaded(upload.from);
                if cohort.all_uploaded() {
                    self.route_shares(client).await?;
                }
            }
            MaskMessage::Masked(reading) => {
                let Some(cohort) = self
                    .cohorts
                    .iter_mut()
                    .find(|c| c.index_of(&nick) == Some(reading.from))
                else {
                    return self.refuse(&nick, "masked reading from a non-member or wrong index");
                };
                if !cohort.covers(reading.round)
                    || cohort.closed_upto.is_some_and(|r| reading.round <= r)
                {
                    // Sent before the meter saw the call for a new cohort: in no sum.
                    self.report.late += 1;
                    return Ok(());
                }
                match cohort.agg.handle_masked(&reading) {
                    Ok(()) => self.report.accepted += 1,
                    Err(MaskError::RoundClosed(_)) => self.report.late += 1,
                    Err(e) => return self.refuse(&nick, &e.to_string()),
                }
            }
            MaskMessage::UnmaskResponse(answer) => {
                let Some(cohort) = self
                    .cohorts
                    .iter_mut()
                    .find(|c| c.index_of(&nick) == Some(answer.from))
                else {
                    return self.refuse(&nick, "unmask answer from a non-member or wrong index");
                };
                let id = cohort.id;
                if !self
                    .unmasking
                    .iter()
                    .any(|u| u.cohort == id && u.round == answer.round)
                {
                    // Without dropouts any `t` answers complete a round; the rest come after.
                    tracing::trace!(%nick, round = answer.round, "answer for a finished round");
                    return Ok(());
                }
                if let Err(e) = cohort.agg.handle_unmask_response(&answer) {
                    return self.refuse(&nick, &e.to_string());
                }
                match cohort.agg.finish(answer.round) {
                    Ok(sum) => {
                        self.unmasking
                            .retain(|u| !(u.cohort == id && u.round == answer.round));
                        self.publish(client, sum).await?;
                    }
                    Err(MaskError::MissingResponse { .. } | MaskError::NotEnoughShares { .. }) => {}
                    Err(e) => {
                        self.unmasking
                            .retain(|u| !(u.cohort == id && u.round == answer.round));
                        self.fail_round(answer.round, e.to_string());
                    }
                }
            }
            // Rosters, bundles and requests come from the bot, never to it.
            _ => return self.refuse(&nick, "message kind the bot never receives"),
        }
        Ok(())
    }

    /// Counts a refused message; the log names the nickname (never a JID) and the reason.
    fn refuse(&mut self, nick: &RoomNick, why: &str) -> Result<(), BotError> {
        self.report.rejected += 1;
        tracing::debug!(%nick, reason = why, "masked-mode message refused");
        Ok(())
    }

    /// A round's sum: detectors on the total, summary line, alerts to room and operators.
    async fn publish(&mut self, client: &mut Session, sum: RoundSum) -> Result<(), BotError> {
        self.report.sums += 1;
        let start = round_start(sum.round, self.interval);
        let meters = usize::from(sum.survivors);
        if self.monitor.handle_total(start, meters, sum.sum) == TotalIngest::OutOfOrder {
            tracing::warn!(
                round = sum.round,
                "sum arrived out of order; not fed to the detectors"
            );
        }
        let total = IntervalTotal {
            start,
            length: i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX),
            meters,
            total: sum.sum,
        };
        let line = masked_summary_line(&total, sum.enrolled, sum.noise_sd);
        tracing::info!("{line}");
        if self.cfg.bot.post_summaries {
            self.groupchat(client, line, None).await?;
        }
        self.emit(MaskedBotEvent::Sum {
            round: sum.round,
            total,
            enrolled: sum.enrolled,
            noise_sd: sum.noise_sd,
            closed_at: now_ts(),
        });
        let alerts: Vec<Alert> = self.monitor.poll_alerts().collect();
        for alert in alerts {
            self.report.alerts += u64::from(alert.state == gridmuc_core::alert::AlertState::Raised);
            plain::deliver_alert(
                client,
                self.timeout(),
                &self.room,
                &self.operators,
                &alert,
                None,
            )
            .await?;
            self.emit(MaskedBotEvent::Alert(alert));
        }
        Ok(())
    }

    /// Operator commands in masked mode: the last sum and counters; no per-house answers exist.
    fn answer(&self, command: &str) -> String {
        let r = &self.report;
        match command.to_lowercase().as_str() {
            "status" => {
                let last = self.monitor.last().map_or_else(
                    || "no round unmasked yet".to_owned(),
                    IntervalTotal::summary_line,
                );
                format!(
                    "masked mode (per-house detection off) · {last} · cohorts {}, rounds summed {}, failed {}, readings {}, refused {}, alerts {}",
                    r.cohorts, r.sums, r.failed_rounds, r.accepted, r.rejected, r.alerts
                )
            }
            "top" => "masked mode: the bot never sees per-house values, so there is no top list"
                .to_owned(),
            "help" | "?" => "commands: status (last sum and counters), help".to_owned(),
            _ => "unknown command; try help".to_owned(),
        }
    }
}

/// One line per unmasked round: total and meter count only, and that per-house detection is off.
pub fn masked_summary_line(t: &IntervalTotal, enrolled: u16, noise_sd: Option<Watts>) -> String {
    let noise = noise_sd.map_or_else(String::new, |sd| format!(" ± {sd} DP noise (sd)"));
    format!(
        "masked interval {}: total {}{noise} from {} of {enrolled} meters (per-house detection off)",
        t.start, t.total, t.meters
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_says_total_count_and_that_per_house_detection_is_off() {
        let t = IntervalTotal {
            start: Timestamp(0),
            length: 5_000,
            meters: 9,
            total: Watts(135_720),
        };
        assert_eq!(
            masked_summary_line(&t, 10, None),
            "masked interval 1970-01-01T00:00:00Z: total 135.72 kW from 9 of 10 meters (per-house detection off)"
        );
        assert_eq!(
            masked_summary_line(&t, 10, Some(Watts(1_230))),
            "masked interval 1970-01-01T00:00:00Z: total 135.72 kW ± 1.23 kW DP noise (sd) from 9 of 10 meters (per-house detection off)"
        );
        assert!(MASKED_NOTICE.contains("per-house detection (house-spike alerts) is OFF"));
    }
}
