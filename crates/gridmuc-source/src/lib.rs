//! Where a meter agent's readings come from: a real meter (DSMR P1 over serial or a TCP
//! bridge, SML through an optical head, an MQTT device), a recording (one row per interval,
//! or replayed on its own clock), stdin, or a built-in household model.
//!
//! The meter's driver asks once per interval ([`Source::sample`]: synchronous and cheap);
//! live meters are read by a background task that only moves bytes into the sans-IO decoders
//! ([`dsmr`], [`sml`], [`mqtt`]) and the interval [`accumulate::Accumulator`], which turns
//! power samples and energy registers into the interval's mean power and counts dead or
//! garbled intervals as faults instead of reporting zero.

use gridmuc_core::{Timestamp, Watts};
use rand::Rng;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

pub mod accumulate;
pub mod dsmr;
mod live;
pub mod mqtt;
pub mod replay;
pub mod smarty;
pub mod sml;

pub use accumulate::{Fault, SourceCounts};
pub use gridmuc_sim::HouseModel;

/// How to configure the source in TOML: `source = { kind = "dsmr", port = "/dev/ttyUSB0" }` etc.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The simulator's calibrated household model (`gridmuc_sim::HouseModel`): a house drawn
    /// at random, for demos and tests without a meter.
    #[default]
    Model,
    /// Replays `timestamp,watts` rows, one per reporting interval; the timestamp column is
    /// ignored, so tests and demos get exactly one known value per interval.
    Csv {
        /// The CSV file.
        path: PathBuf,
    },
    /// Replays `timestamp,watts` rows on their own clock, `speed` times real time, each
    /// interval reporting the time-weighted mean of the stretch it covers.
    Replay {
        /// The CSV file (RFC 3339 or Unix-seconds timestamps, in order).
        path: PathBuf,
        /// 1 is real time; 60 replays an hour a minute.
        #[serde(default = "one")]
        speed: f64,
    },
    /// Reads one number of watts per line from stdin and reports the latest each interval.
    Stdin,
    /// A DSMR P1 port (Dutch, Belgian, Luxembourg meters), or a TCP bridge to one (ser2net).
    Dsmr(Link),
    /// A German SML meter through an optical head, or a TCP bridge to one.
    Sml(Link),
    /// An MQTT device: Tasmota, Shelly, Zigbee2MQTT, or any JSON with a power field.
    Mqtt(MqttConfig),
}

fn one() -> f64 {
    1.0
}

/// Where a serial meter is: a local port or a TCP bridge.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Serial device, e.g. `/dev/ttyUSB0`.
    pub port: Option<String>,
    /// `host:port` of a bridge that forwards the port's bytes (ser2net, ESP P1 dongles).
    pub tcp: Option<String>,
    /// Serial speed; defaults to DSMR 4/5's 115200 and SML heads' 9600 (always 8N1).
    pub baud: Option<u32>,
    /// Seconds the last value stands in for an interval without frames (default 30).
    pub hold: Option<f64>,
    /// Luxembourg's encrypted P1 (DSMR only): the meter's GUEK, 32 hex digits.
    pub key: Option<Secret>,
    /// …and its authentication key, if not the specification's `00112233…EEFF`.
    pub auth_key: Option<Secret>,
}

impl Link {
    /// The decryption keys, if the link has any; refused for SML and when malformed.
    fn keys(&self, dsmr: bool) -> Result<Option<smarty::SmartyKeys>, SourceError> {
        match (&self.key, &self.auth_key) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(SourceError::Config("auth_key without key".into())),
            (Some(_), _) if !dsmr => Err(SourceError::Config(
                "key and auth_key are for Luxembourg's encrypted DSMR telegrams".into(),
            )),
            (Some(key), auth) => {
                smarty::SmartyKeys::from_hex(&key.0, auth.as_ref().map(|a| a.0.as_str()))
                    .map(Some)
                    .map_err(SourceError::Config)
            }
        }
    }
}

/// An MQTT device: a broker, a topic and the JSON fields, from a preset or spelled out.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `host:port` or `mqtt://host:port` (plain MQTT; port 1883 when omitted), or
    /// `mqtts://host:port` (MQTT over TLS; port 8883 when omitted).
    #[serde(alias = "url")]
    pub broker: String,
    /// For `mqtts://`: the PEM file of the CA that signed the broker's certificate (a
    /// self-signed household broker); without it the system's roots are trusted.
    pub ca_file: Option<PathBuf>,
    /// Topic and fields of a known device family.
    pub preset: Option<mqtt::Preset>,
    /// Topic filter; overrides the preset's (e.g. `shellyproem50/status/em1:1`).
    pub topic: Option<String>,
    /// Dotted path to the power in watts; overrides the preset's.
    #[serde(alias = "json_path")]
    pub path: Option<String>,
    /// Dotted path to an energy register; overrides the preset's.
    pub energy_path: Option<String>,
    /// Unit of `energy_path` (default kWh).
    pub energy_unit: Option<mqtt::EnergyUnit>,
    /// Broker account, if it asks for one.
    pub username: Option<String>,
    /// Its password (never logged).
    pub password: Option<Secret>,
    /// Seconds the last value stands in for an interval without messages (default 330:
    /// Tasmota reports every 300 s unless told otherwise).
    pub hold: Option<f64>,
}

