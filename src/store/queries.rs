//! The admin side: listings, lookups, redelivery, cancellation.

use super::events::{EventAt, EventEdits};
use super::{codec, keys, Store};
use crate::error::Result;
use crate::model::{now_ms, Attempt, Delivery, DeliveryStatus, Event, Millis};
use bytes::Bytes;

/// What `event list` selects.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub event_type: Option<String>,
    /// Events with at least one delivery in this status.
    pub status: Option<DeliveryStatus>,
    pub limit: usize,
}

/// What `delivery list` selects.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub sub_key: Option<u64>,
    pub status: Option<DeliveryStatus>,
    pub limit: usize,
}

/// An event with its data and deliveries.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub seq: u64,
    pub event: Event,
    pub data: Bytes,
    pub deliveries: Vec<Delivery>,
}

impl Store {
    /// Newest events first.
    pub fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventDetail>> {
        let mut out = Vec::new();
        for item in self.all_events(true) {
            if out.len() >= filter.limit {
                break;
            }
            let (seq, v) = item?;
            let (event, _) = codec::decode_event(&v)?;
            if filter
                .event_type
                .as_deref()
                .is_some_and(|t| t != event.event_type)
            {
                continue;
            }
            let deliveries = self.deliveries_of(&event)?;
            if let Some(status) = filter.status {
                if !deliveries.iter().any(|d| d.status == status) {
                    continue;
                }
            }
            out.push(EventDetail {
                seq,
                event,
                data: Bytes::new(),
                deliveries,
            });
        }
        Ok(out)
    }

    /// An event by its id, with data and deliveries.
    pub fn event_detail(&self, id: &str) -> Result<Option<EventDetail>> {
        let Some(seq) = self.event_seq(id)? else {
            return Ok(None);
        };
        let Some((event, data)) = self.event_by_seq(seq)? else {
            return Ok(None);
        };
        let deliveries = self.deliveries_of(&event)?;
        Ok(Some(EventDetail {
            seq,
            event,
            data,
            deliveries,
        }))
    }

    fn deliveries_of(&self, event: &Event) -> Result<Vec<Delivery>> {
        let mut out = Vec::with_capacity(event.deliveries.len());
        for &id in &event.deliveries {
            if let Some(d) = self.delivery(id)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Newest deliveries first. Open deliveries of one subscription are read
    /// from its due index; anything else is a scan.
    pub fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for d in self.all_deliveries(true) {
            if out.len() >= filter.limit {
                break;
            }
            let d = d?;
            if filter.sub_key.is_some_and(|s| s != d.sub_key) {
                continue;
            }
            if filter.status.is_some_and(|s| s != d.status) {
                continue;
            }
            out.push(d);
        }
        Ok(out)
    }

    /// Every attempt of a delivery, oldest first.
    pub fn attempts(&self, delivery_id: u64) -> Result<Vec<Attempt>> {
        let mut out = Vec::new();
        for item in self
            .data
            .scan_prefix(keys::with_u64(keys::ATTEMPT, delivery_id))
        {
            let (_, v) = item?;
            out.push(codec::decode(&v, "attempt")?);
        }
        let found = self.find_delivery(delivery_id, None)?;
        out.extend(found.and_then(|found| found.latest));
        Ok(out)
    }

    /// The header of the event stored under `seq`.
    pub fn event_header(&self, seq: u64) -> Result<Option<Event>> {
        self.event_record(seq)?
            .map(|v| codec::decode_event(&v).map(|(event, _)| event))
            .transpose()
    }

    /// Makes a new delivery of event `seq` to each subscription key, due now,
    /// durably. Returns the new delivery ids.
    pub async fn requeue(&self, seq: u64, sub_keys: &[u64]) -> Result<Vec<u64>> {
        let ids = {
            let _guard = self.delivery_lock.lock().unwrap();
            let _ingest = self.ingest_lock.lock().unwrap();
            let mut lanes = super::ingest::LanesInBatch::default();
            let Some(record) = self.event_record(seq)? else {
                return Ok(Vec::new());
            };
            let (mut event, inline) = codec::decode_event(&record)?;
            let now = now_ms();
            let held_before = super::budget::footprint(&event);
            let mut batch = sled::Batch::default();
            let mut ids = Vec::with_capacity(sub_keys.len());
            for &sub_key in sub_keys {
                let id = self.next_id()?;
                let delivery = Delivery::new(id, seq, sub_key, event.ordering_key.clone(), now);
                batch.insert(
                    &keys::with_u64(keys::DELIVERY, id),
                    codec::encode(&delivery),
                );
                if self.enqueue(&mut batch, &mut lanes, &delivery)? {
                    batch.insert(&keys::due(sub_key, now, id), &[]);
                }
                event.deliveries.push(id);
                ids.push(id);
            }
            let mut edits = EventEdits::default();
            let record = codec::encode_event(&event, inline);
            self.edit_event(&mut batch, &mut edits, seq, Some(record))?;
            edits.write(&mut batch)?;
            self.apply(batch)?;
            self.add_held(super::budget::footprint(&event) - held_before);
            for &sub_key in sub_keys {
                self.adjust_open(sub_key, 1);
            }
            ids
        };
        self.flusher.durable().await?;
        Ok(ids)
    }

    /// The open deliveries of one ordered lane, head first.
    pub fn lane_deliveries(&self, sub_key: u64, key: &str, limit: usize) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for item in self
            .data
            .scan_prefix(keys::lane_prefix(sub_key, key))
            .take(limit)
        {
            let (k, _) = item?;
            if let Some(d) = keys::lane_delivery(&k)
                .map(|id| self.delivery(id))
                .transpose()?
            {
                out.extend(d);
            }
        }
        Ok(out)
    }

