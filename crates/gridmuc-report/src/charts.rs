//! The five charts of a report, each drawn once per backend (PNG via the bitmap backend, SVG).
//!
//! Text uses DejaVu Sans compiled into the binary (plotters' `ab_glyph` feature), so rendering
//! works on a bare machine without fontconfig or freetype.

use crate::frames::{Frames, f64_column, str_column};
use crate::{ReportError, Result};
use gridmuc_sim::eval::proportion_ci;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
pub(crate) const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 600);
/// At most this many points per line, so a year-long run still renders quickly and legibly.
const MAX_POINTS: usize = 4000;

/// A chart that can draw itself on any plotters backend.
pub(crate) trait Chart {
    /// File stem, e.g. `load`.
    const STEM: &'static str;
    /// Draws the whole chart.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

pub(crate) fn msg<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The x/y chart `axes` builds from ranges of type `X` and `Y`.
pub(crate) type Axes<'a, DB, X, Y> = ChartContext<
    'a,
    DB,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// Clears `root` to white, then builds the captioned x/y chart every plot uses and draws its mesh.
pub(crate) fn axes<'a, DB, X, Y>(
    root: &'a DrawingArea<DB, Shift>,
    caption: &str,
    x: X,
    y: Y,
    (x_desc, y_desc): (&str, &str),
) -> std::result::Result<Axes<'a, DB, X, Y>, String>
where
    DB: DrawingBackend,
    X: AsRangedCoord,
    Y: AsRangedCoord,
    X::CoordDescType: ValueFormatter<X::Value>,
    Y::CoordDescType: ValueFormatter<Y::Value>,
{
    root.fill(&WHITE).map_err(msg)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FAMILY, 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(msg)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .draw()
        .map_err(msg)?;
    Ok(chart)
}

/// Draws the series legend in the one style all charts share, at `position`.
pub(crate) fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(msg)
}

/// Legend key for a line: a short horizontal stroke.
pub(crate) fn line_key<S: Into<ShapeStyle>>(
    (x, y): (i32, i32),
    style: S,
) -> PathElement<(i32, i32)> {
    PathElement::new(vec![(x, y), (x + 16, y)], style)
}

/// Legend key for a filled area: a small box.
fn box_key<S: Into<ShapeStyle>>((x, y): (i32, i32), style: S) -> Rectangle<(i32, i32)> {
    Rectangle::new([(x, y - 5), (x + 16, y + 5)], style)
}

/// Draws `chart` into `dir` as `<stem>.png` and `<stem>.svg`.
pub(crate) fn save<C: Chart>(chart: &C, dir: &Path) -> Result<Vec<PathBuf>> {
    let err = |message| ReportError::Chart {
        chart: C::STEM,
        message,
    };
    let png = dir.join(format!("{}.png", C::STEM));
    let svg = dir.join(format!("{}.svg", C::STEM));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        chart.draw(&root).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        chart.draw(&root).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(vec![png, svg])
}

/// Draws every chart into `dir` as PNG and SVG.
pub fn draw_all(frames: &Frames, dir: &Path) -> Result<Vec<PathBuf>> {
    prepare(dir)?;
    let mut files = save(&LoadChart::new(frames)?, dir)?;
    files.extend(save(&ProfileChart::new(frames)?, dir)?);
    files.extend(save(&DurationChart::new(frames)?, dir)?);
    files.extend(save(&PeaksChart::new(frames)?, dir)?);
    files.extend(save(&ScoreTable::new(frames)?, dir)?);
    Ok(files)
}

/// Registers the bundled font (once per process) and creates `dir`: what every chart needs first.
pub(crate) fn prepare(dir: &Path) -> Result<()> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is compiled in and known to parse; a failure would only lose text.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
    std::fs::create_dir_all(dir).map_err(crate::io_err(dir))
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi { (0.0, 1.0) } else { (lo, hi) }
}

/// Bucketed maxima so a long run keeps its peaks when thinned to at most `MAX_POINTS` points.
fn thin(xs: &[f64], ys: &[f64]) -> Vec<(f64, f64)> {
    let step = xs.len().div_ceil(MAX_POINTS).max(1);
    xs.chunks(step)
        .zip(ys.chunks(step))
        .map(|(x, y)| (x[0], y.iter().copied().fold(f64::MIN, f64::max)))
        .collect()
}

fn kind_colour(kind: &str) -> RGBColor {
    match kind {
        "overload" => RGBColor(200, 30, 30),
        "aggregate-spike" => RGBColor(230, 130, 0),
        "house-spike" => RGBColor(130, 50, 170),
        _ => RGBColor(90, 90, 90),
    }
}

