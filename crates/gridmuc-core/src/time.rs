//! Time as plain numbers: the core never reads a clock, callers pass `now` in.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A span of time in milliseconds; signed so differences of timestamps need no special case.
pub type Millis = i64;

/// One second, for readable config.
pub const SECOND: Millis = 1_000;
/// One minute, the simulator's default resolution.
pub const MINUTE: Millis = 60 * SECOND;
/// One hour.
pub const HOUR: Millis = 60 * MINUTE;
/// One day.
pub const DAY: Millis = 24 * HOUR;

/// Durations in config files, written the way people write them: `"60s"`, `"5m"`,
/// `"1h 30m"`, `"250ms"` (parsed by `humantime`), so the meter's and the bot's settings read
/// alike; a bare number still means the field's historical unit, so older files keep working.
pub mod span {
    use super::Millis;
    use serde::Deserialize;
    use std::time::Duration;

    /// A duration as written: text with units, or a bare number.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(f64),
        Text(String),
    }

    /// The duration in milliseconds; `ms_per_number` says what a bare number counts.
    fn parse<'de, D: serde::Deserializer<'de>>(
        d: D,
        ms_per_number: f64,
    ) -> Result<Millis, D::Error> {
        use serde::de::Error;
        let ms =
            match Written::deserialize(d)? {
                Written::Number(n) => n * ms_per_number,
                Written::Text(t) => humantime::parse_duration(&t)
                    .map_err(|e| {
                        D::Error::custom(format!(
                            "{t:?} is not a duration ({e}); write e.g. \"60s\", \"5m\" or \"250ms\""
                        ))
                    })?
                    .as_secs_f64()
                    * 1_000.0,
            };
        if !(ms.is_finite() && (0.0..=Millis::MAX as f64).contains(&ms)) {
            return Err(D::Error::custom(format!(
                "{ms} ms is not a usable duration"
            )));
        }
        Ok(ms.round() as Millis)
    }

    /// Bare numbers are milliseconds (the aggregator's fields).
    pub mod ms {
        use super::Millis;

        /// Reads `"60s"` or `60000`.
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
            super::parse(d, 1.0)
        }

        /// Writes milliseconds, which every reader of these fields accepts.
        pub fn serialize<S: serde::Serializer>(v: &Millis, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_i64(*v)
        }
    }

    /// Bare numbers are (fractional) seconds (the agents' and accounts' fields).
    pub mod secs {
        use super::Duration;

        /// Reads `"15s"`, `15` or `0.5`.
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            let ms = super::parse(d, 1_000.0)?;
            Ok(Duration::from_millis(ms.unsigned_abs()))
        }
    }
}

/// Milliseconds since the Unix epoch (UTC): cheap to compare and to bucket into intervals.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Start of the interval of length `interval` that contains this instant, so meters and bot agree on buckets.
    pub fn floor_to(self, interval: Millis) -> Timestamp {
        Timestamp(self.0.div_euclid(interval.max(1)) * interval.max(1))
    }

    /// Rounds to the nearest interval boundary, which is how meters hide their exact send time.
    pub fn round_to(self, interval: Millis) -> Timestamp {
        let i = interval.max(1);
        Timestamp((self.0 + i / 2).div_euclid(i) * i)
    }

    /// This instant shifted by `d` milliseconds.
    pub fn plus(self, d: Millis) -> Timestamp {
        Timestamp(self.0 + d)
    }

    /// Milliseconds from `earlier` to `self`.
    pub fn since(self, earlier: Timestamp) -> Millis {
        self.0 - earlier.0
    }

    /// XEP-0082 dateTime in UTC with a `Z`, whole seconds unless milliseconds are set.
    pub fn to_rfc3339(self) -> String {
        match Utc.timestamp_millis_opt(self.0).single() {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => String::from("invalid"),
        }
    }

    /// Parses an XEP-0082 dateTime; a missing zone is read as UTC, as XEP-0323's examples need.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Some(Timestamp(dt.timestamp_millis()));
        }
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|n| Timestamp(n.and_utc().timestamp_millis()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-11-24T20:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-24T20:00:00Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-24T21:00:00+01:00"),
            Some(t)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2013-03-07T16:24:30").map(|t| t.to_rfc3339()),
            Some("2013-03-07T16:24:30Z".into())
        );
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn buckets() {
        assert_eq!(Timestamp(61_999).floor_to(MINUTE), Timestamp(60_000));
        assert_eq!(Timestamp(-1).floor_to(MINUTE), Timestamp(-60_000));
        assert_eq!(Timestamp(90_000).round_to(MINUTE), Timestamp(120_000));
        assert_eq!(Timestamp(89_999).round_to(MINUTE), Timestamp(60_000));
    }

    #[test]
    fn durations_are_read_with_units_or_in_the_fields_own_unit() {
        use serde::de::IntoDeserializer;
        use serde::de::value::Error;
        let ms = |v: &str| {
            span::ms::deserialize(v.into_deserializer()).map_err(|e: Error| e.to_string())
        };
        let ms_n =
            |v: f64| span::ms::deserialize(v.into_deserializer()).map_err(|e: Error| e.to_string());
        let secs = |v: &str| {
            span::secs::deserialize(v.into_deserializer()).map_err(|e: Error| e.to_string())
        };
        let secs_n = |v: i64| {
            span::secs::deserialize(v.into_deserializer()).map_err(|e: Error| e.to_string())
        };
        assert_eq!(ms("60s"), Ok(60_000));
        assert_eq!(ms("1h 30m"), Ok(90 * MINUTE));
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms_n(60_000.0), Ok(60_000));
        assert_eq!(secs("60s"), Ok(std::time::Duration::from_secs(60)));
        assert_eq!(secs_n(15), Ok(std::time::Duration::from_secs(15)));
        assert!(ms("soon").is_err_and(|e| e.contains("\"soon\" is not a duration")));
        assert!(ms_n(-5.0).is_err());
        assert!(ms_n(f64::NAN).is_err());
    }
}