/// A password that `Debug` does not print, so configs can be logged.
#[derive(Clone, Default, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read.
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
    /// A replayed row's timestamp cannot be used.
    #[error("{file}:{line}: timestamp {text:?}: {why}")]
    BadTimestamp {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The timestamp as written.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// The source's settings contradict each other or are incomplete.
    #[error("source config: {0}")]
    Config(String),
    /// The serial device is missing, busy or not ours to open.
    #[error("opening serial port {port}: {source}")]
    Device {
        /// The device path.
        port: String,
        /// What the OS said.
        source: tokio_serial::Error,
    },
    /// Live sources and stdin run a background task, which needs a tokio runtime.
    #[error("this source must be opened inside a tokio runtime")]
    NoRuntime,
}

/// What the source has for the current interval.
#[derive(Debug, PartialEq, Eq)]
pub enum Sample {
    /// Report this value (negative: export).
    Value(Watts),
    /// Nothing this interval: stdin was quiet, or a live meter was dead or garbled (counted
    /// in [`Source::counts`]).
    Skip,
    /// The source is exhausted; the meter stops.
    Finished,
}

/// One model minute, the household model's resolution.
const MODEL_MINUTE: gridmuc_core::Millis = 60_000;

/// An opened source.
#[derive(Debug)]
pub enum Source {
    /// A simulated house.
    Model(Box<HouseModel>),
    /// Remaining CSV values.
    Csv(VecDeque<Watts>),
    /// A recording on its own clock, from when it was opened.
    Replay(replay::Replay, Instant),
    /// Latest stdin value (`None` before the first line); the sender closes at EOF.
    Stdin(watch::Receiver<Option<Watts>>),
    /// A real meter read by a background task.
    Live(live::Live),
}

impl Source {
    /// Opens the configured source; the model draws its household (and MQTT its random client
    /// id) from `rng`. Live sources start reading at once.
    pub fn open(cfg: &SourceConfig, rng: &mut impl Rng) -> Result<Source, SourceError> {
        Ok(match cfg {
            SourceConfig::Model => Source::Model(Box::new(HouseModel::new(
                rng.random(),
                gridmuc_sim::HouseholdConfig::default(),
            ))),
            SourceConfig::Csv { path } => Source::Csv(
                replay::read_rows(path)?
                    .iter()
                    .map(|r| Watts(r.watts.round() as i64))
                    .collect(),
            ),
            SourceConfig::Replay { path, speed } => Source::Replay(
                replay::Replay::new(path, &replay::read_rows(path)?, *speed)?,
                Instant::now(),
            ),
            SourceConfig::Stdin => Source::Stdin(spawn_stdin()?),
            SourceConfig::Dsmr(link) => {
                Source::Live(live::open_stream(live::Protocol::Dsmr, link)?)
            }
            SourceConfig::Sml(link) => Source::Live(live::open_stream(live::Protocol::Sml, link)?),
            SourceConfig::Mqtt(m) => Source::Live(live::open_mqtt(m, rng)?),
        })
    }

    /// The value for the interval starting at `at`.
    pub fn sample(&mut self, at: Timestamp) -> Sample {
        match self {
            // The model's resolution: the mean of the minute the interval starts in.
            Source::Model(m) => Sample::Value(m.mean_power(at, MODEL_MINUTE)),
            Source::Csv(rows) => rows.pop_front().map_or(Sample::Finished, Sample::Value),
            Source::Replay(r, started) => {
                r.take(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
            }
            Source::Stdin(rx) => match rx.has_changed() {
                Ok(true) => (*rx.borrow_and_update()).map_or(Sample::Skip, Sample::Value),
                Ok(false) => Sample::Skip,
                Err(_) => Sample::Finished,
            },
            Source::Live(live) => live.sample(now_ts()),
        }
    }

    /// Frames read and faults counted so far (all zero for sources that cannot fail).
    pub fn counts(&self) -> SourceCounts {
        match self {
            Source::Live(live) => live.counts(),
            _ => SourceCounts::default(),
        }
    }
}

/// The wall clock in the core's milliseconds: when a frame arrived, when an interval closed.
fn now_ts() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(ms)
}

/// Seconds of `hold` as the accumulator's milliseconds (negative and NaN mean none).
fn hold_ms(hold: Option<f64>, default: f64) -> i64 {
    (hold.unwrap_or(default).max(0.0) * 1_000.0) as i64
}

fn spawn_stdin() -> Result<watch::Receiver<Option<Watts>>, SourceError> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)?;
    let (tx, rx) = watch::channel(None);
    rt.spawn(async move {
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
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_source_is_the_simulators_calibrated_house() {
        let mut rng = rand::rng();
        let mut src = Source::open(&SourceConfig::Model, &mut rng).expect("the model opens");
        // A winter evening, minute by minute, for three hours.
        let evening = Timestamp::parse_rfc3339("2026-12-01T17:00:00Z").expect("a time");
        let values: Vec<i64> = (0..180)
            .map(|m| match src.sample(evening.plus(m * 60_000)) {
                Sample::Value(w) => w.0,
                other => panic!("the model always has a value: {other:?}"),
            })
            .collect();
        assert!(values.iter().all(|w| w.abs() <= 25_000), "{values:?}");
        let mean = values.iter().sum::<i64>() as f64 / values.len() as f64;
        assert!((50.0..6_000.0).contains(&mean), "mean {mean}");
        // Same minute, same value: a meter that restarts reports the same load.
        let again = src.sample(evening.plus(42 * 60_000));
        assert!(matches!(again, Sample::Value(w) if w.0 == values[42]));
    }
}
