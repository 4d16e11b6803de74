//! Group commit: one thread writes what ingest queued and makes every
//! write durable for all its waiters at once.
//!
//! Each round of the commit thread takes every queued ingest and attempt
//! outcome, writes them in one sled batch (see `round`), answers the
//! attempts, flushes, and answers the ingests. sled rolls its log buffer
//! twice for every `apply_batch` (a `pwrite` each, on its own thread pool),
//! so one batch per round instead of one per request is most of what ingest
//! costs under load; requests that arrive during a flush share the next one.
//!
//! Other writers write to sled themselves, then call [`Flusher::durable`]. It
//! takes a ticket after their write; a round notes the highest ticket
//! *before* it starts its flush, so every ticket up to that one is covered
//! when the flush ends. sled's `flush` ends in `sync_file_range`, which
//! survives a crash but not a power cut, so each round also `fdatasync`s
//! the data file.
//!
//! sled writes a page larger than its blob threshold (~128 KiB) to a file of
//! its own under `blobs/` and never fsyncs it; after a power cut that kept
//! the log record but not the blob, sled cannot even open the store. Stored
//! values are kept small so that pages stay under the threshold (see
//! `keys::CHUNK_SIZE`), and any blob that appears anyway is fsynced, with its
//! directory, before the data file in the same round.

use super::deliveries::AttemptJob;
use super::ingest::{IngestJob, RoundKeys};
use super::Store;
use crate::error::{Error, Result};
use crate::metrics::{Histogram, FLUSH_BUCKETS};
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

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
    /// Writes waiting for the next round.
    queue: Mutex<Queued>,
    /// Rings when a job is queued or a ticket taken.
    wake: Condvar,
    state: watch::Sender<Flushed>,
    /// How long each flush round took (flush plus fsync), for metrics.
    pub rounds: Histogram,
}

/// What the commit thread needs besides the store.
pub(super) struct Files {
    pub db: sled::Db,
    /// The log file, fsynced after each flush.
    pub data_file: File,
    /// sled's blob directory, whose new files are fsynced too.
    pub blobs: PathBuf,
}

impl Flusher {
    pub(super) fn new() -> Arc<Flusher> {
        Arc::new(Flusher {
            tickets: AtomicU64::new(0),
            queue: Mutex::new(Queued::default()),
            wake: Condvar::new(),
            state: watch::channel(Flushed::default()).0,
            rounds: Histogram::new(&FLUSH_BUCKETS),
        })
    }

