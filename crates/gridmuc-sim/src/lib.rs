//! Offline neighbourhood load simulation for gridmuc: household models, labelled anomalies and a
//! runner that drives the very same `gridmuc_core::Aggregator` as the live substation bot.
//!
//! Sans-IO: nothing here opens a file or socket or reads a clock. Time is a virtual clock derived
//! from the scenario, randomness comes from ChaCha RNGs seeded from the scenario seed, so the same
//! scenario and seed always give bit-identical output. Files are written by `gridmuc-report`.
//!
//! Structure (after the CREST demand model's layering: occupancy → activities → appliances, plus
//! weather-driven lighting, heating and PV) — see `README` of the crate docs in each module.

pub mod anomaly;
pub mod calendar;
pub mod eval;
pub mod household;
pub mod linkage;
pub mod neighbourhood;
pub mod occupancy;
pub mod runner;
pub mod scenario;
pub mod weather;

pub use anomaly::{AnomalyKind, AnomalySpec, Label};
pub use eval::{DetectorScore, score_detectors};
pub use linkage::{LinkageConfig, LinkageOutput, run_linkage};
pub use neighbourhood::{BenchSummary, Neighbourhood};
pub use runner::{AlertRecord, HouseRecord, IntervalRecord, Progress, SimOutput, run};
pub use scenario::{Scenario, ScenarioError};

/// Minutes per day: the household model's native resolution is one minute.
pub const MINUTES_PER_DAY: usize = 1440;
