//! What private mode leaves the leader per nickname: *that* it reported in an interval, never
//! what. Reports carry no value the leader can read, and each report's send instant is drawn
//! afresh inside its interval, so the only per-nickname signal is participation: which
//! intervals of its life a nickname missed. A meter misses intervals when it is offline (its
//! router, Wi-Fi or the meter itself), so participation can only tell houses apart through
//! *how* their meters fail.
//!
//! Model: each house's meter is a two-state Markov chain per interval, online or offline, with
//! its own outage rate and mean outage length drawn log-uniformly from an [`OutageModel`]. The
//! attacker holds each house's labelled participation of the training period (as it holds the
//! loads in the pseudonymous attack) and learns the house's transition probabilities. A
//! nickname's life, as the leader sees it, runs from its first to its last report; its missed
//! intervals inside are scored against every house's chain by likelihood.
//!
//! **Report-id reuse.** A meter that reconnects after an outage joins under a new nickname and
//! resends the report that had no verdict with the same report id, so the leader links the two
//! nicknames. This module assumes the worst case: every outage is bridged that way, i.e. an
//! outage never starts a new, unlinked nickname; only scheduled rotations (which wait for
//! verdicts first) do. A house whose every nickname is linked — by resends, or by the XMPP
//! server that knows each nickname's account — is the "all linked" row: its whole period.

use super::Segment;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Label of the view in which every nickname of a house is linked: its whole attack period.
pub const ALL_LINKED: &str = "all linked (server, or resent report ids)";

/// How often and how long meters go offline: per house, both drawn log-uniformly.
#[derive(Clone, Debug, PartialEq)]
pub struct OutageModel {
    /// Name for tables.
    pub label: String,
    /// Range of a house's mean number of outages per day.
    pub outages_per_day: [f64; 2],
    /// Range of a house's mean outage length (minutes).
    pub mean_minutes: [f64; 2],
}

impl OutageModel {
    /// Every meter reports every interval: private mode's design case.
    pub fn none() -> OutageModel {
        OutageModel {
            label: "every meter reports every interval".to_owned(),
            outages_per_day: [0.0, 0.0],
            mean_minutes: [1.0, 1.0],
        }
    }

    /// Meters that differ a lot in reliability: a house goes offline between once in 20 days
    /// and 5 times a day, for 1 to 60 minutes on average (an assumption, not a measurement).
    pub fn heterogeneous() -> OutageModel {
        OutageModel {
            label: "outages 0.05–5 per day, 1–60 min (per house)".to_owned(),
            outages_per_day: [0.05, 5.0],
            mean_minutes: [1.0, 60.0],
        }
    }

    /// Per-interval probabilities (go offline, come back) of one house, drawn from the ranges.
    fn draw_chain<R: Rng>(&self, interval_min: u32, rng: &mut R) -> (f64, f64) {
        let log_uniform = |rng: &mut R, [lo, hi]: [f64; 2]| {
            if lo <= 0.0 || hi <= lo {
                lo.max(0.0)
            } else {
                (lo.ln() + rng.random::<f64>() * (hi / lo).ln()).exp()
            }
        };
        let per_day = log_uniform(rng, self.outages_per_day);
        let minutes = log_uniform(rng, self.mean_minutes).max(1.0);
        let interval = f64::from(interval_min);
        (
            (per_day * interval / crate::MINUTES_PER_DAY as f64).min(1.0),
            (interval / minutes).min(1.0),
        )
    }
}

/// Which intervals each house's meter reported in, training period first.
pub(crate) struct Presence {
    /// `present[h][i]`: house `h` reported in interval `i`.
    present: Vec<Vec<bool>>,
    /// Intervals in the training period.
    training: usize,
}

impl Presence {
    /// Simulates every house's meter over `intervals` intervals, `seed(h)` per house.
    pub fn simulate(
        model: &OutageModel,
        houses: usize,
        intervals: usize,
        training: usize,
        interval_min: u32,
        seed: impl Fn(usize) -> u64,
    ) -> Presence {
        let present = (0..houses)
            .map(|h| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed(h));
                let (down, up) = model.draw_chain(interval_min, &mut rng);
                let mut online = down == 0.0 || rng.random::<f64>() < up / (up + down);
                (0..intervals)
                    .map(|_| {
                        let now = online;
                        let flip = if online { down } else { up };
                        if flip > 0.0 && rng.random::<f64>() < flip {
                            online = !online;
                        }
                        now
                    })
                    .collect()
            })
            .collect();
        Presence { present, training }
    }

    /// House `h`'s attack-period participation.
    pub fn attack(&self, h: usize) -> &[bool] {
        &self.present[h][self.training..]
    }
}

