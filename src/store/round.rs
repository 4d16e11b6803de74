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
        if let Err(e) = self.apply_round(batch) {
            self.settle_all(&recorded);
            return Err(e);
        }
        // Still under the locks, so a clean shutdown's counts match the store.
        self.add_held(staged.held);
        for (&sub, &n) in &staged.opened {
            self.adjust_open(sub, n);
        }
        for (next, _) in recorded.iter().flatten() {
            if !next.status.is_open() {
                self.adjust_open(next.sub_key, -1);
            }
        }
        drop(ingest_guard);
        drop(delivery_guard);
        Ok((staged.answers, recorded))
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys;
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
            _room: None,
        }
    }

    fn unordered(id: &str, subs: &[u64]) -> IngestJob {
        let mut job = ingest(id, 0);
        job.events[0].ordering_key = None;
        job.routes = vec![subs.to_vec()];
        job
    }

    fn delivered(before: &crate::model::Delivery) -> AttemptJob {
        AttemptJob {
            before: before.clone(),
            event_key: None,
            seen: None,
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

    fn due_now(store: &Store, sub: u64) -> Vec<u64> {
        let now = now_ms();
        let ready = store.due_batch(sub, now, 100, &|_| false).unwrap().ready;
        ready.into_iter().map(|due| due.id).collect()
    }

    fn due_keys(store: &Store, sub: u64) -> usize {
        store
            .data
            .scan_prefix(crate::store::keys::due_prefix(sub))
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ingests_room_is_held_until_its_round_even_if_its_caller_leaves() {
        let (_dir, store) = crate::store::open_temp();
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let room = budget.clone().try_acquire_owned().unwrap();
        // Rounds wait while a thread of the test holds the ingest lock.
        let (locked, release) = (
            std::sync::mpsc::channel::<()>(),
            std::sync::mpsc::channel::<()>(),
        );
        let blocker = {
            let store = store.clone();
            let (locked, release) = (locked.0, release.1);
            std::thread::spawn(move || {
                let _held = store.ingest_lock.lock().unwrap();
                locked.send(()).unwrap();
                release.recv().unwrap();
            })
        };
        locked.1.recv().unwrap();
        let mut job = unordered("left", &[7]);
        let events = std::mem::take(&mut job.events);
        let routes = std::mem::take(&mut job.routes);
        // Polled once, the call queues its job; then its caller goes away.
        let mut caller = Box::pin(store.ingest_holding(events, routes, Some(room)));
        tokio::select! {
            biased;
            _ = &mut caller => panic!("answered while rounds were held up"),
            () = std::future::ready(()) => {}
        }
        drop(caller);
        assert_eq!(
            budget.available_permits(),
            0,
            "the queued events still hold it"
        );
        release.0.send(()).unwrap();
        blocker.join().unwrap();
        let _back = budget.acquire().await.unwrap();
        assert_eq!(
            due(&store, 7).len(),
            1,
            "the events were stored all the same"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rounds_unordered_deliveries_share_a_due_key_until_the_last_leaves() {
        let (_dir, store) = crate::store::open_temp();
        let jobs: Vec<IngestJob> = (0..4)
            .map(|n| unordered(&format!("e{n}"), &[7, 8]))
            .collect();
        store.write_round(&jobs, &[]).unwrap();
        assert_eq!((due_keys(&store, 7), due_keys(&store, 8)), (1, 1));
        let ids = due_now(&store, 7);
        assert_eq!(ids.len(), 4);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in ingest order");
        // A scan that stops inside the group says more is due now.
        let first = store.due_batch(7, now_ms(), 1, &|_| false).unwrap();
        assert_eq!(first.ready.len(), 1);
        assert!(first.next_due.is_some());
        // Busy members are skipped, the rest of the group is read.
        let rest = store
            .due_batch(7, now_ms(), 100, &|id| id == ids[0])
            .unwrap();
        assert_eq!(rest.ready.len(), 3);
        let before: Vec<_> = ids
            .iter()
            .map(|&id| store.delivery(id).unwrap().unwrap())
            .collect();

        // Two members close in one round and a third fails, due again later.
        let retry = retried(&before[2], before[2].next_at + 60_000);
        let (_, recorded) = store
            .write_round(&[], &[delivered(&before[0]), delivered(&before[1]), retry])
            .unwrap();
        assert!(recorded.iter().all(Option::is_some));
        assert_eq!(due_now(&store, 7), vec![ids[3]]);
        let later = store.due_batch(7, u64::MAX, 100, &|_| false).unwrap();
        let later: Vec<u64> = later.ready.iter().map(|due| due.id).collect();
        assert_eq!(later, vec![ids[3], ids[2]]);
        assert_eq!(store.open_count(7), 2);
        assert_eq!(due_keys(&store, 7), 2);

        // The last member leaves: the group's key goes with it.
        store.write_round(&[], &[delivered(&before[3])]).unwrap();
        assert_eq!(due_keys(&store, 7), 1);
        assert!(due_now(&store, 7).is_empty());
        // Counted from the index as a restart counts: members, not keys.
        store.count_open_deliveries().unwrap();
        assert_eq!((store.open_count(7), store.open_count(8)), (1, 4));

        // Removing a subscription cancels every member of its groups.
        let of_8 = due_now(&store, 8);
        assert_eq!(store.remove_subscription(8).await.unwrap(), 4);
        assert_eq!(due_keys(&store, 8), 0);
        for id in of_8 {
            let status = store.delivery(id).unwrap().unwrap().status;
            assert_eq!(status, DeliveryStatus::Cancelled);
        }
    }

    /// An attempt outcome that keeps a delivery open at another time.
    fn retried(before: &crate::model::Delivery, next_at: u64) -> AttemptJob {
        let mut job = delivered(before);
        job.record.attempt.status = Some(503);
        job.record.status = DeliveryStatus::Failed;
        job.record.next_at = next_at;
        job
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_put_back_at_its_groups_time_leaves_the_group_whole() {
        let (_dir, store) = crate::store::open_temp();
        let jobs = [unordered("g0", &[7]), unordered("g1", &[7])];
        store.write_round(&jobs, &[]).unwrap();
        let ids = due(&store, 7);
        assert_eq!(ids.len(), 2);
        let first = store.delivery(ids[0]).unwrap().unwrap();
        let group_at = first.next_at;
        // The first member leaves for later, then (the wall clock stepped
        // back) is put back at the group's very time.
        store
            .write_round(&[], &[retried(&first, group_at + 60_000)])
            .unwrap();
        let moved = store.delivery(ids[0]).unwrap().unwrap();
        store
            .write_round(&[], &[retried(&moved, group_at)])
            .unwrap();
        let mut now_due = store
            .due_batch(7, group_at, 100, &|_| false)
            .unwrap()
            .ready
            .into_iter()
            .map(|due| due.id)
            .collect::<Vec<_>>();
        now_due.sort_unstable();
        assert_eq!(now_due, ids, "both members due at the group's time");
        assert_eq!(due_keys(&store, 7), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_due_group_holds_a_bounded_number_and_a_round_makes_as_many_as_it_needs() {
        use crate::store::keys::{self, DUE_GROUP_MAX};
        let (_dir, store) = crate::store::open_temp();
        let mut job = unordered("b0", &[9]);
        let n = DUE_GROUP_MAX + 10;
        job.events = (0..n)
            .map(|i| NewEvent {
                id: Some(format!("b{i}")),
                ..job.events[0].clone()
            })
            .collect();
        job.routes = vec![vec![9]; n];
        store.write_round(&[job], &[]).unwrap();
        assert_eq!(due_keys(&store, 9), 2);
        for item in store.data.scan_prefix(keys::due_prefix(9)) {
            assert!(item.unwrap().1.len() <= keys::CHUNK_SIZE);
        }
        let ready = store
            .due_batch(9, now_ms(), n + 1, &|_| false)
            .unwrap()
            .ready;
        assert_eq!(ready.len(), n);
        // A member of the second group leaves; both groups are at one time.
        let last = store.delivery(ready[n - 1].id).unwrap().unwrap();
        store.write_round(&[], &[delivered(&last)]).unwrap();
        let ready = store
            .due_batch(9, now_ms(), n + 1, &|_| false)
            .unwrap()
            .ready;
        assert_eq!(ready.len(), n - 1);
        assert!(ready.iter().all(|due| due.id != last.id));
        assert_eq!(due_keys(&store, 9), 2);
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

    #[test]
    fn after_the_clean_shutdown_no_round_is_written() {
        let (_dir, store) = crate::store::open_temp();
        store
            .write_round(&[unordered("before", &[7])], &[])
            .unwrap();
        let held = store.held_bytes();
        store.flush_now().unwrap();

        let refused = store.write_round(&[unordered("after", &[7])], &[]);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("shutting down")),
            "{refused:?}"
        );
        assert_eq!((store.open_count(7), store.held_bytes()), (1, held));
        assert!(store.data.get(keys::idem("after")).unwrap().is_none());
    }

    #[test]
    fn a_store_that_failed_a_flush_records_no_clean_shutdown() {
        let (_dir, store) = crate::store::open_temp();
        store
            .write_round(&[unordered("before", &[7])], &[])
            .unwrap();
        store.flusher().fail("the disk went away".into());
        let refused = store.flush_now().unwrap_err().to_string();
        assert!(refused.contains("the disk went away"), "{refused}");
        let meta = store.db.open_tree("meta").unwrap();
        assert!(meta.get(super::super::open::COUNTS_KEY).unwrap().is_none());
    }
}
