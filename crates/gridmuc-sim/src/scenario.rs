//! Scenario files (`simulations/*.toml`): houses, days, transformer, adoption shares, anomalies and
//! detector settings. Parsed from a string so the simulator stays free of file I/O.

use crate::anomaly::AnomalySpec;
use crate::calendar::parse_date;
use crate::household::HouseholdConfig;
use crate::runner::SimOutput;
use crate::weather::WeatherConfig;
use gridmuc_core::time::MINUTE;
use gridmuc_core::{AggregatorConfig, Watts};
use serde::Deserialize;
use thiserror::Error;

/// Why a scenario cannot be run.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The TOML does not parse or has unknown fields.
    #[error("scenario TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of its meaningful range.
    #[error("scenario field `{field}`: {reason}")]
    Invalid {
        /// Offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Sanity ranges the scenario author expects, checked by tests and shown in the report.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Expectations {
    /// Plausible mean daily energy per house (kWh), import minus export.
    pub daily_kwh: [f64; 2],
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            daily_kwh: [4.0, 30.0],
        }
    }
}

/// A whole neighbourhood simulation, as written in `simulations/<name>.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name; also the output folder under `reports/`.
    pub name: String,
    /// One or two sentences for the report.
    #[serde(default)]
    pub description: String,
    /// Master seed: every random stream is derived from it.
    #[serde(default)]
    pub seed: u64,
    /// Number of households on the feeder.
    pub houses: usize,
    /// Number of simulated days.
    pub days: u32,
    /// First day, `YYYY-MM-DD` (local time is taken as UTC).
    pub start: String,
    /// Reporting interval in minutes (the model runs at one minute and averages up).
    #[serde(default = "one_minute")]
    pub resolution_min: u32,
    /// Transformer rating in kW; overrides `detectors.overload.rating`.
    pub transformer_kw: f64,
    /// Climate.
    #[serde(default)]
    pub weather: WeatherConfig,
    /// Adoption shares and household ranges.
    #[serde(default)]
    pub households: HouseholdConfig,
    /// Injected anomalies.
    #[serde(default)]
    pub anomalies: Vec<AnomalySpec>,
    /// The same detector settings the live substation bot takes.
    #[serde(default)]
    pub detectors: AggregatorConfig,
    /// Sanity ranges.
    #[serde(default)]
    pub expect: Expectations,
}

fn one_minute() -> u32 {
    1
}

impl Scenario {
    /// Parses and validates a scenario; the rating and interval are copied into the detector config.
    pub fn from_toml_str(text: &str) -> Result<Scenario, ScenarioError> {
        toml::from_str::<Scenario>(text)?.validated()
    }

