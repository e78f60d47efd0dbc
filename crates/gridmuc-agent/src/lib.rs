//! Agents as state machines: every rule of a gridmuc agent (the plain meter, the substation
//! bot), and none of its I/O.
//!
//! A core is told what happened (`handle(now, input)`, `handle_timeout(now)`) and asked what to
//! do (`poll_transmit`, `poll_timeout`, `poll_event`), in the shape of quinn-proto's connection.
//! Time is always an argument ([`gridmuc_core::Timestamp`], milliseconds) and randomness comes
//! from the caller's CSPRNG, so the same core runs under the XMPP driver in `gridmuc-xmpp` and
//! in [`harness`], a simulated room on a virtual clock.
//!
//! **Architecture Invariant:** this crate opens no socket, spawns no task and reads no clock
//! (`tests/sans_io.rs` checks its sources).

pub mod bot;
pub mod harness;
pub mod liveness;
pub mod meter;
pub mod private;
pub mod readout;
pub mod room;
mod seat;

pub use bot::{BotCore, BotCoreConfig};
pub use meter::{
    Input, MeterCore, MeterCoreConfig, MeterCoreError, MeterEvent, MeterReport, Mode, Recipient,
    Transmit,
};
pub use room::{Agent, PrivacyRefusal, RoomInput, RoomTransmit, SelfPresence};
