//! One round of the commit thread: every queued ingest and attempt outcome
//! in a single sled batch.

use super::deliveries::{AttemptJob, Recorded};
use super::ingest::{Accepted, IngestJob, LanesInBatch};
use super::Store;
use crate::error::Result;

impl Store {
    /// Writes a round all-or-nothing: ingests first, then attempt outcomes,
    /// which see the lanes the ingests added to. Returns one list of answers
    /// per ingest job and one answer per attempt job. Not yet durable.
    pub(super) fn write_round(
        &self,
        ingests: &[IngestJob],
        attempts: &[AttemptJob],
    ) -> Result<(Vec<Vec<Accepted>>, Vec<Recorded>)> {
        // Both locks: an ingest deciding whether a new delivery heads its
        // lane must not interleave with a head's close, nor an operator's
        // change with an attempt's outcome.
        let delivery_guard = self.delivery_lock.lock().unwrap();
        let ingest_guard = self.ingest_lock.lock().unwrap();
        let mut batch = sled::Batch::default();
        let mut lanes = LanesInBatch::default();
        let staged = self.stage_ingests(&mut batch, &mut lanes, ingests)?;
        let recorded = self.stage_attempts(&mut batch, &lanes, attempts)?;
        if let Err(e) = self.apply(batch) {
            self.settle_all(&recorded);
            return Err(e);
        }
        drop(ingest_guard);
        drop(delivery_guard);

        self.add_held(staged.held);
        for (&sub, &n) in &staged.opened {
            self.adjust_open(sub, n);
        }
        for (next, _) in recorded.iter().flatten() {
            if !next.status.is_open() {
                self.adjust_open(next.sub_key, -1);
            }
        }
        Ok((staged.answers, recorded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{now_ms, Attempt, DeliveryStatus};
    use crate::store::{AttemptRecord, NewEvent};
    use tokio::sync::oneshot;

    fn ingest(id: &str, sub: u64) -> IngestJob {
        IngestJob {
            events: vec![NewEvent {
                id: Some(id.into()),
                event_type: "a.b".into(),
                tenant: None,
                ordering_key: Some("k".into()),
                data: bytes::Bytes::from_static(b"{}"),
            }],
            routes: vec![vec![sub]],
            reply: oneshot::channel().0,
        }
    }

    fn delivered(before: &crate::model::Delivery) -> AttemptJob {
        AttemptJob {
            before: before.clone(),
            record: AttemptRecord {
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
                next_at: before.next_at,
            },
            reply: oneshot::channel().0,
        }
    }

    fn due(store: &Store, sub: u64) -> Vec<u64> {
        store
            .due_batch(sub, u64::MAX, 100, &|_| false)
            .unwrap()
            .ready
            .into_iter()
            .map(|due| due.id)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lane_head_closed_in_the_round_that_adds_to_its_lane_hands_on() {
        let (_dir, store) = crate::store::open_temp();
        let (answers, _) = store.write_round(&[ingest("e1", 7)], &[]).unwrap();
        assert_eq!(answers[0][0].deliveries, 1);
        let head_id = due(&store, 7);
        assert_eq!(head_id.len(), 1);
        let head = store.delivery(head_id[0]).unwrap().unwrap();

        // The head's close and the next event of its lane in one round: the
        // newcomer is not in the store when the close looks for a successor.
        let (_, recorded) = store
            .write_round(&[ingest("e2", 7)], &[delivered(&head)])
            .unwrap();
        let (closed, successor) = recorded[0].clone().expect("recorded");
        assert_eq!(closed.status, DeliveryStatus::Delivered);
        let successor = successor.expect("the newcomer is made due");
        // Held back until the round is durable, then due.
        assert!(due(&store, 7).is_empty());
        store.settle(successor);
        assert_eq!(due(&store, 7), vec![successor]);
        assert_eq!(store.open_count(7), 1);
    }
}