/// Neighbourhood load against the transformer rating, with alerts and injected events marked.
struct LoadChart {
    reported: Vec<(f64, f64)>,
    physical: Vec<(f64, f64)>,
    rating_kw: f64,
    warn_kw: f64,
    /// (hours, kW at that time, kind) of raised alerts.
    alerts: Vec<(f64, f64, String)>,
    /// (start h, end h) of injected events.
    events: Vec<(f64, f64)>,
    x_max: f64,
}

impl LoadChart {
    fn new(f: &Frames) -> Result<LoadChart> {
        let start = f.meta_f64("start_ms")?;
        let rating_kw = f.meta_f64("rating_w")? / 1000.0;
        let warn_kw = rating_kw * f.meta_f64("warn_fraction")?;
        let hours = |ms: f64| (ms - start) / 3_600_000.0;
        let t: Vec<f64> = f64_column(&f.intervals, "start_ms")?
            .into_iter()
            .map(hours)
            .collect();
        let kw = |name| -> Result<Vec<f64>> {
            Ok(f64_column(&f.intervals, name)?
                .into_iter()
                .map(|w| w / 1000.0)
                .collect())
        };
        let (reported_kw, true_kw) = (kw("reported_total_w")?, kw("true_total_w")?);
        let states = str_column(&f.alerts, "state")?;
        let kinds = str_column(&f.alerts, "kind")?;
        let alerts = f64_column(&f.alerts, "at_ms")?
            .into_iter()
            .zip(states.iter().zip(kinds))
            .filter(|(_, (s, _))| s.as_str() == "raised")
            .map(|(at, (_, k))| {
                let h = hours(at);
                let i = t.partition_point(|x| *x < h).min(t.len().saturating_sub(1));
                (h, reported_kw.get(i).copied().unwrap_or(0.0), k)
            })
            .collect();
        let events = f64_column(&f.labels, "start_ms")?
            .into_iter()
            .zip(f64_column(&f.labels, "end_ms")?)
            .map(|(s, e)| (hours(s), hours(e)))
            .collect();
        Ok(LoadChart {
            reported: thin(&t, &reported_kw),
            physical: thin(&t, &true_kw),
            rating_kw,
            warn_kw,
            alerts,
            events,
            x_max: t.last().copied().unwrap_or(1.0).max(1.0),
        })
    }
}

