//! A census of the stored deliveries for `/metrics`: how many in each
//! status, how many are due, and since when the oldest open one waits.

use super::Store;
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
    /// Reads every delivery once (memory stays constant; time grows
    /// with the store, so callers throttle it).
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
        for d in self.all_deliveries(false) {
            let d = d?;
            *census.by_status.entry(d.status.name()).or_insert(0) += 1;
            if d.status.is_open() {
                if d.next_at <= now {
                    census.due += 1;
                }
                census.oldest_open_at = Some(
                    census
                        .oldest_open_at
                        .map_or(d.created_at, |t| t.min(d.created_at)),
                );
            }
        }
        Ok(census)
    }
}
