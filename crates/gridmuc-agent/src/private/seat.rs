//! A bot's seat under its fixed nickname: the join, the privacy check on its own presence,
//! a nickname someone else holds, the session's liveness, and what waits while it is out of
//! the room. The leader and the helper share it; the rules are the plain bot's (its
//! `nick_retry`, `echo_bound` and `silence_bound`).

use super::{To, Transmit};
use crate::bot::{echo_bound, nick_retry, silence_bound};
use crate::liveness::{Health, Liveness};
use crate::room::{PrivacyRefusal, RoomInput, RoomTransmit};
use gridmuc_core::{Millis, RoomNick, Timestamp};
use rand::Rng;
use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Joining,
    NickTaken { until: Timestamp },
    InRoom,
    Renewing,
    Stopped(Result<(), PrivacyRefusal>),
}

/// One bot's place in the room.
#[derive(Debug)]
pub(crate) struct Seat {
    nick: RoomNick,
    operators: Vec<String>,
    interval: Millis,
    phase: Phase,
    liveness: Liveness,
    last_heard: Timestamp,
    taken: u32,
    held: Vec<Transmit>,
}

impl Seat {
    /// A seat about to be taken: queues the join.
    pub(crate) fn new(
        nick: RoomNick,
        operators: Vec<String>,
        interval: Millis,
        ping_timeout: Millis,
        now: Timestamp,
        out: &mut VecDeque<Transmit>,
    ) -> Seat {
        let interval = interval.max(1);
        let mut seat = Seat {
            nick,
            operators,
            interval,
            phase: Phase::Joining,
            liveness: Liveness::with_ping_timeout(echo_bound(interval), ping_timeout),
            last_heard: now,
            taken: 0,
            held: Vec::new(),
        };
        seat.join(out);
        seat
    }

    fn join(&mut self, out: &mut VecDeque<Transmit>) {
        let (room, other): (Vec<Transmit>, Vec<Transmit>) =
            out.drain(..).partition(Transmit::through_room);
        self.held.extend(room);
        out.extend(other);
        self.phase = Phase::Joining;
        out.push_back(Transmit::Room(RoomTransmit::Join(self.nick.clone())));
    }

    /// The room's news; `true` when we just got in (the caller then greets the room).
    pub(crate) fn on_room(
        &mut self,
        now: Timestamp,
        input: RoomInput,
        rng: &mut impl Rng,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        if self.outcome().is_some() {
            return false;
        }
        if input != RoomInput::Shutdown {
            self.heard(now);
        }
        match input {
            RoomInput::Joined(me) if self.phase == Phase::Joining => {
                if let Some(e) = me.refusal() {
                    tracing::error!(%e, "leaving the room for good");
                    out.push_back(Transmit::Room(RoomTransmit::Leave(self.nick.clone())));
                    self.phase = Phase::Stopped(Err(e));
                    return false;
                }
                self.taken = 0;
                self.phase = Phase::InRoom;
                out.extend(self.held.drain(..));
                return true;
            }
            RoomInput::NickConflict if self.phase == Phase::Joining => {
                self.on_conflict(now, rng, out)
            }
            RoomInput::Removed | RoomInput::SessionReset => self.join(out),
            RoomInput::RoomShowsJids => self.stop(Err(PrivacyRefusal::NonAnonymous), out),
            RoomInput::Shutdown => self.stop(Ok(()), out),
            RoomInput::Joined(_) | RoomInput::NickConflict | RoomInput::Alive => {}
        }
        false
    }

    fn stop(&mut self, why: Result<(), PrivacyRefusal>, out: &mut VecDeque<Transmit>) {
        if self.phase == Phase::InRoom {
            out.push_back(Transmit::Room(RoomTransmit::Leave(self.nick.clone())));
        }
        self.phase = Phase::Stopped(why);
    }

    /// Someone holds our nickname: tell the operators once, ask again with backoff.
    fn on_conflict(&mut self, now: Timestamp, rng: &mut impl Rng, out: &mut VecDeque<Transmit>) {
        if self.taken == 0 {
            let text = format!(
                "my nickname {} is taken in the room: another occupant holds it; peers that \
                 pinned my key will not believe it. Retrying until it is free.",
                self.nick
            );
            tracing::error!("{text}");
            for op in &self.operators {
                out.push_back(Transmit::Send {
                    to: To::Operator(op.clone()),
                    body: Some(text.clone()),
                    payload: None,
                    alert: None,
                });
            }
        }
        let wait = nick_retry(self.taken) as f64 * rng.random_range(0.5..1.5);
        self.taken = self.taken.saturating_add(1);
        self.phase = Phase::NickTaken {
            until: now.plus(wait as Millis),
        };
    }

    /// Anything from the session proves it delivers.
    pub(crate) fn heard(&mut self, now: Timestamp) {
        self.liveness.heard();
        self.last_heard = self.last_heard.max(now);
    }

    /// We posted something that the room echoes back.
    pub(crate) fn posted(&mut self, now: Timestamp) {
        if self.phase == Phase::InRoom {
            self.liveness.posted(now);
        }
    }

    /// Queues a transmit, holding what goes through the room while we are not in it.
    pub(crate) fn send(&mut self, t: Transmit, out: &mut VecDeque<Transmit>) {
        if self.phase == Phase::InRoom || !t.through_room() {
            out.push_back(t);
        } else {
            self.held.push(t);
        }
    }

    /// Asks again for a taken nickname; probes or replaces a silent or owing session.
    pub(crate) fn handle_timeout(&mut self, now: Timestamp, out: &mut VecDeque<Transmit>) {
        if let Phase::NickTaken { until } = self.phase
            && now >= until
        {
            self.join(out);
        }
        if !matches!(self.phase, Phase::InRoom | Phase::Joining) {
            return;
        }
        let silent_at = self.last_heard.plus(silence_bound(self.interval));
        if self.liveness.deadline().is_none() && now >= silent_at {
            self.liveness
                .posted(silent_at.plus(-echo_bound(self.interval)));
        }
        match self.liveness.check(now) {
            Health::Fine => {}
            Health::Probe => out.push_back(Transmit::Room(RoomTransmit::Ping)),
            Health::Dead => {
                tracing::warn!("no answer, not even to a ping; replacing the session");
                self.liveness.heard();
                self.phase = Phase::Renewing;
                out.push_back(Transmit::Room(RoomTransmit::RenewSession));
            }
        }
    }

    /// When [`Seat::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::NickTaken { until } => Some(until),
            Phase::InRoom | Phase::Joining => self
                .liveness
                .deadline()
                .or(Some(self.last_heard.plus(silence_bound(self.interval)))),
            Phase::Renewing | Phase::Stopped(_) => None,
        }
    }

    /// Whether we are in the room.
    pub(crate) fn in_room(&self) -> bool {
        self.phase == Phase::InRoom
    }

    /// Our nickname while we hold it.
    pub(crate) fn nick(&self) -> Option<&RoomNick> {
        self.in_room().then_some(&self.nick)
    }

    /// Our nickname, held or not: who peers address.
    pub(crate) fn own(&self) -> &RoomNick {
        &self.nick
    }

    /// `Some` once stopped.
    pub(crate) fn outcome(&self) -> Option<Result<(), PrivacyRefusal>> {
        match &self.phase {
            Phase::Stopped(r) => Some(r.clone()),
            _ => None,
        }
    }
}
