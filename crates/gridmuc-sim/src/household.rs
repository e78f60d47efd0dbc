//! One household's electrical load, minute by minute: occupancy → activities → appliances, plus
//! daylight-driven lighting, cold appliances, standby, space heating against the outdoor
//! temperature, EV charging and rooftop PV (net load = consumption − generation).
//!
//! The layering follows the published CREST demand model (Richardson, Thomson, Infield et al.,
//! Loughborough, 2008–2010): occupancy chain, activity profiles by time of day, appliances
//! switched on with calibrated probabilities when someone is active, lighting from outdoor
//! irradiance and active occupants. Figures are our own round numbers for UK homes.
//!
//! Speed matters (≥ 50 household-years per CPU-second): appliance starts are drawn once per
//! 10-minute slot, and each started cycle is stamped into a two-day ring buffer, so the per-minute
//! work is a handful of additions.

use crate::MINUTES_PER_DAY;
use crate::calendar::SimDay;
use crate::occupancy::{Resident, State};
use crate::weather::DayWeather;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Deserialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// Activity classes that share a time-of-day profile of appliance use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    Cooking = 0,
    HotDrink,
    Laundry,
    Dishes,
    Screen,
    Chores,
    Washing,
}
const ACTIVITIES: usize = 7;

/// Relative hourly propensity of each activity when someone is at home and awake.
const ACTIVITY_HOURLY: [[u8; 24]; ACTIVITIES] = [
    // Cooking: breakfast, lunch, the evening meal.
    [
        0, 0, 0, 0, 0, 1, 4, 8, 6, 3, 3, 6, 10, 8, 3, 3, 6, 10, 12, 9, 5, 2, 1, 0,
    ],
    // HotDrink (kettle).
    [
        1, 0, 0, 0, 0, 1, 6, 10, 8, 6, 6, 5, 6, 6, 5, 6, 7, 7, 6, 6, 6, 5, 3, 1,
    ],
    // Laundry.
    [
        0, 0, 0, 0, 0, 0, 1, 3, 6, 9, 10, 9, 7, 6, 6, 6, 6, 6, 6, 5, 4, 2, 1, 0,
    ],
    // Dishes.
    [
        1, 0, 0, 0, 0, 0, 0, 2, 4, 4, 3, 3, 4, 6, 4, 3, 3, 4, 6, 9, 9, 7, 4, 2,
    ],
    // Screen (TV, games, computers).
    [
        3, 1, 0, 0, 0, 0, 1, 3, 4, 5, 5, 5, 6, 6, 6, 6, 7, 8, 9, 11, 12, 11, 8, 5,
    ],
    // Chores (vacuum, iron).
    [
        0, 0, 0, 0, 0, 0, 1, 2, 5, 8, 9, 8, 6, 6, 7, 6, 5, 4, 4, 3, 2, 1, 0, 0,
    ],
    // Washing (shower, hair dryer).
    [
        0, 0, 0, 0, 0, 2, 10, 14, 8, 3, 2, 1, 1, 1, 1, 1, 1, 2, 3, 3, 4, 5, 3, 1,
    ],
];

/// An appliance type: when it is used, how often, and its power profile over one cycle.
struct ApplianceType {
    /// Name in reports.
    name: &'static str,
    activity: Activity,
    /// Share of homes owning one.
    ownership: f32,
    /// Cycles per day in a two-person home.
    cycles_per_day: f32,
    /// Extra use in mid-winter, as a share of `cycles_per_day` (the same less in mid-summer):
    /// more cooking and television on dark evenings, the dryer instead of the washing line.
    winter_extra: f32,
    /// (minutes, watts) segments of one cycle.
    profile: &'static [(u16, u16)],
}

