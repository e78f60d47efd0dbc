//! A bot's seat under its fixed nickname: the join, the privacy check on its own presence,
//! a nickname someone else holds, the session's liveness, and what waits while it is out of
//! the room. The plain bot, the private leader and the private helper all sit on one, so
//! these rules exist once.

use crate::bot::{echo_bound, nick_retry, silence_bound};
use crate::liveness::Liveness;
use crate::room::{PrivacyRefusal, RoomInput, RoomTransmit};
use gridmuc_core::{Millis, RoomNick, Timestamp};
use rand::Rng;
use std::collections::VecDeque;

/// What a seat needs of a bot's own transmit type.
pub(crate) trait SeatTransmit: Sized {
    /// The room's part as this agent's transmit.
    fn room(t: RoomTransmit) -> Self;
    /// Whether it goes through the room, which only an occupant may send through (it then
    /// waits while we are out of the room).
    fn through_room(&self) -> bool;
    /// An unsigned note to an operator: the taken-nickname warning, which may come from a bot
    /// that is not the one its peers pinned.
    fn to_operator(op: &str, text: String) -> Self;
}

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
pub(crate) struct Seat<T> {
    nick: RoomNick,
    operators: Vec<String>,
    interval: Millis,
    phase: Phase,
    liveness: Liveness,
    last_heard: Timestamp,
    taken: u32,
    held: Vec<T>,
}

impl<T: SeatTransmit> Seat<T> {
    /// A seat about to be taken: queues the join.
    pub(crate) fn new(
        nick: RoomNick,
        operators: Vec<String>,
        interval: Millis,
        ping_timeout: Millis,
        now: Timestamp,
        out: &mut VecDeque<T>,
    ) -> Seat<T> {
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

    fn join(&mut self, out: &mut VecDeque<T>) {
        // Whatever was queued for the room waits for the rejoin: a fresh session is not in it.
        let (room, other): (Vec<T>, Vec<T>) = out.drain(..).partition(T::through_room);
        self.held.extend(room);
        out.extend(other);
        self.phase = Phase::Joining;
        out.push_back(T::room(RoomTransmit::Join(self.nick.clone())));
    }

    /// The room's news; `true` when we just got in (the caller then greets the room).
    pub(crate) fn on_room(
        &mut self,
        now: Timestamp,
        input: RoomInput,
        rng: &mut impl Rng,
        out: &mut VecDeque<T>,
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
                    out.push_back(T::room(RoomTransmit::Leave(self.nick.clone())));
                    self.phase = Phase::Stopped(Err(e));
                    return false;
                }
                if self.taken > 0 {
                    tracing::warn!(nick = %self.nick, attempts = self.taken, "got our nickname back");
                }
                tracing::info!(nick = %self.nick, "joined as a plain participant");
                self.taken = 0;
                self.phase = Phase::InRoom;
                out.extend(self.held.drain(..));
                return true;
            }
            RoomInput::NickConflict if self.phase == Phase::Joining => {
                self.on_conflict(now, rng, out)
            }
            RoomInput::Removed => {
                tracing::warn!("removed from the room; rejoining");
                self.join(out);
            }
            RoomInput::SessionReset => self.join(out),
            RoomInput::RoomShowsJids => self.stop(Err(PrivacyRefusal::NonAnonymous), out),
            RoomInput::Shutdown => self.stop(Ok(()), out),
            RoomInput::Joined(_) | RoomInput::NickConflict | RoomInput::Alive => {}
        }
        false
    }

    fn stop(&mut self, why: Result<(), PrivacyRefusal>, out: &mut VecDeque<T>) {
        if self.phase == Phase::InRoom {
            out.push_back(T::room(RoomTransmit::Leave(self.nick.clone())));
        }
        self.phase = Phase::Stopped(why);
    }

    /// A nickname someone else holds (an impostor, a second bot) is not a reason to give up
    /// the neighbourhood: tell the operators once and ask again with backoff until it is free.
    fn on_conflict(&mut self, now: Timestamp, rng: &mut impl Rng, out: &mut VecDeque<T>) {
        if self.taken == 0 {
            let text = format!(
                "my nickname {} is taken in the room: another occupant holds it (an impostor, \
                 or a second bot); peers that pinned my key will not believe it. Retrying \
                 until it is free.",
                self.nick
            );
            tracing::error!("{text}");
            for op in &self.operators {
                out.push_back(T::to_operator(op, text.clone()));
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
        self.liveness.heard(now);
        self.last_heard = self.last_heard.max(now);
    }

    /// We posted something that the room echoes back.
    pub(crate) fn posted(&mut self, now: Timestamp) {
        if self.phase == Phase::InRoom {
            self.liveness.posted(now);
        }
    }

    /// Queues a transmit, holding what goes through the room while we are not in it.
    pub(crate) fn send(&mut self, t: T, out: &mut VecDeque<T>) {
        if self.phase == Phase::InRoom || !t.through_room() {
            out.push_back(t);
        } else {
            self.held.push(t);
        }
    }

    /// Asks again for a taken nickname; probes or replaces a silent or owing session.
    pub(crate) fn handle_timeout(&mut self, now: Timestamp, out: &mut VecDeque<T>) {
        if let Phase::NickTaken { until } = self.phase
            && now >= until
        {
            self.join(out);
        }
        if !matches!(self.phase, Phase::InRoom | Phase::Joining) {
            return;
        }
        // Silence counts as an answer that fell due when it grew too long.
        let silent_at = self.last_heard.plus(silence_bound(self.interval));
        if self.liveness.deadline().is_none() && now >= silent_at {
            self.liveness
                .posted(silent_at.plus(-echo_bound(self.interval)));
        }
        if let Some(t) = self.liveness.act(now) {
            if t == RoomTransmit::RenewSession {
                self.liveness.heard(now);
                self.phase = Phase::Renewing;
            }
            out.push_back(T::room(t));
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
