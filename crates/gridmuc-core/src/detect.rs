//! Detectors: each looks at one closed interval and says whether its condition holds now.
//!
//! Detectors only report *conditions*; turning conditions into a few alerts (dedup,
//! cooldown, escalation) is the job of [`crate::policy`].

use crate::alert::{AlertKind, Severity};
use crate::baseline::{BaselineConfig, WeeklyBaseline};
use crate::nick::RoomNick;
use crate::stats::quantile_sorted;
use crate::thermal::{HotSpotModel, ThermalConfig};
use crate::time::{HOUR, MINUTE, Millis, Timestamp};
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::statistics::{Data, Median, OrderStatistics};
use std::collections::{HashMap, VecDeque};

/// A condition that holds in the interval just closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which detector.
    pub kind: AlertKind,
    /// How bad right now.
    pub severity: Severity,
    /// The occupant concerned, for per-house findings.
    pub nick: Option<RoomNick>,
    /// Observed value.
    pub value: Watts,
    /// Threshold or baseline it was compared with.
    pub threshold: Watts,
}

/// Transformer-overload settings: the rating, the IEC 60076-7 thermal model and its limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// Transformer rating: the load at which the load factor K is 1.
    pub rating: Watts,
    /// Fraction of the rating drawn as the warning line in reports; the alerts follow the hot spot.
    pub warn_fraction: f64,
    /// Relative hysteresis on the hot-spot rise over ambient, so a hot spot hovering at a limit does not flap.
    pub hysteresis: f64,
    /// Thermal characteristics of the transformer.
    pub thermal: ThermalConfig,
    /// Hot-spot temperature (°C) that warns: the steady temperature at rated load (normal ageing).
    pub hot_spot_warn_c: f64,
    /// Hot-spot temperature (°C) that is critical: IEC 60076-7's limit for normal cyclic loading
    /// of distribution transformers.
    pub hot_spot_limit_c: f64,
    /// How far ahead the trend is followed to forecast the hot spot reaching `hot_spot_warn_c`.
    pub horizon: Millis,
    /// Span of the load's excess over its usual level that the trend is fitted on. 75 min: on
    /// the simulated street an hour believed chance evening rises (0.19–0.25 false warnings a
    /// day), 90 min missed real overloads (recall 0.83 on held-out seeds).
    pub trend_window: Millis,
    /// The excess is averaged over blocks this long before the trend is fitted, so one-minute
    /// appliance noise and a few minutes' excursion weigh as one point.
    pub trend_block: Millis,
    /// How far ahead a trend is believed to go on; beyond it the excess is held.
    pub extrapolate: Millis,
    /// Slowest rise (load factor per hour) that counts as a trend: the lower confidence bound
    /// of the Theil–Sen slope must reach it, and the excess must already be what it adds over
    /// the trend window.
    pub min_trend: f64,
    /// One-sided confidence of that lower bound (Sen's rank interval from Kendall's S).
    pub trend_confidence: f64,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            rating: Watts(400_000),
            warn_fraction: 0.9,
            hysteresis: 0.05,
            thermal: ThermalConfig::default(),
            hot_spot_warn_c: 98.0,
            hot_spot_limit_c: 120.0,
            horizon: 3 * HOUR,
            trend_window: 75 * MINUTE,
            trend_block: 5 * MINUTE,
            extrapolate: 2 * HOUR,
            min_trend: 0.15,
            trend_confidence: 0.99,
        }
    }
}

/// A robust trend of the load's excess over its usual level, in load factor.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Trend {
    /// Fitted excess at the newest sample.
    now: f64,
    /// Load factor per minute (Sen's slope).
    slope: f64,
}

/// Transformer hot spot after IEC 60076-7 from the neighbourhood total, with a forecast of the
/// hot spot if the load's excess over its usual time-of-week level keeps its trend.
#[derive(Clone, Debug)]
pub struct OverloadDetector {
    config: OverloadConfig,
    model: Option<HotSpotModel>,
    level: Option<Severity>,
    /// (minute, excess in load factor) over the trend window, oldest first.
    excess: VecDeque<(f64, f64)>,
}

impl OverloadDetector {
    /// A detector whose transformer starts in equilibrium with the first total it sees.
    pub fn new(config: OverloadConfig) -> Self {
        OverloadDetector {
            config,
            model: None,
            level: None,
            excess: VecDeque::new(),
        }
    }

