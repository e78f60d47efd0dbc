//! Long-format household traces from Parquet, for `gridmuc replay`: the columns `timestamp`,
//! `house` and `watts` (mean power of the period) or `kwh` (energy of the period), any order,
//! names in any case, as in the long CSV (see `gridmuc_sim::traces`).
//!
//! `timestamp` is text in any form the CSV reader accepts (RFC 3339, `YYYY-MM-DD HH:MM`, …) or
//! an integer of Unix seconds; `house` any text or integer; the value any number, null for a
//! missing period.

use crate::{ReportError, Result, frames::f64_column, io_err};
use gridmuc_core::Timestamp;
use gridmuc_sim::traces::{TraceBuilder, Traces, Unit, parse_timestamp};
use polars::prelude::*;
use std::fs::File;
use std::path::Path;

/// The column of `df` named `name` in any case.
fn find(df: &DataFrame, name: &str) -> Option<String> {
    df.get_column_names()
        .into_iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .map(|c| c.to_string())
}

/// Reads the first `max_houses` houses of a long-format Parquet file into traces.
pub fn read_long_parquet(path: &Path, max_houses: usize) -> Result<Traces> {
    let file = File::open(path).map_err(io_err(path))?;
    let df = ParquetReader::new(file).finish()?;
    let missing = || {
        ReportError::Data(format!(
            "{}: want columns timestamp, house and watts or kwh; found {:?}",
            path.display(),
            df.get_column_names()
        ))
    };
    let (ts, house) = (
        find(&df, "timestamp").ok_or_else(missing)?,
        find(&df, "house").ok_or_else(missing)?,
    );
    let (value, unit) = match (find(&df, "watts"), find(&df, "kwh")) {
        (Some(w), _) => (w, Unit::Watts),
        (None, Some(k)) => (k, Unit::KwhPerPeriod),
        (None, None) => return Err(missing()),
    };
    let stamps: Vec<Option<Timestamp>> = match df.column(&ts)?.dtype() {
        DataType::String => df
            .column(&ts)?
            .str()?
            .iter()
            .map(|s| s.and_then(parse_timestamp))
            .collect(),
        t if t.is_integer() => df
            .column(&ts)?
            .cast(&DataType::Int64)?
            .i64()?
            .iter()
            .map(|s| s.map(|s| Timestamp(s.saturating_mul(1000))))
            .collect(),
        other => {
            return Err(ReportError::Data(format!(
                "{}: column {ts} is {other}; write it as text (RFC 3339) or Unix seconds",
                path.display()
            )));
        }
    };
    let houses = df.column(&house)?.cast(&DataType::String)?;
    let values = f64_column(&df, &value)?;
    let mut builder = TraceBuilder::rows(unit, max_houses);
    for (row, ((at, id), v)) in stamps
        .into_iter()
        .zip(houses.str()?.iter())
        .zip(values)
        .enumerate()
    {
        let bad =
            |what: &str| ReportError::Data(format!("{}: row {}: {what}", path.display(), row + 1));
        let at = at.ok_or_else(|| bad("timestamp missing or not understood"))?;
        let id = id.ok_or_else(|| bad("house missing"))?;
        builder.push_row(row + 1, id, at, v as f32);
    }
    builder
        .finish()
        .map_err(|e| ReportError::Data(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_sim::traces::SimBenchHouses;

    /// The same two houses × three quarter-hours as Parquet and as long CSV.
    fn fixture(dir: &Path) -> (std::path::PathBuf, String) {
        let ts = [
            "2026-01-05T00:00:00Z",
            "2026-01-05T00:15:00Z",
            "2026-01-05T00:30:00Z",
        ];
        let mut stamps = Vec::new();
        let mut houses = Vec::new();
        let mut kwh = Vec::new();
        let mut csv = String::from("timestamp,house,kwh\n");
        for (h, name) in ["a", "b"].iter().enumerate() {
            for (p, t) in ts.iter().enumerate() {
                let v = (h == 0 || p < 2).then_some(0.05 * (p + 1) as f64 + h as f64);
                stamps.push(*t);
                houses.push(*name);
                kwh.push(v);
                let text = v.map_or("Null".into(), |v| v.to_string());
                csv.push_str(&format!("{t},{name},{text}\n"));
            }
        }
        let mut df = DataFrame::new_infer_height(vec![
            Column::new("Timestamp".into(), stamps),
            Column::new("house".into(), houses),
            Column::new("kWh".into(), kwh),
        ])
        .expect("frame");
        let path = dir.join("traces.parquet");
        ParquetWriter::new(File::create(&path).expect("create"))
            .finish(&mut df)
            .expect("write");
        (path, csv)
    }

    #[test]
    fn a_long_parquet_file_reads_as_its_csv_twin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, csv) = fixture(dir.path());
        let traces = read_long_parquet(&path, 10).expect("reads");
        let mut builder = TraceBuilder::new(SimBenchHouses::default(), 10);
        for (i, line) in csv.lines().enumerate() {
            builder.push_line(i + 1, line).expect("csv line");
        }
        let twin = builder.finish().expect("csv");
        assert_eq!(traces.houses, ["a", "b"]);
        assert_eq!(traces.step, 15 * 60_000);
        assert_eq!(traces.start.to_rfc3339(), "2026-01-05T00:00:00Z");
        // 0.05 kWh in a quarter-hour is a mean of 200 W; a null is a missing period.
        let near = |v: f32, w: f32| (v - w).abs() < 0.01;
        let (a, b) = (&traces.watts[0], &traces.watts[1]);
        assert!(
            near(a[0], 200.0) && near(a[1], 400.0) && near(a[2], 600.0),
            "{a:?}"
        );
        assert!(
            near(b[0], 4_200.0) && near(b[1], 4_400.0) && b[2].is_nan(),
            "{b:?}"
        );
        assert_eq!(format!("{:?}", traces.watts), format!("{:?}", twin.watts));
        assert_eq!(read_long_parquet(&path, 1).expect("reads").houses, ["a"]);
    }

    #[test]
    fn a_parquet_file_without_the_columns_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.parquet");
        let mut df = DataFrame::new_infer_height(vec![Column::new("when".into(), vec![1i64, 2])])
            .expect("frame");
        ParquetWriter::new(File::create(&path).expect("create"))
            .finish(&mut df)
            .expect("write");
        let err = read_long_parquet(&path, 10)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("want columns timestamp, house"), "{err}");
    }
}
