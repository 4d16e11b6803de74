//! The ingest write: events with their data and fan-out, and due keys, in one batch.

use super::events::{Packer, PACK_MAX};
use super::flush::Job;
use super::{codec, keys, Store};
use crate::error::Result;
use crate::model::{now_ms, Delivery, Event};
use bytes::Bytes;
use std::collections::hash_map::{Entry, HashMap};
use tokio::sync::oneshot;

/// An event as validated by ingest, before it is stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Option<String>,
    pub event_type: String,
    pub tenant: Option<String>,
    pub ordering_key: Option<String>,
    /// `data` exactly as posted.
    pub data: Bytes,
}

/// What ingest answers for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    pub deliveries: usize,
    /// The id was already accepted: nothing new was stored.
    pub duplicate: bool,
}

/// Ingests queued for the commit thread's next round.
pub(super) struct IngestJob {
    pub events: Vec<NewEvent>,
    /// Beside each event: the subscription keys it fans out to.
    pub routes: Vec<Vec<u64>>,
    /// The answers, once they are durable.
    pub reply: oneshot::Sender<Result<Vec<Accepted>>>,
    /// The room the caller accounts the events' memory with: dropped with
    /// the job, once its round is answered, whether or not anyone still
    /// waits for the answer.
    pub _room: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The keys a round's ingests write, about, counted job by job as
/// `stage_ingests` writes them: per event its id key if it was given one, and its record's
/// share of a pack, or a key of its own and its data chunks if the data is
/// not inline; per ordered delivery a lane key and perhaps a due key; per
/// subscription a due key for every `DUE_GROUP_MAX` unordered deliveries.
/// Repeats, which write nothing, are counted too.
#[derive(Default)]
pub(super) struct RoundKeys {
    keys: usize,
    /// Unordered deliveries so far, per subscription.
    grouped: HashMap<u64, usize>,
    /// Bytes in the open pack, about (0: none open).
    packed: usize,
    events: usize,
}

/// About what an event's record takes besides its data and type: the
/// generated id, the header's fixed fields, the record's and the pack's
/// framing.
const RECORD_ABOUT: usize = 64;

impl RoundKeys {
    /// The events of the round so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Adds a job; the keys of the round so far.
    pub fn add(&mut self, job: &IngestJob) -> usize {
        self.events += job.events.len();
        for (event, subs) in job.events.iter().zip(&job.routes) {
            // Its id key: a made-up id has none.
            self.keys += usize::from(event.id.is_some());
            match event.data.len() {
                n if n <= keys::INLINE_DATA => {
                    // Ids of its deliveries and its subscriptions: 8 bytes each.
                    let record = n + event.event_type.len() + RECORD_ABOUT + 16 * subs.len();
                    if self.packed == 0 || self.packed + record > PACK_MAX {
                        self.keys += 1;
                        self.packed = 0;
                    }
                    self.packed += record;
                }
                n => {
                    self.keys += 1 + n.div_ceil(keys::CHUNK_SIZE);
                    self.packed = 0;
                }
            }
            if event.ordering_key.is_some() {
                self.keys += 2 * subs.len();
                continue;
            }
            for &sub in subs {
                let n = self.grouped.entry(sub).or_insert(0);
                if *n % keys::DUE_GROUP_MAX == 0 {
                    self.keys += 1;
                }
                *n += 1;
            }
        }
        self.keys
    }
}

impl Store {
    /// Stores events all-or-nothing, each fanned out to the subscription keys
    /// beside it in `routes`, and answers once they are durable. Requests that
    /// arrive together share one write and one flush.
    pub async fn ingest(
        &self,
        events: Vec<NewEvent>,
        routes: Vec<Vec<u64>>,
    ) -> Result<Vec<Accepted>> {
        self.ingest_holding(events, routes, None).await
    }

