//! Labelled anomaly injection: what goes wrong, where and when, with the ground truth kept for scoring.
//!
//! Physical anomalies change what flows through the transformer (a faulty appliance in one house,
//! a neighbourhood-wide overload, a coordinated EV surge). Meter anomalies change only what is
//! reported (stuck or dead meters, negative or absurd values that the codec must reject).

use crate::MINUTES_PER_DAY;
use rand::Rng;
use serde::Deserialize;

/// Every kind of injected anomaly; each has its own label kind for scoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// One house draws a large extra load (faulty heater, welding in the garage).
    HouseSpike,
    /// A meter keeps repeating its last value.
    StuckMeter,
    /// A meter goes silent.
    DeadMeter,
    /// A meter reports exactly 0 W (a dead sensor that still talks).
    ZeroMeter,
    /// A meter sends negative consumption in a field that does not say export.
    NegativeReading,
    /// A meter sends NaN, infinity or values far beyond a house's physical limit.
    AbsurdReading,
    /// Many houses add load at once (cold snap, event), pushing the total over the rating.
    NeighbourhoodOverload,
    /// Many EVs start charging in the same minute (tariff switch, smart-charging bug).
    EvSurge,
    /// Load on many houses climbs steadily over the event (heat wave, a growing fault): the
    /// extra grows linearly from 0 to `magnitude_kw` per house, so the transformer heats slowly.
    LoadRamp,
}

impl AnomalyKind {
    /// All kinds, for coverage checks.
    pub const ALL: [AnomalyKind; 9] = [
        AnomalyKind::HouseSpike,
        AnomalyKind::StuckMeter,
        AnomalyKind::DeadMeter,
        AnomalyKind::ZeroMeter,
        AnomalyKind::NegativeReading,
        AnomalyKind::AbsurdReading,
        AnomalyKind::NeighbourhoodOverload,
        AnomalyKind::EvSurge,
        AnomalyKind::LoadRamp,
    ];

    /// Kebab-case name, as in scenario files and output tables.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::HouseSpike => "house-spike",
            AnomalyKind::StuckMeter => "stuck-meter",
            AnomalyKind::DeadMeter => "dead-meter",
            AnomalyKind::ZeroMeter => "zero-meter",
            AnomalyKind::NegativeReading => "negative-reading",
            AnomalyKind::AbsurdReading => "absurd-reading",
            AnomalyKind::NeighbourhoodOverload => "neighbourhood-overload",
            AnomalyKind::EvSurge => "ev-surge",
            AnomalyKind::LoadRamp => "load-ramp",
        }
    }

    /// Whether it changes the physical load (as opposed to only the reports).
    pub fn is_physical(self) -> bool {
        matches!(
            self,
            AnomalyKind::HouseSpike
                | AnomalyKind::NeighbourhoodOverload
                | AnomalyKind::EvSurge
                | AnomalyKind::LoadRamp
        )
    }

    /// Whether it concerns one house rather than a share of the neighbourhood.
    fn single_house(self) -> bool {
        !matches!(
            self,
            AnomalyKind::NeighbourhoodOverload | AnomalyKind::EvSurge | AnomalyKind::LoadRamp
        )
    }
}

/// One `[[anomalies]]` entry of a scenario: `count` events of a kind, at fixed or random times.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySpec {
    /// What to inject.
    pub kind: AnomalyKind,
    /// How many separate events (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Day index (0-based) of the first event; random when absent.
    pub day: Option<u32>,
    /// Local start time `HH:MM`; random (08:00–22:00) when absent.
    pub time: Option<String>,
    /// Duration in minutes.
    #[serde(default = "default_duration")]
    pub duration_min: u32,
    /// Extra load per affected house in kW (spikes and overloads).
    #[serde(default = "default_magnitude")]
    pub magnitude_kw: f64,
    /// Share of houses affected, for neighbourhood events.
    #[serde(default = "default_share")]
    pub share: f64,
    /// Load ramps only: the multiple of the transformer rating the street's total reaches at
    /// the ramp's end (issue #13's "3-hour ramp to 1.3 × rating"), so the ramp is as steep as
    /// the street needs rather than a fixed kW a house; `magnitude_kw` is then unused. Such a
    /// ramp ends on the day it starts.
    pub to_rating: Option<f64>,
}

fn one() -> u32 {
    1
}
fn default_duration() -> u32 {
    30
}
fn default_magnitude() -> f64 {
    9.0
}
fn default_share() -> f64 {
    0.3
}

/// Parses `HH:MM` into minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// One concrete injected event; the simulator applies it, the scorer reads it as ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// Sequential id, stable for a scenario and seed.
    pub id: u32,
    /// What was injected.
    pub kind: AnomalyKind,
    /// First affected minute, counted from the start of the simulation.
    pub start_min: u32,
    /// Affected minutes.
    pub duration_min: u32,
    /// Affected houses (indices into the neighbourhood; never exposed to the aggregator).
    pub houses: Vec<usize>,
    /// Extra watts per affected house for physical anomalies.
    pub extra_w: f32,
    /// A ramp's target street total (W) at its end, still to be turned into `extra_w` from the
    /// clean loads of its day (see [`AnomalySpec::to_rating`]); `None` once resolved.
    pub to_total_w: Option<f32>,
}

