//! The run as polars data frames: one table per concern, written as Parquet (for re-rendering
//! and analysis) and CSV (for spreadsheets), and read back by `gridmuc report`.

use crate::{ReportError, Result, io_err};
use gridmuc_sim::SimOutput;
use polars::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};

/// All tables of one run.
#[derive(Clone, Debug)]
pub struct Frames {
    /// Key/value facts about the run (scenario, rating, counters).
    pub meta: DataFrame,
    /// One row per closed interval.
    pub intervals: DataFrame,
    /// One row per alert (raised and cleared).
    pub alerts: DataFrame,
    /// Injected anomalies (ground truth).
    pub labels: DataFrame,
    /// One row per house.
    pub houses: DataFrame,
    /// One row per detector.
    pub scores: DataFrame,
}

const TABLES: [&str; 6] = ["meta", "intervals", "alerts", "labels", "houses", "scores"];

fn col<T>(name: &str, values: Vec<T>) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(name.into(), values)
}

/// A column holding `f` of every row, so each table lists only names and fields.
pub(crate) fn col_of<'a, R, T>(name: &str, rows: &'a [R], f: impl Fn(&'a R) -> T) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    col(name, rows.iter().map(f).collect())
}

impl Frames {
    /// Builds every table from a run.
    pub fn from_output(o: &SimOutput) -> Result<Frames> {
        let mut meta: Vec<(String, String)> = vec![
            ("scenario".into(), o.scenario.clone()),
            ("description".into(), o.description.clone()),
            ("houses".into(), o.houses.to_string()),
            ("days".into(), o.days.to_string()),
            ("rating_w".into(), o.rating_w.to_string()),
            ("warn_fraction".into(), o.warn_fraction.to_string()),
            ("interval_ms".into(), o.interval.to_string()),
            ("start_ms".into(), o.start.0.to_string()),
            ("accepted".into(), o.accepted.to_string()),
            (
                "injected_bad_readings".into(),
                o.injected_bad_readings.to_string(),
            ),
            (
                "expected_kwh_min".into(),
                o.expected_daily_kwh[0].to_string(),
            ),
            (
                "expected_kwh_max".into(),
                o.expected_daily_kwh[1].to_string(),
            ),
        ];
        meta.extend(
            o.rejected
                .iter()
                .map(|(k, c)| (format!("rejected_{k}"), c.to_string())),
        );
        let (keys, values): (Vec<String>, Vec<String>) = meta.into_iter().unzip();
        let meta = DataFrame::new_infer_height(vec![col("key", keys), col("value", values)])?;

        let iv = &o.intervals;
        let intervals = DataFrame::new_infer_height(vec![
            col_of("start_ms", iv, |r| r.start.0),
            col_of("meters", iv, |r| i64::from(r.meters)),
            col_of("reported_total_w", iv, |r| r.reported_total_w),
            col_of("true_total_w", iv, |r| r.true_total_w),
            col_of("mean_w", iv, |r| r.mean_w),
            col_of("median_w", iv, |r| r.median_w),
            col_of("p5_w", iv, |r| r.p5_w),
            col_of("p95_w", iv, |r| r.p95_w),
            col_of("std_dev_w", iv, |r| r.std_dev_w),
            col_of("min_w", iv, |r| r.min_w),
            col_of("max_w", iv, |r| r.max_w),
        ])?;

        let al = &o.alerts;
        let alerts = DataFrame::new_infer_height(vec![
            col_of("at_ms", al, |a| a.at.0),
            col_of("emitted_ms", al, |a| a.emitted.0),
            col_of("kind", al, |a| a.kind.as_str()),
            col_of("severity", al, |a| a.severity.as_str()),
            col_of("state", al, |a| a.state.as_str()),
            col_of("value_w", al, |a| a.value_w),
            col_of("threshold_w", al, |a| a.threshold_w),
            col_of("house", al, |a| a.house.map(|h| h as i64)),
        ])?;

        let lb = &o.labels;
        let minute = |m: u32| o.start.0 + i64::from(m) * 60_000;
        let labels = DataFrame::new_infer_height(vec![
            col_of("id", lb, |l| i64::from(l.id)),
            col_of("kind", lb, |l| l.kind.as_str()),
            col_of("start_ms", lb, |l| minute(l.start_min)),
            col_of("end_ms", lb, |l| minute(l.end_min())),
            col_of("houses", lb, |l| l.houses.len() as i64),
            col_of("house", lb, |l| {
                (l.houses.len() == 1).then(|| l.houses[0] as i64)
            }),
            col_of("extra_w", lb, |l| f64::from(l.extra_w)),
        ])?;

        let hs = &o.houses_summary;
        let houses = DataFrame::new_infer_height(vec![
            col("house", (0..hs.len() as i64).collect::<Vec<_>>()),
            // Empty for replayed real houses, whose features nobody knows.
            col_of("residents", hs, |h| {
                h.info.as_ref().map(|i| i64::from(i.residents))
            }),
            col_of("heating", hs, |h| {
                h.info.as_ref().map(|i| i.heating.as_str())
            }),
            col_of("ev_kw", hs, |h| {
                h.info.as_ref().and_then(|i| i.ev_kw.map(f64::from))
            }),
            col_of("pv_kwp", hs, |h| {
                h.info.as_ref().map(|i| f64::from(i.pv_kwp))
            }),
            col_of("peak_w", hs, |h| h.peak_w),
            col_of("mean_daily_kwh", hs, |h| h.mean_daily_kwh),
        ])?;

        let sc = &o.scores;
        let scores = DataFrame::new_infer_height(vec![
            col_of("detector", sc, |s| s.detector.clone()),
            col_of("windows", sc, |s| s.windows as i64),
            col_of("detected", sc, |s| s.detected as i64),
            col_of("alerts", sc, |s| s.alerts as i64),
            col_of("true_alerts", sc, |s| s.true_alerts as i64),
            col_of("precision", sc, |s| s.precision),
            col_of("recall", sc, |s| s.recall),
            col_of("f1", sc, |s| s.f1),
            col_of("median_delay_s", sc, |s| s.median_delay_s),
            col_of("nab_raw", sc, |s| s.nab_raw),
            col_of("nab", sc, |s| s.nab),
            col_of("chance_f1", sc, |s| s.chance_f1),
        ])?;
        Ok(Frames {
            meta,
            intervals,
            alerts,
            labels,
            houses,
            scores,
        })
    }