    /// Starts the commit thread. It holds the store only during a round, and
    /// ends once the store is dropped and nothing is owed.
    pub(super) fn start(self: &Arc<Self>, store: Weak<Store>, files: Files) -> Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("hookd-commit".into())
            .spawn(move || me.run(store, files))
            .map(|_| ())
            .map_err(|e| Error::io("starting the store's commit thread", e))
    }

    fn run(&self, store: Weak<Store>, files: Files) {
        let store_dir = files.blobs.parent().unwrap_or(&files.blobs).to_owned();
        let mut blobs = BlobSync::new(files.blobs.clone());
        loop {
            let jobs = {
                let mut queue = self.queue.lock().unwrap();
                loop {
                    if let Some(reason) = self.failure() {
                        drop(queue);
                        self.refuse_queued(&reason);
                        return;
                    }
                    let owed = self.tickets.load(Ordering::SeqCst) > self.state.borrow().through;
                    if !queue.ingests.is_empty() || !queue.attempts.is_empty() || owed {
                        break;
                    }
                    if store.strong_count() == 0 {
                        return;
                    }
                    queue = self
                        .wake
                        .wait_timeout(queue, Duration::from_millis(500))
                        .unwrap()
                        .0;
                }
                queue.take_round()
            };

            let Queued { ingests, attempts } = jobs;
            let result = match store.upgrade() {
                Some(store) => store
                    .write_round(&ingests, &attempts)
                    .map_err(|e| e.to_string()),
                None => Err("the store is closed".to_string()),
            };
            let written: Vec<_> = match result {
                Ok((answers, recorded)) => {
                    // Attempt outcomes are answered once written: a crash
                    // before the flush only repeats those attempts.
                    for (job, r) in attempts.into_iter().zip(recorded) {
                        let _ = job.reply.send(Ok(r));
                    }
                    ingests.into_iter().zip(answers).collect()
                }
                Err(why) => {
                    Queued { ingests, attempts }.refuse(|| Error::Write(why.clone()));
                    Vec::new()
                }
            };

            let target = self.tickets.load(Ordering::SeqCst);
            let started = Instant::now();
            let result = flush_files(&files, &mut blobs);
            self.rounds.observe(started.elapsed());
            match result {
                Ok(()) => {
                    self.state
                        .send_modify(|s| s.through = s.through.max(target));
                    for (job, answers) in written {
                        let _ = job.reply.send(Ok(answers));
                    }
                }
                Err(e) => {
                    let why = io_reason(&e);
                    tracing::error!(error = %why, "store flush failed; the store is unusable");
                    let reason = format!(
                        "flushing the store at {} failed: {why}",
                        store_dir.display()
                    );
                    self.fail(reason.clone());
                    for (job, _) in written {
                        let _ = job.reply.send(Err(Error::Flush(reason.clone())));
                    }
                }
            }
        }
    }

    /// Queues a write for the next round. An ingest is answered once it is
    /// durable, an attempt outcome once it is written.
    pub(super) fn submit(&self, job: Job) {
        let mut queue = self.queue.lock().unwrap();
        if let Some(reason) = self.failure() {
            drop(queue);
            Queued::from(job).refuse(|| Error::Flush(reason.clone()));
            return;
        }
        queue.push(job);
        self.wake.notify_one();
    }

    /// Answers every queued write with the store's failure.
    fn refuse_queued(&self, reason: &str) {
        let queued = std::mem::take(&mut *self.queue.lock().unwrap());
        queued.refuse(|| Error::Flush(reason.to_string()));
    }

    /// Waits until everything written before this call is on disk.
    pub async fn durable(&self) -> Result<()> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        {
            // Under the lock, so the commit thread cannot miss the ring
            // between its look at the tickets and its wait.
            let _queue = self.queue.lock().unwrap();
            self.wake.notify_one();
        }
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
        let _queue = self.queue.lock().unwrap();
        self.wake.notify_one();
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

/// Keys a round's ingests write at most, about (a single request may exceed
/// it; see `RoundKeys`). Keeps a round's batch bounded, so the memory
/// sled holds on to until the batch ends, and the wait of whoever queued
/// behind it. 1,536 is 1,463 small events with one subscription each
/// (records share pack keys), 765 with a hundred (deliveries share due
/// keys), 504 with one ordered delivery each, or 23 of 256 KiB.
const ROUND_KEYS: usize = 1536;

/// Events a round's ingests hold at most (a single request may exceed it).
/// Events posted without an id cost a key per twenty or so, so without this
/// a round of them would be bounded only by its keys at 30,000 events.
const ROUND_EVENTS: usize = 4096;

/// A write for the commit thread.
// Moved once, straight into its queue's Vec of its own kind: boxing the
// larger kind would only add an allocation per attempt.
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    Ingest(IngestJob),
    Attempt(AttemptJob),
}

/// Waits for a job's answer; the commit thread answers every job it takes,
/// so a dropped reply means it is gone.
pub(super) async fn answered<T>(answer: oneshot::Receiver<Result<T>>) -> Result<T> {
    answer
        .await
        .unwrap_or_else(|_| Err(Error::Flush("the commit thread stopped".into())))
}

/// Writes waiting for the commit thread.
#[derive(Default)]
struct Queued {
    ingests: Vec<IngestJob>,
    attempts: Vec<AttemptJob>,
}

