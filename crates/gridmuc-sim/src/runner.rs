//! Drives the real `gridmuc_core::Aggregator` with a virtual clock, exactly as the substation bot
//! would be driven by the network: readings from anonymous rotating nicknames, codec rejections
//! counted, timeouts at interval boundaries. The nick → house map lives only here, for scoring.

use crate::MINUTES_PER_DAY;
use crate::anomaly::{AnomalyKind, Label, schedule};
use crate::calendar::SimDay;
use crate::eval::{DetectorScore, score_detectors};
use crate::household::HouseInfo;
use crate::neighbourhood::{Neighbourhood, Stream, apply_physical, derive_seed};
use crate::scenario::Scenario;
use crate::traces::Traces;
use gridmuc_core::alert::AlertState;
use gridmuc_core::codec::{CodecLimits, check_power};
use gridmuc_core::time::{MINUTE, Millis};
use gridmuc_core::{
    Aggregator, AlertKind, NickGenerator, Quality, Reading, Rejection, RoomNick, Severity,
    Timestamp, Watts,
};
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use std::collections::HashMap;

/// One closed interval as the bot saw it, next to what physically flowed.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalRecord {
    /// Interval start.
    pub start: Timestamp,
    /// Meters that reported.
    pub meters: u32,
    /// Sum of accepted readings (W), what the bot sees.
    pub reported_total_w: i64,
    /// Physical transformer load (W), including houses whose meter is silent or lying.
    pub true_total_w: i64,
    /// Mean per-meter reading (W).
    pub mean_w: f64,
    /// Median per-meter reading (W).
    pub median_w: f64,
    /// 5th percentile across meters (W).
    pub p5_w: f64,
    /// 95th percentile across meters (W).
    pub p95_w: f64,
    /// Standard deviation across meters (W).
    pub std_dev_w: f64,
    /// Lowest reading (W).
    pub min_w: i64,
    /// Highest reading (W).
    pub max_w: i64,
}

/// One alert from the aggregator, with the house resolved through the simulator's private map.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRecord {
    /// Start of the interval that triggered it.
    pub at: Timestamp,
    /// Virtual time at which the bot emitted it (interval end + grace).
    pub emitted: Timestamp,
    /// Detector.
    pub kind: AlertKind,
    /// Severity.
    pub severity: Severity,
    /// Raised or cleared.
    pub state: AlertState,
    /// Observed value (W).
    pub value_w: i64,
    /// Threshold or baseline (W).
    pub threshold_w: i64,
    /// House behind the nickname, for house-spike alerts (scoring only).
    pub house: Option<usize>,
}

/// Per-house summary, for the distribution of peaks.
#[derive(Clone, Debug, PartialEq)]
pub struct HouseRecord {
    /// Static features; `None` for a replayed real house.
    pub info: Option<HouseInfo>,
    /// Highest reporting-interval net load (W), physical.
    pub peak_w: f64,
    /// Mean daily net energy (kWh).
    pub mean_daily_kwh: f64,
}

/// Progress after each simulated day, for the CLI's progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Days done.
    pub done: u32,
    /// Days in the scenario.
    pub days: u32,
    /// Readings accepted so far.
    pub accepted: u64,
}

/// Everything a run produces; `gridmuc-report` turns it into frames, files and charts.
#[derive(Clone, Debug)]
pub struct SimOutput {
    /// Scenario name.
    pub scenario: String,
    /// Scenario description.
    pub description: String,
    /// Houses simulated.
    pub houses: usize,
    /// Days simulated.
    pub days: u32,
    /// Transformer rating (W).
    pub rating_w: i64,
    /// Warning line as a fraction of the rating.
    pub warn_fraction: f64,
    /// Reporting interval.
    pub interval: Millis,
    /// First instant simulated.
    pub start: Timestamp,
    /// Closed intervals in order.
    pub intervals: Vec<IntervalRecord>,
    /// Alerts in order of emission.
    pub alerts: Vec<AlertRecord>,
    /// Injected anomalies (ground truth).
    pub labels: Vec<Label>,
    /// Per-house summaries.
    pub houses_summary: Vec<HouseRecord>,
    /// Per-detector scores.
    pub scores: Vec<DetectorScore>,
    /// Readings accepted by the aggregator.
    pub accepted: u64,
    /// Rejections by kind, as counted by the aggregator.
    pub rejected: Vec<(String, u64)>,
    /// Readings the simulator deliberately made invalid (should all show up in `rejected`).
    pub injected_bad_readings: u64,
    /// Expected range of daily kWh per house, copied from the scenario.
    pub expected_daily_kwh: [f64; 2],
}

