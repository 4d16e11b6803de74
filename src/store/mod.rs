//! The only module that touches sled: tree names, key layouts, record codec,
//! group commit. Everything above it speaks in `model` types.
//!
//! One data tree holds every record kind under a one-byte tag (see `keys`), so
//! an event, its deliveries and their due keys land in one atomic `apply_batch`.

mod backup;
mod budget;
mod census;
mod codec;
mod deliveries;
mod events;
mod flush;
mod ingest;
mod keys;
#[cfg(test)]
mod model_test;
mod open;
mod queries;
mod recent;
mod retention;
mod round;

pub use backup::BackupSummary;
pub use census::Census;
pub use deliveries::{AttemptRecord, Due, DueScan, Loaded};
pub use flush::Flusher;
pub use ingest::{Accepted, NewEvent};
pub use open::MARKER_FILE;
pub use queries::{DeliveryFilter, EventDetail, EventFilter};
pub use retention::PurgeProgress;

use crate::error::{Error, Result};
use crate::model::Subscription;
use open::{create_private_dir, restrict_files};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The schema this hookd writes; it opens stores of this version or older,
/// and marks an older one with this version before it writes to it.
/// 2: a fan-out delivery has no record until it changes (see `Event::subs`),
/// and a delivery record keeps the latest attempt.
/// 3: the unordered deliveries an ingest round opens for one subscription
/// share one due key (`keys::due_group`).
/// 4: the small events of an ingest round share event keys (`events`), a
/// due key says which event key holds its delivery's event, and an id
/// hookd made up has no `I` key (`keys::made_up_id`).
pub const SCHEMA_VERSION: u32 = 4;
const SCHEMA_KEY: &[u8] = b"schema";

/// The open store. Cheap to share behind an `Arc`.
pub struct Store {
    db: sled::Db,
    data: sled::Tree,
    flusher: Arc<Flusher>,
    path: PathBuf,
    /// Held across the idempotency check and the write of an ingest, so two
    /// requests with one id cannot both be accepted.
    ingest_lock: Mutex<()>,
    /// Held while a delivery record is read and rewritten, so an attempt's
    /// outcome and an operator's change never interleave.
    delivery_lock: Mutex<()>,
    /// Open deliveries per subscription key, counted at open and kept live.
    open: Mutex<HashMap<u64, u64>>,
    /// Lane successors made due by a batch that is not yet durable: not to
    /// be attempted until it is, or a crash could undo their head's close
    /// after they went out (a reorder, not just a repeat).
    unsettled: Mutex<std::collections::HashSet<u64>>,
    /// Bytes the stored events hold (see `budget`), counted at open and kept live.
    held: AtomicU64,
    /// Set by the clean shutdown, under both locks: no write may follow it.
    closed: AtomicBool,
    /// Writes made outside the commit thread's rounds (operators,
    /// retention, subscription changes), counted twice each under
    /// `delivery_lock`: odd while the write lands, even once it has. A
    /// round whose attempt read its delivery when the count was what it is
    /// now knows that nothing else changed it since, and records the
    /// outcome without reading it again (see `stage_attempt`); an attempt's
    /// read that saw an odd count, or a different count after it than
    /// before, may have seen part of a write (see `load_for_attempt`).
    changes: AtomicU64,
    /// Event keys attempts read lately (see `recent`).
    recent: recent::RecentEvents,
    /// Added to every id sled draws (see `open::id_floor`).
    id_floor: u64,
    /// Mixed into made-up ids (see `keys::made_up_id`).
    id_salt: u64,
}

/// How to open the store.
pub struct StoreOptions<'a> {
    pub path: &'a Path,
    pub cache_bytes: u64,
}

