//! Opening the store without ever resetting one. Every way sled can refuse
//! (an error, or a panic while it recovers) becomes a refusal that names the
//! path and what to do; the schema version is checked; and a marker file
//! tells a store sled finds empty because it is damaged from a new one.
//!
//! sled takes the first record of its log that fails its checksum for the
//! torn end of a crash and recovers up to it, silently: garbage over the start
//! of `db` (with no snapshot yet) opens as an empty database, garbage in the
//! middle as one that lost everything after it. So the marker file also
//! counts clean shutdowns, and each clean shutdown writes the same count into
//! the store first: a log that ends before the last clean shutdown it
//! recorded has lost data, and hookd refuses it. (After `kill -9` the tail
//! written since the last clean shutdown is not covered; that is the part a
//! crash may legitimately tear.) The marker is written only once the new
//! store's schema is on disk, so a crash while creating a store leaves either
//! no marker (the store is still new) or a store that has its schema.

use super::{SCHEMA_KEY, SCHEMA_VERSION};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

/// The marker file, in the store directory.
pub const MARKER_FILE: &str = "hookd-store";

const MARKER_TEXT: &str = "This directory is a hookd store. While this file exists, hookd \
refuses to treat the directory as a new, empty store, or one that lost data.\n";

/// The line of the marker file that holds the clean-shutdown count.
const CLEAN_LINE: &str = "clean-shutdowns: ";

/// The meta key of the clean-shutdown count inside the store.
const CLEAN_KEY: &[u8] = b"clean_shutdowns";

/// The meta key of the store's salt for made-up ids (`keys::made_up_id`).
const ID_SALT_KEY: &[u8] = b"id_salt";

/// The store's salt for made-up ids; a new store draws one at random. It
/// goes into the log before any event that uses it, so a flush that makes
/// such an event durable makes the salt durable too. A backup copies it.
pub(super) fn id_salt(db: &sled::Db) -> Result<u64> {
    if let Some(salt) = meta_u64(db, ID_SALT_KEY)? {
        return Ok(salt);
    }
    let salt = ulid::Ulid::new().random() as u64;
    db.open_tree("meta")?
        .insert(ID_SALT_KEY, &salt.to_be_bytes())?;
    Ok(salt)
}

/// The meta key of the floor under every id the store draws (see [`id_floor`]).
pub(super) const ID_FLOOR_KEY: &[u8] = b"id_floor";

/// What the store adds to every id sled's generator draws: 0, or, in a
/// store restored from a backup, the next id of the store it was copied
/// from. sled starts a reopened database's generator at its last persisted
/// count plus two million, and a backup's count is its own (near 0): a
/// store restarted once draws from two million on, and so would its
/// restored copy, over the copied events' seqs.
pub(super) fn id_floor(db: &sled::Db) -> Result<u64> {
    Ok(meta_u64(db, ID_FLOOR_KEY)?.unwrap_or(0))
}

/// The meta key of the counts a clean shutdown leaves for the next open
/// (see [`Counts`]). Never in a running store: the open takes it out.
pub(super) const COUNTS_KEY: &[u8] = b"counts";

/// What the store keeps counted while it runs, and counts at open with a
/// scan of every event and every due key (seconds and tens of MiB with a
/// million pending deliveries). A clean shutdown writes them down, tagged
/// with its number; the next open takes them instead, and removes them
/// durably before anything else is written, so a later crash finds none
/// and scans.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Counts {
    /// Bytes the stored events hold (see `budget`).
    pub held: u64,
    /// Open deliveries per subscription key.
    pub open: HashMap<u64, u64>,
}

