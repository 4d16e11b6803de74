//! Retention: events whose every delivery is closed (delivered, dead or
//! cancelled) are purged once they are older than the retention period, with
//! their data, deliveries, attempts and idempotency key. Incremental: one
//! bounded batch at a time, so ingest and delivery never wait long.

use super::events::EventEdits;
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
        let mut progress = PurgeProgress::default();
        let mut batch = sled::Batch::default();
        let mut edits = EventEdits::default();
        let mut freed = 0;
        // Held so a redelivery cannot add to an event while it is being purged.
        let _guard = self.delivery_lock.lock().unwrap();
        // From the key that holds the next event: a pack may hold it too.
        let from = match resume_after {
            Some(seq) => {
                let next = seq.saturating_add(1);
                Some(
                    self.event_key_at_or_below(next)?
                        .map_or(next, |(key, _)| key),
                )
            }
            None => None,
        };
        for item in self.events_from(from) {
            let (seq, v) = item?;
            if resume_after.is_some_and(|done| seq <= done) {
                continue;
            }
            if progress.scanned == limit {
                break;
            }
            progress.scanned += 1;
            progress.resume_after = Some(seq);
            let (event, _) = codec::decode_event(&v)?;
            if event.received_at >= cutoff {
                // Events are in arrival order: nothing later is old enough.
                progress.resume_after = None;
                break;
            }
            let mut deliveries: Vec<Delivery> = Vec::with_capacity(event.deliveries.len());
            // A delivery that cannot be found counts as open: an event is
            // never purged on the strength of a lookup that failed.
            let mut missing = false;
            for &id in &event.deliveries {
                match self.delivery(id)? {
                    Some(d) => deliveries.push(d),
                    None => missing = true,
                }
            }
            let closed = !missing
                && deliveries
                    .iter()
                    .all(|d| !d.status.is_open() && d.updated_at < cutoff);
            if !closed {
                continue;
            }
            self.edit_event(&mut batch, &mut edits, seq, None)?;
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
        edits.write(&mut batch)?;
        self.apply(batch)?;
        self.remove_held(freed);
        Ok(progress)
    }
}