const APPLIANCES: &[ApplianceType] = &[
    // Kettle.
    ApplianceType {
        name: "kettle",
        activity: Activity::HotDrink,
        ownership: 0.97,
        cycles_per_day: 2.3,
        winter_extra: 0.2,
        profile: &[(3, 2800)],
    },
    // Electric hob (element cycling).
    ApplianceType {
        name: "hob",
        activity: Activity::Cooking,
        ownership: 0.55,
        cycles_per_day: 0.27,
        winter_extra: 0.5,
        profile: &[(8, 2000), (6, 900), (6, 1400), (10, 700)],
    },
    // Electric oven.
    ApplianceType {
        name: "oven",
        activity: Activity::Cooking,
        ownership: 0.6,
        cycles_per_day: 0.15,
        winter_extra: 0.55,
        profile: &[(12, 2400), (15, 1100), (18, 900)],
    },
    // Microwave.
    ApplianceType {
        name: "microwave",
        activity: Activity::Cooking,
        ownership: 0.88,
        cycles_per_day: 0.4,
        winter_extra: 0.3,
        profile: &[(4, 1250)],
    },
    // Toaster.
    ApplianceType {
        name: "toaster",
        activity: Activity::Cooking,
        ownership: 0.8,
        cycles_per_day: 0.2,
        winter_extra: 0.2,
        profile: &[(3, 1000)],
    },
    // Washing machine: heat, wash, spin.
    ApplianceType {
        name: "washing machine",
        activity: Activity::Laundry,
        ownership: 0.93,
        cycles_per_day: 0.23,
        winter_extra: 0.25,
        profile: &[(14, 2000), (50, 180), (8, 450)],
    },
    // Tumble dryer.
    ApplianceType {
        name: "tumble dryer",
        activity: Activity::Laundry,
        ownership: 0.55,
        cycles_per_day: 0.12,
        winter_extra: 0.95,
        profile: &[(55, 2400), (10, 300)],
    },
    // Dishwasher: heat wash, idle, heat dry.
    ApplianceType {
        name: "dishwasher",
        activity: Activity::Dishes,
        ownership: 0.45,
        cycles_per_day: 0.29,
        winter_extra: 0.2,
        profile: &[(18, 1900), (35, 90), (16, 1700)],
    },
    // Television.
    ApplianceType {
        name: "television",
        activity: Activity::Screen,
        ownership: 0.98,
        cycles_per_day: 0.8,
        winter_extra: 0.6,
        profile: &[(80, 110)],
    },
    // Desktop computer / games console.
    ApplianceType {
        name: "computer",
        activity: Activity::Screen,
        ownership: 0.6,
        cycles_per_day: 0.48,
        winter_extra: 0.45,
        profile: &[(110, 120)],
    },
    // Vacuum cleaner.
    ApplianceType {
        name: "vacuum cleaner",
        activity: Activity::Chores,
        ownership: 0.95,
        cycles_per_day: 0.14,
        winter_extra: 0.1,
        profile: &[(20, 1100)],
    },
    // Iron.
    ApplianceType {
        name: "iron",
        activity: Activity::Chores,
        ownership: 0.9,
        cycles_per_day: 0.08,
        winter_extra: 0.2,
        profile: &[(25, 1000)],
    },
    // Electric shower (common in the UK): the biggest short load in many homes.
    ApplianceType {
        name: "electric shower",
        activity: Activity::Washing,
        ownership: 0.3,
        cycles_per_day: 0.38,
        winter_extra: 0.15,
        profile: &[(7, 8500)],
    },
    // Hair dryer.
    ApplianceType {
        name: "hair dryer",
        activity: Activity::Washing,
        ownership: 0.6,
        cycles_per_day: 0.16,
        winter_extra: 0.1,
        profile: &[(6, 1500)],
    },
];

/// Appliance load (W) one house does not exceed: people do not run the shower, the oven, the
/// kettle and the dryer in the same minute; a real house in four years of minute data never
/// exceeded 11.1 kW in total (issue #13). A start that would cross it is skipped.
const APPLIANCE_CAP_W: f32 = 10_000.0;

/// Largest room heater (W) of a resistively heated home: panel and storage heaters are 1–3 kW
/// each, so a home's heating is several of them, not one block.
const ROOM_HEATER_W: f32 = 2_500.0;

/// Heat demand (W) at which a gas boiler's pump runs all the time.
const BOILER_FULL_W: f32 = 2_500.0;

/// How much each further active resident adds to the chance of using a shared appliance.
const CROWD_EXTRA: f32 = 0.25;

/// Per-slot activity weights normalised so each class's expected daily weight for one typical
/// resident is 1: a rate of `k` cycles/day then gives about `k` cycles a day.
#[derive(Clone, Debug)]
pub struct ActivityModel {
    weights: [[f32; 144]; ACTIVITIES],
}

