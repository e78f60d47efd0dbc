//! Behaviour of the simulator as a whole: determinism, anomaly labelling, realism, detector scores.
#![allow(clippy::unwrap_used)] // tests may unwrap (house rule); helpers here are test-only

use gridmuc_sim::{AnomalyKind, Scenario, SimOutput, run};

fn scenario_file(name: &str) -> Scenario {
    let path = format!(
        "{}/../../simulations/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    Scenario::from_toml_str(&text).unwrap()
}

fn street(start: &str, extra: &str) -> Scenario {
    Scenario::from_toml_str(&format!(
        "name = \"street\"\nseed = 5\nhouses = 100\ndays = 4\nstart = \"{start}\"\ntransformer_kw = 400.0\n{extra}"
    ))
    .unwrap()
}

/// Mean per-house load (kW) over the given UTC hours, across all days.
fn mean_kw_at(out: &SimOutput, hours: std::ops::Range<i64>) -> f64 {
    let sel: Vec<f64> = out
        .intervals
        .iter()
        .filter(|r| hours.contains(&((r.start.0 / 3_600_000) % 24)))
        .map(|r| r.true_total_w as f64 / out.houses as f64 / 1000.0)
        .collect();
    sel.iter().sum::<f64>() / sel.len() as f64
}

fn mean_daily_kwh(out: &SimOutput) -> f64 {
    out.houses_summary
        .iter()
        .map(|h| h.mean_daily_kwh)
        .sum::<f64>()
        / out.houses as f64
}

/// Highest 30-minute mean of the physical total per house (kW): the ADMD measure of the planning literature.
fn admd_30min(out: &SimOutput) -> f64 {
    out.peak_mean_w(30) / out.houses as f64 / 1000.0
}

#[test]
fn same_seed_same_output_other_seed_differs() {
    let s = scenario_file("meter-faults");
    let a = run(&s, |_| {});
    let b = run(&s, |_| {});
    assert_eq!(a.intervals, b.intervals);
    assert_eq!(a.alerts, b.alerts);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.houses_summary, b.houses_summary);
    assert_eq!(a.scores, b.scores);
    let mut other = s.clone();
    other.seed += 1;
    let c = run(&other, |_| {});
    assert_ne!(a.intervals, c.intervals);
}

#[test]
fn every_anomaly_kind_is_injected_labelled_and_visible() {
    let s = scenario_file("meter-faults");
    let out = run(&s, |_| {});
    for kind in AnomalyKind::ALL {
        assert!(
            out.labels.iter().any(|l| l.kind == kind),
            "{kind:?} not labelled"
        );
    }
    // Negative and absurd readings are codec-level rejections, every one counted.
    let rejected: u64 = out.rejected.iter().map(|(_, c)| c).sum();
    assert!(out.injected_bad_readings > 0);
    assert_eq!(rejected, out.injected_bad_readings);
    for kind in ["negative", "nan", "infinite", "over_limit"] {
        assert!(
            out.rejected.iter().any(|(k, c)| k == kind && *c > 0),
            "no {kind} rejection"
        );
    }
    let at = |min: u32| out.start.0 + i64::from(min) * 60_000;
    for l in &out.labels {
        let during: Vec<_> = out
            .intervals
            .iter()
            .filter(|r| (at(l.start_min)..at(l.end_min())).contains(&r.start.0))
            .collect();
        assert!(!during.is_empty());
        match l.kind {
            // A silent meter is missing from the count of reporting meters.
            AnomalyKind::DeadMeter | AnomalyKind::NegativeReading | AnomalyKind::AbsurdReading => {
                assert!(
                    during.iter().all(|r| (r.meters as usize) < out.houses),
                    "{l:?}"
                )
            }
            // Physical events show in the transformer load, not only in the reports.
            AnomalyKind::HouseSpike => {
                assert!(out.houses_summary[l.houses[0]].peak_w >= f64::from(l.extra_w))
            }
            AnomalyKind::NeighbourhoodOverload | AnomalyKind::EvSurge | AnomalyKind::LoadRamp => {
                let peak = during.iter().map(|r| r.true_total_w).max().unwrap_or(0);
                assert!(peak as f64 > out.rating_w as f64 * 0.9, "{l:?} peak {peak}")
            }
            // Stuck or zero: the reported total no longer tracks the physical one exactly.
            AnomalyKind::StuckMeter | AnomalyKind::ZeroMeter => {
                assert!(during.iter().any(|r| r.reported_total_w != r.true_total_w))
            }
        }
    }
}