impl Store {
    /// Opens (or creates) the store; refuses, with what to do, a store it cannot use.
    ///
    /// Starts the commit thread (see [`Flusher`]).
    pub fn open(options: StoreOptions<'_>) -> Result<Arc<Store>> {
        let path = options.path;
        let open_err = |reason: String| Error::StoreOpen {
            path: path.to_owned(),
            reason,
        };
        let open::Opened { db, data } = open::open(path, options.cache_bytes)?;
        // First: the counts go before this open writes anything (the salt).
        let counts = open::take_counts(&db).map_err(|e| {
            open_err(format!(
                "cannot take the counts its last shutdown left ({e}): restore it from a backup, \
                 or move it aside to start empty"
            ))
        })?;
        let id_salt = open::id_salt(&db).map_err(|e| {
            open_err(format!(
                "cannot read its id salt ({e}): restore it from a backup"
            ))
        })?;
        let id_floor = open::id_floor(&db).map_err(|e| {
            open_err(format!(
                "cannot read its id floor ({e}): restore it from a backup"
            ))
        })?;
        let data_file = std::fs::File::open(path.join("db"))
            .map_err(|e| open_err(format!("cannot open its data file for fsync: {e}")))?;
        let flusher = Flusher::new();
        let files = flush::Files {
            db: db.clone(),
            data_file,
            blobs: path.join("blobs"),
        };
        let store = Store {
            db,
            data,
            flusher,
            path: path.to_owned(),
            ingest_lock: Mutex::new(()),
            delivery_lock: Mutex::new(()),
            open: Mutex::new(HashMap::new()),
            unsettled: Mutex::new(Default::default()),
            held: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            changes: AtomicU64::new(0),
            recent: Default::default(),
            id_floor,
            id_salt,
        };
        match counts {
            Some(counts) => {
                store.held.store(counts.held, Ordering::Relaxed);
                *store.open.lock().unwrap() = counts.open;
            }
            None => store.count_all().map_err(|e| {
                open_err(format!(
                    "reading its due index failed ({e}); it may be damaged: restore it from a \
                     backup, or move it aside to start empty"
                ))
            })?,
        }
        let store = Arc::new(store);
        store.flusher.start(Arc::downgrade(&store), files)?;
        Ok(store)
    }

    /// Counts what the store holds and what is open, scanning every event
    /// and due key: after a crash, or on a store from before `Counts`.
    fn count_all(&self) -> Result<()> {
        // Two scans of separate key ranges, one per core.
        let (open, held) = std::thread::scope(|scope| {
            let held = scope.spawn(|| self.count_held());
            let open = self.count_open_deliveries();
            let held = held.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            (open, held)
        });
        open.and(held)
    }

    /// Applies `batch` to the data tree. After an I/O error sled stays
    /// unusable for good (it keeps failing every write even once space is
    /// freed), so the store is marked failed: the daemon stops, exits
    /// non-zero, and its supervisor restarts it on a store that opens again.
    /// Call with `delivery_lock` held.
    fn apply(&self, batch: sled::Batch) -> Result<()> {
        // Odd until the write has landed (see `changes`).
        self.changes.fetch_add(1, Ordering::SeqCst);
        let applied = self.apply_round(batch);
        // Counted even if it failed: part of it may have landed.
        self.changes.fetch_add(1, Ordering::SeqCst);
        applied
    }

