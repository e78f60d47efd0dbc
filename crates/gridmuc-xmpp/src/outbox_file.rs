//! A meter's unacknowledged readings on its own disk (`outbox_file`), so a crash, a power cut
//! or `kill -9` loses none of them: rewritten whole each time they change (written to a
//! temporary file, synced, renamed over the old one, so a cut mid-write leaves the old file
//! whole), and read back when the meter starts, which resends them with their original ids.
//! The bot counts each once by its id, whichever run delivered it. A private-mode meter keeps
//! its sealed reports the same way (never a reading in clear), until their interval is out.
//!
//! JSON: small (a few dozen items at most in practice), and an operator can read what a
//! meter still holds.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gridmuc_core::{Reading, ReadingId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The file's format version; a newer meter can tell an older file from its own.
const VERSION: u32 = 1;
/// What a plain meter's file holds.
const READINGS: &str = "readings";
/// What a private-mode meter's file holds.
const REPORTS: &str = "reports";

/// What the file holds: `kind` tells a plain meter's file from a private one's, so a meter
/// switched between modes does not misread its old file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved<T> {
    version: u32,
    kind: String,
    items: Vec<T>,
}

/// One unacknowledged plain reading.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedReading {
    /// The reading's message id, as on the wire (32 hex digits).
    id: String,
    reading: Reading,
}

/// Why the outbox file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxFileError {
    /// The file exists but could not be read.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not one this meter wrote (or was damaged).
    #[error("{0} is not a meter's outbox file: {1}")]
    Corrupt(PathBuf, String),
    /// Writing, syncing or renaming failed (disk full, read-only, no directory).
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
    /// Another running meter keeps its readings in the same file.
    #[error("{0} is in use by another meter: give each meter its own outbox_file")]
    InUse(PathBuf),
}

/// Holds `<path>.lock` while it lives, so two meters never share one outbox file: each
/// would overwrite what the other saved. The OS releases it when the process ends, however.
#[derive(Debug)]
pub struct OutboxLock {
    _file: std::fs::File,
}

/// Takes the lock on the outbox file at `path` (see [`OutboxLock`]).
pub fn lock(path: &Path) -> Result<OutboxLock, OutboxFileError> {
    let lock_path = with_suffix(path, ".lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| OutboxFileError::Write(lock_path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(OutboxLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(OutboxFileError::InUse(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(OutboxFileError::Write(path.to_owned(), e)),
    }
}

/// The items of `kind` saved at `path`, in order; none if there is no file yet.
fn load_items<T: DeserializeOwned>(path: &Path, kind: &str) -> Result<Vec<T>, OutboxFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OutboxFileError::Read(path.to_owned(), e)),
    };
    let corrupt = |why: String| OutboxFileError::Corrupt(path.to_owned(), why);
    let saved: Saved<T> = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if saved.version != VERSION {
        return Err(corrupt(format!(
            "format version {} (this meter writes {VERSION})",
            saved.version
        )));
    }
    if saved.kind != kind {
        return Err(corrupt(format!(
            "it holds {}, this meter keeps {kind}",
            saved.kind
        )));
    }
    Ok(saved.items)
}

/// The plain readings saved at `path`, oldest first; none if there is no file yet.
pub fn load_readings(path: &Path) -> Result<Vec<(ReadingId, Reading)>, OutboxFileError> {
    load_items::<SavedReading>(path, READINGS)?
        .into_iter()
        .map(|r| {
            ReadingId::parse(&r.id)
                .map(|id| (id, r.reading))
                .ok_or_else(|| {
                    OutboxFileError::Corrupt(
                        path.to_owned(),
                        format!("{:?} is not a reading id", r.id),
                    )
                })
        })
        .collect()
}

/// The private-mode reports (their bytes, as sent) saved at `path`; none if no file yet.
pub fn load_reports(path: &Path) -> Result<Vec<Vec<u8>>, OutboxFileError> {
    load_items::<String>(path, REPORTS)?
        .iter()
        .map(|b| {
            BASE64.decode(b).map_err(|e| {
                OutboxFileError::Corrupt(
                    path.to_owned(),
                    format!("a report that is not base64: {e}"),
                )
            })
        })
        .collect()
}

/// Loads `path` with `load` for a meter that is starting: a damaged file is moved aside to
/// `<path>.corrupt` and logged, and the meter starts with nothing restored, since a meter
/// that refused to start would lose every reading from then on.
pub fn load_or_set_aside<T>(
    path: &Path,
    load: impl FnOnce(&Path) -> Result<Vec<T>, OutboxFileError>,
) -> Result<Vec<T>, OutboxFileError> {
    match load(path) {
        Err(OutboxFileError::Corrupt(_, why)) => {
            let aside = with_suffix(path, ".corrupt");
            tracing::error!(
                file = %path.display(),
                moved_to = %aside.display(),
                "outbox file unreadable ({why}); starting without it"
            );
            std::fs::rename(path, &aside).map_err(|e| OutboxFileError::Write(aside, e))?;
            Ok(Vec::new())
        }
        other => other,
    }
}

/// Replaces the file at `path` with a plain meter's unacknowledged `readings`.
pub fn save_readings(
    path: &Path,
    readings: &[(ReadingId, Reading)],
) -> Result<(), OutboxFileError> {
    let items = readings
        .iter()
        .map(|(id, reading)| SavedReading {
            id: id.to_string(),
            reading: *reading,
        })
        .collect();
    save_items(path, READINGS, items)
}

