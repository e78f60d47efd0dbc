//! tokio + tokio-xmpp I/O around `gridmuc-core`: sessions, TLS, the room, the meter agent and the substation bot.
//!
//! This is the only crate that knows the transport. It turns stanzas into `(RoomNick, Reading)`
//! pairs for the sans-IO core and alerts back into stanzas; a house's real JID never leaves it.

pub mod bot;
pub mod connect;
pub mod delivery;
pub mod district;
mod driver;
pub mod guard;
pub mod listen;
pub mod meter;
pub mod metrics;
pub mod muc;
pub mod outbox_file;
pub mod private;
pub mod readout;
mod selfping;
pub mod session;
pub mod source;

pub use bot::{BotConfig, BotError, BotEvent, BotReport, run_bot};
pub use connect::{ConnectConfig, ConnectError, Transport, connect};
pub use meter::{MeterConfig, MeterError, MeterEvent, MeterReport, Mode, run_meter};

use gridmuc_core::{Millis, Timestamp};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The wall clock as the core's [`Timestamp`]: the only place this crate reads it.
pub(crate) fn now_ts() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(ms)
}

/// The tokio instant at which the wall clock reads (or read) `t`.
pub(crate) fn instant_at(t: Timestamp) -> Instant {
    let now = Instant::now();
    let ahead = t.since(now_ts());
    let offset = Duration::from_millis(ahead.unsigned_abs());
    match ahead >= 0 {
        true => now + offset,
        false => now.checked_sub(offset).unwrap_or(now),
    }
}

/// A duration in whole milliseconds, the core's unit.
pub(crate) fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}
