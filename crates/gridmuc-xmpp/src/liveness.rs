//! Catches a session that still sends but no longer delivers.
//!
//! A tokio-xmpp 6 session can stop delivering while it still sends: in a 20-house masked demo
//! nothing arrived for 7.5 s, yet at close tokio-xmpp's debug log showed every reading and the
//! ping answer unread in the old stream; after a server crash a meter's fresh session sent
//! readings for 10 s and never saw one receipt. Sampling `ss` during a stall shows where it
//! is: the server's send queue to us is empty while our socket's receive queue grows (to 10 KB
//! over 8 s), so the client, not Prosody, stops reading; its writes still go out. tokio-xmpp
//! 6.0.0 is the newest release. So whatever we post that must be answered (a
//! reading's receipt, a room post's echo) is due back in time, and a session silent for too
//! long is probed with a ping. The probe does not block: its answer arrives through the
//! caller's own event loop like any stanza, so nothing that arrives meanwhile is dropped. If
//! nothing at all arrives before the probe's deadline, the session is replaced and the caller
//! rejoins.

use crate::connect::{self, ConnectConfig, ConnectError};
use crate::session::Session;
use std::time::Duration;
use tokio::time::Instant;

/// Receive-side health of one session.
pub(crate) struct Liveness {
    /// `None`: only an overdue answer gets the session probed (a quiet session is fine).
    silence: Option<Duration>,
    last_rx: Instant,
    answer_by: Option<Instant>,
    probe_by: Option<Instant>,
}

impl Liveness {
    /// Probes after `silence` without anything received (at least 2 s), and on overdue answers.
    pub(crate) fn new(silence: Duration) -> Liveness {
        Liveness {
            silence: Some(silence.max(Duration::from_secs(2))),
            ..Liveness::answers_only()
        }
    }

    /// Probes only when an answer is overdue: for an agent whose session may rightly be quiet
    /// (a meter waiting for its first slot), where silence probes from a thousand meters
    /// would load the server for nothing.
    pub(crate) fn answers_only() -> Liveness {
        Liveness {
            silence: None,
            last_rx: Instant::now(),
            answer_by: None,
            probe_by: None,
        }
    }

    /// Something arrived: the session delivers (a probe's answer included).
    pub(crate) fn heard(&mut self) {
        self.last_rx = Instant::now();
        self.answer_by = None;
        self.probe_by = None;
    }

    /// We sent something that will be answered (an echo, a receipt) within `bound`; the
    /// earliest pending answer counts.
    pub(crate) fn posted(&mut self, bound: Duration) {
        self.answer_by.get_or_insert(Instant::now() + bound);
    }

    /// When the session should next be looked at.
    pub(crate) fn deadline(&self) -> Instant {
        if let Some(p) = self.probe_by {
            return p;
        }
        let silent = self.silence.map(|s| self.last_rx + s);
        match (self.answer_by, silent) {
            (Some(a), Some(s)) => a.min(s),
            (Some(t), None) | (None, Some(t)) => t,
            // Nothing owed and no silence limit: nothing to check for a long while.
            (None, None) => self.last_rx + Duration::from_secs(24 * 3600),
        }
    }

    /// Sends a ping if an answer is overdue or the session has been silent too long; if a
    /// ping already went unanswered, replaces the session ([`connect::renew`]) and returns
    /// true: the caller must rejoin its rooms.
    pub(crate) async fn check(
        &mut self,
        client: &mut Session,
        account: &ConnectConfig,
    ) -> Result<bool, ConnectError> {
        let now = Instant::now();
        if now < self.deadline() {
            return Ok(false);
        }
        if self.probe_by.is_none() {
            let answer_by = now + connect::ping_bound(account.timeout);
            if connect::send_ping(client, answer_by).await.is_some() {
                tracing::debug!(silent = ?self.last_rx.elapsed(), "probing the session with a ping");
                self.probe_by = Some(answer_by);
                return Ok(false);
            }
        }
        tracing::warn!(
            silent = ?self.last_rx.elapsed(),
            "nothing received and no answer to a ping; replacing the session and rejoining"
        );
        connect::renew(client, account).await?;
        self.heard();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadline_is_the_earliest_of_silence_answer_and_probe() {
        let mut l = Liveness::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.deadline(), t0 + Duration::from_secs(10));
        l.posted(Duration::from_secs(3));
        l.posted(Duration::from_secs(1));
        // The first pending answer counts; a later post does not move it.
        assert_eq!(l.deadline(), t0 + Duration::from_secs(3));
        tokio::time::advance(Duration::from_secs(4)).await;
        l.heard();
        assert_eq!(l.deadline(), t0 + Duration::from_secs(14));
        // A probe in flight overrides the rest: only its answer (anything heard) clears it.
        l.probe_by = Some(t0 + Duration::from_secs(6));
        assert_eq!(l.deadline(), t0 + Duration::from_secs(6));
        l.heard();
        assert_eq!(l.probe_by, None);
    }

    #[test]
    fn silence_has_a_floor() {
        let l = Liveness::new(Duration::from_millis(100));
        assert_eq!(l.silence, Some(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_that_owes_nothing_is_not_probed() {
        let mut l = Liveness::answers_only();
        let t0 = Instant::now();
        assert!(l.deadline() >= t0 + Duration::from_secs(3600));
        l.posted(Duration::from_secs(15));
        assert_eq!(l.deadline(), t0 + Duration::from_secs(15));
        l.heard();
        assert!(l.deadline() >= t0 + Duration::from_secs(3600));
    }
}
