//! The scheduler's side: read due deliveries in bounded batches, load one for
//! an attempt, record the attempt's outcome.

use super::flush::Job;
use super::ingest::LanesInBatch;
use super::{codec, keys, Store};
use crate::error::Result;
use crate::model::{Attempt, Delivery, DeliveryStatus, Event, Millis};
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

/// What recording an attempt answers: the delivery as recorded and the lane
/// successor it made due, or `None` if the delivery changed meanwhile.
pub type Recorded = Option<(Delivery, Option<u64>)>;

/// An attempt outcome queued for the commit thread's next round.
pub(super) struct AttemptJob {
    pub before: Delivery,
    pub record: AttemptRecord,
    pub reply: oneshot::Sender<Result<Recorded>>,
}

/// One bounded read of a subscription's due index.
#[derive(Debug, Default)]
pub struct DueScan {
    /// Due deliveries (id, next_at), oldest first.
    pub ready: Vec<u64>,
    /// When the next entry not yet taken becomes due: now if more are due
    /// than the batch held, `None` if the index holds nothing else.
    pub next_due: Option<Millis>,
}

/// Everything one attempt needs.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub delivery: Delivery,
    pub event: Event,
    pub data: Bytes,
}

/// The outcome of an attempt, to be recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    /// Attempts that count against the retry schedule, after this one.
    pub spent: u32,
    pub status: DeliveryStatus,
    /// When the next attempt is due, if `status` is open.
    pub next_at: Millis,
}

impl Store {
    /// Up to `limit` deliveries of `sub_key` due at `now`, skipping those
    /// `busy` says are already on the wire.
    pub fn due_batch(
        &self,
        sub_key: u64,
        now: Millis,
        limit: usize,
        busy: &dyn Fn(u64) -> bool,
    ) -> Result<DueScan> {
        let mut scan = DueScan::default();
        for item in self.data.scan_prefix(keys::due_prefix(sub_key)) {
            let (k, _) = item?;
            let Some((_, next_at, delivery)) = keys::parse_due(&k) else {
                continue;
            };
            if next_at > now {
                scan.next_due = Some(next_at);
                break;
            }
            // Asked per key, after the key is seen: `record_attempt` marks a
            // successor unsettled before its due key becomes visible.
            if busy(delivery) || self.unsettled.lock().unwrap().contains(&delivery) {
                continue;
            }
            if scan.ready.len() == limit {
                scan.next_due = Some(now);
                break;
            }
            scan.ready.push(delivery);
        }
        Ok(scan)
    }

    /// Loads a delivery with its event and data; `None` if it is no longer open.
    pub fn load_for_attempt(&self, delivery_id: u64) -> Result<Option<Loaded>> {
        let Some(delivery) = self.delivery(delivery_id)? else {
            return Ok(None);
        };
        if !delivery.status.is_open() {
            return Ok(None);
        }
        let Some((event, data)) = self.event_by_seq(delivery.event_seq)? else {
            return Ok(None);
        };
        Ok(Some(Loaded {
            delivery,
            event,
            data,
        }))
    }

    /// Records an attempt and moves the delivery on, unless it changed meanwhile
    /// (cancelled, or rescheduled by an operator). Attempts that end together
    /// share one write in the commit thread's next round; this answers once
    /// that write is made, not once it is durable: a crash before the flush
    /// repeats the attempt, which at-least-once allows.
    ///
    /// Returns the delivery as recorded, and the lane successor this made
    /// due, which stays unattempted until [`Store::settle`] says the batch is durable.
    pub async fn record_attempt(
        &self,
        before: &Delivery,
        record: AttemptRecord,
    ) -> Result<Option<(Delivery, Option<u64>)>> {
        let (reply, answer) = oneshot::channel();
        self.flusher.submit(Job::Attempt(AttemptJob {
            before: before.clone(),
            record,
            reply,
        }));
        super::flush::answered(answer).await
    }

    /// Adds a round of attempt outcomes to `batch`; one answer per job.
    /// Call with both locks held, after the round's ingests are staged.
    pub(super) fn stage_attempts(
        &self,
        batch: &mut sled::Batch,
        lanes: &LanesInBatch,
        jobs: &[AttemptJob],
    ) -> Result<Vec<Recorded>> {
        let mut recorded = Vec::with_capacity(jobs.len());
        for job in jobs {
            match self.stage_attempt(batch, lanes, &job.before, &job.record) {
                Ok(r) => recorded.push(r),
                Err(e) => {
                    self.settle_all(&recorded);
                    return Err(e);
                }
            }
        }
        Ok(recorded)
    }

    /// Lets go of the successors `recorded` made due: their batch failed.
    pub(super) fn settle_all(&self, recorded: &[Recorded]) {
        for (_, successor) in recorded.iter().flatten() {
            if let Some(id) = successor {
                self.settle(*id);
            }
        }
    }

