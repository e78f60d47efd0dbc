//! Power as integer watts, so sums are exact and masking can use modular arithmetic later.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub};

/// Signed power in whole watts: positive is consumption (import), negative is export (e.g. PV).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Watts(pub i64);

impl Watts {
    /// Zero power, for sums that start empty.
    pub const ZERO: Watts = Watts(0);

    /// Converts kilowatts to watts, rounding to the nearest watt (config and sim speak kW).
    pub fn from_kw(kw: f64) -> Watts {
        Watts((kw * 1000.0).round() as i64)
    }

    /// Power in kilowatts, for people and charts.
    pub fn kw(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Power in watts as a float, for statistics.
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }

    /// Rounds to the nearest multiple of `step` watts so fine-grained values cannot fingerprint a house.
    pub fn quantise(self, step: u32) -> Watts {
        if step <= 1 {
            return self;
        }
        let s = i64::from(step);
        let half = s / 2;
        let q = if self.0 >= 0 {
            (self.0 + half) / s
        } else {
            -((-self.0 + half) / s)
        };
        Watts(q * s)
    }

    /// Absolute magnitude, for limits that apply to both import and export.
    pub fn abs(self) -> Watts {
        Watts(self.0.abs())
    }
}

impl fmt::Display for Watts {
    /// Human text for message bodies: `1.84 kW`, `-0.35 kW`, `12.30 MW` for large sums.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.abs() >= 10_000_000 {
            write!(f, "{:.2} MW", self.0 as f64 / 1e6)
        } else {
            write!(f, "{:.2} kW", self.kw())
        }
    }
}

impl Add for Watts {
    type Output = Watts;
    fn add(self, rhs: Watts) -> Watts {
        Watts(self.0 + rhs.0)
    }
}

impl AddAssign for Watts {
    fn add_assign(&mut self, rhs: Watts) {
        self.0 += rhs.0;
    }
}

impl Sub for Watts {
    type Output = Watts;
    fn sub(self, rhs: Watts) -> Watts {
        Watts(self.0 - rhs.0)
    }
}

impl Neg for Watts {
    type Output = Watts;
    fn neg(self) -> Watts {
        Watts(-self.0)
    }
}

impl std::iter::Sum for Watts {
    fn sum<I: Iterator<Item = Watts>>(iter: I) -> Watts {
        iter.fold(Watts::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantise_rounds_half_away_from_zero() {
        assert_eq!(Watts(1844).quantise(10), Watts(1840));
        assert_eq!(Watts(1845).quantise(10), Watts(1850));
        assert_eq!(Watts(-1845).quantise(10), Watts(-1850));
        assert_eq!(Watts(7).quantise(1), Watts(7));
    }

    #[test]
    fn display_is_human() {
        assert_eq!(Watts(1840).to_string(), "1.84 kW");
        assert_eq!(Watts(-350).to_string(), "-0.35 kW");
        assert_eq!(Watts(12_300_000).to_string(), "12.30 MW");
    }
}
