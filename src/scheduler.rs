//! The scheduler: per-subscription lanes read the due index in bounded
//! batches and hand due deliveries to attempt tasks.
//!
//! All per-subscription delivery state (in-flight set and cap; later the rate
//! limiter, breaker and ordered lanes) lives in [`Lane`], owned by the one
//! scheduler task. It sleeps until the earliest lane is due, a completion
//! frees capacity, or ingest wakes it for subscriptions with new work.

use crate::delivery::{attempt, DeliveryContext, Finished};
use crate::model::{now_ms, Millis};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// How ingest and admin tell the scheduler there is new work.
#[derive(Default)]
pub struct Wakeup {
    dirty: Mutex<Dirty>,
    notify: Notify,
}

#[derive(Default)]
struct Dirty {
    subs: HashSet<u64>,
    all: bool,
}

impl Wakeup {
    /// These subscriptions have new or changed work.
    pub fn subs(&self, keys: &[u64]) {
        if keys.is_empty() {
            return;
        }
        self.dirty.lock().unwrap().subs.extend(keys);
        self.notify.notify_one();
    }

    /// Re-read every subscription (a config reload, a resume).
    pub fn all(&self) {
        self.dirty.lock().unwrap().all = true;
        self.notify.notify_one();
    }

    fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap())
    }
}

/// One subscription's delivery state.
#[derive(Debug, Default)]
struct Lane {
    in_flight: HashSet<u64>,
    /// When to look at this lane's due index again; `None`: only when woken.
    next_check: Option<Millis>,
}

/// Live counts the status endpoint shows.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub in_flight: std::sync::atomic::AtomicU64,
}

/// Runs until `shutdown` resolves, then lets attempts on the wire finish for
/// up to `grace`; those cut off stay due and are retried after a restart.
pub async fn run(
    ctx: Arc<DeliveryContext>,
    wakeup: Arc<Wakeup>,
    stats: Arc<SchedulerStats>,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut lanes: HashMap<u64, Lane> = HashMap::new();
    let mut attempts: JoinSet<(u64, u64, Finished)> = JoinSet::new();
    let now = now_ms();
    for key in ctx.registry.snapshot().keys() {
        lanes.entry(*key).or_default().next_check = Some(now);
    }
    tokio::pin!(shutdown);
    loop {
        let dirty = wakeup.take();
        let now = now_ms();
        if dirty.all {
            for key in ctx.registry.snapshot().keys() {
                lanes.entry(*key).or_default().next_check = Some(now);
            }
        }
        for key in dirty.subs {
            lanes.entry(key).or_default().next_check = Some(now);
        }
        let subs = ctx.registry.snapshot();
        lanes.retain(|key, lane| subs.contains_key(key) || !lane.in_flight.is_empty());
        let settings = ctx.settings();
        for (key, lane) in lanes.iter_mut() {
            if lane.next_check.is_none_or(|t| t > now) {
                continue;
            }
            lane.next_check = None;
            let Some(sub) = subs.get(key) else { continue };
            if !sub.is_active() {
                continue;
            }
            let cap = sub.max_in_flight.unwrap_or(settings.max_in_flight) as usize;
            let free = cap.saturating_sub(lane.in_flight.len());
            if free == 0 {
                // A completion re-arms the lane.
                continue;
            }
            let scan = match ctx
                .store
                .due_batch(*key, now, free, &|id| lane.in_flight.contains(&id))
            {
                Ok(scan) => scan,
                Err(e) => {
                    tracing::error!(error = %e, subscription = %sub.id, "reading the due index failed");
                    lane.next_check = Some(now + 1000);
                    continue;
                }
            };
            lane.next_check = scan.next_due;
            for delivery_id in scan.ready {
                lane.in_flight.insert(delivery_id);
                stats
                    .in_flight
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (ctx, sub) = (ctx.clone(), sub.clone());
                attempts.spawn(async move {
                    let finished = match attempt(&ctx, &sub, delivery_id).await {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::error!(error = %e, subscription = %sub.id, "attempt could not be recorded");
                            Finished::Retrying
                        }
                    };
                    (sub.key, delivery_id, finished)
                });
            }
        }

        let next_wake = lanes.values().filter_map(|l| l.next_check).min();
        let sleep = match next_wake {
            Some(t) => Duration::from_millis(t.saturating_sub(now_ms())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = wakeup.notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                let mut done = Some(done);
                // Take every completion that is ready in one pass.
                while let Some(result) = done.take().or_else(|| attempts.try_join_next()) {
                    let Ok((sub_key, delivery_id, _finished)) = result else { continue };
                    stats.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(lane) = lanes.get_mut(&sub_key) {
                        lane.in_flight.remove(&delivery_id);
                        lane.next_check = Some(now_ms());
                    }
                }
            }
        }
    }

    let waiting = attempts.len();
    if waiting > 0 {
        tracing::info!(
            in_flight = waiting,
            grace_ms = grace.as_millis() as u64,
            "waiting for attempts on the wire"
        );
        let drained = tokio::time::timeout(grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                cut_off = attempts.len(),
                "grace period over: attempts still on the wire are cut off and will be retried after restart"
            );
            attempts.abort_all();
            while attempts.join_next().await.is_some() {}
        }
    }
}