    /// Adds one attempt's outcome to `batch`; `None` if the delivery changed
    /// since the attempt began. Call with both locks held.
    fn stage_attempt(
        &self,
        batch: &mut sled::Batch,
        lanes: &LanesInBatch,
        before: &Delivery,
        record: &AttemptRecord,
    ) -> Result<Recorded> {
        let Some(current) = self.delivery(before.id)? else {
            return Ok(None);
        };
        if current.next_at != before.next_at || current.status != before.status {
            return Ok(None);
        }
        let mut next = current.clone();
        next.attempts = record.attempt.no;
        next.spent = record.spent;
        next.status = record.status;
        next.updated_at = record.attempt.at;
        next.last_status = record.attempt.status;
        next.last_error = record.attempt.error.clone();
        next.next_at = record.next_at;

        batch.remove(&keys::due(current.sub_key, current.next_at, current.id));
        if next.status.is_open() {
            batch.insert(&keys::due(next.sub_key, next.next_at, next.id), &[]);
        }
        batch.insert(
            &keys::with_u64(keys::DELIVERY, next.id),
            codec::encode(&next),
        );
        batch.insert(
            &keys::attempt(next.id, record.attempt.no),
            codec::encode(&record.attempt),
        );
        let mut made_due = None;
        if let (false, Some(key)) = (next.status.is_open(), next.lane.as_deref()) {
            batch.remove(keys::lane(next.sub_key, key, next.id));
            // A delivery this round's ingests added to the lane is not in
            // the store yet, but it is the successor if none is.
            let successor = match self.lane_successor(next.sub_key, key, next.id)? {
                Some(stored) => Some(stored),
                None => lanes.first(next.sub_key, key).cloned(),
            };
            if let Some(mut successor) = successor {
                self.unsettled.lock().unwrap().insert(successor.id);
                made_due = Some(successor.id);
                successor.next_at = record.attempt.at.max(next.updated_at);
                batch.insert(
                    &keys::due(successor.sub_key, successor.next_at, successor.id),
                    &[],
                );
                batch.insert(
                    &keys::with_u64(keys::DELIVERY, successor.id),
                    codec::encode(&successor),
                );
            }
        }
        Ok(Some((next, made_due)))
    }

    /// The batch that made `successor` due is durable: it may be attempted.
    pub fn settle(&self, successor: u64) {
        self.unsettled.lock().unwrap().remove(&successor);
    }

    /// Makes sure every ordered lane of `sub_key` has its head in the due
    /// index; returns how many heads had to be put back. A lane whose head
    /// lost its due key would otherwise wait forever.
    pub fn repair_lanes(&self, sub_key: u64) -> Result<usize> {
        let _guard = self.delivery_lock.lock().unwrap();
        let _ingest = self.ingest_lock.lock().unwrap();
        let mut repaired = 0;
        let mut batch = sled::Batch::default();
        let mut previous: Option<Vec<u8>> = None;
        for item in self.data.scan_prefix(keys::with_u64(keys::LANE, sub_key)) {
            let (k, _) = item?;
            let lane = keys::lane_of(&k).to_vec();
            if previous.as_deref() == Some(&lane[..]) {
                continue;
            }
            previous = Some(lane);
            let Some(id) = keys::lane_delivery(&k) else {
                continue;
            };
            let Some(head) = self.delivery(id)? else {
                continue;
            };
            if !head.status.is_open() {
                continue;
            }
            if self
                .data
                .get(keys::due(sub_key, head.next_at, id))?
                .is_none()
            {
                batch.insert(&keys::due(sub_key, head.next_at, id), &[]);
                repaired += 1;
            }
        }
        if repaired > 0 {
            self.apply(batch)?;
        }
        Ok(repaired)
    }

    /// The delivery after `head` in its lane, if any.
    fn lane_successor(&self, sub_key: u64, key: &str, head: u64) -> Result<Option<Delivery>> {
        for item in self.data.scan_prefix(keys::lane_prefix(sub_key, key)) {
            let (k, _) = item?;
            match keys::lane_delivery(&k) {
                Some(id) if id != head => return self.delivery(id),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// A delivery record.
    pub fn delivery(&self, id: u64) -> Result<Option<Delivery>> {
        self.data
            .get(keys::with_u64(keys::DELIVERY, id))?
            .map(|v| codec::decode(&v, "delivery"))
            .transpose()
    }

    /// An event header and its data, by sequence number.
    pub fn event_by_seq(&self, seq: u64) -> Result<Option<(Event, Bytes)>> {
        let Some(v) = self.data.get(keys::with_u64(keys::EVENT, seq))? else {
            return Ok(None);
        };
        let (event, inline) = codec::decode_event(&v)?;
        if let Some(data) = inline {
            return Ok(Some((event, Bytes::copy_from_slice(data))));
        }
        let mut data = BytesMut::with_capacity(event.data_len as usize);
        for item in self.data.scan_prefix(keys::with_u64(keys::CHUNK, seq)) {
            let (_, chunk) = item?;
            data.extend_from_slice(&chunk);
        }
        Ok(Some((event, data.freeze())))
    }
}
