//! Where event records live. An event's record is under its own key
//! (`E ‖ seq`), or, for the small events an ingest round accepts together,
//! in a pack: one key, `E ‖ first member's seq`, holding consecutive
//! events' records ([`codec::encode_pack`]). sled's costs go by keys, not
//! bytes: per key written (about 10 µs of the commit thread's time) and per
//! key held (about 35 bytes of memory for as long as it is stored), so
//! eight events to a key take most of both off an event's cost.
//!
//! No other event key lies between a pack's key and its members, so the
//! record of `seq` is at the last event key at or below `seq`, and the
//! event of a delivery id is the last event stored below the id (ingest
//! takes an event's seq, then its deliveries' ids).

use super::{codec, keys, Store};
use crate::error::Result;
use crate::model::Event;
use sled::IVec;
use std::collections::BTreeMap;

/// A pack holds at most this many bytes, so a leaf of packs stays below
/// sled's blob threshold as a leaf of data chunks does (see `keys::CHUNK_SIZE`).
pub(super) const PACK_MAX: usize = keys::CHUNK_SIZE;

/// Event records, packs opened, from a scan of event keys.
pub(super) type EventRecords = Box<dyn Iterator<Item = Result<(u64, IVec)>>>;

/// Where a delivery's event is, as far as its caller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventAt {
    /// The key that holds its record, as a due key names it.
    Key(u64),
    /// Its seq, as its delivery record names it.
    Seq(u64),
}

/// The records an ingest round stores, packed as they come.
#[derive(Default)]
pub(super) struct Packer {
    members: Vec<(u64, Vec<u8>)>,
    size: usize,
}

impl Packer {
    /// The event key that will hold a record of `len` bytes for event
    /// `seq` if it is [`Packer::add`]ed next: the open pack's, or its own.
    pub fn key_for(&self, seq: u64, len: usize) -> u64 {
        match self.members.first() {
            Some(&(first, _)) if self.fits(len) => first,
            _ => seq,
        }
    }

    fn fits(&self, len: usize) -> bool {
        1 + self.size + codec::PACK_ENTRY + len <= PACK_MAX
    }

    /// Adds event `seq`'s record, writing out the open pack first if it is full.
    pub fn add(&mut self, batch: &mut sled::Batch, seq: u64, record: Vec<u8>) {
        if !self.fits(record.len()) {
            self.write(batch);
        }
        self.size += codec::PACK_ENTRY + record.len();
        self.members.push((seq, record));
    }

    /// Writes out the open pack: before a record that takes a key of its
    /// own, and at the end of the round. A pack of one is a plain record.
    pub fn write(&mut self, batch: &mut sled::Batch) {
        self.size = 0;
        match self.members.len() {
            0 => {}
            1 => {
                let (seq, record) = self.members.pop().unwrap();
                batch.insert(&keys::with_u64(keys::EVENT, seq), record);
            }
            _ => {
                let key = keys::with_u64(keys::EVENT, self.members[0].0);
                batch.insert(&key, codec::encode_pack(&self.members));
                self.members.clear();
            }
        }
    }
}

/// Changes to stored event records in one batch: a pack is rewritten once,
/// whatever number of its members change.
#[derive(Default)]
pub(super) struct EventEdits {
    /// Per pack key: the pack as read under the batch's locks, and the
    /// members that change.
    packs: BTreeMap<u64, (IVec, MemberChanges)>,
}

/// Per member seq: its new record, or nothing (removed).
type MemberChanges = BTreeMap<u64, Option<Vec<u8>>>;

impl EventEdits {
    /// Adds the edits to `batch`.
    pub fn write(self, batch: &mut sled::Batch) -> Result<()> {
        for (key, (pack, changes)) in self.packs {
            let mut members: Vec<(u64, Vec<u8>)> = Vec::new();
            for member in codec::pack_members(&pack) {
                let (seq, record) = member?;
                match changes.get(&seq) {
                    Some(Some(new)) => members.push((seq, new.clone())),
                    Some(None) => {}
                    None => members.push((seq, pack[record].to_vec())),
                }
            }
            let event_key = keys::with_u64(keys::EVENT, key);
            if members.is_empty() {
                batch.remove(&event_key);
            } else {
                batch.insert(&event_key, codec::encode_pack(&members));
            }
        }
        Ok(())
    }
}

