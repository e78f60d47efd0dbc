//! The helper bot: the independent party's aggregator. A plain participant that takes the
//! verify key from the pinned leader, prepares the reports the leader forwards, releases an
//! interval's aggregate share once, and only to messages the pinned leader key signed, from
//! the leader's nickname. It signs every answer.
//!
//! It is also the check on the leader: it sees how many reports each interval holds, and
//! alarms its own operators when an interval holds far fewer than recent ones (a leader
//! dropping honest reports to isolate a few; the `min_reports` floor stops the extreme).
//!
//! **What a restart loses.** Its aggregates live in memory; the leader sends an
//! unanswered collection's reports again ([`gridmuc_private::Leader::resend_interval`]) and
//! the fresh helper prepares them afresh. It needs the verify key again, which the leader
//! offers on every join and whenever the helper is late.

use super::{Input, To, Transmit, interval_millis};
use crate::room::{Agent, PrivacyRefusal};
use crate::seat::Seat;
use gridmuc_botkey::BotSecretKey;
use gridmuc_core::{Millis, RoomNick, Timestamp};
use gridmuc_private::{
    CollectError, CollectRequest, Helper, HelperRequest, KeyOfferError, MessageKind, PrivateConfig,
    Refusals, VerifyKey, open_signed, sign_message,
};
use rand::{CryptoRng, Rng};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Released intervals whose answer is kept for a leader that asks again.
const RELEASED_KEPT: usize = 16;

/// The helper's rules in numbers, and its key.
#[derive(Clone, Debug)]
pub struct HelperConfig {
    /// Our room nickname.
    pub nick: RoomNick,
    /// The leader's nickname: the only one we take requests from.
    pub leader_nick: RoomNick,
    /// Our operators' bare JIDs (the independent party's): told about alarms.
    pub operators: Vec<String>,
    /// The configuration every meter and the leader share.
    pub private: PrivateConfig,
    /// Our bot key (the config's helper key).
    pub key: Arc<BotSecretKey>,
    /// Alarm when an interval holds fewer than this fraction of the largest of the recent ones.
    pub alarm_ratio: f64,
    /// How many released intervals "recent" spans.
    pub alarm_window: usize,
    /// How long a ping may take before the session counts as dead.
    pub ping_timeout: Millis,
}

/// What the helper tells its caller.
#[derive(Clone, Debug, PartialEq)]
pub enum HelperEvent {
    /// In the room.
    Joined(RoomNick),
    /// The pinned leader's verify key was accepted (again, after a restart).
    KeyAccepted,
    /// A verify-key offer was refused.
    OfferRefused(KeyOfferError),
    /// A message from the leader's nickname that the pinned leader key did not sign.
    Unverified {
        /// Sender.
        from: RoomNick,
    },
    /// A payload from someone who is not the leader: ignored.
    Ignored {
        /// Sender.
        from: RoomNick,
    },
    /// An interval's aggregate share was released to the leader.
    Released {
        /// The interval.
        interval: u64,
        /// Reports in it.
        reports: u64,
    },
    /// A collection was refused.
    CollectRefused {
        /// The interval.
        interval: u64,
        /// Why.
        error: CollectError,
    },
    /// An interval holds far fewer reports than recent ones.
    Alarm {
        /// The interval.
        interval: u64,
        /// Reports the leader claims for it.
        reports: u64,
        /// The largest count of the recent intervals.
        typical: u64,
    },
}

/// The helper's rules, driven from outside.
pub struct HelperCore<R> {
    cfg: HelperConfig,
    rng: R,
    seat: Seat<Transmit>,
    helper: Option<(Helper, VerifyKey)>,
    released: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    recent: VecDeque<u64>,
    unverified: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<HelperEvent>,
}

impl<R: Rng + CryptoRng> HelperCore<R> {
    /// A helper about to join, without a verify key until the leader offers one.
    pub fn new(cfg: HelperConfig, rng: R, now: Timestamp) -> HelperCore<R> {
        let mut transmits = VecDeque::new();
        let seat = Seat::new(
            cfg.nick.clone(),
            cfg.operators.clone(),
            interval_millis(&cfg.private),
            cfg.ping_timeout,
            now,
            &mut transmits,
        );
        HelperCore {
            cfg,
            rng,
            seat,
            helper: None,
            released: BTreeMap::new(),
            recent: VecDeque::new(),
            unverified: 0,
            transmits,
            events: VecDeque::new(),
        }
    }

    /// Reports refused so far, by reason.
    pub fn refusals(&self) -> Refusals {
        self.helper
            .as_ref()
            .map(|(h, _)| h.refusals().clone())
            .unwrap_or_default()
    }

    /// Messages from the leader's nickname that the pinned leader key did not sign.
    pub fn unverified(&self) -> u64 {
        self.unverified
    }

    fn answer(&mut self, bytes: Vec<u8>) {
        let signed = sign_message(&self.cfg.key, bytes);
        let to = To::Nick(self.cfg.leader_nick.clone());
        self.seat
            .send(Transmit::payload(to, signed.clone()), &mut self.transmits);
    }

