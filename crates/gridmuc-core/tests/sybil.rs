//! Sybil resistance of the neighbourhood statistics: one actor joining the room with `k`
//! nicknames among `n` honest houses moves the robust statistics by no more than its share.
//!
//! # Why the bounds hold
//!
//! Each nickname contributes exactly one value per interval (the aggregator averages a nick's
//! readings), and the codec refuses anything beyond the physical limit `L` = 25 kW, import or
//! export. So `k` Sybils add `k` arbitrary values in `[-L, L]` to the `n` honest ones.
//!
//! **Order statistics.** Let `h[0] ≤ … ≤ h[n-1]` be the honest values and `c[0] ≤ … ≤ c[N-1]`
//! the combined ones, `N = n + k`. Then `h[j-k] ≤ c[j] ≤ h[j]` (reading `h[<0]` as `-L` and
//! `h[≥n]` as `+L`):
//! - `c[j] ≤ h[j]`: the `j+1` honest values `h[0..=j]` are all `≤ h[j]`, so the `(j+1)`-th
//!   smallest combined value is too;
//! - `c[j] ≥ h[j-k]`: fewer than `j-k` honest values and at most `k` Sybil values lie below
//!   `h[j-k]`, i.e. at most `j` values, so the `(j+1)`-th smallest is not below it.
//!
//! **Quantiles.** `IntervalStats` uses the type-7 quantile: at position `p = (N-1)·q` it
//! interpolates `c[⌊p⌋]` and `c[⌊p⌋+1]` with weight `p - ⌊p⌋`. Interpolation is monotone in both
//! ends, so the combined `q`-quantile lies in
//! `[interp(h[⌊p⌋-k], h[⌊p⌋+1-k]), interp(h[⌊p⌋], h[⌊p⌋+1])]` ([`quantile_bounds`]).
//! For the median (`q = ½`) and `k < n` both ends are honest type-7 quantiles themselves: the
//! positions `(N-1)/2 - k` and `(N-1)/2` are the honest levels
//! `q₋ = (n-k-1) / (2(n-1))` and `q₊ = (n+k-1) / (2(n-1))`, i.e. **the median can only move
//! within the honest quantiles `½ ∓ k/(2(n-1))`** — half a rank per Sybil, whatever they report.
//! Both ends are reached: Sybils at `+L` give exactly `q₊`, Sybils below every honest value
//! (0 W) exactly `q₋`. The rougher `½ ∓ k/(2(n+k))` is too tight: for `n = 100, k = 30` it
//! gives honest levels 0.385…0.615, but 30 Sybils at 0 W put the median at level 0.348.
//!
//! p5 and p95 have breakdown points of 5 %: once the Sybils' share `k/N` exceeds it, the
//! bound reaches `±L` — only the physical limit bounds them. That is why detectors read the
//! median and MAD, never p5/p95.
//!
//! **Sums are not robust.** The total moves by exactly `k × v`. The overload detector must
//! still watch the total (the transformer carries the sum, not the median), so its damage is
//! bounded only by the per-house limit: `k` Sybils can add at most `k × 25 kW` (false overload)
//! or hide at most `k × 25 kW` (fake export). Rate limits do not help here (one value per nick);
//! a members-only room is the remedy for that.
//!
//! **Outliers.** The outlier detector scores `(x - m) / (1.4826 · MAD)` with `m` the combined
//! median and `MAD` the type-7 median of `|c - m|`. With `d_i = |h_i - m_h|` (honest deviations
//! from the honest median) and `δ = max |m - m_h|` from the median bound, every honest
//! deviation from `m` is `≤ d_i + δ`, so the same order-statistic argument on the deviations
//! gives `MAD ≤ hi(d, k) + δ` ([`mad_upper_bound`]): Sybils can inflate the MAD only up to an
//! honest deviation quantile while they are a minority (`k ≤ n`). A genuine spike `S` with
//! `S - m₊ > z · 1.4826 · MAD-bound` is therefore still flagged, whatever the Sybils report.