    /// The hot-spot temperature after the last interval (°C), for status and reports.
    pub fn hot_spot(&self) -> Option<f64> {
        self.model.as_ref().map(HotSpotModel::hot_spot)
    }

    fn k(&self, watts: f64) -> f64 {
        watts / self.config.rating.as_f64().max(1.0)
    }

    /// Heats the model with the interval `[start, start + length)` at `total`, then judges it;
    /// `baseline` (not yet updated with this interval) gives the usual level for the forecast.
    pub fn observe(
        &mut self,
        start: Timestamp,
        length: Millis,
        total: Watts,
        baseline: &WeeklyBaseline,
    ) -> Option<Finding> {
        let k = self.k(total.as_f64());
        let minutes = length as f64 / MINUTE as f64;
        let thermal = &self.config.thermal;
        let model = self
            .model
            .get_or_insert_with(|| HotSpotModel::steady(thermal.clone(), k));
        model.advance(k, minutes);
        let hot = model.hot_spot();
        let end = start.plus(length);
        self.learn_excess(end, total, baseline);
        let c = &self.config;
        let ambient = c.thermal.ambient_c;
        let holds = |limit: f64, held: bool| {
            hot >= limit || (held && hot >= limit - c.hysteresis * (limit - ambient))
        };
        let critical = holds(c.hot_spot_limit_c, self.level == Some(Severity::Critical));
        let warning = holds(c.hot_spot_warn_c, self.level.is_some())
            || self.forecast_minutes(end, baseline).is_some();
        self.level = if critical {
            Some(Severity::Critical)
        } else if warning {
            Some(Severity::Warning)
        } else {
            None
        };
        self.level.map(|severity| Finding {
            kind: AlertKind::Overload,
            severity,
            nick: None,
            value: total,
            threshold: c.rating,
        })
    }

    fn learn_excess(&mut self, end: Timestamp, total: Watts, baseline: &WeeklyBaseline) {
        let minute = end.0 as f64 / MINUTE as f64;
        match baseline.expected(end.plus(-1)) {
            Some(e) => self
                .excess
                .push_back((minute, self.k(total.as_f64() - e.mean))),
            None => self.excess.clear(),
        }
        let window = self.config.trend_window as f64 / MINUTE as f64;
        while self
            .excess
            .front()
            .is_some_and(|(t, _)| *t <= minute - window)
        {
            self.excess.pop_front();
        }
    }

    /// The robust trend of the excess, when it spans the window and rises beyond doubt: Theil–Sen
    /// over block means (a median of pairwise slopes, so one hot block does not make a trend),
    /// believed only when the lower end of Sen's confidence interval still rises by `min_trend`.
    fn trend(&self) -> Option<Trend> {
        let c = &self.config;
        let (first, last) = (self.excess.front()?.0, self.excess.back()?.0);
        let window = c.trend_window as f64 / MINUTE as f64;
        if last - first < 0.75 * window {
            return None;
        }
        // (block index counted back from the newest sample, Σt, Σx, n), oldest block first.
        let block = (c.trend_block as f64 / MINUTE as f64).max(1e-9);
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
        for (t, x) in &self.excess {
            let b = ((last - t) / block).floor();
            match blocks.last_mut() {
                Some(open) if open.0 == b => {
                    open.1 += t;
                    open.2 += x;
                    open.3 += 1.0;
                }
                _ => blocks.push((b, *t, *x, 1.0)),
            }
        }
        let points: Vec<(f64, f64)> = blocks.iter().map(|b| (b.1 / b.3, b.2 / b.3)).collect();
        let n = points.len();
        if n < 4 {
            return None;
        }
        let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
        for (i, (ti, xi)) in points.iter().enumerate() {
            for (tj, xj) in &points[i + 1..] {
                slopes.push((xj - xi) / (tj - ti));
            }
        }
        let pairs = slopes.len() as f64;
        let nf = n as f64;
        let var_s = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
        let z = Normal::standard().inverse_cdf(c.trend_confidence.clamp(0.5, 1.0 - 1e-9));
        // Sen's lower bound is the ((N − z·√Var S) / 2)-th smallest of the N pairwise slopes.
        let rank = ((pairs - z * var_s.sqrt()) / 2.0).floor().clamp(1.0, pairs) as usize;
        let mut slopes = Data::new(slopes);
        let lower = slopes.order_statistic(rank);
        let median = slopes.median();
        let offsets = Data::new(
            points
                .iter()
                .map(|(t, x)| x - median * (t - last))
                .collect::<Vec<_>>(),
        );
        // The load must also already stand above its usual level by what `min_trend` adds over
        // the window: a chance rise out of a dip is not yet a trend worth projecting.
        let now = offsets.median();
        (lower * 60.0 >= c.min_trend && now >= c.min_trend * window / 60.0)
            .then_some(Trend { now, slope: median })
    }

