//! The masked meter: like the plain meter agent, but each reading leaves the house only
//! masked, and the nickname lives exactly as long as one cohort.
//!
//! One task owns the [`Session`] and `select!`s over incoming events, the next send slot,
//! the rejoin instant and shutdown, as the plain meter does.

use super::{DpSettings, MaskPayload, round_of};
use crate::connect::{self, ConnectConfig};
use crate::liveness::Liveness;
use crate::meter::{self as plain, MeterConfig, MeterError};
use crate::muc::{self, JoinOutcome, MucError, PrivacyError, SessionEvent};
use crate::session::Session;
use crate::source::{Injection, Sample, Source};
use futures::StreamExt;
use gridmuc_agent::meter::JOIN_ATTEMPTS;
use gridmuc_core::{NickGenerator, RoomNick, Timestamp, Watts};
use gridmuc_mask::{MaskError, MaskMessage, MaskedMeter};
use rand::rngs::OsRng;
use rand::{CryptoRng, Rng, TryRngCore};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::jid::{BareJid, FullJid};
use tokio_xmpp::{Event, Stanza};
use xmpp_parsers::delay::Delay;
use xmpp_parsers::message::{Lang, Message, MessageType};

/// A masked meter's settings: the plain meter's (its `mode` and `rotate` do not apply:
/// readings always go masked to the bot, and nicknames rotate with cohorts) plus DP.
#[derive(Clone, Debug)]
pub struct MaskedMeterConfig {
    /// Account, room, bot nickname, interval, jitter, rejoin gap, quantum, source, injections.
    pub meter: MeterConfig,
    /// Noise shares for an ε-DP sum; must match the bot's setting.
    pub dp: Option<DpSettings>,
}

/// What a masked meter tells its caller (demo view, tests); never its JID.
#[derive(Clone, Debug)]
pub enum MaskedMeterEvent {
    /// Joined under a fresh nickname and announced a fresh key.
    Joined(RoomNick),
    /// Enrolled in a cohort: masking starts at `first_round`.
    Enrolled {
        /// Our nickname in the cohort.
        nick: RoomNick,
        /// Cohort size.
        members: u16,
        /// First round of the cohort.
        first_round: u64,
    },
    /// A masked reading left for the bot; the plain value stays on this side (tests compare sums).
    Sent {
        /// Nickname it was sent under.
        nick: RoomNick,
        /// Round (interval index).
        round: u64,
        /// The quantised reading that was masked.
        reading: Watts,
    },
    /// Answered the bot's unmask request for a round.
    Answered {
        /// Round.
        round: u64,
    },
    /// Left the room (new cohort, rejoin or shutdown).
    Left(RoomNick),
}

/// Totals at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskedMeterReport {
    /// Masked readings written to the stream.
    pub sent: u64,
    /// Unmask answers sent.
    pub answers: u64,
    /// Cohorts this meter completed enrolment in.
    pub cohorts: u64,
    /// Nicknames used.
    pub nicks: u64,
    /// Nickname conflicts (409) survived.
    pub conflicts: u64,
    /// Protocol messages refused (malformed, wrong phase, conflicting survivor sets …).
    pub refused: u64,
}

/// Where the meter is: away, waiting for a roster, waiting for its share bundle, or masking.
enum Phase {
    /// Between nicknames; rejoin at the instant.
    Away(Instant),
    /// In the room, key announced, waiting for a roster that lists it.
    Pending { nick: RoomNick, masked: MaskedMeter },
    /// Shares uploaded, waiting for the bundle of shares sealed to us.
    Enrolling {
        nick: RoomNick,
        masked: MaskedMeter,
        cohort: [u8; 16],
        first_round: u64,
        members: u16,
    },
    /// Masking one reading per round from `first_round` on.
    Active {
        nick: RoomNick,
        masked: MaskedMeter,
        cohort: [u8; 16],
        first_round: u64,
        slot: Timestamp,
        send_at: Instant,
    },
}

