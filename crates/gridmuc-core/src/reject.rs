//! Why a reading was not counted: every drop has a typed reason so operators can see it.

use serde::Serialize;
use std::fmt;
use thiserror::Error;

/// A reason a stanza or reading was refused; `kind()` indexes [`RejectionCounts`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Stanza bigger than the configured limit (4 KiB by default): cheap DoS guard.
    #[error("stanza is {size} bytes, limit {limit}")]
    Oversize {
        /// Size seen (or estimated) in bytes.
        size: usize,
        /// Configured limit in bytes.
        limit: usize,
    },
    /// Bytes that are not well-formed XML.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// Elements nested deeper than a reading ever needs.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// Message has no `urn:xmpp:iot:sensordata` payload, or a wrong namespace on a child.
    #[error("wrong or missing namespace: {0}")]
    WrongNamespace(String),
    /// A required element or attribute is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An attribute is present but unparseable.
    #[error("bad value for {0}")]
    BadAttribute(&'static str),
    /// The sensor-data payload holds no `Power` field.
    #[error("no power field")]
    NoPowerField,
    /// More than one power field (or more than one payload, node or timestamp group that could
    /// carry one): ambiguous, so refused rather than guessed.
    #[error("more than one power field")]
    AmbiguousPowerField,
    /// Unit other than W, kW or MW.
    #[error("unsupported unit {0:?}")]
    BadUnit(String),
    /// NaN is not a measurement.
    #[error("value is NaN")]
    NotANumber,
    /// Infinities are not measurements.
    #[error("value is infinite")]
    Infinite,
    /// Negative consumption in a field that does not say export.
    #[error("negative consumption")]
    Negative,
    /// Beyond the configured physical limit of one house (25 kW by default).
    #[error("{watts} W beyond physical limit {limit} W")]
    OverLimit {
        /// Value seen, in watts (saturated).
        watts: i64,
        /// Configured limit in watts.
        limit: i64,
    },
    /// The meter itself flagged the value as missing or erroneous.
    #[error("flagged unusable by the meter")]
    Unusable,
    /// Same nickname and sequence number (or interval) seen before.
    #[error("duplicate reading")]
    Duplicate,
    /// The reading's interval has already been closed and reported.
    #[error("reading for a closed interval")]
    Late,
    /// Timestamp too far ahead of the bot's clock.
    #[error("timestamp in the future")]
    Future,
    /// Nickname sent more readings than its rate allows.
    #[error("rate limited")]
    RateLimited,
}

/// Every rejection kind, in a fixed order, for counters and metrics labels.
pub const REJECTION_KINDS: [&str; 18] = [
    "oversize",
    "malformed",
    "too_deep",
    "wrong_namespace",
    "missing",
    "bad_attribute",
    "no_power_field",
    "ambiguous_power_field",
    "bad_unit",
    "nan",
    "infinite",
    "negative",
    "over_limit",
    "unusable",
    "duplicate",
    "late",
    "future",
    "rate_limited",
];

impl Rejection {
    /// Index into [`REJECTION_KINDS`].
    pub fn index(&self) -> usize {
        match self {
            Rejection::Oversize { .. } => 0,
            Rejection::Malformed(_) => 1,
            Rejection::TooDeep(_) => 2,
            Rejection::WrongNamespace(_) => 3,
            Rejection::Missing(_) => 4,
            Rejection::BadAttribute(_) => 5,
            Rejection::NoPowerField => 6,
            Rejection::AmbiguousPowerField => 7,
            Rejection::BadUnit(_) => 8,
            Rejection::NotANumber => 9,
            Rejection::Infinite => 10,
            Rejection::Negative => 11,
            Rejection::OverLimit { .. } => 12,
            Rejection::Unusable => 13,
            Rejection::Duplicate => 14,
            Rejection::Late => 15,
            Rejection::Future => 16,
            Rejection::RateLimited => 17,
        }
    }

    /// Stable snake_case name, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        REJECTION_KINDS[self.index()]
    }
}

/// Counts of rejections by kind, so nothing is dropped silently.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RejectionCounts([u64; REJECTION_KINDS.len()]);

impl RejectionCounts {
    /// Counts one rejection.
    pub fn record(&mut self, r: &Rejection) {
        self.0[r.index()] += 1;
    }

    /// How many of one kind (by [`Rejection::kind`] name); 0 for unknown names.
    pub fn get(&self, kind: &str) -> u64 {
        REJECTION_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.0[i])
    }

    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts as `(kind, count)`, for summaries and metrics.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REJECTION_KINDS
            .iter()
            .zip(self.0.iter())
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| (*k, *c))
    }
}

impl fmt::Display for RejectionCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, c) in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "{k}={c}")?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let mut c = RejectionCounts::default();
        c.record(&Rejection::NotANumber);
        c.record(&Rejection::NotANumber);
        c.record(&Rejection::Late);
        assert_eq!(c.get("nan"), 2);
        assert_eq!(c.get("late"), 1);
        assert_eq!(c.total(), 3);
        assert_eq!(c.to_string(), "nan=2, late=1");
    }
}