use gridmuc_core::alert::{AlertKind, AlertState};
use gridmuc_core::codec::{CodecLimits, MessageKind, decode_stanza, encode_message};
use gridmuc_core::detect::OutlierConfig;
use gridmuc_core::stats::quantile_sorted;
use gridmuc_core::{
    Aggregator, AggregatorConfig, Alert, IntervalStats, Quality, Reading, RoomNick, Timestamp,
    Watts,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Honest houses.
const N: usize = 100;
/// Sybil counts under test; all below `N / 2`.
const KS: [usize; 5] = [1, 5, 10, 30, 49];
/// The physical limit per house, import or export (`CodecLimits` default).
const L: i64 = 25_000;
/// 2026-11-24T20:00:00Z.
const T0: Timestamp = Timestamp(1_795_550_400_000);

/// `n` honest evening loads, 300 W … 3 kW skewed low, quantised to 10 W like the codec does.
fn honest(n: usize, seed: u64) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u: f64 = rng.random();
            (300.0 + u * u * 2_700.0) as i64 / 10 * 10
        })
        .collect()
}

fn sorted(v: &[i64]) -> Vec<i64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// `[lo, hi]` the type-7 `q`-quantile of `honest` plus `k` values in `[-limit, limit]` must lie in.
fn quantile_bounds(honest: &[i64], k: usize, q: f64, limit: i64) -> (f64, f64) {
    let n = honest.len() as isize;
    let k = k as isize;
    let p = (n + k - 1) as f64 * q;
    let j = p.floor() as isize;
    let frac = p - j as f64;
    let h = |i: isize| match i {
        i if i < 0 => -limit as f64,
        i if i >= n => limit as f64,
        i => honest[i as usize] as f64,
    };
    let interp = |a: f64, b: f64| a + frac * (b - a);
    (interp(h(j - k), h(j + 1 - k)), interp(h(j), h(j + 1)))
}

/// Upper bound of the MAD the outlier detector sees when `k` values join `honest`.
fn mad_upper_bound(honest: &[i64], k: usize) -> f64 {
    let m_h = quantile_sorted(honest, 0.5);
    let (m_lo, m_hi) = quantile_bounds(honest, k, 0.5, L);
    let delta = (m_h - m_lo).max(m_hi - m_h);
    // The detector rounds each deviation to whole watts: half a watt of slack.
    let devs = sorted(
        &honest
            .iter()
            .map(|&h| (h as f64 - m_h).abs().ceil() as i64)
            .collect::<Vec<_>>(),
    );
    quantile_bounds(&devs, k, 0.5, L).1 + delta + 0.5
}

/// The room as the bot sees it: every value is encoded as a meter would, decoded from bytes
/// (so the physical limit applies) and aggregated under its own nickname for one interval.
fn aggregate(values: &[(String, i64)]) -> (IntervalStats, Vec<Alert>, Aggregator) {
    let limits = CodecLimits::default();
    let mut agg = Aggregator::new(AggregatorConfig::default());
    for (i, (nick, w)) in values.iter().enumerate() {
        let reading = Reading {
            power: Watts(*w),
            at: T0,
            seqnr: i as u64,
            quality: Quality::AUTOMATIC_READOUT,
        };
        let to = "neighbourhood@rooms.grid.example/bot";
        let stanza = String::from(&encode_message(&reading, to, MessageKind::Chat, "r"));
        match decode_stanza(stanza.as_bytes(), &limits) {
            Ok(r) => {
                agg.handle_reading(
                    T0.plus(2_000),
                    &RoomNick::new(nick.as_str()).expect("test nicks are valid"),
                    r,
                );
            }
            Err(e) => agg.handle_rejection(&e),
        }
    }
    agg.flush();
    let stats = agg
        .poll_summaries()
        .next()
        .expect("flush closes the one interval");
    let alerts = agg.poll_alerts().collect();
    (stats, alerts, agg)
}