    /// [`Store::apply`] for the commit thread's rounds, which do not count
    /// as changes: they add deliveries, record attempts and make a closed
    /// head's successor due, and none of that touches a delivery with an
    /// attempt out. The scheduler never has two attempts of one delivery
    /// out at once, and a successor is not out before its head closes.
    fn apply_round(&self, batch: sled::Batch) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Write(
                "the store is closed: hookd is shutting down".into(),
            ));
        }
        self.data.apply_batch(batch).map_err(|e| self.fatal(e))
    }

    /// `e` as an error, marking the store failed if it is an I/O error.
    fn fatal(&self, e: sled::Error) -> Error {
        if let sled::Error::Io(io) = &e {
            let why = flush::io_reason(io);
            tracing::error!(error = %why, "a store write failed; the store is unusable");
            let path = self.path.display();
            self.flusher
                .fail(format!("a write to the store at {path} failed: {why}"));
        }
        Error::Store(e)
    }

    /// The group-commit handle: wait on it before acknowledging a write.
    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes files sled created since the last call owner-only.
    pub fn keep_files_private(&self) {
        restrict_files(&self.path);
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Flushes and fsyncs now, bypassing group commit, and records a clean
    /// shutdown (see `open`): call it once, after the last write.
    /// From then on every write fails: the counts it records stay true.
    pub fn flush_now(&self) -> Result<()> {
        let _delivery = self.delivery_lock.lock().unwrap();
        let _ingest = self.ingest_lock.lock().unwrap();
        self.closed.store(true, Ordering::Relaxed);
        // A store that failed a flush is not shut down cleanly: the next
        // open counts afresh, and its log is judged as after a crash.
        if let Some(reason) = self.flusher.failure() {
            return Err(Error::Flush(reason));
        }
        let counts = open::Counts {
            held: self.held_bytes(),
            open: self.open.lock().unwrap().clone(),
        };
        open::record_clean_shutdown(&self.db, &self.path, &counts)
    }

    /// Every subscription, for the in-memory routing table.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>> {
        let mut subs = Vec::new();
        for item in self.data.scan_prefix([keys::SUB]) {
            let (_, v) = item?;
            subs.push(codec::decode(&v, "subscription")?);
        }
        Ok(subs)
    }

    /// Writes a subscription durably (create or update).
    pub async fn put_subscription(&self, sub: &Subscription) -> Result<()> {
        {
            let _guard = self.delivery_lock.lock().unwrap();
            let mut batch = sled::Batch::default();
            batch.insert(&keys::with_u64(keys::SUB, sub.key), codec::encode(sub));
            self.apply(batch)?;
        }
        self.flusher.durable().await
    }

    /// A fresh id: an event's seq, a delivery's or a due group's id, a
    /// subscription's key. Above every id the store holds.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.id_floor.saturating_add(self.db.generate_id()?))
    }

    /// Open deliveries of one subscription.
    pub fn open_count(&self, sub_key: u64) -> u64 {
        self.open
            .lock()
            .unwrap()
            .get(&sub_key)
            .copied()
            .unwrap_or(0)
    }

    /// Open deliveries in all.
    pub fn open_total(&self) -> u64 {
        self.open.lock().unwrap().values().sum()
    }

    fn adjust_open(&self, sub_key: u64, delta: i64) {
        let mut open = self.open.lock().unwrap();
        let n = open.entry(sub_key).or_insert(0);
        *n = n.saturating_add_signed(delta);
    }

    fn count_open_deliveries(&self) -> Result<()> {
        let mut open = HashMap::new();
        for item in self.data.scan_prefix([keys::DUE]) {
            let (k, v) = item?;
            if let Some((sub, _, id)) = keys::parse_due(&k) {
                *open.entry(sub).or_insert(0u64) += keys::due_members(id, &v).count() as u64;
            }
        }
        // Lane entries behind each head are open too (the head is counted above).
        self.each_lane_follower(|sub| *open.entry(sub).or_insert(0u64) += 1)?;
        *self.open.lock().unwrap() = open;
        Ok(())
    }

    /// Open deliveries that wait in a lane behind its head.
    fn lane_followers(&self) -> Result<u64> {
        let mut n = 0;
        self.each_lane_follower(|_| n += 1)?;
        Ok(n)
    }

    /// Calls `f` with the subscription key of every lane entry behind its
    /// lane's head (the head is in the due index).
    fn each_lane_follower(&self, mut f: impl FnMut(u64)) -> Result<()> {
        let mut previous_lane: Option<Vec<u8>> = None;
        for item in self.data.scan_prefix([keys::LANE]) {
            let (k, _) = item?;
            let lane = keys::lane_of(&k);
            if previous_lane.as_deref() == Some(lane) {
                if let Some(sub) = keys::tail_u64(&k) {
                    f(sub);
                }
            } else {
                previous_lane = Some(lane.to_vec());
            }
        }
        Ok(())
    }
}

/// A store in a fresh temporary directory, for unit tests; keep the directory.
#[cfg(test)]
pub(crate) fn open_temp() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions {
        path: &dir.path().join("store"),
        cache_bytes: 1 << 20,
    })
    .unwrap();
    (dir, store)
}