/// Transition counts `[from][to]` of a participation series (0 = reported, 1 = missed).
fn transitions(series: &[bool]) -> [[f64; 2]; 2] {
    let mut c = [[0.0; 2]; 2];
    for w in series.windows(2) {
        c[usize::from(!w[0])][usize::from(!w[1])] += 1.0;
    }
    c
}

/// What the leader sees of one nickname: its life from first to last report, or nothing.
fn observed<'a>(presence: &'a Presence, s: &Segment) -> Option<&'a [bool]> {
    let life = &presence.attack(s.house)[s.readings.clone()];
    let first = life.iter().position(|p| *p)?;
    let last = life.iter().rposition(|p| *p)?;
    Some(&life[first..=last])
}

/// Rank of entry `truth` when ties are broken at random: (houses scoring better, houses tied).
/// Participation scores tie by design (identical patterns), so the attacker can only guess.
pub fn ties(scores: &[f64], truth: usize) -> (usize, usize) {
    let own = scores[truth];
    let better = scores.iter().filter(|s| **s > own).count();
    let tied = scores.iter().filter(|s| **s == own).count() - 1;
    (better, tied)
}

/// Probability that the true house lands in the first `k` when ties are broken at random.
pub fn top_k_share((better, tied): (usize, usize), k: usize) -> f64 {
    k.saturating_sub(better).min(tied + 1) as f64 / (tied + 1) as f64
}

/// Success of the participation attack for one outage model, lifetime and neighbourhood size.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticipationRow {
    /// Outage model label.
    pub outages: String,
    /// Houses in the neighbourhood.
    pub houses: usize,
    /// Nickname lifetime label (or the all-linked view).
    pub lifetime: String,
    /// Nicknames the leader saw (a nickname offline for its whole life sent nothing).
    pub nicknames: usize,
    /// Share of nicknames whose house ranked first (expected, ties broken at random).
    pub top1: f64,
    /// Share of nicknames whose house ranked in the first five.
    pub top5: f64,
    /// Mean rank of the true house (chance: (N+1)/2).
    pub mean_rank: f64,
    /// Share of nicknames with at least one missed interval in their seen life.
    pub with_gap: f64,
}

impl ParticipationRow {
    /// Chance top-1 success: 1/N.
    pub fn chance_top1(&self) -> f64 {
        1.0 / self.houses as f64
    }
}

/// What the XMPP server (with the leader's aggregates) sees of participation per house.
#[derive(Clone, Debug, PartialEq)]
pub struct PresenceFacts {
    /// Outage model label.
    pub outages: String,
    /// Houses in the neighbourhood.
    pub houses: usize,
    /// Share of house-intervals without a report: exactly when each meter was offline.
    pub missed_share: f64,
    /// Houses whose meter missed at least one interval.
    pub houses_with_outage: usize,
    /// Consecutive-interval pairs per day in which exactly one house started or stopped
    /// reporting: free one-house differences of the aggregates for whoever knows who.
    pub isolating_per_day: f64,
}

/// Per-house transition log-probabilities learned from the training period (add-½ smoothing).
fn learn(presence: &Presence, n: usize) -> Vec<[[f64; 2]; 2]> {
    (0..n)
        .map(|h| {
            let c = transitions(&presence.present[h][..presence.training]);
            let mut ln_p = [[0.0; 2]; 2];
            for from in 0..2 {
                let total = c[from][0] + c[from][1] + 1.0;
                for to in 0..2 {
                    ln_p[from][to] = ((c[from][to] + 0.5) / total).ln();
                }
            }
            ln_p
        })
        .collect()
}

