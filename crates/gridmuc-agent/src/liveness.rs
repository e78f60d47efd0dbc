//! Whether a session still delivers, judged only from what it owes us.
//!
//! A session can stop delivering while it still sends (DESIGN.md, "Root cause of the receive
//! stall"). So whatever an agent posts that must be answered (a reading's verdict, a broadcast's
//! echo, a join) is due back within a bound; when it is overdue the session is probed with a
//! ping, and when the ping goes unanswered too it is replaced. Anything heard in between clears
//! the debt: a slow but live session is never replaced, and silence alone (a meter waiting for
//! its slot) owes nothing, so a thousand quiet meters cost the server no pings.

use crate::room::RoomTransmit;
use gridmuc_core::{Millis, Timestamp};

/// How long a ping may take before the session counts as dead: half the answer bound, at least
/// 2 s. A server busy with a thousand meters leaving answered in more than 2 s, and replacing a
/// live session only adds to its load.
pub fn ping_bound(answer_timeout: Millis) -> Millis {
    (answer_timeout / 2).max(2_000)
}

/// What [`Liveness::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Nothing overdue.
    Fine,
    /// An answer is overdue: send a ping now.
    Probe,
    /// The ping went unanswered too: replace the session, then report [`Liveness::heard`].
    Dead,
}

/// The receive-side debt of one session.
#[derive(Clone, Debug)]
pub struct Liveness {
    answer_timeout: Millis,
    ping_timeout: Millis,
    answer_by: Option<Timestamp>,
    probe_by: Option<Timestamp>,
}

impl Liveness {
    /// A session that owes nothing yet; answers are due within `answer_timeout`.
    pub fn new(answer_timeout: Millis) -> Liveness {
        Liveness::with_ping_timeout(answer_timeout, ping_bound(answer_timeout))
    }

    /// Like [`Liveness::new`] with the ping's own bound, for an agent whose answers are due
    /// sooner than a busy server may take to answer a ping (a bot on short intervals): the
    /// session is then only replaced when the server, not just the room, has gone quiet.
    pub fn with_ping_timeout(answer_timeout: Millis, ping_timeout: Millis) -> Liveness {
        Liveness {
            answer_timeout,
            ping_timeout,
            answer_by: None,
            probe_by: None,
        }
    }

    /// Something arrived (a ping's answer included), or the session is new: nothing is owed.
    pub fn heard(&mut self) {
        self.answer_by = None;
        self.probe_by = None;
    }

    /// We sent something that will be answered; the earliest pending answer counts.
    pub fn posted(&mut self, now: Timestamp) {
        self.answer_by.get_or_insert(now.plus(self.answer_timeout));
    }

    /// When [`Liveness::check`] has something to say; `None` while nothing is owed.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.probe_by.or(self.answer_by)
    }

    /// Probe once an answer is overdue, and give up on the session once the probe is.
    pub fn check(&mut self, now: Timestamp) -> Health {
        match self.deadline() {
            Some(t) if now >= t => {}
            _ => return Health::Fine,
        }
        if self.probe_by.is_some() {
            return Health::Dead;
        }
        self.probe_by = Some(now.plus(self.ping_timeout));
        Health::Probe
    }

    /// [`Liveness::check`] as what to ask of the session: a ping to probe it, or its
    /// replacement (the caller then waits for [`RoomTransmit::RenewSession`]'s reset). Every
    /// agent acts on its session's health the same way, so the mapping lives here.
    pub fn act(&mut self, now: Timestamp) -> Option<RoomTransmit> {
        match self.check(now) {
            Health::Fine => None,
            Health::Probe => {
                tracing::debug!("an answer is overdue; probing the session with a ping");
                Some(RoomTransmit::Ping)
            }
            Health::Dead => {
                tracing::warn!(
                    "no answer, not even to a ping; replacing the session and rejoining"
                );
                Some(RoomTransmit::RenewSession)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_answer_is_probed_then_declared_dead() {
        let mut l = Liveness::new(3_000);
        assert_eq!(l.deadline(), None);
        l.posted(Timestamp(0));
        l.posted(Timestamp(1_000));
        // The first pending answer counts; a later post does not move it.
        assert_eq!(l.deadline(), Some(Timestamp(3_000)));
        assert_eq!(l.check(Timestamp(2_999)), Health::Fine);
        assert_eq!(l.check(Timestamp(3_000)), Health::Probe);
        // The probe has its own bound (at least 2 s).
        assert_eq!(l.deadline(), Some(Timestamp(5_000)));
        assert_eq!(l.check(Timestamp(4_000)), Health::Fine);
        assert_eq!(l.check(Timestamp(5_000)), Health::Dead);
        l.heard();
        assert_eq!(
            (l.deadline(), l.check(Timestamp(9_000))),
            (None, Health::Fine)
        );
    }

    #[test]
    fn ping_bound_has_a_floor() {
        assert_eq!(ping_bound(1_000), 2_000);
        assert_eq!(ping_bound(15_000), 7_500);
    }
}