    /// Minutes until the hot spot reaches `hot_spot_warn_c` if the usual profile holds and the
    /// excess keeps rising as it has for `extrapolate`, then holds.
    pub fn forecast_minutes(&self, now: Timestamp, baseline: &WeeklyBaseline) -> Option<f64> {
        let trend = self.trend()?;
        let mut model = self.model.clone()?;
        let c = &self.config;
        let believed = c.extrapolate as f64 / MINUTE as f64;
        let horizon = (c.horizon / MINUTE).max(1);
        for step in 1..=horizon {
            let at = now.plus(step * MINUTE);
            let usual = self.k(baseline.expected(at)?.mean);
            let growth = trend.slope * (step as f64).min(believed);
            model.advance(usual + trend.now + growth, 1.0);
            if model.hot_spot() >= c.hot_spot_warn_c {
                return Some(step as f64);
            }
        }
        None
    }
}

/// Aggregate-spike settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpikeConfig {
    /// EWMA weight of the newest interval in the short-term level.
    pub alpha: f64,
    /// One-sided false-alarm probability per interval under a normal model; sets the z threshold.
    pub false_alarm_rate: f64,
    /// Intervals to learn the short-term level before any finding.
    pub warmup: u32,
    /// Absolute floor on the rise worth reporting (0: only the scaled floor applies).
    pub min_rise: Watts,
    /// Minimum rise as a fraction of the street's typical (day-mean) load, so a 10-house street
    /// and a 200-house street are judged alike.
    pub min_rise_fraction: f64,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            alpha: 0.1,
            false_alarm_rate: 1e-5,
            warmup: 10,
            min_rise: Watts::ZERO,
            min_rise_fraction: 0.5,
        }
    }
}

/// Neighbourhood total far above both its last minutes and its usual time-of-week level.
#[derive(Clone, Debug)]
pub struct SpikeDetector {
    config: SpikeConfig,
    z: f64,
    mean: f64,
    abs_dev: f64,
    seen: u32,
}

/// Mean absolute deviation of a normal variable times this is its standard deviation.
const MEAN_ABS_DEV_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

impl SpikeDetector {
    /// A detector that first learns `warmup` intervals.
    pub fn new(config: SpikeConfig) -> Self {
        let p = config.false_alarm_rate.clamp(1e-12, 0.5);
        let z = Normal::standard().inverse_cdf(1.0 - p);
        SpikeDetector {
            config,
            z,
            mean: 0.0,
            abs_dev: 0.0,
            seen: 0,
        }
    }

    /// The z threshold derived from the false-alarm rate.
    pub fn z_threshold(&self) -> f64 {
        self.z
    }

    /// Scores the total of the interval starting `at` against the short-term level and
    /// `baseline` (not yet updated with it), then updates the short-term level.
    pub fn observe(
        &mut self,
        at: Timestamp,
        total: Watts,
        baseline: &WeeklyBaseline,
    ) -> Option<Finding> {
        let x = total.as_f64();
        if self.seen == 0 {
            self.mean = x;
            self.seen = 1;
            return None;
        }
        // The slot's own level as well as the interpolated one, so a sharp usual step (17:00) is usual at once.
        let usual = [baseline.expected(at), baseline.slot_at(at)]
            .into_iter()
            .flatten()
            .map(|e| e.mean)
            .fold(f64::MIN, f64::max);
        let reference = self.mean.max(usual);
        let rise = x - reference;
        let sigma = (self.abs_dev * MEAN_ABS_DEV_TO_SIGMA).max(1.0);
        let score = (x - self.mean) / sigma;
        let typical = baseline.typical().unwrap_or(self.mean).abs();
        let min_rise = self
            .config
            .min_rise
            .as_f64()
            .max(self.config.min_rise_fraction * typical);
        let firing = self.seen > self.config.warmup && score > self.z && rise > min_rise;
        // While firing, learn slowly so a spike is not absorbed but a lasting new level eventually is.
        let alpha = if firing {
            self.config.alpha / 10.0
        } else {
            self.config.alpha
        };
        self.abs_dev += alpha * ((x - self.mean).abs() - self.abs_dev);
        self.mean += alpha * (x - self.mean);
        self.seen = self.seen.saturating_add(1);
        firing.then(|| Finding {
            kind: AlertKind::AggregateSpike,
            severity: if rise > 2.0 * min_rise {
                Severity::Critical
            } else {
                Severity::Warning
            },
            nick: None,
            value: total,
            threshold: Watts(reference.round() as i64),
        })
    }
}

