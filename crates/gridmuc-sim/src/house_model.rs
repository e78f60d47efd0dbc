//! One house's load on demand, for a live meter that has no neighbourhood around it.
//!
//! A meter asks "what did this house draw between `start` and `start + len`?" at whatever times
//! its clock says; it may restart, skip hours or ask twice. So a day's load here is a function of
//! (seed, configuration, day) alone, never of what was asked before: the house is drawn from the
//! seed, the previous day is simulated from a fresh state as a warm-up (appliance cycles running
//! over midnight, the occupancy chain's state), then the day itself, each day with its own
//! derived random stream. The weather is the same kind of function: a week of warm-up days gives
//! its day-to-day persistence. The neighbourhood runs keep one continuous stream per house
//! instead (faster); both draw houses and days from the same model and distributions.
//!
//! Cost: about two house-days and eight weather-days of simulation per new day asked (well under
//! a millisecond in a release build); the last day is cached.

use crate::MINUTES_PER_DAY;
use crate::calendar::SimDay;
use crate::household::{ActivityModel, DayContext, House, HouseInfo, HouseholdConfig};
use crate::seed::{Stream, derive_seed};
use crate::weather::{DayWeather, WeatherConfig, WeatherGen};
use gridmuc_core::time::{DAY, MINUTE, Millis};
use gridmuc_core::{Timestamp, Watts};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Days of weather simulated before the day asked, so its temperature anomaly has the persistence
/// of a continuous run (the AR(1) coefficient is 0.7 a day: 0.7⁷ < 0.1).
const WEATHER_WARM_UP_DAYS: i64 = 7;

/// A single house whose load can be asked for any interval, reproducibly from a seed.
#[derive(Clone, Debug)]
pub struct HouseModel {
    seed: u64,
    config: HouseholdConfig,
    weather: WeatherConfig,
    activity: ActivityModel,
    info: HouseInfo,
    /// The last day simulated (epoch day) and its per-minute net loads (W).
    cached: Option<(i64, Vec<f32>)>,
}

impl HouseModel {
    /// A house drawn from `seed` with the neighbourhood's adoption shares in `config` (EV, PV,
    /// heating) and the default UK climate.
    pub fn new(seed: u64, config: HouseholdConfig) -> HouseModel {
        HouseModel::with_weather(seed, config, WeatherConfig::default())
    }

    /// The same with another climate, e.g. a colder or sunnier place.
    pub fn with_weather(seed: u64, config: HouseholdConfig, weather: WeatherConfig) -> HouseModel {
        let info = House::new(&config, derive_seed(seed, Stream::House, 0)).info();
        HouseModel {
            seed,
            config,
            weather,
            activity: ActivityModel::default(),
            info,
            cached: None,
        }
    }

    /// What was drawn for this house (residents, heating, EV, PV), so a meter can log it.
    pub fn info(&self) -> &HouseInfo {
        &self.info
    }

    /// Mean net power (W, + import / − export) over `[start, start + len)`, weighting each model
    /// minute by its overlap; a non-positive `len` gives the minute that contains `start`.
    pub fn mean_power(&mut self, start: Timestamp, len: Millis) -> Watts {
        if len <= 0 {
            let day = start.0.div_euclid(DAY);
            let minute = (start.0 - day * DAY) / MINUTE;
            return Watts(f64::from(self.day(day)[minute as usize]).round() as i64);
        }
        let end = start.0 + len;
        let mut t = start.0;
        let mut watt_ms = 0.0f64;
        while t < end {
            let day = t.div_euclid(DAY);
            let minute = (t - day * DAY) / MINUTE;
            let until = (day * DAY + (minute + 1) * MINUTE).min(end);
            watt_ms += f64::from(self.day(day)[minute as usize]) * (until - t) as f64;
            t = until;
        }
        Watts((watt_ms / len as f64).round() as i64)
    }

