//! The disk budget (`storage.max_disk`). sled reuses the space that purged
//! records leave inside its data file but almost never gives it back to the
//! file system: once the file has grown past the budget, its size stays
//! there however much retention purges (measured: 3.4 MB on disk for a
//! 256 KiB budget with nothing left to deliver). A budget on file size alone
//! would refuse ingest forever. So the store also counts the bytes it holds,
//! event by event, and the budget is judged on both:
//!
//! - below the budget on disk, ingest is refused only if the bytes held reach it;
//! - at or over the budget on disk, ingest is refused until the bytes held
//!   fall below a quarter of it; sled's file then has room for them without
//!   growing (measured in steady state: a base of a few 512 KiB segments plus
//!   about 1.5× the bytes held; see ARCHITECTURE.md).

use super::{codec, Store};
use crate::error::Result;
use crate::model::Event;
use std::sync::atomic::Ordering;

/// About what sled stores per event besides its data (header, id twice,
/// index keys), and per delivery (record, due key, a few attempts).
const PER_EVENT: u64 = 256;
const PER_DELIVERY: u64 = 256;

/// Past the budget on disk, ingest resumes once the bytes held are below this share of it.
const RESUME_DIVISOR: u64 = 4;

/// The bytes one event counts for, as long as it is stored.
pub(super) fn footprint(event: &Event) -> u64 {
    u64::from(event.data_len) + PER_EVENT + PER_DELIVERY * event.deliveries.len() as u64
}

impl Store {
    /// The bytes the store holds, as [`footprint`] counts them (not sled's file size).
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Why ingest must refuse events under a budget of `max_disk` bytes, if it must.
    pub fn over_budget(&self, max_disk: u64) -> Option<String> {
        let (size, held) = (self.size_on_disk(), self.held_bytes());
        let over = held >= max_disk || (size >= max_disk && held >= max_disk / RESUME_DIVISOR);
        over.then(|| {
            format!(
                "the store is at its disk budget ({size} bytes on disk, {held} held, of \
                 {max_disk}, storage.max_disk); ingest resumes as retention frees space"
            )
        })
    }

    pub(super) fn add_held(&self, bytes: u64) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn remove_held(&self, bytes: u64) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }

    /// Counts what the stored events hold (at open: a scan of event headers only).
    pub(super) fn count_held(&self) -> Result<()> {
        let mut held = 0;
        for item in self.all_events(false) {
            let (_, v) = item?;
            held += footprint(&codec::decode_event(&v)?.0);
        }
        self.held.store(held, Ordering::Relaxed);
        Ok(())
    }
}