/// The neighbourhood-level detectors over one series of totals, sharing its time-of-week baseline;
/// the per-house aggregator and masked mode's totals monitor both run exactly this.
#[derive(Clone, Debug)]
pub struct StreetDetectors {
    baseline: WeeklyBaseline,
    overload: OverloadDetector,
    spike: SpikeDetector,
}

impl StreetDetectors {
    /// Detectors for totals `interval` apart.
    pub fn new(
        overload: OverloadConfig,
        spike: SpikeConfig,
        baseline: BaselineConfig,
        interval: Millis,
    ) -> Self {
        StreetDetectors {
            baseline: WeeklyBaseline::new(baseline, interval),
            overload: OverloadDetector::new(overload),
            spike: SpikeDetector::new(spike),
        }
    }

    /// Judges the total of the interval `[start, start + length)`, then learns it.
    pub fn observe(
        &mut self,
        start: Timestamp,
        length: Millis,
        total: Watts,
        out: &mut Vec<Finding>,
    ) {
        out.extend(self.overload.observe(start, length, total, &self.baseline));
        out.extend(self.spike.observe(start, total, &self.baseline));
        self.baseline.update(start, total.as_f64());
    }

    /// The transformer's modelled hot spot (°C), once a total has been seen.
    pub fn hot_spot(&self) -> Option<f64> {
        self.overload.hot_spot()
    }
}

/// Per-house outlier settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Robust z (median/MAD) above which an occupant is an outlier.
    pub z: f64,
    /// Minimum excess over the median, so quiet evenings with tiny MAD do not flag a kettle.
    /// 11 kW: above a 7.4 kW charger plus a 3 kW kettle over a typical house, below what a
    /// +12 kW fault adds to any house.
    pub min_excess: Watts,
    /// Minimum rise over the nickname's own lower of its two previous readings, so a house that
    /// has drawn a lot for a while (a car charging, electric heating) is not a spike but a
    /// sudden +12 kW is. 11.5 kW: above an 11 kW charger switching on under ±3 % supply
    /// noise. A nickname with no earlier reading must stand this far above the median instead.
    pub min_rise: Watts,
    /// Fewest occupants for peer comparison to mean anything.
    pub min_peers: usize,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            z: 8.0,
            min_excess: Watts(11_000),
            min_rise: Watts(11_500),
            min_peers: 5,
        }
    }
}

/// MAD of a normal variable times this is its standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;

/// What the outlier detector remembers of one nickname between intervals.
#[derive(Clone, Copy, Debug)]
struct Recent {
    /// Its last reading (W).
    last: f64,
    /// The reading before that, if any (W).
    before: Option<f64>,
    /// While it is flagged: its level before the rise (W).
    base: Option<f64>,
}

/// One anonymous occupant far above its peers in the same interval (median and MAD, so a few
/// outliers cannot hide each other) **and** far above its own level just before: a fault is a
/// change in a house, while a car charging or electric heating is the house's steady state.
#[derive(Clone, Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    scratch: Vec<i64>,
    /// The nicknames of the last interval; one that misses an interval starts afresh.
    recent: HashMap<RoomNick, Recent>,
}

impl OutlierDetector {
    /// A detector that remembers only each nickname's last two readings.
    pub fn new(config: OutlierConfig) -> Self {
        OutlierDetector {
            config,
            scratch: Vec::new(),
            recent: HashMap::new(),
        }
    }

