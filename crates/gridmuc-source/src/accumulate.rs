//! Turns what a live meter said during an interval into that interval's reading, sans-IO.
//!
//! A meter's frames (telegrams, SML files, MQTT messages) carry instantaneous power, energy
//! registers or both. Energy registers integrate every second of the interval, so their delta
//! gives the true mean power whenever it is large against the register's resolution; short
//! intervals and idle houses fall back to the mean of the power samples. An interval with no
//! usable frame is a counted fault (dead or garbled), never a zero.

use gridmuc_core::{Millis, Timestamp, Watts};

/// An energy delta must be this many register steps before it beats the power samples.
const ENERGY_STEPS: f64 = 20.0;

/// Registers that move faster than this between two frames belong to another meter (a
/// replaced one, or a bridge now forwarding a different port): more than any house's fuses.
const MAX_HOUSE_WATTS: f64 = 100_000.0;

/// What one frame of a meter said; every value already checked to be finite.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observation {
    /// Net power in watts: import positive, export negative.
    pub power: Option<f64>,
    /// The energy registers, when the frame has them.
    pub energy: Option<Energy>,
}

/// Cumulative energy registers, in watt-hours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Energy {
    /// Imported from the grid (all tariffs).
    pub import_wh: f64,
    /// Exported to the grid (all tariffs; 0 where the device has no such register).
    pub export_wh: f64,
    /// One step of the registers, in Wh, so a delta's precision is known.
    pub resolution_wh: f64,
}

/// Why an interval has no reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing arrived (device unplugged, bridge down, broker gone, MQTT device silent).
    Dead,
    /// Frames arrived but none was usable (checksum errors, missing fields, noise).
    Garbled,
}

/// Running totals of a live source, for the meter's report and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Usable frames received.
    pub frames: u64,
    /// Frames refused (bad checksum, unparsable, without the expected field).
    pub garbled_frames: u64,
    /// Intervals without a reading because nothing arrived.
    pub dead_intervals: u64,
    /// Intervals without a reading because only garbled frames arrived.
    pub garbled_intervals: u64,
}

/// The interval-in-progress of one live source.
#[derive(Clone, Debug)]
pub struct Accumulator {
    hold: Millis,
    /// Energy when the previous interval closed: the start of this interval's delta.
    baseline: Option<(Timestamp, Energy)>,
    latest: Option<(Timestamp, Energy)>,
    power_sum: f64,
    power_samples: u32,
    garbled: u32,
    /// The previous interval's value and the arrival of the newest frame, for `hold`.
    last_value: Option<f64>,
    last_frame: Option<Timestamp>,
    counts: SourceCounts,
}

impl Accumulator {
    /// An empty interval; `hold` is how long the last value may stand in for an interval
    /// without frames (devices that report every few minutes).
    pub fn new(hold: Millis) -> Accumulator {
        Accumulator {
            hold,
            baseline: None,
            latest: None,
            power_sum: 0.0,
            power_samples: 0,
            garbled: 0,
            last_value: None,
            last_frame: None,
            counts: SourceCounts::default(),
        }
    }

    /// A usable frame arrived at `at`.
    pub fn observe(&mut self, at: Timestamp, obs: Observation) {
        self.counts.frames += 1;
        self.last_frame = Some(at);
        if let Some(p) = obs.power {
            self.power_sum += p;
            self.power_samples += 1;
        }
        if let Some(e) = obs.energy {
            // A register that runs backwards or leaps is a replaced or reset meter: start afresh.
            let other_meter = self.latest.is_some_and(|(t, l)| {
                let (import, export) = (e.import_wh - l.import_wh, e.export_wh - l.export_wh);
                let ms = at.since(t).max(1_000) as f64;
                import < 0.0
                    || export < 0.0
                    || (import + export) * 3_600_000.0 / ms > MAX_HOUSE_WATTS
            });
            if other_meter || self.baseline.is_none() {
                self.baseline = Some((at, e));
            }
            self.latest = Some((at, e));
        }
    }

    /// A frame arrived that could not be used.
    pub fn garbled(&mut self) {
        self.counts.garbled_frames += 1;
        self.garbled += 1;
    }

