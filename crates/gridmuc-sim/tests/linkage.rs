//! The linkage experiment end to end on a small street (20 houses, fixed seed): pseudonymous
//! nicknames are linked to houses far above chance; in private mode participation alone links
//! nothing while every meter reports, histogram differences leak more than total differences,
//! and a leader that isolates one report (n−1) recovers it exactly unless noise covers it.
#![allow(clippy::unwrap_used)] // tests may unwrap (house rule)

use gridmuc_sim::linkage::aggregates::{AggregateAttack, AggregateRow, Buckets, Noise};
use gridmuc_sim::linkage::features::FeatureSet;
use gridmuc_sim::linkage::participation::{ALL_LINKED, OutageModel, ParticipationRow};
use gridmuc_sim::linkage::{Lifetime, LinkageConfig, LinkageOutput, LinkageRow, run_linkage};
use std::sync::OnceLock;

const HOUSES: usize = 20;
const LIFETIMES: [&str; 2] = ["daily", "30 min–2 h"];

/// Log-spaced buckets like private mode's: 0, then 50 W growing by 22 % (rounded to 10 W).
fn buckets() -> Buckets {
    let mut edges: Vec<u32> = std::iter::once(0)
        .chain((0..31).map(|k| (5.0 * 1.22f64.powi(k)).round() as u32 * 10))
        .collect();
    edges.dedup();
    Buckets::new(edges).unwrap()
}

fn small_street() -> &'static LinkageOutput {
    static OUT: OnceLock<LinkageOutput> = OnceLock::new();
    OUT.get_or_init(|| {
        let mut config = LinkageConfig::standard(11, buckets());
        config.houses = vec![HOUSES];
        config.days = 6;
        config.training_days = 7;
        config.lifetimes = vec![
            Lifetime::new(LIFETIMES[0], 1440, 1440),
            Lifetime::new(LIFETIMES[1], 30, 120),
        ];
        config.leaver_trials = HOUSES;
        config.dropout_trials = 400;
        let out = run_linkage(&config, &[Noise::none(), Noise::dp(1.0, 1000.0)], |_| {}).unwrap();
        for r in &out.rows {
            println!("{r:?}");
        }
        for r in &out.participation {
            println!("{r:?}");
        }
        for r in &out.presence {
            println!("{r:?}");
        }
        for r in &out.aggregate_rows {
            println!("{r:?}");
        }
        out
    })
}

fn row(lifetime: &str, set: FeatureSet) -> &'static LinkageRow {
    small_street()
        .rows
        .iter()
        .find(|r| r.lifetime == lifetime && r.features == set)
        .unwrap()
}

fn participation(outages: &OutageModel, lifetime: &str) -> &'static ParticipationRow {
    small_street()
        .participation
        .iter()
        .find(|r| r.outages == outages.label && r.lifetime == lifetime)
        .unwrap()
}

fn aggregate(attack: AggregateAttack, noise: &str) -> &'static AggregateRow {
    small_street()
        .aggregate_rows
        .iter()
        .find(|r| r.attack == attack && r.noise == noise)
        .unwrap()
}

#[test]
fn pseudonymous_nicknames_are_linked_far_above_chance() {
    let chance = 1.0 / HOUSES as f64;
    let daily = row("daily", FeatureSet::Full);
    assert_eq!(
        daily.nicknames,
        HOUSES * 7,
        "6 days at a random phase: 7 lives each"
    );
    // Seed 11 gives 64 % (chance 5 %) with the calibrated model and its meters' noise (73 %
    // without the noise; 94 % when appliances stacked on themselves). The bound is 10× chance:
    // what the test claims, not one noise generator's exact draw.
    assert!(daily.top1 >= 10.0 * chance, "{daily:?}");
    assert!(daily.top5 >= daily.top1);
    assert!(daily.assigned_top1.unwrap() >= 0.75, "{daily:?}");
    let shape = row("daily", FeatureSet::Shape);
    assert!(shape.top1 >= 6.0 * chance, "{shape:?}"); // 39 % with the calibrated model
    // 26 % since simulated meters carry minute-to-minute noise as real ones do.
    let short = row("30 min–2 h", FeatureSet::Full);
    assert!(short.top1 >= 5.0 * chance, "{short:?}");
    assert!(
        short.top1 < daily.top1,
        "shorter lives give the attacker less"
    );
    assert_eq!(
        short.assigned_top1, None,
        "random lifetimes cannot be matched per instant"
    );
}