    fn tables_mut(&mut self) -> [(&'static str, &mut DataFrame); 6] {
        let Frames {
            meta,
            intervals,
            alerts,
            labels,
            houses,
            scores,
        } = self;
        [
            (TABLES[0], meta),
            (TABLES[1], intervals),
            (TABLES[2], alerts),
            (TABLES[3], labels),
            (TABLES[4], houses),
            (TABLES[5], scores),
        ]
    }

    /// Writes `<table>.parquet` and `<table>.csv` for every table into `dir` (created if missing).
    pub fn write(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut files = Vec::new();
        for (name, df) in self.tables_mut() {
            let pq = dir.join(format!("{name}.parquet"));
            let f = File::create(&pq).map_err(io_err(&pq))?;
            ParquetWriter::new(f).finish(df)?;
            files.extend([pq, write_csv(df, dir, name)?]);
        }
        Ok(files)
    }

    /// Reads every table back from `<table>.parquet` in `dir`.
    pub fn read(dir: &Path) -> Result<Frames> {
        let load = |name: &str| -> Result<DataFrame> {
            let path = dir.join(format!("{name}.parquet"));
            let f = File::open(&path).map_err(io_err(&path))?;
            Ok(ParquetReader::new(f).finish()?)
        };
        Ok(Frames {
            meta: load(TABLES[0])?,
            intervals: load(TABLES[1])?,
            alerts: load(TABLES[2])?,
            labels: load(TABLES[3])?,
            houses: load(TABLES[4])?,
            scores: load(TABLES[5])?,
        })
    }

    /// A meta value by key.
    pub fn meta(&self, key: &str) -> Option<String> {
        let keys = self.meta.column("key").ok()?.str().ok()?;
        let values = self.meta.column("value").ok()?.str().ok()?;
        keys.iter()
            .zip(values.iter())
            .find(|(k, _)| *k == Some(key))
            .and_then(|(_, v)| v.map(str::to_owned))
    }

    /// A numeric meta value, or a data error naming the key.
    pub fn meta_f64(&self, key: &str) -> Result<f64> {
        self.meta(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ReportError::Data(format!("meta key {key} missing or not a number")))
    }
}

/// Writes `df` as `<name>.csv` into `dir` (which must exist), for spreadsheets.
pub(crate) fn write_csv(df: &mut DataFrame, dir: &Path, name: &str) -> Result<PathBuf> {
    let csv = dir.join(format!("{name}.csv"));
    let f = File::create(&csv).map_err(io_err(&csv))?;
    CsvWriter::new(f).finish(df)?;
    Ok(csv)
}

/// Values of a numeric column as f64 (nulls become NaN), whatever its integer or float type.
pub fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Values of a string column (nulls become empty strings).
pub fn str_column(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect())
}