impl Phase {
    fn nick(&self) -> Option<&RoomNick> {
        match self {
            Phase::Away(_) => None,
            Phase::Pending { nick, .. }
            | Phase::Enrolling { nick, .. }
            | Phase::Active { nick, .. } => Some(nick),
        }
    }

    fn wake(&self) -> Instant {
        match self {
            Phase::Away(at) => *at,
            Phase::Active { send_at, .. } => *send_at,
            Phase::Pending { .. } | Phase::Enrolling { .. } => {
                Instant::now() + Duration::from_secs(3600)
            }
        }
    }
}

struct Agent {
    cfg: MeterConfig,
    dp: Option<gridmuc_mask::DpConfig>,
    room: BareJid,
    room_bytes: Vec<u8>,
    bot: FullJid,
    events: Option<mpsc::UnboundedSender<MaskedMeterEvent>>,
    report: MaskedMeterReport,
    started: Instant,
    source: Source,
    /// An enrolled meter hears an unmask request every round; a waiting one may be quiet for
    /// a whole cohort, so a silent session only costs a ping.
    liveness: Liveness,
}

/// Runs one masked meter until `shutdown` resolves, the source ends, or a fatal error.
pub async fn run_masked_meter(
    cfg: MaskedMeterConfig,
    events: Option<mpsc::UnboundedSender<MaskedMeterEvent>>,
    shutdown: impl Future<Output = ()>,
) -> Result<MaskedMeterReport, MeterError> {
    let meter = cfg.meter;
    let bad_room = |why: String| MeterError::BadRoom(meter.room.clone(), why);
    let room = BareJid::new(&meter.room).map_err(|e| bad_room(e.to_string()))?;
    let bot_nick = RoomNick::new(meter.bot_nick.as_str())
        .map_err(|e| bad_room(format!("bot nickname: {e}")))?;
    let bot = muc::occupant(&room, &bot_nick)?;
    let dp = cfg
        .dp
        .map(DpSettings::to_config)
        .transpose()
        .map_err(|e| bad_room(format!("masked-mode DP settings: {e}")))?;
    let mut rng = OsRng.unwrap_err();
    let source = Source::open(&meter.source, &mut rng)?;
    let interval = meter.interval;
    let mut client = connect::connect(&meter.account).await?;
    let mut agent = Agent {
        room_bytes: room.to_string().into_bytes(),
        cfg: meter,
        dp,
        room,
        bot,
        events,
        report: MaskedMeterReport::default(),
        started: Instant::now(),
        source,
        liveness: Liveness::new((interval * 3).max(Duration::from_secs(3))),
    };
    let result = agent.run(&mut client, &mut rng, shutdown).await;
    connect::close(client).await;
    result.map(|()| agent.report)
}

impl Agent {
    fn emit(&self, e: MaskedMeterEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    fn account(&self) -> &ConnectConfig {
        &self.cfg.account
    }

    async fn run<R: Rng + CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MeterError> {
        plain::preflight(client, &self.room, &self.cfg.account).await?;
        let mut phase = self.join(client, rng).await?;
        tokio::pin!(shutdown);
        loop {
            let in_room = !matches!(phase, Phase::Away(_));
            let probe_at = self.liveness.deadline();
            let wake = match in_room {
                true => phase.wake().min(probe_at),
                false => phase.wake(),
            };
            let step = tokio::select! {
                () = &mut shutdown => break,
                event = client.next() => {
                    self.liveness.heard();
                    self.on_event(client, rng, event, phase).await
                }
                () = tokio::time::sleep_until(wake) => match in_room && Instant::now() >= probe_at {
                    true => self.probe(client, rng, phase).await,
                    false => self.tick(client, rng, phase).await,
                },
            };
            phase = match step {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(()),
                Err(MeterError::Muc(MucError::Stalled(_))) => {
                    tracing::warn!(
                        "session stalled; replacing it and rejoining under a new nickname"
                    );
                    connect::renew(client, self.account()).await?;
                    self.join(client, rng).await?
                }
                Err(e) => return Err(e),
            };
        }
        if let Some(nick) = phase.nick() {
            self.leave(client, nick).await?;
        }
        Ok(())
    }

    /// Pings a silent session; a fresh session, nickname and key if a ping went unanswered.
    async fn probe<R: Rng + CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        phase: Phase,
    ) -> Result<Option<Phase>, MeterError> {
        if self.liveness.check(client, &self.cfg.account).await? {
            return Ok(Some(self.join(client, rng).await?));
        }
        Ok(Some(phase))
    }