impl Counts {
    /// `shutdown ‖ held ‖ (sub, open)*`, big-endian u64s.
    fn encode(&self, shutdown: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + 16 * self.open.len());
        v.extend_from_slice(&shutdown.to_be_bytes());
        v.extend_from_slice(&self.held.to_be_bytes());
        for (sub, n) in &self.open {
            v.extend_from_slice(&sub.to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    /// The shutdown number and the counts; `None` if `v` is not [`Counts::encode`]'s.
    fn decode(v: &[u8]) -> Option<(u64, Counts)> {
        if v.len() < 16 || v.len() % 16 != 0 {
            return None;
        }
        let word = |i: usize| u64::from_be_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
        let open = (1..v.len() / 16).map(|i| (word(2 * i), word(2 * i + 1)));
        Some((
            word(0),
            Counts {
                held: word(1),
                open: open.collect(),
            },
        ))
    }
}

/// sled's database and hookd's data tree.
pub(super) struct Opened {
    pub db: sled::Db,
    pub data: sled::Tree,
}

/// Opens (or creates) the store at `path`; refuses, with what to do, a store it cannot use.
pub(super) fn open(path: &Path, cache_bytes: u64) -> Result<Opened> {
    let refuse = |reason: String| Error::StoreOpen {
        path: path.to_owned(),
        reason,
    };
    create_private_dir(path).map_err(|e| refuse(format!("cannot create it: {e}")))?;
    let marker =
        read_marker(path).map_err(|e| refuse(format!("cannot read {MARKER_FILE}: {e}")))?;
    let marked = marker.is_some();
    let db = open_sled(path, cache_bytes)?;
    let sled_err = |e: sled::Error| refuse(describe_open_error(&e));
    // Look before creating a tree: creating one writes to the log, and on a
    // store about to be refused nothing may be written.
    let has_tree = |name: &[u8]| db.tree_names().iter().any(|n| n.as_ref() == name);
    let schema = match has_tree(b"meta") {
        true => db
            .open_tree("meta")
            .and_then(|meta| meta.get(SCHEMA_KEY))
            .map_err(sled_err)?,
        false => None,
    };
    match schema {
        Some(v) => {
            let version = u32::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                refuse(
                    "its schema marker is damaged; hookd will not reset it: restore it from a \
                     backup"
                        .into(),
                )
            })?);
            if version > SCHEMA_VERSION {
                return Err(refuse(format!(
                    "it was written by a newer hookd (schema {version}; this one reads up to \
                     {SCHEMA_VERSION}); run that newer hookd or restore a backup"
                )));
            }
            let recorded = marker.unwrap_or(0);
            let held = clean_shutdowns(&db).map_err(sled_err)?;
            if held < recorded {
                return Err(refuse(format!(
                    "its log ends before the last clean shutdown recorded in {MARKER_FILE} \
                     (shutdown {recorded}, the log holds {held}): part of it is damaged or \
                     lost; hookd will not reset it: restore it from a backup, or move it aside \
                     to start empty (if you put an older copy here on purpose, delete \
                     {MARKER_FILE} to accept it)"
                )));
            }
            if version < SCHEMA_VERSION {
                // From here on this hookd writes records an older one misreads.
                db.open_tree("meta")
                    .and_then(|meta| meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()))
                    .map_err(sled_err)?;
                db.flush().map_err(sled_err)?;
            }
        }
        None if marked => {
            return Err(refuse(format!(
                "sled finds no hookd data in it, yet its {MARKER_FILE} file says it held a \
                 hookd store: it is damaged; hookd will not reset it: restore it from a backup, \
                 or move it aside to start empty"
            )))
        }
        None if !has_tree(b"data") || db.open_tree("data").map_err(sled_err)?.is_empty() => {
            db.open_tree("meta")
                .and_then(|meta| meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()))
                .map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
        }
        None => {
            return Err(refuse(
                "it holds data but no schema marker; it is not a hookd store or is damaged".into(),
            ))
        }
    }
    let data = db.open_tree("data").map_err(sled_err)?;
    sync_sled_files(path).map_err(|e| refuse(format!("cannot fsync its files: {e}")))?;
    if !marked {
        // Also marks stores made by a hookd from before the marker.
        let held = clean_shutdowns(&db).map_err(sled_err)?;
        write_marker(path, held).map_err(|e| refuse(format!("cannot write {MARKER_FILE}: {e}")))?;
    }
    restrict_files(path);
    Ok(Opened { db, data })
}

/// sled's `open`, with a panic during recovery (sled 0.34 panics on some
/// damage it meets, e.g. pages lost to a power cut) turned into a refusal.
fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let advice = format!(
        "store at {}: sled failed while recovering it: it is damaged; hookd will not reset it: \
         restore it from a backup, or move it aside to start empty",
        path.display()
    );
    let refuse = |reason: String| Error::StoreOpen {
        path: path.to_owned(),
        reason,
    };
    let hook_advice = advice.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Where panics abort (release builds) this is the last word, so say what to do;
        // where they unwind, the refusal below says it.
        if cfg!(panic = "abort") {
            eprintln!("error: {hook_advice} ({info})");
        }
    }));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace)
            .open()
    }));
    std::panic::set_hook(previous);
    match opened {
        Ok(result) => result.map_err(|e| refuse(describe_open_error(&e))),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(refuse(format!(
                "sled failed while recovering it ({message}): it is damaged; hookd will not \
                 reset it: restore it from a backup, or move it aside to start empty"
            )))
        }
    }
}

fn describe_open_error(e: &sled::Error) -> String {
    match e {
        // sled 0.34 reports a held lock as an `Other` error whose text says so.
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            "it is locked by another process (is another hookd running on it?); stop that \
             process or point storage.path elsewhere"
                .into()
        }
        sled::Error::Corruption { .. } => format!(
            "it is damaged (sled: {e}); hookd will not reset it: restore it from a backup, or \
             move it aside to start empty"
        ),
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("permission denied ({io}); run hookd as the store's owner")
        }
        other => format!("cannot open it: {other}"),
    }
}