    /// Events received since `since`, newest first, with their sequence numbers.
    pub fn events_since(&self, since: Millis) -> Result<Vec<(u64, Event)>> {
        let mut out = Vec::new();
        for item in self.all_events(true) {
            let (seq, v) = item?;
            let (event, _) = codec::decode_event(&v)?;
            if event.received_at < since {
                break;
            }
            out.push((seq, event));
        }
        Ok(out)
    }

    /// Removes a subscription and cancels its open deliveries, durably.
    pub async fn remove_subscription(&self, sub_key: u64) -> Result<u64> {
        let mut cancelled = 0;
        {
            let _guard = self.delivery_lock.lock().unwrap();
            let _ingest = self.ingest_lock.lock().unwrap();
            let now = now_ms();
            let mut batch = sled::Batch::default();
            batch.remove(&keys::with_u64(keys::SUB, sub_key));
            let due = self.data.scan_prefix(keys::due_prefix(sub_key));
            let lanes = self.data.scan_prefix(keys::with_u64(keys::LANE, sub_key));
            // A lane's head has a due key and a lane key: cancelled once.
            let mut seen = std::collections::HashSet::new();
            for item in due.chain(lanes) {
                let (k, v) = item?;
                let ids: Vec<(u64, Option<u64>)> = match k[0] {
                    keys::DUE => keys::parse_due(&k)
                        .map(|(_, _, id)| keys::due_members(id, &v).collect())
                        .unwrap_or_default(),
                    _ => keys::lane_delivery(&k)
                        .map(|id| (id, None))
                        .into_iter()
                        .collect(),
                };
                for (id, event_seq) in ids {
                    if !seen.insert(id) {
                        continue;
                    }
                    let found = self.find_delivery(id, event_seq.map(EventAt::Key))?;
                    if let Some(mut found) = found.filter(|f| f.delivery.status.is_open()) {
                        cancelled += 1;
                        let d = &mut found.delivery;
                        d.status = DeliveryStatus::Cancelled;
                        d.updated_at = now;
                        batch.insert(
                            &keys::with_u64(keys::DELIVERY, d.id),
                            codec::encode_delivery(d, found.latest.as_ref()),
                        );
                    }
                }
                batch.remove(k);
            }
            self.apply(batch)?;
            self.open.lock().unwrap().remove(&sub_key);
        }
        self.flusher.durable().await?;
        Ok(cancelled)
    }
}
