//! The subscriptions in memory: read by fan-out and the scheduler on every
//! event, changed only by the admin API (and by the delivery path on 410).

use crate::error::Result;
use crate::filter::{parse_all, Filter};
use crate::matching::subscription_matches;
use crate::model::{SubState, Subscription};
use crate::store::{NewEvent, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Every subscription, by internal key, as one immutable snapshot.
#[derive(Default)]
pub struct Registry {
    subs: RwLock<Arc<HashMap<u64, Arc<Subscription>>>>,
    /// Parsed filters of the subscriptions that have any.
    filters: RwLock<Arc<HashMap<u64, Arc<Vec<Filter>>>>>,
    /// Serialises read-modify-write of subscriptions (admin and delivery path).
    writes: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Loads every subscription from the store.
    pub fn load(store: &Store) -> Result<Registry> {
        let registry = Registry::default();
        for sub in store.subscriptions()? {
            registry.publish(Arc::new(sub));
        }
        Ok(registry)
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

    /// The keys of the subscriptions an event fans out to. The event is
    /// parsed (once) only when a matching subscription has filters.
    pub fn route(&self, event: &NewEvent) -> Vec<u64> {
        let subs = self.snapshot();
        let filters = self.filters.read().unwrap().clone();
        let mut parsed: Option<Option<serde_json::Value>> = None;
        let mut keys: Vec<u64> = subs
            .values()
            .filter(|s| subscription_matches(s, &event.event_type, event.tenant.as_deref()))
            .filter(|s| match filters.get(&s.key) {
                None => true,
                Some(conditions) => {
                    let as_posted = parsed.get_or_insert_with(|| as_posted(event));
                    as_posted
                        .as_ref()
                        .is_some_and(|e| conditions.iter().all(|f| f.matches(e)))
                }
            })
            .map(|s| s.key)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Stores a new subscription durably, then publishes it.
    pub async fn insert(&self, store: &Store, sub: Subscription) -> Result<Arc<Subscription>> {
        let _w = self.writes.lock().await;
        store.put_subscription(&sub).await?;
        let sub = Arc::new(sub);
        self.publish(sub.clone());
        Ok(sub)
    }

    /// Changes a subscription durably: `change` sees the current record and
    /// returns whether to write. `None` when there is no such subscription.
    pub async fn update<E>(
        &self,
        store: &Store,
        key: u64,
        change: impl FnOnce(&mut Subscription) -> std::result::Result<bool, E>,
    ) -> std::result::Result<Option<Arc<Subscription>>, UpdateError<E>> {
        let _w = self.writes.lock().await;
        let Some(current) = self.get(key) else {
            return Ok(None);
        };
        let mut sub = (*current).clone();
        if !change(&mut sub).map_err(UpdateError::Refused)? {
            return Ok(Some(current));
        }
        store
            .put_subscription(&sub)
            .await
            .map_err(UpdateError::Store)?;
        let sub = Arc::new(sub);
        self.publish(sub.clone());
        Ok(Some(sub))
    }

    /// Removes a subscription from the snapshot (the store is done by the caller).
    pub async fn forget(&self, key: u64) {
        let _w = self.writes.lock().await;
        let mut subs = self.subs.write().unwrap();
        let mut next = (**subs).clone();
        next.remove(&key);
        *subs = Arc::new(next);
        let mut filters = self.filters.write().unwrap();
        let mut next = (**filters).clone();
        next.remove(&key);
        *filters = Arc::new(next);
    }

    /// Disables a subscription (410 Gone), durably; `None` if it is gone or already not active.
    pub async fn disable(
        &self,
        store: &Store,
        key: u64,
        reason: String,
        now: u64,
    ) -> Result<Option<Arc<Subscription>>> {
        let mut changed = false;
        let result = self
            .update(store, key, |sub| {
                changed = sub.is_active();
                if changed {
                    sub.state = SubState::Disabled { reason, since: now };
                }
                Ok::<_, std::convert::Infallible>(changed)
            })
            .await;
        match result {
            Ok(sub) => Ok(sub.filter(|_| changed)),
            Err(UpdateError::Store(e)) => Err(e),
            Err(UpdateError::Refused(never)) => match never {},
        }
    }

    fn publish(&self, sub: Arc<Subscription>) {
        // Filters were validated when the subscription was stored.
        let parsed = parse_all(&sub.filters).unwrap_or_default();
        {
            let mut filters = self.filters.write().unwrap();
            let mut next = (**filters).clone();
            if parsed.is_empty() {
                next.remove(&sub.key);
            } else {
                next.insert(sub.key, Arc::new(parsed));
            }
            *filters = Arc::new(next);
        }
        let mut subs = self.subs.write().unwrap();
        let mut next = (**subs).clone();
        next.insert(sub.key, sub);
        *subs = Arc::new(next);
    }
}

/// Why `Registry::update` did not write.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// The change refused itself.
    Refused(E),
    Store(crate::error::Error),
}

/// The event as posted (`type`, `data`, `id`, `tenant`, `ordering_key`), for filters.
fn as_posted(event: &NewEvent) -> Option<serde_json::Value> {
    let data: serde_json::Value = serde_json::from_slice(&event.data).ok()?;
    let mut object = serde_json::Map::new();
    object.insert("type".into(), event.event_type.clone().into());
    object.insert("data".into(), data);
    for (name, value) in [
        ("id", &event.id),
        ("tenant", &event.tenant),
        ("ordering_key", &event.ordering_key),
    ] {
        if let Some(v) = value {
            object.insert(name.into(), v.clone().into());
        }
    }
    Some(serde_json::Value::Object(object))
}
