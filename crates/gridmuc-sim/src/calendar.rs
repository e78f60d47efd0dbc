//! Civil-date arithmetic on the virtual clock, so the simulator needs no time library or clock.

use gridmuc_core::Timestamp;
use gridmuc_core::time::DAY;

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm), for scenario start dates.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day since 1970-01-01, inverse of [`days_from_civil`],
/// so reports can print dates without a time library.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses `YYYY-MM-DD` into days since the epoch; `None` for anything else so scenario errors are typed.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// One simulated day as the household model needs it: which day of the year and whether it is a weekend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimDay {
    /// Days since the epoch (UTC midnight of the local day).
    pub epoch_day: i64,
    /// Day of the year, 0-based, for the seasonal weather and sun models.
    pub day_of_year: u32,
    /// Saturday or Sunday: occupancy follows the weekend chain.
    pub weekend: bool,
}

impl SimDay {
    /// Calendar facts for `epoch_day`.
    pub fn new(epoch_day: i64) -> SimDay {
        // 1970-01-01 was a Thursday: weekday 0 = Monday.
        let weekday = (epoch_day + 3).rem_euclid(7);
        let year_start = {
            // Find the year containing epoch_day by stepping from an estimate.
            let mut y = 1970 + epoch_day.div_euclid(365);
            while days_from_civil(y, 1, 1) > epoch_day {
                y -= 1;
            }
            while days_from_civil(y + 1, 1, 1) <= epoch_day {
                y += 1;
            }
            days_from_civil(y, 1, 1)
        };
        SimDay {
            epoch_day,
            day_of_year: u32::try_from(epoch_day - year_start).unwrap_or(0),
            weekend: weekday >= 5,
        }
    }

    /// Timestamp of this day's midnight.
    pub fn midnight(self) -> Timestamp {
        Timestamp(self.epoch_day * DAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(parse_date("2026-11-24"), Some(20_781));
        assert_eq!(parse_date("2026-13-01"), None);
        for (y, m, d) in [(1970, 1, 1), (2026, 11, 2), (2000, 2, 29), (1969, 12, 31)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        let d = SimDay::new(20_781); // Tuesday 24 Nov 2026
        assert!(!d.weekend);
        assert_eq!(d.day_of_year, 327);
        assert!(SimDay::new(20_785).weekend); // Saturday 28 Nov 2026
    }
}