fn named(prefix: &str, values: impl IntoIterator<Item = i64>) -> Vec<(String, i64)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, w)| (format!("{prefix}-{i}"), w))
        .collect()
}

fn with_sybils(honest: &[(String, i64)], sybil_values: &[i64]) -> Vec<(String, i64)> {
    let mut all = honest.to_vec();
    all.extend(named("sybil", sybil_values.iter().copied()));
    all
}

fn assert_within(what: &str, x: f64, (lo, hi): (f64, f64)) {
    assert!(
        lo - 1e-9 <= x && x <= hi + 1e-9,
        "{what}: {x} not in [{lo}, {hi}]"
    );
}

/// Sybil strategies: all at the import limit, all at 0 W, all at the export limit, split to
/// both extremes, and seeded random placements anywhere in `[-L, L]`.
fn strategies(k: usize) -> Vec<(String, Vec<i64>)> {
    let mut out = vec![
        ("+25 kW".to_owned(), vec![L; k]),
        ("0 W".to_owned(), vec![0; k]),
        ("-25 kW export".to_owned(), vec![-L; k]),
        (
            "split ±25 kW".to_owned(),
            (0..k).map(|i| if i % 2 == 0 { L } else { -L }).collect(),
        ),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
    for t in 0..20 {
        let v = (0..k)
            .map(|_| rng.random_range(-L / 10..=L / 10) * 10)
            .collect();
        out.push((format!("random #{t}"), v));
    }
    out
}

/// Median, p5 and p95 stay within the derived bounds for every strategy; the median bound is
/// exactly the honest `½ ∓ k/(2(n-1))` quantiles and is reached by the extreme strategies.
#[test]
fn sybils_move_robust_statistics_only_within_their_share() {
    let honest_values = honest(N, 7);
    let h = sorted(&honest_values);
    let honest_room = named("house", honest_values.iter().copied());
    let (base, _, _) = aggregate(&honest_room);
    assert_eq!(base.median, quantile_sorted(&h, 0.5));
    for k in KS {
        let median_bound = quantile_bounds(&h, k, 0.5, L);
        // The same bound as honest quantile levels ½ ∓ k/(2(n-1)).
        let level = |sign: f64| 0.5 + sign * k as f64 / (2.0 * (N - 1) as f64);
        assert!((median_bound.0 - quantile_sorted(&h, level(-1.0))).abs() < 1e-9);
        assert!((median_bound.1 - quantile_sorted(&h, level(1.0))).abs() < 1e-9);
        for (name, sybils) in strategies(k) {
            let (s, _, agg) = aggregate(&with_sybils(&honest_room, &sybils));
            let what = format!("k={k} {name}");
            assert_eq!(
                (s.meters, agg.counters().rejected.total()),
                (N + k, 0),
                "{what}"
            );
            assert_within(&format!("{what} median"), s.median, median_bound);
            assert_within(&format!("{what} p5"), s.p5, quantile_bounds(&h, k, 0.05, L));
            assert_within(
                &format!("{what} p95"),
                s.p95,
                quantile_bounds(&h, k, 0.95, L),
            );
            // Sums are not robust: the total moves by exactly the Sybils' sum.
            assert_eq!(
                s.total.0 - base.total.0,
                sybils.iter().sum::<i64>(),
                "{what}"
            );
        }
        // The bound is tight: the extremes reach it exactly.
        let (up, _, _) = aggregate(&with_sybils(&honest_room, &vec![L; k]));
        let (down, _, _) = aggregate(&with_sybils(&honest_room, &vec![0; k]));
        assert!((up.median - median_bound.1).abs() < 1e-9, "k={k}");
        assert!((down.median - median_bound.0).abs() < 1e-9, "k={k}");
        assert_eq!(up.total.0 - base.total.0, k as i64 * L);
        // …and lies outside the rougher ½ − k/(2(n+k)) (module docs), e.g. for k = 30.
        let rough = quantile_sorted(&h, 0.5 - k as f64 / (2.0 * (N + k) as f64));
        assert!(
            k < 30 || down.median < rough,
            "k={k}: {} vs {rough}",
            down.median
        );
        // p95 breaks down once the Sybil share passes 5 %: then only the physical limit holds it.
        if k as f64 / (N + k) as f64 > 0.05 {
            assert_eq!(quantile_bounds(&h, k, 0.95, L).1, L as f64, "k={k}");
        }
    }
}

/// The physical limit is what bounds the damage to the sum: a Sybil claiming 1 MW is refused
/// (counted `over_limit`), so `k` Sybils move the total by at most `k × 25 kW`.
#[test]
fn total_damage_is_bounded_by_the_per_house_limit() {
    let honest_room = named("house", honest(N, 11));
    let (base, _, _) = aggregate(&honest_room);
    for k in KS {
        let (s, _, agg) = aggregate(&with_sybils(&honest_room, &vec![1_000_000; k]));
        assert_eq!(agg.counters().rejected.get("over_limit"), k as u64);
        assert_eq!(s.total, base.total);
        let (s, _, _) = aggregate(&with_sybils(&honest_room, &vec![L; k]));
        assert_eq!(s.total.0 - base.total.0, k as i64 * 25_000);
    }
}

/// A genuine 24 kW spike in one honest house is still flagged when `k < n/2` Sybils try to
/// inflate the MAD (or drag the median towards the spike), because the MAD stays under the
/// derived honest-deviation bound; with a Sybil majority the same spike can be hidden.
#[test]
fn outlier_detector_still_flags_a_genuine_spike() {
    let spike = 24_000;
    let honest_values: Vec<i64> = honest(N, 23).into_iter().chain([spike]).collect();
    let h = sorted(&honest_values);
    let mut honest_room = named("house", honest_values.iter().copied());
    let genuine = honest_room
        .pop()
        .map(|(_, w)| ("genuine".to_owned(), w))
        .unwrap();
    honest_room.push(genuine);
    let cfg = OutlierConfig::default();
    let flagged = |alerts: &[Alert]| {
        alerts.iter().any(|a| {
            a.kind == AlertKind::HouseSpike
                && a.state == AlertState::Raised
                && a.nick.as_ref().map(RoomNick::as_str) == Some("genuine")
        })
    };
    for k in KS {
        let (_, m_hi) = quantile_bounds(&h, k, 0.5, L);
        let mad_bound = mad_upper_bound(&h, k);
        // The derivation guarantees detection for these parameters, whatever the Sybils send.
        let sigma_bound = (mad_bound * 1.4826).max(50.0);
        let excess = spike as f64 - m_hi;
        assert!(
            excess > cfg.z * sigma_bound,
            "k={k}: bound too weak to guarantee detection"
        );
        assert!(excess > cfg.min_excess.as_f64(), "k={k}");
        let mut adversarial = strategies(k);
        adversarial.push(("all at the spike".to_owned(), vec![spike; k]));
        for (name, sybils) in adversarial {
            let all = with_sybils(&honest_room, &sybils);
            let (s, alerts, _) = aggregate(&all);
            let values: Vec<i64> = all.iter().map(|(_, w)| *w).collect();
            let devs = sorted(
                &values
                    .iter()
                    .map(|&v| (v as f64 - s.median).abs().round() as i64)
                    .collect::<Vec<_>>(),
            );
            let mad = quantile_sorted(&devs, 0.5);
            assert!(
                mad <= mad_bound,
                "k={k} {name}: MAD {mad} > bound {mad_bound}"
            );
            assert!(flagged(&alerts), "k={k} {name}: genuine spike not flagged");
        }
    }
    // Breakdown: a Sybil majority reporting the spike value makes it the median, and it vanishes.
    let (s, alerts, _) = aggregate(&with_sybils(&honest_room, &vec![spike; N + 2]));
    assert_eq!(s.median, spike as f64);
    assert!(!flagged(&alerts));
}