#[test]
fn plain_street_matches_planning_figures() {
    // Gas-heated homes, no EV, PV or heat pumps: the "100 houses without EVs" case.
    let out = run(&street("2026-01-12", ""), |_| {});
    let kwh = mean_daily_kwh(&out);
    let admd = admd_30min(&out);
    let (night, evening) = (mean_kw_at(&out, 2..5), mean_kw_at(&out, 17..21));
    println!("daily {kwh:.2} kWh, ADMD {admd:.2} kW, night {night:.2} kW, evening {evening:.2} kW");
    // Ofgem's typical 2,700 kWh/yr (7.4 kWh/day), more in January.
    assert!((7.0..=14.0).contains(&kwh), "daily energy {kwh:.2} kWh");
    // SimBench's household profiles scaled to 2,700 kWh/yr give 0.70 kW at 100 houses over a
    // year (reports/realism); CLNR-L217's ≈ 1.5 kW is for larger consumers and a design margin.
    assert!((0.6..=1.5).contains(&admd), "ADMD {admd:.2} kW per house");
    // Evening peak shape: the busiest hour is in the evening and well above the night.
    let busiest = (0..24)
        .max_by(|a, b| mean_kw_at(&out, *a..*a + 1).total_cmp(&mean_kw_at(&out, *b..*b + 1)));
    assert!(matches!(busiest, Some(16..=21)), "busiest hour {busiest:?}");
    assert!(
        evening > 2.0 * night,
        "evening {evening:.2} vs night {night:.2}"
    );
}

#[test]
fn pv_lowers_midday_net_load() {
    let sunny = "[weather]\ncloudiness = 0.2\n[households]\n";
    let without = run(&street("2026-06-15", sunny), |_| {});
    let with = run(
        &street("2026-06-15", &format!("{sunny}pv_share = 0.5\n")),
        |_| {},
    );
    let (a, b) = (mean_kw_at(&without, 11..14), mean_kw_at(&with, 11..14));
    assert!(
        b < a - 0.5,
        "midday net {b:.2} kW with PV vs {a:.2} kW without"
    );
    assert!(
        b < 0.0,
        "half the street with PV exports at midday in June: {b:.2} kW"
    );
    // Evenings are unchanged by PV.
    let (ea, eb) = (mean_kw_at(&without, 20..22), mean_kw_at(&with, 20..22));
    assert!((ea - eb).abs() < 0.25, "evening {ea:.2} vs {eb:.2}");
}

#[test]
fn scenarios_are_realistic_and_detectors_beat_chance() {
    for name in [
        "winter-evening-peak",
        "ev-adoption-40",
        "summer-pv-day",
        "meter-faults",
    ] {
        let s = scenario_file(name);
        let out = run(&s, |_| {});
        let kwh = mean_daily_kwh(&out);
        let [lo, hi] = s.expect.daily_kwh;
        assert!(
            (lo..=hi).contains(&kwh),
            "{name}: {kwh:.2} kWh/day outside {lo}..{hi}"
        );
        // Every detector has ground truth in meter-faults; the others inject only some events,
        // and the overload truth is the physical load above the rating, which not every street reaches.
        for score in &out.scores {
            println!("{name}: {score:?}");
            if name != "meter-faults" && score.windows == 0 {
                continue;
            }
            assert!(
                score.windows > 0,
                "{name}: no ground truth for {}",
                score.detector
            );
            // Known gap (issue #13): the household model's loads are exact constants between
            // events (no supply-voltage variation), so healthy simulated meters repeat one value
            // for long and the stuck-meter detectors are not judged on the simulator until it has
            // measurement variation; zero meters are.
            if ["stuck-meter", "suspect-meters"].contains(&score.detector.as_str()) {
                continue;
            }
            assert_eq!(score.above_chance(), Some(true), "{name}: {score:?}");
        }
    }
}
