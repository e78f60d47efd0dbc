//! `reports/privacy/`: the linkage experiment's tables (CSV), chart and `report.md` —
//! pseudonymous mode as the baseline, private mode's leader alone and leader plus XMPP server.

use crate::charts::{Chart, FAMILY, axes, legend, line_key, msg, prepare, save};
use crate::frames::{col_of, write_csv};
use crate::{Result, io_err};
use gridmuc_sim::linkage::aggregates::{AggregateAttack, AggregateRow};
use gridmuc_sim::linkage::features::FeatureSet;
use gridmuc_sim::linkage::participation::{ALL_LINKED, ParticipationRow};
use gridmuc_sim::linkage::{LinkageOutput, LinkageRow};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Facts about the run that the simulator cannot know (it reads no clock).
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Wall-clock seconds of the whole experiment.
    pub runtime_s: f64,
    /// Command line that reproduces the run.
    pub command: String,
}

/// Writes `linkage.csv`, `participation.csv`, `presence.csv`, `aggregate_attacks.csv`,
/// `run.csv`, the chart and `report.md` into `dir`.
pub fn write_privacy(out: &LinkageOutput, info: &RunInfo, dir: &Path) -> Result<Vec<PathBuf>> {
    prepare(dir)?;
    let mut files = Vec::new();
    for (name, mut df) in frames(out, info)? {
        files.push(write_csv(&mut df, dir, name)?);
    }
    files.extend(save(&LinkageChart::new(out), dir)?);
    let path = dir.join("report.md");
    std::fs::write(&path, render(out, info)).map_err(io_err(&path))?;
    files.push(path);
    Ok(files)
}

fn frames(out: &LinkageOutput, info: &RunInfo) -> Result<[(&'static str, DataFrame); 5]> {
    let r = &out.rows;
    let linkage = DataFrame::new_infer_height(vec![
        col_of("houses", r, |x| x.houses as i64),
        col_of("lifetime", r, |x| x.lifetime.clone()),
        col_of("features", r, |x| x.features.as_str()),
        col_of("nicknames", r, |x| x.nicknames as i64),
        col_of("mean_readings", r, |x| x.mean_readings),
        col_of("top1", r, |x| x.top1),
        col_of("top5", r, |x| x.top5),
        col_of("chance_top1", r, LinkageRow::chance_top1),
        col_of("chance_top5", r, LinkageRow::chance_top5),
        col_of("mean_rank", r, |x| x.mean_rank),
        col_of("matched_top1", r, |x| x.assigned_top1),
    ])?;
    let p = &out.participation;
    let participation = DataFrame::new_infer_height(vec![
        col_of("outages", p, |x| x.outages.clone()),
        col_of("houses", p, |x| x.houses as i64),
        col_of("lifetime", p, |x| x.lifetime.clone()),
        col_of("nicknames", p, |x| x.nicknames as i64),
        col_of("with_gap", p, |x| x.with_gap),
        col_of("top1", p, |x| x.top1),
        col_of("top5", p, |x| x.top5),
        col_of("chance_top1", p, ParticipationRow::chance_top1),
        col_of("mean_rank", p, |x| x.mean_rank),
    ])?;
    let f = &out.presence;
    let presence = DataFrame::new_infer_height(vec![
        col_of("outages", f, |x| x.outages.clone()),
        col_of("houses", f, |x| x.houses as i64),
        col_of("missed_share", f, |x| x.missed_share),
        col_of("houses_with_outage", f, |x| x.houses_with_outage as i64),
        col_of("isolating_per_day", f, |x| x.isolating_per_day),
    ])?;
    let a = &out.aggregate_rows;
    let aggregates = DataFrame::new_infer_height(vec![
        col_of("houses", a, |x| x.houses as i64),
        col_of("attack", a, |x| x.attack.as_str()),
        col_of("noise", a, |x| x.noise.clone()),
        col_of("noise_sd_w", a, |x| x.noise_sd_w),
        col_of("trials", a, |x| x.trials as i64),
        col_of("top1", a, |x| x.top1),
        col_of("top5", a, |x| x.top5),
        col_of("chance_top1", a, |x| 1.0 / x.houses as f64),
        col_of("rmse_w", a, |x| x.rmse_w),
        col_of("median_abs_err_w", a, |x| x.median_abs_err_w),
        col_of("within_50_w", a, |x| x.within_50_w),
        col_of("bucket_hit", a, |x| x.bucket_hit),
        col_of("bucket_certain", a, |x| x.bucket_certain),
        col_of("hist_median_abs_err_w", a, |x| x.hist_median_abs_err_w),
    ])?;
    let c = &out.config;
    let houses: Vec<String> = c.houses.iter().map(usize::to_string).collect();
    let facts: Vec<(&str, String)> = vec![
        ("seed", c.seed.to_string()),
        ("houses", houses.join(",")),
        ("days", c.days.to_string()),
        ("training_days", c.training_days.to_string()),
        ("interval_min", c.interval_min.to_string()),
        ("buckets", c.buckets.len().to_string()),
        ("mean_house_w", format!("{:.1}", out.mean_house_w)),
        ("house_sd_w", format!("{:.1}", out.house_sd_w)),
        ("runtime_s", format!("{:.1}", info.runtime_s)),
        ("command", info.command.clone()),
    ];
    let run = DataFrame::new_infer_height(vec![
        col_of("key", &facts, |f| f.0),
        col_of("value", &facts, |f| f.1.clone()),
    ])?;
    Ok([
        ("linkage", linkage),
        ("participation", participation),
        ("presence", presence),
        ("aggregate_attacks", aggregates),
        ("run", run),
    ])
}

const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 90, 200),
    RGBColor(230, 130, 0),
    RGBColor(30, 150, 60),
    RGBColor(200, 30, 30),
    RGBColor(130, 50, 170),
];

