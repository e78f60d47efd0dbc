//! The realism report: the simulator's figures over several seeds beside a real data set's,
//! as `reports/realism/report.md` with the daily shapes and load-duration curves as charts.

use crate::Result;
use crate::charts::{Chart, axes, legend, line_key, msg, prepare, save};
use gridmuc_sim::realism::{HALF_HOURS, LDC_POINTS, PERCENTILES, Realism, SEASONS, correlation};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Everything the realism report shows; the caller measures, this module only renders.
#[derive(Clone, Debug)]
pub struct RealismReport {
    /// The simulator's figures, one per seed.
    pub sim: Vec<Realism>,
    /// Seeds, in the order of `sim`.
    pub seeds: Vec<u64>,
    /// The real data set's figures.
    pub real: Realism,
    /// What the real data is, for headings.
    pub real_label: String,
    /// How the real houses were built, for the introduction (may be empty).
    pub real_note: String,
    /// ADMD per house (W) for each street size: (houses, per seed, real).
    pub admd: Vec<(usize, Vec<f64>, f64)>,
    /// Kettle boils per kettle-owning house per day, per seed.
    pub kettle_per_day: Vec<f64>,
    /// Highest one-minute load of any simulated house (W), per seed.
    pub max_minute_w: Vec<f64>,
    /// Published figures to show beside, as (figure, value, source).
    pub published: Vec<(String, String, String)>,
    /// The command that reproduces the report.
    pub command: String,
}

const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
];

struct Shapes<'a>(&'a RealismReport);

impl Chart for Shapes<'_> {
    const STEM: &'static str = "shapes";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let r = self.0;
        let top = r
            .sim
            .iter()
            .chain([&r.real])
            .flat_map(|x| x.shapes.iter().flatten())
            .fold(0.0f64, |a, b| a.max(*b));
        let mut chart = axes(
            root,
            &format!(
                "Mean day per house by season: simulator (seed {}, solid) vs {} (dashed)",
                r.seeds.first().copied().unwrap_or(0),
                r.real_label
            ),
            0.0..24.0,
            0.0..top * 1.1,
            ("hour of day (UTC)", "W per house"),
        )?;
        let hours = |s: &[f64; HALF_HOURS]| -> Vec<(f64, f64)> {
            s.iter()
                .enumerate()
                .map(|(i, w)| (i as f64 / 2.0 + 0.25, *w))
                .collect()
        };
        for (i, season) in SEASONS.iter().enumerate() {
            let colour = PALETTE[i];
            if let Some(sim) = r.sim.first() {
                chart
                    .draw_series(LineSeries::new(
                        hours(&sim.shapes[i]),
                        colour.stroke_width(2),
                    ))
                    .map_err(msg)?
                    .label(*season)
                    .legend(move |p| line_key(p, colour.stroke_width(2)));
            }
            chart
                .draw_series(DashedLineSeries::new(
                    hours(&r.real.shapes[i]),
                    6,
                    4,
                    colour.stroke_width(2),
                ))
                .map_err(msg)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

struct Duration<'a>(&'a RealismReport);

impl Chart for Duration<'_> {
    const STEM: &'static str = "load_duration";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let r = self.0;
        let top = r
            .sim
            .iter()
            .chain([&r.real])
            .flat_map(|x| x.ldc.iter())
            .fold(0.0f64, |a, b| a.max(*b));
        let mut chart = axes(
            root,
            "Street load-duration curve (mean over houses ÷ its mean)",
            0.0..100.0,
            0.0..top * 1.1,
            ("% of the time the load is at least", "load ÷ mean"),
        )?;
        let points = |x: &Realism| -> Vec<(f64, f64)> {
            LDC_POINTS
                .iter()
                .copied()
                .zip(x.ldc.iter().copied())
                .collect()
        };
        for (sim, seed) in r.sim.iter().zip(&r.seeds) {
            let colour = PALETTE[0].mix(0.6);
            chart
                .draw_series(LineSeries::new(points(sim), colour.stroke_width(2)))
                .map_err(msg)?
                .label(format!("simulator seed {seed}"))
                .legend(move |p| line_key(p, colour.stroke_width(2)));
        }
        let real = PALETTE[2];
        chart
            .draw_series(LineSeries::new(points(&r.real), real.stroke_width(3)))
            .map_err(msg)?
            .label(r.real_label.as_str())
            .legend(move |p| line_key(p, real.stroke_width(3)));
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// `lo–hi` over seeds with `decimals` places, or one value when all seeds agree.
fn range(values: impl Iterator<Item = f64>, decimals: usize) -> String {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (a, b) = (format!("{lo:.decimals$}"), format!("{hi:.decimals$}"));
    if a == b { a } else { format!("{a}–{b}") }
}