impl SimOutput {
    /// The highest mean of the physical total over `window` consecutive intervals (W): with
    /// 30 one-minute intervals, the street's ADMD that ratings and the scorers start from.
    pub fn peak_mean_w(&self, window: usize) -> f64 {
        self.intervals
            .windows(window.max(1))
            .map(|w| w.iter().map(|r| r.true_total_w as f64).sum::<f64>() / w.len() as f64)
            .fold(0.0, f64::max)
    }
}

/// What a meter puts on the wire before the codec sees it: a raw number and which field it uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawReading {
    /// Watts as sent (may be NaN or absurd when the meter is faulty).
    pub watts: f64,
    /// Sent in the `Export Power` field (PV export) rather than `Power`.
    pub export: bool,
}

/// The codec's value rules from DESIGN.md (NaN, infinities, negative consumption, physical limit),
/// applied to a simulated raw value: `Ok` with the quantised watts, or the rejection it earns.
pub fn validate_raw(raw: RawReading, limits: &CodecLimits) -> Result<Watts, Rejection> {
    if raw.watts.is_finite() && raw.watts < 0.0 && !raw.export {
        return Err(Rejection::Negative);
    }
    let magnitude = check_power(raw.watts.abs(), 1.0, limits)?;
    Ok(if raw.watts < 0.0 {
        -magnitude
    } else {
        magnitude
    })
}

/// What a meter reports for one interval: the mean of the model's one-minute loads in it (W).
pub fn interval_mean(minutes: &[f32]) -> f64 {
    f64::from(minutes.iter().sum::<f32>()) / minutes.len().max(1) as f64
}

/// Per-house meter state: today's nickname and sequence counter.
struct Meter {
    nick: RoomNick,
    seqnr: u64,
}

fn rotate_nicks(
    meters: &mut Vec<Meter>,
    houses: usize,
    rng: &mut ChaCha20Rng,
) -> HashMap<RoomNick, usize> {
    let mut map = HashMap::with_capacity(houses);
    meters.clear();
    for h in 0..houses {
        let nick = NickGenerator
            .generate_avoiding(rng, 100, |n| map.contains_key(n))
            .unwrap_or_else(|| NickGenerator.generate(rng));
        map.insert(nick.clone(), h);
        meters.push(Meter {
            nick,
            seqnr: rng.random::<u32>().into(),
        });
    }
    map
}

/// Where a run's per-minute house loads come from: the household model or measured traces.
pub trait LoadSource {
    /// The next day: its calendar facts and per-minute net loads (W), house-major, with the
    /// physical anomalies applied; `NaN` where a house recorded nothing (its meter stays silent).
    fn next_loads(&mut self) -> (SimDay, &[f32]);
    /// What is known about each house (nothing, for measured traces).
    fn house_info(&self) -> Vec<Option<HouseInfo>>;
    /// The physical anomalies as applied, ramps' `extra_w` resolved once their day was seen.
    fn physical_labels(&self) -> &[Label];
}

impl LoadSource for Neighbourhood {
    fn next_loads(&mut self) -> (SimDay, &[f32]) {
        let day = self.next_day();
        (day.day, day.loads)
    }

    fn house_info(&self) -> Vec<Option<HouseInfo>> {
        Neighbourhood::house_info(self)
            .into_iter()
            .map(Some)
            .collect()
    }

    fn physical_labels(&self) -> &[Label] {
        Neighbourhood::physical_labels(self)
    }
}

/// Measured traces laid out a day at a time at one-minute resolution, each period's mean
/// repeated over its minutes, so the runner treats them exactly like simulated houses.
struct TraceSource<'a> {
    traces: &'a Traces,
    /// Period index of the first midnight.
    first: usize,
    day: i64,
    day_index: u32,
    labels: Vec<Label>,
    loads: Vec<f32>,
}

/// Charger power a replayed house adds in a coordinated EV surge: a typical 7.4 kW home charger.
const REPLAY_SURGE_W: f32 = 7_400.0;

impl LoadSource for TraceSource<'_> {
    fn next_loads(&mut self) -> (SimDay, &[f32]) {
        let per = (self.traces.step / MINUTE) as usize;
        let periods = MINUTES_PER_DAY / per;
        let base = self.first + self.day_index as usize * periods;
        for (row, out) in self
            .traces
            .watts
            .iter()
            .zip(self.loads.chunks_exact_mut(MINUTES_PER_DAY))
        {
            for (p, minutes) in out.chunks_exact_mut(per).enumerate() {
                minutes.fill(row.get(base + p).copied().unwrap_or(f32::NAN));
            }
        }
        apply_physical(&mut self.labels, self.day_index, &mut self.loads, |_| {
            REPLAY_SURGE_W
        });
        let day = SimDay::new(self.day + i64::from(self.day_index));
        self.day_index += 1;
        (day, &self.loads)
    }

    fn house_info(&self) -> Vec<Option<HouseInfo>> {
        vec![None; self.traces.houses.len()]
    }

    fn physical_labels(&self) -> &[Label] {
        &self.labels
    }
}