    /// Checks ranges and copies the rating and interval into the detector config.
    fn validated(mut self) -> Result<Scenario, ScenarioError> {
        let s = &mut self;
        let invalid = |field, reason: &str| ScenarioError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        if s.houses == 0 || s.houses > 100_000 {
            return Err(invalid("houses", "must be 1..=100000"));
        }
        if s.days == 0 || s.days > 3660 {
            return Err(invalid("days", "must be 1..=3660"));
        }
        if s.resolution_min == 0 || 1440 % s.resolution_min != 0 {
            return Err(invalid("resolution_min", "must divide a day"));
        }
        if !(s.transformer_kw.is_finite() && s.transformer_kw > 0.0) {
            return Err(invalid("transformer_kw", "must be positive"));
        }
        if s.start_day().is_none() {
            return Err(invalid("start", "must be YYYY-MM-DD"));
        }
        let h = &s.households;
        for (field, v) in [
            ("households.ev_share", h.ev_share),
            ("households.pv_share", h.pv_share),
            ("households.heat_pump_share", h.heat_pump_share),
            (
                "households.electric_heating_share",
                h.electric_heating_share,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(field, "must be within 0..=1"));
            }
        }
        if h.heat_pump_share + h.electric_heating_share > 1.0 {
            return Err(invalid(
                "households",
                "heating shares add up to more than 1",
            ));
        }
        for a in &s.anomalies {
            if let Some(t) = &a.time
                && crate::anomaly::parse_hhmm(t).is_none()
            {
                return Err(invalid("anomalies.time", "must be HH:MM"));
            }
            if a.day.is_some_and(|d| d >= s.days) {
                return Err(invalid("anomalies.day", "must be before the last day"));
            }
        }
        s.detectors.overload.rating = Watts::from_kw(s.transformer_kw);
        s.detectors.interval = i64::from(s.resolution_min) * MINUTE;
        Ok(self)
    }

    /// First day as days since the epoch.
    pub fn start_day(&self) -> Option<i64> {
        parse_date(&self.start)
    }

    /// Reporting intervals per day.
    pub fn intervals_per_day(&self) -> usize {
        (1440 / self.resolution_min) as usize
    }

    /// Reporting intervals in 30 minutes, the span of an ADMD.
    pub fn intervals_per_30_min(&self) -> usize {
        (30 * MINUTE / self.detectors.interval.max(1)).max(1) as usize
    }

    /// This scenario under `seed` and the same street without faults, both with the transformer
    /// rated at the clean street's 30-minute ADMD: how issue #13's scores are taken. `run` runs
    /// a scenario (simulated or replayed); the clean street is run once, unrated, to find it.
    pub fn rated_at_clean_admd(
        &self,
        seed: u64,
        run: impl Fn(&Scenario) -> SimOutput,
    ) -> (Scenario, Scenario) {
        let mut clean = self.clone();
        clean.seed = seed;
        clean.anomalies.clear();
        let rating_kw = run(&clean).peak_mean_w(clean.intervals_per_30_min()) / 1000.0;
        clean.transformer_kw = rating_kw;
        clean.detectors.overload.rating = Watts::from_kw(rating_kw);
        let mut faulty = self.clone();
        faulty.seed = seed;
        faulty.transformer_kw = rating_kw;
        faulty.detectors.overload.rating = clean.detectors.overload.rating;
        (faulty, clean)
    }
}

/// What `gridmuc replay` takes besides the traces: the faults to inject and the detector settings,
/// as in a scenario file without the fields the traces decide (houses, days, start, resolution).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayPlan {
    /// Short name; also the output folder under `reports/`.
    pub name: String,
    /// One or two sentences for the report.
    #[serde(default)]
    pub description: String,
    /// Seed of the fault schedule and the nicknames.
    #[serde(default)]
    pub seed: u64,
    /// Transformer rating in kW; by default the clean traces' 30-minute peak.
    pub transformer_kw: Option<f64>,
    /// Injected anomalies.
    #[serde(default)]
    pub anomalies: Vec<AnomalySpec>,
    /// The same detector settings the live substation bot takes.
    #[serde(default)]
    pub detectors: AggregatorConfig,
}

impl ReplayPlan {
    /// Parses a replay plan.
    pub fn from_toml_str(text: &str) -> Result<ReplayPlan, ScenarioError> {
        Ok(toml::from_str(text)?)
    }

    /// The scenario that replays traces of `houses` houses over `days` whole days from `start`
    /// (`YYYY-MM-DD`) at `resolution_min`, against a transformer of `transformer_kw`.
    pub fn scenario_for(
        &self,
        houses: usize,
        days: u32,
        start: String,
        resolution_min: u32,
        transformer_kw: f64,
    ) -> Result<Scenario, ScenarioError> {
        Scenario {
            name: self.name.clone(),
            description: self.description.clone(),
            seed: self.seed,
            houses,
            days,
            start,
            resolution_min,
            transformer_kw: self.transformer_kw.unwrap_or(transformer_kw),
            weather: WeatherConfig::default(),
            households: HouseholdConfig::default(),
            anomalies: self.anomalies.clone(),
            detectors: self.detectors.clone(),
            expect: Expectations {
                daily_kwh: [0.0, 100.0],
            },
        }
        .validated()
    }
}
