//! A backup of the live store into a new sled database, without pausing
//! ingest or delivery for longer than it takes to draw one id.
//!
//! sled has no snapshots, so the copy is taken against a *cutoff*: an id
//! drawn from `Db::generate_id` while the delivery and ingest locks are held.
//! Every id (event seq, delivery id) is drawn from that one sequence under
//! one of those locks and written in the same batch, so every event, delivery
//! and requeue numbered below the cutoff is complete in the tree by then, and
//! every one above it began after the backup did and is left out.
//!
//! The copy goes event by event: its header, data, idempotency key,
//! deliveries and their attempts, read together, so an event that retention
//! purges meanwhile is left out whole rather than copied in part. Deliveries
//! do change while the copy runs: each is copied as it is when read, and the
//! due index and the ordered lanes are rebuilt from the copied records (one
//! lane entry per open keyed delivery, the lowest of each lane due), so the
//! backup keeps the invariant that a delivery is open exactly while it is in
//! the due index or a lane. A delivery that finished during the backup may
//! be open in it and is then attempted again after a restore, which
//! at-least-once allows.

use super::events::EventAt;
use super::{codec, create_private_dir, keys, restrict_files, Store};
use crate::error::{Error, Result};
use crate::model::{Delivery, DeliveryStatus, Event, Millis};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Records per batch written to the backup.
const BATCH: usize = 1000;

/// What a backup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSummary {
    pub subscriptions: u64,
    pub events: u64,
    pub deliveries: u64,
    /// Deliveries open in the backup: they are attempted after a restore.
    pub open_deliveries: u64,
    pub bytes: u64,
    pub took: Duration,
}