/// Points (houses, % top-1), one per neighbourhood size with rows, averaging the rows `keep`
/// selects at that size.
fn points<R>(
    sizes: &[usize],
    rows: &[R],
    keep: impl Fn(&R, usize) -> Option<f64>,
) -> Vec<(f64, f64)> {
    sizes
        .iter()
        .filter_map(|&n| {
            let hits: Vec<f64> = rows.iter().filter_map(|r| keep(r, n)).collect();
            (!hits.is_empty()).then(|| {
                (
                    n as f64,
                    100.0 * hits.iter().sum::<f64>() / hits.len() as f64,
                )
            })
        })
        .collect()
}

/// Top-1 success against neighbourhood size: the full pseudonymous attack per nickname
/// lifetime, private mode's participation attack (the last outage model), and chance.
struct LinkageChart {
    /// (label, points (houses, % top-1)).
    lines: Vec<(String, Vec<(f64, f64)>)>,
    /// (label, points) of private mode: per nickname, and all nicknames linked.
    private: Vec<(String, Vec<(f64, f64)>)>,
    chance: Vec<(f64, f64)>,
    x: (f64, f64),
}

impl LinkageChart {
    fn new(out: &LinkageOutput) -> LinkageChart {
        let sizes = &out.config.houses;
        let lines = out
            .config
            .lifetimes
            .iter()
            .map(|l| {
                let pts = points(sizes, &out.rows, |r, n| {
                    (r.houses == n && r.features == FeatureSet::Full && r.lifetime == l.label)
                        .then_some(r.top1)
                });
                (format!("pseudonymous, {}", l.label), pts)
            })
            .collect();
        let model = out.config.outages.last().map(|o| o.label.as_str());
        let private = |linked: bool| {
            points(sizes, &out.participation, |r, n| {
                (r.houses == n
                    && Some(r.outages.as_str()) == model
                    && (r.lifetime == ALL_LINKED) == linked)
                    .then_some(r.top1)
            })
        };
        let lo = sizes.iter().copied().min().unwrap_or(1) as f64;
        let hi = sizes.iter().copied().max().unwrap_or(1) as f64;
        LinkageChart {
            lines,
            private: vec![
                (
                    "private, leader: participation, flaky meters (mean over lifetimes; reliable: chance)".to_owned(),
                    private(false),
                ),
                (
                    "private, leader + server: all nicknames linked, flaky meters".to_owned(),
                    private(true),
                ),
            ],
            chance: sizes
                .iter()
                .map(|&n| (n as f64, 100.0 / n as f64))
                .collect(),
            // Room on the right for the legend, clear of the lines.
            x: (lo * 0.9, hi * 1.6 + 1.0),
        }
    }
}

