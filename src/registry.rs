//! The subscriptions in memory: read by fan-out and the scheduler on every
//! event, changed only by the admin API (and by the delivery path on 410).

use crate::error::Result;
use crate::matching::subscription_matches;
use crate::model::{SubState, Subscription};
use crate::store::{NewEvent, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Every subscription, by internal key, as one immutable snapshot.
#[derive(Default)]
pub struct Registry {
    subs: RwLock<Arc<HashMap<u64, Arc<Subscription>>>>,
}

impl Registry {
    /// Loads every subscription from the store.
    pub fn load(store: &Store) -> Result<Registry> {
        let subs = store
            .subscriptions()?
            .into_iter()
            .map(|s| (s.key, Arc::new(s)))
            .collect();
        Ok(Registry {
            subs: RwLock::new(Arc::new(subs)),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<HashMap<u64, Arc<Subscription>>> {
        self.subs.read().unwrap().clone()
    }

    /// One subscription by key.
    pub fn get(&self, key: u64) -> Option<Arc<Subscription>> {
        self.subs.read().unwrap().get(&key).cloned()
    }

    /// One subscription by its `sub_...` id.
    pub fn find(&self, id: &str) -> Option<Arc<Subscription>> {
        self.subs
            .read()
            .unwrap()
            .values()
            .find(|s| s.id == id)
            .cloned()
    }

    /// The keys of the subscriptions an event fans out to.
    pub fn route(&self, event: &NewEvent) -> Vec<u64> {
        let subs = self.snapshot();
        let mut keys: Vec<u64> = subs
            .values()
            .filter(|s| subscription_matches(s, &event.event_type, event.tenant.as_deref()))
            .map(|s| s.key)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Stores a new or changed subscription durably, then publishes it.
    pub async fn put(&self, store: &Store, sub: Subscription) -> Result<Arc<Subscription>> {
        store.put_subscription(&sub).await?;
        let sub = Arc::new(sub);
        self.publish(|m| {
            m.insert(sub.key, sub.clone());
        });
        Ok(sub)
    }

    /// Removes a subscription from the snapshot (the store is done by the caller).
    pub fn forget(&self, key: u64) {
        self.publish(|m| {
            m.remove(&key);
        });
    }

    /// Disables a subscription (410 Gone), durably; `None` if it is gone or already not active.
    pub async fn disable(
        &self,
        store: &Store,
        key: u64,
        reason: String,
        now: u64,
    ) -> Result<Option<Arc<Subscription>>> {
        let Some(current) = self.get(key) else {
            return Ok(None);
        };
        if !current.is_active() {
            return Ok(None);
        }
        let mut sub = (*current).clone();
        sub.state = SubState::Disabled { reason, since: now };
        self.put(store, sub).await.map(Some)
    }

    fn publish(&self, change: impl FnOnce(&mut HashMap<u64, Arc<Subscription>>)) {
        let mut guard = self.subs.write().unwrap();
        let mut next = (**guard).clone();
        change(&mut next);
        *guard = Arc::new(next);
    }
}