impl From<Job> for Queued {
    fn from(job: Job) -> Queued {
        let mut queued = Queued::default();
        queued.push(job);
        queued
    }
}

impl Queued {
    fn push(&mut self, job: Job) {
        match job {
            Job::Ingest(job) => self.ingests.push(job),
            Job::Attempt(job) => self.attempts.push(job),
        }
    }

    /// Answers every job with the error `why` makes.
    fn refuse(self, why: impl Fn() -> Error) {
        for job in self.ingests {
            let _ = job.reply.send(Err(why()));
        }
        for job in self.attempts {
            let _ = job.reply.send(Err(why()));
        }
    }

    /// The next round's work, oldest first: every attempt, and ingests up to
    /// [`ROUND_KEYS`] and [`ROUND_EVENTS`] (at least one).
    fn take_round(&mut self) -> Queued {
        let mut keys = RoundKeys::default();
        let take = self
            .ingests
            .iter()
            .enumerate()
            .take_while(|(n, job)| {
                let total = keys.add(job);
                *n == 0 || (total <= ROUND_KEYS && keys.events() <= ROUND_EVENTS)
            })
            .count();
        Queued {
            ingests: self.ingests.drain(..take).collect(),
            attempts: std::mem::take(&mut self.attempts),
        }
    }
}

/// One flush: sled's log, then new blob files, then the data file.
fn flush_files(files: &Files, blobs: &mut BlobSync) -> std::io::Result<()> {
    files.db.flush().map_err(|e| match e {
        sled::Error::Io(io) => io,
        other => std::io::Error::other(other),
    })?;
    blobs.sync_new()?;
    files.data_file.sync_data()
}

/// Watches `dir` for files made, written, renamed or removed in it.
fn watch(dir: &std::path::Path) -> rustix::io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
    let what = WatchFlags::CREATE
        | WatchFlags::MODIFY
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF;
    inotify::add_watch(&fd, dir, what)?;
    Ok(fd)
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
    /// An inotify watch on `dir`: a round in which nothing there changed
    /// need not list it (listing was a few percent of the commit thread).
    /// `None` if inotify is not available: then every round lists.
    watch: Option<rustix::fd::OwnedFd>,
    /// Whether `dir` has been listed since the watch was set.
    listed: bool,
    #[cfg(test)]
    listings: u64,
}

