//! Reports for gridmuc simulations: polars frames written as Parquet and CSV, plotters charts as
//! PNG and SVG (text rendered with a bundled DejaVu Sans, so no system fontconfig is needed), and a
//! `report.md` that embeds the charts. The only crate that links plotters, and with `gridmuc-sim`
//! the only one that links polars. `privacy` writes the linkage experiment's report, `realism` the simulator-vs-real-data one, `traces` reads long-format Parquet traces for replay.

pub mod charts;
pub mod frames;
pub mod markdown;
pub mod privacy;
pub mod realism;
pub mod traces;

pub use frames::Frames;

use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a report could not be produced.
#[derive(Debug, Error)]
pub enum ReportError {
    /// Building, reading or writing a data frame failed.
    #[error("data frame: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// A file could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Drawing a chart failed.
    #[error("chart {chart}: {message}")]
    Chart {
        /// Chart file stem.
        chart: &'static str,
        /// Backend message.
        message: String,
    },
    /// A frame lacks something the report needs (e.g. a hand-edited Parquet file).
    #[error("bad report data: {0}")]
    Data(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ReportError>;

/// Writes frames (Parquet + CSV), charts (PNG + SVG) and `report.md` for a finished run into `dir`.
pub fn write_all(output: &gridmuc_sim::SimOutput, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut frames = Frames::from_output(output)?;
    let mut files = frames.write(dir)?;
    files.extend(render(&frames, dir)?);
    Ok(files)
}

/// Re-renders charts and `report.md` from the Parquet files of an earlier run in `dir`.
pub fn rerender(dir: &Path) -> Result<Vec<PathBuf>> {
    let frames = Frames::read(dir)?;
    render(&frames, dir)
}

fn render(frames: &Frames, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = charts::draw_all(frames, dir)?;
    files.push(markdown::write(frames, dir)?);
    Ok(files)
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}
