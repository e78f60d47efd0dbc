//! What the neighbourhood total usually is at this time of day and day of week.
//!
//! A street's load follows the clock: the evening peak is two to three times the night, and
//! weekends differ from weekdays. Detectors that compare the total with its last few minutes
//! mistake the evening rise for an event and miss a doubling at night; comparing with the same
//! slot of earlier days does not. Each slot keeps an exponentially weighted mean and mean
//! absolute deviation that forget a day's worth of samples at `day_weight`. A weekday slot
//! answers once it has seen `min_days` days; until then the same slot over all days answers.

use crate::time::{DAY, Millis, Timestamp};
use serde::{Deserialize, Serialize};

/// Time-of-week baseline settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// Width of a slot: readings within it on earlier days are the reference.
    pub slot: Millis,
    /// Weight of one day's samples in a slot (EWMA over days): 0.2 remembers about a week.
    pub day_weight: f64,
    /// Days a slot must have seen before it is trusted.
    pub min_days: u32,
    /// Local time minus UTC, so slots follow the street's clock (the simulator runs in UTC).
    pub utc_offset: Millis,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            slot: 30 * 60_000,
            day_weight: 0.2,
            min_days: 2,
            utc_offset: 0,
        }
    }
}

/// One slot's running level and spread.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    mean: f64,
    abs_dev: f64,
    /// Distinct days seen.
    days: u32,
    /// Day index of the last sample, to count days.
    last_day: i64,
}

impl Slot {
    fn update(&mut self, day: i64, x: f64, alpha: f64) {
        if self.days == 0 {
            *self = Slot {
                mean: x,
                abs_dev: 0.0,
                days: 1,
                last_day: day,
            };
            return;
        }
        if day != self.last_day {
            self.days = self.days.saturating_add(1);
            self.last_day = day;
        }
        self.abs_dev += alpha * ((x - self.mean).abs() - self.abs_dev);
        self.mean += alpha * (x - self.mean);
    }
}

/// The usual level at one instant and how far from it the total usually strays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    /// Usual total (W).
    pub mean: f64,
    /// Usual mean absolute deviation from it (W).
    pub abs_dev: f64,
}

/// Slot-of-week and slot-of-day baselines of one series, plus its long-run typical level.
#[derive(Clone, Debug)]
pub struct WeeklyBaseline {
    config: BaselineConfig,
    alpha: f64,
    week: Vec<Slot>,
    day: Vec<Slot>,
    typical: Option<f64>,
    typical_alpha: f64,
}

impl WeeklyBaseline {
    /// An empty baseline for samples `interval` apart.
    pub fn new(config: BaselineConfig, interval: Millis) -> Self {
        let slot = config.slot.clamp(interval.max(1), DAY);
        let per_day = (DAY / slot).max(1) as usize;
        let samples_per_slot = (slot as f64 / interval.max(1) as f64).max(1.0);
        WeeklyBaseline {
            alpha: (config.day_weight / samples_per_slot).clamp(1e-6, 1.0),
            typical_alpha: (interval.max(1) as f64 / DAY as f64).clamp(1e-6, 1.0),
            config: BaselineConfig { slot, ..config },
            week: vec![Slot::default(); per_day * 7],
            day: vec![Slot::default(); per_day],
            typical: None,
        }
    }

    /// (day index, slot of day, slot of week) of `at` in local time.
    fn index(&self, at: Timestamp) -> (i64, usize, usize) {
        let local = at.0 + self.config.utc_offset;
        let day = local.div_euclid(DAY);
        let of_day = (local.rem_euclid(DAY) / self.config.slot) as usize % self.day.len();
        // 1970-01-01 was a Thursday: +3 makes Monday 0.
        let weekday = (day + 3).rem_euclid(7) as usize;
        (day, of_day, weekday * self.day.len() + of_day)
    }

