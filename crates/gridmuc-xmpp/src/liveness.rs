//! Catches a session that still sends but no longer delivers.
//!
//! A tokio-xmpp 6 session can stop delivering while it still sends: in a 20-house masked demo
//! nothing arrived for 7.5 s, yet at close tokio-xmpp's debug log showed every reading and the
//! ping answer unread in the old stream. So a bot's own groupchat posts must echo back from the
//! room in time, and a session silent for too long is probed with a ping; if that goes
//! unanswered the session is replaced and the caller rejoins.

use crate::connect::{self, ConnectConfig, ConnectError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_xmpp::Client;

/// How long a ping may take before the session counts as dead.
const PING_BOUND: Duration = Duration::from_secs(2);

/// Receive-side health of one session.
pub(crate) struct Liveness {
    silence: Duration,
    last_rx: Instant,
    echo_by: Option<Instant>,
}

impl Liveness {
    /// Probes after `silence` without anything received (at least 2 s).
    pub(crate) fn new(silence: Duration) -> Liveness {
        Liveness {
            silence: silence.max(Duration::from_secs(2)),
            last_rx: Instant::now(),
            echo_by: None,
        }
    }

    /// Something arrived: the session delivers (our echo included).
    pub(crate) fn heard(&mut self) {
        self.last_rx = Instant::now();
        self.echo_by = None;
    }

    /// We posted to the room: its echo is due within `bound` (the earliest pending one counts).
    pub(crate) fn posted(&mut self, bound: Duration) {
        self.echo_by.get_or_insert(Instant::now() + bound);
    }

    /// When the session should next be checked.
    pub(crate) fn deadline(&self) -> Instant {
        let silent = self.last_rx + self.silence;
        self.echo_by.map_or(silent, |e| e.min(silent))
    }

    /// Pings if an echo is overdue or the session has been silent too long; if the ping goes
    /// unanswered, replaces the session ([`connect::renew`]) and returns true: the caller must
    /// rejoin its rooms.
    pub(crate) async fn check(
        &mut self,
        client: &mut Client,
        account: &ConnectConfig,
    ) -> Result<bool, ConnectError> {
        if Instant::now() < self.deadline() {
            return Ok(false);
        }
        let silent = self.last_rx.elapsed();
        self.echo_by = None;
        if connect::alive(client, PING_BOUND).await {
            self.last_rx = Instant::now();
            return Ok(false);
        }
        tracing::warn!(
            ?silent,
            "nothing received and no answer to a ping; replacing the session and rejoining"
        );
        connect::renew(client, account).await?;
        self.last_rx = Instant::now();
        Ok(true)
    }
}
