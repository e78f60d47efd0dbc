//! The linkage experiment: can someone who knows each house's load profile tell which rotating
//! nickname is which house, and what is left to attack when the leader sees only private mode's
//! reports (participation) and aggregates?
//!
//! Setup (all sans-IO and deterministic from the seed):
//! - one neighbourhood of `max(houses)` homes is simulated for `training_days + days` days; the
//!   smaller neighbourhoods are its first `N` houses (house models are drawn per index, so the
//!   neighbourhoods are nested and comparable);
//! - every reading is the interval mean quantised to the wire's 10 W, as a meter sends it;
//! - **attacker knowledge**: the true, labelled per-house series of the `training_days` before the
//!   pseudonymous period (e.g. leaked billing data, or an installer's survey); it learns one
//!   [`features::Attacker`] profile per house from them;
//! - **pseudonymous mode**: in the following `days` days each house reports under nicknames whose
//!   lifetimes are drawn uniformly from a [`Lifetime`] range, starting at a random phase; the bot
//!   sees each nickname's reading series (and nothing links two nicknames of a house);
//! - each nickname's series is scored against every house; top-1/top-5 are the share of nicknames
//!   whose true house ranks first/in the first five, against chance `1/N` and `5/N`. For fixed
//!   lifetimes the attacker may also use that each house holds exactly one nickname at any
//!   instant: the nicknames alive at one instant are matched to houses one-to-one
//!   ([`assign::assign_max`], Hungarian algorithm);
//! - **private mode**: the leader reads no value; per nickname it sees only the intervals it
//!   reported in, which [`participation`] attacks (alone, and with every nickname of a house
//!   linked, as the XMPP server links them); per interval it publishes count, total and
//!   histogram, whose differences [`aggregates`] attacks.

pub mod aggregates;
pub mod assign;
pub mod features;
pub mod participation;

use crate::MINUTES_PER_DAY;
use crate::household::HouseholdConfig;
use crate::neighbourhood::{Neighbourhood, Stream, derive_seed};
use crate::runner::interval_mean;
use crate::weather::WeatherConfig;
use aggregates::{AggregateRow, Buckets, Noise};
use features::{Attacker, FeatureSet, SeriesFeatures};
use gridmuc_core::Watts;
use gridmuc_core::codec::CodecLimits;
use participation::{OutageModel, ParticipationRow, Presence, PresenceFacts};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::ops::Range;
use thiserror::Error;

/// Why a linkage experiment cannot run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinkageError {
    /// A setting is out of its meaningful range.
    #[error("linkage setting `{field}`: {reason}")]
    Invalid {
        /// Offending setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// How long a nickname lives: uniformly between `min_minutes` and `max_minutes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// Name for tables, e.g. `daily` or `30 min–2 h`.
    pub label: String,
    /// Shortest lifetime (minutes).
    pub min_minutes: u32,
    /// Longest lifetime (minutes).
    pub max_minutes: u32,
}

impl Lifetime {
    /// A lifetime range in minutes, labelled for the report.
    pub fn new(label: &str, min_minutes: u32, max_minutes: u32) -> Lifetime {
        Lifetime {
            label: label.to_owned(),
            min_minutes,
            max_minutes,
        }
    }

    /// Every nickname lives exactly this long, which lets the attacker match per instant.
    pub fn fixed_minutes(&self) -> Option<u64> {
        (self.min_minutes == self.max_minutes).then_some(u64::from(self.min_minutes))
    }
}

/// Everything the experiment varies; [`LinkageConfig::standard`] is what `gridmuc privacy` runs.
#[derive(Clone, Debug)]
pub struct LinkageConfig {
    /// Neighbourhood sizes to attack (nested: the first `N` houses of the largest).
    pub houses: Vec<usize>,
    /// Days of pseudonymous traffic.
    pub days: u32,
    /// Days of labelled training data the attacker holds, just before.
    pub training_days: u32,
    /// Reporting interval (minutes; must divide a day).
    pub interval_min: u32,
    /// Nickname lifetimes to compare.
    pub lifetimes: Vec<Lifetime>,
    /// Master seed.
    pub seed: u64,
    /// First training day (days since the epoch).
    pub start_day: i64,
    /// Adoption shares (EV, PV, heat pumps) of the simulated street.
    pub households: HouseholdConfig,
    /// Leaver trials per neighbourhood in the aggregate attacks (at most `N`).
    pub leaver_trials: usize,
    /// Dropout and isolation trials per neighbourhood in the aggregate attacks.
    pub dropout_trials: usize,
    /// Private mode's histogram buckets (the leader publishes a count per bucket).
    pub buckets: Buckets,
    /// How meters go offline, one private-mode participation attack per model.
    pub outages: Vec<OutageModel>,
}