/// The markdown of the report.
pub fn render(r: &RealismReport) -> String {
    let mut s = String::new();
    let sims = |f: &dyn Fn(&Realism) -> f64, d: usize| range(r.sim.iter().map(f), d);
    let first = r.sim.first().unwrap_or(&r.real);
    let _ = writeln!(
        s,
        "# Simulator vs real household loads\n\nThe simulator: {} gas-heated houses without EV, PV or heat pump, {:.0} days from \
         1 January, at {}-minute means, seeds {}; figures are the **range over seeds** (lowest–highest), \
         never the best seed. Real: {} ({} houses, {:.0} days). {}\n",
        first.houses,
        first.days,
        first.step / 60_000,
        r.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        r.real_label,
        r.real.houses,
        r.real.days,
        r.real_note,
    );
    let _ = writeln!(
        s,
        "| figure | simulator | {} |\n|---|---:|---:|",
        r.real_label
    );
    let mut row = |name: &str, f: &dyn Fn(&Realism) -> f64, d: usize| {
        let _ = writeln!(
            s,
            "| {name} | {} | {} |",
            sims(f, d),
            range(std::iter::once(f(&r.real)), d)
        );
    };
    row(
        "annual energy per house, median (kWh)",
        &|x| x.annual_kwh[1],
        0,
    );
    row(
        "annual energy per house, lowest house (kWh)",
        &|x| x.annual_kwh[0],
        0,
    );
    row(
        "annual energy per house, highest house (kWh)",
        &|x| x.annual_kwh[2],
        0,
    );
    row("mean per house (W)", &|x| x.mean_w, 0);
    for (i, p) in PERCENTILES.iter().enumerate() {
        row(
            &format!("percentile {p} of one house's period means (W)"),
            &|x| x.percentiles_w[i],
            0,
        );
    }
    row(
        "baseload: median house's 1st percentile (W)",
        &|x| x.baseload_w,
        0,
    );
    row("peak ÷ mean, median house", &|x| x.peak_over_mean, 1);
    row(
        "highest period mean of any house (kW)",
        &|x| x.max_house_w / 1000.0,
        1,
    );
    row(
        "winter ÷ summer mean (DJF ÷ JJA)",
        &|x| x.winter_over_summer,
        2,
    );
    row(
        "summer evening peak ÷ daily mean (16–22 h)",
        &|x| x.summer_evening_peak_over_mean,
        2,
    );
    row(
        "one house's reading (10 W steps) equal to its previous one (%)",
        &|x| 100.0 * x.repeat_share,
        1,
    );
    row(
        "longest run of one reading of any house (min)",
        &|x| x.longest_repeat.0,
        0,
    );
    row("…at the reading (W)", &|x| x.longest_repeat.1, 0);
    for (i, p) in LDC_POINTS.iter().enumerate() {
        row(
            &format!("street load-duration curve at {p} % of the time (÷ mean)"),
            &|x| x.ldc[i],
            2,
        );
    }
    let _ = writeln!(
        s,
        "| kettle boils per kettle-owning house per day | {} | – |\n| highest one-minute load of any house (kW) | {} | – |\n",
        range(r.kettle_per_day.iter().copied(), 2),
        range(r.max_minute_w.iter().map(|w| w / 1000.0), 1)
    );
    let _ = writeln!(
        s,
        "## Daily shape correlation with {} by season\n\n| season | Pearson r, simulator vs real (half-hourly mean day) |\n|---|---:|",
        r.real_label
    );
    for (i, season) in SEASONS.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {season} | {} |",
            range(
                r.sim
                    .iter()
                    .map(|x| correlation(&x.shapes[i], &r.real.shapes[i])),
                2
            )
        );
    }
    let _ = writeln!(
        s,
        "\n## After-diversity maximum demand (highest 30-minute mean of the street ÷ houses)\n\n| houses | simulator (kW per house) | {} |\n|---:|---:|---:|",
        r.real_label
    );
    for (n, sim, real) in &r.admd {
        let _ = writeln!(
            s,
            "| {n} | {} | {:.2} |",
            range(sim.iter().map(|w| w / 1000.0), 2),
            real / 1000.0
        );
    }
    if !r.published.is_empty() {
        let _ = writeln!(
            s,
            "\n## Published figures\n\n| figure | value | source |\n|---|---|---|"
        );
        for (f, v, src) in &r.published {
            let _ = writeln!(s, "| {f} | {v} | {src} |");
        }
    }
    let _ = writeln!(
        s,
        "\n![daily shapes](shapes.png)\n\n![load-duration curves](load_duration.png)\n\n## Reproduce\n\n```sh\n{}\n```",
        r.command
    );
    s
}

/// Writes `report.md` and the two charts (PNG and SVG) into `dir`.
pub fn write_realism(r: &RealismReport, dir: &Path) -> Result<Vec<PathBuf>> {
    prepare(dir)?;
    let mut files = save(&Shapes(r), dir)?;
    files.extend(save(&Duration(r), dir)?);
    let md = dir.join("report.md");
    std::fs::write(&md, render(r)).map_err(crate::io_err(&md))?;
    files.push(md);
    Ok(files)
}
