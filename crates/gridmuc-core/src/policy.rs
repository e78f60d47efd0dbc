//! Alert policy: turns per-interval findings into few alerts (one per event, escalations, a clear).

use crate::alert::{Alert, AlertKind, AlertState, Severity};
use crate::detect::Finding;
use crate::nick::RoomNick;
use crate::time::{Millis, Timestamp};
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Alert-policy settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Consecutive quiet intervals before an event is declared over.
    pub clear_after: u32,
    /// After an event clears, a new event of the same kind and subject within this time is merged silently.
    pub cooldown: Millis,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            clear_after: 3,
            cooldown: 10 * 60_000,
        }
    }
}

/// One event stream: a detector kind and, for per-house alerts, the nickname.
type Key = (AlertKind, Option<RoomNick>);

#[derive(Clone, Debug)]
struct Track {
    open: bool,
    announced: bool,
    severity: Severity,
    quiet: u32,
    cleared_at: Option<Timestamp>,
    value: Watts,
    threshold: Watts,
}

/// Dedup, escalation and cooldown across intervals, so one long event is one alert and not a storm.
#[derive(Clone, Debug, Default)]
pub struct AlertPolicy {
    config: PolicyConfig,
    tracks: HashMap<Key, Track>,
}

impl AlertPolicy {
    /// A policy with no open events.
    pub fn new(config: PolicyConfig) -> Self {
        AlertPolicy {
            config,
            tracks: HashMap::new(),
        }
    }

    /// Takes every finding of the interval starting `at` (and, implicitly, the absence of the others) and pushes alerts.
    pub fn evaluate(&mut self, at: Timestamp, findings: Vec<Finding>, out: &mut Vec<Alert>) {
        let cooldown = self.config.cooldown;
        let mut seen: Vec<Key> = Vec::with_capacity(findings.len());
        for f in findings {
            let key: Key = (f.kind, f.nick.clone());
            let track = self.tracks.entry(key.clone()).or_insert(Track {
                open: false,
                announced: false,
                severity: f.severity,
                quiet: 0,
                cleared_at: None,
                value: f.value,
                threshold: f.threshold,
            });
            let announce = if track.open {
                f.severity > track.severity
            } else {
                let in_cooldown = track.cleared_at.is_some_and(|c| at.since(c) < cooldown);
                track.open = true;
                !in_cooldown || f.severity > track.severity
            };
            track.quiet = 0;
            // An open event keeps its worst severity; a newly announced one starts from the finding's.
            track.severity = if announce {
                f.severity
            } else {
                track.severity.max(f.severity)
            };
            track.value = f.value;
            track.threshold = f.threshold;
            if announce {
                track.announced = true;
                out.push(alert(&key, track, AlertState::Raised, at));
            }
            seen.push(key);
        }
        let clear_after = self.config.clear_after.max(1);
        for (key, track) in self.tracks.iter_mut() {
            if !track.open || seen.contains(key) {
                continue;
            }
            track.quiet += 1;
            if track.quiet >= clear_after {
                track.open = false;
                track.cleared_at = Some(at);
                if track.announced {
                    out.push(alert(key, track, AlertState::Cleared, at));
                }
                track.announced = false;
            }
        }
        // Forget streams that are closed and out of cooldown: rotated nicknames must not accumulate.
        self.tracks
            .retain(|_, t| t.open || t.cleared_at.is_some_and(|c| at.since(c) < cooldown));
    }

    /// Number of event streams currently remembered (open or cooling down).
    pub fn tracked(&self) -> usize {
        self.tracks.len()
    }
}

fn alert(key: &Key, t: &Track, state: AlertState, at: Timestamp) -> Alert {
    Alert {
        kind: key.0,
        severity: t.severity,
        state,
        at,
        nick: key.1.clone(),
        value: t.value,
        threshold: t.threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overload(sev: Severity) -> Finding {
        Finding {
            kind: AlertKind::Overload,
            severity: sev,
            nick: None,
            value: Watts(500),
            threshold: Watts(400),
        }
    }

    fn run(policy: &mut AlertPolicy, steps: &[Option<Severity>]) -> Vec<Alert> {
        let mut out = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let f = s.map(overload).into_iter().collect();
            policy.evaluate(Timestamp(i as i64 * 60_000), f, &mut out);
        }
        out
    }

    #[test]
    fn long_event_is_one_alert_then_one_clear() {
        let mut p = AlertPolicy::new(PolicyConfig::default());
        let mut steps = vec![Some(Severity::Critical); 120];
        steps.extend([None; 5]);
        let out = run(&mut p, &steps);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].state, AlertState::Raised);
        assert_eq!(out[1].state, AlertState::Cleared);
        assert_eq!(out[1].at, Timestamp(122 * 60_000));
    }

    #[test]
    fn short_gaps_do_not_split_an_event() {
        let mut p = AlertPolicy::new(PolicyConfig::default());
        let c = Some(Severity::Critical);
        let out = run(&mut p, &[c, None, c, None, None, c, c]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn escalation_is_announced_once() {
        let mut p = AlertPolicy::new(PolicyConfig::default());
        let (w, c) = (Some(Severity::Warning), Some(Severity::Critical));
        let out = run(&mut p, &[w, w, c, c, w, c]);
        let sev: Vec<_> = out.iter().map(|a| a.severity).collect();
        assert_eq!(sev, [Severity::Warning, Severity::Critical]);
    }

    #[test]
    fn cooldown_merges_a_quick_return() {
        let mut p = AlertPolicy::new(PolicyConfig {
            clear_after: 1,
            cooldown: 5 * 60_000,
        });
        let c = Some(Severity::Critical);
        // clears at t=1, returns at t=3 (within 5 min): silent; clears at 4, returns at 12: new alert.
        let mut steps = vec![c, None, None, c, None];
        steps.extend([None; 7]);
        steps.push(c);
        let out = run(&mut p, &steps);
        let states: Vec<_> = out.iter().map(|a| (a.state, a.at.0 / 60_000)).collect();
        assert_eq!(
            states,
            [
                (AlertState::Raised, 0),
                (AlertState::Cleared, 1),
                (AlertState::Raised, 12)
            ]
        );
    }

    #[test]
    fn rotated_nicknames_are_forgotten() {
        let mut p = AlertPolicy::new(PolicyConfig {
            clear_after: 1,
            cooldown: 60_000,
        });
        let mut out = Vec::new();
        for i in 0..100 {
            let f = Finding {
                kind: AlertKind::HouseSpike,
                severity: Severity::Warning,
                nick: Some(RoomNick::new(format!("n{i}")).unwrap()),
                value: Watts(9000),
                threshold: Watts(500),
            };
            p.evaluate(Timestamp(i * 60_000), vec![f], &mut out);
        }
        assert!(p.tracked() <= 3, "{}", p.tracked());
    }
}