/// Replaces the file at `path` with a private-mode meter's pending `reports` (sealed bytes).
pub fn save_reports(path: &Path, reports: &[Vec<u8>]) -> Result<(), OutboxFileError> {
    let items = reports.iter().map(|r| BASE64.encode(r)).collect();
    save_items(path, REPORTS, items)
}

/// Replaces the file at `path` with `items`: written to `<path>.tmp` (mode 0600: they are
/// the household's), synced, renamed over `path`, and the directory synced, so after a power
/// cut the file is either the old one or the new one, whole.
fn save_items<T: Serialize>(path: &Path, kind: &str, items: Vec<T>) -> Result<(), OutboxFileError> {
    let saved = Saved {
        version: VERSION,
        kind: kind.to_owned(),
        items,
    };
    let tmp = with_suffix(path, ".tmp");
    let failed = |p: &Path| {
        let p = p.to_owned();
        move |e| OutboxFileError::Write(p, e)
    };
    let json = serde_json::to_vec(&saved).map_err(|e| failed(path)(e.into()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed(&tmp))?;
    file.write_all(&json).map_err(failed(&tmp))?;
    file.sync_all().map_err(failed(&tmp))?;
    std::fs::rename(&tmp, path).map_err(failed(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed(dir))
}

/// What a starting meter takes from its `outbox_file`, if it has one: the lock, held for as
/// long as the meter runs, and what the last run left (read with `load`), to restore.
pub(crate) fn open<T>(
    path: Option<&Path>,
    load: fn(&Path) -> Result<Vec<T>, OutboxFileError>,
) -> Result<(Option<OutboxLock>, Vec<T>), OutboxFileError> {
    let Some(path) = path else {
        return Ok((None, Vec::new()));
    };
    let held = lock(path)?;
    let saved = load_or_set_aside(path, load)?;
    if !saved.is_empty() {
        tracing::info!(
            items = saved.len(),
            "resending what the last run left unacknowledged"
        );
    }
    Ok((Some(held), saved))
}

/// Saves `items` at `path` with `save` off the runtime's thread, since it syncs to disk. A
/// failure (disk full, say) costs the crash safety, not the items, which the meter still
/// holds in memory: it is logged, not returned.
pub(crate) async fn keep<I: Send + 'static>(
    path: PathBuf,
    items: Vec<I>,
    save: fn(&Path, &[I]) -> Result<(), OutboxFileError>,
) {
    match tokio::task::spawn_blocking(move || save(&path, &items)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("{e}; what it holds is kept in memory"),
        Err(e) => tracing::warn!("saving the outbox: {e}"),
    }
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_core::{Quality, Timestamp, Watts};

    fn reading(at: i64) -> Reading {
        Reading {
            power: Watts(1_230),
            at: Timestamp(at),
            seqnr: 7,
            quality: Quality::AUTOMATIC_READOUT,
        }
    }

    #[test]
    fn what_is_saved_is_loaded_in_order_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("house.outbox");
        assert!(load_readings(&path).unwrap().is_empty());
        let readings = vec![
            (ReadingId(u128::MAX), reading(60_000)),
            (ReadingId(5), reading(120_000)),
        ];
        save_readings(&path, &readings).unwrap();
        assert_eq!(load_readings(&path).unwrap(), readings);
        save_readings(&path, &readings[1..]).unwrap();
        assert_eq!(load_readings(&path).unwrap(), readings[1..]);
        save_readings(&path, &[]).unwrap();
        assert!(load_readings(&path).unwrap().is_empty());
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(!with_suffix(&path, ".tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_the_meter_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("house.outbox");
        for bad in [
            r#"{"version":1,"kind":"readings","items":[{"id":"zz","reading":"#,
            r#"{"version":9,"kind":"readings","items":[]}"#,
            r#"{"version":1,"kind":"readings","items":[{"id":"not hex","reading":{"power":1,"at":2,"seqnr":3,"quality":0}}]}"#,
            // A private meter's file read by a plain meter (its mode was switched).
            r#"{"version":1,"kind":"reports","items":["AAEC"]}"#,
            "\u{0}\u{1}binary",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(load_readings(&path), Err(OutboxFileError::Corrupt(..))),
                "{bad}"
            );
            assert!(load_or_set_aside(&path, load_readings).unwrap().is_empty());
            assert!(!path.exists());
            assert_eq!(
                std::fs::read_to_string(with_suffix(&path, ".corrupt")).unwrap(),
                bad
            );
        }
    }

    #[test]
    fn private_reports_round_trip_as_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("house.outbox");
        let reports = vec![vec![0u8, 1, 2, 255], vec![7u8; 300]];
        save_reports(&path, &reports).unwrap();
        assert_eq!(load_reports(&path).unwrap(), reports);
        std::fs::write(
            &path,
            "{\"version\":1,\"kind\":\"reports\",\"items\":[\"!!\"]}",
        )
        .unwrap();
        assert!(matches!(
            load_reports(&path),
            Err(OutboxFileError::Corrupt(..))
        ));
    }

    #[test]
    fn one_outbox_file_serves_one_meter_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("house.outbox");
        let held = lock(&path).unwrap();
        let err = lock(&path).unwrap_err();
        assert!(matches!(err, OutboxFileError::InUse(_)), "{err}");
        drop(held);
        lock(&path).unwrap();
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_it_not_a_panic() {
        let err = save_readings(Path::new("/nonexistent-dir/house.outbox"), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent-dir/house.outbox.tmp"),
            "{err}"
        );
    }
}
