//! Stuck and dead meters: a nickname that reports the very same value, or exactly 0 W, for long.
//!
//! A healthy house's one-minute mean moves by more than the 10 W quantum within minutes (a
//! fridge's compressor alone cycles every 20–60 minutes), so a frozen value means a frozen
//! meter, and an exact 0 W means a meter that lost its sensor or a house switched off at the
//! main. Both hide load from the total the substation sees.
//!
//! An *idle* house (standby and a resting fridge, a few hundred watts) is different: its
//! quantised reading can hold still for half an hour, so values under `idle_watts` must repeat
//! for `idle_after` (90 min) before they count.
//!
//! **Nickname lifetimes.** Meters rotate their nickname every 30 min to 2 h (leave and rejoin),
//! and nothing links two nicknames of one house, so a run of identical values can only be seen
//! inside one nickname's lifetime. `after` must therefore be shorter than the shortest lifetime:
//! the default 20 minutes leaves every nickname at least 10 minutes in which it can be flagged.
//! A meter frozen at an idle-level value is only seen by nicknames that live past 90 minutes
//! (a third of them with lifetimes uniform over 30 min–2 h), so a four-hour fault is usually,
//! not always, caught. Exactly 0 W never needs the longer wait.
//! A meter stuck for four hours is flagged again under each nickname it takes (each flag is a
//! new private alert to that nickname), and the room's count follows the nicknames flagged now;
//! between a rotation and the next 20 minutes of evidence the count misses that meter. A meter
//! that goes *silent* cannot be told from a house that left; the summary's meter count shows it.

use crate::alert::{AlertKind, Severity};
use crate::detect::Finding;
use crate::nick::RoomNick;
use crate::time::{Millis, Timestamp};
use crate::units::Watts;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Stuck- and zero-meter settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeterHealthConfig {
    /// How long one nickname must repeat one value of at least `idle_watts` before it is
    /// flagged; keep it below the shortest nickname lifetime.
    pub after: Millis,
    /// Below this a house may be idle (standby and a resting fridge), and an idle house's
    /// quantised reading can hold still for a while.
    pub idle_watts: Watts,
    /// How long an idle-level value must repeat before it is flagged: only nicknames living
    /// longer than this can show it.
    pub idle_after: Millis,
    /// Fewest identical readings in that time, so long intervals need evidence too.
    pub min_readings: u32,
}

impl Default for MeterHealthConfig {
    fn default() -> Self {
        MeterHealthConfig {
            after: 20 * 60_000,
            idle_watts: Watts(400),
            idle_after: 90 * 60_000,
            min_readings: 4,
        }
    }
}

/// The run of identical values of one nickname.
#[derive(Clone, Copy, Debug)]
struct Run {
    value: Watts,
    since: Timestamp,
    readings: u32,
    /// Interval in which the nickname last reported, so a departed nickname is forgotten.
    seen: Timestamp,
}

/// What the flagged meters of one interval may hide, for the summary and the room's alert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hidden {
    /// Nicknames flagged as stuck or at zero.
    pub meters: usize,
    /// Load they may hide: a typical meter's reading (the interval's median, at least one
    /// 10 W quantum) for each, since a frozen or zero value says nothing of the house behind it.
    pub load: Watts,
    /// The typical reading used.
    pub typical: Watts,
}

/// Smallest typical reading assumed, one codec quantum, so a count can always be read back.
const MIN_TYPICAL: Watts = Watts(10);

/// Per-nickname runs of identical readings; findings per flagged nickname and one for the room.
#[derive(Clone, Debug, Default)]
pub struct MeterHealth {
    config: MeterHealthConfig,
    runs: HashMap<RoomNick, Run>,
}

impl MeterHealth {
    /// A detector with no history.
    pub fn new(config: MeterHealthConfig) -> Self {
        MeterHealth {
            config,
            runs: HashMap::new(),
        }
    }

