//! Group commit: one flusher task makes writes durable for every waiter at once.
//!
//! A writer writes to sled, then calls [`Flusher::durable`]. It takes a ticket
//! after its write; the flusher notes the highest ticket *before* it starts a
//! flush, so every ticket up to that one is covered when the flush ends.
//! sled's `flush` ends in `sync_file_range`, which survives a crash but not a
//! power cut, so each round also `fdatasync`s the data file.
//!
//! sled writes a page larger than its blob threshold (~128 KiB) to a file of
//! its own under `blobs/` and never fsyncs it; after a power cut that kept
//! the log record but not the blob, sled cannot even open the store. Stored
//! values are kept small so that pages stay under the threshold (see
//! `keys::CHUNK_SIZE`), and any blob that appears anyway is fsynced, with its
//! directory, before the data file in the same round.

use crate::error::{Error, Result};
use crate::metrics::{Histogram, FLUSH_BUCKETS};
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Where the flusher stands.
#[derive(Debug, Clone, Default)]
struct Flushed {
    /// Every ticket up to this one is on disk.
    through: u64,
    /// Set once a flush or a write failed: the store is unusable.
    failed: Option<String>,
}

/// The shared handle writers wait on.
pub struct Flusher {
    tickets: AtomicU64,
    wake: Notify,
    state: watch::Sender<Flushed>,
    /// How long each flush round took (flush plus fsync), for metrics.
    pub rounds: Histogram,
}

impl Flusher {
    /// Starts the flusher task for `db`, fsyncing new files in `blobs` and
    /// then `data_file` after each flush.
    pub fn start(db: sled::Db, data_file: File, blobs: PathBuf) -> Arc<Flusher> {
        let flusher = Arc::new(Flusher {
            tickets: AtomicU64::new(0),
            wake: Notify::new(),
            state: watch::channel(Flushed::default()).0,
            rounds: Histogram::new(&FLUSH_BUCKETS),
        });
        let data_file = Arc::new(data_file);
        let blobs_dir = blobs.clone();
        let blobs = Arc::new(std::sync::Mutex::new(BlobSync {
            dir: blobs,
            synced: HashSet::new(),
        }));
        let me = flusher.clone();
        tokio::spawn(async move {
            let tx = &me.state;
            loop {
                if tx.borrow().failed.is_some() {
                    return;
                }
                let target = me.tickets.load(Ordering::SeqCst);
                if target <= tx.borrow().through {
                    // Exit when every handle but ours is gone and nothing is owed.
                    if Arc::strong_count(&me) == 1 {
                        return;
                    }
                    tokio::select! {
                        _ = me.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
                let (db, file, blobs) = (db.clone(), data_file.clone(), blobs.clone());
                let started = Instant::now();
                let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    db.flush().map_err(|e| match e {
                        sled::Error::Io(io) => io,
                        other => std::io::Error::other(other),
                    })?;
                    blobs.lock().unwrap().sync_new()?;
                    file.sync_data()
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                me.rounds.observe(started.elapsed());
                match result {
                    Ok(()) => {
                        tx.send_modify(|s| s.through = target);
                    }
                    Err(e) => {
                        let why = io_reason(&e);
                        tracing::error!(error = %why, "store flush failed; the store is unusable");
                        let store = blobs_dir.parent().unwrap_or(&blobs_dir).display();
                        me.fail(format!("flushing the store at {store} failed: {why}"));
                        return;
                    }
                }
            }
        });
        flusher
    }

    /// Waits until everything written before this call is on disk.
    pub async fn durable(&self) -> Result<()> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let mut state = self.state.subscribe();
        let seen = state
            .wait_for(|s| s.through >= ticket || s.failed.is_some())
            .await
            .map_err(|_| Error::Flush("the flusher stopped".into()))?;
        match &seen.failed {
            Some(reason) if seen.through < ticket => Err(Error::Flush(reason.clone())),
            _ => Ok(()),
        }
    }

    /// The reason the store became unusable, if it did.
    pub fn failure(&self) -> Option<String> {
        self.state.borrow().failed.clone()
    }

    /// Marks the store unusable: every waiter not yet covered gets an error,
    /// and [`Flusher::failed`] resolves (the daemon stops). The first reason wins.
    pub fn fail(&self, reason: String) {
        self.state.send_if_modified(|s| {
            let first = s.failed.is_none();
            if first {
                s.failed = Some(reason);
            }
            first
        });
    }

    /// Resolves once a flush or a write has failed.
    pub async fn failed(&self) -> String {
        let mut state = self.state.subscribe();
        let reason = match state.wait_for(|s| s.failed.is_some()).await {
            Ok(s) => s.failed.clone().unwrap_or_default(),
            Err(_) => "the flusher stopped".into(),
        };
        reason
    }
}

/// An I/O error for people: sled rewraps OS errors with their Debug text, so
/// the kind reads better when there is one.
pub(super) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::Other => e.to_string(),
        kind => kind.to_string(),
    }
}

/// The blob files already fsynced. A set, not a high-water mark: blob files
/// are named by log position but need not appear in that order.
struct BlobSync {
    dir: PathBuf,
    synced: HashSet<u64>,
}

impl BlobSync {
    /// Fsyncs every blob file not synced yet, then the directory if there was one.
    fn sync_new(&mut self) -> std::io::Result<()> {
        let mut present = HashSet::with_capacity(self.synced.len());
        let mut fresh = false;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(lsn) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            present.insert(lsn);
            if self.synced.contains(&lsn) {
                continue;
            }
            match File::open(entry.path()) {
                Ok(f) => f.sync_data()?,
                // Collected by sled since the listing: nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            fresh = true;
        }
        if fresh {
            File::open(&self.dir)?.sync_all()?;
        }
        self.synced = present;
        Ok(())
    }
}