    /// Closes the interval at `now`: its mean power, or why there is none.
    pub fn take(&mut self, now: Timestamp) -> Result<Watts, Fault> {
        let garbled = self.garbled > 0;
        let energy = self.energy_mean();
        let samples =
            (self.power_samples > 0).then(|| self.power_sum / f64::from(self.power_samples));
        let value = match (energy, samples) {
            (Some((mean, true)), _) => Some(mean),
            (_, Some(mean)) => Some(mean),
            (Some((mean, false)), None) => Some(mean),
            // Only silence is bridged: a meter sending garbage is a garbled interval.
            (None, None) if !garbled => self
                .last_frame
                .filter(|t| now.since(*t) < self.hold)
                .and(self.last_value),
            (None, None) => None,
        };
        self.power_sum = 0.0;
        self.power_samples = 0;
        self.garbled = 0;
        self.baseline = self.latest;
        match value.filter(|v| v.is_finite()) {
            Some(v) => {
                self.last_value = Some(v);
                Ok(Watts(v.round() as i64))
            }
            None if garbled => {
                self.counts.garbled_intervals += 1;
                Err(Fault::Garbled)
            }
            None => {
                self.counts.dead_intervals += 1;
                Err(Fault::Dead)
            }
        }
    }

    /// Totals so far.
    pub fn counts(&self) -> SourceCounts {
        self.counts
    }

    /// Mean power from the registers since the last close, and whether the delta is precise
    /// enough to beat the power samples.
    fn energy_mean(&self) -> Option<(f64, bool)> {
        let ((t0, e0), (t1, e1)) = (self.baseline?, self.latest?);
        let ms = t1.since(t0);
        if ms <= 0 {
            return None;
        }
        let (import, export) = (e1.import_wh - e0.import_wh, e1.export_wh - e0.export_wh);
        let mean = (import - export) * 3_600_000.0 / ms as f64;
        let precise = import + export >= ENERGY_STEPS * e1.resolution_wh.max(e0.resolution_wh);
        Some((mean, precise))
    }
}

