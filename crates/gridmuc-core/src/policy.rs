//! Alert policy: turns per-interval findings into few alerts (one per event, escalations, a clear).
//!
//! An event stays open, silently, while it is quiet for less than `clear_after` intervals and
//! `cooldown`: a quick return belongs to the same event. Once "cleared" has been said, any
//! recurrence is a new event with a new alert, so what the room heard is always the truth.

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
    /// Fewest consecutive quiet intervals before an event is declared over.
    pub clear_after: u32,
    /// Shortest time from the first quiet interval's start to the one that declares the event
    /// over, so a return within it is the same event.
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

/// One open event.
#[derive(Clone, Debug)]
struct Track {
    severity: Severity,
    /// Consecutive quiet intervals, and the start of the first of them.
    quiet: u32,
    quiet_since: Option<Timestamp>,
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
        let mut seen: Vec<Key> = Vec::with_capacity(findings.len());
        for f in findings {
            let key: Key = (f.kind, f.nick.clone());
            let announce = match self.tracks.get_mut(&key) {
                Some(track) => {
                    let escalated = f.severity > track.severity;
                    track.severity = track.severity.max(f.severity);
                    track.quiet = 0;
                    track.quiet_since = None;
                    track.value = f.value;
                    track.threshold = f.threshold;
                    escalated
                }
                None => {
                    self.tracks.insert(
                        key.clone(),
                        Track {
                            severity: f.severity,
                            quiet: 0,
                            quiet_since: None,
                            value: f.value,
                            threshold: f.threshold,
                        },
                    );
                    true
                }
            };
            if announce && let Some(track) = self.tracks.get(&key) {
                out.push(alert(&key, track, AlertState::Raised, at));
            }
            seen.push(key);
        }
        let clear_after = self.config.clear_after.max(1);
        let cooldown = self.config.cooldown;
        let mut over = Vec::new();
        for (key, track) in self.tracks.iter_mut() {
            if seen.contains(key) {
                continue;
            }
            track.quiet += 1;
            let since = *track.quiet_since.get_or_insert(at);
            if track.quiet >= clear_after && at.since(since) >= cooldown {
                over.push(key.clone());
            }
        }
        over.sort();
        for key in over {
            if let Some(track) = self.tracks.remove(&key) {
                out.push(alert(&key, &track, AlertState::Cleared, at));
            }
        }
    }

    /// Number of events currently open.
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
        steps.extend([None; 15]);
        let out = run(&mut p, &steps);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].state, AlertState::Raised);
        assert_eq!(out[1].state, AlertState::Cleared);
        // Quiet from minute 120; ten minutes later, at 130, it is over.
        assert_eq!(out[1].at, Timestamp(130 * 60_000));
        assert_eq!(p.tracked(), 0);
    }

    #[test]
    fn short_gaps_do_not_split_an_event() {
        let mut p = AlertPolicy::new(PolicyConfig::default());
        let c = Some(Severity::Critical);
        let mut steps = vec![c, None, c, None, None, c, c];
        // Returns inside the ten-minute cooldown are the same event.
        steps.extend([None; 9]);
        steps.push(c);
        let out = run(&mut p, &steps);
        assert_eq!(out.len(), 1, "{out:?}");
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
    fn a_recurrence_after_cleared_is_a_new_alert() {
        let mut p = AlertPolicy::new(PolicyConfig {
            clear_after: 1,
            cooldown: 5 * 60_000,
        });
        let c = Some(Severity::Critical);
        // Raised at 0, quiet from 1, cleared at 6; back at 7 (one minute after the clear): new alert.
        let mut steps = vec![c];
        steps.extend([None; 5]);
        steps.push(None);
        steps.push(c);
        let out = run(&mut p, &steps);
        let states: Vec<_> = out.iter().map(|a| (a.state, a.at.0 / 60_000)).collect();
        assert_eq!(
            states,
            [
                (AlertState::Raised, 0),
                (AlertState::Cleared, 6),
                (AlertState::Raised, 7)
            ]
        );
    }

    #[test]
    fn silent_reopenings_no_longer_swallow_returns() {
        // The street of issue #13: short excursions every 10–20 minutes after an announced alert.
        // Before, each silent re-open and clear inside the cooldown restarted it, and returns
        // 39–58 minutes later went unannounced; now each is either part of the open event or,
        // after a clear, a new alert.
        let mut p = AlertPolicy::new(PolicyConfig::default());
        let c = Some(Severity::Warning);
        let mut steps: Vec<Option<Severity>> = vec![None; 70];
        for m in [0, 8, 17, 26, 39, 48, 58] {
            steps[m] = c;
        }
        let out = run(&mut p, &steps);
        let raised: Vec<_> = out
            .iter()
            .filter(|a| a.state == AlertState::Raised)
            .map(|a| a.at.0 / 60_000)
            .collect();
        let cleared: Vec<_> = out
            .iter()
            .filter(|a| a.state == AlertState::Cleared)
            .map(|a| a.at.0 / 60_000)
            .collect();
        // Gaps of 8–9 minutes keep the event open; quiet from 27, it is over at 37.
        assert_eq!(raised, [0, 39]);
        assert_eq!(cleared, [37, 69]);
        // Every finding fell inside an announced event.
        for m in [0, 8, 17, 26, 39, 48, 58] {
            let opened = raised.iter().filter(|r| **r <= m).max().copied();
            let closed = cleared.iter().filter(|c| **c <= m).max().copied();
            assert!(
                opened > closed,
                "finding at {m} not inside an announced event"
            );
        }
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
        // Each nickname's event clears after the one-minute cooldown and is forgotten.
        assert!(p.tracked() <= 3, "{}", p.tracked());
    }
}