impl Chart for LoadChart {
    const STEM: &'static str = "load";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let (lo, hi) = range(self.physical.iter().chain(&self.reported).map(|p| p.1));
        let y = (lo.min(0.0) * 1.1)..(hi.max(self.rating_kw) * 1.1);
        let mut chart = axes(
            root,
            "Neighbourhood load vs transformer rating",
            0.0..self.x_max,
            y.clone(),
            ("hours since start", "kW"),
        )?;
        chart
            .draw_series(self.events.iter().map(|(s, e)| {
                Rectangle::new(
                    [(*s, y.start), (*e, y.end)],
                    RGBColor(255, 200, 0).mix(0.18).filled(),
                )
            }))
            .map_err(msg)?
            .label("injected event")
            .legend(|p| box_key(p, RGBColor(255, 200, 0).mix(0.4).filled()));
        chart
            .draw_series(LineSeries::new(
                self.physical.iter().copied(),
                RGBColor(160, 160, 160).stroke_width(1),
            ))
            .map_err(msg)?
            .label("physical load")
            .legend(|p| line_key(p, RGBColor(160, 160, 160)));
        chart
            .draw_series(LineSeries::new(
                self.reported.iter().copied(),
                BLUE.stroke_width(1),
            ))
            .map_err(msg)?
            .label("reported (aggregator)")
            .legend(|p| line_key(p, BLUE));
        for (value, label, colour) in [
            (self.rating_kw, "rating", RED),
            (self.warn_kw, "warning line", RGBColor(230, 130, 0)),
        ] {
            chart
                .draw_series(LineSeries::new(
                    vec![(0.0, value), (self.x_max, value)],
                    colour.stroke_width(2),
                ))
                .map_err(msg)?
                .label(label)
                .legend(move |p| line_key(p, colour.stroke_width(2)));
        }
        for kind in ["overload", "aggregate-spike", "house-spike"] {
            let colour = kind_colour(kind);
            chart
                .draw_series(
                    self.alerts
                        .iter()
                        .filter(|a| a.2 == kind)
                        .map(|(h, kw, _)| TriangleMarker::new((*h, *kw), 7, colour.filled())),
                )
                .map_err(msg)?
                .label(format!("alert: {kind}"))
                .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 6, colour.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// Average day: mean per-house load by time of day with the p5–p95 band across houses.
struct ProfileChart {
    mean: Vec<(f64, f64)>,
    p5: Vec<(f64, f64)>,
    p95: Vec<(f64, f64)>,
}

impl ProfileChart {
    fn new(f: &Frames) -> Result<ProfileChart> {
        let interval = f.meta_f64("interval_ms")?.max(1.0);
        let per_day = (86_400_000.0 / interval).round().max(1.0) as usize;
        let start = f64_column(&f.intervals, "start_ms")?;
        let mut sums = vec![[0.0f64; 4]; per_day];
        for (name, k) in [("mean_w", 0), ("p5_w", 1), ("p95_w", 2)] {
            for (v, t) in f64_column(&f.intervals, name)?.into_iter().zip(&start) {
                let slot = ((t.rem_euclid(86_400_000.0)) / interval) as usize % per_day;
                if v.is_finite() {
                    sums[slot][k] += v / 1000.0;
                    if k == 0 {
                        sums[slot][3] += 1.0;
                    }
                }
            }
        }
        let series = |k: usize| {
            sums.iter()
                .enumerate()
                .filter(|(_, s)| s[3] > 0.0)
                .map(|(i, s)| (i as f64 * interval / 3_600_000.0, s[k] / s[3]))
                .collect::<Vec<_>>()
        };
        Ok(ProfileChart {
            mean: series(0),
            p5: series(1),
            p95: series(2),
        })
    }
}

impl Chart for ProfileChart {
    const STEM: &'static str = "daily_profile";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let (lo, hi) = range(self.p5.iter().chain(&self.p95).map(|p| p.1));
        let mut chart = axes(
            root,
            "Average day per house: mean with p5–p95 band across houses",
            0.0..24.0,
            (lo.min(0.0) * 1.1)..(hi * 1.1).max(0.5),
            ("hour of day (UTC)", "kW per house"),
        )?;
        let band: Vec<(f64, f64)> = self
            .p95
            .iter()
            .copied()
            .chain(self.p5.iter().rev().copied())
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, BLUE.mix(0.18).filled())))
            .map_err(msg)?
            .label("p5–p95 across houses")
            .legend(|p| box_key(p, BLUE.mix(0.3).filled()));
        chart
            .draw_series(LineSeries::new(
                self.mean.iter().copied(),
                BLUE.stroke_width(2),
            ))
            .map_err(msg)?
            .label("mean")
            .legend(|p| line_key(p, BLUE.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// Load-duration curve: how much of the time the physical load exceeds each level.
struct DurationChart {
    curve: Vec<(f64, f64)>,
    rating_kw: f64,
}

impl DurationChart {
    fn new(f: &Frames) -> Result<DurationChart> {
        let mut kw: Vec<f64> = f64_column(&f.intervals, "true_total_w")?
            .into_iter()
            .map(|w| w / 1000.0)
            .collect();
        kw.sort_by(|a, b| b.total_cmp(a));
        let n = kw.len().max(1) as f64;
        let pct: Vec<f64> = (0..kw.len()).map(|i| 100.0 * i as f64 / n).collect();
        Ok(DurationChart {
            curve: thin(&pct, &kw),
            rating_kw: f.meta_f64("rating_w")? / 1000.0,
        })
    }
}

impl Chart for DurationChart {
    const STEM: &'static str = "load_duration";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let (lo, hi) = range(self.curve.iter().map(|p| p.1));
        let mut chart = axes(
            root,
            "Load-duration curve (physical load)",
            0.0..100.0,
            (lo.min(0.0) * 1.1)..(hi.max(self.rating_kw) * 1.1),
            ("% of time load is at least this", "kW"),
        )?;
        chart
            .draw_series(
                AreaSeries::new(self.curve.iter().copied(), 0.0, BLUE.mix(0.2)).border_style(BLUE),
            )
            .map_err(msg)?
            .label("neighbourhood load")
            .legend(|p| box_key(p, BLUE.mix(0.3).filled()));
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, self.rating_kw), (100.0, self.rating_kw)],
                RED.stroke_width(2),
            ))
            .map_err(msg)?
            .label("transformer rating")
            .legend(|p| line_key(p, RED.stroke_width(2)));
        // MiddleRight is plotters' default placement, which this chart has always used.
        legend(&mut chart, SeriesLabelPosition::MiddleRight)
    }
}

/// Histogram of each house's highest interval load.
struct PeaksChart {
    /// (bin start kW, count).
    bins: Vec<(f64, u32)>,
    width: f64,
}

