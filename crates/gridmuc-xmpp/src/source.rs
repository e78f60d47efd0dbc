//! Where a meter's numbers come from: a small household model, a CSV replay, or stdin.

use gridmuc_core::{Timestamp, Watts};
use rand::Rng;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

/// How to configure the source in TOML: `source = { kind = "model" }` etc.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceConfig {
    /// The built-in stochastic household model (until gridmuc-sim's models are wired in).
    #[default]
    Model,
    /// Replays `timestamp,watts` rows, one per reporting interval; the timestamp column is ignored
    /// because readings are always stamped with the live interval.
    Csv {
        /// The CSV file.
        path: PathBuf,
    },
    /// Reads one number of watts per line from stdin and reports the latest each interval.
    Stdin,
}

/// A load change during a time window after the meter started, to stage overloads and spikes.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Injection {
    /// Window start after meter start.
    #[serde(with = "gridmuc_core::time::span::secs")]
    pub from: Duration,
    /// Window end after meter start.
    #[serde(with = "gridmuc_core::time::span::secs")]
    pub to: Duration,
    /// Watts added to every reading in the window (e.g. every EV plugs in at once).
    #[serde(default)]
    pub add: i64,
}

impl Injection {
    /// Watts added at `elapsed` after meter start by every window open at that moment.
    pub fn total_at(injections: &[Injection], elapsed: Duration) -> Watts {
        Watts(
            injections
                .iter()
                .filter(|i| i.from <= elapsed && elapsed < i.to)
                .map(|i| i.add)
                .sum(),
        )
    }
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The CSV file could not be read.
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    /// A CSV row is not `timestamp,watts`.
    #[error("{file}:{line}: expected `timestamp,watts`, got {text:?}")]
    BadRow {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
}

/// What the source has for the current interval.
#[derive(Debug, PartialEq, Eq)]
pub enum Sample {
    /// Report this value.
    Value(Watts),
    /// Nothing new this interval (stdin was quiet).
    Skip,
    /// The source is exhausted; the meter stops.
    Finished,
}

/// An opened source.
#[derive(Debug)]
pub enum Source {
    /// Stochastic household.
    Model(HouseholdModel),
    /// Remaining CSV values.
    Csv(VecDeque<Watts>),
    /// Latest stdin value (`None` before the first line); the sender closes at EOF.
    Stdin(watch::Receiver<Option<Watts>>),
}

impl Source {
    /// Opens the configured source; the model draws its household from `rng`.
    pub fn open(cfg: &SourceConfig, rng: &mut impl Rng) -> Result<Source, SourceError> {
        Ok(match cfg {
            SourceConfig::Model => Source::Model(HouseholdModel::new(rng)),
            SourceConfig::Csv { path } => Source::Csv(read_csv(path)?),
            SourceConfig::Stdin => Source::Stdin(spawn_stdin()),
        })
    }

    /// The value for the interval starting at `at`.
    pub fn sample(&mut self, at: Timestamp, rng: &mut impl Rng) -> Sample {
        match self {
            Source::Model(m) => Sample::Value(m.sample(at, rng)),
            Source::Csv(rows) => rows.pop_front().map_or(Sample::Finished, Sample::Value),
            Source::Stdin(rx) => match rx.has_changed() {
                Ok(true) => (*rx.borrow_and_update()).map_or(Sample::Skip, Sample::Value),
                Ok(false) => Sample::Skip,
                Err(_) => Sample::Finished,
            },
        }
    }
}

fn read_csv(path: &Path) -> Result<VecDeque<Watts>, SourceError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SourceError::Io(file.clone(), e))?;
    let mut out = VecDeque::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let watts = line
            .split_once(',')
            .and_then(|(_, w)| w.trim().parse::<f64>().ok())
            .filter(|w| w.is_finite());
        match watts {
            Some(w) => out.push_back(Watts(w.round() as i64)),
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

fn spawn_stdin() -> watch::Receiver<Option<Watts>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let value = line
                .rsplit(',')
                .next()
                .and_then(|w| w.trim().parse::<f64>().ok());
            match value.filter(|w| w.is_finite()) {
                Some(w) => {
                    let _ = tx.send(Some(Watts(w.round() as i64)));
                }
                None => {
                    tracing::warn!(line = %line.trim(), "stdin: not a number of watts; ignored")
                }
            }
        }
    });
    rx
}

/// Appliances the model switches on: (name, watts, duration in intervals).
const APPLIANCES: [(&str, i64, u32); 4] = [
    ("kettle", 2_200, 1),
    ("cooking", 1_800, 6),
    ("washing", 600, 10),
    ("shower heater", 3_000, 2),
];

/// A small stochastic household: base load, a cycling fridge, time-of-day activity, appliance events.
///
/// Plausible rather than calibrated: means of roughly 0.3 kW at night and 1–2 kW in the
/// evening, with kettles and showers as short peaks.
#[derive(Clone, Debug)]
pub struct HouseholdModel {
    base: i64,
    /// Remaining intervals and watts of running appliances.
    running: Vec<(u32, i64)>,
}

impl HouseholdModel {
    /// Draws one household's standing load.
    pub fn new(rng: &mut impl Rng) -> HouseholdModel {
        HouseholdModel {
            base: rng.random_range(120..400),
            running: Vec::new(),
        }
    }

    /// Load at `at` (UTC hour of day drives activity).
    pub fn sample(&mut self, at: Timestamp, rng: &mut impl Rng) -> Watts {
        let hour = at.millis().div_euclid(3_600_000).rem_euclid(24);
        let activity = match hour {
            0..=5 => 0.15,
            6..=8 => 0.7,
            9..=16 => 0.35,
            17..=21 => 1.0,
            _ => 0.4,
        };
        self.running.retain_mut(|(left, _)| {
            *left = left.saturating_sub(1);
            *left > 0
        });
        if rng.random_bool(0.08 * activity) {
            let (_, w, d) = APPLIANCES[rng.random_range(0..APPLIANCES.len())];
            self.running.push((d, w));
        }
        let fridge = if rng.random_bool(0.4) { 90 } else { 0 };
        let misc = (activity * rng.random_range(50.0..500.0)) as i64;
        let appliances: i64 = self.running.iter().map(|(_, w)| w).sum();
        Watts(self.base + fridge + misc + appliances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_plausible() {
        let mut rng = rand::rng();
        let mut m = HouseholdModel::new(&mut rng);
        let evening = Timestamp(19 * 3_600_000);
        let values: Vec<i64> = (0..500)
            .map(|i| m.sample(evening.plus(i * 60_000), &mut rng).0)
            .collect();
        let mean = values.iter().sum::<i64>() as f64 / values.len() as f64;
        assert!(
            values.iter().all(|v| (100..12_000).contains(v)),
            "{values:?}"
        );
        assert!((300.0..3_000.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn csv_rows() {
        let dir = std::env::temp_dir().join(format!("gridmuc-csv-{}", std::process::id()));
        std::fs::write(
            &dir,
            "timestamp,watts\n2026-11-24T20:00:00Z,1840\n2026-11-24T20:01:00Z,-350.4\n",
        )
        .unwrap();
        let rows = read_csv(&dir).unwrap();
        assert_eq!(rows, [Watts(1840), Watts(-350)]);
        std::fs::write(&dir, "t,w\n1,2\nbogus\n").unwrap();
        assert!(matches!(
            read_csv(&dir),
            Err(SourceError::BadRow { line: 3, .. })
        ));
        std::fs::remove_file(&dir).unwrap();
    }
}
