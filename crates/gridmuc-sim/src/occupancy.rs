//! Occupancy as a time-of-day Markov chain per resident, in 10-minute steps (as in CREST).
//!
//! States: away, asleep, at home and active. For every hour there is a target probability of each
//! state (weekday-worker, weekday-at-home and weekend variants); each step a resident keeps their
//! state with a base persistence, and leaves it early when the target share of that state is
//! falling (everyone gets up in the morning). The chain's marginals therefore follow the targets
//! while dwell times stay realistic (about an hour at the base rate).

use rand::Rng;

/// What one resident is doing in a 10-minute slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Out of the house: no appliance use.
    Away = 0,
    /// At home asleep: only background loads and heating.
    Asleep = 1,
    /// At home and awake: drives appliance use and lighting.
    Active = 2,
}

/// Which hourly target table a resident follows today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayType {
    /// Out at work or school on weekdays.
    WeekdayWorker,
    /// At home most weekdays (retired, home working, caring).
    WeekdayHome,
    /// Saturday or Sunday.
    Weekend,
}

/// Hourly (away, asleep, active) targets; rows sum to 100.
const WORKER: [[u8; 3]; 24] = [
    [2, 95, 3],
    [2, 96, 2],
    [2, 97, 1],
    [2, 97, 1],
    [2, 97, 1],
    [3, 94, 3],
    [3, 62, 35],
    [12, 20, 68],
    [60, 5, 35],
    [84, 2, 14],
    [85, 2, 13],
    [85, 2, 13],
    [83, 2, 15],
    [84, 2, 14],
    [84, 2, 14],
    [78, 2, 20],
    [66, 2, 32],
    [44, 2, 54],
    [24, 2, 74],
    [16, 3, 81],
    [14, 5, 81],
    [12, 14, 74],
    [6, 48, 46],
    [3, 78, 19],
];
const HOME: [[u8; 3]; 24] = [
    [1, 96, 3],
    [1, 97, 2],
    [1, 98, 1],
    [1, 98, 1],
    [1, 98, 1],
    [1, 96, 3],
    [1, 80, 19],
    [3, 45, 52],
    [10, 18, 72],
    [22, 6, 72],
    [30, 3, 67],
    [30, 3, 67],
    [24, 3, 73],
    [28, 6, 66],
    [30, 6, 64],
    [26, 4, 70],
    [20, 3, 77],
    [14, 3, 83],
    [10, 3, 87],
    [9, 3, 88],
    [8, 6, 86],
    [6, 16, 78],
    [3, 50, 47],
    [2, 80, 18],
];
const WEEKEND: [[u8; 3]; 24] = [
    [6, 90, 4],
    [4, 94, 2],
    [2, 97, 1],
    [2, 97, 1],
    [2, 97, 1],
    [2, 97, 1],
    [2, 92, 6],
    [3, 74, 23],
    [6, 45, 49],
    [14, 20, 66],
    [28, 7, 65],
    [38, 3, 59],
    [38, 3, 59],
    [40, 3, 57],
    [42, 3, 55],
    [40, 3, 57],
    [36, 3, 61],
    [30, 3, 67],
    [24, 3, 73],
    [22, 3, 75],
    [20, 5, 75],
    [18, 12, 70],
    [12, 40, 48],
    [8, 68, 24],
];

/// Base probability per 10-minute step of re-drawing one's state.
const BASE_LEAVE: f32 = 0.12;

fn table(day: DayType) -> &'static [[u8; 3]; 24] {
    match day {
        DayType::WeekdayWorker => &WORKER,
        DayType::WeekdayHome => &HOME,
        DayType::Weekend => &WEEKEND,
    }
}

/// Target probabilities of (away, asleep, active) at `slot` shifted by the resident's `offset_slots`.
pub fn target(day: DayType, slot: i32, offset_slots: i32) -> [f32; 3] {
    let hour = (slot - offset_slots).div_euclid(6).rem_euclid(24) as usize;
    let row = table(day)[hour];
    [
        f32::from(row[0]) / 100.0,
        f32::from(row[1]) / 100.0,
        f32::from(row[2]) / 100.0,
    ]
}

/// One resident's chain: current state and personal shift of the daily rhythm.
#[derive(Clone, Debug)]
pub struct Resident {
    /// Current state.
    pub state: State,
    /// Shift of the daily rhythm in 10-minute slots (early birds negative).
    pub offset_slots: i32,
    /// Works away from home on weekdays.
    pub worker: bool,
}

impl Resident {
    /// Which target table applies on a day.
    pub fn day_type(&self, weekend: bool) -> DayType {
        match (weekend, self.worker) {
            (true, _) => DayType::Weekend,
            (false, true) => DayType::WeekdayWorker,
            (false, false) => DayType::WeekdayHome,
        }
    }

    /// Advances one 10-minute step into `slot`.
    pub fn step<R: Rng>(&mut self, day: DayType, slot: i32, rng: &mut R) -> State {
        let now = target(day, slot, self.offset_slots);
        let before = target(day, slot - 1, self.offset_slots);
        let s = self.state as usize;
        let falling = if before[s] > 0.0 {
            ((before[s] - now[s]) / before[s]).max(0.0)
        } else {
            1.0
        };
        let leave = BASE_LEAVE + (1.0 - BASE_LEAVE) * falling;
        if rng.random::<f32>() < leave {
            let u: f32 = rng.random();
            self.state = if u < now[0] {
                State::Away
            } else if u < now[0] + now[1] {
                State::Asleep
            } else {
                State::Active
            };
        }
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn tables_sum_to_one_hundred() {
        for t in [&WORKER, &HOME, &WEEKEND] {
            for row in t.iter() {
                assert_eq!(row.iter().map(|v| u32::from(*v)).sum::<u32>(), 100);
            }
        }
    }

    #[test]
    fn marginals_follow_targets() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut active_at = [0u32; 144];
        let mut r = Resident {
            state: State::Asleep,
            offset_slots: 0,
            worker: true,
        };
        let days = 400;
        for _ in 0..days {
            for slot in 0..144 {
                if r.step(DayType::WeekdayWorker, slot, &mut rng) == State::Active {
                    active_at[slot as usize] += 1;
                }
            }
        }
        let share = |slot: usize| active_at[slot] as f32 / days as f32;
        assert!(share(3 * 6) < 0.1, "asleep at 3am");
        assert!(share(11 * 6) < 0.3, "away at 11am");
        assert!(
            share(19 * 6 + 3) > 0.6,
            "home in the evening: {}",
            share(19 * 6 + 3)
        );
    }
}