/// A register's resolution from how its value was written: `004169.415` kWh steps by 1 Wh.
pub fn resolution(text: &str, wh_per_unit: f64) -> f64 {
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    wh_per_unit / 10f64.powi(i32::try_from(decimals).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn power(w: f64) -> Observation {
        Observation {
            power: Some(w),
            energy: None,
        }
    }

    fn energy(import_wh: f64, export_wh: f64) -> Observation {
        Observation {
            power: None,
            energy: Some(Energy {
                import_wh,
                export_wh,
                resolution_wh: 1.0,
            }),
        }
    }

    #[test]
    fn mean_of_samples_and_export_is_negative() {
        let mut acc = Accumulator::new(0);
        for (i, w) in [1_000.0, 2_000.0, -600.0].into_iter().enumerate() {
            acc.observe(Timestamp(i as i64 * 1_000), power(w));
        }
        assert_eq!(acc.take(Timestamp(3_000)), Ok(Watts(800)));
        acc.observe(Timestamp(4_000), power(-1_234.4));
        assert_eq!(acc.take(Timestamp(5_000)), Ok(Watts(-1_234)));
        assert_eq!(acc.counts().frames, 4);
    }

    #[test]
    fn energy_delta_wins_when_precise() {
        let mut acc = Accumulator::new(0);
        // 15 minutes; the samples caught a kettle, the registers say 1.2 kW on average.
        acc.observe(Timestamp(0), energy(10_000.0, 0.0));
        acc.observe(Timestamp(1), power(3_000.0));
        acc.observe(Timestamp(900_000), energy(10_300.0, 0.0));
        assert_eq!(acc.take(Timestamp(900_000)), Ok(Watts(1_200)));
        // The next interval's delta starts at the previous close: 600 s exporting 100 Wh.
        acc.observe(Timestamp(1_500_000), energy(10_300.0, 100.0));
        assert_eq!(acc.take(Timestamp(1_500_000)), Ok(Watts(-600)));
    }

    #[test]
    fn coarse_energy_loses_to_samples_but_beats_nothing() {
        let mut acc = Accumulator::new(0);
        acc.observe(Timestamp(0), energy(10_000.0, 0.0));
        acc.observe(Timestamp(0), power(900.0));
        acc.observe(Timestamp(10_000), energy(10_003.0, 0.0));
        acc.observe(Timestamp(10_000), power(1_100.0));
        assert_eq!(acc.take(Timestamp(10_000)), Ok(Watts(1_000)));
        acc.observe(Timestamp(20_000), energy(10_006.0, 0.0));
        assert_eq!(acc.take(Timestamp(20_000)), Ok(Watts(1_080)));
    }

    #[test]
    fn a_register_that_runs_backwards_or_leaps_restarts_the_delta() {
        let mut acc = Accumulator::new(0);
        acc.observe(Timestamp(0), energy(10_000.0, 0.0));
        acc.observe(Timestamp(1_000), energy(5.0, 0.0));
        acc.observe(Timestamp(1_000), power(400.0));
        assert_eq!(acc.take(Timestamp(1_000)), Ok(Watts(400)));
        // 3.5 MWh in two seconds is another meter, not 6 GW.
        acc.observe(Timestamp(3_000), energy(3_500_000.0, 0.0));
        acc.observe(Timestamp(3_000), power(700.0));
        assert_eq!(acc.take(Timestamp(3_000)), Ok(Watts(700)));
        // From there the deltas count again: 25 Wh in 60 s.
        acc.observe(Timestamp(63_000), energy(3_500_025.0, 0.0));
        assert_eq!(acc.take(Timestamp(63_000)), Ok(Watts(1_500)));
    }

    #[test]
    fn dead_and_garbled_intervals_are_counted_faults_not_zeros() {
        let mut acc = Accumulator::new(0);
        assert_eq!(acc.take(Timestamp(1_000)), Err(Fault::Dead));
        acc.garbled();
        acc.garbled();
        assert_eq!(acc.take(Timestamp(2_000)), Err(Fault::Garbled));
        acc.garbled();
        acc.observe(Timestamp(2_500), power(700.0));
        assert_eq!(acc.take(Timestamp(3_000)), Ok(Watts(700)));
        assert_eq!(
            acc.counts(),
            SourceCounts {
                frames: 1,
                garbled_frames: 3,
                dead_intervals: 1,
                garbled_intervals: 1,
            }
        );
    }

    #[test]
    fn hold_bridges_a_slow_device_then_expires() {
        let mut acc = Accumulator::new(300_000);
        acc.observe(Timestamp(0), power(450.0));
        assert_eq!(acc.take(Timestamp(60_000)), Ok(Watts(450)));
        assert_eq!(acc.take(Timestamp(299_999)), Ok(Watts(450)));
        assert_eq!(acc.take(Timestamp(300_000)), Err(Fault::Dead));
        // Garbage is not bridged.
        acc.observe(Timestamp(300_000), power(500.0));
        assert_eq!(acc.take(Timestamp(300_000)), Ok(Watts(500)));
        acc.garbled();
        assert_eq!(acc.take(Timestamp(300_001)), Err(Fault::Garbled));
    }

    #[test]
    fn resolution_from_digits() {
        assert_eq!(resolution("004169.415", 1_000.0), 1.0);
        assert_eq!(resolution("12", 1.0), 1.0);
        assert_eq!(resolution("1.5", 1_000.0), 100.0);
    }

    proptest! {
        /// Whatever the samples, the reading is their mean, rounded, and counts add up.
        #[test]
        fn mean_of_any_samples(samples in proptest::collection::vec(-25_000i64..25_000, 1..50)) {
            let mut acc = Accumulator::new(0);
            for (i, w) in samples.iter().enumerate() {
                acc.observe(Timestamp(i as i64), power(*w as f64));
            }
            let mean = samples.iter().sum::<i64>() as f64 / samples.len() as f64;
            prop_assert_eq!(acc.take(Timestamp(100)), Ok(Watts(mean.round() as i64)));
            prop_assert_eq!(acc.counts().frames, samples.len() as u64);
        }

        /// A constant load read through its registers gives that load back, for any interval
        /// long enough to be precise.
        #[test]
        fn constant_load_through_registers(watts in 100i64..20_000, secs in 600i64..7_200, export in any::<bool>()) {
            let wh = watts as f64 * secs as f64 / 3_600.0;
            let mut acc = Accumulator::new(0);
            acc.observe(Timestamp(0), energy(1_000.0, 1_000.0));
            let (i, e) = if export { (1_000.0, 1_000.0 + wh) } else { (1_000.0 + wh, 1_000.0) };
            acc.observe(Timestamp(secs * 1_000), energy(i, e));
            let want = if export { -watts } else { watts };
            prop_assert_eq!(acc.take(Timestamp(secs * 1_000)), Ok(Watts(want)));
        }
    }
}