    /// One whole day of per-minute net loads (W) for the day `epoch_day` (days since 1970-01-01).
    pub fn day(&mut self, epoch_day: i64) -> &[f32] {
        if self.cached.as_ref().is_none_or(|(d, _)| *d != epoch_day) {
            let minutes = self.simulate(epoch_day);
            self.cached = Some((epoch_day, minutes));
        }
        match &self.cached {
            Some((_, minutes)) => minutes,
            None => unreachable!("filled just above"),
        }
    }

    /// The weather of the day before `epoch_day` and of the day itself, after the warm-up.
    fn weather_for(&self, epoch_day: i64) -> (DayWeather, DayWeather) {
        let mut weather = WeatherGen::new(self.weather.clone());
        let mut draw = |d: i64| {
            let seed = derive_seed(self.seed, Stream::Weather, d as u64);
            weather.day(SimDay::new(d), &mut ChaCha8Rng::seed_from_u64(seed))
        };
        for d in epoch_day - WEATHER_WARM_UP_DAYS..epoch_day - 1 {
            draw(d);
        }
        let yesterday = draw(epoch_day - 1);
        (yesterday, draw(epoch_day))
    }

    fn simulate(&self, epoch_day: i64) -> Vec<f32> {
        let (yesterday, today) = self.weather_for(epoch_day);
        let mut house = House::new(&self.config, derive_seed(self.seed, Stream::House, 0));
        let mut out = vec![0.0; MINUTES_PER_DAY];
        for (d, weather) in [(epoch_day - 1, &yesterday), (epoch_day, &today)] {
            house.reseed(derive_seed(self.seed, Stream::HouseDay, d as u64));
            let ctx = DayContext {
                day: SimDay::new(d),
                weather,
                activity: &self.activity,
            };
            house.simulate_day(&ctx, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::days_from_civil;

    fn model() -> HouseModel {
        HouseModel::new(42, HouseholdConfig::default())
    }

    #[test]
    fn a_day_depends_on_the_seed_and_the_day_not_on_what_was_asked_before() {
        let day = days_from_civil(2026, 1, 14);
        let t = Timestamp(day * DAY + 18 * 3_600_000);
        let mut fresh = model();
        let direct = fresh.mean_power(t, 15 * MINUTE);
        let mut wandering = model();
        wandering.mean_power(Timestamp(t.0 + 40 * DAY), MINUTE);
        wandering.mean_power(Timestamp(t.0 - 3 * DAY), MINUTE);
        assert_eq!(wandering.mean_power(t, 15 * MINUTE), direct);
        assert_ne!(
            HouseModel::new(43, HouseholdConfig::default()).day(day),
            fresh.day(day)
        );
    }

    #[test]
    fn interval_means_are_minute_means_weighted_by_overlap() {
        let day = days_from_civil(2026, 7, 1);
        let mut m = model();
        let minutes = m.day(day).to_vec();
        let t0 = Timestamp(day * DAY + 600 * MINUTE);
        let expected = f64::from(minutes[600..615].iter().sum::<f32>()) / 15.0;
        assert_eq!(
            m.mean_power(t0, 15 * MINUTE),
            Watts(expected.round() as i64)
        );
        // Half of minute 600 and half of minute 601.
        let half = (f64::from(minutes[600]) + f64::from(minutes[601])) / 2.0;
        assert_eq!(
            m.mean_power(Timestamp(t0.0 + 30_000), MINUTE),
            Watts(half.round() as i64)
        );
        assert_eq!(
            m.mean_power(t0, 0),
            Watts(f64::from(minutes[600]).round() as i64)
        );
    }

    #[test]
    fn an_interval_over_midnight_reads_both_days() {
        let day = days_from_civil(2026, 3, 3);
        let mut m = model();
        let last = f64::from(m.day(day)[MINUTES_PER_DAY - 1]);
        let first = f64::from(m.day(day + 1)[0]);
        let t = Timestamp((day + 1) * DAY - MINUTE);
        assert_eq!(
            m.mean_power(t, 2 * MINUTE),
            Watts(((last + first) / 2.0).round() as i64)
        );
    }
}
