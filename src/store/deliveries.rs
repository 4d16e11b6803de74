//! The scheduler's side: read due deliveries in bounded batches, load one for
//! an attempt, record the attempt's outcome.

use super::events::EventAt;
use super::flush::Job;
use super::ingest::LanesInBatch;
use super::{codec, keys, Store};
use crate::error::Result;
use crate::model::{Attempt, Delivery, DeliveryStatus, Event, Millis};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// What recording an attempt answers: the delivery as recorded and the lane
/// successor it made due, or `None` if the delivery changed meanwhile.
pub type Recorded = Option<(Delivery, Option<u64>)>;

/// An attempt outcome queued for the commit thread's next round.
pub(super) struct AttemptJob {
    pub before: Delivery,
    /// Where the attempt found the delivery's event (`Loaded::event_key`).
    pub event_key: Option<u64>,
    /// What the attempt read, if it says: the round need not read it again.
    pub seen: Option<Seen>,
    pub record: AttemptRecord,
    pub reply: oneshot::Sender<Result<Recorded>>,
}

/// The part of a delivery's record an attempt read besides the delivery,
/// and the store's change count from before it read (`Store::changes`).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    changes: u64,
    /// The latest attempt the record kept, which the next one displaces.
    latest: Option<Attempt>,
}

/// The due groups the attempts of one round took members out of, with the
/// members left: the store does not show the round's changes yet, several
/// members of one group may leave in the same round, and each group is
/// written once, when the round's attempts are staged ([`DueEdits::write`]).
#[derive(Default)]
pub(super) struct DueEdits(std::collections::HashMap<[u8; 25], Vec<(u64, u64)>>);

impl DueEdits {
    /// Adds the groups to `batch`, each key removed with its last member.
    fn write(self, batch: &mut sled::Batch) {
        for (key, members) in self.0 {
            match members.is_empty() {
                true => batch.remove(&key),
                false => batch.insert(&key, keys::due_group(&members)),
            }
        }
    }
}

/// One bounded read of a subscription's due index.
#[derive(Debug, Default)]
pub struct DueScan {
    /// Due deliveries, oldest first.
    pub ready: Vec<Due>,
    /// When the next entry not yet taken becomes due: now if more are due
    /// than the batch held, `None` if the index holds nothing else.
    pub next_due: Option<Millis>,
}

/// A due delivery, and its event's key where the due index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub id: u64,
    pub event_key: Option<u64>,
}

