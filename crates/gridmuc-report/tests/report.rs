//! A small run written to disk: every table, chart and the markdown appear, and re-rendering from
//! the Parquet files alone gives the same report.

use gridmuc_sim::{Scenario, run};

const SMALL: &str = r#"
name = "tiny"
description = "Twenty homes for one November day."
seed = 3
houses = 20
days = 1
start = "2026-11-24"
transformer_kw = 40.0
[households]
ev_share = 0.3
pv_share = 0.3
[[anomalies]]
kind = "house-spike"
count = 2
magnitude_kw = 15.0
[[anomalies]]
kind = "dead-meter"
[[anomalies]]
kind = "absurd-reading"
"#;

#[test]
fn writes_tables_charts_and_markdown_and_rerenders() {
    let scenario = Scenario::from_toml_str(SMALL).unwrap();
    let out = run(&scenario, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let files = gridmuc_report::write_all(&out, dir.path()).unwrap();
    for table in ["meta", "intervals", "alerts", "labels", "houses", "scores"] {
        for ext in ["parquet", "csv"] {
            assert!(
                dir.path().join(format!("{table}.{ext}")).is_file(),
                "{table}.{ext}"
            );
        }
    }
    for chart in [
        "load",
        "daily_profile",
        "load_duration",
        "house_peaks",
        "scores",
    ] {
        let png = std::fs::read(dir.path().join(format!("{chart}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{chart}.png");
        let svg = std::fs::read_to_string(dir.path().join(format!("{chart}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("<text"),
            "{chart}.svg has text"
        );
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("# Simulation report: tiny"));
    assert!(md.contains("![load](load.png)"));
    assert!(md.contains("| house-spike |"));
    assert_eq!(files.len(), 6 * 2 + 5 * 2 + 1);

    let frames = gridmuc_report::Frames::read(dir.path()).unwrap();
    assert_eq!(frames.intervals.height(), out.intervals.len());
    assert_eq!(gridmuc_report::markdown::render(&frames).unwrap(), md);
    gridmuc_report::rerender(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("report.md")).unwrap(),
        md
    );
}
