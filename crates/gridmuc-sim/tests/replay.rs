//! Replaying measured traces: the three layouts from small made-up fixtures, and the aggregator
//! run over them with injected faults.
#![allow(clippy::unwrap_used)] // tests may unwrap (house rule)

use gridmuc_sim::scenario::ReplayPlan;
use gridmuc_sim::traces::{Layout, SimBenchHouses, TraceBuilder, Traces};
use gridmuc_sim::{AnomalyKind, replay};

fn fixture(name: &str, houses: usize) -> (Traces, Layout) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut b = TraceBuilder::new(
        SimBenchHouses {
            houses,
            ..SimBenchHouses::default()
        },
        houses,
    );
    for (i, line) in text.lines().enumerate() {
        b.push_line(i + 1, line).unwrap();
    }
    let layout = b.layout().unwrap();
    (b.finish().unwrap(), layout)
}

#[test]
fn every_layout_reads_into_the_same_grid() {
    let (long, layout) = fixture("long.csv", 100);
    assert_eq!(layout, Layout::Long);
    assert_eq!(
        (long.houses.len(), long.periods(), long.step),
        (6, 48, 3_600_000)
    );
    assert_eq!(long.whole_days(), 2);
    assert_eq!(long.watts[0][0], 120.0);

    let (london, layout) = fixture("london.csv", 100);
    assert_eq!(layout, Layout::London);
    assert_eq!((london.houses.len(), london.periods()), (2, 48));
    // kWh per half hour × 2 = kW: 0.060 kWh is 120 W.
    assert!((london.watts[0][0] - 120.0).abs() < 1e-3);
    assert_eq!(
        london.watts.iter().flatten().filter(|w| w.is_nan()).count(),
        1
    );

    let (simbench, layout) = fixture("simbench.csv", 10);
    assert_eq!(layout, Layout::SimBench);
    assert_eq!((simbench.houses.len(), simbench.periods()), (10, 192));
    // A house limit keeps the first houses of a long file.
    assert_eq!(fixture("long.csv", 4).0.houses, ["h0", "h1", "h2", "h3"]);
}

#[test]
fn replay_feeds_every_recorded_period_and_injects_labelled_faults() {
    let (traces, _) = fixture("long.csv", 100);
    let plan = ReplayPlan::from_toml_str(
        r#"
name = "fixture"
seed = 7
[[anomalies]]
kind = "house-spike"
day = 0
time = "10:00"
duration_min = 120
magnitude_kw = 12.0
[[anomalies]]
kind = "dead-meter"
day = 1
time = "06:00"
duration_min = 240
"#,
    )
    .unwrap();
    let s = plan
        .scenario_for(6, traces.whole_days(), "2026-03-02".into(), 60, 20.0)
        .unwrap();
    let out = replay(&s, &traces, |_| {});
    assert_eq!(out.labels.len(), 2);
    // 6 houses × 48 hours, less 4 hours of one dead meter.
    assert_eq!(out.accepted, 6 * 48 - 4);
    assert_eq!(out.intervals.len(), 48);
    let spike = out
        .labels
        .iter()
        .find(|l| l.kind == AnomalyKind::HouseSpike)
        .unwrap();
    let clean: f64 = traces.watts.iter().map(|row| f64::from(row[10])).sum();
    let at_ten = &out.intervals[10];
    assert_eq!(spike.start_min, 600);
    assert_eq!(at_ten.true_total_w, (clean + 12_000.0).round() as i64);
    assert!((at_ten.reported_total_w - at_ten.true_total_w).abs() <= 6 * 5);
    // Outside the faults the bot sees the traces, each reading quantised to 10 W.
    let clean_three: f64 = traces.watts.iter().map(|row| f64::from(row[3])).sum();
    let off = (out.intervals[3].reported_total_w - clean_three.round() as i64).abs();
    assert!(off <= 6 * 5, "{off} W off");
    assert!(out.houses_summary.iter().all(|h| h.info.is_none()));
    assert_eq!(replay(&s, &traces, |_| {}).alerts, out.alerts);
}

#[test]
fn a_missing_period_is_a_silent_meter() {
    let (traces, _) = fixture("london.csv", 100);
    let plan = ReplayPlan::from_toml_str("name = \"london\"").unwrap();
    let s = plan
        .scenario_for(2, 1, "2013-01-15".into(), 30, 10.0)
        .unwrap();
    let out = replay(&s, &traces, |_| {});
    assert_eq!(out.accepted, 2 * 48 - 1);
    assert_eq!(out.intervals[20].meters, 1);
}