impl LinkageConfig {
    /// The report's setup: 50/100/200 houses, 14 training + 30 attack days from 2 Nov 2026,
    /// one-minute readings (the meter default), weekly to meter-default nickname lifetimes,
    /// meters that never fail and meters that fail very differently; `buckets` as deployed.
    pub fn standard(seed: u64, buckets: Buckets) -> LinkageConfig {
        LinkageConfig {
            houses: vec![50, 100, 200],
            days: 30,
            training_days: 14,
            interval_min: 1,
            lifetimes: vec![
                Lifetime::new("weekly", 7 * 1440, 7 * 1440),
                Lifetime::new("daily", 1440, 1440),
                Lifetime::new("2–6 h", 120, 360),
                Lifetime::new("30 min–2 h (meter default)", 30, 120),
            ],
            seed,
            start_day: crate::calendar::days_from_civil(2026, 11, 2),
            households: HouseholdConfig::default(),
            leaver_trials: 200,
            dropout_trials: 2000,
            buckets,
            outages: vec![OutageModel::none(), OutageModel::heterogeneous()],
        }
    }

    fn validate(&self) -> Result<(), LinkageError> {
        let invalid = |field, reason: &str| {
            Err(LinkageError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.houses.is_empty() || self.houses.iter().any(|n| !(2..=5000).contains(n)) {
            return invalid("houses", "each size must be 2..=5000");
        }
        if !(2..=366).contains(&self.days) {
            return invalid("days", "must be 2..=366");
        }
        if !(1..=366).contains(&self.training_days) {
            return invalid("training_days", "must be 1..=366");
        }
        if self.interval_min == 0 || !(MINUTES_PER_DAY as u32).is_multiple_of(self.interval_min) {
            return invalid("interval_min", "must divide a day");
        }
        if self.lifetimes.is_empty()
            || self
                .lifetimes
                .iter()
                .any(|l| l.min_minutes < self.interval_min || l.max_minutes < l.min_minutes)
        {
            return invalid(
                "lifetimes",
                "need at least one, each min ≥ the interval and max ≥ min",
            );
        }
        let range_ok =
            |[lo, hi]: [f64; 2]| lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi;
        if self
            .outages
            .iter()
            .any(|o| !range_ok(o.outages_per_day) || !range_ok(o.mean_minutes))
        {
            return invalid("outages", "each range must be finite, ≥ 0 and low ≤ high");
        }
        Ok(())
    }

    fn per_day(&self) -> usize {
        MINUTES_PER_DAY / self.interval_min as usize
    }
}

/// Success of the pseudonymous nickname → house attack for one neighbourhood size, lifetime and
/// feature set.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkageRow {
    /// Houses in the neighbourhood (and candidates per nickname).
    pub houses: usize,
    /// Nickname lifetime label.
    pub lifetime: String,
    /// Features the classifier used.
    pub features: FeatureSet,
    /// Nicknames attacked.
    pub nicknames: usize,
    /// Mean readings per nickname.
    pub mean_readings: f64,
    /// Share of nicknames whose house ranked first.
    pub top1: f64,
    /// Share of nicknames whose house ranked in the first five.
    pub top5: f64,
    /// Mean rank of the true house (chance: about (N+1)/2).
    pub mean_rank: f64,
    /// Top-1 when the nicknames alive at one instant are matched one-to-one (fixed lifetimes).
    pub assigned_top1: Option<f64>,
}

impl LinkageRow {
    /// Chance top-1 success: 1/N.
    pub fn chance_top1(&self) -> f64 {
        1.0 / self.houses as f64
    }

    /// Chance top-5 success: min(5, N)/N.
    pub fn chance_top5(&self) -> f64 {
        self.houses.min(5) as f64 / self.houses as f64
    }
}

/// Progress of a run, for the CLI.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkageProgress {
    /// What just finished.
    pub stage: String,
    /// Steps done.
    pub done: usize,
    /// Steps in the run.
    pub total: usize,
}