fn labels_for(scenario: &Scenario) -> Vec<Label> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(scenario.seed, Stream::Anomalies, 0));
    schedule(
        &scenario.anomalies,
        scenario.houses,
        scenario.days,
        scenario.resolution_min,
        scenario.transformer_kw * 1000.0,
        &mut rng,
    )
}

/// Runs a scenario end to end and scores the detectors; `progress` is called after every day.
pub fn run(scenario: &Scenario, progress: impl FnMut(Progress)) -> SimOutput {
    let labels = labels_for(scenario);
    let mut nb = Neighbourhood::new(
        &scenario.households,
        scenario.weather.clone(),
        scenario.houses,
        scenario.start_day().unwrap_or(0),
        scenario.seed,
        &labels,
    );
    drive(scenario, &mut nb, labels, progress)
}

/// Replays measured `traces` through the aggregator with the scenario's injected faults and
/// scores the detectors like [`run`]. The scenario's houses, days, start and resolution must be
/// the traces' (see [`crate::scenario::ReplayPlan::scenario_for`]): the run starts at the
/// traces' first midnight.
pub fn replay(scenario: &Scenario, traces: &Traces, progress: impl FnMut(Progress)) -> SimOutput {
    let labels = labels_for(scenario);
    let day = scenario.start_day().unwrap_or(0);
    let first = ((day * gridmuc_core::time::DAY - traces.start.0) / traces.step).max(0) as usize;
    let mut source = TraceSource {
        traces,
        first,
        day,
        day_index: 0,
        labels: labels.clone(),
        loads: vec![0.0; traces.houses.len() * MINUTES_PER_DAY],
    };
    drive(scenario, &mut source, labels, progress)
}

