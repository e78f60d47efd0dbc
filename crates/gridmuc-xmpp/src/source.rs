//! Where a meter's numbers come from: the `gridmuc-source` crate (real meters, recordings,
//! stdin, the built-in model), plus the staged load changes of demos and tests.

pub use gridmuc_source::{
    Fault, HouseModel, Link, MqttConfig, Sample, Source, SourceConfig, SourceCounts, SourceError,
};

use gridmuc_core::Watts;
use std::time::Duration;

/// A load change during a time window after the meter started, to stage overloads and spikes.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Injection {
    /// Window start after meter start.
    #[serde(with = "gridmuc_core::time::span::secs")]
    pub from: Duration,
    /// Window end after meter start.
    #[serde(with = "gridmuc_core::time::span::secs")]
    pub to: Duration,
    /// Watts added to every reading in the window (e.g. every EV plugs in at once).
    #[serde(default)]
    pub add: i64,
}

impl Injection {
    /// Watts added at `elapsed` after meter start by every window open at that moment.
    pub fn total_at(injections: &[Injection], elapsed: Duration) -> Watts {
        Watts(
            injections
                .iter()
                .filter(|i| i.from <= elapsed && elapsed < i.to)
                .map(|i| i.add)
                .sum(),
        )
    }
}
