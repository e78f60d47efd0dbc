//! The built-in household model, for demos and tests without a meter (until gridmuc-sim's
//! models replace it).

use gridmuc_core::{Timestamp, Watts};
use rand::Rng;

/// Appliances the model switches on: (name, watts, duration in intervals).
const APPLIANCES: [(&str, i64, u32); 4] = [
    ("kettle", 2_200, 1),
    ("cooking", 1_800, 6),
    ("washing", 600, 10),
    ("shower heater", 3_000, 2),
];

/// A small stochastic household: base load, a cycling fridge, time-of-day activity, appliance events.
///
/// Plausible rather than calibrated: means of roughly 0.3 kW at night and 1–2 kW in the
/// evening, with kettles and showers as short peaks.
#[derive(Clone, Debug)]
pub struct HouseholdModel {
    base: i64,
    /// Remaining intervals and watts of running appliances.
    running: Vec<(u32, i64)>,
}

impl HouseholdModel {
    /// Draws one household's standing load.
    pub fn new(rng: &mut impl Rng) -> HouseholdModel {
        HouseholdModel {
            base: rng.random_range(120..400),
            running: Vec::new(),
        }
    }

    /// Load at `at` (UTC hour of day drives activity).
    pub fn sample(&mut self, at: Timestamp, rng: &mut impl Rng) -> Watts {
        let hour = at.millis().div_euclid(3_600_000).rem_euclid(24);
        let activity = match hour {
            0..=5 => 0.15,
            6..=8 => 0.7,
            9..=16 => 0.35,
            17..=21 => 1.0,
            _ => 0.4,
        };
        self.running.retain_mut(|(left, _)| {
            *left = left.saturating_sub(1);
            *left > 0
        });
        if rng.random_bool(0.08 * activity) {
            let (_, w, d) = APPLIANCES[rng.random_range(0..APPLIANCES.len())];
            self.running.push((d, w));
        }
        let fridge = if rng.random_bool(0.4) { 90 } else { 0 };
        let misc = (activity * rng.random_range(50.0..500.0)) as i64;
        let appliances: i64 = self.running.iter().map(|(_, w)| w).sum();
        Watts(self.base + fridge + misc + appliances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_plausible() {
        let mut rng = rand::rng();
        let mut m = HouseholdModel::new(&mut rng);
        let evening = Timestamp(19 * 3_600_000);
        let values: Vec<i64> = (0..500)
            .map(|i| m.sample(evening.plus(i * 60_000), &mut rng).0)
            .collect();
        let mean = values.iter().sum::<i64>() as f64 / values.len() as f64;
        assert!(
            values.iter().all(|v| (100..12_000).contains(v)),
            "{values:?}"
        );
        assert!((300.0..3_000.0).contains(&mean), "mean {mean}");
    }
}
