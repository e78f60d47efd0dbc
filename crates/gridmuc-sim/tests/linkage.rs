//! The linkage experiment end to end on a small street (20 houses, fixed seed): pseudonymous
//! nicknames are linked to houses far above chance, masked values are at chance, and masked sums
//! leak a house's reading only through a difference across rounds, which DP noise covers.
#![allow(clippy::unwrap_used)] // tests may unwrap (house rule)

use gridmuc_sim::linkage::features::FeatureSet;
use gridmuc_sim::linkage::sums::{SumAttack, SumAttackRow, SumNoise};
use gridmuc_sim::linkage::{Lifetime, LinkageConfig, LinkageOutput, LinkageRow, View, run_linkage};
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

const HOUSES: usize = 20;
/// Standard deviation of the test's DP-like noise per sum (W): ε = 1, Δ = 1 kW gives 1.41 kW.
const NOISE_SD_W: f64 = 1414.0;

fn small_street() -> &'static LinkageOutput {
    static OUT: OnceLock<LinkageOutput> = OnceLock::new();
    OUT.get_or_init(|| {
        let mut config = LinkageConfig::standard(11);
        config.houses = vec![HOUSES];
        config.days = 6;
        config.training_days = 7;
        config.lifetimes = vec![
            Lifetime::new("daily", 1440, 1440),
            Lifetime::new("30 min–2 h", 30, 120),
        ];
        config.leaver_trials = HOUSES;
        config.dropout_trials = 400;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let gaussian = move || {
            // Box–Muller: one standard normal from two uniforms.
            let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            NOISE_SD_W * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let mut noises = [
            SumNoise::none(),
            SumNoise {
                label: "gaussian".into(),
                sd_w: NOISE_SD_W,
                sample: Box::new(gaussian),
            },
        ];
        let out = run_linkage(&config, &mut noises, |_| {}).unwrap();
        for r in &out.rows {
            println!("{r:?}");
        }
        for r in &out.sum_rows {
            println!("{r:?}");
        }
        out
    })
}

fn row(view: View, lifetime: &str, set: FeatureSet) -> &'static LinkageRow {
    small_street()
        .rows
        .iter()
        .find(|r| r.view == view && r.lifetime == lifetime && r.features == set)
        .unwrap()
}

fn sum_row(attack: SumAttack, noise: &str) -> &'static SumAttackRow {
    small_street()
        .sum_rows
        .iter()
        .find(|r| r.attack == attack && r.noise == noise)
        .unwrap()
}

#[test]
fn pseudonymous_nicknames_are_linked_far_above_chance() {
    let chance = 1.0 / HOUSES as f64;
    let daily = row(View::Pseudonymous, "daily", FeatureSet::Full);
    assert_eq!(
        daily.nicknames,
        HOUSES * 7,
        "6 days at a random phase: 7 lives each"
    );
    // Seed 11 gives 73 % (chance 5 %) since the household model was calibrated against measured
    // homes (issue #13; 94 % before, when appliances stacked on themselves and houses differed more).
    assert!(daily.top1 >= 0.65, "{daily:?}");
    assert!(daily.top5 >= daily.top1);
    assert!(daily.assigned_top1.unwrap() >= 0.85, "{daily:?}");
    let shape = row(View::Pseudonymous, "daily", FeatureSet::Shape);
    assert!(shape.top1 >= 6.0 * chance, "{shape:?}"); // 39 % with the calibrated model
    let short = row(View::Pseudonymous, "30 min–2 h", FeatureSet::Full);
    assert!(short.top1 >= 6.0 * chance, "{short:?}");
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
fn masked_nicknames_are_at_chance() {
    let chance = 1.0 / HOUSES as f64;
    for lifetime in ["daily", "30 min–2 h"] {
        let r = row(View::Masked, lifetime, FeatureSet::Full);
        let sd = (chance * (1.0 - chance) / r.nicknames as f64).sqrt();
        assert!((r.top1 - chance).abs() <= 3.0 * sd, "{r:?}");
        let chance5 = 5.0 / HOUSES as f64;
        let sd5 = (chance5 * (1.0 - chance5) / r.nicknames as f64).sqrt();
        assert!((r.top5 - chance5).abs() <= 3.0 * sd5, "{r:?}");
        let mid = (HOUSES as f64 + 1.0) / 2.0;
        assert!((r.mean_rank - mid).abs() <= 0.15 * mid, "{r:?}");
    }
}

#[test]
fn masked_sums_leak_a_dropout_unless_noise_covers_it() {
    let exact = sum_row(SumAttack::Dropout, "none");
    let noisy = sum_row(SumAttack::Dropout, "gaussian");
    // Seed 11: the difference of consecutive exact sums is the dropped house's reading to within
    // 120 W in half the trials; two sums' noise of 1.41 kW each buries it.
    assert!(exact.median_abs_err_w <= 200.0, "{exact:?}");
    assert!(noisy.median_abs_err_w >= 800.0, "{noisy:?}");
    // Naming the house from one reading is barely better than chance either way.
    assert!(exact.top1 <= 4.0 / HOUSES as f64, "{exact:?}");
    let leaver = sum_row(SumAttack::Leaver, "none");
    assert_eq!(leaver.trials, HOUSES);
}