impl Store {
    /// Writes a consistent copy of the store to `dest`, a new directory
    /// (its parent must exist), flushed and fsynced before this returns.
    /// Blocking: run it off the async threads. A failed backup removes what
    /// it wrote.
    pub fn backup(&self, dest: &Path) -> Result<BackupSummary> {
        let err = |reason: String| Error::Backup {
            path: dest.to_owned(),
            reason,
        };
        self.check_destination(dest).map_err(err)?;
        create_private_dir(dest).map_err(|e| err(format!("cannot create it: {e}")))?;
        let result = self.copy_to(dest);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dest);
        }
        result
    }

    fn check_destination(&self, dest: &Path) -> std::result::Result<(), String> {
        if !dest.is_absolute() {
            return Err("give an absolute path".into());
        }
        if dest.exists() {
            return Err("it already exists; a backup goes to a new path".into());
        }
        let parent = dest.parent().ok_or("it has no parent directory")?;
        let parent = parent
            .canonicalize()
            .map_err(|e| format!("its parent directory cannot be used: {e}"))?;
        let store = self
            .path
            .canonicalize()
            .unwrap_or_else(|_| self.path.clone());
        if parent.starts_with(&store) {
            return Err(format!(
                "it is inside the live store {}; put backups elsewhere",
                store.display()
            ));
        }
        Ok(())
    }

    fn copy_to(&self, dest: &Path) -> Result<BackupSummary> {
        let started = Instant::now();
        let cutoff = {
            // The order every other writer takes them in (requeue,
            // remove_subscription): the other order could deadlock with them.
            let _delivery = self.delivery_lock.lock().unwrap();
            let _ingest = self.ingest_lock.lock().unwrap();
            self.next_id()?
        };
        let db = sled::Config::new()
            .path(dest)
            .cache_capacity(16 << 20)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| Error::Backup {
                path: dest.to_owned(),
                reason: format!("cannot create a store there: {e}"),
            })?;
        let meta = db.open_tree("meta")?;
        for item in self.db.open_tree("meta")?.iter() {
            let (k, v) = item?;
            if k == super::open::COUNTS_KEY {
                // True of the live store at its last shutdown, not of this copy.
                continue;
            }
            meta.insert(k, v)?;
        }
        let mut out = Writer::new(db.open_tree("data")?);
        let mut summary = BackupSummary::default();

        // Subscriptions first: a delivery whose subscription is gone by now is
        // copied as cancelled, as removing the subscription made it.
        let mut subs = HashSet::new();
        for item in self.data.scan_prefix([keys::SUB]) {
            let (k, v) = item?;
            if let Some(key) = keys::tail_u64(&k) {
                subs.insert(key);
            }
            out.put(&k, &v)?;
            summary.subscriptions += 1;
        }

        // The lowest open delivery of each ordered lane, and when it is due.
        let mut lane_heads: BTreeMap<(u64, String), (u64, Millis)> = BTreeMap::new();
        for item in self.all_events(false) {
            // Each event under a key of its own: packing is ingest's business.
            let (seq, v) = item?;
            let k = keys::with_u64(keys::EVENT, seq);
            if seq >= cutoff {
                // Event keys are in seq order: the rest came after the backup began.
                break;
            }
            let Some(copy) = self.event_copy(seq, &v, cutoff)? else {
                continue;
            };
            out.put(
                &k,
                &codec::encode_event(&copy.event, copy.inline.as_deref()),
            )?;
            for (k, v) in &copy.records {
                out.put(k, v)?;
            }
            for mut delivery in copy.deliveries {
                if delivery.status.is_open() && !subs.contains(&delivery.sub_key) {
                    delivery.status = DeliveryStatus::Cancelled;
                }
                out.put(
                    &keys::with_u64(keys::DELIVERY, delivery.id),
                    &codec::encode(&delivery),
                )?;
                summary.deliveries += 1;
                if !delivery.status.is_open() {
                    continue;
                }
                summary.open_deliveries += 1;
                match &delivery.lane {
                    None => out.put(
                        &keys::due(delivery.sub_key, delivery.next_at, delivery.id),
                        &[],
                    )?,
                    Some(lane) => {
                        out.put(&keys::lane(delivery.sub_key, lane, delivery.id), &[])?;
                        let head = lane_heads
                            .entry((delivery.sub_key, lane.clone()))
                            .or_insert((delivery.id, delivery.next_at));
                        if delivery.id < head.0 {
                            *head = (delivery.id, delivery.next_at);
                        }
                    }
                }
            }
            summary.events += 1;
        }
        for ((sub, _), (id, next_at)) in lane_heads {
            out.put(&keys::due(sub, next_at, id), &[])?;
        }

        // A record kind this code does not know yet: copied as it is.
        for tag in (0..=u8::MAX).filter(|t| !KNOWN_TAGS.contains(t)) {
            for item in self.data.scan_prefix([tag]) {
                let (k, v) = item?;
                out.put(&k, &v)?;
            }
        }
        out.finish()?;
        // Every id copied was drawn before this one: the restored store
        // draws above it (see `open::id_floor`).
        meta.insert(super::open::ID_FLOOR_KEY, &self.next_id()?.to_be_bytes())?;
        db.flush()?;
        summary.bytes = db.size_on_disk().unwrap_or(0);
        drop(meta);
        drop(db);
        sync_tree(dest).map_err(|e| Error::io("fsync of the backup", e))?;
        restrict_files(dest);
        summary.took = started.elapsed();
        Ok(summary)
    }

    /// Everything of event `seq` below `cutoff`, read together; `None` if
    /// retention purged it while it was being read.
    fn event_copy(&self, seq: u64, header: &[u8], cutoff: u64) -> Result<Option<EventCopy>> {
        let (mut event, inline) = codec::decode_event(header)?;
        // A requeue after the cutoff appended ids the backup does not hold.
        event.deliveries.retain(|id| *id < cutoff);
        // The copy writes a record for every delivery, fan-out ones included.
        event.subs.clear();
        let mut records = Vec::new();
        let mut data_len = inline.map_or(0, <[u8]>::len);
        for item in self.data.scan_prefix(keys::with_u64(keys::CHUNK, seq)) {
            let (k, v) = item?;
            data_len += v.len();
            records.push((k.to_vec(), v.to_vec()));
        }
        if data_len != event.data_len as usize {
            return Ok(None);
        }
        let idem = keys::idem(&event.id);
        // The id may since name a newer event; then the key is not this one's.
        if self.data.get(&idem)?.as_deref() == Some(&seq.to_be_bytes()[..]) {
            records.push((idem, seq.to_be_bytes().to_vec()));
        }
        let mut deliveries = Vec::with_capacity(event.deliveries.len());
        for &id in &event.deliveries {
            let Some(found) = self.find_delivery(id, Some(EventAt::Seq(seq)))? else {
                return Ok(None);
            };
            for item in self.data.scan_prefix(keys::with_u64(keys::ATTEMPT, id)) {
                let (k, v) = item?;
                records.push((k.to_vec(), v.to_vec()));
            }
            // The copy's delivery record is a plain one: every attempt is an attempt record.
            if let Some(latest) = found.latest {
                records.push((
                    keys::attempt(id, latest.no).to_vec(),
                    codec::encode(&latest),
                ));
            }
            deliveries.push(found.delivery);
        }
        Ok(Some(EventCopy {
            event,
            inline: inline.map(<[u8]>::to_vec),
            records,
            deliveries,
        }))
    }
}

