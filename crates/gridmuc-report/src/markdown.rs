//! `report.md`: what was simulated, the charts, the detector scores and the fault counters.

use crate::charts::score_rows;
use crate::frames::{Frames, f64_column, str_column};
use crate::{Result, io_err};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes `report.md` into `dir`, embedding the charts by relative path.
pub fn write(f: &Frames, dir: &Path) -> Result<PathBuf> {
    let text = render(f)?;
    let path = dir.join("report.md");
    std::fs::write(&path, text).map_err(io_err(&path))?;
    Ok(path)
}

/// The markdown text (pure, for tests).
pub fn render(f: &Frames) -> Result<String> {
    let name = f.meta("scenario").unwrap_or_default();
    let houses = f.meta_f64("houses")?;
    let rating_kw = f.meta_f64("rating_w")? / 1000.0;
    let true_w = f64_column(&f.intervals, "true_total_w")?;
    let peak_kw = true_w.iter().copied().fold(f64::MIN, f64::max) / 1000.0;
    let over = true_w.iter().filter(|w| **w / 1000.0 > rating_kw).count();
    let kwh = f64_column(&f.houses, "mean_daily_kwh")?;
    let mean_kwh = kwh.iter().sum::<f64>() / kwh.len().max(1) as f64;
    let expected = (
        f.meta_f64("expected_kwh_min")?,
        f.meta_f64("expected_kwh_max")?,
    );
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(s, "# Simulation report: {name}\n");
    let _ = writeln!(s, "{}\n", f.meta("description").unwrap_or_default());
    let _ = writeln!(
        s,
        "- {} houses × {} days, reporting interval {} s, transformer rating {rating_kw:.0} kW",
        houses,
        f.meta("days").unwrap_or_default(),
        f.meta_f64("interval_ms")? / 1000.0
    );
    let _ = writeln!(
        s,
        "- physical peak {peak_kw:.1} kW ({:.2} kW per house, one-interval peak); {over} intervals above the rating",
        peak_kw / houses.max(1.0)
    );
    let _ = writeln!(
        s,
        "- mean daily net energy per house {mean_kwh:.1} kWh (scenario expects {:.0}–{:.0} kWh) {}",
        expected.0,
        expected.1,
        if (expected.0..=expected.1).contains(&mean_kwh) {
            "✓"
        } else {
            "✗ outside range"
        }
    );
    let _ = writeln!(
        s,
        "- readings accepted by the aggregator: {}; deliberately invalid readings injected: {}\n",
        f.meta("accepted").unwrap_or_default(),
        f.meta("injected_bad_readings").unwrap_or_default()
    );
    let _ = writeln!(s, "## Load vs transformer rating\n\n![load](load.png)\n");
    let _ = writeln!(
        s,
        "Blue: the total the aggregator saw from reporting meters; grey: the physical load (which includes houses whose meter is dead or lying). Shaded: injected events. Triangles: raised alerts.\n"
    );
    let _ = writeln!(
        s,
        "## Daily profile\n\n![daily profile](daily_profile.png)\n"
    );
    let _ = writeln!(
        s,
        "## Load-duration curve\n\n![load duration](load_duration.png)\n"
    );
    let _ = writeln!(s, "## Per-house peaks\n\n![house peaks](house_peaks.png)\n");
    let _ = writeln!(s, "## Detector scores\n\n![scores](scores.png)\n");
    let _ = writeln!(
        s,
        "| detector | windows | alerts | precision (95 % CI) | recall (95 % CI) | F1 | median delay | NAB |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for row in score_rows(f)? {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    let _ = writeln!(
        s,
        "\nWindows: overload = runs where the physical load, through the same IEC 60076-7 model, heats the hot spot to its warning temperature, opened an hour early for the forecast; aggregate-spike = injected neighbourhood overloads and EV surges; house-spike = injected single-house spikes (matched to the right house through the simulator's private nick map). Delay = alert emission (interval end + grace) − event start. NAB: standard profile (FP 0.11, FN 1.0), normalised so 0 is a detector that never alerts and 100 is perfect. Chance F1: the same number of alerts at random times (and houses). Intervals: exact (Clopper–Pearson) 95 % on precision (true alerts of alerts) and recall (windows hit of windows).\n"
    );
    let _ = writeln!(s, "## Injected anomalies and rejections\n");
    let kinds = str_column(&f.labels, "kind")?;
    let mut counts: Vec<(String, usize)> = Vec::new();
    for k in kinds {
        match counts.iter_mut().find(|(n, _)| *n == k) {
            Some(c) => c.1 += 1,
            None => counts.push((k, 1)),
        }
    }
    let _ = writeln!(s, "| injected kind | events |\n|---|---|");
    for (k, c) in &counts {
        let _ = writeln!(s, "| {k} | {c} |");
    }
    let keys = str_column(&f.meta, "key")?;
    let rejected: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            k.strip_prefix("rejected_")
                .map(|kind| format!("{kind}={}", f.meta(k).unwrap_or_default()))
        })
        .collect();
    let _ = writeln!(
        s,
        "\nRejections counted by the aggregator: {}. Dead (silent) meters show only as a drop in reporting meters; stuck and zero meters are scored above.\n",
        if rejected.is_empty() {
            "none".to_owned()
        } else {
            rejected.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "Tables: `intervals`, `alerts`, `labels`, `houses`, `scores`, `meta` as `.parquet` and `.csv` beside this file."
    );
    Ok(s)
}