impl PeaksChart {
    fn new(f: &Frames) -> Result<PeaksChart> {
        let peaks: Vec<f64> = f64_column(&f.houses, "peak_w")?
            .into_iter()
            .filter(|v| v.is_finite())
            .map(|w| w / 1000.0)
            .collect();
        let (lo, hi) = range(peaks.iter().copied());
        let width = 1.0;
        let first = (lo / width).floor() * width;
        let n = (((hi - first) / width).floor() as usize + 1).min(200);
        let mut bins: Vec<(f64, u32)> = (0..n).map(|i| (first + i as f64 * width, 0)).collect();
        for p in peaks {
            let i = (((p - first) / width) as usize).min(n - 1);
            bins[i].1 += 1;
        }
        Ok(PeaksChart { bins, width })
    }
}

impl Chart for PeaksChart {
    const STEM: &'static str = "house_peaks";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let x0 = self.bins.first().map_or(0.0, |b| b.0);
        let x1 = self.bins.last().map_or(1.0, |b| b.0 + self.width);
        let top = self.bins.iter().map(|b| b.1).max().unwrap_or(1).max(1);
        let mut chart = axes(
            root,
            "Distribution of per-house peak load",
            x0..x1,
            0u32..(top + top / 10 + 1),
            ("house peak (kW, highest reporting interval)", "houses"),
        )?;
        chart
            .draw_series(self.bins.iter().map(|(x, c)| {
                Rectangle::new(
                    [(*x + 0.05, 0), (*x + self.width - 0.05, *c)],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(msg)?;
        Ok(())
    }
}

/// The per-detector score table, rendered as an image so the report shows it next to the charts.
struct ScoreTable {
    rows: Vec<Vec<String>>,
}

const SCORE_HEADER: [&str; 8] = [
    "detector",
    "windows",
    "alerts",
    "precision",
    "recall",
    "F1",
    "median delay",
    "NAB",
];

/// One row of formatted score cells per detector (shared by the chart and `report.md`).
pub fn score_rows(f: &Frames) -> Result<Vec<Vec<String>>> {
    let s = &f.scores;
    let detectors = str_column(s, "detector")?;
    let num = |name| f64_column(s, name);
    let (windows, detected, alerts) = (num("windows")?, num("detected")?, num("alerts")?);
    let true_alerts = num("true_alerts")?;
    let (precision, recall, f1) = (num("precision")?, num("recall")?, num("f1")?);
    // A proportion with its exact 95 % interval, so a score from 4 windows reads as such.
    let with_ci = |v: f64, k: f64, n: f64| {
        if !v.is_finite() {
            return "–".to_owned();
        }
        match proportion_ci(k as usize, n as usize) {
            Some((lo, hi)) => format!("{v:.2} ({lo:.2}–{hi:.2})"),
            None => format!("{v:.2}"),
        }
    };
    let (delay, nab, chance) = (num("median_delay_s")?, num("nab")?, num("chance_f1")?);
    Ok((0..detectors.len())
        .map(|i| {
            let or_dash = |v: f64, fmt: &dyn Fn(f64) -> String| {
                if v.is_finite() { fmt(v) } else { "–".into() }
            };
            vec![
                detectors[i].clone(),
                format!("{} ({} hit)", windows[i], detected[i]),
                format!("{}", alerts[i]),
                with_ci(precision[i], true_alerts[i], alerts[i]),
                with_ci(recall[i], detected[i], windows[i]),
                format!("{:.2} (chance {:.3})", f1[i], chance[i]),
                or_dash(delay[i], &|v| format!("{v:.0} s")),
                or_dash(nab[i], &|v| format!("{v:.1}")),
            ]
        })
        .collect())
}

impl ScoreTable {
    fn new(f: &Frames) -> Result<ScoreTable> {
        Ok(ScoreTable {
            rows: score_rows(f)?,
        })
    }
}

impl Chart for ScoreTable {
    const STEM: &'static str = "scores";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(msg)?;
        let cols = [20, 200, 330, 420, 530, 630, 860, 1040];
        let title = (
            "Detector scores (NAB standard profile: 0 = never alerting, 100 = perfect)",
            (FAMILY, 22).into_font(),
        );
        root.draw(&Text::new(title.0, (20, 20), title.1))
            .map_err(msg)?;
        let header = (FAMILY, 17).into_font().style(FontStyle::Bold);
        for (x, h) in cols.iter().zip(SCORE_HEADER) {
            root.draw(&Text::new(h, (*x, 80), header.clone()))
                .map_err(msg)?;
        }
        root.draw(&PathElement::new(vec![(20, 105), (1180, 105)], BLACK))
            .map_err(msg)?;
        for (r, row) in self.rows.iter().enumerate() {
            let y = 120 + 40 * r as i32;
            for (x, cell) in cols.iter().zip(row) {
                root.draw(&Text::new(cell.as_str(), (*x, y), (FAMILY, 16).into_font()))
                    .map_err(msg)?;
            }
        }
        Ok(())
    }
}
