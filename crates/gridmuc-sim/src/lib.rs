//! Offline neighbourhood load simulation for gridmuc: household models, labelled anomalies and a
//! runner that drives the very same `gridmuc_core::Aggregator` as the live substation bot.
//!
//! Sans-IO: nothing here opens a file or socket or reads a clock. Time is a virtual clock derived
//! from the scenario, randomness comes from ChaCha RNGs seeded from the scenario seed, so the same
//! scenario and seed always give bit-identical output. Files are written by `gridmuc-report`.
//!
//! Structure (after the CREST demand model's layering: occupancy → activities → appliances, plus
//! weather-driven lighting, heating and PV) — see `README` of the crate docs in each module.

//!
//! Features: `scenarios` (default) adds neighbourhood runs, scenario files, scoring and the
//! linkage experiment (rayon, toml). Without it (`default-features = false`) the crate is the
//! household model alone, for a live meter: [`HouseModel`].

pub mod anomaly;
pub mod calendar;
#[cfg(feature = "scenarios")]
pub mod eval;
pub mod house_model;
pub mod household;
#[cfg(feature = "scenarios")]
pub mod linkage;
#[cfg(feature = "scenarios")]
pub mod neighbourhood;
pub mod occupancy;
#[cfg(feature = "scenarios")]
pub mod realism;
#[cfg(feature = "scenarios")]
pub mod runner;
#[cfg(feature = "scenarios")]
pub mod scenario;
pub mod seed;
#[cfg(feature = "scenarios")]
pub mod traces;
pub mod weather;

pub use anomaly::{AnomalyKind, AnomalySpec, Label};
#[cfg(feature = "scenarios")]
pub use eval::{DetectorScore, score_detectors};
pub use house_model::HouseModel;
pub use household::HouseholdConfig;
#[cfg(feature = "scenarios")]
pub use linkage::{LinkageConfig, LinkageOutput, run_linkage};
#[cfg(feature = "scenarios")]
pub use neighbourhood::{BenchSummary, Neighbourhood};
#[cfg(feature = "scenarios")]
pub use runner::{
    AlertRecord, HouseRecord, IntervalRecord, LoadSource, Progress, SimOutput, replay, run,
};
#[cfg(feature = "scenarios")]
pub use scenario::{Scenario, ScenarioError};

/// Minutes per day: the household model's native resolution is one minute.
pub const MINUTES_PER_DAY: usize = 1440;
