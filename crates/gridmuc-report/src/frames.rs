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
            col("start_ms", iv.iter().map(|r| r.start.0).collect::<Vec<_>>()),
            col(
                "meters",
                iv.iter().map(|r| i64::from(r.meters)).collect::<Vec<_>>(),
            ),
            col(
                "reported_total_w",
                iv.iter().map(|r| r.reported_total_w).collect::<Vec<_>>(),
            ),
            col(
                "true_total_w",
                iv.iter().map(|r| r.true_total_w).collect::<Vec<_>>(),
            ),
            col("mean_w", iv.iter().map(|r| r.mean_w).collect::<Vec<_>>()),
            col(
                "median_w",
                iv.iter().map(|r| r.median_w).collect::<Vec<_>>(),
            ),
            col("p5_w", iv.iter().map(|r| r.p5_w).collect::<Vec<_>>()),
            col("p95_w", iv.iter().map(|r| r.p95_w).collect::<Vec<_>>()),
            col(
                "std_dev_w",
                iv.iter().map(|r| r.std_dev_w).collect::<Vec<_>>(),
            ),
            col("min_w", iv.iter().map(|r| r.min_w).collect::<Vec<_>>()),
            col("max_w", iv.iter().map(|r| r.max_w).collect::<Vec<_>>()),
        ])?;

        let al = &o.alerts;
        let alerts = DataFrame::new_infer_height(vec![
            col("at_ms", al.iter().map(|a| a.at.0).collect::<Vec<_>>()),
            col(
                "emitted_ms",
                al.iter().map(|a| a.emitted.0).collect::<Vec<_>>(),
            ),
            col(
                "kind",
                al.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(),
            ),
            col(
                "severity",
                al.iter().map(|a| a.severity.as_str()).collect::<Vec<_>>(),
            ),
            col(
                "state",
                al.iter().map(|a| a.state.as_str()).collect::<Vec<_>>(),
            ),
            col("value_w", al.iter().map(|a| a.value_w).collect::<Vec<_>>()),
            col(
                "threshold_w",
                al.iter().map(|a| a.threshold_w).collect::<Vec<_>>(),
            ),
            col(
                "house",
                al.iter()
                    .map(|a| a.house.map(|h| h as i64))
                    .collect::<Vec<_>>(),
            ),
        ])?;

        let lb = &o.labels;
        let minute = |m: u32| o.start.0 + i64::from(m) * 60_000;
        let labels = DataFrame::new_infer_height(vec![
            col("id", lb.iter().map(|l| i64::from(l.id)).collect::<Vec<_>>()),
            col(
                "kind",
                lb.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>(),
            ),
            col(
                "start_ms",
                lb.iter().map(|l| minute(l.start_min)).collect::<Vec<_>>(),
            ),
            col(
                "end_ms",
                lb.iter().map(|l| minute(l.end_min())).collect::<Vec<_>>(),
            ),
            col(
                "houses",
                lb.iter().map(|l| l.houses.len() as i64).collect::<Vec<_>>(),
            ),
            col(
                "house",
                lb.iter()
                    .map(|l| (l.houses.len() == 1).then(|| l.houses[0] as i64))
                    .collect::<Vec<_>>(),
            ),
            col(
                "extra_w",
                lb.iter().map(|l| f64::from(l.extra_w)).collect::<Vec<_>>(),
            ),
        ])?;

        let hs = &o.houses_summary;
        let houses = DataFrame::new_infer_height(vec![
            col("house", (0..hs.len() as i64).collect::<Vec<_>>()),
            col(
                "residents",
                hs.iter()
                    .map(|h| i64::from(h.info.residents))
                    .collect::<Vec<_>>(),
            ),
            col(
                "heating",
                hs.iter()
                    .map(|h| h.info.heating.as_str())
                    .collect::<Vec<_>>(),
            ),
            col(
                "ev_kw",
                hs.iter()
                    .map(|h| h.info.ev_kw.map(f64::from))
                    .collect::<Vec<_>>(),
            ),
            col(
                "pv_kwp",
                hs.iter()
                    .map(|h| f64::from(h.info.pv_kwp))
                    .collect::<Vec<_>>(),
            ),
            col("peak_w", hs.iter().map(|h| h.peak_w).collect::<Vec<_>>()),
            col(
                "mean_daily_kwh",
                hs.iter().map(|h| h.mean_daily_kwh).collect::<Vec<_>>(),
            ),
        ])?;

        let sc = &o.scores;
        let scores = DataFrame::new_infer_height(vec![
            col(
                "detector",
                sc.iter().map(|s| s.detector.clone()).collect::<Vec<_>>(),
            ),
            col(
                "windows",
                sc.iter().map(|s| s.windows as i64).collect::<Vec<_>>(),
            ),
            col(
                "detected",
                sc.iter().map(|s| s.detected as i64).collect::<Vec<_>>(),
            ),
            col(
                "alerts",
                sc.iter().map(|s| s.alerts as i64).collect::<Vec<_>>(),
            ),
            col(
                "true_alerts",
                sc.iter().map(|s| s.true_alerts as i64).collect::<Vec<_>>(),
            ),
            col(
                "precision",
                sc.iter().map(|s| s.precision).collect::<Vec<_>>(),
            ),
            col("recall", sc.iter().map(|s| s.recall).collect::<Vec<_>>()),
            col("f1", sc.iter().map(|s| s.f1).collect::<Vec<_>>()),
            col(
                "median_delay_s",
                sc.iter().map(|s| s.median_delay_s).collect::<Vec<_>>(),
            ),
            col("nab_raw", sc.iter().map(|s| s.nab_raw).collect::<Vec<_>>()),
            col("nab", sc.iter().map(|s| s.nab).collect::<Vec<_>>()),
            col(
                "chance_f1",
                sc.iter().map(|s| s.chance_f1).collect::<Vec<_>>(),
            ),
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
            let csv = dir.join(format!("{name}.csv"));
            let f = File::create(&csv).map_err(io_err(&csv))?;
            CsvWriter::new(f).finish(df)?;
            files.extend([pq, csv]);
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