impl Label {
    /// One past the last affected minute.
    pub fn end_min(&self) -> u32 {
        self.start_min + self.duration_min
    }

    /// Whether `minute` (from the simulation start) is affected.
    pub fn covers(&self, minute: u32) -> bool {
        (self.start_min..self.end_min()).contains(&minute)
    }

    /// Extra watts per affected house at `minute` (inside the event): constant, or for a ramp
    /// growing linearly to `extra_w` at its last minute.
    pub fn extra_at(&self, minute: u32) -> f32 {
        match self.kind {
            AnomalyKind::LoadRamp => {
                let done = minute.saturating_sub(self.start_min) + 1;
                self.extra_w * done as f32 / self.duration_min.max(1) as f32
            }
            _ => self.extra_w,
        }
    }
}

/// Turns scenario specs into concrete labelled events; `rng` is the scenario's anomaly stream.
/// Events start on a boundary of the `resolution_min`-minute reading periods, so a 20-minute
/// fault fills a whole 15-minute reading at full size instead of being spread thin over two:
/// what a meter at that resolution would send of it.
pub fn schedule<R: Rng>(
    specs: &[AnomalySpec],
    houses: usize,
    days: u32,
    resolution_min: u32,
    rating_w: f64,
    rng: &mut R,
) -> Vec<Label> {
    let resolution = resolution_min.max(1);
    let mut labels = Vec::new();
    let total_min = days * MINUTES_PER_DAY as u32;
    for spec in specs {
        let fixed_time = spec.time.as_deref().and_then(parse_hhmm);
        for n in 0..spec.count {
            let day = match spec.day {
                Some(d) => (d + n).min(days.saturating_sub(1)),
                None => rng.random_range(0..days.max(1)),
            };
            let tod = fixed_time.unwrap_or_else(|| rng.random_range(8 * 60..22 * 60));
            let to_total = spec
                .to_rating
                .filter(|_| spec.kind == AnomalyKind::LoadRamp)
                .map(|r| (r * rating_w) as f32);
            let mut start_min =
                (day * MINUTES_PER_DAY as u32 + tod).min(total_min.saturating_sub(1));
            if to_total.is_some() {
                let latest = (day + 1) * MINUTES_PER_DAY as u32;
                start_min = start_min.min(latest.saturating_sub(spec.duration_min.max(1)));
            }
            let start_min = start_min / resolution * resolution;
            let duration_min = spec.duration_min.max(1).min(total_min - start_min);
            let chosen = if spec.kind.single_house() {
                vec![rng.random_range(0..houses.max(1))]
            } else {
                let k = ((houses as f64 * spec.share).round() as usize).clamp(1, houses.max(1));
                rand::seq::index::sample(rng, houses.max(1), k).into_vec()
            };
            labels.push(Label {
                id: labels.len() as u32,
                kind: spec.kind,
                start_min,
                duration_min,
                houses: chosen,
                extra_w: if to_total.is_some() {
                    0.0
                } else {
                    (spec.magnitude_kw * 1000.0) as f32
                },
                to_total_w: to_total,
            });
        }
    }
    labels.sort_by_key(|l| (l.start_min, l.id));
    for (i, l) in labels.iter_mut().enumerate() {
        l.id = i as u32;
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec(kind: AnomalyKind, count: u32, duration_min: u32) -> AnomalySpec {
        AnomalySpec {
            kind,
            count,
            day: None,
            time: None,
            duration_min,
            magnitude_kw: 12.0,
            share: 1.0,
            to_rating: None,
        }
    }

    #[test]
    fn faults_start_on_a_reading_period_so_a_15_minute_meter_sees_them_whole() {
        let specs = [
            spec(AnomalyKind::HouseSpike, 40, 20),
            spec(AnomalyKind::NeighbourhoodOverload, 40, 30),
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let labels = schedule(&specs, 100, 28, 15, 1e5, &mut rng);
        assert_eq!(labels.len(), 80);
        assert!(labels.iter().all(|l| l.start_min % 15 == 0));
        // A 20-minute spike covers its first 15-minute reading entirely.
        assert!(
            labels
                .iter()
                .all(|l| (l.start_min..l.start_min + 15).all(|m| l.covers(m)))
        );
        // At one minute nothing moves: the same stream gives the same minutes as before.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let fine = schedule(&specs, 100, 28, 1, 1e5, &mut rng);
        assert!(fine.iter().any(|l| l.start_min % 15 != 0));
        for (a, b) in fine.iter().zip(&labels) {
            assert_eq!(a.start_min / 15 * 15, b.start_min);
        }
    }
}
