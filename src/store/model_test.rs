//! A model test of the store's bookkeeping: random rounds of ingests and
//! attempt outcomes, attempts kept out across rounds while outside writes
//! land (subscription removal, requeue, retention), and after every step
//! the due index, the lanes and the counts checked against the records.

use super::deliveries::AttemptJob;
use super::ingest::IngestJob;
use super::{keys, Store};
use crate::model::{now_ms, Attempt, Delivery, DeliveryStatus};
use crate::store::{AttemptRecord, Loaded, NewEvent};
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;

/// A small deterministic generator: a failure names its seed and step.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// Non-zero counts only: a subscription whose deliveries all closed may be
/// kept at 0 or forgotten.
fn nonzero(counts: &HashMap<u64, u64>) -> HashMap<u64, u64> {
    counts
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(&k, &n)| (k, n))
        .collect()
}

/// The store's invariants, and no delivery that was closed reads open again.
fn check(store: &Store, closed: &mut HashSet<u64>, at: &str) {
    let mut due: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for item in store.data.scan_prefix([keys::DUE]) {
        let (k, v) = item.unwrap();
        let (sub, next_at, key_id) = keys::parse_due(&k).unwrap();
        for (id, _) in keys::due_members(key_id, &v) {
            due.entry(id).or_default().push((sub, next_at));
        }
    }
    let (mut heads, mut laned) = (HashSet::new(), HashSet::new());
    let mut lane: Option<Vec<u8>> = None;
    for item in store.data.scan_prefix([keys::LANE]) {
        let (k, _) = item.unwrap();
        let id = keys::lane_delivery(&k).unwrap();
        laned.insert(id);
        if lane.as_deref() != Some(keys::lane_of(&k)) {
            heads.insert(id);
            lane = Some(keys::lane_of(&k).to_vec());
        }
    }
    let all: Vec<Delivery> = store.all_deliveries(false).map(|d| d.unwrap()).collect();
    for d in &all {
        let entries = due.get(&d.id).cloned().unwrap_or_default();
        if !d.status.is_open() {
            closed.insert(d.id);
            assert!(entries.is_empty(), "{at}: closed {d:?} is due: {entries:?}");
            assert!(!laned.contains(&d.id), "{at}: closed {d:?} is in a lane");
            continue;
        }
        assert!(!closed.contains(&d.id), "{at}: {d:?} was closed");
        if d.lane.is_some() {
            assert!(laned.contains(&d.id), "{at}: {d:?} is not in its lane");
        }
        if d.lane.is_none() || heads.contains(&d.id) {
            assert_eq!(
                entries,
                vec![(d.sub_key, d.next_at)],
                "{at}: {d:?} is not due once, at its record's time"
            );
        } else {
            assert!(entries.is_empty(), "{at}: lane follower {d:?} is due");
        }
    }
    let known: HashSet<u64> = all.iter().map(|d| d.id).collect();
    for id in due.keys() {
        assert!(known.contains(id), "{at}: due entry for no delivery {id}");
    }
    // What a restart without the shutdown's counts would count, against
    // what the store kept up to date.
    let (open, held) = (store.open.lock().unwrap().clone(), store.held_bytes());
    store.count_open_deliveries().unwrap();
    store.count_held().unwrap();
    assert_eq!(
        nonzero(&open),
        nonzero(&store.open.lock().unwrap()),
        "{at}: open counts against a recount"
    );
    assert_eq!(
        held,
        store.held_bytes(),
        "{at}: held bytes against a recount"
    );
}

/// The outcome `status` of an attempt of `loaded`, due again at `next_at`.
fn outcome(loaded: &Loaded, status: DeliveryStatus, next_at: u64) -> AttemptJob {
    AttemptJob {
        before: loaded.delivery.clone(),
        event_key: loaded.event_key,
        seen: Some(loaded.seen.clone()),
        record: AttemptRecord {
            attempt: Attempt {
                no: loaded.delivery.attempts + 1,
                at: now_ms(),
                status: Some(200),
                error: None,
                latency_ms: 1,
                response: Vec::new(),
            },
            spent: loaded.delivery.spent + 1,
            status,
            next_at,
        },
        reply: oneshot::channel().0,
    }
}

