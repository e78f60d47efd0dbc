//! A neighbourhood of houses sharing one sky, simulated a day at a time.
//!
//! Memory is O(houses × one day) whatever the number of days: each day's per-minute loads are
//! written into one reused buffer, consumed, and overwritten by the next day. Houses are
//! independent given the weather, so they run in parallel (rayon); each house owns its RNG
//! stream, so the result does not depend on the number of threads.

use crate::MINUTES_PER_DAY;
use crate::anomaly::{AnomalyKind, Label};
use crate::calendar::SimDay;
use crate::household::{ActivityModel, DayContext, House, HouseInfo, HouseholdConfig};
use crate::weather::{DayWeather, WeatherConfig, WeatherGen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use crate::seed::{Stream, derive_seed};

/// Adds the physical anomalies of day `day_index` to `loads` (house-major, one day per house);
/// `surge_w` is the charger power a house adds in a coordinated EV surge.
pub(crate) fn apply_physical(
    labels: &mut [Label],
    day_index: u32,
    loads: &mut [f32],
    surge_w: impl Fn(usize) -> f32,
) {
    let day_start = day_index * MINUTES_PER_DAY as u32;
    let day_end = day_start + MINUTES_PER_DAY as u32;
    // A ramp to a multiple of the rating: its houses share what the clean street lacks of the
    // target over the ramp's last 15 minutes (silent meters' houses count as nothing).
    for label in labels.iter_mut() {
        let Some(target) = label.to_total_w else {
            continue;
        };
        if !(day_start..day_end).contains(&label.start_min) {
            continue;
        }
        let last = label.end_min().min(day_end) - day_start;
        let first = last.saturating_sub(15).max(label.start_min - day_start);
        let sum: f64 = loads
            .chunks_exact(MINUTES_PER_DAY)
            .flat_map(|row| &row[first as usize..last as usize])
            .filter(|w| !w.is_nan())
            .map(|w| f64::from(*w))
            .sum();
        let clean = sum / f64::from((last - first).max(1));
        label.extra_w =
            ((f64::from(target) - clean).max(0.0) / label.houses.len().max(1) as f64) as f32;
        label.to_total_w = None;
    }
    for label in labels.iter().filter(|l| l.kind.is_physical()) {
        if label.end_min() <= day_start || label.start_min >= day_end {
            continue;
        }
        let from = label.start_min.max(day_start) - day_start;
        let to = label.end_min().min(day_end) - day_start;
        for &h in &label.houses {
            let row = &mut loads[h * MINUTES_PER_DAY..(h + 1) * MINUTES_PER_DAY];
            for m in from..to {
                row[m as usize] += match label.kind {
                    AnomalyKind::EvSurge => surge_w(h),
                    // A ramp grows minute by minute; every other fault is constant.
                    _ => label.extra_at(day_start + m),
                };
            }
        }
    }
}

/// Houses, weather and the physical anomalies that change what flows through the transformer.
pub struct Neighbourhood {
    houses: Vec<House>,
    weather: WeatherGen,
    weather_rng: ChaCha8Rng,
    activity: ActivityModel,
    start_day: i64,
    day_index: u32,
    physical: Vec<Label>,
    loads: Vec<f32>,
    today: Option<DayWeather>,
}

/// One simulated day: calendar, weather, and per-house per-minute net loads (house-major).
pub struct Day<'a> {
    /// Day index from the start of the simulation.
    pub index: u32,
    /// Calendar facts.
    pub day: SimDay,
    /// The shared weather.
    pub weather: &'a DayWeather,
    /// `loads[h * 1440 + minute]`: net watts of house `h`.
    pub loads: &'a [f32],
}

impl Day<'_> {
    /// One house's day of per-minute net loads.
    pub fn house(&self, h: usize) -> &[f32] {
        &self.loads[h * MINUTES_PER_DAY..(h + 1) * MINUTES_PER_DAY]
    }
}