/// Scores every nickname of houses `< n` against every house's learned chain.
pub(crate) fn attack_participation(
    presence: &Presence,
    outages: &str,
    lifetime: &str,
    segments: &[Segment],
    n: usize,
) -> ParticipationRow {
    let chains = learn(presence, n);
    let mut seen = 0usize;
    let (mut top1, mut top5, mut rank, mut gaps) = (0.0, 0.0, 0.0, 0usize);
    for s in segments.iter().filter(|s| s.house < n) {
        let Some(life) = observed(presence, s) else {
            continue;
        };
        seen += 1;
        gaps += usize::from(life.iter().any(|p| !*p));
        let c = transitions(life);
        let scores: Vec<f64> = chains
            .iter()
            .map(|ln_p| (0..4).map(|k| c[k / 2][k % 2] * ln_p[k / 2][k % 2]).sum())
            .collect();
        let t = ties(&scores, s.house);
        top1 += top_k_share(t, 1);
        top5 += top_k_share(t, 5);
        rank += t.0 as f64 + 1.0 + t.1 as f64 / 2.0;
    }
    let count = seen.max(1) as f64;
    ParticipationRow {
        outages: outages.to_owned(),
        houses: n,
        lifetime: lifetime.to_owned(),
        nicknames: seen,
        top1: top1 / count,
        top5: top5 / count,
        mean_rank: rank / count,
        with_gap: gaps as f64 / count,
    }
}

/// The per-house participation facts of the first `n` houses over `days` attack days.
pub(crate) fn presence_facts(
    presence: &Presence,
    outages: &str,
    n: usize,
    days: u32,
) -> PresenceFacts {
    let len = presence.attack(0).len();
    let missed: usize = (0..n)
        .map(|h| presence.attack(h).iter().filter(|p| !**p).count())
        .sum();
    let isolating = (0..len.saturating_sub(1))
        .filter(|&i| {
            (0..n)
                .filter(|&h| presence.attack(h)[i] != presence.attack(h)[i + 1])
                .count()
                == 1
        })
        .count();
    PresenceFacts {
        outages: outages.to_owned(),
        houses: n,
        missed_share: missed as f64 / (n * len).max(1) as f64,
        houses_with_outage: (0..n)
            .filter(|&h| presence.attack(h).iter().any(|p| !*p))
            .count(),
        isolating_per_day: isolating as f64 / f64::from(days.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_count_reported_and_missed_steps() {
        let c = transitions(&[true, true, false, false, false, true]);
        assert_eq!(c, [[1.0, 1.0], [1.0, 2.0]]);
    }

    #[test]
    fn ties_are_broken_at_random() {
        // All tied among 4: the truth is first with probability ¼, in the first five surely.
        let t = ties(&[1.0; 4], 2);
        assert_eq!(t, (0, 3));
        assert_eq!(top_k_share(t, 1), 0.25);
        assert_eq!(top_k_share(t, 5), 1.0);
        // One better, one tied: second or third, each half the time.
        let t = ties(&[3.0, 2.0, 2.0, 1.0], 1);
        assert_eq!(t, (1, 1));
        assert_eq!(top_k_share(t, 1), 0.0);
        assert_eq!(top_k_share(t, 2), 0.5);
    }

    #[test]
    fn outage_chains_match_their_rates() {
        let model = OutageModel {
            label: "test".into(),
            outages_per_day: [4.0, 4.0],
            mean_minutes: [30.0, 30.0],
        };
        let days = 200;
        let p = Presence::simulate(&model, 1, days * 1440, 0, 1, |_| 9);
        let c = transitions(p.attack(0));
        // 4 outages a day of 30 min: ~800 outages, offline 120/1440 of the time.
        let outages = c[0][1];
        assert!((650.0..950.0).contains(&outages), "{outages}");
        let offline = (c[1][0] + c[1][1]) / (days * 1440) as f64;
        assert!((offline - 120.0 / 1440.0).abs() < 0.02, "{offline}");
        let none = Presence::simulate(&OutageModel::none(), 3, 1000, 0, 1, |h| h as u64);
        assert!((0..3).all(|h| none.attack(h).iter().all(|p| *p)));
    }

    #[test]
    fn the_leader_sees_a_life_from_first_to_last_report() {
        let p = Presence {
            present: vec![vec![false, true, false, true, false, false]],
            training: 0,
        };
        let seg = |readings| Segment {
            house: 0,
            readings,
            minutes: 0..1,
        };
        assert_eq!(observed(&p, &seg(0..6)), Some(&[true, false, true][..]));
        assert_eq!(observed(&p, &seg(4..6)), None);
    }
}