/// Everything one attempt needs.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub delivery: Delivery,
    pub event: Event,
    pub data: Bytes,
    /// The event key its event was read from, if the delivery has no record
    /// of its own yet: recording the attempt reads the event there again.
    pub event_key: Option<u64>,
    pub seen: Seen,
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
            let (k, v) = item?;
            let Some((_, next_at, delivery)) = keys::parse_due(&k) else {
                continue;
            };
            if next_at > now {
                scan.next_due = Some(next_at);
                break;
            }
            for (id, event_key) in keys::due_members(delivery, &v) {
                // Asked per key, after the key is seen: `record_attempt` marks a
                // successor unsettled before its due key becomes visible.
                if busy(id) || self.unsettled.lock().unwrap().contains(&id) {
                    continue;
                }
                if scan.ready.len() == limit {
                    scan.next_due = Some(now);
                    return Ok(scan);
                }
                scan.ready.push(Due { id, event_key });
            }
        }
        Ok(scan)
    }

    /// Loads a delivery with its event and data; `None` if it is no longer open.
    pub fn load_for_attempt(&self, due: Due) -> Result<Option<Loaded>> {
        // Taken before the read: a change made after it shows as a new count.
        self.load_for_attempt_as_of(due, self.changes.load(Ordering::SeqCst))
    }

    /// [`Store::load_for_attempt`], with the change count read before it.
    fn load_for_attempt_as_of(&self, due: Due, changes: u64) -> Result<Option<Loaded>> {
        let at = due.event_key.map(EventAt::Key);
        // The recent packs serve a read that no outside write overlapped:
        // the count even before it and the same after. A read they served
        // while a write landed could pair a delivery record already
        // removed with its event's pack from before, and so bring back a
        // purged delivery as pending; such a read is made again from sled.
        let settled = changes % 2 == 0;
        let mut found = self.find_delivery_as_of(due.id, at, settled.then_some(changes))?;
        let after = self.changes.load(Ordering::SeqCst);
        let changes = if settled && after != changes {
            found = self.find_delivery_as_of(due.id, at, None)?;
            after
        } else {
            changes
        };
        let Some(Found {
            delivery,
            latest,
            event: record,
        }) = found
        else {
            return Ok(None);
        };
        if !delivery.status.is_open() {
            return Ok(None);
        }
        let event_key = record.as_ref().map(|found| found.key);
        let event = match record {
            Some(FoundEvent {
                header,
                record,
                inline_len,
                ..
            }) => {
                let inline = inline_len.map(|n| codec::inline_data(&record, n));
                Some(self.with_data(delivery.event_seq, header, inline)?)
            }
            None => self.event_by_seq(delivery.event_seq)?,
        };
        let Some((event, data)) = event else {
            return Ok(None);
        };
        Ok(Some(Loaded {
            delivery,
            event,
            data,
            event_key,
            seen: Seen { changes, latest },
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
    /// `event_key` is where the attempt found the event (`Loaded::event_key`).
    pub async fn record_attempt(
        &self,
        before: &Delivery,
        event_key: Option<u64>,
        record: AttemptRecord,
    ) -> Result<Option<(Delivery, Option<u64>)>> {
        self.submit_attempt(before.clone(), event_key, None, record)
            .await
    }

    /// [`Store::record_attempt`] for an attempt of `loaded`: unless the
    /// store changed since it was loaded, the round takes what was loaded
    /// as the delivery's current record instead of reading it again.
    ///
    /// Only one attempt of a delivery may be out at a time (the scheduler
    /// keeps a delivery in its lane's in-flight set until this returns):
    /// rounds do not move the change count, so a second attempt recorded
    /// from the same load would overwrite the first one's outcome.
    pub async fn record_loaded_attempt(
        &self,
        loaded: &Loaded,
        record: AttemptRecord,
    ) -> Result<Option<(Delivery, Option<u64>)>> {
        let seen = Some(loaded.seen.clone());
        self.submit_attempt(loaded.delivery.clone(), loaded.event_key, seen, record)
            .await
    }

    async fn submit_attempt(
        &self,
        before: Delivery,
        event_key: Option<u64>,
        seen: Option<Seen>,
        record: AttemptRecord,
    ) -> Result<Option<(Delivery, Option<u64>)>> {
        let (reply, answer) = oneshot::channel();
        self.flusher.submit(Job::Attempt(AttemptJob {
            before,
            event_key,
            seen,
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
        let mut edits = DueEdits::default();
        for job in jobs {
            match self.stage_attempt(batch, lanes, &mut edits, job) {
                Ok(r) => recorded.push(r),
                Err(e) => {
                    self.settle_all(&recorded);
                    return Err(e);
                }
            }
        }
        edits.write(batch);
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
        edits: &mut DueEdits,
        job: &AttemptJob,
    ) -> Result<Recorded> {
        let (before, record) = (&job.before, &job.record);
        let (current, latest) = match &job.seen {
            // Nothing but rounds wrote since the attempt read the delivery,
            // and no round touches a delivery with an attempt out.
            Some(seen) if seen.changes == self.changes.load(Ordering::SeqCst) => {
                (before.clone(), seen.latest.clone())
            }
            _ => {
                // Where the attempt found the event, else by seq (a `get_lt`).
                let event = match job.event_key {
                    Some(key) => EventAt::Key(key),
                    None => EventAt::Seq(before.event_seq),
                };
                let Some(Found {
                    delivery: current,
                    latest,
                    ..
                }) = self.find_delivery(before.id, Some(event))?
                else {
                    return Ok(None);
                };
                if current.next_at != before.next_at || current.status != before.status {
                    return Ok(None);
                }
                (current, latest)
            }
        };
        let mut next = current.clone();
        next.attempts = record.attempt.no;
        next.spent = record.spent;
        next.status = record.status;
        next.updated_at = record.attempt.at;
        next.last_status = record.attempt.status;
        next.last_error = record.attempt.error.clone();
        next.next_at = record.next_at;

        // Still due when it was: its entry stays, a group's member included.
        if !next.status.is_open() || next.next_at != current.next_at {
            self.remove_due(batch, edits, current.sub_key, current.next_at, current.id)?;
            if next.status.is_open() {
                batch.insert(&keys::due(next.sub_key, next.next_at, next.id), &[]);
            }
        }
        // The record keeps the latest attempt: one key fewer for an attempt
        // that ends its delivery the first time.
        if let Some(previous) = latest {
            batch.insert(
                &keys::attempt(next.id, previous.no),
                codec::encode(&previous),
            );
        }
        batch.insert(
            &keys::with_u64(keys::DELIVERY, next.id),
            codec::encode_delivery(&next, Some(&record.attempt)),
        );
        let mut made_due = None;
        if let (false, Some(key)) = (next.status.is_open(), next.lane.as_deref()) {
            batch.remove(keys::lane(next.sub_key, key, next.id));
            // A delivery this round's ingests added to the lane is not in
            // the store yet, but it is the successor if none is.
            let successor = match self.lane_successor(next.sub_key, key, next.id)? {
                Some(stored) => Some(stored),
                None => lanes
                    .first(next.sub_key, key)
                    .cloned()
                    .map(|delivery| Found {
                        delivery,
                        latest: None,
                        event: None,
                    }),
            };
            if let Some(Found {
                delivery: mut successor,
                latest,
                ..
            }) = successor
            {
                self.unsettled.lock().unwrap().insert(successor.id);
                made_due = Some(successor.id);
                successor.next_at = record.attempt.at.max(next.updated_at);
                batch.insert(
                    &keys::due(successor.sub_key, successor.next_at, successor.id),
                    &[],
                );
                batch.insert(
                    &keys::with_u64(keys::DELIVERY, successor.id),
                    codec::encode_delivery(&successor, latest.as_ref()),
                );
            }
        }
        Ok(Some((next, made_due)))
    }

    /// Takes delivery `id`, due at `next_at`, out of the due index: removes
    /// its key, or takes it out of its group in `edits`. Call with both
    /// locks held.
    fn remove_due(
        &self,
        batch: &mut sled::Batch,
        edits: &mut DueEdits,
        sub_key: u64,
        next_at: Millis,
        id: u64,
    ) -> Result<()> {
        let own = keys::due(sub_key, next_at, id);
        for item in self.data.scan_prefix(keys::due_at_prefix(sub_key, next_at)) {
            let (k, stored) = item?;
            let Ok(key) = <[u8; 25]>::try_from(&k[..]) else {
                continue;
            };
            if !keys::is_due_group(&stored) {
                if key == own {
                    batch.remove(&key);
                    return Ok(());
                }
                continue;
            }
            // A group this round already edited is read from the edit.
            let edited = edits.0.contains_key(&key);
            if !edited && !keys::group_members(&stored).any(|(member, _)| member == id) {
                continue;
            }
            let members = (edits.0)
                .entry(key)
                .or_insert_with(|| keys::group_members(&stored).collect());
            if let Some(at) = members.iter().position(|&(member, _)| member == id) {
                members.remove(at);
                return Ok(());
            }
        }
        Ok(())
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
    fn lane_successor(&self, sub_key: u64, key: &str, head: u64) -> Result<Option<Found>> {
        for item in self.data.scan_prefix(keys::lane_prefix(sub_key, key)) {
            let (k, _) = item?;
            match keys::lane_delivery(&k) {
                Some(id) if id != head => return self.find_delivery(id, None),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// A delivery record.
    pub fn delivery(&self, id: u64) -> Result<Option<Delivery>> {
        Ok(self.find_delivery(id, None)?.map(|found| found.delivery))
    }

    /// A delivery; `event` is where to look for its event if it has no
    /// record of its own yet, if known.
    pub(super) fn find_delivery(&self, id: u64, event: Option<EventAt>) -> Result<Option<Found>> {
        self.find_delivery_as_of(id, event, None)
    }

    /// [`Store::find_delivery`]; with `changes`, the store's change count
    /// read before the call, its event may come from the recent ones.
    fn find_delivery_as_of(
        &self,
        id: u64,
        event: Option<EventAt>,
        changes: Option<u64>,
    ) -> Result<Option<Found>> {
        if let Some(v) = self.data.get(keys::with_u64(keys::DELIVERY, id))? {
            let (delivery, latest) = codec::decode_delivery(&v)?;
            return Ok(Some(Found {
                delivery,
                latest,
                event: None,
            }));
        }
        // Untouched since ingest: its event holds it (see `events`).
        let Some((key, seq, v)) = self.event_of_delivery(id, event, changes)? else {
            return Ok(None);
        };
        let (header, inline) = codec::decode_event(&v)?;
        let inline_len = inline.map(<[u8]>::len);
        Ok(header.fresh_delivery(seq, id).map(|delivery| Found {
            delivery,
            latest: None,
            event: Some(FoundEvent {
                key,
                header,
                record: v,
                inline_len,
            }),
        }))
    }

    /// Every delivery in id order, or newest first: the delivery records,
    /// merged with the fan-out deliveries that have none yet.
    pub(super) fn all_deliveries(&self, newest_first: bool) -> AllDeliveries {
        let records = self.data.scan_prefix([keys::DELIVERY]);
        let records: Scan = match newest_first {
            true => Box::new(records.rev()),
            false => Box::new(records),
        };
        let events = self.all_events(newest_first);
        let recorded: Deliveries = Box::new(records.map(|item| {
            let (_, v) = item?;
            Ok(codec::decode_delivery(&v)?.0)
        }));
        let fresh: Deliveries = Box::new(events.flat_map(move |item| {
            let mut fresh = Vec::new();
            match item.and_then(|(seq, v)| Ok((seq, codec::decode_event(&v)?.0))) {
                Ok((seq, event)) => {
                    // Only the fan-out can be without a record, and only if
                    // the event names its subscriptions.
                    let fan_out = event.subs.len().min(event.fanned_out as usize);
                    fresh.extend(
                        event
                            .deliveries
                            .iter()
                            .take(fan_out)
                            .filter_map(|&id| event.fresh_delivery(seq, id))
                            .map(Ok),
                    );
                    if newest_first {
                        fresh.reverse();
                    }
                }
                Err(e) => fresh.push(Err(e)),
            }
            fresh
        }));
        AllDeliveries {
            recorded: recorded.peekable(),
            fresh: fresh.peekable(),
            newest_first,
        }
    }

    /// An event header and its data, by sequence number.
    pub fn event_by_seq(&self, seq: u64) -> Result<Option<(Event, Bytes)>> {
        let Some(v) = self.event_record(seq)? else {
            return Ok(None);
        };
        let (event, inline) = codec::decode_event(&v)?;
        self.with_data(seq, event, inline).map(Some)
    }

    /// An event header with its data: the inline data, else its chunks.
    fn with_data(&self, seq: u64, event: Event, inline: Option<&[u8]>) -> Result<(Event, Bytes)> {
        if let Some(data) = inline {
            return Ok((event, Bytes::copy_from_slice(data)));
        }
        let mut data = BytesMut::with_capacity(event.data_len as usize);
        for item in self.data.scan_prefix(keys::with_u64(keys::CHUNK, seq)) {
            let (_, chunk) = item?;
            data.extend_from_slice(&chunk);
        }
        Ok((event, data.freeze()))
    }
}

/// A delivery as [`Store::find_delivery`] found it.
pub(super) struct Found {
    pub delivery: Delivery,
    /// Its latest attempt, which its record keeps (earlier ones are attempt records).
    pub latest: Option<Attempt>,
    /// Its event, when that had to be read to find it.
    pub event: Option<FoundEvent>,
}

/// The event record [`Store::find_delivery`] read, and its header, decoded
/// once: an attempt needs the header and the data.
pub(super) struct FoundEvent {
    /// The event key the record is under (its own, or its pack's).
    pub key: u64,
    pub header: Event,
    pub record: sled::IVec,
    /// The length of its data, if that is inline (`codec::inline_data`).
    pub inline_len: Option<usize>,
}

type Scan = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>>;
type Deliveries = Box<dyn Iterator<Item = Result<Delivery>>>;

/// See [`Store::all_deliveries`]. A fan-out delivery that has a record is
/// read from the record.
pub(super) struct AllDeliveries {
    recorded: std::iter::Peekable<Deliveries>,
    fresh: std::iter::Peekable<Deliveries>,
    newest_first: bool,
}

impl Iterator for AllDeliveries {
    type Item = Result<Delivery>;

    fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            let (recorded, fresh) = match (self.recorded.peek(), self.fresh.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(_), None) => return self.recorded.next(),
                (_, Some(Err(_))) | (None, Some(_)) => return self.fresh.next(),
                (Some(Ok(r)), Some(Ok(f))) => (r.id, f.id),
            };
            if recorded == fresh {
                self.fresh.next();
                continue;
            }
            return match (recorded < fresh) != self.newest_first {
                true => self.recorded.next(),
                false => self.fresh.next(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{codec, keys};
    use crate::model::{now_ms, Attempt, Delivery, DeliveryStatus, Event};
    use crate::store::{AttemptRecord, NewEvent};

    fn event(id: &str) -> NewEvent {
        NewEvent {
            id: Some(id.into()),
            event_type: "a.b".into(),
            tenant: None,
            ordering_key: None,
            data: bytes::Bytes::from_static(b"{}"),
        }
    }

    fn delivered() -> AttemptRecord {
        AttemptRecord {
            attempt: Attempt {
                no: 1,
                at: now_ms(),
                status: Some(200),
                error: None,
                latency_ms: 1,
                response: Vec::new(),
            },
            spent: 1,
            status: DeliveryStatus::Delivered,
            next_at: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_attempt_lists_in_order_the_latest_from_the_delivery_record() {
        let (_dir, store) = crate::store::open_temp();
        store
            .ingest(vec![event("e1")], vec![vec![1]])
            .await
            .unwrap();
        let fresh = store.all_deliveries(false).next().unwrap().unwrap();
        let mut failed = delivered();
        failed.attempt.status = Some(503);
        failed.status = DeliveryStatus::Failed;
        failed.next_at = fresh.next_at + 1;
        let (retrying, _) = store
            .record_attempt(&fresh, None, failed.clone())
            .await
            .unwrap()
            .unwrap();
        let mut ok = delivered();
        ok.attempt.no = 2;
        ok.spent = 2;
        store
            .record_attempt(&retrying, None, ok.clone())
            .await
            .unwrap()
            .unwrap();

        assert_eq!(
            store.attempts(fresh.id).unwrap(),
            vec![failed.attempt, ok.attempt.clone()]
        );
        let record = store
            .data
            .get(keys::with_u64(keys::DELIVERY, fresh.id))
            .unwrap()
            .unwrap();
        assert_eq!(codec::decode_delivery(&record).unwrap().1, Some(ok.attempt));
        assert_eq!(
            store
                .data
                .scan_prefix(keys::with_u64(keys::ATTEMPT, fresh.id))
                .count(),
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attempt_recorded_from_what_it_loaded_yields_to_a_change_made_meanwhile() {
        let (_dir, store) = crate::store::open_temp();
        store
            .ingest(vec![event("e1"), event("e2")], vec![vec![1], vec![1]])
            .await
            .unwrap();
        let due = store.due_batch(1, u64::MAX, 10, &|_| false).unwrap().ready;
        assert_eq!(due.len(), 2);

        // Nothing else wrote: a retry and then a success, each recorded
        // from what its attempt loaded, keep both attempts.
        let loaded = store.load_for_attempt(due[0]).unwrap().unwrap();
        let mut failed = delivered();
        failed.attempt.status = Some(503);
        failed.status = DeliveryStatus::Failed;
        failed.next_at = loaded.delivery.next_at + 1;
        let (retrying, _) = store
            .record_loaded_attempt(&loaded, failed.clone())
            .await
            .unwrap()
            .unwrap();
        let again = super::Due {
            id: retrying.id,
            event_key: None,
        };
        let loaded = store.load_for_attempt(again).unwrap().unwrap();
        assert_eq!(loaded.delivery, retrying);
        let mut ok = delivered();
        ok.attempt.no = 2;
        ok.spent = 2;
        let (done, _) = store
            .record_loaded_attempt(&loaded, ok.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, DeliveryStatus::Delivered);
        assert_eq!(
            store.attempts(retrying.id).unwrap(),
            vec![failed.attempt, ok.attempt]
        );

        // Cancelled while its attempt was out: the outcome is not recorded
        // over the cancel.
        let loaded = store.load_for_attempt(due[1]).unwrap().unwrap();
        assert_eq!(store.remove_subscription(1).await.unwrap(), 1);
        assert_eq!(
            store
                .record_loaded_attempt(&loaded, delivered())
                .await
                .unwrap(),
            None
        );
        let cancelled = store.delivery(due[1].id).unwrap().unwrap();
        assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
        assert!(store.attempts(due[1].id).unwrap().is_empty());
    }

    /// Two deliveries of one event pack, loaded under one change count (the
    /// first load keeps the pack among the recent ones) and delivered; then
    /// retention removes both records and the event. Their due entries and
    /// that count.
    async fn purged_after_loads_from_one_pack(
        store: &crate::store::Store,
    ) -> (Vec<super::Due>, u64) {
        store
            .ingest(vec![event("e1"), event("e2")], vec![vec![1], vec![1]])
            .await
            .unwrap();
        let due = store.due_batch(1, u64::MAX, 10, &|_| false).unwrap().ready;
        assert_eq!(due[0].event_key, due[1].event_key, "one pack");
        let before = store.changes.load(std::sync::atomic::Ordering::SeqCst);
        for d in &due {
            let loaded = store.load_for_attempt_as_of(*d, before).unwrap().unwrap();
            store
                .record_loaded_attempt(&loaded, delivered())
                .await
                .unwrap()
                .unwrap();
        }
        let purged = store.purge_batch(now_ms() + 60_000, None, 10).unwrap();
        assert_eq!(purged.purged, 2);
        (due, before)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pack_read_for_attempts_is_not_served_once_the_store_changed() {
        let (_dir, store) = crate::store::open_temp();
        // Both closed, then purged: the pack the loads kept must not bring
        // them back.
        let (due, _) = purged_after_loads_from_one_pack(&store).await;
        for d in &due {
            assert!(store.load_for_attempt(*d).unwrap().is_none());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_that_a_purge_overlapped_does_not_bring_back_a_purged_delivery() {
        let (_dir, store) = crate::store::open_temp();
        // A load that read its count before the purge and its delivery's
        // record after: the record is gone and the pack kept under the old
        // count says pending, so the load must see that the store changed.
        let (due, before) = purged_after_loads_from_one_pack(&store).await;
        assert!(store
            .load_for_attempt_as_of(due[1], before)
            .unwrap()
            .is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_stored_with_its_own_record_at_ingest_still_reads_and_lists() {
        let (_dir, store) = crate::store::open_temp();
        // As schema 1 stored an event: no subscriptions in it, a record per delivery.
        let (seq, id) = (store.next_id().unwrap(), store.next_id().unwrap());
        let old = Event {
            id: "old".into(),
            event_type: "a.b".into(),
            tenant: None,
            ordering_key: None,
            received_at: now_ms(),
            data_len: 2,
            deliveries: vec![id],
            fanned_out: 1,
            subs: Vec::new(),
        };
        let delivery = Delivery::new(id, seq, 1, None, old.received_at);
        let mut batch = sled::Batch::default();
        batch.insert(
            &keys::with_u64(keys::EVENT, seq),
            codec::encode_event(&old, Some(b"{}")),
        );
        batch.insert(
            &keys::with_u64(keys::DELIVERY, id),
            codec::encode(&delivery),
        );
        batch.insert(&keys::due(1, delivery.next_at, id), &[]);
        store.apply(batch).unwrap();
        store
            .ingest(vec![event("new")], vec![vec![1]])
            .await
            .unwrap();

        let unhinted = super::Due {
            id,
            event_key: None,
        };
        let loaded = store.load_for_attempt(unhinted).unwrap().unwrap();
        assert_eq!(
            (loaded.delivery, &loaded.data[..]),
            (delivery.clone(), &b"{}"[..])
        );
        let all: Vec<_> = store.all_deliveries(false).map(Result::unwrap).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], delivery);
        assert!(all[1].id > id);
        // Only ingest's due keys know the event.
        let due = store.due_batch(1, u64::MAX, 10, &|_| false).unwrap().ready;
        assert_eq!(due[0], unhinted);
        assert_eq!(due[1].id, all[1].id);
        assert_eq!(due[1].event_key, Some(all[1].event_seq));
        let fresh = store.load_for_attempt(due[1]).unwrap().unwrap();
        assert_eq!(fresh.delivery, all[1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_without_a_record_loads_with_its_data_inline_or_in_chunks() {
        let (_dir, store) = crate::store::open_temp();
        let small = bytes::Bytes::from_static(br#"{"n":1}"#);
        let large = bytes::Bytes::from(format!(
            r#"{{"pad":"{}"}}"#,
            "x".repeat(3 * keys::CHUNK_SIZE)
        ));
        for (id, data) in [("small", &small), ("large", &large)] {
            let mut new = event(id);
            new.data = data.clone();
            store.ingest(vec![new], vec![vec![1]]).await.unwrap();
        }
        let due = store.due_batch(1, u64::MAX, 10, &|_| false).unwrap().ready;
        assert_eq!(due.len(), 2);
        for (due, (id, data)) in due.into_iter().zip([("small", &small), ("large", &large)]) {
            assert!(due.event_key.is_some());
            let loaded = store.load_for_attempt(due).unwrap().unwrap();
            assert_eq!(loaded.event.id, id);
            assert_eq!(loaded.delivery.id, due.id);
            assert_eq!(&loaded.data, data);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_delivery_lists_once_in_id_order_with_a_record_or_without() {
        let (_dir, store) = crate::store::open_temp();
        for id in ["e1", "e2", "e3"] {
            store
                .ingest(vec![event(id)], vec![vec![1, 2]])
                .await
                .unwrap();
        }
        let fresh: Vec<_> = store.all_deliveries(false).map(Result::unwrap).collect();
        assert_eq!(fresh.len(), 6);
        assert!(fresh.iter().all(|d| d.status == DeliveryStatus::Pending));

        // One attempted (now with a record), one redelivery (made with one).
        let attempted = fresh[2].clone();
        let recorded = store
            .record_attempt(&attempted, None, delivered())
            .await
            .unwrap();
        assert_eq!(recorded.unwrap().0.status, DeliveryStatus::Delivered);
        let redelivery = store.requeue(fresh[0].event_seq, &[2]).await.unwrap()[0];

        let all: Vec<_> = store.all_deliveries(false).map(Result::unwrap).collect();
        let ids: Vec<u64> = all.iter().map(|d| d.id).collect();
        let mut expected: Vec<u64> = fresh.iter().map(|d| d.id).collect();
        expected.push(redelivery);
        assert_eq!(ids, expected);
        assert_eq!(all[2].status, DeliveryStatus::Delivered);
        assert_eq!(store.delivery(attempted.id).unwrap().unwrap(), all[2]);
        assert_eq!(store.delivery(redelivery).unwrap().unwrap().sub_key, 2);
        assert_eq!(store.delivery(fresh[5].id).unwrap().unwrap(), fresh[5]);

        let mut newest_first: Vec<u64> =
            store.all_deliveries(true).map(|d| d.unwrap().id).collect();
        newest_first.reverse();
        assert_eq!(newest_first, expected);
        // An id no event made is no delivery.
        assert!(store.delivery(redelivery + 100).unwrap().is_none());
    }
}