impl Default for ActivityModel {
    fn default() -> Self {
        use crate::occupancy::{DayType, target};
        let mut weights = [[0f32; 144]; ACTIVITIES];
        for (a, row) in ACTIVITY_HOURLY.iter().enumerate() {
            let mut norm = 0.0;
            for slot in 0..144 {
                let w = f32::from(row[slot / 6]);
                // Mix of day types as they occur in a week and a population.
                let p_active = [
                    DayType::WeekdayWorker,
                    DayType::WeekdayHome,
                    DayType::Weekend,
                ]
                .iter()
                .zip([0.45f32, 0.26, 0.29])
                .map(|(d, share)| share * target(*d, slot as i32, 0)[2])
                .sum::<f32>();
                norm += w * p_active;
                weights[a][slot] = w;
            }
            for w in weights[a].iter_mut() {
                *w /= norm.max(1e-6);
            }
        }
        ActivityModel { weights }
    }
}

/// How a home is heated; decides whether the outdoor temperature shows up in its electricity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heating {
    /// Gas or oil boiler: only the circulation pump and controls are electric.
    Boiler,
    /// Direct electric heaters, thermostat cycling at full power.
    Resistive,
    /// Air-source heat pump: heat demand divided by a temperature-dependent COP.
    HeatPump,
}

impl Heating {
    /// Short name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Heating::Boiler => "boiler",
            Heating::Resistive => "resistive",
            Heating::HeatPump => "heat-pump",
        }
    }
}

/// Adoption shares and ranges for a neighbourhood: the `[households]` table of a scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HouseholdConfig {
    /// Share of homes with an EV charger.
    pub ev_share: f64,
    /// Share of homes with rooftop PV.
    pub pv_share: f64,
    /// Share heated by an air-source heat pump.
    pub heat_pump_share: f64,
    /// Share heated by direct electric heaters.
    pub electric_heating_share: f64,
    /// Range of rooftop PV sizes (kWp).
    pub pv_kwp: [f64; 2],
    /// Mean weekday EV arrival time (hours, local).
    pub ev_arrival_hour: f64,
    /// Scale on appliance use, for calibration against measured daily energy.
    pub appliance_scale: f64,
}

impl Default for HouseholdConfig {
    fn default() -> Self {
        HouseholdConfig {
            ev_share: 0.0,
            pv_share: 0.0,
            heat_pump_share: 0.0,
            electric_heating_share: 0.0,
            pv_kwp: [2.5, 6.0],
            ev_arrival_hour: 18.0,
            appliance_scale: 1.0,
        }
    }
}

/// A duty-cycling load (fridge, freezer compressor).
#[derive(Clone, Debug)]
struct Cycler {
    period: u32,
    on: u32,
    phase: u32,
    watts: f32,
}

/// One appliance this house owns, and until when its current cycle runs.
#[derive(Clone, Debug)]
struct Owned {
    /// Index into `APPLIANCES`.
    kind: u8,
    /// Power scale of this model.
    power: f32,
    /// Start probability scale (cycles per day before the time-of-day weights).
    rate: f32,
    /// Minute (relative to today's midnight) at which the running cycle ends: an appliance runs
    /// one cycle at a time.
    busy_until: i32,
    /// Cycles started, for calibration against published use counts.
    starts: u64,
}

/// An EV charging session in minutes relative to today's midnight.
#[derive(Clone, Copy, Debug)]
struct Charge {
    start: i32,
    end: i32,
    watts: f32,
}

#[derive(Clone, Debug)]
struct Ev {
    charger_w: f32,
    drive_prob: f32,
    mean_kwh: f32,
    arrival_offset_h: f32,
}

/// Static facts about a house, for tables and the per-house chart; no identity, just features.
#[derive(Clone, Debug, PartialEq)]
pub struct HouseInfo {
    /// Number of residents.
    pub residents: u8,
    /// Heating type.
    pub heating: Heating,
    /// EV charger power in kW, if the home has one.
    pub ev_kw: Option<f32>,
    /// PV size in kWp, 0 without PV.
    pub pv_kwp: f32,
}

/// Everything a house needs to simulate one day.
pub struct DayContext<'a> {
    /// Calendar facts.
    pub day: SimDay,
    /// Shared weather.
    pub weather: &'a DayWeather,
    /// Shared activity weights.
    pub activity: &'a ActivityModel,
}