    fn on_offer(&mut self, bytes: &[u8]) {
        match VerifyKey::accept(&self.cfg.private, &self.cfg.key, bytes) {
            Ok(vk) => {
                let same = self
                    .helper
                    .as_ref()
                    .is_some_and(|(_, old)| *old.to_bytes() == *vk.to_bytes());
                if same {
                    return;
                }
                match Helper::new(self.cfg.private.clone(), self.cfg.key.clone(), vk.clone()) {
                    Ok(h) => {
                        self.helper = Some((h, vk));
                        self.events.push_back(HelperEvent::KeyAccepted);
                    }
                    Err(e) => tracing::error!(%e, "the helper's key is not the configured one"),
                }
            }
            Err(e) => {
                tracing::warn!(%e, "verify-key offer refused");
                self.events.push_back(HelperEvent::OfferRefused(e));
            }
        }
    }

    fn on_leader(&mut self, from: RoomNick, bytes: &[u8]) {
        if MessageKind::of(bytes) == Some(MessageKind::VerifyKeyOffer) {
            self.on_offer(bytes);
            return;
        }
        let Ok(msg) = open_signed(&self.cfg.private.params().leader, bytes) else {
            self.unverified += 1;
            tracing::warn!(nick = %from, "a message from the leader's nickname is not signed by the pinned leader key");
            self.events.push_back(HelperEvent::Unverified { from });
            return;
        };
        let Some((helper, _)) = self.helper.as_mut() else {
            tracing::debug!("a request before the verify key: dropped (the leader sends again)");
            return;
        };
        match MessageKind::of(msg) {
            Some(MessageKind::HelperRequest) => {
                if let Ok(req) = HelperRequest::from_bytes(msg) {
                    let resp = helper.handle_request(&req).to_bytes();
                    self.answer(resp);
                }
            }
            Some(MessageKind::CollectRequest) => {
                if let Ok(req) = CollectRequest::from_bytes(msg) {
                    self.on_collect(msg, &req);
                }
            }
            _ => tracing::debug!("an unexpected message from the leader"),
        }
    }

    fn on_collect(&mut self, msg: &[u8], req: &CollectRequest) {
        let interval = req.interval();
        if let Some((asked, answer)) = self.released.get(&interval)
            && asked == msg
        {
            // Our answer was lost: the same bytes again, nothing released twice.
            let t = Transmit::payload(To::Nick(self.cfg.leader_nick.clone()), answer.clone());
            self.seat.send(t, &mut self.transmits);
            return;
        }
        let Some((helper, _)) = self.helper.as_mut() else {
            return;
        };
        let result = helper.handle_collect(req);
        if result.is_ok() {
            helper.forget_before(interval.saturating_sub(RELEASED_KEPT as u64));
        }
        match result {
            Ok(share) => {
                self.alarm_if_small(interval, req.reports());
                let signed = sign_message(&self.cfg.key, share.to_bytes());
                self.released
                    .insert(interval, (msg.to_vec(), signed.clone()));
                while self.released.len() > RELEASED_KEPT {
                    self.released.pop_first();
                }
                let t = Transmit::payload(To::Nick(self.cfg.leader_nick.clone()), signed);
                self.seat.send(t, &mut self.transmits);
                self.recent.push_back(req.reports());
                while self.recent.len() > self.cfg.alarm_window.max(1) {
                    self.recent.pop_front();
                }
                self.events.push_back(HelperEvent::Released {
                    interval,
                    reports: req.reports(),
                });
            }
            Err(error) => {
                if let CollectError::TooFewReports { reports, .. } = error {
                    self.alarm_if_small(interval, reports);
                }
                tracing::warn!(interval, %error, "collection refused");
                self.events
                    .push_back(HelperEvent::CollectRefused { interval, error });
            }
        }
    }

    /// Tells our operators about an interval much smaller than recent ones.
    fn alarm_if_small(&mut self, interval: u64, reports: u64) {
        let Some(&typical) = self.recent.iter().max() else {
            return;
        };
        if (reports as f64) >= self.cfg.alarm_ratio * typical as f64 {
            return;
        }
        let body = format!(
            "interval {interval} holds {reports} reports against up to {typical} recently: \
             the leader may be dropping reports to isolate a few houses"
        );
        tracing::warn!("{body}");
        for op in self.cfg.operators.clone() {
            self.transmits.push_back(Transmit::Send {
                to: To::Operator(op),
                body: Some(body.clone()),
                payload: None,
                alert: None,
                summary: None,
            });
        }
        self.events.push_back(HelperEvent::Alarm {
            interval,
            reports,
            typical,
        });
    }
}

impl<R: Rng + CryptoRng> Agent for HelperCore<R> {
    type Input = Input;
    type Transmit = Transmit;
    type Event = HelperEvent;
    type Error = PrivacyRefusal;

    fn handle(&mut self, now: Timestamp, input: Input) {
        if self.seat.outcome().is_some() {
            return;
        }
        match input {
            Input::Room(r) => {
                if self
                    .seat
                    .on_room(now, r, &mut self.rng, &mut self.transmits)
                {
                    self.events
                        .push_back(HelperEvent::Joined(self.cfg.nick.clone()));
                }
            }
            Input::Payload { from, bytes } => {
                self.seat.heard(now);
                if from == self.cfg.leader_nick {
                    self.on_leader(from, &bytes);
                } else if &from != self.seat.own() {
                    self.events.push_back(HelperEvent::Ignored { from });
                }
            }
            Input::Bounced { .. } => self.seat.heard(now),
            Input::Measured { .. } => {}
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.seat.handle_timeout(now, &mut self.transmits);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<HelperEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.seat.poll_timeout()
    }

    fn outcome(&self) -> Option<Result<(), PrivacyRefusal>> {
        self.seat.outcome()
    }

    fn nick(&self) -> Option<&RoomNick> {
        self.seat.nick()
    }
}