impl Chart for LinkageChart {
    const STEM: &'static str = "linkage_top1";
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let mut chart = axes(
            root,
            "Which house is this nickname? Top-1 success of the attacker",
            self.x.0..self.x.1,
            0.0..105.0,
            (
                "houses in the neighbourhood (candidates)",
                "% of nicknames linked to the right house",
            ),
        )?;
        for (i, (label, pts)) in self.lines.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(msg)?
                .label(label.as_str())
                .legend(move |p| line_key(p, colour.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, colour.filled())))
                .map_err(msg)?;
        }
        for (i, (label, pts)) in self.private.iter().enumerate() {
            let grey = if i == 0 {
                RGBColor(150, 150, 150)
            } else {
                RGBColor(80, 80, 80)
            };
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), grey.stroke_width(2)))
                .map_err(msg)?
                .label(label.as_str())
                .legend(move |p| line_key(p, grey.stroke_width(6)));
        }
        chart
            .draw_series(LineSeries::new(
                self.chance.iter().copied(),
                BLACK.stroke_width(1),
            ))
            .map_err(msg)?
            .label("chance (1/N)")
            .legend(|p| line_key(p, BLACK));
        chart
            .draw_series(self.chance.iter().map(|(x, y)| {
                Text::new(
                    format!("{y:.1} %"),
                    (*x, *y + 4.0),
                    (FAMILY, 12).into_font(),
                )
            }))
            .map_err(msg)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

fn find<'a>(
    out: &'a LinkageOutput,
    n: usize,
    lifetime: &str,
    set: FeatureSet,
) -> Option<&'a LinkageRow> {
    out.rows
        .iter()
        .find(|r| r.houses == n && r.lifetime == lifetime && r.features == set)
}

fn participation<'a>(
    out: &'a LinkageOutput,
    outages: &str,
    n: usize,
    lifetime: &str,
) -> Option<&'a ParticipationRow> {
    out.participation
        .iter()
        .find(|r| r.outages == outages && r.houses == n && r.lifetime == lifetime)
}

fn aggregate<'a>(
    out: &'a LinkageOutput,
    attack: AggregateAttack,
    n: usize,
    noise: &str,
) -> Option<&'a AggregateRow> {
    out.aggregate_rows
        .iter()
        .find(|r| r.attack == attack && r.houses == n && r.noise == noise)
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("–".into(), pct)
}

/// The lowest and highest of `values` as "a" or "a–b" percentages.
fn pct_range(values: impl Iterator<Item = f64>) -> String {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        "–".into()
    } else if pct(lo) == pct(hi) {
        pct(lo)
    } else {
        format!("{}–{}", pct(lo), pct(hi))
    }
}

/// The figures the findings and the threat table quote, at the largest neighbourhood.
struct Headline<'a> {
    n: usize,
    /// Pseudonymous full-feature top-1 per lifetime label.
    pseudo: Vec<(&'a str, &'a LinkageRow, &'a LinkageRow)>,
    /// Label of the outage model with failures (the last one).
    flaky: &'a str,
    /// Participation top-1 range over every lifetime and model without failures.
    ideal: String,
    /// Participation rows of the flaky model per lifetime, the all-linked one last.
    flaky_rows: Vec<&'a ParticipationRow>,
    /// Free one-house differences per day for bot + server in the flaky model.
    isolating_per_day: Option<f64>,
    dropout: Option<&'a AggregateRow>,
    isolation: Option<&'a AggregateRow>,
    leaver: Option<&'a AggregateRow>,
}

