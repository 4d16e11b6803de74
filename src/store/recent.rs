//! The event keys attempts read lately. The deliveries of one pack (a
//! round's events, a fan-out's subscriptions) are attempted close together;
//! kept here, the pack is read from sled once rather than once for each.
//!
//! Rounds only add event keys; every other write to the store moves its
//! change count (`Store::changes`), and a count other than the one a value
//! was read under empties the cache. A value is kept only if it was read
//! after its reader saw the count that is current when it is kept, and a
//! reader trusts what it got only if the count was even (no write landing)
//! before its read and the same after (see `Store::load_for_attempt`).

use sled::IVec;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Values kept at most: with packs of at most 4 KiB, 256 KiB.
const HELD: usize = 64;

/// Larger values (an event with its data inline) are not kept.
const LARGEST: usize = super::events::PACK_MAX;

#[derive(Default)]
pub(super) struct RecentEvents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The change count every kept value was read under.
    changes: u64,
    values: HashMap<u64, IVec>,
    /// Keys, oldest kept first.
    order: VecDeque<u64>,
}

impl Inner {
    /// Moves on to a newer change count, forgetting what was read before it.
    fn catch_up(&mut self, changes: u64) {
        if changes > self.changes {
            self.changes = changes;
            self.values.clear();
            self.order.clear();
        }
    }
}

impl RecentEvents {
    /// The value under event key `key`, if one read at change count
    /// `changes` is kept.
    pub fn get(&self, key: u64, changes: u64) -> Option<IVec> {
        let mut inner = self.inner.lock().unwrap();
        inner.catch_up(changes);
        if inner.changes != changes {
            return None;
        }
        inner.values.get(&key).cloned()
    }

    /// Keeps `value`, read from event key `key` after the change count
    /// was `changes`.
    pub fn put(&self, key: u64, value: &IVec, changes: u64) {
        if value.len() > LARGEST {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.catch_up(changes);
        if inner.changes != changes {
            return;
        }
        if inner.values.insert(key, value.clone()).is_none() {
            inner.order.push_back(key);
            if inner.order.len() > HELD {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.values.remove(&oldest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_served_only_under_the_change_count_it_was_read_at() {
        let recent = RecentEvents::default();
        let v = IVec::from(&b"a pack of events"[..]);
        recent.put(7, &v, 0);
        assert_eq!(recent.get(7, 0), Some(v.clone()));
        assert_eq!(recent.get(8, 0), None);
        // A change: what was read before it is gone.
        assert_eq!(recent.get(7, 1), None);
        // A reader that saw the count before the change neither reads nor keeps.
        recent.put(7, &v, 0);
        assert_eq!(recent.get(7, 0), None);
        assert_eq!(recent.get(7, 1), None);
        recent.put(7, &v, 1);
        assert_eq!(recent.get(7, 1), Some(v));
    }

    #[test]
    fn it_keeps_the_newest_values_and_no_large_ones() {
        let recent = RecentEvents::default();
        for key in 0..(HELD as u64 + 10) {
            recent.put(key, &IVec::from(&key.to_be_bytes()[..]), 3);
        }
        assert_eq!(recent.get(0, 3), None);
        assert_eq!(recent.get(9, 3), None);
        assert!(recent.get(10, 3).is_some());
        assert!(recent.get(HELD as u64 + 9, 3).is_some());
        recent.put(1000, &IVec::from(vec![0u8; LARGEST + 1]), 3);
        assert_eq!(recent.get(1000, 3), None);
    }
}