/// All results of one experiment.
#[derive(Clone, Debug)]
pub struct LinkageOutput {
    /// The setup.
    pub config: LinkageConfig,
    /// Nickname → house attacks on pseudonymous readings.
    pub rows: Vec<LinkageRow>,
    /// Nickname → house attacks on private mode's participation.
    pub participation: Vec<ParticipationRow>,
    /// Per-house participation as the XMPP server sees it, per outage model and size.
    pub presence: Vec<PresenceFacts>,
    /// Attacks on private mode's aggregates.
    pub aggregate_rows: Vec<AggregateRow>,
    /// Mean per-house reading (W) in the attack period of the largest neighbourhood.
    pub mean_house_w: f64,
    /// Standard deviation of one house's readings (W), pooled over houses, for scale.
    pub house_sd_w: f64,
}

/// One house's reporting-interval readings (W, quantised as on the wire) over training + attack.
pub(crate) struct Recorded {
    /// `series[h][i]`: reading `i` of house `h`, training period first.
    pub series: Vec<Vec<f64>>,
    /// Readings per day.
    pub per_day: usize,
    /// Readings in the training period.
    pub training: usize,
}

impl Recorded {
    /// House `h`'s attack-period readings.
    pub fn attack(&self, h: usize) -> &[f64] {
        &self.series[h][self.training..]
    }
}

fn record(config: &LinkageConfig, houses: usize) -> Recorded {
    let mut nb = Neighbourhood::new(
        &config.households,
        WeatherConfig::default(),
        houses,
        config.start_day,
        config.seed,
        &[],
    );
    let per_day = config.per_day();
    let total_days = (config.training_days + config.days) as usize;
    let quantum = CodecLimits::default().quantum_watts;
    let step = config.interval_min as usize;
    let mut series = vec![Vec::with_capacity(total_days * per_day); houses];
    for _ in 0..total_days {
        let day = nb.next_day();
        for (h, out) in series.iter_mut().enumerate() {
            out.extend(day.house(h).chunks_exact(step).map(|minutes| {
                Watts(interval_mean(minutes).round() as i64)
                    .quantise(quantum)
                    .as_f64()
            }));
        }
    }
    Recorded {
        series,
        per_day,
        training: config.training_days as usize * per_day,
    }
}

/// One nickname: its house and its readings (indices into the attack period).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// House behind the nickname (known to the simulator only, for scoring).
    pub house: usize,
    /// Reading indices within the attack period.
    pub readings: Range<usize>,
    /// First and one-past-last minute of the nickname's life, from the attack start.
    pub minutes: Range<u64>,
}

/// Nickname lives of one house over `total_min` minutes: lifetimes uniform in the range, the first
/// cut at a uniformly random point of its life (the house was already rotating before).
pub fn schedule<R: Rng>(
    lifetime: &Lifetime,
    house: usize,
    total_min: u64,
    interval_min: u32,
    rng: &mut R,
) -> Vec<Segment> {
    let step = u64::from(interval_min.max(1));
    let draw =
        |rng: &mut R| u64::from(rng.random_range(lifetime.min_minutes..=lifetime.max_minutes));
    let first = draw(rng);
    let mut bounds = vec![0, rng.random_range(1..=first.max(1))];
    while bounds[bounds.len() - 1] < total_min {
        let last = bounds[bounds.len() - 1];
        bounds.push(last + draw(rng).max(1));
    }
    bounds
        .windows(2)
        .filter_map(|b| {
            let end = b[1].min(total_min);
            let readings = (b[0].div_ceil(step) as usize)..(end.div_ceil(step) as usize);
            (!readings.is_empty()).then_some(Segment {
                house,
                readings,
                minutes: b[0]..end,
            })
        })
        .collect()
}

/// Per-nickname features, computed once and reused for every neighbourhood size.
struct Observed {
    segments: Vec<Segment>,
    features: Vec<SeriesFeatures>,
}

fn observe(rec: &Recorded, config: &LinkageConfig, segments: &[Segment]) -> Observed {
    let features = segments
        .par_iter()
        .map(|s| {
            let start = s.readings.start as u64 * u64::from(config.interval_min);
            SeriesFeatures::extract(
                &rec.attack(s.house)[s.readings.clone()],
                start,
                config.interval_min,
            )
        })
        .collect();
    Observed {
        segments: segments.to_vec(),
        features,
    }
}

