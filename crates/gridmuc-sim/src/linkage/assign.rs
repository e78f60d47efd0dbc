//! One-to-one matching of the nicknames alive at one instant to houses.
//!
//! Every house holds exactly one nickname at any instant, so an attacker who sees all nicknames
//! of one instant can solve an assignment problem instead of guessing each nickname on its own:
//! a nickname that two houses both fit goes to the one no other nickname fits better.

use super::Segment;
use super::features::rank_in;

/// Lowest score the solver sees, so "impossible" (−∞) stays arithmetic.
const SCORE_FLOOR: f64 = -1e12;

/// Hungarian algorithm (Kuhn–Munkres with potentials, O(n³)): for a square matrix of
/// `scores[row][col]`, the column of each row in an assignment with the highest total score.
pub fn assign_max(scores: &[Vec<f64>]) -> Vec<usize> {
    let n = scores.len();
    let cost = |i: usize, j: usize| -scores[i][j].max(SCORE_FLOOR);
    // 1-based potentials and matching as in the classic formulation; column 0 is a sentinel.
    let (mut u, mut v) = (vec![0.0f64; n + 1], vec![0.0f64; n + 1]);
    let (mut row_of, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        let mut min_v = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < min_v[j] {
                    min_v[j] = cur;
                    way[j] = j0;
                }
                if min_v[j] < delta {
                    delta = min_v[j];
                    j1 = j;
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_v[j] -= delta;
                }
            }
            j0 = j1;
            if j0 == 0 || row_of[j0] == 0 {
                break;
            }
        }
        while j0 != 0 {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
        }
    }
    let mut col_of = vec![0; n];
    for j in 1..=n {
        if row_of[j] != 0 {
            col_of[row_of[j] - 1] = j - 1;
        }
    }
    col_of
}

/// Top-1 success when the nicknames alive at each instant `k × lifetime` are matched to the `n`
/// houses one-to-one; nicknames in no complete instant fall back to their best-scoring house.
pub fn matched_top1(segments: &[&Segment], scores: &[&[f64]], n: usize, lifetime: u64) -> f64 {
    let lifetime = lifetime.max(1);
    let instant = |s: &Segment| {
        let k = s.minutes.start.div_ceil(lifetime);
        (k * lifetime < s.minutes.end).then_some(k)
    };
    let mut groups: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (i, s) in segments.iter().enumerate() {
        if let Some(k) = instant(s) {
            groups.entry(k).or_default().push(i);
        }
    }
    let mut correct = vec![false; segments.len()];
    let mut matched = vec![false; segments.len()];
    for members in groups.values().filter(|m| m.len() == n) {
        let matrix: Vec<Vec<f64>> = members.iter().map(|&i| scores[i].to_vec()).collect();
        for (row, house) in assign_max(&matrix).into_iter().enumerate() {
            let i = members[row];
            matched[i] = true;
            correct[i] = segments[i].house == house;
        }
    }
    let hits = (0..segments.len())
        .filter(|&i| {
            if matched[i] {
                correct[i]
            } else {
                rank_in(scores[i], segments[i].house) == 1
            }
        })
        .count();
    hits as f64 / segments.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hungarian_finds_the_best_total_not_the_greedy_one() {
        // Greedy row by row would give row 0 → col 0 (9) and row 1 → col 1 (1): total 10.
        // The optimum is row 0 → col 1 (8), row 1 → col 0 (7): total 15.
        let s = vec![
            vec![9.0, 8.0, 0.0],
            vec![7.0, 1.0, 0.0],
            vec![0.0, 0.0, 5.0],
        ];
        assert_eq!(assign_max(&s), vec![1, 0, 2]);
        assert_eq!(
            assign_max(&[vec![f64::NEG_INFINITY, 0.0], vec![0.0, -1.0]]),
            vec![1, 0]
        );
        assert_eq!(assign_max(&[]), Vec::<usize>::new());
    }

    /// Against brute force over all 720 permutations of random 6×6 matrices.
    #[test]
    fn hungarian_matches_brute_force() {
        use rand::{Rng, SeedableRng};
        fn best(scores: &[Vec<f64>], row: usize, used: &mut Vec<bool>) -> f64 {
            if row == scores.len() {
                return 0.0;
            }
            let mut top = f64::NEG_INFINITY;
            for col in 0..scores.len() {
                if !used[col] {
                    used[col] = true;
                    top = top.max(scores[row][col] + best(scores, row + 1, used));
                    used[col] = false;
                }
            }
            top
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..50 {
            let s: Vec<Vec<f64>> = (0..6)
                .map(|_| (0..6).map(|_| rng.random_range(-50.0..0.0)).collect())
                .collect();
            let cols = assign_max(&s);
            let mut sorted = cols.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..6).collect::<Vec<_>>());
            let total: f64 = cols.iter().enumerate().map(|(r, c)| s[r][*c]).sum();
            assert!((total - best(&s, 0, &mut vec![false; 6])).abs() < 1e-9);
        }
    }

    #[test]
    fn matching_resolves_a_nickname_two_houses_fit() {
        // Both nicknames of the one instant prefer house 0; matching gives house 1 the second.
        let seg = |house, start, end| Segment {
            house,
            readings: 0..1,
            minutes: start..end,
        };
        let (a, b) = (seg(0, 0, 1440), seg(1, 0, 1440));
        let (sa, sb) = ([5.0, 1.0], [4.0, 3.5]);
        assert_eq!(matched_top1(&[&a, &b], &[&sa, &sb], 2, 1440), 1.0);
        // A nickname alive at no multiple of the lifetime is judged by its best score alone.
        let c = seg(1, 10, 20);
        assert_eq!(matched_top1(&[&c], &[&sb], 2, 1440), 0.0);
    }
}
