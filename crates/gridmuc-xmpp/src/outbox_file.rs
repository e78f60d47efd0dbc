//! A meter's unacknowledged readings on its own disk (`outbox_file`), so a crash, a power cut
//! or `kill -9` loses none of them: rewritten whole each time they change (written to a
//! temporary file, synced, renamed over the old one, so a cut mid-write leaves the old file
//! whole), and read back when the meter starts, which resends them with their original ids.
//! The bot counts each once by its id, whichever run delivered it.
//!
//! JSON, one object per reading: small (a few dozen readings at most in practice), and an
//! operator can read what a meter still holds.

use gridmuc_core::{Reading, ReadingId};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The file's format version; a newer meter can tell an older file from its own.
const VERSION: u32 = 1;

/// What the file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    version: u32,
    readings: Vec<SavedReading>,
}

/// One unacknowledged reading.
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

/// The readings saved at `path`, oldest first; none if there is no file yet.
pub fn load(path: &Path) -> Result<Vec<(ReadingId, Reading)>, OutboxFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OutboxFileError::Read(path.to_owned(), e)),
    };
    let corrupt = |why: String| OutboxFileError::Corrupt(path.to_owned(), why);
    let saved: Saved = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if saved.version != VERSION {
        return Err(corrupt(format!(
            "format version {} (this meter writes {VERSION})",
            saved.version
        )));
    }
    saved
        .readings
        .into_iter()
        .map(|r| {
            ReadingId::parse(&r.id)
                .map(|id| (id, r.reading))
                .ok_or_else(|| corrupt(format!("{:?} is not a reading id", r.id)))
        })
        .collect()
}

/// Loads `path` for a meter that is starting: a damaged file is moved aside to
/// `<path>.corrupt` and logged, and the meter starts with nothing restored, since a meter
/// that refused to start would lose every reading from then on.
pub fn load_or_set_aside(path: &Path) -> Result<Vec<(ReadingId, Reading)>, OutboxFileError> {
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

/// Replaces the file at `path` with `readings`: written to `<path>.tmp` (mode 0600: they are
/// the household's readings), synced, renamed over `path`, and the directory synced, so
/// after a power cut the file is either the old one or the new one, whole.
pub fn save(path: &Path, readings: &[(ReadingId, Reading)]) -> Result<(), OutboxFileError> {
    let saved = Saved {
        version: VERSION,
        readings: readings
            .iter()
            .map(|(id, reading)| SavedReading {
                id: id.to_string(),
                reading: *reading,
            })
            .collect(),
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

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
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
        assert!(load(&path).unwrap().is_empty());
        let readings = vec![
            (ReadingId(u128::MAX), reading(60_000)),
            (ReadingId(5), reading(120_000)),
        ];
        save(&path, &readings).unwrap();
        assert_eq!(load(&path).unwrap(), readings);
        save(&path, &readings[1..]).unwrap();
        assert_eq!(load(&path).unwrap(), readings[1..]);
        save(&path, &[]).unwrap();
        assert!(load(&path).unwrap().is_empty());
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
            "{\"version\":1,\"readings\":[{\"id\":\"zz\",\"reading\":",
            "{\"version\":9,\"readings\":[]}",
            "{\"version\":1,\"readings\":[{\"id\":\"not hex\",\"reading\":{\"power\":1,\"at\":2,\"seqnr\":3,\"quality\":0}}]}",
            "\u{0}\u{1}binary",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(load(&path), Err(OutboxFileError::Corrupt(..))),
                "{bad}"
            );
            assert!(load_or_set_aside(&path).unwrap().is_empty());
            assert!(!path.exists());
            assert_eq!(
                std::fs::read_to_string(with_suffix(&path, ".corrupt")).unwrap(),
                bad
            );
        }
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
        let err = save(Path::new("/nonexistent-dir/house.outbox"), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent-dir/house.outbox.tmp"),
            "{err}"
        );
    }
}
