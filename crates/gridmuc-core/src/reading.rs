//! One power reading as the bot sees it: value, time, sequence and quality, nothing about the house.

use crate::time::Timestamp;
use crate::units::Watts;
use serde::{Deserialize, Serialize};

/// A validated momentary power reading; constructing one through the codec guarantees it is finite and in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// Net power: positive import, negative export.
    pub power: Watts,
    /// When it was measured, already rounded to the reporting interval by the meter.
    pub at: Timestamp,
    /// Per-nickname sequence number (starts random), so the bot can drop duplicates.
    pub seqnr: u64,
    /// XEP-0323 quality flags as sent.
    pub quality: Quality,
}

/// XEP-0323 field quality flags, as a bit set so copying a reading stays cheap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quality(pub u32);

impl Quality {
    /// The XEP-0323 attribute names, in bit order.
    pub const NAMES: [&'static str; 11] = [
        "missing",
        "automaticEstimate",
        "manualEstimate",
        "manualReadout",
        "automaticReadout",
        "timeOffset",
        "warning",
        "error",
        "signed",
        "invoiced",
        "powerFailure",
    ];
    /// Value could not be read.
    pub const MISSING: Quality = Quality(1 << 0);
    /// Estimated by the device.
    pub const AUTOMATIC_ESTIMATE: Quality = Quality(1 << 1);
    /// Estimated by a person.
    pub const MANUAL_ESTIMATE: Quality = Quality(1 << 2);
    /// Read by a person.
    pub const MANUAL_READOUT: Quality = Quality(1 << 3);
    /// Read automatically: what meters normally send.
    pub const AUTOMATIC_READOUT: Quality = Quality(1 << 4);
    /// Timestamp was corrected.
    pub const TIME_OFFSET: Quality = Quality(1 << 5);
    /// Device reports a warning.
    pub const WARNING: Quality = Quality(1 << 6);
    /// Device reports the value is erroneous.
    pub const ERROR: Quality = Quality(1 << 7);
    /// Value is signed (e.g. billing grade).
    pub const SIGNED: Quality = Quality(1 << 8);
    /// Value has been invoiced.
    pub const INVOICED: Quality = Quality(1 << 9);
    /// Measured across a power failure.
    pub const POWER_FAILURE: Quality = Quality(1 << 10);

    /// True if every flag in `other` is set.
    pub fn contains(self, other: Quality) -> bool {
        self.0 & other.0 == other.0
    }

    /// Adds the flags of `other`.
    pub fn insert(&mut self, other: Quality) {
        self.0 |= other.0;
    }

    /// The flag for an XEP-0323 attribute name, if it is a quality flag.
    pub fn from_name(name: &str) -> Option<Quality> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Quality(1 << i))
    }

    /// Names of the set flags, in XEP order, for encoding.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
    }

    /// Readings flagged missing or erroneous carry no usable value.
    pub fn is_unusable(self) -> bool {
        self.0 & (Self::MISSING.0 | Self::ERROR.0) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_names_round_trip() {
        let mut q = Quality::AUTOMATIC_READOUT;
        q.insert(Quality::WARNING);
        let names: Vec<_> = q.names().collect();
        assert_eq!(names, ["automaticReadout", "warning"]);
        let mut back = Quality::default();
        for n in names {
            back.insert(Quality::from_name(n).unwrap());
        }
        assert_eq!(back, q);
        assert!(!q.is_unusable());
        assert!(Quality::ERROR.is_unusable());
        assert_eq!(Quality::from_name("momentary"), None);
    }
}
