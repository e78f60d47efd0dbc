//! Private mode's three agents as state machines: the meter ([`PrivateMeterCore`]), the
//! substation bot as Prio3 leader and collector ([`LeaderCore`]) and the independent helper
//! bot ([`HelperCore`]), on the cryptographic core of `gridmuc-private`.
//!
//! All three speak one [`Input`] and one [`Transmit`], so the driver translates them once:
//! - **Payloads are opaque bytes.** Every private-mode message (a report, a verdict, a helper
//!   request or answer, a collection, an interval notice, the verify-key offer) is a
//!   `gridmuc-private` message the cores build, sign and check themselves. The driver puts
//!   [`Transmit::Send`]'s `payload` as base64 (standard alphabet) in a
//!   `<private xmlns='urn:gridmuc:private:0'>` element, and hands any such element it receives
//!   from an occupant, decoded, to the core as [`Input::Payload`] with the sender's nickname.
//!   The driver signs nothing and checks no signature in private mode.
//! - **Signatures live in the cores.** Leader and helper sign every message to each other and
//!   every verdict and notice to meters with their bot keys under
//!   `gridmuc_botkey::SignContext::Private`, and check what they receive against the keys
//!   pinned in the shared [`gridmuc_private::PrivateConfig`]; meters check the leader's. An
//!   impostor holding a bot's nickname is counted as unverified and changes nothing.
//! - **Bodies are for people.** `body` goes in `<body>` unsigned; `alert` (if any) as the
//!   plain bot's `<alert/>` element. No core acts on a body.

pub mod harness;
pub mod helper;
pub mod leader;
pub mod meter;

pub use helper::{HelperConfig, HelperCore, HelperEvent};
pub use leader::{LeaderConfig, LeaderCore, LeaderEvent};
pub use meter::{PrivateMeterConfig, PrivateMeterCore, PrivateMeterEvent, PrivateMeterStats};

use crate::room::{RoomInput, RoomTransmit};
use crate::seat::SeatTransmit;
use gridmuc_core::codec::Summary;
use gridmuc_core::{Alert, RoomNick, Timestamp, Watts};

/// What happened, as the driver tells any private-mode core.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The session and the room (join, conflict, removal, reset, shutdown…).
    Room(RoomInput),
    /// A `<private/>` payload from an occupant, base64-decoded; groupchat or private alike.
    Payload {
        /// The sender's room nickname.
        from: RoomNick,
        /// The decoded bytes.
        bytes: Vec<u8>,
    },
    /// The room returned a message to `to` as an error: nobody holds that nickname
    /// (`item-not-found`), or the room no longer counts us as an occupant (`not-acceptable`).
    Bounced {
        /// The nickname it was for.
        to: RoomNick,
        /// The error condition.
        why: String,
    },
    /// The answer to [`Transmit::Measure`] (meters only): the load of the interval starting
    /// at `slot`, or `None` if the source has nothing for it.
    Measured {
        /// The interval measured.
        slot: Timestamp,
        /// Watts, before quantisation.
        value: Option<Watts>,
    },
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum To {
    /// The room (`groupchat`).
    Room,
    /// One occupant, privately through the room (`chat` to `room/nick`).
    Nick(RoomNick),
    /// An operator's account, directly (the driver's bare JID string).
    Operator(String),
}

/// What any private-mode core asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    /// The session and the room.
    Room(RoomTransmit),
    /// A message: body for people, payload (base64 in `<private/>`) for programs.
    Send {
        /// Recipient.
        to: To,
        /// Plain text for chat clients, if any.
        body: Option<String>,
        /// The signed (or, for a meter's report, sealed) message, if any.
        payload: Option<Vec<u8>>,
        /// The alert it announces, as the plain bot's `<alert/>` element.
        alert: Option<Alert>,
        /// The interval it publishes, as the `<summary/>` element (boxed: most carry none).
        summary: Option<Box<Summary>>,
    },
    /// Meters only: measure the interval starting at `slot`, answer [`Input::Measured`].
    Measure {
        /// The interval.
        slot: Timestamp,
    },
    /// Meters only (with [`PrivateMeterConfig::save_reports`]): keep these reports, every
    /// pending one as sent (sealed), in place of what was kept before, so a meter killed
    /// outright resends them when it starts again. It comes before their sends: written ahead.
    SaveReports(Vec<Vec<u8>>),
}

impl From<RoomInput> for Input {
    fn from(i: RoomInput) -> Input {
        Input::Room(i)
    }
}

impl TryFrom<Transmit> for RoomTransmit {
    type Error = Transmit;
    fn try_from(t: Transmit) -> Result<RoomTransmit, Transmit> {
        match t {
            Transmit::Room(r) => Ok(r),
            own => Err(own),
        }
    }
}

impl Transmit {
    /// A message with a payload and no body or alert.
    fn payload(to: To, bytes: Vec<u8>) -> Transmit {
        Transmit::Send {
            to,
            body: None,
            payload: Some(bytes),
            alert: None,
            summary: None,
        }
    }
}

impl SeatTransmit for Transmit {
    fn room(t: RoomTransmit) -> Transmit {
        Transmit::Room(t)
    }

    fn through_room(&self) -> bool {
        matches!(
            self,
            Transmit::Send {
                to: To::Room | To::Nick(_),
                ..
            }
        )
    }

    fn to_operator(op: &str, text: String) -> Transmit {
        Transmit::Send {
            to: To::Operator(op.to_owned()),
            body: Some(text),
            payload: None,
            alert: None,
            summary: None,
        }
    }
}

/// The interval number of a time: what reports, notices and the leader's clock agree on.
fn interval_of(t: Timestamp, interval: gridmuc_core::Millis) -> u64 {
    u64::try_from(t.millis().div_euclid(interval.max(1))).unwrap_or(0)
}

/// The length of the configuration's interval in milliseconds.
fn interval_millis(cfg: &gridmuc_private::PrivateConfig) -> gridmuc_core::Millis {
    (i64::from(cfg.params().interval_secs) * 1_000).max(1)
}