    /// The usual level at `at`, once a slot has seen enough days: interpolated between the two
    /// nearest slot centres, so a steep evening rise is a ramp and not a staircase.
    pub fn expected(&self, at: Timestamp) -> Option<Expected> {
        let half = self.config.slot / 2;
        let before = at.plus(-half);
        let frac = (before.0 + self.config.utc_offset).rem_euclid(self.config.slot) as f64
            / self.config.slot as f64;
        match (
            self.slot_at(before),
            self.slot_at(before.plus(self.config.slot)),
        ) {
            (Some(a), Some(b)) => Some(Expected {
                mean: a.mean + frac * (b.mean - a.mean),
                abs_dev: a.abs_dev + frac * (b.abs_dev - a.abs_dev),
            }),
            (a, b) => a.or(b),
        }
    }

    /// The trusted slot containing `at` (not interpolated): its weekday slot, else its slot over all days.
    pub fn slot_at(&self, at: Timestamp) -> Option<Expected> {
        let (_, of_day, of_week) = self.index(at);
        let min = self.config.min_days.max(1);
        [self.week[of_week], self.day[of_day]]
            .into_iter()
            .find(|s| s.days >= min)
            .map(|s| Expected {
                mean: s.mean,
                abs_dev: s.abs_dev,
            })
    }

    /// The long-run mean of the series (about a day's memory), the street's typical load.
    pub fn typical(&self) -> Option<f64> {
        self.typical
    }

    /// Learns the sample `x` taken at `at`.
    pub fn update(&mut self, at: Timestamp, x: f64) {
        let (day, of_day, of_week) = self.index(at);
        self.week[of_week].update(day, x, self.alpha);
        self.day[of_day].update(day, x, self.alpha);
        let t = self.typical.get_or_insert(x);
        *t += self.typical_alpha * (x - *t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{HOUR, MINUTE};

    /// A day shape: 20 kW at night, 60 kW from 17:00 to 21:00.
    fn street(at: i64) -> f64 {
        let hour = at.rem_euclid(DAY) / HOUR;
        if (17..21).contains(&hour) {
            60_000.0
        } else {
            20_000.0
        }
    }

    #[test]
    fn learns_the_evening_after_min_days() {
        let mut b = WeeklyBaseline::new(BaselineConfig::default(), MINUTE);
        let evening = Timestamp(18 * HOUR);
        for m in 0..(24 * 60) {
            b.update(Timestamp(m * MINUTE), street(m * MINUTE));
        }
        assert_eq!(b.expected(evening), None, "one day is not enough");
        for m in (24 * 60)..(3 * 24 * 60) {
            b.update(Timestamp(m * MINUTE), street(m * MINUTE));
        }
        let e = b.expected(Timestamp(3 * DAY + 18 * HOUR)).expect("learnt");
        assert!((e.mean - 60_000.0).abs() < 1.0, "{e:?}");
        let night = b.expected(Timestamp(3 * DAY + 3 * HOUR)).expect("learnt");
        assert!((night.mean - 20_000.0).abs() < 1.0, "{night:?}");
        let typical = b.typical().expect("seen");
        assert!(typical > 20_000.0 && typical < 60_000.0, "{typical}");
    }

    #[test]
    fn weekday_slot_takes_over_from_the_daily_one() {
        let mut b = WeeklyBaseline::new(BaselineConfig::default(), HOUR);
        // Three weeks in which Sundays (day 3 mod 7 from a Thursday epoch) run 30 kW, other days 10 kW.
        for h in 0..(21 * 24) {
            let at = Timestamp(h * HOUR);
            let sunday = (h / 24 + 3) % 7 == 6;
            b.update(at, if sunday { 30_000.0 } else { 10_000.0 });
        }
        let sunday_noon = Timestamp((21 + 3) * DAY + 12 * HOUR);
        assert_eq!((sunday_noon.0 / DAY + 3) % 7, 6);
        let e = b.expected(sunday_noon).expect("learnt");
        assert!((e.mean - 30_000.0).abs() < 1.0, "{e:?}");
    }
}
