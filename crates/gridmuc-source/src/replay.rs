//! Recorded `timestamp,watts` files: read once at start, then either one row per interval
//! (`csv`) or replayed on their own clock at a chosen speed (`replay`), sans-IO.

use crate::{Sample, SourceError};
use gridmuc_core::Watts;
use std::path::Path;

/// One row of a recording.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// 1-based line number, for errors.
    pub line: usize,
    /// The first column as written.
    pub time: String,
    /// The value.
    pub watts: f64,
}

/// Reads `timestamp,watts` rows; `#` comments, blank lines and a header row are skipped.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, SourceError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SourceError::Io(file.clone(), e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let row = line.split_once(',').and_then(|(t, w)| {
            let watts = w.trim().parse::<f64>().ok().filter(|w| w.is_finite())?;
            Some(Row {
                line: i + 1,
                time: t.trim().to_owned(),
                watts,
            })
        });
        match row {
            Some(r) => out.push(r),
            // A header row is fine on the first line only.
            None if i == 0 => {}
            None => {
                return Err(SourceError::BadRow {
                    file,
                    line: i + 1,
                    text: line.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// A recording replayed on its own clock: each row's value holds until the next row's time,
/// and an interval's reading is the time-weighted mean over the stretch of recording that
/// `speed` maps onto it.
#[derive(Clone, Debug)]
pub struct Replay {
    /// Milliseconds since the first row, and the value from then on.
    steps: Vec<(i64, f64)>,
    /// Where the recording ends: the last row, held as long as the gap before it.
    end: i64,
    speed: f64,
    /// Recording time reached by the previous interval.
    pos: i64,
}

impl Replay {
    /// Parses the rows' timestamps (RFC 3339, or seconds since the Unix epoch) into a replay
    /// at `speed` times real time.
    pub fn new(file: &Path, rows: &[Row], speed: f64) -> Result<Replay, SourceError> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(SourceError::Config(format!(
                "replay speed must be positive, got {speed}"
            )));
        }
        let mut steps: Vec<(i64, f64)> = Vec::with_capacity(rows.len());
        for row in rows {
            let bad = |why: &str| SourceError::BadTimestamp {
                file: file.display().to_string(),
                line: row.line,
                text: row.time.clone(),
                why: why.to_owned(),
            };
            let t = parse_time(&row.time).ok_or_else(|| bad("not RFC 3339 or Unix seconds"))?;
            if steps.last().is_some_and(|&(prev, _)| t < prev) {
                return Err(bad("earlier than the row before"));
            }
            steps.push((t, row.watts));
        }
        let first = steps.first().map_or(0, |s| s.0);
        for s in &mut steps {
            s.0 -= first;
        }
        let end = match steps.as_slice() {
            [.., (a, _), (b, _)] => b + (b - a),
            [(b, _)] => *b,
            [] => 0,
        };
        Ok(Replay {
            steps,
            end,
            speed,
            pos: 0,
        })
    }

    /// The interval ending `elapsed_ms` of real time after the replay started.
    pub fn take(&mut self, elapsed_ms: i64) -> Sample {
        let from = self.pos;
        if from >= self.end {
            return Sample::Finished;
        }
        let to = ((elapsed_ms as f64 * self.speed) as i64).min(self.end);
        if to <= from {
            return Sample::Skip;
        }
        self.pos = to;
        let mut weighted = 0.0;
        for (i, &(start, watts)) in self.steps.iter().enumerate() {
            let stop = self.steps.get(i + 1).map_or(self.end, |s| s.0);
            let overlap = stop.min(to) - start.max(from);
            if overlap > 0 {
                weighted += watts * overlap as f64;
            }
        }
        Sample::Value(Watts((weighted / (to - from) as f64).round() as i64))
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time or a number of seconds.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return secs.is_finite().then_some((secs * 1_000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[(&str, f64)]) -> Vec<Row> {
        data.iter()
            .enumerate()
            .map(|(i, (t, w))| Row {
                line: i + 1,
                time: (*t).to_owned(),
                watts: *w,
            })
            .collect()
    }

    #[test]
    fn replays_on_the_recordings_clock() {
        // 1 kW for 10 min, 3 kW for 5 min, then 0.5 kW (held 5 min).
        let rows = rows(&[
            ("2026-11-24T20:00:00Z", 1_000.0),
            ("2026-11-24T20:10:00Z", 3_000.0),
            ("2026-11-24T20:15:00Z", 500.0),
        ]);
        let mut r = Replay::new(Path::new("x"), &rows, 60.0).unwrap();
        // At 60×, 5 s of real time is 5 min of recording.
        assert_eq!(r.take(5_000), Sample::Value(Watts(1_000)));
        assert_eq!(r.take(5_000), Sample::Skip);
        // 20:05–20:12:30: 5 min at 1 kW, 2.5 min at 3 kW.
        assert_eq!(r.take(12_500), Sample::Value(Watts(1_667)));
        assert_eq!(r.take(15_000), Sample::Value(Watts(3_000)));
        // The last row holds as long as the gap before it, then the recording is over.
        assert_eq!(r.take(100_000), Sample::Value(Watts(500)));
        assert_eq!(r.take(200_000), Sample::Finished);
    }

    #[test]
    fn bad_timestamps_and_order_are_config_errors() {
        let err = Replay::new(Path::new("f.csv"), &rows(&[("yesterday", 1.0)]), 1.0).unwrap_err();
        assert!(
            matches!(err, SourceError::BadTimestamp { line: 1, .. }),
            "{err}"
        );
        let err =
            Replay::new(Path::new("f.csv"), &rows(&[("20", 1.0), ("10", 1.0)]), 1.0).unwrap_err();
        assert!(err.to_string().contains("earlier"), "{err}");
        assert!(Replay::new(Path::new("f.csv"), &[], 0.0).is_err());
        // Unix seconds work too.
        let mut r = Replay::new(
            Path::new("f.csv"),
            &rows(&[("0", 100.0), ("1", 300.0)]),
            1.0,
        )
        .unwrap();
        assert_eq!(r.take(2_000), Sample::Value(Watts(200)));
    }

    #[test]
    fn csv_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("house.csv");
        std::fs::write(
            &path,
            "timestamp,watts\n2026-11-24T20:00:00Z,1840\n# a comment\n2026-11-24T20:01:00Z,-350.4\n",
        )
        .unwrap();
        let got: Vec<f64> = read_rows(&path).unwrap().iter().map(|r| r.watts).collect();
        assert_eq!(got, [1840.0, -350.4]);
        std::fs::write(&path, "t,w\n1,2\nbogus\n").unwrap();
        assert!(matches!(
            read_rows(&path),
            Err(SourceError::BadRow { line: 3, .. })
        ));
    }
}
