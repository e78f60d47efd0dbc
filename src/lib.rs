//! Umbrella crate so root `examples/` and `tests/` can reach every gridmuc crate by one name.

pub use gridmuc_core as core;
#[cfg(feature = "offline")]
pub use gridmuc_report as report;
pub use gridmuc_server as server;
#[cfg(feature = "offline")]
pub use gridmuc_sim as sim;
pub use gridmuc_xmpp as xmpp;