/// Attacks every nickname of houses `< n` with `attacker`, for each feature set.
fn attack(
    observed: &Observed,
    attacker: &Attacker,
    n: usize,
    sets: &[FeatureSet],
    fixed: Option<u64>,
) -> Vec<(FeatureSet, usize, f64, f64, f64, Option<f64>)> {
    let chosen: Vec<usize> = (0..observed.segments.len())
        .filter(|&k| observed.segments[k].house < n)
        .collect();
    sets.iter()
        .map(|&set| {
            let scored: Vec<(usize, Vec<f64>)> = chosen
                .par_iter()
                .map(|&k| {
                    let scores = attacker.scores(&observed.features[k], set);
                    (
                        features::rank_in(&scores, observed.segments[k].house),
                        scores,
                    )
                })
                .collect();
            let count = scored.len().max(1) as f64;
            let top = |k: usize| scored.iter().filter(|(r, _)| *r <= k).count() as f64 / count;
            let mean_rank = scored.iter().map(|(r, _)| *r as f64).sum::<f64>() / count;
            let assigned = fixed.map(|life| {
                let segments: Vec<&Segment> =
                    chosen.iter().map(|&k| &observed.segments[k]).collect();
                let scores: Vec<&[f64]> = scored.iter().map(|(_, s)| s.as_slice()).collect();
                assign::matched_top1(&segments, &scores, n, life)
            });
            (set, scored.len(), top(1), top(5), mean_rank, assigned)
        })
        .collect()
}