/// One simulated household with its own RNG stream and carried-over state.
#[derive(Clone, Debug)]
pub struct House {
    rng: ChaCha8Rng,
    /// The meter's minute-to-minute noise, a stream of its own so behaviour does not depend on it.
    noise: Xoshiro256PlusPlus,
    residents: Vec<Resident>,
    appliances: Vec<Owned>,
    standby_w: f32,
    cold: Vec<Cycler>,
    light_w: f32,
    light_threshold: f32,
    away_light: f32,
    heating: Heating,
    ua_w_per_k: f32,
    setpoint_c: f32,
    heater_w: f32,
    heat_phase: u32,
    /// Separately switched heaters the heat comes from: room heaters each on its own
    /// thermostat for resistive heating (one switching 9 kW in a minute is no real home), one
    /// boiler pump or heat pump otherwise.
    heat_units: u32,
    ev: Option<Ev>,
    /// Today's or a still running EV charge (minutes relative to today's midnight); kept out of
    /// the appliance ring so the house's appliance cap does not count the car.
    ev_charge: Option<Charge>,
    pv_kwp: f32,
    pv_factor: f32,
    /// Two days of appliance load: today and the spill-over into tomorrow.
    ring: Vec<f32>,
    /// Days simulated, to log cycles on an absolute minute scale.
    #[cfg(test)]
    day_count: i64,
    /// Every cycle started: (owned appliance, first minute, end minute), absolute minutes.
    #[cfg(test)]
    cycles: Vec<(usize, i64, i64)>,
}

/// Half-width of the triangular noise on a house's small loads (router, chargers, standby,
/// compressor start-up, dimmed lights), whose one-minute mean wanders by about 8 W (sd).
const STANDBY_NOISE_W: f32 = 20.0;
/// Half-width of the triangular relative noise of resistive loads following the supply voltage,
/// whose one-minute mean moves by about 0.6 % (sd), so power by 1.2 %.
const VOLTAGE_NOISE: f32 = 0.03;

/// The noise stream of the house or day seeded by `seed`, apart from the behaviour's ChaCha
/// stream. Xoshiro256++: one draw per house-minute, and ChaCha8's draws cost a fifth of the
/// simulator's time (`bench sim` 84 against 106 household-years per CPU-second without them).
fn noise_rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn normal<R: Rng>(rng: &mut R, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd)
        .map(|n| n.inverse_cdf(rng.random_range(1e-9..1.0 - 1e-9)))
        .unwrap_or(mean)
}