/// The record under event key `key` with the highest seq at or below
/// `bound`: the value itself, or the last such member of the pack there.
fn last_at_or_below(key: u64, v: IVec, bound: u64) -> Result<Option<(u64, IVec)>> {
    if !codec::is_pack(&v) {
        return Ok((key <= bound).then_some((key, v)));
    }
    let mut last = None;
    for member in codec::pack_members(&v) {
        let (seq, record) = member?;
        if seq > bound {
            break;
        }
        last = Some((seq, record));
    }
    Ok(last.map(|(seq, record)| (seq, v.subslice(record.start, record.len()))))
}

impl Store {
    /// The event a made-up id names, with its seq, if it is stored and is
    /// that id's (`keys::made_up_id`).
    pub(super) fn made_up_event(&self, id: &str) -> Result<Option<(u64, Event)>> {
        let Some(seq) = keys::made_up_seq(id, self.id_salt) else {
            return Ok(None);
        };
        let Some(record) = self.event_record(seq)? else {
            return Ok(None);
        };
        let (event, _) = codec::decode_event(&record)?;
        Ok((event.id == id).then_some((seq, event)))
    }

    /// The seq of the event with `id`: its `I` key's, or the one its made-up id says.
    pub(super) fn event_seq(&self, id: &str) -> Result<Option<u64>> {
        if let Some(seq) = self.data.get(keys::idem(id))? {
            return Ok(Some(keys::be(&seq)));
        }
        Ok(self.made_up_event(id)?.map(|(seq, _)| seq))
    }

    /// The record of event `seq`, if it is stored.
    pub(super) fn event_record(&self, seq: u64) -> Result<Option<IVec>> {
        let Some((key, v)) = self.event_key_at_or_below(seq)? else {
            return Ok(None);
        };
        Ok(last_at_or_below(key, v, seq)?
            .filter(|&(s, _)| s == seq)
            .map(|(_, record)| record))
    }

    /// The event of delivery `id` as (event key, seq, record): the last
    /// stored below the id, looked for where `at` says if the caller knows.
    ///
    /// With `changes`, the store's change count read before the call, an
    /// event key is read from the recent ones (`recent`) if kept there.
    pub(super) fn event_of_delivery(
        &self,
        id: u64,
        at: Option<EventAt>,
        changes: Option<u64>,
    ) -> Result<Option<(u64, u64, IVec)>> {
        let found = match (at, changes) {
            (Some(EventAt::Key(key)), Some(changes)) => match self.recent.get(key, changes) {
                Some(v) => Some((key, v)),
                None => {
                    let v = self.data.get(keys::with_u64(keys::EVENT, key))?;
                    if let Some(v) = &v {
                        self.recent.put(key, v, changes);
                    }
                    v.map(|v| (key, v))
                }
            },
            (Some(EventAt::Key(key)), None) => self
                .data
                .get(keys::with_u64(keys::EVENT, key))?
                .map(|v| (key, v)),
            (Some(EventAt::Seq(seq)), _) => self.event_key_at_or_below(seq)?,
            (None, _) => self.event_key_below(id)?,
        };
        let Some((key, v)) = found else {
            return Ok(None);
        };
        // Ingest draws an event's seq before its deliveries' ids.
        let Some(bound) = id.checked_sub(1) else {
            return Ok(None);
        };
        Ok(last_at_or_below(key, v, bound)?.map(|(seq, record)| (key, seq, record)))
    }

    /// Records the change of event `seq`'s record (to `new`, or removed)
    /// in `batch`, or in `edits` if it is in a pack.
    pub(super) fn edit_event(
        &self,
        batch: &mut sled::Batch,
        edits: &mut EventEdits,
        seq: u64,
        new: Option<Vec<u8>>,
    ) -> Result<()> {
        match self.event_key_at_or_below(seq)? {
            Some((key, v)) if codec::is_pack(&v) => {
                let (_, changes) = edits
                    .packs
                    .entry(key)
                    .or_insert_with(|| (v, BTreeMap::new()));
                changes.insert(seq, new);
            }
            _ => {
                let k = keys::with_u64(keys::EVENT, seq);
                match new {
                    Some(record) => batch.insert(&k, record),
                    None => batch.remove(&k),
                }
            }
        }
        Ok(())
    }