/// Record kinds `Store::backup` copies by their meaning; any other is copied verbatim.
const KNOWN_TAGS: [u8; 8] = [
    keys::SUB,
    keys::EVENT,
    keys::CHUNK,
    keys::IDEM,
    keys::DELIVERY,
    keys::DUE,
    keys::ATTEMPT,
    keys::LANE,
];

/// One event's records as read for the backup.
struct EventCopy {
    event: Event,
    /// The data, when the event record carries it.
    inline: Option<Vec<u8>>,
    /// Data chunks, idempotency key and attempts, as stored.
    records: Vec<(Vec<u8>, Vec<u8>)>,
    deliveries: Vec<Delivery>,
}

/// Batched writes to the backup's data tree.
struct Writer {
    tree: sled::Tree,
    batch: sled::Batch,
    pending: usize,
}

impl Writer {
    fn new(tree: sled::Tree) -> Writer {
        Writer {
            tree,
            batch: sled::Batch::default(),
            pending: 0,
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.insert(key, value);
        self.pending += 1;
        if self.pending == BATCH {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.pending > 0 {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.pending = 0;
        }
        Ok(())
    }
}

/// fsyncs every file and directory under `dir`, then `dir`'s parent, so
/// the backup survives a power cut once the call returns (sled itself never
/// fsyncs its blob files).
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEvent;

    fn event(id: &str, ordering_key: Option<&str>) -> NewEvent {
        NewEvent {
            id: Some(id.into()),
            event_type: "a.b".into(),
            tenant: None,
            ordering_key: ordering_key.map(str::to_string),
            data: bytes::Bytes::from_static(b"{\"x\":1}"),
        }
    }

    fn count(tree: &sled::Tree, tag: u8) -> usize {
        tree.scan_prefix([tag]).count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backup_rebuilds_due_index_and_lanes_and_cancels_orphans() {
        let (dir, store) = crate::store::open_temp();
        // Subscription 7 exists (the backup only looks at the key); 8 does not,
        // as if it had been removed while its deliveries were being read.
        store
            .data
            .insert(keys::with_u64(keys::SUB, 7), &b"sub"[..])
            .unwrap();
        let events = [
            event("e1", Some("k")),
            event("e2", Some("k")),
            event("e3", None),
            event("e4", Some("k")),
        ];
        let routes = vec![vec![7, 8]; events.len()];
        store.ingest(events.to_vec(), routes).await.unwrap();

        let dest = dir.path().join("backup");
        let copy = store.clone();
        let target = dest.clone();
        let summary = tokio::task::spawn_blocking(move || copy.backup(&target))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (summary.events, summary.deliveries, summary.open_deliveries),
            (4, 8, 4)
        );

        let db = sled::open(&dest).unwrap();
        let data = db.open_tree("data").unwrap();
        assert_eq!(count(&data, keys::EVENT), 4);
        assert_eq!(count(&data, keys::DELIVERY), 8);
        // Subscription 7: the lane's head and the unkeyed delivery are due,
        // the other two wait in the lane.
        assert_eq!(count(&data, keys::LANE), 3);
        assert_eq!(count(&data, keys::DUE), 2);
        assert_eq!(
            count(&data, keys::DUE),
            count(&store.data, keys::DUE) - 2,
            "subscription 8's due entries are gone"
        );
        drop(data);
        drop(db);

        let refuse = |path: &Path| store.backup(path).unwrap_err().to_string();
        assert!(refuse(&dest).contains("already exists"));
        assert!(refuse(Path::new("relative/dir")).contains("absolute"));
        assert!(refuse(&dir.path().join("store").join("inside")).contains("inside the live store"));
        assert!(refuse(&dir.path().join("no/such/parent")).contains("parent"));
    }
}