impl House {
    /// Draws a house's features from the neighbourhood's diversity distributions.
    pub fn new(config: &HouseholdConfig, seed: u64) -> House {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let size_cdf = [0.29f32, 0.64, 0.80, 0.94, 1.0];
        let u: f32 = rng.random();
        let n = size_cdf.iter().position(|c| u < *c).unwrap_or(4) + 1;
        let house_offset = normal(&mut rng, 0.0, 4.0);
        let residents = (0..n)
            .map(|_| Resident {
                state: State::Asleep,
                offset_slots: (house_offset + normal(&mut rng, 0.0, 2.0)).round() as i32,
                worker: rng.random::<f32>() < if n == 1 { 0.55 } else { 0.62 },
            })
            .collect();
        let size_factor = (n as f32 / 2.0).powf(0.55);
        let scale = config.appliance_scale as f32;
        let mut appliances = Vec::with_capacity(APPLIANCES.len());
        for (i, a) in APPLIANCES.iter().enumerate() {
            let owned = rng.random::<f32>() < a.ownership;
            let power = rng.random_range(0.85f32..1.15);
            let use_rate = a.cycles_per_day * size_factor * scale * rng.random_range(0.5f32..1.5);
            if owned {
                appliances.push(Owned {
                    kind: i as u8,
                    power,
                    rate: use_rate,
                    busy_until: 0,
                    starts: 0,
                });
            }
        }
        let mut cold = vec![Cycler {
            period: rng.random_range(40..70),
            on: 0,
            phase: rng.random_range(0..70),
            watts: rng.random_range(70.0f32..130.0),
        }];
        if rng.random::<f32>() < 0.4 {
            cold.push(Cycler {
                period: rng.random_range(45..80),
                on: 0,
                phase: rng.random_range(0..80),
                watts: rng.random_range(70.0f32..110.0),
            });
        }
        for c in &mut cold {
            c.on = (c.period as f32 * rng.random_range(0.3f32..0.5)).round() as u32;
        }
        let u: f64 = rng.random();
        let heating = if u < config.heat_pump_share {
            Heating::HeatPump
        } else if u < config.heat_pump_share + config.electric_heating_share {
            Heating::Resistive
        } else {
            Heating::Boiler
        };
        let ua = 110.0 + 35.0 * n as f32 + rng.random_range(-30.0f32..60.0);
        let ev = (rng.random::<f64>() < config.ev_share).then(|| {
            let u: f32 = rng.random();
            Ev {
                charger_w: if u < 0.3 {
                    3700.0
                } else if u < 0.85 {
                    7400.0
                } else {
                    11_000.0
                },
                drive_prob: rng.random_range(0.35f32..0.8),
                mean_kwh: rng.random_range(6.0f32..16.0),
                arrival_offset_h: normal(&mut rng, config.ev_arrival_hour - 18.0, 0.7) as f32,
            }
        });
        let pv_kwp = if rng.random::<f64>() < config.pv_share {
            rng.random_range(config.pv_kwp[0]..=config.pv_kwp[1].max(config.pv_kwp[0])) as f32
        } else {
            0.0
        };
        let heater_w = (ua * 26.0).clamp(3000.0, 10_000.0);
        House {
            noise: noise_rng(seed),
            standby_w: 60.0 + (normal(&mut rng, 3.85, 0.4).exp() as f32).min(250.0),
            light_w: rng.random_range(40.0f32..200.0) * size_factor.sqrt(),
            light_threshold: normal(&mut rng, 60.0, 10.0).max(20.0) as f32,
            away_light: if rng.random::<f32>() < 0.1 { 0.15 } else { 0.0 },
            setpoint_c: normal(&mut rng, 20.0, 1.0) as f32,
            heater_w,
            heat_phase: rng.random_range(0..10),
            heat_units: if heating == Heating::Resistive {
                (heater_w / ROOM_HEATER_W).ceil() as u32
            } else {
                1
            },
            pv_factor: rng.random_range(0.65f32..0.85),
            rng,
            residents,
            appliances,
            cold,
            heating,
            ua_w_per_k: ua,
            ev,
            ev_charge: None,
            pv_kwp,
            ring: vec![0.0; 2 * MINUTES_PER_DAY],
            #[cfg(test)]
            day_count: -1,
            #[cfg(test)]
            cycles: Vec::new(),
        }
    }