    /// Takes the interval starting `start` (one value per nickname) and pushes a private finding
    /// for each flagged nickname and, when any is flagged, one for the room; returns what they may hide.
    pub fn observe(
        &mut self,
        start: Timestamp,
        values: &[(RoomNick, Watts)],
        median: f64,
        out: &mut Vec<Finding>,
    ) -> Hidden {
        for (nick, w) in values {
            let run = self.runs.entry(nick.clone()).or_insert(Run {
                value: *w,
                since: start,
                readings: 0,
                seen: start,
            });
            if run.value != *w {
                *run = Run {
                    value: *w,
                    since: start,
                    readings: 0,
                    seen: start,
                };
            }
            run.readings += 1;
            run.seen = start;
        }
        // Nicknames that did not report this interval have left or rotated: their run is over.
        self.runs.retain(|_, r| r.seen == start);
        let typical = Watts(median.round() as i64).max(MIN_TYPICAL);
        let mut hidden = Hidden {
            typical,
            ..Hidden::default()
        };
        // Nickname order, so the same readings always give the same alerts in the same order.
        let mut runs: Vec<_> = self.runs.iter().collect();
        runs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (nick, run) in runs {
            let after = if run.value != Watts::ZERO && run.value.0.abs() < self.config.idle_watts.0
            {
                self.config.idle_after
            } else {
                self.config.after
            };
            let lasted = start.since(run.since) >= after;
            if !lasted || run.readings < self.config.min_readings.max(2) {
                continue;
            }
            hidden.meters += 1;
            out.push(Finding {
                kind: if run.value == Watts::ZERO {
                    AlertKind::ZeroMeter
                } else {
                    AlertKind::StuckMeter
                },
                severity: Severity::Warning,
                nick: Some(nick.clone()),
                value: run.value,
                threshold: typical,
            });
        }
        hidden.load = Watts(typical.0 * hidden.meters as i64);
        if hidden.meters > 0 {
            out.push(Finding {
                kind: AlertKind::SuspectMeters,
                severity: Severity::Info,
                nick: None,
                value: hidden.load,
                threshold: typical,
            });
        }
        hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MINUTE;

    fn nick(s: &str) -> RoomNick {
        RoomNick::new(s).unwrap_or_else(|_| unreachable!())
    }

    /// Runs `minutes` of three meters: `live` wobbles, `stuck` repeats 430 W, `zero` reads 0 W.
    fn run(h: &mut MeterHealth, from: i64, minutes: i64) -> Vec<(i64, Vec<Finding>, Hidden)> {
        (from..from + minutes)
            .map(|m| {
                let values = [
                    (nick("live"), Watts(500 + (m * 37) % 200)),
                    (nick("stuck"), Watts(430)),
                    (nick("idle"), Watts(150)),
                    (nick("zero"), Watts::ZERO),
                ];
                let mut out = Vec::new();
                let hidden = h.observe(Timestamp(m * MINUTE), &values, 500.0, &mut out);
                (m, out, hidden)
            })
            .collect()
    }

    #[test]
    fn flags_after_twenty_minutes_and_counts_for_the_room() {
        let mut h = MeterHealth::new(MeterHealthConfig::default());
        let steps = run(&mut h, 0, 30);
        let first = steps
            .iter()
            .position(|(_, out, _)| !out.is_empty())
            .expect("flagged");
        assert_eq!(first, 20);
        let (_, out, hidden) = &steps[25];
        let kinds: Vec<_> = out.iter().map(|f| (f.kind, f.nick.clone())).collect();
        assert!(kinds.contains(&(AlertKind::StuckMeter, Some(nick("stuck")))));
        assert!(kinds.contains(&(AlertKind::ZeroMeter, Some(nick("zero")))));
        assert!(kinds.contains(&(AlertKind::SuspectMeters, None)));
        assert_eq!(out.len(), 3);
        assert_eq!(
            *hidden,
            Hidden {
                meters: 2,
                load: Watts(1_000),
                typical: Watts(500)
            }
        );
    }

    #[test]
    fn an_idle_value_needs_ninety_minutes() {
        let mut h = MeterHealth::new(MeterHealthConfig::default());
        let steps = run(&mut h, 0, 95);
        let idle_flagged = |i: usize| {
            steps[i]
                .1
                .iter()
                .any(|f| f.nick.as_ref().is_some_and(|n| n.as_str() == "idle"))
        };
        assert!(!idle_flagged(89));
        assert!(idle_flagged(90));
        assert_eq!(steps[90].2.meters, 3);
    }

    #[test]
    fn a_rotated_nickname_starts_from_nothing() {
        let mut h = MeterHealth::new(MeterHealthConfig::default());
        run(&mut h, 0, 25);
        // The stuck meter comes back under a new nickname: ten minutes are not enough evidence.
        let mut out = Vec::new();
        for m in 25..35 {
            out.clear();
            let values = [(nick("stuck-again"), Watts(430))];
            h.observe(Timestamp(m * MINUTE), &values, 500.0, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(h.runs.len(), 1);
    }

    #[test]
    fn long_intervals_need_min_readings() {
        let mut h = MeterHealth::new(MeterHealthConfig::default());
        let mut out = Vec::new();
        for i in 0..3 {
            out.clear();
            let values = [(nick("slow"), Watts(700))];
            h.observe(Timestamp(i * 15 * MINUTE), &values, 700.0, &mut out);
        }
        assert!(out.is_empty(), "30 minutes but only 3 readings");
        h.observe(
            Timestamp(45 * MINUTE),
            &[(nick("slow"), Watts(700))],
            700.0,
            &mut out,
        );
        assert_eq!(out.len(), 2);
    }
}