    /// [`Store::ingest`], holding `room` until the round that writes the
    /// events is answered, even if this future is dropped before then.
    pub async fn ingest_holding(
        &self,
        events: Vec<NewEvent>,
        routes: Vec<Vec<u64>>,
        room: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Vec<Accepted>> {
        debug_assert_eq!(events.len(), routes.len());
        let (reply, answer) = oneshot::channel();
        self.flusher.submit(Job::Ingest(IngestJob {
            events,
            routes,
            reply,
            _room: room,
        }));
        super::flush::answered(answer).await
    }

    /// Adds a round of ingests to `batch`; one list of answers per job.
    /// Call with `ingest_lock` held.
    pub(super) fn stage_ingests(
        &self,
        batch: &mut sled::Batch,
        lanes: &mut LanesInBatch,
        jobs: &[IngestJob],
    ) -> Result<StagedIngests> {
        let now = now_ms();
        let mut staged = StagedIngests {
            answers: Vec::with_capacity(jobs.len()),
            ..Default::default()
        };
        // Ids new in this very round: a repeat inside it is a duplicate too.
        let mut fresh: HashMap<&str, usize> = HashMap::new();
        // The round's unordered deliveries, per subscription: one due key each.
        let mut due: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        let mut packer = Packer::default();
        // Per event: its deliveries due now, each with its subscription; a
        // lane's head also gets a due key of its own (`repair_lanes` looks
        // for it). Filled once the event's key is known.
        let mut unordered = Vec::new();
        let mut heads = Vec::new();
        for job in jobs {
            let mut job_answers = Vec::with_capacity(job.events.len());
            for (event, subs) in job.events.iter().zip(&job.routes) {
                if let Some(id) = event.id.as_deref() {
                    if let Some(&n) = fresh.get(id) {
                        job_answers.push(duplicate(id, n));
                        continue;
                    }
                    if let Some(n) = self.known_event_deliveries(id)? {
                        job_answers.push(duplicate(id, n));
                        continue;
                    }
                }
                let seq = self.next_id()?;
                let id = match &event.id {
                    Some(id) => id.clone(),
                    None => keys::made_up_id(seq, now, self.id_salt),
                };
                let mut delivery_ids = Vec::with_capacity(subs.len());
                for &sub_key in subs {
                    let delivery_id = self.next_id()?;
                    // No record of its own until it changes: the event says
                    // what it is (see `Event::fresh_delivery`).
                    let delivery =
                        Delivery::new(delivery_id, seq, sub_key, event.ordering_key.clone(), now);
                    if delivery.lane.is_none() {
                        unordered.push((sub_key, delivery_id));
                    } else if self.enqueue(batch, lanes, &delivery)? {
                        heads.push((sub_key, delivery_id));
                    }
                    delivery_ids.push(delivery_id);
                    *staged.opened.entry(sub_key).or_insert(0) += 1;
                }
                let record = Event {
                    id: id.clone(),
                    event_type: event.event_type.clone(),
                    tenant: event.tenant.clone(),
                    ordering_key: event.ordering_key.clone(),
                    received_at: now,
                    data_len: event.data.len() as u32,
                    fanned_out: delivery_ids.len() as u32,
                    deliveries: delivery_ids,
                    subs: subs.clone(),
                };
                staged.held += super::budget::footprint(&record);
                // The event key that holds the record: where its deliveries' due
                // keys say to read it.
                let event_key = if event.data.len() <= keys::INLINE_DATA {
                    let encoded = codec::encode_event(&record, Some(&event.data));
                    let key = packer.key_for(seq, encoded.len());
                    packer.add(batch, seq, encoded);
                    key
                } else {
                    packer.write(batch);
                    let event_key = keys::with_u64(keys::EVENT, seq);
                    batch.insert(&event_key, codec::encode_event(&record, None));
                    for (no, chunk) in event.data.chunks(keys::CHUNK_SIZE).enumerate() {
                        batch.insert(&keys::chunk(seq, no as u16), chunk);
                    }
                    seq
                };
                for (sub_key, delivery_id) in unordered.drain(..) {
                    due.entry(sub_key)
                        .or_default()
                        .push((delivery_id, event_key));
                }
                for (sub_key, delivery_id) in heads.drain(..) {
                    batch.insert(
                        &keys::due(sub_key, now, delivery_id),
                        &event_key.to_be_bytes(),
                    );
                }
                // A made-up id needs no key: it says its seq.
                if let Some(given) = event.id.as_deref() {
                    batch.insert(keys::idem(given), &seq.to_be_bytes());
                    fresh.insert(given, subs.len());
                }
                job_answers.push(Accepted {
                    id,
                    deliveries: subs.len(),
                    duplicate: false,
                });
            }
            staged.answers.push(job_answers);
        }
        packer.write(batch);
        for (sub_key, members) in due {
            for group in members.chunks(keys::DUE_GROUP_MAX) {
                match *group {
                    [(delivery_id, seq)] => {
                        batch.insert(&keys::due(sub_key, now, delivery_id), &seq.to_be_bytes())
                    }
                    // Under an id no delivery has: an attempt that puts a
                    // delivery back at this time then writes its own key,
                    // never over the group (wall clocks can step back).
                    _ => batch.insert(
                        &keys::due(sub_key, now, self.next_id()?),
                        keys::due_group(group),
                    ),
                }
            }
        }
        Ok(staged)
    }

    /// Puts a new delivery in its ordered lane, if it has one; true when it
    /// is due now (no lane, or the lane was empty). Call with `ingest_lock` held.
    pub(super) fn enqueue(
        &self,
        batch: &mut sled::Batch,
        lanes: &mut LanesInBatch,
        delivery: &Delivery,
    ) -> Result<bool> {
        let Some(key) = delivery.lane.as_deref() else {
            return Ok(true);
        };
        batch.insert(keys::lane(delivery.sub_key, key, delivery.id), &[]);
        match lanes.0.entry((delivery.sub_key, key.to_string())) {
            Entry::Occupied(_) => return Ok(false),
            Entry::Vacant(first) => first.insert(delivery.clone()),
        };
        let empty = self
            .data
            .scan_prefix(keys::lane_prefix(delivery.sub_key, key))
            .next()
            .transpose()?
            .is_none();
        Ok(empty)
    }

    /// The number of deliveries of an already accepted event with this id.
    fn known_event_deliveries(&self, id: &str) -> Result<Option<usize>> {
        if let Some(seq) = self.data.get(keys::idem(id))? {
            let seq = keys::be(&seq);
            return Ok(match self.event_record(seq)? {
                Some(v) => Some(codec::decode_event(&v)?.0.fanned_out as usize),
                None => Some(0),
            });
        }
        // An id this store made up, given back as the client's own.
        Ok(self
            .made_up_event(id)?
            .map(|(_, event)| event.fanned_out as usize))
    }
}

fn duplicate(id: &str, deliveries: usize) -> Accepted {
    Accepted {
        id: id.to_string(),
        deliveries,
        duplicate: true,
    }
}

/// Lanes that got deliveries in the batch being built, each with the first
/// of them: reads of the store do not see them yet.
#[derive(Default)]
pub(super) struct LanesInBatch(HashMap<(u64, String), Delivery>);

impl LanesInBatch {
    /// The first delivery this batch added to the lane, if any.
    pub(super) fn first(&self, sub_key: u64, key: &str) -> Option<&Delivery> {
        self.0.get(&(sub_key, key.to_string()))
    }
}

/// What staging a round of ingests produced, besides the batch.
#[derive(Default)]
pub(super) struct StagedIngests {
    /// One list of answers per job.
    pub answers: Vec<Vec<Accepted>>,
    /// New open deliveries per subscription key.
    pub opened: HashMap<u64, i64>,
    /// Bytes the new events hold (see `budget`).
    pub held: u64,
}