impl<'a> Headline<'a> {
    fn new(out: &'a LinkageOutput) -> Headline<'a> {
        let n = out.config.houses.iter().copied().max().unwrap_or(0);
        let pseudo = out
            .config
            .lifetimes
            .iter()
            .filter_map(|l| {
                Some((
                    l.label.as_str(),
                    find(out, n, &l.label, FeatureSet::Full)?,
                    find(out, n, &l.label, FeatureSet::Shape)?,
                ))
            })
            .collect();
        let flaky = out
            .config
            .outages
            .iter()
            .rfind(|o| o.outages_per_day[1] > 0.0)
            .map_or("", |o| o.label.as_str());
        let ideal = pct_range(
            out.participation
                .iter()
                .filter(|r| r.houses == n && r.outages != flaky)
                .map(|r| r.top1),
        );
        let flaky_rows = out
            .participation
            .iter()
            .filter(|r| r.houses == n && r.outages == flaky)
            .collect();
        Headline {
            n,
            pseudo,
            flaky,
            ideal,
            flaky_rows,
            isolating_per_day: out
                .presence
                .iter()
                .find(|f| f.houses == n && f.outages == flaky)
                .map(|f| f.isolating_per_day),
            dropout: aggregate(out, AggregateAttack::Dropout, n, "none"),
            isolation: aggregate(out, AggregateAttack::Isolation, n, "none"),
            leaver: aggregate(out, AggregateAttack::Leaver, n, "none"),
        }
    }

    fn pseudo_range(&self) -> String {
        let mut v: Vec<f64> = self.pseudo.iter().map(|(_, f, _)| f.top1).collect();
        v.sort_by(f64::total_cmp);
        pct_range(v.into_iter())
    }

    fn flaky_per_nickname(&self) -> String {
        pct_range(
            self.flaky_rows
                .iter()
                .filter(|r| r.lifetime != ALL_LINKED)
                .map(|r| r.top1),
        )
    }

    fn flaky_linked(&self) -> String {
        self.flaky_rows
            .iter()
            .find(|r| r.lifetime == ALL_LINKED)
            .map_or("–".into(), |r| pct(r.top1))
    }
}

/// Who learns what, pseudonymous against private mode, with this run's figures.
fn threat_table(out: &LinkageOutput, h: &Headline<'_>) -> String {
    let chance = pct(1.0 / h.n.max(1) as f64);
    let dropout = h.dropout.map_or(String::new(), |d| {
        format!(
            "; by refusing one nickname's report for one interval, that nickname's reading to a median {:.0} W and its bucket in {} of trials",
            d.median_abs_err_w,
            opt_pct(d.bucket_hit)
        )
    });
    let rows = [
        (
            "an occupant (any account in the room, e.g. a hostile meter)",
            "broadcast mode: every reading under rotating nicknames, as linkable as the bot's view; direct mode: the bot's summaries and alerts only".to_owned(),
            "the published count, total, histogram and spike counts per interval; nothing per house".to_owned(),
        ),
        (
            "the bot (leader)",
            format!(
                "every reading per nickname: among {} houses it names the right house for {} of nicknames (chance {chance}), by lifetime",
                h.n,
                h.pseudo_range()
            ),
            format!(
                "no reading; per nickname only the intervals it reported in (participation attack: {} top-1 when every meter reports every interval, {} with meters failing very differently; chance {chance}); per interval count, exact total and {}-bucket histogram{dropout}; by padding an interval with its own reports (n−1), one nickname's reading exactly",
                h.ideal,
                h.flaky_per_nickname(),
                out.config.buckets.len()
            ),
        ),
        (
            "the XMPP server",
            "nickname ↔ account for every stanza, hence every nickname of a house linked; readings too unless sealed to the bot key (direct mode with a pinned key)".to_owned(),
            "nickname ↔ account and the timing of every report: when each house's meter was online; no reading (shares are sealed to the two aggregators)".to_owned(),
        ),
        (
            "bot + server",
            "every reading of every house, by account: nothing hidden".to_owned(),
            format!(
                "per house: which intervals it reported in (participation linked over the whole period: {} top-1 against labelled past outages in the flaky model) plus the aggregates; a house's reading only by differencing: a one-house dropout (with flaky meters {} a day come free) gives it to a median {} W and its bucket in {}, an n−1 interval exactly",
                h.flaky_linked(),
                h.isolating_per_day.map_or("–".into(), |d| format!("{d:.0}")),
                h.dropout.map_or("–".into(), |d| format!("{:.0}", d.median_abs_err_w)),
                opt_pct(h.dropout.and_then(|d| d.bucket_hit)),
            ),
        ),
        (
            "leader + helper (colluding)",
            "– (no helper)".to_owned(),
            "every report's value: the privacy promise holds only while the two aggregators do not collude".to_owned(),
        ),
    ];
    let mut s = String::from("| who | pseudonymous mode | private mode |\n|---|---|---|\n");
    for (who, pseudo, private) in rows {
        let _ = writeln!(s, "| {who} | {pseudo} | {private} |");
    }
    s
}

/// The headline figures at the largest neighbourhood, in words.
fn findings(h: &Headline<'_>) -> String {
    let n = h.n;
    let mut s = String::new();
    let per_lifetime: Vec<String> = h
        .pseudo
        .iter()
        .map(|(label, full, shape)| {
            format!(
                "{label}: **{}** top-1 ({:.0}× chance), {} from the hourly shape alone",
                pct(full.top1),
                full.top1 / full.chance_top1(),
                pct(shape.top1)
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "- **Pseudonymous mode does not hide houses.** Among {n} houses (chance {}), the attacker names the right house for — {}. Shorter nickname lives reveal less per nickname but every one of them stays far above chance.",
        pct(1.0 / n.max(1) as f64),
        per_lifetime.join("; "),
    );
    let _ = writeln!(
        s,
        "- **Private mode: participation alone links nothing while meters are reliable.** When every meter reports every interval, every nickname's pattern is the same and the attack scores exactly chance ({}). Only meters that fail differently make participation a fingerprint: with {}, the leader links {} of nicknames by lifetime, and whoever links all nicknames of a house (the XMPP server, or the leader through report ids resent after outages) {}. What that reveals is when a meter was offline, not its load.",
        h.ideal,
        h.flaky,
        h.flaky_per_nickname(),
        h.flaky_linked()
    );
    if let (Some(d), Some(i)) = (h.dropout, h.isolation) {
        let _ = writeln!(
            s,
            "- **Aggregates leak one house only through differences, and histograms leak more than totals.** When one house misses one interval, the total's difference gives its reading to a median {:.0} W (within ±50 W in {}); the histogram's difference names its bucket in {} of trials ({} with certainty: the difference is exactly one report in one bucket) and, clamping the total's estimate into that bucket, narrows the error to a median {:.0} W (partly because most readings are small, so a low bucket is a good guess). A leader that pads one honest report with its own (n−1) gets it exactly: median error {:.0} W, bucket in {}. Who the house is, the leader alone does not learn; with the server it does.",
            d.median_abs_err_w,
            pct(d.within_50_w),
            opt_pct(d.bucket_hit),
            opt_pct(d.bucket_certain),
            d.hist_median_abs_err_w.unwrap_or(f64::NAN),
            i.median_abs_err_w,
            opt_pct(i.bucket_hit),
        );
    }
    if let Some(l) = h.leaver {
        let _ = write!(
            s,
            "- **A leaver stays hidden in the crowd**: the before/after difference of the totals recovers its hourly profile only to a median {:.0} W and names it in {} of trials (chance {}).",
            l.median_abs_err_w,
            pct(l.top1),
            pct(1.0 / n.max(1) as f64)
        );
    }
    s
}

/// The aggregate attacks with DP noise, in words.
fn noise_findings(out: &LinkageOutput, n: usize) -> String {
    let noisy: Vec<String> = out
        .aggregate_rows
        .iter()
        .filter(|r| r.attack == AggregateAttack::Isolation && r.noise != "none" && r.houses == n)
        .map(|r| {
            format!(
                "{:.0} W and the bucket in {} with {} at N = {}",
                r.median_abs_err_w,
                opt_pct(r.bucket_hit),
                r.noise,
                r.houses
            )
        })
        .collect();
    if noisy.is_empty() {
        return "No DP level was run.".into();
    }
    format!(
        "Private mode publishes exact aggregates today: the issue's optional aggregator-side DP is not built. The noisy rows show what it would buy, as discrete Laplace noise (α = exp(−ε/Δ)) on each published total (Δ in 10 W quanta) and on each histogram bucket (Δ = 2 counts: one house moving to another bucket); ε applies to the total and to the histogram each, so 2ε per interval in all. Against n−1, where nothing else blurs the difference, noise is the only defence: the isolated reading's median error becomes {}.",
        noisy.join(", ")
    )
}

/// The markdown text (pure, for tests).
pub fn render(out: &LinkageOutput, info: &RunInfo) -> String {
    let c = &out.config;
    let h = Headline::new(out);
    let sizes: Vec<String> = c.houses.iter().map(usize::to_string).collect();
    let lifetimes: Vec<&str> = c.lifetimes.iter().map(|l| l.label.as_str()).collect();
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(
        s,
        "# Linkage experiment: what pseudonymous and private mode reveal about houses\n"
    );
    let _ = writeln!(
        s,
        "Random nicknames that rotate (leave + rejoin, never a nick change) hide *who* sends a reading, but not *what* the readings look like. Published attacks re-identify pseudonymous smart-meter data from its load shape: 68 % of records in Buchmann et al. (2013), 54.5 % top-1 among 5,139 households with weekly re-pseudonymisation in Cretu et al. (2024). This experiment asks the same question of gridmuc's own simulated neighbourhoods in pseudonymous mode (the baseline), and then of what private mode (Prio3 reports to a leader and a helper, `gridmuc-private`) leaves to the leader alone and to the leader together with the XMPP server.\n"
    );
    let _ = writeln!(s, "## Who learns what\n");
    let _ = writeln!(
        s,
        "Figures from this run at N = {} houses; the sections below give every size.\n\n{}",
        h.n,
        threat_table(out, &h)
    );
    let _ = writeln!(s, "## Findings\n\n{}\n", findings(&h));
    let _ = writeln!(s, "## Setup\n");
    let _ = writeln!(
        s,
        "- Neighbourhoods of {} houses (nested: the first N houses of one simulated street of {}); household model of `gridmuc-sim` (occupancy, appliances, lighting, gas-heated homes unless adoption shares are set), weather of a UK town, training from {}, seed {}.",
        sizes.join(", "),
        c.houses.iter().max().copied().unwrap_or(0),
        {
            let (y, m, d) = gridmuc_sim::calendar::civil_from_days(c.start_day);
            format!("{y}-{m:02}-{d:02}")
        },
        c.seed
    );
    let _ = writeln!(
        s,
        "- **Attacker knowledge (assumption)**: the true, labelled per-house series of the {} days just before the attack period — readings, and in private mode also when each meter was offline — e.g. a leaked billing export or an earlier non-anonymous trial. From it the attacker learns one profile per house.",
        c.training_days
    );
    let _ = writeln!(
        s,
        "- **Traffic**: the next {} days; every house reports once per {} min (the interval mean, quantised to 10 W exactly as on the wire) under nicknames whose lifetimes are drawn uniformly from each range below, starting at a random phase: {}. Both modes use the same nickname schedules.",
        c.days,
        c.interval_min,
        lifetimes.join("; ")
    );
    let _ = writeln!(
        s,
        "- **Pseudonymous view** (the bot): each nickname's reading series with timestamps. Features per clock hour: mean load (*shape*), lowest reading and standard deviation (*levels*), rising steps between readings in 20 W bins (*steps*: appliance power signatures). Classifier: naive-Bayes nearest centroid per house and hour of day (asinh(W/100) domain, clipped z² ≤ 16), plus each step's log-likelihood ratio against the neighbourhood's pooled steps; ties count against the attacker. *Matched*: with a fixed lifetime, the nicknames alive at one instant are matched to houses one-to-one (Hungarian algorithm)."
    );
    let _ = writeln!(
        s,
        "- **Private view, leader alone**: no value; per nickname the intervals it reported in, from its first report to its last (each report's send instant is drawn afresh within its interval, so arrival times add nothing); per interval the count, exact total and the {}-bucket histogram. Meters go offline as a two-state chain per house whose outage rate and mean length are drawn log-uniformly per house from each model: {}. The attacker learns each house's chain from the training period and scores a nickname's missed intervals by likelihood; ties (identical patterns) are broken at random, so a classifier that cannot tell houses apart scores exactly chance. Worst case for report ids: every nickname change forced by an outage is linked by the resent report, so outages never hide a house behind a fresh nickname; only scheduled rotations (which wait for verdicts first) do.",
        c.buckets.len(),
        c.outages
            .iter()
            .map(|o| o.label.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        s,
        "- **Private view, leader + XMPP server**: the server knows each nickname's account, so all nicknames of a house are linked (*{ALL_LINKED}*): per-house participation over the whole period, plus the aggregates, still no value.\n"
    );
    let _ = writeln!(
        s,
        "Mean house load in the attack period {:.0} W, standard deviation of one house's readings {:.0} W. Runtime of the whole experiment: {:.0} s (wall clock, release build, shared 2-core machine).\n",
        out.mean_house_w, out.house_sd_w, info.runtime_s
    );

    let _ = writeln!(s, "## Pseudonymous mode: nicknames are linkable\n");
    let _ = writeln!(
        s,
        "![top-1 success vs neighbourhood size](linkage_top1.png)\n"
    );
    let _ = writeln!(
        s,
        "| lifetime | N | nicknames | readings per nickname | chance top-1 | top-1 shape | top-1 shape+levels | top-1 all features | top-5 all features | matched top-1 |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for l in &lifetimes {
        for &n in &c.houses {
            let get = |set| find(out, n, l, set);
            let (Some(shape), Some(levels), Some(full)) = (
                get(FeatureSet::Shape),
                get(FeatureSet::Levels),
                get(FeatureSet::Full),
            ) else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {l} | {n} | {} | {:.0} | {} | {} | {} | **{}** | {} (chance {}) | {} |",
                full.nicknames,
                full.mean_readings,
                pct(full.chance_top1()),
                pct(shape.top1),
                pct(levels.top1),
                pct(full.top1),
                pct(full.top5),
                pct(full.chance_top5()),
                full.assigned_top1.map_or("–".into(), pct),
            );
        }
    }
    let _ = writeln!(s);

    let _ = writeln!(
        s,
        "## Private mode: participation is all the leader sees per nickname\n"
    );
    let _ = writeln!(
        s,
        "| meters | lifetime | N | nicknames seen | with a missed interval | top-1 | chance top-1 | top-5 | mean rank | chance mean rank |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for o in &c.outages {
        for l in lifetimes.iter().copied().chain([ALL_LINKED]) {
            for &n in &c.houses {
                if let Some(r) = participation(out, &o.label, n, l) {
                    let _ = writeln!(
                        s,
                        "| {} | {l} | {n} | {} | {} | **{}** | {} | {} | {:.1} | {:.1} |",
                        o.label,
                        r.nicknames,
                        pct(r.with_gap),
                        pct(r.top1),
                        pct(r.chance_top1()),
                        pct(r.top5),
                        r.mean_rank,
                        (n as f64 + 1.0) / 2.0
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "\nWith every meter reporting every interval, each nickname's participation is complete and the same for every house: the attack is at chance, by construction and in the numbers. Participation becomes a fingerprint only through how a house's meter fails, and then it says *when the meter was offline*, never the load; it grows with the linked span (a weekly nickname or a fully linked house shows many outages, a 30-minute one rarely any). The row *{ALL_LINKED}* is the upper bound for the leader's report-id linking and exactly the server's view.\n"
    );

    let _ = writeln!(
        s,
        "## Leader + XMPP server: per-house participation\n\nThe server knows which account sent each report, so it knows to the interval when each house's meter was offline; with the leader's count per interval it also knows which houses an aggregate covers.\n"
    );
    let _ = writeln!(
        s,
        "| meters | N | house-intervals without a report | houses with an outage | intervals per day where exactly one house starts or stops reporting |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for f in &out.presence {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} of {} | {:.1} |",
            f.outages,
            f.houses,
            pct(f.missed_share),
            f.houses_with_outage,
            f.houses,
            f.isolating_per_day
        );
    }
    let _ = writeln!(
        s,
        "\nEach interval of the last column is a free one-house difference of two aggregates for bot + server: the *one-interval dropout* attack below with the house known. With every meter reporting every interval there are none: the leader must cause them (refuse a nickname's report, or drop it before the helper) — which the helper sees only as one report fewer.\n"
    );

    let _ = writeln!(s, "## What the aggregates reveal\n");
    let _ = writeln!(
        s,
        "A total over N houses says nothing about which house did what — but the *difference* of two aggregates over different sets of houses is the houses in one set and not the other. The helper releases each interval once, so a difference spans intervals and also carries everyone else's change of load in between, unless the leader fills an interval with its own reports:\n\n- **leaver**: a house leaves half-way through the {} days. The attacker takes the mean of the totals by hour of day before minus after: the leaver's average daily profile plus the others' drift, and names the best-fitting house (same classifier, shape features).\n- **one-interval dropout**: a house reports in interval r and not in r+1 (an outage, or the leader refuses that nickname). `S_r − S_(r+1)` estimates its reading; the histogram difference `H_r − H_(r+1)` holds its bucket exactly plus ±1 pairs of houses that changed bucket; the attacker takes, of the buckets that gained, the one nearest the total's estimate, and clamps the estimate into it. *Certain*: the histogram difference is exactly one report in one bucket, so the attacker knows it is right.\n- **isolation (n−1)**: the leader forwards one honest report and pads the interval with its own valid reports of known values up to the usual count, so the helper's `min_reports` (default 10) and its alarm on intervals much smaller than recent ones see nothing odd. Subtracting its own reports leaves the house's reading and bucket.\n\nThe attacker also tries to name the house from the recovered value and its hour (top-1/top-5): what the leader alone could add; with the server it knows the house already.\n",
        c.days
    );
    let _ = writeln!(
        s,
        "| attack | N | DP noise | noise sd per total | trials | top-1 (chance) | top-5 (chance) | RMSE from totals | median abs. error from totals | within ±50 W | bucket from histogram | bucket certain | median abs. error, histogram + total |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for attack in [
        AggregateAttack::Leaver,
        AggregateAttack::Dropout,
        AggregateAttack::Isolation,
    ] {
        for r in out.aggregate_rows.iter().filter(|r| r.attack == attack) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} W | {} | {} ({}) | {} ({}) | {:.0} W | {:.0} W | {} | {} | {} | {} |",
                attack.as_str(),
                r.houses,
                r.noise,
                r.noise_sd_w,
                r.trials,
                pct(r.top1),
                pct(1.0 / r.houses as f64),
                pct(r.top5),
                pct(r.houses.min(5) as f64 / r.houses as f64),
                r.rmse_w,
                r.median_abs_err_w,
                pct(r.within_50_w),
                opt_pct(r.bucket_hit),
                opt_pct(r.bucket_certain),
                r.hist_median_abs_err_w
                    .map_or("–".into(), |e| format!("{e:.0} W")),
            );
        }
    }
    let _ = writeln!(
        s,
        "\nFor scale: one house's readings have a standard deviation of {:.0} W around a mean of {:.0} W.\n\n- The total's difference errs by one interval's worth of everybody else switching things on and off, so it grows with N. The histogram's difference errs only where other houses changed bucket, and most houses keep their bucket from one minute to the next: that is why it names the bucket far more often than the total lands within ±50 W, and why it narrows the value. A default bucket is about 22 % wide, so knowing the bucket means knowing the reading to about ±11 %.\n- The isolation rows are exact by construction: Prio3 adds valid reports, and the leader can make valid reports as well as any meter. The helper's `min_reports` and its small-interval alarm stop only an unpadded isolation. What would stop it: the helper checking reports against occupants it can count (it cannot, with presence broadcast to moderators only), or noise.\n- {}\n",
        out.house_sd_w,
        out.mean_house_w,
        noise_findings(out, h.n)
    );

    let _ = writeln!(s, "## Caveats\n");
    let _ = writeln!(
        s,
        "- Simulated homes are more regular than real ones: same appliances, same habits for all {} days. Step signatures are therefore cleaner here than in real data; the *shape* column is the fairer comparison with published attacks, and `--interval-min 30` reruns everything on half-hourly readings.\n- The outage model is an assumption, not a measurement: how differently real meters fail decides how far the private participation rows move from chance. Outages independent of occupancy are modelled; a meter switched off with the router when the household is away would leak absence, which this model does not capture.\n- Not modelled, and each would only help the attacker: chaining a nickname to the next one of the same house by rotation timing (the meter rejoins after a random 5–60 s, so a rotation can also skip one interval); in private mode the count drop during that gap is the same for every house, so it links nicknames without naming a house; weekday/weekend-specific profiles; more training data.\n- Private mode's per-nickname view is modelled from its documented guarantees (`gridmuc-private`: sealed secret shares, only interval aggregates released); its own tests check that neither aggregator alone recovers a reading.\n",
        c.training_days + c.days
    );
    let _ = writeln!(s, "## Reproduce\n\n```sh\n{}\n```\n", info.command);
    let _ = writeln!(
        s,
        "Tables beside this file: `linkage.csv` (pseudonymous: N × lifetime × feature set), `participation.csv` (private, per nickname and all linked), `presence.csv` (per-house participation), `aggregate_attacks.csv`, `run.csv`."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_sim::linkage::aggregates::{Buckets, Noise};
    use gridmuc_sim::linkage::{Lifetime, LinkageConfig, run_linkage};

    #[test]
    fn writes_tables_chart_and_report() {
        let buckets = Buckets::new(vec![0, 50, 100, 200, 400, 800, 1600, 3200]).unwrap();
        let mut config = LinkageConfig::standard(2, buckets);
        config.houses = vec![5, 8];
        config.days = 2;
        config.training_days = 2;
        config.lifetimes = vec![Lifetime::new("daily", 1440, 1440)];
        config.dropout_trials = 20;
        let out = run_linkage(&config, &[Noise::none(), Noise::dp(1.0, 1000.0)], |_| {}).unwrap();
        let info = RunInfo {
            runtime_s: 1.0,
            command: "gridmuc privacy --houses 5,8".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let files = write_privacy(&out, &info, dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        for expected in [
            "linkage.csv",
            "participation.csv",
            "presence.csv",
            "aggregate_attacks.csv",
            "run.csv",
            "linkage_top1.png",
            "linkage_top1.svg",
            "report.md",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        let csv = std::fs::read_to_string(dir.path().join("linkage.csv")).unwrap();
        // Header + 3 feature sets × 2 sizes.
        assert_eq!(csv.lines().count(), 1 + 3 * 2, "{csv}");
        let csv = std::fs::read_to_string(dir.path().join("participation.csv")).unwrap();
        // Header + 2 outage models × (1 lifetime + all linked) × 2 sizes.
        assert_eq!(csv.lines().count(), 1 + 2 * 2 * 2, "{csv}");
        let csv = std::fs::read_to_string(dir.path().join("aggregate_attacks.csv")).unwrap();
        // Header + 3 attacks × 2 noise levels × 2 sizes.
        assert_eq!(csv.lines().count(), 1 + 3 * 2 * 2, "{csv}");
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("## Who learns what"));
        assert!(md.contains("| leader + helper (colluding) |"), "{md}");
        assert!(md.contains("| daily | 8 |"), "{md}");
        assert!(md.contains("12.5 %"), "chance 1/8 is shown: {md}");
        assert!(md.contains("gridmuc privacy --houses 5,8"));
        assert!(!md.to_lowercase().contains("mask"), "{md}");
    }
}
