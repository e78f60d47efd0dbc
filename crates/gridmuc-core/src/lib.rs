//! Sans-IO heart of gridmuc: everything the live bot and the offline simulator must agree on.
//!
//! Nothing here opens a socket, spawns a task or reads a clock: time is always an argument,
//! randomness is always a passed-in RNG. That is what lets the substation bot and the
//! simulator run the very same statistics and detectors.

pub mod aggregator;
pub mod alert;
pub mod baseline;
pub mod codec;
pub mod detect;
pub mod meters;
pub mod nick;
pub mod outbox;
pub mod policy;
pub mod reading;
pub mod reject;
pub mod stats;
pub mod thermal;
pub mod time;
pub mod totals;
pub mod units;

pub use aggregator::{Aggregator, AggregatorConfig, Ingest};
pub use alert::{Alert, AlertKind, Severity};
pub use nick::{NickGenerator, RoomNick};
pub use outbox::{Outbox, OutboxConfig, Outgoing, ReadingId, SeenIds};
pub use reading::{Quality, Reading};
pub use reject::{Rejection, RejectionCounts};
pub use stats::IntervalStats;
pub use time::{Millis, Timestamp};
pub use totals::{IntervalTotal, TotalIngest, TotalsMonitor};
pub use units::Watts;