#[test]
fn participation_alone_is_exactly_chance_when_every_meter_reports() {
    let none = OutageModel::none();
    for lifetime in LIFETIMES.into_iter().chain([ALL_LINKED]) {
        let r = participation(&none, lifetime);
        // Every pattern is complete and identical: every house ties, the guess is uniform.
        assert!((r.top1 - 1.0 / HOUSES as f64).abs() < 1e-12, "{r:?}");
        assert!((r.top5 - 5.0 / HOUSES as f64).abs() < 1e-12, "{r:?}");
        assert!(
            (r.mean_rank - (HOUSES as f64 + 1.0) / 2.0).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!(r.with_gap, 0.0, "{r:?}");
    }
    assert_eq!(participation(&none, ALL_LINKED).nicknames, HOUSES);
    assert_eq!(participation(&none, "daily").nicknames, HOUSES * 7);
    let facts = small_street()
        .presence
        .iter()
        .find(|f| f.outages == none.label)
        .unwrap();
    assert_eq!(facts.missed_share, 0.0);
    assert_eq!(facts.houses_with_outage, 0);
    assert_eq!(facts.isolating_per_day, 0.0, "no free one-house difference");
}

#[test]
fn meters_that_fail_differently_make_participation_a_fingerprint() {
    let flaky = OutageModel::heterogeneous();
    let chance = 1.0 / HOUSES as f64;
    let linked = participation(&flaky, ALL_LINKED);
    let daily = participation(&flaky, "daily");
    let short = participation(&flaky, "30 min–2 h");
    // Seed 11, 6 days: a house's whole period names it for 17 % (5 of 20 meters never failed
    // and tie), a daily nickname's outages for 14 %; a 30 min–2 h nickname rarely sees an
    // outage at all (4 %), and only "no outage, so a reliable house" lifts it to 6 %.
    assert!(linked.top1 >= 3.0 * chance, "{linked:?}");
    assert!(daily.top1 >= 2.0 * chance, "{daily:?}");
    assert!(linked.top1 > daily.top1 && daily.top1 > short.top1);
    assert!(short.with_gap < daily.with_gap, "{short:?} {daily:?}");
    assert!(short.top1 < 2.0 * chance, "{short:?}");
    let facts = small_street()
        .presence
        .iter()
        .find(|f| f.outages == flaky.label)
        .unwrap();
    // 15 of 20 meters fail within 6 days (the most reliable once in 20 days on average).
    assert!(facts.houses_with_outage >= HOUSES / 2, "{facts:?}");
    assert!(facts.isolating_per_day > 1.0, "{facts:?}");
}

#[test]
fn histogram_differences_leak_more_than_total_differences() {
    let d = aggregate(AggregateAttack::Dropout, "none");
    assert_eq!(d.trials, 400);
    // Seed 11, 20 houses of the calibrated model with noisy meters: the total's difference is
    // within ±50 W in 22 % of the trials; the histogram's names the house's bucket in 31 %,
    // certainly so in 0.75 %, and cuts the median error from 150 W to 80 W.
    let bucket = d.bucket_hit.unwrap();
    assert!(bucket >= 0.28, "{d:?}");
    assert!(bucket > d.within_50_w + 0.05, "{d:?}");
    assert!(d.bucket_certain.unwrap() > 0.0, "{d:?}");
    assert!(d.bucket_certain.unwrap() <= bucket);
    assert!(
        d.hist_median_abs_err_w.unwrap() <= d.median_abs_err_w,
        "{d:?}"
    );
    // Naming the house from one value stays near chance.
    assert!(d.top1 <= 4.0 / HOUSES as f64, "{d:?}");
    let leaver = aggregate(AggregateAttack::Leaver, "none");
    assert_eq!(leaver.trials, HOUSES);
    assert_eq!(leaver.bucket_hit, None);
}

#[test]
fn isolating_one_report_recovers_it_exactly_unless_noise_covers_it() {
    let exact = aggregate(AggregateAttack::Isolation, "none");
    assert_eq!(exact.trials, 400);
    assert_eq!(exact.rmse_w, 0.0, "{exact:?}");
    assert_eq!(exact.within_50_w, 1.0);
    assert_eq!(exact.bucket_hit, Some(1.0));
    assert_eq!(exact.bucket_certain, Some(1.0));
    assert_eq!(exact.hist_median_abs_err_w, Some(0.0));
    let noisy = aggregate(AggregateAttack::Isolation, "ε = 1, Δ = 1 kW");
    // Discrete Laplace of sd 1.41 kW on the total: median |error| ≈ ln 2 × 1 kW.
    assert!(
        (500.0..900.0).contains(&noisy.median_abs_err_w),
        "{noisy:?}"
    );
    assert!(noisy.bucket_certain.unwrap() < 0.1, "{noisy:?}");
}