/// Random events for one ingest job: with and without ids, ordered or
/// not, inline or chunked data, each to some of `subs`.
fn ingest(rng: &mut Rng, subs: &[u64], made: &mut u64) -> IngestJob {
    let (mut events, mut routes) = (Vec::new(), Vec::new());
    for _ in 0..1 + rng.below(5) {
        *made += 1;
        let ordered = rng.one_in(4);
        let chunked = rng.one_in(8);
        events.push(NewEvent {
            id: (!rng.one_in(3)).then(|| format!("e{made}")),
            event_type: "a.b".into(),
            tenant: None,
            ordering_key: ordered.then(|| format!("k{}", rng.below(3))),
            data: bytes::Bytes::from(vec![b'x'; if chunked { 5000 } else { 10 }]),
        });
        let mut to: Vec<u64> = subs.iter().copied().filter(|_| rng.one_in(2)).collect();
        if to.is_empty() {
            to.push(subs[0]);
        }
        routes.push(to);
    }
    IngestJob {
        events,
        routes,
        reply: oneshot::channel().0,
        _room: None,
    }
}

async fn run(seed: u64, steps: usize) {
    let (_dir, store) = crate::store::open_temp();
    let mut rng = Rng(seed);
    let (mut subs, mut next_sub) = (vec![1, 2, 3], 4);
    let mut out: HashMap<u64, Loaded> = HashMap::new();
    let mut unsettled = Vec::new();
    let mut closed = HashSet::new();
    let mut made = 0;
    for step in 0..steps {
        let at = format!("seed {seed} step {step}");
        // Sometimes an outside write first, with attempts still out.
        match rng.below(12) {
            0 if subs.len() > 1 => {
                let sub = subs.remove(rng.below(subs.len() as u64) as usize);
                store.remove_subscription(sub).await.unwrap();
            }
            1 => {
                subs.push(next_sub);
                next_sub += 1;
            }
            2 => {
                let seqs: Vec<u64> = store.all_events(false).map(|e| e.unwrap().0).collect();
                if !seqs.is_empty() {
                    let seq = seqs[rng.below(seqs.len() as u64) as usize];
                    let sub = subs[rng.below(subs.len() as u64) as usize];
                    store.requeue(seq, &[sub]).await.unwrap();
                }
            }
            3 => {
                store.purge_batch(now_ms() + 1_000_000, None, 1000).unwrap();
            }
            _ => {}
        }
        let ingests: Vec<IngestJob> = (0..rng.below(4))
            .map(|_| ingest(&mut rng, &subs, &mut made))
            .collect();
        // New attempts, as the scheduler starts them: what is due and not out.
        for &sub in subs.iter().chain([next_sub - 1].iter()) {
            let limit = 1 + rng.below(6) as usize;
            let scan = store
                .due_batch(sub, u64::MAX, limit, &|id| out.contains_key(&id))
                .unwrap();
            for due in scan.ready {
                if let Some(loaded) = store.load_for_attempt(due).unwrap() {
                    out.insert(due.id, loaded);
                }
            }
        }
        // About half of the attempts out end in this round: delivered, dead,
        // or failed and due again at the same time, a little later, or now.
        let mut outcomes = Vec::new();
        let ids: Vec<u64> = out.keys().copied().collect();
        for id in ids {
            if rng.one_in(2) {
                continue;
            }
            let loaded = out.remove(&id).unwrap();
            let status = match rng.below(4) {
                0 | 1 => DeliveryStatus::Delivered,
                2 => DeliveryStatus::Failed,
                _ => DeliveryStatus::Dead,
            };
            let next_at = match rng.below(3) {
                0 => loaded.delivery.next_at,
                1 => loaded.delivery.next_at + 1 + rng.below(3),
                _ => now_ms() + rng.below(5),
            };
            outcomes.push(outcome(&loaded, status, next_at));
        }
        let (_, recorded) = store.write_round(&ingests, &outcomes).unwrap();
        unsettled.extend(recorded.iter().flatten().filter_map(|(_, next)| *next));
        // A successor is settled once its head's close is durable: sometimes later.
        if rng.one_in(2) {
            for successor in unsettled.drain(..) {
                store.settle(successor);
            }
        }
        check(&store, &mut closed, &at);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_rounds_and_outside_writes_keep_the_due_index_and_the_counts_true_to_the_records() {
    for seed in 0..12 {
        run(seed * 7919 + 1, 60).await;
    }
}