    /// Joins under a fresh nickname with a fresh key and announces the key to the bot.
    async fn join<R: Rng + CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
    ) -> Result<Phase, MeterError> {
        let nick = join_fresh(
            client,
            &self.room,
            &self.cfg.account,
            rng,
            &mut self.report.conflicts,
        )
        .await?;
        // The room answered: whatever an earlier session owed us is moot.
        self.liveness.heard();
        self.report.nicks += 1;
        let masked = MaskedMeter::new(rng, &self.room_bytes, self.dp);
        let key = MaskMessage::Key(masked.key_announcement());
        self.send(client, key, None, "masked mode: key for the next cohort")
            .await?;
        self.emit(MaskedMeterEvent::Joined(nick.clone()));
        Ok(Phase::Pending { nick, masked })
    }

    async fn leave(&self, client: &mut Session, nick: &RoomNick) -> Result<(), MeterError> {
        muc::leave(client, &self.room, nick, self.account().timeout).await?;
        tracing::debug!(%nick, "left the room");
        self.emit(MaskedMeterEvent::Left(nick.clone()));
        Ok(())
    }

    /// A PM to the bot through the room: the protocol payload and a body without any reading.
    async fn send(
        &self,
        client: &mut Session,
        message: MaskMessage,
        cohort: Option<[u8; 16]>,
        body: &str,
    ) -> Result<(), MeterError> {
        let payload = super::encode(&MaskPayload {
            message,
            cohort,
            first_round: None,
        });
        let mut m = Message::new_with_type(MessageType::Chat, Some(self.bot.clone().into()))
            .with_payloads(vec![payload]);
        m.bodies.insert(Lang(String::new()), body.to_owned());
        muc::send(client, m.into(), self.account().timeout).await?;
        Ok(())
    }

    async fn on_event<R: Rng + CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        event: Option<Event>,
        phase: Phase,
    ) -> Result<Option<Phase>, MeterError> {
        match muc::session_event(event)? {
            SessionEvent::Restarted => Ok(Some(self.join(client, rng).await?)),
            SessionEvent::Resumed => Ok(Some(phase)),
            SessionEvent::Stanza(Stanza::Presence(p)) => {
                let me = phase.nick();
                if me.is_some()
                    && muc::nick_in_room(p.from.as_ref(), &self.room).as_ref() == me
                    && muc::removed(&p)
                {
                    tracing::warn!("removed from the room; rejoining under a new nickname");
                    return Ok(Some(self.join(client, rng).await?));
                }
                Ok(Some(phase))
            }
            SessionEvent::Stanza(Stanza::Message(m)) => {
                self.on_message(client, rng, m, phase).await.map(Some)
            }
            SessionEvent::Stanza(Stanza::Iq(_)) => Ok(Some(phase)),
        }
    }

    /// Protocol traffic from the bot's occupant; everything else is ignored.
    async fn on_message<R: Rng + CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        m: Message,
        phase: Phase,
    ) -> Result<Phase, MeterError> {
        let from_bot = m.from.as_ref().is_some_and(|f| *f == self.bot);
        let delayed = m
            .payloads
            .iter()
            .any(|p| Delay::try_from(p.clone()).is_ok());
        if !from_bot || delayed || m.type_ == MessageType::Error {
            if m.type_ == MessageType::Error && from_bot {
                tracing::warn!("the room bounced a masked-mode message (is the bot in the room?)");
            }
            return Ok(phase);
        }
        if super::is_rekey(&m.payloads) {
            return self.on_rekey(client, rng, phase).await;
        }
        let payload = match super::decode(&m.payloads) {
            None => return Ok(phase),
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.report.refused += 1;
                tracing::warn!(error = %e, "malformed masked-mode payload from the bot");
                return Ok(phase);
            }
        };
        match (payload.message, phase) {
            (MaskMessage::Roster(roster), Phase::Pending { nick, mut masked }) => {
                let Some(first_round) = payload.first_round else {
                    self.report.refused += 1;
                    tracing::warn!("roster without a first round; ignored");
                    return Ok(Phase::Pending { nick, masked });
                };
                match masked.handle_roster(rng, &roster) {
                    Ok(upload) => {
                        let members = u16::try_from(roster.keys.len()).unwrap_or(u16::MAX);
                        let body = "masked mode: key shares for the bot to route";
                        let cohort = Some(roster.cohort);
                        self.send(client, MaskMessage::Shares(upload), cohort, body)
                            .await?;
                        tracing::debug!(%nick, members, first_round, "in the roster; shares uploaded");
                        Ok(Phase::Enrolling {
                            nick,
                            masked,
                            cohort: roster.cohort,
                            first_round,
                            members,
                        })
                    }
                    Err(MaskError::NotInRoster) => {
                        tracing::debug!(%nick, "not in this cohort; waiting for the next enrolment");
                        Ok(Phase::Pending { nick, masked })
                    }
                    Err(e) => {
                        self.report.refused += 1;
                        tracing::warn!(error = %e, "roster refused; waiting for the next enrolment");
                        Ok(Phase::Pending { nick, masked })
                    }
                }
            }
            (
                MaskMessage::Bundle(bundle),
                Phase::Enrolling {
                    nick,
                    mut masked,
                    cohort,
                    first_round,
                    members,
                },
            ) if payload.cohort == Some(cohort) => {
                if let Err(e) = masked.handle_bundle(&bundle) {
                    // Valid shares are kept; the bot only loses this meter's help for the bad sender.
                    self.report.refused += 1;
                    tracing::warn!(error = %e, "share bundle partly refused");
                }
                self.report.cohorts += 1;
                self.emit(MaskedMeterEvent::Enrolled {
                    nick: nick.clone(),
                    members,
                    first_round,
                });
                let (slot, send_at) = self.next_slot(rng, None);
                Ok(Phase::Active {
                    nick,
                    masked,
                    cohort,
                    first_round,
                    slot,
                    send_at,
                })
            }
            (
                MaskMessage::UnmaskRequest(request),
                Phase::Active {
                    nick,
                    mut masked,
                    cohort,
                    first_round,
                    slot,
                    send_at,
                },
            ) if payload.cohort == Some(cohort) => {
                match masked.answer_unmask(&request) {
                    Ok(Some(answer)) => {
                        let round = answer.round;
                        let body = format!("masked mode: unmask answer for round {round}");
                        let msg = MaskMessage::UnmaskResponse(answer);
                        self.send(client, msg, Some(cohort), &body).await?;
                        self.report.answers += 1;
                        self.emit(MaskedMeterEvent::Answered { round });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // E.g. a second survivor set for one round: refusing is the point.
                        self.report.refused += 1;
                        tracing::warn!(round = request.round, error = %e, "unmask request refused");
                    }
                }
                Ok(Phase::Active {
                    nick,
                    masked,
                    cohort,
                    first_round,
                    slot,
                    send_at,
                })
            }
            (_, phase) => Ok(phase),
        }
    }

    /// The bot calls a new enrolment: a meter whose key is spent rotates its nickname and
    /// key; one still waiting repeats its unused key (the first may have been lost).
    async fn on_rekey<R: Rng + CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        phase: Phase,
    ) -> Result<Phase, MeterError> {
        match phase {
            Phase::Enrolling { nick, .. } | Phase::Active { nick, .. } => {
                self.leave(client, &nick).await?;
                let gap = plain::secs(plain::uniform(rng, self.cfg.rejoin_gap));
                tracing::debug!(?gap, "new cohort called; rotating nickname and key");
                Ok(Phase::Away(Instant::now() + gap))
            }
            Phase::Pending { nick, masked } => {
                let key = MaskMessage::Key(masked.key_announcement());
                self.send(client, key, None, "masked mode: key for the next cohort")
                    .await?;
                Ok(Phase::Pending { nick, masked })
            }
            other => Ok(other),
        }
    }

    fn next_slot(&self, rng: &mut impl Rng, prev: Option<Timestamp>) -> (Timestamp, Instant) {
        plain::next_slot(self.cfg.interval, self.cfg.jitter, rng, prev, 0)
    }

    /// Rejoins, or masks and sends the reading of the due round.
    async fn tick<R: Rng + CryptoRng>(
        &mut self,
        client: &mut Session,
        rng: &mut R,
        phase: Phase,
    ) -> Result<Option<Phase>, MeterError> {
        let Phase::Active {
            nick,
            mut masked,
            cohort,
            first_round,
            slot,
            ..
        } = phase
        else {
            return match phase {
                Phase::Away(_) => Ok(Some(self.join(client, rng).await?)),
                other => Ok(Some(other)),
            };
        };
        let round = round_of(slot, self.cfg.interval);
        if round >= first_round {
            let value = match self.source.sample(slot, rng) {
                Sample::Finished => {
                    self.leave(client, &nick).await?;
                    return Ok(None);
                }
                Sample::Skip => None,
                Sample::Value(w) => Some(w),
            };
            if let Some(w) = value {
                let injected = Injection::total_at(&self.cfg.injections, self.started.elapsed());
                let reading = (w + injected).quantise(self.cfg.quantum_watts);
                match masked.mask(rng, round, reading) {
                    Ok(value) => {
                        let body = format!("masked reading for round {round}");
                        let msg = MaskMessage::Masked(value);
                        self.send(client, msg, Some(cohort), &body).await?;
                        self.report.sent += 1;
                        self.emit(MaskedMeterEvent::Sent {
                            nick: nick.clone(),
                            round,
                            reading,
                        });
                        // Idle time: the next round's masks now, so the next send is a few additions.
                        let _ = masked.prepare_round(round + 1);
                    }
                    Err(e) => {
                        self.report.refused += 1;
                        tracing::warn!(round, error = %e, "reading not masked");
                    }
                }
            }
        }
        let (slot, send_at) = self.next_slot(rng, Some(slot));
        Ok(Some(Phase::Active {
            nick,
            masked,
            cohort,
            first_round,
            slot,
            send_at,
        }))
    }
}

