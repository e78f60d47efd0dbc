//! `contrib/prometheus`'s alert rules pass `promtool check rules` and their own unit tests.

#![allow(clippy::unwrap_used)]

mod promtool;
use promtool::{check_exposition, contrib, promtool, queried_series, succeeds};

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(mut check) = promtool() else { return };
    check
        .arg("check")
        .arg("rules")
        .arg(contrib("prometheus/alerts.yml"));
    assert!(succeeds(check, "").contains("SUCCESS: 4 rules found"));
    let Some(mut test) = promtool() else { return };
    // Relative to the test file, as its `rule_files` are.
    test.current_dir(contrib("prometheus"))
        .args(["test", "rules", "alerts_test.yml"]);
    assert!(succeeds(test, "").contains("SUCCESS"));
}

#[test]
fn dashboard_and_rules_query_the_bots_series() {
    let names = queried_series();
    for want in [
        "gridmuc_readings_accepted_total",
        "gridmuc_readings_rejected_total",
        "gridmuc_alerts_total",
        "gridmuc_interval_load_watts",
        "gridmuc_rating_watts",
        "gridmuc_reading_age_seconds_bucket",
        "gridmuc_session_replacements_total",
    ] {
        assert!(names.contains(want), "{want} not queried: {names:?}");
    }
}

/// The fresh registry already has every series (rejection reasons and alert kinds start at
/// 0), so the dashboard works from the first scrape; the live test checks a running bot's.
#[test]
fn a_fresh_registry_exposes_every_queried_series_and_passes_promtool() {
    check_exposition(&gridmuc_xmpp::metrics::Metrics::new().render());
}