    /// Every event record from event key `from` on (`None`: the first),
    /// oldest first, packs opened.
    pub(super) fn events_from(&self, from: Option<u64>) -> EventRecords {
        let start = match from {
            Some(key) => keys::with_u64(keys::EVENT, key).to_vec(),
            None => vec![keys::EVENT],
        };
        let scan = self.data.range(start..vec![keys::EVENT + 1]);
        Box::new(scan.flat_map(|item| open_pack(item, false)))
    }

    /// Every event record, newest first or oldest first, packs opened.
    pub(super) fn all_events(&self, newest_first: bool) -> EventRecords {
        if !newest_first {
            return self.events_from(None);
        }
        let scan = self.data.scan_prefix([keys::EVENT]).rev();
        Box::new(scan.flat_map(|item| open_pack(item, true)))
    }

    /// The event key at or below `seq`, with its value, in one lookup.
    pub(super) fn event_key_at_or_below(&self, seq: u64) -> Result<Option<(u64, IVec)>> {
        match seq.checked_add(1) {
            Some(next) => self.event_key_below(next),
            None => Ok(self
                .data
                .get(keys::with_u64(keys::EVENT, seq))?
                .map(|v| (seq, v))),
        }
    }

    fn event_key_below(&self, seq: u64) -> Result<Option<(u64, IVec)>> {
        Ok(self
            .data
            .get_lt(keys::with_u64(keys::EVENT, seq))?
            .and_then(|(k, v)| {
                let key = keys::tail_u64(&k).filter(|_| k[0] == keys::EVENT)?;
                Some((key, v))
            }))
    }
}