/// Runs the whole experiment; `noises` are the aggregates' noise levels to compare (the first
/// should be [`Noise::none`], private mode as built), `progress` is called after each stage.
pub fn run_linkage(
    config: &LinkageConfig,
    noises: &[Noise],
    mut progress: impl FnMut(LinkageProgress),
) -> Result<LinkageOutput, LinkageError> {
    config.validate()?;
    let max_n = config.houses.iter().copied().max().unwrap_or(0);
    let total = 1 + config.lifetimes.len() + config.outages.len() + config.houses.len();
    let mut done = 0;
    let mut step = |stage: String| {
        done += 1;
        progress(LinkageProgress { stage, done, total });
    };
    let rec = record(config, max_n);
    step(format!(
        "simulated {max_n} houses × {} days",
        config.training_days + config.days
    ));
    let attackers: Vec<Attacker> = config
        .houses
        .iter()
        .map(|&n| {
            let training: Vec<Vec<SeriesFeatures>> = (0..n)
                .into_par_iter()
                .map(|h| {
                    rec.series[h][..rec.training]
                        .chunks_exact(rec.per_day)
                        .map(|day| SeriesFeatures::extract(day, 0, config.interval_min))
                        .collect()
                })
                .collect();
            Attacker::train(&training)
        })
        .collect();
    let total_min = u64::from(config.days) * MINUTES_PER_DAY as u64;
    let mut rows = Vec::new();
    let mut schedules = Vec::new();
    for (li, lifetime) in config.lifetimes.iter().enumerate() {
        let segments: Vec<Segment> = (0..max_n)
            .flat_map(|h| {
                let index = ((li as u64) << 32) | h as u64;
                let mut rng =
                    ChaCha8Rng::seed_from_u64(derive_seed(config.seed, Stream::Linkage, index));
                schedule(lifetime, h, total_min, config.interval_min, &mut rng)
            })
            .collect();
        let observed = observe(&rec, config, &segments);
        for (&n, attacker) in config.houses.iter().zip(&attackers) {
            for (features, nicknames, top1, top5, mean_rank, assigned_top1) in attack(
                &observed,
                attacker,
                n,
                &FeatureSet::ALL,
                lifetime.fixed_minutes(),
            ) {
                let readings: usize = observed
                    .segments
                    .iter()
                    .filter(|s| s.house < n)
                    .map(|s| s.readings.len())
                    .sum();
                rows.push(LinkageRow {
                    houses: n,
                    lifetime: lifetime.label.clone(),
                    features,
                    nicknames,
                    mean_readings: readings as f64 / nicknames.max(1) as f64,
                    top1,
                    top5,
                    mean_rank,
                    assigned_top1,
                });
            }
        }
        step(format!(
            "pseudonymous, lifetime {}: {} nicknames attacked",
            lifetime.label,
            segments.len()
        ));
        schedules.push((lifetime.label.clone(), segments));
    }
    let len = rec.attack(0).len();
    schedules.push((
        participation::ALL_LINKED.to_owned(),
        (0..max_n)
            .map(|house| Segment {
                house,
                readings: 0..len,
                minutes: 0..total_min,
            })
            .collect(),
    ));
    let mut participation_rows = Vec::new();
    let mut presence = Vec::new();
    for (oi, model) in config.outages.iter().enumerate() {
        let tag = (1u64 << 31) | oi as u64;
        let seen = Presence::simulate(
            model,
            max_n,
            rec.series[0].len(),
            rec.training,
            config.interval_min,
            |h| derive_seed(config.seed, Stream::Linkage, (tag << 32) | h as u64),
        );
        for &n in &config.houses {
            participation_rows.extend(schedules.iter().map(|(label, segments)| {
                participation::attack_participation(&seen, &model.label, label, segments, n)
            }));
            presence.push(participation::presence_facts(
                &seen,
                &model.label,
                n,
                config.days,
            ));
        }
        step(format!("private participation attacked: {}", model.label));
    }
    let mut aggregate_rows = Vec::new();
    for (&n, attacker) in config.houses.iter().zip(&attackers) {
        aggregate_rows.extend(aggregates::attack_aggregates(
            &rec, config, n, attacker, noises,
        ));
        step(format!("private aggregates of {n} houses attacked"));
    }
    let attack_values: Vec<f64> = (0..max_n)
        .flat_map(|h| rec.attack(h).iter().copied())
        .collect();
    let mean_house_w = attack_values.iter().sum::<f64>() / attack_values.len().max(1) as f64;
    let house_sd_w = ((0..max_n)
        .map(|h| {
            let xs = rec.attack(h);
            let m = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
            xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len().max(1) as f64
        })
        .sum::<f64>()
        / max_n.max(1) as f64)
        .sqrt();
    Ok(LinkageOutput {
        config: config.clone(),
        rows,
        participation: participation_rows,
        presence,
        aggregate_rows,
        mean_house_w,
        house_sd_w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_buckets() -> Buckets {
        Buckets::new(vec![0, 100, 1000]).unwrap()
    }

    #[test]
    fn schedules_tile_the_period_within_the_lifetime_range() {
        let life = Lifetime::new("2–6 h", 120, 360);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let total = 3 * 1440;
        let s = schedule(&life, 7, total, 1, &mut rng);
        assert_eq!(s[0].readings.start, 0);
        assert_eq!(s.last().map(|x| x.readings.end), Some(total as usize));
        for w in s.windows(2) {
            assert_eq!(w[0].readings.end, w[1].readings.start);
        }
        // Every life but the first (random phase) and the last (cut by the end) is in range.
        for seg in &s[1..s.len() - 1] {
            assert!((120..=360).contains(&seg.readings.len()), "{seg:?}");
        }
        assert!(s.iter().all(|x| x.house == 7));
    }

    #[test]
    fn schedules_round_lives_to_reading_times() {
        let life = Lifetime::new("daily", 1440, 1440);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let s = schedule(&life, 0, 2 * 1440, 30, &mut rng);
        let readings: usize = s.iter().map(|x| x.readings.len()).sum();
        assert_eq!(readings, 96);
        assert!(s.iter().all(|x| x.readings.len() <= 48));
        assert_eq!(life.fixed_minutes(), Some(1440));
        assert_eq!(Lifetime::new("x", 30, 120).fixed_minutes(), None);
    }

    #[test]
    fn config_is_validated() {
        let mut c = LinkageConfig::standard(1, test_buckets());
        assert_eq!(c.validate(), Ok(()));
        c.interval_min = 7;
        assert!(c.validate().is_err());
        let mut c = LinkageConfig::standard(1, test_buckets());
        c.houses = vec![1];
        assert!(c.validate().is_err());
        let mut c = LinkageConfig::standard(1, test_buckets());
        c.lifetimes = vec![Lifetime::new("bad", 120, 60)];
        assert!(c.validate().is_err());
    }
}