    /// Findings for every occupant far above the interval's median and risen far above its
    /// own previous level; a flagged occupant stays flagged while it holds half that rise.
    pub fn observe(&mut self, values: &[(RoomNick, Watts)], median: f64, out: &mut Vec<Finding>) {
        let peers = values.len() >= self.config.min_peers;
        self.scratch.clear();
        self.scratch.extend(
            values
                .iter()
                .map(|(_, w)| (w.as_f64() - median).abs().round() as i64),
        );
        self.scratch.sort_unstable();
        let sigma = (quantile_sorted(&self.scratch, 0.5) * MAD_TO_SIGMA).max(50.0);
        let min_excess = self.config.min_excess.as_f64();
        let min_rise = self.config.min_rise.as_f64();
        let mut next = HashMap::with_capacity(values.len());
        for (nick, w) in values {
            let w = w.as_f64();
            let excess = w - median;
            let prev = self.recent.get(nick);
            let outlier = peers && excess / sigma > self.config.z && excess > min_excess;
            // The level the house rose from: kept while flagged, else the lower of its last two
            // readings (a rise split over two intervals), else the peers' median.
            let base = match prev {
                Some(Recent { base: Some(b), .. }) if w - b > 0.5 * min_rise => Some(*b),
                Some(p) => {
                    let floor = p.before.map_or(p.last, |b| b.min(p.last));
                    (w - floor > min_rise).then_some(floor)
                }
                None => (excess > min_rise).then_some(median),
            };
            let base = base.filter(|_| outlier);
            next.insert(
                nick.clone(),
                Recent {
                    last: w,
                    before: prev.map(|p| p.last),
                    base,
                },
            );
            if base.is_some() {
                out.push(Finding {
                    kind: AlertKind::HouseSpike,
                    severity: if excess > 2.0 * min_excess {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    nick: Some(nick.clone()),
                    value: Watts(w.round() as i64),
                    threshold: Watts(median.round() as i64),
                });
            }
        }
        self.recent = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATING: i64 = 100_000;

    fn overload() -> OverloadDetector {
        OverloadDetector::new(OverloadConfig {
            rating: Watts(RATING),
            ..OverloadConfig::default()
        })
    }

    /// A street whose total is `usual(minute)` every day, learnt over `days` days.
    fn learnt(days: i64, usual: impl Fn(i64) -> i64) -> (WeeklyBaseline, i64) {
        let mut b = WeeklyBaseline::new(BaselineConfig::default(), MINUTE);
        for m in 0..days * 1440 {
            b.update(Timestamp(m * MINUTE), usual(m) as f64);
        }
        (b, days * 1440)
    }

    /// Evening 17:00–20:00 at the rating, 40 % of it otherwise.
    fn evening(m: i64) -> i64 {
        if (17 * 60..20 * 60).contains(&(m % 1440)) {
            RATING
        } else {
            RATING * 4 / 10
        }
    }

    /// Feeds `load(minute)` from minute `from` for `minutes`; returns (minute, severity) of findings.
    fn feed(
        d: &mut OverloadDetector,
        b: &mut WeeklyBaseline,
        from: i64,
        minutes: i64,
        load: impl Fn(i64) -> i64,
    ) -> Vec<(i64, Severity)> {
        let mut out = Vec::new();
        for m in from..from + minutes {
            let at = Timestamp(m * MINUTE);
            if let Some(f) = d.observe(at, MINUTE, Watts(load(m)), b) {
                out.push((m - from, f.severity));
            }
            b.update(at, load(m) as f64);
        }
        out
    }

    #[test]
    fn a_usual_evening_at_the_rating_is_quiet() {
        let (mut b, start) = learnt(7, evening);
        let mut d = overload();
        assert_eq!(feed(&mut d, &mut b, start, 1440, evening), []);
        let hot = d.hot_spot().expect("modelled");
        assert!(hot > 20.0 && hot < 98.0, "{hot}");
    }

    #[test]
    fn a_three_minute_excursion_is_not_an_alarm() {
        let (mut b, start) = learnt(7, evening);
        let mut d = overload();
        // 18:00, already at the rating, then three minutes at 1.6 × rating.
        let at = start + 18 * 60;
        let load = |m: i64| {
            if (at..at + 3).contains(&m) {
                RATING * 16 / 10
            } else {
                evening(m)
            }
        };
        assert_eq!(feed(&mut d, &mut b, start, 1440, load), []);
    }

    #[test]
    fn a_slow_ramp_is_warned_of_30_minutes_before_the_rating_is_crossed() {
        let (mut b, start) = learnt(7, evening);
        let mut d = overload();
        // From 09:00 the load climbs linearly from 40 % to 130 % of the rating over three hours.
        let from = start + 9 * 60;
        let ramp = |m: i64| {
            let t = (m - from).clamp(0, 180);
            evening(m) + RATING * 9 / 10 * t / 180
        };
        let crossing = (0..180).find(|t| ramp(from + t) > RATING).expect("crosses");
        let found = feed(&mut d, &mut b, from, 240, ramp);
        let first = found.first().expect("warned");
        assert_eq!(first.1, Severity::Warning);
        assert!(
            crossing - first.0 >= 30,
            "warned at {}, crossed at {crossing}",
            first.0
        );
    }

    /// `evening` with a street's noise: each day ±5 % of the rating (weather), each minute a
    /// uniform ±10 % (appliances), from a fixed seed.
    fn noisy(seed: u64) -> impl Fn(i64) -> i64 {
        use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut unit = move || f64::from(rng.next_u32()) / f64::from(u32::MAX) * 2.0 - 1.0;
        let days: Vec<f64> = (0..64).map(|_| unit() * 0.05).collect();
        let minutes: Vec<f64> = (0..64 * 1440).map(|_| unit() * 0.10).collect();
        move |m: i64| {
            let i = m.rem_euclid(64 * 1440) as usize;
            evening(m) + (RATING as f64 * (days[i / 1440] + minutes[i])) as i64
        }
    }

    #[test]
    fn a_slow_ramp_in_a_noisy_street_is_warned_of_30_minutes_before_the_crossing() {
        for (seed, hour) in [(1, 9), (2, 11), (3, 13), (4, 21)] {
            let street = noisy(seed);
            let (mut b, start) = learnt(14, &street);
            let mut d = overload();
            feed(&mut d, &mut b, start, 1440, &street);
            // From `hour`, three hours climbing by 0.9 × rating on top of the noisy street.
            let from = start + 1440 + hour * 60;
            let ramp = |m: i64| street(m) + RATING * 9 / 10 * (m - from).clamp(0, 180) / 180;
            let crossing = (0..180)
                .find(|t| evening(from + t) + RATING * 9 / 10 * t / 180 > RATING)
                .expect("crosses");
            let found = feed(&mut d, &mut b, from, 240, ramp);
            let first = found.first().expect("warned");
            assert!(
                crossing - first.0 >= 30,
                "seed {seed}: warned at {}, crossed at {crossing}",
                first.0
            );
        }
    }

    #[test]
    fn an_hour_busier_than_usual_is_not_yet_a_trend_but_a_longer_climb_is() {
        // From 09:00 (usual 40 %) the load climbs by 0.3 × rating an hour. The trend is believed
        // only once it spans three quarters of the 75-minute window: not after the 45 minutes
        // an hour's window needed, when an evening that comes early looks the same.
        let (mut b, start) = learnt(7, evening);
        let mut d = overload();
        let from = start + 9 * 60;
        let climb = |m: i64| evening(m) + RATING * 3 / 10 * (m - from).clamp(0, 180) / 60;
        let found = feed(&mut d, &mut b, from, 180, climb);
        let first = found.first().expect("warned").0;
        assert!((57..=65).contains(&first), "first warning {first} min in");
    }

    #[test]
    fn a_noisy_street_without_a_ramp_warns_less_than_once_in_ten_days() {
        // Its evening sits at the rating for three hours every day, so a chance rise just
        // before it is the worst case for the forecast; the goal is under 0.1 false alerts a day.
        let (seeds, days) = (1..=3, 28);
        let mut events = 0;
        for seed in seeds.clone() {
            let street = noisy(seed);
            let (mut b, start) = learnt(14, &street);
            let mut d = overload();
            let found = feed(&mut d, &mut b, start, days * 1440, &street);
            // As the policy merges them: findings less than 30 minutes apart are one event.
            events += found
                .iter()
                .zip(std::iter::once(None).chain(found.iter().map(Some)))
                .filter(|(f, prev)| prev.is_none_or(|p| f.0 - p.0 > 30))
                .count();
        }
        let per_day = events as f64 / (days * seeds.count() as i64) as f64;
        assert!(per_day < 0.1, "{events} events, {per_day:.3} a day");
    }

    #[test]
    fn a_long_heavy_overload_goes_critical_and_then_clears_with_hysteresis() {
        let (mut b, start) = learnt(7, evening);
        let mut d = overload();
        let heavy = |m: i64| {
            if m < start + 300 {
                RATING * 16 / 10
            } else {
                RATING * 3 / 10
            }
        };
        let found = feed(&mut d, &mut b, start, 900, heavy);
        assert!(
            found.iter().any(|(_, s)| *s == Severity::Critical),
            "{found:?}"
        );
        let last = found.last().expect("found").0;
        assert!(
            last > 300 && last < 900,
            "hot spot cools after the load falls: {last}"
        );
        assert!(d.hot_spot().expect("modelled") < 98.0);
    }

    fn spike_feed(d: &mut SpikeDetector, b: &mut WeeklyBaseline, m: i64, total: i64) -> bool {
        let at = Timestamp(m * MINUTE);
        let fired = d.observe(at, Watts(total), b).is_some();
        b.update(at, total as f64);
        fired
    }

    #[test]
    fn spike_fires_on_jump_not_on_noise() {
        let mut d = SpikeDetector::new(SpikeConfig::default());
        let mut b = WeeklyBaseline::new(BaselineConfig::default(), MINUTE);
        let mut fired = 0;
        for i in 0..200 {
            // ±3 kW of deterministic wobble around 100 kW.
            let t = 100_000 + ((i * 7919) % 6000) - 3000;
            fired += spike_feed(&mut d, &mut b, i, t) as u32;
        }
        assert_eq!(fired, 0, "steady load must stay quiet");
        let f = d
            .observe(Timestamp(200 * MINUTE), Watts(180_000), &b)
            .expect("an 80 kW jump is a spike");
        assert_eq!(f.kind, AlertKind::AggregateSpike);
        assert!(f.threshold.0 > 95_000 && f.threshold.0 < 105_000, "{f:?}");
    }

    #[test]
    fn spike_min_rise_scales_with_the_street() {
        // A 10 kW street: a 6 kW jump is more than half its typical load; a 4 kW one is not.
        for (jump, expected) in [(6_000, true), (4_000, false)] {
            let mut d = SpikeDetector::new(SpikeConfig::default());
            let mut b = WeeklyBaseline::new(BaselineConfig::default(), MINUTE);
            for i in 0..100 {
                spike_feed(&mut d, &mut b, i, 10_000 + (i % 3) * 10);
            }
            assert_eq!(
                spike_feed(&mut d, &mut b, 100, 10_000 + jump),
                expected,
                "{jump}"
            );
        }
        // The absolute floor still applies when set.
        let mut d = SpikeDetector::new(SpikeConfig {
            min_rise: Watts(20_000),
            ..SpikeConfig::default()
        });
        let mut b = WeeklyBaseline::new(BaselineConfig::default(), MINUTE);
        for i in 0..100 {
            spike_feed(&mut d, &mut b, i, 10_000 + (i % 3) * 10);
        }
        assert!(!spike_feed(&mut d, &mut b, 100, 25_000));
    }

    #[test]
    fn the_usual_evening_rise_is_not_a_spike_but_a_doubling_is() {
        let (mut b, start) = learnt(7, evening);
        let mut d = SpikeDetector::new(SpikeConfig::default());
        let mut fired = Vec::new();
        for m in start..start + 1440 {
            if spike_feed(&mut d, &mut b, m, evening(m)) {
                fired.push(m - start);
            }
        }
        assert_eq!(fired, Vec::<i64>::new(), "the 17:00 step is usual");
        let at = start + 1440 + 12 * 60;
        for m in start + 1440..at {
            spike_feed(&mut d, &mut b, m, evening(m));
        }
        assert!(spike_feed(&mut d, &mut b, at, 2 * evening(at)));
    }

    #[test]
    fn spike_respects_warmup() {
        let mut d = SpikeDetector::new(SpikeConfig {
            warmup: 5,
            ..SpikeConfig::default()
        });
        let mut b = WeeklyBaseline::new(BaselineConfig::default(), MINUTE);
        for i in 0..4 {
            assert!(!spike_feed(&mut d, &mut b, i, 50_000));
        }
        assert!(!spike_feed(&mut d, &mut b, 4, 500_000), "still warming up");
    }

    #[test]
    fn outlier_flags_only_the_outlier() {
        let mut values: Vec<(RoomNick, Watts)> = (0..20)
            .map(|i| {
                (
                    RoomNick::new(format!("house-{i}")).unwrap(),
                    Watts(800 + i * 40),
                )
            })
            .collect();
        values.push((RoomNick::new("hot").unwrap(), Watts(19_000)));
        let mut sorted: Vec<i64> = values.iter().map(|(_, w)| w.0).collect();
        sorted.sort_unstable();
        let median = quantile_sorted(&sorted, 0.5);
        let mut out = Vec::new();
        OutlierDetector::new(OutlierConfig::default()).observe(&values, median, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nick.as_ref().unwrap().as_str(), "hot");
        // 17.8 kW over the median: past the 11 kW floor, short of twice it.
        assert_eq!(out[0].severity, Severity::Warning);
    }

    /// A street of 20 quiet houses and one more, `house`, at `w` watts.
    fn street_with(house: &str, w: i64) -> (Vec<(RoomNick, Watts)>, f64) {
        let mut values: Vec<(RoomNick, Watts)> = (0..20)
            .map(|i| {
                (
                    RoomNick::new(format!("house-{i}")).unwrap(),
                    Watts(300 + i * 10),
                )
            })
            .collect();
        values.push((RoomNick::new(house).unwrap(), Watts(w)));
        let mut sorted: Vec<i64> = values.iter().map(|(_, w)| w.0).collect();
        sorted.sort_unstable();
        (values, quantile_sorted(&sorted, 0.5))
    }

    /// Feeds `house`'s readings, one interval each, and says in which intervals it was flagged.
    fn flagged(readings: &[i64]) -> Vec<bool> {
        let mut d = OutlierDetector::new(OutlierConfig::default());
        readings
            .iter()
            .map(|&w| {
                let (values, median) = street_with("house-x", w);
                let mut out = Vec::new();
                d.observe(&values, median, &mut out);
                assert!(
                    out.iter()
                        .all(|f| f.nick.as_ref().unwrap().as_str() == "house-x")
                );
                !out.is_empty()
            })
            .collect()
    }

    #[test]
    fn a_car_charging_at_11_kw_is_not_a_spike_but_a_12_kw_fault_is_while_it_lasts() {
        // 11 kW charger switching on under +3 % supply noise: 11.3 kW over a 400 W house stands
        // 11.0 kW above the 395 W median, but rose only 10.9 kW.
        let mut charging = vec![400; 3];
        charging.extend([11_330; 60]);
        assert!(flagged(&charging).iter().all(|f| !f));
        // The same house gets a +12 kW fault for 20 minutes: flagged from the first to the last.
        let mut fault = vec![400; 3];
        fault.extend([12_400; 20]);
        fault.extend([400; 5]);
        let f = flagged(&fault);
        assert_eq!(f.iter().filter(|x| **x).count(), 20, "{f:?}");
        assert!(f[3..23].iter().all(|x| *x));
    }

    #[test]
    fn a_shower_on_top_of_electric_heating_is_not_a_spike() {
        // 9 kW of heaters on, then an 8.5 kW shower: 17.9 kW is far above the peers but rose
        // 8.5 kW; the heaters switching on in the same minute as a kettle rise 12.2 kW.
        let f = flagged(&[300, 9_300, 9_300, 17_800, 17_800, 9_300, 300, 12_500]);
        assert_eq!(f, [false, false, false, false, false, false, false, true]);
    }

    #[test]
    fn a_rise_split_over_two_intervals_is_flagged() {
        // A fault that starts in the middle of a 15-minute reading shows half in the first.
        let f = flagged(&[400, 400, 6_400, 12_400, 12_400, 400]);
        assert_eq!(f, [false, false, false, true, true, false]);
    }

    #[test]
    fn a_new_nickname_is_judged_against_the_median_by_the_larger_rise() {
        // No earlier reading: 11.2 kW over the median is not enough, 12 kW is.
        assert_eq!(flagged(&[11_555]), [false]);
        assert_eq!(flagged(&[12_400]), [true]);
    }

    #[test]
    fn outlier_needs_peers() {
        let values = vec![
            (RoomNick::new("a").unwrap(), Watts(100)),
            (RoomNick::new("b").unwrap(), Watts(20_000)),
        ];
        let mut out = Vec::new();
        OutlierDetector::new(OutlierConfig::default()).observe(&values, 10_050.0, &mut out);
        assert!(out.is_empty());
    }
}