/// sled never fsyncs its `conf` file or the directories it creates files in;
/// a power cut could take them with it. Cheap, and done once per start.
fn sync_sled_files(path: &Path) -> std::io::Result<()> {
    File::open(path.join("conf"))?.sync_all()?;
    File::open(path.join("db"))?.sync_all()?;
    File::open(path.join("blobs"))?.sync_all()?;
    File::open(path)?.sync_all()
}

/// Records a clean shutdown, after the last write: the next count goes into
/// the store with the `counts` of that moment, durably, then into the
/// marker file. The counts go first: a crash between the two leaves counts
/// of a shutdown the store does not record, which the next open ignores.
pub(super) fn record_clean_shutdown(db: &sled::Db, path: &Path, counts: &Counts) -> Result<()> {
    let count = clean_shutdowns(db)? + 1;
    let meta = db.open_tree("meta")?;
    meta.insert(COUNTS_KEY, counts.encode(count))?;
    meta.insert(CLEAN_KEY, &count.to_be_bytes())?;
    db.flush()?;
    File::open(path.join("db"))
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync of the store's data file", e))?;
    write_marker(path, count).map_err(|e| Error::io(format!("writing {MARKER_FILE}"), e))
}

/// The counts the last clean shutdown left, if the store has had no write
/// since; either way none are left behind, durably, before it returns.
pub(super) fn take_counts(db: &sled::Db) -> Result<Option<Counts>> {
    let meta = db.open_tree("meta")?;
    let Some(v) = meta.remove(COUNTS_KEY)? else {
        return Ok(None);
    };
    db.flush()?;
    let last = clean_shutdowns(db)?;
    Ok(Counts::decode(&v)
        .filter(|(shutdown, _)| *shutdown == last)
        .map(|(_, counts)| counts))
}

fn clean_shutdowns(db: &sled::Db) -> sled::Result<u64> {
    Ok(meta_u64(db, CLEAN_KEY)?.unwrap_or(0))
}

/// A u64 kept in `meta` under `key`; `None` if there is none (or it is not 8 bytes).
fn meta_u64(db: &sled::Db, key: &[u8]) -> sled::Result<Option<u64>> {
    Ok(db
        .open_tree("meta")?
        .get(key)?
        .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
}

/// The clean-shutdown count of the marker file, `None` without one.
fn read_marker(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::read_to_string(path.join(MARKER_FILE)) {
        Ok(text) => Ok(Some(
            text.lines()
                .find_map(|l| l.strip_prefix(CLEAN_LINE))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the marker file atomically (temp file, fsync, rename, fsync of the directory).
fn write_marker(path: &Path, clean_shutdowns: u64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.join(format!("{MARKER_FILE}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    writeln!(file, "{MARKER_TEXT}{CLEAN_LINE}{clean_shutdowns}")?;
    file.sync_all()?;
    std::fs::rename(&temp, path.join(MARKER_FILE))?;
    File::open(path)?.sync_all()
}

/// The store directory is private to hookd's user.
pub(super) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// sled creates its files with the umask's mode; make them owner-only
/// (directories 0700, files 0600), subdirectories too.
pub(super) fn restrict_files(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        let (mode, private) = if kind.is_dir() {
            (0o700, 0o077)
        } else {
            (0o600, 0o177)
        };
        if meta.permissions().mode() & private != 0 {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode));
        }
        if kind.is_dir() {
            restrict_files(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_back_as_written_and_nothing_else_reads_as_counts() {
        let counts = Counts {
            held: 12_345,
            open: HashMap::from([(1, 7), (u64::MAX, 0), (9, u64::MAX)]),
        };
        assert_eq!(Counts::decode(&counts.encode(3)), Some((3, counts)));
        let empty = Counts::default();
        assert_eq!(Counts::decode(&empty.encode(1)), Some((1, empty)));
        for junk in [&b""[..], &[0; 8], &[0; 24], &[0; 33]] {
            assert_eq!(Counts::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn counts_are_taken_once_and_only_from_the_shutdown_the_store_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let opened = open(&path, 1 << 20).unwrap();
        let counts = Counts {
            held: 99,
            open: HashMap::from([(4, 2)]),
        };
        record_clean_shutdown(&opened.db, &path, &counts).unwrap();
        assert_eq!(take_counts(&opened.db).unwrap(), Some(counts.clone()));
        assert_eq!(take_counts(&opened.db).unwrap(), None, "taken, so gone");

        // Counts tagged with a shutdown the store does not record (a crash
        // between writing them and the count) are not taken, and are removed.
        let meta = opened.db.open_tree("meta").unwrap();
        let last = clean_shutdowns(&opened.db).unwrap();
        meta.insert(COUNTS_KEY, counts.encode(last + 1)).unwrap();
        assert_eq!(take_counts(&opened.db).unwrap(), None);
        assert_eq!(meta.get(COUNTS_KEY).unwrap(), None);
    }
}
