//! Alerts the bot raises: typed for programs, with a body for people.

use crate::nick::RoomNick;
use crate::time::Timestamp;
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of trouble; one alert stream per kind and subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// Neighbourhood total above the transformer rating.
    Overload,
    /// Neighbourhood total far above its own recent baseline.
    AggregateSpike,
    /// One anonymous occupant far above its peers in the same interval.
    HouseSpike,
    /// One nickname repeating the very same non-zero value for long: a frozen meter.
    StuckMeter,
    /// One nickname reporting exactly 0 W for long: a dead sensor or a house off at the main.
    ZeroMeter,
    /// How many nicknames are stuck or at zero now, and the load they may hide (to the room).
    SuspectMeters,
}

impl AlertKind {
    /// Every kind, in exposition order, for metrics and round-trip tests.
    pub const ALL: [AlertKind; 6] = [
        AlertKind::Overload,
        AlertKind::AggregateSpike,
        AlertKind::HouseSpike,
        AlertKind::StuckMeter,
        AlertKind::ZeroMeter,
        AlertKind::SuspectMeters,
    ];

    /// Wire name used in `<alert kind='…'/>`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Overload => "overload",
            AlertKind::AggregateSpike => "aggregate-spike",
            AlertKind::HouseSpike => "house-spike",
            AlertKind::StuckMeter => "stuck-meter",
            AlertKind::ZeroMeter => "zero-meter",
            AlertKind::SuspectMeters => "suspect-meters",
        }
    }

    /// Inverse of [`AlertKind::as_str`].
    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How urgent; ordered so escalation is a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, no action needed.
    Info,
    /// Approaching a limit.
    Warning,
    /// Limit exceeded.
    Critical,
}

impl Severity {
    /// Wire name used in `<alert severity='…'/>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Inverse of [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Whether an alert opens an event or says it is over, so a long event is two messages, not a storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition started (or escalated).
    Raised,
    /// The condition has been clear long enough.
    Cleared,
}

impl AlertState {
    /// Wire name used in `<alert state='…'/>`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Raised => "raised",
            AlertState::Cleared => "cleared",
        }
    }

    /// Inverse of [`AlertState::as_str`].
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "raised" => Some(AlertState::Raised),
            "cleared" => Some(AlertState::Cleared),
            _ => None,
        }
    }
}

/// One alert as emitted by the alert policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// How bad.
    pub severity: Severity,
    /// Opening or closing the event.
    pub state: AlertState,
    /// Start of the interval that triggered it.
    pub at: Timestamp,
    /// The offending occupant, for per-house alerts only; never a real JID.
    pub nick: Option<RoomNick>,
    /// Observed value (total for neighbourhood alerts, the house's reading otherwise).
    pub value: Watts,
    /// The threshold or baseline it was compared with.
    pub threshold: Watts,
}

impl Alert {
    /// One line for a chat client, e.g. `CRITICAL overload: 412.30 kW > rating 400.00 kW at …`.
    pub fn body(&self) -> String {
        let sev = self.severity.as_str().to_uppercase();
        let who = self
            .nick
            .as_ref()
            .map(|n| format!(" by {n}"))
            .unwrap_or_default();
        match (self.state, self.kind) {
            (AlertState::Cleared, k) => format!(
                "cleared {}{who}: quiet since {} (last seen {} against {})",
                k.as_str(),
                self.at,
                self.value,
                self.threshold
            ),
            (AlertState::Raised, AlertKind::Overload) if self.severity == Severity::Critical => {
                format!(
                    "{sev} overload: transformer hot spot past its limit; neighbourhood load {} against a rating of {} at {}",
                    self.value, self.threshold, self.at
                )
            }
            (AlertState::Raised, AlertKind::Overload) => format!(
                "{sev} overload: transformer hot spot at or heading for its rated-load temperature; neighbourhood load {} against a rating of {} at {}",
                self.value, self.threshold, self.at
            ),
            (AlertState::Raised, AlertKind::AggregateSpike) => format!(
                "{sev} aggregate-spike: neighbourhood load {} vs baseline {} at {}",
                self.value, self.threshold, self.at
            ),
            (AlertState::Raised, AlertKind::HouseSpike) => format!(
                "{sev} house-spike{who}: {} while peers' typical is {} at {}",
                self.value, self.threshold, self.at
            ),
            (AlertState::Raised, AlertKind::StuckMeter) => format!(
                "{sev} stuck-meter{who}: has reported the very same {} for longer than a live meter does (a typical meter reads {}); please check your meter, at {}",
                self.value, self.threshold, self.at
            ),
            (AlertState::Raised, AlertKind::ZeroMeter) => format!(
                "{sev} zero-meter{who}: has reported exactly 0 W for longer than a live meter does (a typical meter reads {}); please check your meter, at {}",
                self.threshold, self.at
            ),
            (AlertState::Raised, AlertKind::SuspectMeters) => format!(
                "{sev} suspect-meters: {} meters stuck or at 0 W may hide about {} of load ({} each, a typical reading) at {}",
                self.suspect_count(),
                self.value,
                self.threshold,
                self.at
            ),
        }
    }
}

impl Alert {
    /// For a `suspect-meters` alert, how many meters it counts: its load is a typical reading per meter.
    pub fn suspect_count(&self) -> i64 {
        if self.threshold.0 > 0 {
            self.value.0 / self.threshold.0
        } else {
            0
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_as_sentences() {
        let mut a = Alert {
            kind: AlertKind::HouseSpike,
            severity: Severity::Warning,
            state: AlertState::Raised,
            at: Timestamp(0),
            nick: Some(RoomNick::new("plucky-vole-6868").unwrap()),
            value: Watts(15_370),
            threshold: Watts(420),
        };
        assert_eq!(
            a.body(),
            "WARNING house-spike by plucky-vole-6868: 15.37 kW while peers' typical is 0.42 kW at 1970-01-01T00:00:00Z"
        );
        a.state = AlertState::Cleared;
        assert_eq!(
            a.body(),
            "cleared house-spike by plucky-vole-6868: quiet since 1970-01-01T00:00:00Z (last seen 15.37 kW against 0.42 kW)"
        );
        assert_eq!(AlertKind::parse(a.kind.as_str()), Some(a.kind));
        assert_eq!(Severity::parse("critical"), Some(Severity::Critical));
    }
}
