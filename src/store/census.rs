//! A census of the stored deliveries for `/metrics`: how many in each
//! status, how many are due, and since when the oldest open one waits.

use super::events::EventAt;
use super::{codec, keys, Store};
use crate::error::Result;
use crate::model::{DeliveryStatus, Millis};
use std::collections::BTreeMap;

/// Counts over every stored delivery at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Deliveries by status name (`pending`, `failed`, `delivered`, `dead`, `cancelled`).
    pub by_status: BTreeMap<&'static str, u64>,
    /// Open deliveries whose next attempt is due.
    pub due: u64,
    /// When the oldest open delivery was created.
    pub oldest_open_at: Option<Millis>,
}

impl Store {
    /// Counts the deliveries without reading the events: the records of the
    /// deliveries that changed since ingest give their statuses, the open
    /// count the store keeps gives the rest (fresh ones are pending), and
    /// the due index gives what is due and the oldest open delivery. Reading
    /// every event instead made a scrape page the whole store in, and sled
    /// kept most of it: RSS rose by the size of the store, up to about
    /// 60 MiB, and stayed there. Time grows with the changed deliveries and
    /// the due index, so callers still throttle it.
    pub fn census(&self, now: Millis) -> Result<Census> {
        let mut census = Census::default();
        // Every status shows, 0 included, so a series never vanishes.
        for status in [
            DeliveryStatus::Pending,
            DeliveryStatus::Failed,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
            DeliveryStatus::Cancelled,
        ] {
            census.by_status.insert(status.name(), 0);
        }
        // Read before the records: a delivery that gets its first record
        // while they are read is then counted once at most.
        let open = self.open_total();
        let mut open_recorded = 0u64;
        for item in self.data.scan_prefix([keys::DELIVERY]) {
            let (_, v) = item?;
            let status = codec::decode_delivery(&v)?.0.status;
            *census.by_status.entry(status.name()).or_insert(0) += 1;
            open_recorded += u64::from(status.is_open());
        }
        *census
            .by_status
            .entry(DeliveryStatus::Pending.name())
            .or_insert(0) += open.saturating_sub(open_recorded);
        // Ids grow with time, so the oldest open delivery has the lowest id
        // in the due index (a lane's head is there, the rest wait behind it).
        let mut oldest: Option<(u64, Option<u64>)> = None;
        for item in self.data.scan_prefix([keys::DUE]) {
            let (k, v) = item?;
            let Some((_, next_at, key_id)) = keys::parse_due(&k) else {
                continue;
            };
            for (id, event_key) in keys::due_members(key_id, &v) {
                census.due += u64::from(next_at <= now);
                if oldest.is_none_or(|(lowest, _)| id < lowest) {
                    oldest = Some((id, event_key));
                }
            }
        }
        // Lane members behind their head are due as soon as it settles.
        census.due += self.lane_followers()?;
        if let Some((id, event_key)) = oldest {
            census.oldest_open_at = self
                .find_delivery(id, event_key.map(EventAt::Key))?
                .map(|found| found.delivery.created_at);
        }
        Ok(census)
    }
}

#[cfg(test)]
mod tests {
    use super::Census;
    use crate::model::{now_ms, Attempt, DeliveryStatus, Millis};
    use crate::store::{AttemptRecord, NewEvent, Store};

    fn event(id: &str, lane: Option<&str>) -> NewEvent {
        NewEvent {
            id: Some(id.into()),
            event_type: "a.b".into(),
            tenant: None,
            ordering_key: lane.map(str::to_string),
            data: bytes::Bytes::from_static(b"{}"),
        }
    }

    fn outcome(status: DeliveryStatus, next_at: Millis) -> AttemptRecord {
        AttemptRecord {
            attempt: Attempt {
                no: 1,
                at: now_ms(),
                status: Some(if status == DeliveryStatus::Delivered {
                    200
                } else {
                    503
                }),
                error: None,
                latency_ms: 1,
                response: Vec::new(),
            },
            spent: 1,
            status,
            next_at,
        }
    }

    /// The census as reading every delivery finds it.
    fn read_everything(store: &Store, now: Millis) -> Census {
        let mut census = Census::default();
        for status in ["pending", "failed", "delivered", "dead", "cancelled"] {
            census.by_status.insert(status, 0);
        }
        for d in store.all_deliveries(false) {
            let d = d.unwrap();
            *census.by_status.get_mut(d.status.name()).unwrap() += 1;
            if d.status.is_open() {
                census.due += u64::from(d.next_at <= now);
                census.oldest_open_at = Some(
                    census
                        .oldest_open_at
                        .map_or(d.created_at, |t| t.min(d.created_at)),
                );
            }
        }
        census
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_census_counts_what_reading_every_delivery_counts() {
        let (_dir, store) = crate::store::open_temp();
        let now = now_ms();
        assert_eq!(store.census(now).unwrap(), read_everything(&store, now));

        // Small events share pack keys; fan-outs to two share due groups.
        let mut events: Vec<NewEvent> = (0..40).map(|n| event(&format!("e{n}"), None)).collect();
        let mut routes: Vec<Vec<u64>> = (0..40).map(|n| vec![1 + n % 2, 3]).collect();
        // A lane: a head in the due index, two behind it.
        for n in 0..3 {
            events.push(event(&format!("o{n}"), Some("k")));
            routes.push(vec![4]);
        }
        store.ingest(events, routes).await.unwrap();
        let all: Vec<_> = store.all_deliveries(false).map(Result::unwrap).collect();
        let of_sub = |sub: u64| all.iter().filter(move |d| d.sub_key == sub);

        let later = now_ms() + 60_000;
        for (n, d) in of_sub(1).take(9).enumerate() {
            let record = match n % 3 {
                0 => outcome(DeliveryStatus::Delivered, 0),
                1 => outcome(DeliveryStatus::Failed, later),
                _ => outcome(DeliveryStatus::Dead, 0),
            };
            store
                .record_attempt(d, None, record)
                .await
                .unwrap()
                .unwrap();
        }
        // Retried now: failed, with a record, and due.
        let retry = of_sub(2).next().unwrap();
        store
            .record_attempt(retry, None, outcome(DeliveryStatus::Failed, 0))
            .await
            .unwrap()
            .unwrap();
        // A redelivery: a pending delivery with a record of its own.
        store.requeue(all[0].event_seq, &[2]).await.unwrap();
        // Every open delivery of subscription 3 cancelled.
        assert_eq!(store.remove_subscription(3).await.unwrap(), 40);

        let now = now_ms();
        let census = store.census(now).unwrap();
        assert_eq!(census, read_everything(&store, now));
        assert_eq!(census.by_status["delivered"], 3);
        assert_eq!(census.by_status["failed"], 4);
        assert_eq!(census.by_status["dead"], 3);
        assert_eq!(census.by_status["cancelled"], 40);
        // 11 + 20 - 1 fresh of subscriptions 1 and 2, the redelivery, the lane.
        assert_eq!(census.by_status["pending"], 11 + 19 + 1 + 3);
        assert_eq!(census.due, 34 + 1);
        assert_eq!(census.oldest_open_at, Some(all[0].created_at));
    }
}
