//! Whether a session still delivers, judged only from what it owes us.
//!
//! A session can stop delivering while it still sends (DESIGN.md, "Root cause of the receive
//! stall"). So whatever an agent posts that must be answered (a reading's verdict, a broadcast's
//! echo, a join) is due back within a bound; when it is overdue the session is probed with a
//! ping, and when the ping goes unanswered too it is replaced. Anything heard in between clears
//! the debt: a slow but live session is never replaced, and silence alone (a meter waiting for
//! its slot) owes nothing, so a thousand quiet meters cost the server no pings.
//!
//! A server too busy to answer in time is the other way to fail a probe, and replacing a live
//! session costs that server a TLS login and a join on top. So each session declared dead
//! doubles the next probe's patience (up to [`MAX_PATIENCE_DOUBLINGS`]), forgiven once a probe
//! is answered within the plain bound, and each agent adds its own random share on top: a
//! fleet whose server slowed down for all of them at once does not renew in step and keeps
//! doing so (RFC 6120 §3.3 asks reconnecting clients for the same: random, increasing waits).

use crate::room::RoomTransmit;
use gridmuc_core::{Millis, Timestamp};

/// How long a ping may take before the session counts as dead: half the answer bound, at least
/// 2 s. A server busy with a thousand meters leaving answered in more than 2 s, and replacing a
/// live session only adds to its load.
pub fn ping_bound(answer_timeout: Millis) -> Millis {
    (answer_timeout / 2).max(2_000)
}

/// Doublings of a probe's patience after sessions declared dead in a row: 16 × the ping's
/// bound at most (2 minutes for a meter's 7.5 s), inside the outbox's 10-minute `max_age`.
pub const MAX_PATIENCE_DOUBLINGS: u32 = 4;

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
    /// Sessions declared dead since a probe was last answered within the plain bound, each
    /// doubling the next probe's patience.
    strikes: u32,
    /// This agent's own extra patience, a fraction in [0, 1] of the probe's bound.
    spread: f64,
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
            strikes: 0,
            spread: 0.0,
        }
    }

    /// Gives this agent `spread` × the ping's bound of extra patience on every probe (a
    /// fraction in [0, 1], drawn once per agent), so a fleet probed at the same instant does
    /// not give up on its sessions at the same instant.
    pub fn with_spread(self, spread: f64) -> Liveness {
        Liveness {
            spread: if spread.is_finite() {
                spread.clamp(0.0, 1.0)
            } else {
                0.0
            },
            ..self
        }
    }

    /// How long the next probe may go unanswered: the ping's bound, and once a session was
    /// declared dead lately, doubled per strike plus this agent's spread. The first probe needs
    /// no spread: it follows the agent's own send time, random already; agents whose sessions
    /// died together, with their server, are in step from then on.
    pub fn patience(&self) -> Millis {
        if self.strikes == 0 {
            return self.ping_timeout;
        }
        let base = self
            .ping_timeout
            .saturating_mul(1 << self.strikes.min(MAX_PATIENCE_DOUBLINGS));
        base.saturating_add((base as f64 * self.spread) as Millis)
    }

    /// Something arrived (a ping's answer included), or the session is new: nothing is owed.
    /// A probe answered within the plain bound shows the server keeps up again: patience is
    /// back at the bound. (Answers in time prove less: a server at its limit may answer a join
    /// in time and a reading, which crosses it twice more, not.)
    pub fn heard(&mut self, now: Timestamp) {
        let probed_at = self.probe_by.map(|t| t.plus(-self.patience()));
        if probed_at.is_some_and(|t| now <= t.plus(self.ping_timeout)) {
            self.strikes = 0;
        }
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
            self.strikes = (self.strikes + 1).min(MAX_PATIENCE_DOUBLINGS);
            return Health::Dead;
        }
        self.probe_by = Some(now.plus(self.patience()));
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
        l.heard(Timestamp(5_001));
        assert_eq!(
            (l.deadline(), l.check(Timestamp(9_000))),
            (None, Health::Fine)
        );
    }

    /// Declares the session dead once, from an answer due at `now`; returns when it was.
    fn strike(l: &mut Liveness, now: Timestamp) -> Timestamp {
        l.posted(now.plus(-l.answer_timeout));
        assert_eq!(l.check(now), Health::Probe);
        let dead = now.plus(l.patience());
        assert_eq!(l.check(dead.plus(-1)), Health::Fine);
        assert_eq!(l.check(dead), Health::Dead);
        l.heard(dead);
        dead
    }

    #[test]
    fn each_session_declared_dead_doubles_the_next_probes_patience_until_answered_in_time() {
        let mut l = Liveness::new(3_000);
        assert_eq!(l.patience(), 2_000);
        let mut t = Timestamp(10_000);
        for want in [4_000, 8_000, 16_000, 32_000, 32_000] {
            t = strike(&mut l, t);
            assert_eq!(l.patience(), want);
        }
        // An answer in time, or a probe answered late, forgives nothing.
        l.posted(t);
        l.heard(t.plus(1_000));
        l.posted(t);
        assert_eq!(l.check(t.plus(3_000)), Health::Probe);
        l.heard(t.plus(5_001));
        assert_eq!(l.patience(), 32_000);
        // A probe answered within the plain bound (2 s) does.
        l.posted(t);
        assert_eq!(l.check(t.plus(3_000)), Health::Probe);
        l.heard(t.plus(5_000));
        assert_eq!(l.patience(), 2_000);
    }

    #[test]
    fn once_struck_the_spread_adds_its_share_and_bad_values_are_tamed() {
        let struck = |spread: f64| {
            let mut l = Liveness::new(15_000).with_spread(spread);
            assert_eq!(l.patience(), 7_500);
            strike(&mut l, Timestamp(0));
            l.patience()
        };
        assert_eq!(struck(0.5), 22_500);
        assert_eq!(struck(7.0), 30_000);
        assert_eq!(struck(-1.0), 15_000);
        assert_eq!(struck(f64::NAN), 15_000);
    }

    #[test]
    fn ping_bound_has_a_floor() {
        assert_eq!(ping_bound(1_000), 2_000);
        assert_eq!(ping_bound(15_000), 7_500);
    }
}