    /// Replaces the behaviour stream, so [`crate::HouseModel`] can make each day a function of its
    /// seed alone.
    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.noise = noise_rng(seed);
    }

    /// Static features, for reports.
    pub fn info(&self) -> HouseInfo {
        HouseInfo {
            residents: self.residents.len() as u8,
            heating: self.heating,
            ev_kw: self.ev.as_ref().map(|e| e.charger_w / 1000.0),
            pv_kwp: self.pv_kwp,
        }
    }

    /// Charger power (W) this house would draw in a coordinated EV surge; a typical 7.4 kW if it
    /// has no EV of its own (surge scenarios model visiting or newly bought cars).
    pub fn surge_charger_w(&self) -> f32 {
        self.ev.as_ref().map_or(7400.0, |e| e.charger_w)
    }

    /// Cycles started per appliance type since the house was drawn, for calibration (e.g.
    /// kettle boils per day against published counts).
    pub fn appliance_starts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.appliances
            .iter()
            .map(|a| (APPLIANCES[usize::from(a.kind)].name, a.starts))
    }

    /// Starts appliance `i`'s cycle at `start` (minute of today) unless it is still running or
    /// the cycle would lift the house's appliance load over [`APPLIANCE_CAP_W`].
    fn try_start(&mut self, i: usize, start: usize) {
        let owned = &self.appliances[i];
        if (start as i32) < owned.busy_until {
            return;
        }
        let profile = APPLIANCES[usize::from(owned.kind)].profile;
        let scale = owned.power;
        let mut m = start;
        for &(minutes, watts) in profile {
            let end = (m + usize::from(minutes)).min(self.ring.len());
            let w = f32::from(watts) * scale;
            if self.ring[m..end].iter().any(|x| x + w > APPLIANCE_CAP_W) {
                return;
            }
            m = end;
        }
        let mut m = start;
        for &(minutes, watts) in profile {
            let end = (m + usize::from(minutes)).min(self.ring.len());
            let w = f32::from(watts) * scale;
            for x in &mut self.ring[m..end] {
                *x += w;
            }
            m = end;
        }
        let owned = &mut self.appliances[i];
        owned.busy_until = m as i32;
        owned.starts += 1;
        #[cfg(test)]
        self.cycles.push((
            i,
            self.day_count * MINUTES_PER_DAY as i64 + start as i64,
            self.day_count * MINUTES_PER_DAY as i64 + m as i64,
        ));
    }

    /// Simulates one day and writes the net load (W, + import / − export) for each minute into `out`.
    pub fn simulate_day(&mut self, ctx: &DayContext<'_>, out: &mut [f32]) {
        debug_assert_eq!(out.len(), MINUTES_PER_DAY);
        // Roll the two-day ring: yesterday's spill-over becomes today.
        self.ring.copy_within(MINUTES_PER_DAY.., 0);
        self.ring[MINUTES_PER_DAY..].fill(0.0);
        let day = MINUTES_PER_DAY as i32;
        for a in &mut self.appliances {
            a.busy_until -= day;
        }
        self.ev_charge = self.ev_charge.and_then(|c| {
            (c.end > day).then_some(Charge {
                start: c.start - day,
                end: c.end - day,
                watts: c.watts,
            })
        });
        #[cfg(test)]
        {
            self.day_count += 1;
        }
        self.plan_ev(ctx.day);

        let weekend = ctx.day.weekend;
        // +1 in mid-January, −1 in mid-July.
        let winterness =
            (std::f32::consts::TAU * (ctx.day.day_of_year as f32 - 15.0) / 365.0).cos();
        let mut active = [0u8; 144];
        let mut home = [0u8; 144];
        for slot in 0..144 {
            let (mut a, mut h) = (0u8, 0u8);
            for r in &mut self.residents {
                let day_type = r.day_type(weekend);
                match r.step(day_type, slot as i32, &mut self.rng) {
                    State::Active => {
                        a += 1;
                        h += 1;
                    }
                    State::Asleep => h += 1,
                    State::Away => {}
                }
            }
            active[slot] = a;
            home[slot] = h;
            if a == 0 {
                continue;
            }
            // More people awake use shared appliances a little more often, not n times as often:
            // the house's size already scales its rates.
            let crowd = 1.0 + CROWD_EXTRA * f32::from(a - 1);
            for i in 0..self.appliances.len() {
                let owned = &self.appliances[i];
                let app = &APPLIANCES[usize::from(owned.kind)];
                let p = owned.rate
                    * (1.0 + app.winter_extra * winterness)
                    * ctx.activity.weights[app.activity as usize][slot]
                    * crowd;
                if self.rng.random::<f32>() < p {
                    let start = slot * 10 + self.rng.random_range(0..10usize);
                    self.try_start(i, start);
                }
            }
        }
        self.fill_minutes(ctx, &active, &home, out);
    }

    fn plan_ev(&mut self, day: SimDay) {
        let Some(ev) = self.ev.clone() else { return };
        if self.rng.random::<f32>() >= ev.drive_prob {
            return;
        }
        let (mean_h, sd_h) = if day.weekend {
            (15.0, 2.5)
        } else {
            (18.0, 1.3)
        };
        let hour =
            normal(&mut self.rng, mean_h + f64::from(ev.arrival_offset_h), sd_h).clamp(7.0, 23.9);
        let arrival = (hour * 60.0) as i32;
        if self.ev_charge.is_some_and(|c| arrival < c.end) {
            return;
        }
        // Gamma(2) energy need: the sum of two exponentials.
        let (u1, u2): (f32, f32) = (
            self.rng.random_range(1e-6..1.0),
            self.rng.random_range(1e-6..1.0),
        );
        let kwh = (ev.mean_kwh * -(u1 * u2).ln() / 2.0).min(ev.charger_w / 1000.0 * 12.0);
        let minutes = (kwh * 60_000.0 / ev.charger_w).round() as u16;
        if minutes == 0 {
            return;
        }
        self.ev_charge = Some(Charge {
            start: arrival,
            end: arrival + i32::from(minutes),
            watts: ev.charger_w.round(),
        });
    }

    fn heat_w(&self, temp_c: f32, active: u8, home: u8) -> f32 {
        if temp_c >= 15.5 {
            return 0.0;
        }
        let setpoint = match (self.heating, active, home) {
            (Heating::HeatPump, ..) => self.setpoint_c - 0.5,
            (_, a, _) if a > 0 => self.setpoint_c,
            (_, _, h) if h > 0 => self.setpoint_c - 3.0,
            _ => self.setpoint_c - 4.0,
        };
        let gains = 150.0 + 80.0 * f32::from(home);
        (self.ua_w_per_k * (setpoint - temp_c) - gains).max(0.0)
    }

    fn fill_minutes(
        &mut self,
        ctx: &DayContext<'_>,
        active: &[u8; 144],
        home: &[u8; 144],
        out: &mut [f32],
    ) {
        let ghi = &ctx.weather.ghi;
        let inv_thr = 1.0 / self.light_threshold;
        let pv_w_per_ghi = self.pv_kwp * self.pv_factor;
        let pv_cap = self.pv_kwp * 950.0;
        for slot in 0..144 {
            let (a, h) = (active[slot], home[slot]);
            let occupancy_light = if a > 0 {
                (0.25 + 0.75 * (1.0 - 0.55f32.powi(i32::from(a))))
                    * self.rng.random_range(0.6f32..1.2)
            } else if h > 0 {
                0.02
            } else {
                self.away_light
            };
            let light_w = self.light_w * occupancy_light;
            let heat = self.heat_w(ctx.weather.temp_c[slot], a, h);
            // Heating as (watts while on, minutes on within the slot).
            let (heat_on_w, heat_minutes) = match self.heating {
                // The pump and controls run while the boiler fires, for a share of the slot
                // that grows with the heat demand.
                Heating::Boiler => (
                    75.0,
                    ((heat / BOILER_FULL_W).min(1.0) * 10.0).round() as u32,
                ),
                Heating::Resistive => {
                    let duty = (heat / self.heater_w).min(1.0);
                    (
                        self.heater_w / self.heat_units as f32,
                        (duty * 10.0).round() as u32,
                    )
                }
                Heating::HeatPump => {
                    let t = ctx.weather.temp_c[slot];
                    let cop = (2.9 + 0.08 * t).clamp(1.8, 4.8);
                    let max_el = self.heater_w / 2.6;
                    let el = (heat / cop).min(max_el);
                    let min_el = 0.35 * max_el;
                    if el >= min_el || el == 0.0 {
                        (el, 10)
                    } else {
                        (min_el, (el / min_el * 10.0).round() as u32)
                    }
                }
            };
            let base = self.standby_w + light_w;
            // Each heater keeps its duty on its own phase, spread over the slot; worked out once
            // a slot so a minute costs one addition.
            let mut heat_at = [0f32; 10];
            if heat_minutes > 0 {
                for u in 0..self.heat_units {
                    let phase = self.heat_phase + u * 10 / self.heat_units;
                    for (k, h) in (0u32..).zip(heat_at.iter_mut()) {
                        if (k + phase) % 10 < heat_minutes {
                            *h += heat_on_w;
                        }
                    }
                }
            }
            for k in 0..10u32 {
                let m = slot * 10 + k as usize;
                let mut w = base + self.ring[m];
                if let Some(c) = self.ev_charge
                    && (c.start..c.end).contains(&(m as i32))
                {
                    w += c.watts;
                }
                for c in &self.cold {
                    if (m as u32 + c.phase) % c.period < c.on {
                        w += c.watts;
                    }
                }
                if light_w > 0.0 {
                    let dark = (1.0 - ghi[m] * inv_thr).clamp(0.0, 1.0);
                    w += light_w * (dark - 1.0);
                }
                w += heat_at[k as usize];
                if pv_w_per_ghi > 0.0 {
                    w -= (ghi[m] * pv_w_per_ghi).min(pv_cap);
                }
                // No meter reads one exact value for long: four 16-bit uniforms of one draw
                // make the two zero-mean triangular noises.
                let r: u64 = self.noise.random();
                let u = |shift: u32| ((r >> shift) & 0xFFFF) as f32 / 65_535.0;
                out[m] = w * (1.0 + VOLTAGE_NOISE * (u(0) + u(16) - 1.0))
                    + STANDBY_NOISE_W * (u(32) + u(48) - 1.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::days_from_civil;
    use crate::weather::{WeatherConfig, WeatherGen};

    /// Simulates `days` days of `houses` houses from mid-winter and hands each house to `check`.
    fn simulate(
        config: &HouseholdConfig,
        houses: u64,
        days: i64,
        mut check: impl FnMut(&House, &[f32]),
    ) {
        let activity = ActivityModel::default();
        let start = days_from_civil(2026, 1, 5);
        for seed in 0..houses {
            let mut house = House::new(config, seed);
            let mut weather = WeatherGen::new(WeatherConfig::default());
            let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
            let mut loads = Vec::with_capacity(days as usize * MINUTES_PER_DAY);
            let mut out = vec![0.0; MINUTES_PER_DAY];
            for d in start..start + days {
                let day = SimDay::new(d);
                let weather = weather.day(day, &mut rng);
                let ctx = DayContext {
                    day,
                    weather: &weather,
                    activity: &activity,
                };
                house.simulate_day(&ctx, &mut out);
                loads.extend_from_slice(&out);
            }
            check(&house, &loads);
        }
    }

    #[test]
    fn no_appliance_starts_a_cycle_while_its_previous_one_runs() {
        let mut cycles = 0;
        simulate(&HouseholdConfig::default(), 40, 28, |house, _| {
            let mut by_appliance: Vec<Vec<(i64, i64)>> = vec![Vec::new(); house.appliances.len()];
            for &(i, start, end) in &house.cycles {
                by_appliance[i].push((start, end));
            }
            for (i, runs) in by_appliance.iter().enumerate() {
                for pair in runs.windows(2) {
                    assert!(
                        pair[1].0 >= pair[0].1,
                        "{} restarted at minute {} while running {:?}",
                        APPLIANCES[usize::from(house.appliances[i].kind)].name,
                        pair[1].0,
                        pair[0]
                    );
                }
                assert_eq!(runs.len() as u64, house.appliances[i].starts);
            }
            cycles += house.cycles.len();
        });
        // 40 houses × 28 days: thousands of cycles, so the check above is not vacuous.
        assert!(cycles > 5_000, "only {cycles} cycles");
    }

    #[test]
    fn a_gas_heated_house_stays_under_a_100_a_fuse_and_well_below_12_kw() {
        simulate(&HouseholdConfig::default(), 40, 28, |_, loads| {
            let peak = loads.iter().copied().fold(f32::MIN, f32::max);
            assert!(peak < 11_500.0, "peak {peak} W");
            assert!(peak > 2_000.0, "peak {peak} W: no appliance ever ran");
        });
    }

    #[test]
    fn electric_heating_switches_room_by_room_not_as_one_block() {
        // Up to 9 kW of heaters, each on its own thermostat: within two minutes a house rises by
        // at most the largest shower (9.8 kW) and one 2.5 kW room heater, 12.2 kW in 40 houses
        // × 28 days; with the heating as one 9 kW block it rose 18.4 kW.
        let config = HouseholdConfig {
            electric_heating_share: 1.0,
            ev_share: 0.0,
            ..HouseholdConfig::default()
        };
        let mut largest = 0f32;
        simulate(&config, 40, 28, |house, loads| {
            assert!(house.heat_units >= 2, "{} heaters", house.heat_units);
            for pair in loads.windows(3) {
                largest = largest.max(pair[2] - pair[0].min(pair[1]));
            }
        });
        assert!(
            largest > 8_000.0 && largest < 13_000.0,
            "largest rise {largest} W"
        );
    }

    #[test]
    fn no_clean_meter_holds_one_reading_as_long_as_the_stuck_meter_detector_waits() {
        // The stuck-meter detector's defaults: 20 minutes of one 10 W-quantised value from 400 W,
        // 90 minutes below, any run of exactly 0 W. EVs, heat pumps and PV hold steady loads.
        let config = HouseholdConfig {
            ev_share: 0.3,
            heat_pump_share: 0.3,
            pv_share: 0.3,
            ..HouseholdConfig::default()
        };
        let mut longest = (0usize, 0usize);
        simulate(&config, 40, 28, |_, loads| {
            let q: Vec<i64> = loads
                .iter()
                .map(|w| (w / 10.0).round() as i64 * 10)
                .collect();
            let mut run = 1;
            for (i, pair) in q.windows(2).enumerate() {
                run = if pair[1] == pair[0] { run + 1 } else { 1 };
                let v = q[i + 1];
                assert!(v != 0 || run < 20, "{run} minutes at 0 W");
                let slot = if v.abs() >= 400 {
                    &mut longest.0
                } else {
                    &mut longest.1
                };
                *slot = (*slot).max(run);
            }
        });
        assert!(
            longest.0 < 20 && longest.1 < 90,
            "longest runs {longest:?} min"
        );
    }
}