impl BlobSync {
    fn new(dir: PathBuf) -> BlobSync {
        let watch = match watch(&dir) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!(error = %e, "no inotify watch on sled's blob directory; listing it every round");
                None
            }
        };
        BlobSync {
            dir,
            synced: HashSet::new(),
            watch,
            listed: false,
            #[cfg(test)]
            listings: 0,
        }
    }

    /// Whether the watch saw anything in `dir` since it was last asked;
    /// `true` when it cannot tell. Reading empties its queue, so it is asked
    /// before a listing: whatever changes after that is listed now or
    /// reported next time.
    fn changed(&mut self) -> bool {
        let Some(fd) = &self.watch else {
            return true;
        };
        let mut events = [0u8; 4096];
        let mut any = false;
        loop {
            match rustix::io::read(fd, &mut events) {
                Ok(0) => return true,
                // Any event counts, the queue's overflow included.
                Ok(_) => any = true,
                Err(rustix::io::Errno::AGAIN) => return any,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    self.watch = None;
                    return true;
                }
            }
        }
    }

    /// Fsyncs every blob file not synced yet, then the directory if there was one.
    fn sync_new(&mut self) -> std::io::Result<()> {
        if !self.changed() && self.listed {
            return Ok(());
        }
        self.listed = true;
        #[cfg(test)]
        {
            self.listings += 1;
        }
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

#[cfg(test)]
mod tests {
    use super::{BlobSync, Queued, RoundKeys, ROUND_EVENTS};
    use crate::store::ingest::IngestJob;
    use crate::store::keys;
    use crate::store::NewEvent;

    fn job(data_len: usize, subs: usize) -> IngestJob {
        IngestJob {
            events: vec![NewEvent {
                id: Some("e0000000001".into()),
                event_type: "a.b".into(),
                tenant: None,
                ordering_key: None,
                data: bytes::Bytes::from(vec![b'x'; data_len]),
            }],
            routes: vec![(0..subs as u64).collect()],
            reply: tokio::sync::oneshot::channel().0,
            _room: None,
        }
    }

    #[test]
    fn a_round_takes_ingests_up_to_its_key_bound_counting_data_chunks() {
        let mut queued = Queued {
            ingests: (0..2000).map(|_| job(100, 1)).collect(),
            ..Queued::default()
        };
        // An id key an event, a pack key per 22 events (183 bytes each
        // about), and a due key per 255 deliveries: 1,463 + 67 + 6 = 1,536.
        assert_eq!(queued.take_round().ingests.len(), 1463);
        // A hundred subscriptions add a hundred due keys per 255 events, not
        // a hundred to every event, and make records of 1,767 bytes, two to
        // a pack: 765 + 383 + 3 × 100 (a fourth group would make it 1,549).
        queued.ingests = (0..2000).map(|_| job(100, 100)).collect();
        assert_eq!(queued.take_round().ingests.len(), 765);
        // 256 KiB of data is 64 chunks, beside a record and an id key: a
        // round holds 23 such events.
        queued.ingests = (0..1000).map(|_| job(256 << 10, 1)).collect();
        assert_eq!(queued.take_round().ingests.len(), 23);
        // An ordered delivery has a lane key and perhaps a due key of its own:
        // 3 × 504 + 23 pack keys.
        queued.ingests = (0..1000)
            .map(|_| {
                let mut ordered = job(100, 1);
                ordered.events[0].ordering_key = Some("k".into());
                ordered
            })
            .collect();
        assert_eq!(queued.take_round().ingests.len(), 504);
        // More deliveries than a group holds take another due key.
        let mut big = job(100, 1);
        big.events = vec![big.events[0].clone(); keys::DUE_GROUP_MAX + 1];
        big.routes = vec![vec![0]; keys::DUE_GROUP_MAX + 1];
        let mut round = RoundKeys::default();
        assert_eq!(round.add(&big), (keys::DUE_GROUP_MAX + 1) + 12 + 2);
        // Without ids an event costs its share of a pack key and a due
        // group: the event bound comes first.
        queued.ingests = (0..5000)
            .map(|_| {
                let mut anonymous = job(100, 1);
                anonymous.events[0].id = None;
                anonymous
            })
            .collect();
        assert_eq!(queued.take_round().ingests.len(), ROUND_EVENTS);
        // A single job over the bound still goes alone.
        queued.ingests = vec![job(8 << 20, 1), job(100, 1)];
        assert_eq!(queued.take_round().ingests.len(), 1);
    }

    #[test]
    fn a_new_blob_file_is_fsynced_in_the_next_round_and_a_quiet_round_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = BlobSync::new(dir.path().to_owned());
        let watched = blobs.watch.is_some();
        if !watched {
            eprintln!("inotify is not available here: only the listing is tested");
        }
        blobs.sync_new().unwrap();
        blobs.sync_new().unwrap();
        assert_eq!(blobs.listings, if watched { 1 } else { 2 });

        std::fs::write(dir.path().join("42"), b"a page").unwrap();
        blobs.sync_new().unwrap();
        assert!(blobs.synced.contains(&42));
        let listed = blobs.listings;
        blobs.sync_new().unwrap();
        if watched {
            assert_eq!(blobs.listings, listed, "nothing changed since");
        }

        std::fs::remove_file(dir.path().join("42")).unwrap();
        std::fs::write(dir.path().join("43"), b"another").unwrap();
        blobs.sync_new().unwrap();
        assert!(blobs.synced.contains(&43));
        assert!(!blobs.synced.contains(&42));
    }
}
