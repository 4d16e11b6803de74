//! Retention: events whose every delivery is closed (delivered, dead or
//! cancelled) are purged once they are older than the retention period, with
//! their data, deliveries, attempts and idempotency key. Incremental: one
//! bounded batch at a time, so ingest and delivery never wait long.

use super::{codec, keys, Store};
use crate::error::Result;
use crate::model::{Delivery, Millis};

/// How far one purge batch got.
#[derive(Debug, Default, Clone)]
pub struct PurgeProgress {
    /// Where the next batch continues (`None`: the pass reached the end).
    pub resume_after: Option<u64>,
    pub scanned: usize,
    pub purged: usize,
}

impl Store {
    /// Examines up to `limit` events after `resume_after` (from the oldest)
    /// and purges those closed before `cutoff`.
    pub fn purge_batch(
        &self,
        cutoff: Millis,
        resume_after: Option<u64>,
        limit: usize,
    ) -> Result<PurgeProgress> {
        let start = match resume_after {
            Some(seq) => keys::with_u64(keys::EVENT, seq + 1).to_vec(),
            None => vec![keys::EVENT],
        };
        let end = [keys::EVENT + 1];
        let mut progress = PurgeProgress::default();
        let mut batch = sled::Batch::default();
        let mut freed = 0;
        // Held so a redelivery cannot add to an event while it is being purged.
        let _guard = self.delivery_lock.lock().unwrap();
        for item in self.data.range(start..end[..].to_vec()) {
            if progress.scanned == limit {
                break;
            }
            let (k, v) = item?;
            let Some(seq) = keys::tail_u64(&k) else {
                continue;
            };
            progress.scanned += 1;
            progress.resume_after = Some(seq);
            let (event, _) = codec::decode_event(&v)?;
            if event.received_at >= cutoff {
                // Events are in arrival order: nothing later is old enough.
                progress.resume_after = None;
                break;
            }
            let mut deliveries: Vec<Delivery> = Vec::with_capacity(event.deliveries.len());
            for &id in &event.deliveries {
                if let Some(d) = self.delivery(id)? {
                    deliveries.push(d);
                }
            }
            let closed = deliveries
                .iter()
                .all(|d| !d.status.is_open() && d.updated_at < cutoff);
            if !closed {
                continue;
            }
            batch.remove(&k);
            for item in self.data.scan_prefix(keys::with_u64(keys::CHUNK, seq)) {
                batch.remove(item?.0);
            }
            // The idempotency key may since point at a newer event with the same id.
            if self.data.get(keys::idem(&event.id))?.as_deref() == Some(&seq.to_be_bytes()[..]) {
                batch.remove(keys::idem(&event.id));
            }
            for d in &deliveries {
                batch.remove(&keys::with_u64(keys::DELIVERY, d.id));
                for item in self.data.scan_prefix(keys::with_u64(keys::ATTEMPT, d.id)) {
                    batch.remove(item?.0);
                }
            }
            freed += super::budget::footprint(&event);
            progress.purged += 1;
        }
        if progress.scanned < limit {
            progress.resume_after = None;
        }
        self.apply(batch)?;
        self.remove_held(freed);
        Ok(progress)
    }
}