fn drive(
    scenario: &Scenario,
    source: &mut dyn LoadSource,
    labels: Vec<Label>,
    mut progress: impl FnMut(Progress),
) -> SimOutput {
    let mut labels = labels;
    let seed = scenario.seed;
    let houses = scenario.houses;
    let days = scenario.days;
    let start_day = scenario.start_day().unwrap_or(0);
    let meter_faults: Vec<&Label> = labels.iter().filter(|l| !l.kind.is_physical()).collect();
    let mut nick_rng = ChaCha20Rng::seed_from_u64(derive_seed(seed, Stream::Nicks, 0));
    let mut config = scenario.detectors.clone();
    // Simulated readings are never late, so closed intervals need not be kept for backfill
    // (the detectors act on the first close either way).
    config.backfill = 0;
    let interval = config.interval;
    let grace = config.grace;
    let step = (interval / MINUTE) as usize;
    let limits = CodecLimits::default();
    let mut agg = Aggregator::new(config.clone());

    let mut meters = Vec::with_capacity(houses);
    let mut nick_map = HashMap::new();
    let mut prev_map: HashMap<RoomNick, usize>;
    let mut stuck: HashMap<(u32, usize), f64> = HashMap::new();
    let mut peak = vec![f64::MIN; houses];
    let mut energy_wmin = vec![0f64; houses];
    let mut intervals = Vec::with_capacity(days as usize * MINUTES_PER_DAY / step);
    let mut true_totals: HashMap<Timestamp, i64> = HashMap::new();
    let mut alerts = Vec::new();
    let mut injected_bad = 0u64;

    let drain = |agg: &mut Aggregator,
                 now: Timestamp,
                 true_totals: &mut HashMap<Timestamp, i64>,
                 maps: [&HashMap<RoomNick, usize>; 2],
                 intervals: &mut Vec<IntervalRecord>,
                 alerts: &mut Vec<AlertRecord>| {
        for s in agg.poll_summaries() {
            intervals.push(IntervalRecord {
                start: s.start,
                meters: s.meters as u32,
                reported_total_w: s.total.0,
                true_total_w: true_totals.remove(&s.start).unwrap_or(0),
                mean_w: s.mean,
                median_w: s.median,
                p5_w: s.p5,
                p95_w: s.p95,
                std_dev_w: s.std_dev,
                min_w: s.min.0,
                max_w: s.max.0,
            });
        }
        for a in agg.poll_alerts() {
            let house = a
                .nick
                .as_ref()
                .and_then(|n| maps[0].get(n).or_else(|| maps[1].get(n)).copied());
            alerts.push(AlertRecord {
                at: a.at,
                emitted: now,
                kind: a.kind,
                severity: a.severity,
                state: a.state,
                value_w: a.value.0,
                threshold_w: a.threshold.0,
                house,
            });
        }
    };

    for d in 0..days {
        prev_map = std::mem::take(&mut nick_map);
        nick_map = rotate_nicks(&mut meters, houses, &mut nick_rng);
        let (day, loads) = source.next_loads();
        let midnight = day.midnight();
        let day_min = d * MINUTES_PER_DAY as u32;
        let todays_faults: Vec<&Label> = meter_faults
            .iter()
            .copied()
            .filter(|l| l.end_min() > day_min && l.start_min < day_min + MINUTES_PER_DAY as u32)
            .collect();
        for (h, row) in loads.chunks_exact(MINUTES_PER_DAY).enumerate() {
            for &w in row.iter().filter(|w| !w.is_nan()) {
                peak[h] = peak[h].max(f64::from(w));
                energy_wmin[h] += f64::from(w);
            }
        }
        for i in 0..MINUTES_PER_DAY / step {
            let minute = i * step;
            let abs_min = day_min + minute as u32;
            let start = midnight.plus(minute as i64 * MINUTE);
            let mut true_total = 0f64;
            for (h, meter) in meters.iter_mut().enumerate() {
                let row = &loads[h * MINUTES_PER_DAY + minute..h * MINUTES_PER_DAY + minute + step];
                let value = interval_mean(row);
                if value.is_nan() {
                    // Nothing recorded: the meter is silent, and the load unknown.
                    continue;
                }
                true_total += value;
                let fault = todays_faults
                    .iter()
                    .find(|l| l.covers(abs_min) && l.houses[0] == h);
                let raw = match fault.map(|l| (l.kind, l.id)) {
                    Some((AnomalyKind::DeadMeter, _)) => continue,
                    Some((AnomalyKind::ZeroMeter, _)) => RawReading {
                        watts: 0.0,
                        export: false,
                    },
                    Some((AnomalyKind::StuckMeter, id)) => {
                        let v = *stuck.entry((id, h)).or_insert(value);
                        RawReading {
                            watts: v,
                            export: v < 0.0,
                        }
                    }
                    Some((AnomalyKind::NegativeReading, _)) => {
                        injected_bad += 1;
                        RawReading {
                            watts: -(value.abs() + 1500.0),
                            export: false,
                        }
                    }
                    Some((AnomalyKind::AbsurdReading, _)) => {
                        injected_bad += 1;
                        let watts = [f64::NAN, f64::INFINITY, 4.2e9, 9.9e5][i % 4];
                        RawReading {
                            watts,
                            export: false,
                        }
                    }
                    _ => RawReading {
                        watts: value,
                        export: value < 0.0,
                    },
                };
                let jitter = (h as i64 * 7919) % 3000;
                let now = start.plus(interval + jitter);
                match validate_raw(raw, &limits) {
                    Ok(power) => {
                        meter.seqnr += 1;
                        let reading = Reading {
                            power,
                            at: start,
                            seqnr: meter.seqnr,
                            quality: Quality::AUTOMATIC_READOUT,
                        };
                        agg.handle_reading(now, &meter.nick, reading);
                    }
                    Err(rejection) => agg.handle_rejection(&rejection),
                }
            }
            true_totals.insert(start, true_total.round() as i64);
            let now = start.plus(interval + grace);
            agg.handle_timeout(now);
            drain(
                &mut agg,
                now,
                &mut true_totals,
                [&nick_map, &prev_map],
                &mut intervals,
                &mut alerts,
            );
        }
        progress(Progress {
            done: d + 1,
            days,
            accepted: agg.counters().accepted,
        });
    }
    agg.flush();
    let end =
        Timestamp((start_day + i64::from(days)) * gridmuc_core::time::DAY).plus(interval + grace);
    drain(
        &mut agg,
        end,
        &mut true_totals,
        [&nick_map, &nick_map],
        &mut intervals,
        &mut alerts,
    );

    for applied in source.physical_labels() {
        if let Some(l) = labels.iter_mut().find(|l| l.id == applied.id) {
            l.extra_w = applied.extra_w;
            l.to_total_w = applied.to_total_w;
        }
    }
    let houses_summary = source
        .house_info()
        .into_iter()
        .enumerate()
        .map(|(h, info)| HouseRecord {
            info,
            peak_w: peak[h],
            mean_daily_kwh: energy_wmin[h] / 60_000.0 / f64::from(days),
        })
        .collect();
    let start = Timestamp(start_day * gridmuc_core::time::DAY);
    let mut out = SimOutput {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        houses,
        days,
        rating_w: config.overload.rating.0,
        warn_fraction: config.overload.warn_fraction,
        interval,
        start,
        intervals,
        alerts,
        labels,
        houses_summary,
        scores: Vec::new(),
        accepted: agg.counters().accepted,
        rejected: agg
            .counters()
            .rejected
            .iter()
            .map(|(k, c)| (k.to_owned(), c))
            .collect(),
        injected_bad_readings: injected_bad,
        expected_daily_kwh: scenario.expect.daily_kwh,
    };
    out.scores = score_detectors(&out, &config.overload, &config.policy);
    out
}