/// What `bench sim` measures: the household model plus neighbourhood summation.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchSummary {
    /// Houses × days simulated.
    pub house_days: u64,
    /// Highest one-minute neighbourhood total (W).
    pub peak_total_w: f64,
    /// Mean daily net energy per house (kWh).
    pub mean_daily_kwh: f64,
}

impl Neighbourhood {
    /// Draws `houses` households and prepares the weather; `labels` may include meter faults (ignored here).
    pub fn new(
        config: &HouseholdConfig,
        weather: WeatherConfig,
        houses: usize,
        start_day: i64,
        seed: u64,
        labels: &[Label],
    ) -> Neighbourhood {
        let houses: Vec<House> = (0..houses)
            .map(|h| House::new(config, derive_seed(seed, Stream::House, h as u64)))
            .collect();
        let n = houses.len();
        Neighbourhood {
            houses,
            weather: WeatherGen::new(weather),
            weather_rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, Stream::Weather, 0)),
            activity: ActivityModel::default(),
            start_day,
            day_index: 0,
            physical: labels
                .iter()
                .filter(|l| l.kind.is_physical())
                .cloned()
                .collect(),
            loads: vec![0.0; n * MINUTES_PER_DAY],
            today: None,
        }
    }

    /// The physical anomalies as applied so far (a ramp's `extra_w` is known from its day on).
    pub fn physical_labels(&self) -> &[Label] {
        &self.physical
    }

    /// Number of houses.
    pub fn len(&self) -> usize {
        self.houses.len()
    }

    /// True for an empty neighbourhood (never, for a validated scenario).
    pub fn is_empty(&self) -> bool {
        self.houses.is_empty()
    }

    /// Static features of every house.
    pub fn house_info(&self) -> Vec<HouseInfo> {
        self.houses.iter().map(House::info).collect()
    }

    /// Cycles started per appliance, one item per owned appliance of every house, for calibration.
    pub fn appliance_starts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.houses.iter().flat_map(House::appliance_starts)
    }

    /// Simulates the next day for every house and applies the physical anomalies.
    pub fn next_day(&mut self) -> Day<'_> {
        let day = SimDay::new(self.start_day + i64::from(self.day_index));
        let weather = self.weather.day(day, &mut self.weather_rng);
        let ctx = DayContext {
            day,
            weather: &weather,
            activity: &self.activity,
        };
        self.loads
            .par_chunks_mut(MINUTES_PER_DAY)
            .zip(self.houses.par_iter_mut())
            .for_each(|(out, house)| house.simulate_day(&ctx, out));
        self.apply_physical();
        let index = self.day_index;
        self.day_index += 1;
        let weather = self.today.insert(weather);
        Day {
            index,
            day,
            weather,
            loads: &self.loads,
        }
    }

    fn apply_physical(&mut self) {
        let houses = &self.houses;
        apply_physical(&mut self.physical, self.day_index, &mut self.loads, |h| {
            houses[h].surge_charger_w()
        });
    }

    /// Runs `days` days, summing the neighbourhood per minute: the workload `bench sim` times.
    pub fn bench(&mut self, days: u32) -> BenchSummary {
        let houses = self.len();
        let mut peak = f64::MIN;
        let mut energy_wmin = 0.0f64;
        let mut total = vec![0f32; MINUTES_PER_DAY];
        for _ in 0..days {
            let day = self.next_day();
            total.fill(0.0);
            for row in day.loads.chunks_exact(MINUTES_PER_DAY) {
                for (t, w) in total.iter_mut().zip(row) {
                    *t += *w;
                }
            }
            for t in &total {
                peak = peak.max(f64::from(*t));
                energy_wmin += f64::from(*t);
            }
        }
        let house_days = houses as u64 * u64::from(days);
        BenchSummary {
            house_days,
            peak_total_w: peak,
            mean_daily_kwh: energy_wmin / 60_000.0 / house_days.max(1) as f64,
        }
    }
}