/// Joins under a fresh CSPRNG nickname, retrying on 409 (counted in `conflicts`) and on a
/// fresh session when the room does not answer; leaves again with a privacy refusal if our
/// own presence shows the room would link or reveal the house.
async fn join_fresh<R: Rng + CryptoRng>(
    client: &mut Session,
    room: &BareJid,
    account: &ConnectConfig,
    rng: &mut R,
    conflicts: &mut u64,
) -> Result<RoomNick, MeterError> {
    for _ in 0..JOIN_ATTEMPTS {
        let nick = NickGenerator.generate(rng);
        match muc::join(client, room, &nick, muc::answer_bound(account), drop).await {
            Ok(JoinOutcome::Joined(me)) => {
                if let Some(why) = me.judged(false).refusal() {
                    muc::leave(client, room, &nick, account.timeout).await?;
                    return Err(MucError::from(PrivacyError::refused(room, why)).into());
                }
                tracing::debug!(%nick, "joined the room");
                return Ok(nick);
            }
            Ok(JoinOutcome::Conflict) => {
                *conflicts += 1;
                tracing::debug!(%nick, "nickname taken; drawing another");
            }
            Err(MucError::Timeout(..)) => {
                tracing::warn!("no answer to the join; retrying on a fresh session");
                connect::renew(client, account).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(MucError::NoFreeNick(JOIN_ATTEMPTS).into())
}