/// One scanned event key as its records: itself, or its pack's members.
fn open_pack(item: sled::Result<(IVec, IVec)>, reverse: bool) -> Vec<Result<(u64, IVec)>> {
    let (k, v) = match item {
        Ok(kv) => kv,
        Err(e) => return vec![Err(e.into())],
    };
    let Some(seq) = keys::tail_u64(&k) else {
        return Vec::new();
    };
    if !codec::is_pack(&v) {
        return vec![Ok((seq, v))];
    }
    let mut members: Vec<_> = codec::pack_members(&v)
        .map(|member| member.map(|(seq, r)| (seq, v.subslice(r.start, r.len()))))
        .collect();
    if reverse {
        members.reverse();
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::now_ms;
    use crate::store::NewEvent;
    use bytes::Bytes;

    fn event(id: &str, data: String) -> NewEvent {
        NewEvent {
            id: Some(id.into()),
            event_type: "a.b".into(),
            tenant: None,
            ordering_key: None,
            data: Bytes::from(data),
        }
    }

    /// The event keys, and whether each holds a pack.
    fn event_keys(store: &Store) -> Vec<(u64, bool)> {
        store
            .data
            .scan_prefix([keys::EVENT])
            .map(|item| {
                let (k, v) = item.unwrap();
                (keys::tail_u64(&k).unwrap(), codec::is_pack(&v))
            })
            .collect()
    }

    /// 30 small events, a large one (in chunks), 5 small: ids and data.
    fn round() -> Vec<(String, String)> {
        let small = |n: usize| {
            (
                format!("s{n}"),
                format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(200)),
            )
        };
        let large = (
            "large".to_string(),
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(3 * keys::CHUNK_SIZE)),
        );
        let mut events: Vec<_> = (0..30).map(small).collect();
        events.push(large);
        events.extend((30..35).map(small));
        events
    }

    async fn ingest(store: &Store, events: &[(String, String)], subs: &[u64]) {
        let new = events
            .iter()
            .map(|(id, data)| event(id, data.clone()))
            .collect();
        let routes = vec![subs.to_vec(); events.len()];
        store.ingest(new, routes).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rounds_small_events_share_keys_and_each_reads_back_on_its_own() {
        let (_dir, store) = crate::store::open_temp();
        let events = round();
        ingest(&store, &events, &[1]).await;

        // Packs up to the large event, which has its own key, then a pack.
        let stored = event_keys(&store);
        assert!(stored.len() < 12, "36 events in {} keys", stored.len());
        let large = stored.iter().position(|&(_, pack)| !pack).unwrap();
        assert!(stored[..large].iter().all(|&(_, pack)| pack));
        assert_eq!(stored[large + 1..], [(stored[large + 1].0, true)]);

        for (id, data) in &events {
            let detail = store.event_detail(id).unwrap().unwrap();
            assert_eq!(&detail.event.id, id);
            assert_eq!(detail.data, data.as_bytes());
            assert_eq!(detail.deliveries.len(), 1);
            assert_eq!(store.event_header(detail.seq).unwrap().unwrap().id, *id);
        }
        // From the due index, with the event key it names, as an attempt loads it.
        let due = store.due_batch(1, u64::MAX, 100, &|_| false).unwrap().ready;
        assert_eq!(due.len(), events.len());
        for (due, (id, data)) in due.iter().zip(&events) {
            let loaded = store.load_for_attempt(*due).unwrap().unwrap();
            assert_eq!((&loaded.event.id, &loaded.data[..]), (id, data.as_bytes()));
            assert_eq!(store.delivery(due.id).unwrap().unwrap(), loaded.delivery);
        }
        let all = crate::store::EventFilter {
            limit: 100,
            ..Default::default()
        };
        let listed = store.list_events(&all).unwrap();
        let newest_first: Vec<&str> = listed.iter().map(|d| d.event.id.as_str()).collect();
        let expected: Vec<&str> = events.iter().rev().map(|(id, _)| id.as_str()).collect();
        assert_eq!(newest_first, expected);
        let seqs: Vec<u64> = listed.iter().map(|d| d.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
        assert_eq!(store.all_deliveries(false).count(), events.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_purges_packed_events_a_few_at_a_time_and_keeps_the_open_one() {
        let (_dir, store) = crate::store::open_temp();
        let events = round();
        // No deliveries (closed from the start), except s3's, which stays open.
        let (open, closed): (Vec<_>, Vec<_>) =
            events.iter().cloned().partition(|(id, _)| id == "s3");
        ingest(&store, &closed[..3], &[]).await;
        ingest(&store, &open, &[1]).await;
        ingest(&store, &closed[3..], &[]).await;
        let held = store.held_bytes();

        let cutoff = now_ms() + 1;
        let (mut resume, mut purged, mut batches) = (None, 0, 0);
        loop {
            let progress = store.purge_batch(cutoff, resume, 4).unwrap();
            assert!(progress.scanned <= 4);
            purged += progress.purged;
            batches += 1;
            resume = progress.resume_after;
            if resume.is_none() {
                break;
            }
        }
        assert_eq!(purged, closed.len());
        assert!(batches >= closed.len() / 4, "{batches} batches");
        assert!(store.held_bytes() < held);
        for (id, _) in &closed {
            assert!(store.event_detail(id).unwrap().is_none(), "{id} is purged");
            assert!(store.data.get(keys::idem(id)).unwrap().is_none());
        }
        assert_eq!(store.data.scan_prefix([keys::CHUNK]).count(), 0);
        let kept = store.event_detail("s3").unwrap().unwrap();
        assert_eq!(kept.data, open[0].1.as_bytes());
        assert_eq!(event_keys(&store).len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_requeue_rewrites_one_member_and_leaves_the_rest_of_its_pack() {
        let (_dir, store) = crate::store::open_temp();
        let events = round();
        ingest(&store, &events[..10], &[1]).await;
        assert_eq!(event_keys(&store).len(), 1, "one pack");
        let seq = store.event_detail("s4").unwrap().unwrap().seq;

        let ids = store.requeue(seq, &[2]).await.unwrap();
        let requeued = store.event_detail("s4").unwrap().unwrap();
        assert_eq!(requeued.deliveries.len(), 2);
        assert_eq!(requeued.deliveries[1].id, ids[0]);
        assert_eq!(requeued.data, events[4].1.as_bytes());
        for (id, data) in events[..10].iter().filter(|(id, _)| id != "s4") {
            let detail = store.event_detail(id).unwrap().unwrap();
            assert_eq!(
                (detail.data, detail.deliveries.len()),
                (Bytes::from(data.clone()), 1)
            );
        }
        assert_eq!(event_keys(&store).len(), 1, "still one pack");
        let due = store.due_batch(1, u64::MAX, 100, &|_| false).unwrap().ready;
        for due in due {
            assert!(store.load_for_attempt(due).unwrap().is_some());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_posted_without_an_id_is_found_by_the_id_it_was_given_without_a_key() {
        let (_dir, store) = crate::store::open_temp();
        let mut anonymous: Vec<NewEvent> =
            round().into_iter().map(|(_, d)| event("x", d)).collect();
        for e in &mut anonymous {
            e.id = None;
        }
        let accepted = store
            .ingest(anonymous.clone(), vec![vec![1]; anonymous.len()])
            .await
            .unwrap();
        assert_eq!(
            store.data.scan_prefix([keys::IDEM]).count(),
            0,
            "no id keys"
        );
        for (answer, posted) in accepted.iter().zip(&anonymous) {
            assert!(
                answer.id.starts_with("evt_") && answer.id.len() == 30,
                "{}",
                answer.id
            );
            let detail = store.event_detail(&answer.id).unwrap().unwrap();
            assert_eq!((&detail.event.id, &detail.data), (&answer.id, &posted.data));
        }
        let ids: std::collections::HashSet<_> = accepted.iter().map(|a| &a.id).collect();
        assert_eq!(ids.len(), accepted.len(), "every made-up id is new");

        // Given back as a client's own id, a made-up id is a duplicate.
        let again = event(&accepted[3].id, "{}".into());
        let answers = store.ingest(vec![again], vec![vec![1, 2]]).await.unwrap();
        assert!(answers[0].duplicate);
        assert_eq!(answers[0].deliveries, 1);

        // An id of that form that names a stored seq but is not that
        // event's is an id like any other.
        let seq = store.event_detail(&accepted[3].id).unwrap().unwrap().seq;
        // Made as this store makes ids, with another time.
        let forged = keys::made_up_id(seq, 1, store.id_salt);
        assert_eq!(keys::made_up_seq(&forged, store.id_salt), Some(seq));
        assert!(store.event_detail(&forged).unwrap().is_none());
        let answers = store
            .ingest(vec![event(&forged, "{}".into())], vec![vec![1]])
            .await
            .unwrap();
        assert!(!answers[0].duplicate);
        let own = store.event_detail(&forged).unwrap().unwrap();
        assert_ne!(own.seq, seq);
        assert!(store.event_detail("evt_not-a-ulid").unwrap().is_none());
    }

    #[test]
    fn retention_keeps_an_event_whose_delivery_cannot_be_found() {
        let (_dir, store) = crate::store::open_temp();
        let seq = store.next_id().unwrap();
        let lost = Event {
            id: "lost".into(),
            event_type: "a.b".into(),
            tenant: None,
            ordering_key: None,
            received_at: 1,
            data_len: 2,
            fanned_out: 0,
            deliveries: vec![seq + 1],
            subs: Vec::new(),
        };
        let record = codec::encode_event(&lost, Some(b"{}"));
        store
            .data
            .insert(keys::with_u64(keys::EVENT, seq), record)
            .unwrap();
        let progress = store.purge_batch(now_ms(), None, 10).unwrap();
        assert_eq!((progress.scanned, progress.purged), (1, 0));
        assert!(store.event_record(seq).unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pack_whose_first_member_was_purged_still_serves_the_rest() {
        let (_dir, store) = crate::store::open_temp();
        let events = round();
        // One round: s0 with no delivery (closed from the start), then nine
        // with one each; all in one pack under s0's seq.
        let new: Vec<NewEvent> = events[..10]
            .iter()
            .map(|(id, d)| event(id, d.clone()))
            .collect();
        let mut routes = vec![vec![1]; 10];
        routes[0] = Vec::new();
        store.ingest(new, routes).await.unwrap();
        assert_eq!(event_keys(&store).len(), 1);
        let progress = store.purge_batch(now_ms() + 1, None, 100).unwrap();
        assert_eq!(progress.purged, 1);
        assert!(store.event_detail("s0").unwrap().is_none());

        let due = store.due_batch(1, u64::MAX, 100, &|_| false).unwrap().ready;
        assert_eq!(due.len(), 9);
        for (due, (id, data)) in due.iter().zip(&events[1..10]) {
            let loaded = store.load_for_attempt(*due).unwrap().unwrap();
            assert_eq!((&loaded.event.id, &loaded.data[..]), (id, data.as_bytes()));
        }
    }
}
