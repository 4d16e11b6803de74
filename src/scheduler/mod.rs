//! The scheduler: per-subscription lanes read the due index in bounded
//! batches and hand due deliveries to attempt tasks.
//!
//! All per-subscription delivery state (in-flight set, cap, token bucket,
//! AIMD concurrency, circuit breaker) lives in [`Lane`], and the uplink's in
//! [`Uplink`], both owned by the one scheduler task. Per-key ordering needs
//! nothing here: only the head of an ordered lane is in the due index. The
//! task sleeps until the earliest lane is due, a completion frees capacity,
//! or ingest wakes it for subscriptions with new work.

mod events;
mod lane;
mod uplink;

pub use lane::{Aimd, Breaker, Lane, TokenBucket};
pub use uplink::{Uplink, UplinkSettings};

use crate::delivery::{attempt, Class, DeliveryContext, Summary};
use crate::model::{now_ms, Millis, Subscription};
use events::OperationalEvent;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
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

    /// Re-read every subscription (a config reload).
    pub fn all(&self) {
        self.dirty.lock().unwrap().all = true;
        self.notify.notify_one();
    }

    fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap())
    }
}

/// Delivery-control settings (from `[delivery]`), reloadable.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub breaker_failures: u32,
    pub breaker_probe: Duration,
    pub breaker_probe_max: Duration,
    pub disable_after: Duration,
    pub uplink: UplinkSettings,
}

/// What the admin API shows of one lane.
#[derive(Debug, Clone, Default)]
pub struct LaneView {
    pub in_flight: u64,
    pub effective_max_in_flight: u32,
    pub concurrency_reason: Option<String>,
    /// `closed`, `open` or `probing`.
    pub breaker: &'static str,
    pub breaker_since: Option<Millis>,
    pub consecutive_failures: u32,
}

/// Live state the admin API and metrics read.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub in_flight: std::sync::atomic::AtomicU64,
    pub lanes: Mutex<HashMap<u64, LaneView>>,
    /// Since when the uplink is down, if it is.
    pub uplink_down_since: Mutex<Option<Millis>>,
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
    let mut scheduler = Scheduler {
        ctx,
        wakeup,
        stats,
        lanes: HashMap::new(),
        uplink: Uplink::default(),
        drain: None,
        attempts: JoinSet::new(),
        touched: HashSet::new(),
        waiting_for_slot: Vec::new(),
        pass: 0,
    };
    let now = now_ms();
    for key in scheduler.ctx.registry.snapshot().keys() {
        scheduler.lanes.entry(*key).or_default().next_check = Some(now);
    }
    tokio::pin!(shutdown);
    loop {
        scheduler.dispatch();
        scheduler.publish_views();
        let next_wake = scheduler.lanes.values().filter_map(|l| l.next_check).min();
        let sleep = match next_wake {
            Some(t) => Duration::from_millis(t.saturating_sub(now_ms())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = scheduler.wakeup.notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            Some(done) = scheduler.attempts.join_next(), if !scheduler.attempts.is_empty() => {
                let mut done = Some(done);
                // Take every completion that is ready in one pass.
                while let Some(result) = done.take().or_else(|| scheduler.attempts.try_join_next()) {
                    if let Ok((summary, _free)) = result {
                        scheduler.completed(summary);
                    }
                }
            }
        }
    }
    scheduler.drain_on_shutdown(grace).await;
}

struct Scheduler {
    ctx: Arc<DeliveryContext>,
    wakeup: Arc<Wakeup>,
    stats: Arc<SchedulerStats>,
    lanes: HashMap<u64, Lane>,
    uplink: Uplink,
    /// The all-subscriptions rate limit while the backlog drains after an outage.
    drain: Option<TokenBucket>,
    attempts: JoinSet<(Summary, bool)>,
    /// Lanes whose view changed since the last publish.
    touched: HashSet<u64>,
    /// Lanes held back by `delivery.max_in_flight_total`.
    waiting_for_slot: Vec<u64>,
    /// Dispatch passes so far (rotates where each pass starts).
    pass: usize,
}

impl Scheduler {
    /// Starts every attempt that is due and allowed.
    fn dispatch(&mut self) {
        let dirty = self.wakeup.take();
        let now = now_ms();
        let subs = self.ctx.registry.snapshot();
        if dirty.all {
            for key in subs.keys() {
                self.lanes.entry(*key).or_default().next_check = Some(now);
            }
        }
        for key in dirty.subs {
            self.lanes.entry(key).or_default().next_check = Some(now);
        }
        self.lanes
            .retain(|key, lane| subs.contains_key(key) || !lane.in_flight.is_empty());
        let settings = self.ctx.settings();
        let draining = self.uplink.draining(now);
        if !draining {
            self.drain = None;
        }
        let mut keys: Vec<u64> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.next_check.is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        // Start at a different lane each pass, so a full house is shared fairly.
        keys.sort_unstable();
        self.pass = self.pass.wrapping_add(1);
        if !keys.is_empty() {
            let start = self.pass % keys.len();
            keys.rotate_left(start);
        }
        let total_cap = settings.max_in_flight_total as usize;
        for key in keys {
            let Some(sub) = subs.get(&key) else { continue };
            let lane = self.lanes.get_mut(&key).expect("listed above");
            lane.next_check = None;
            if !sub.is_active() {
                continue;
            }
            sync_bucket(lane, sub, now);
            let cap = sub.max_in_flight.unwrap_or(settings.max_in_flight) as usize;
            // Decide how many to start, and whether they are free probes.
            let (mut allowed, free) = if let Some(down) = &mut self.uplink.down {
                if down.probe.is_some() || down.next_probe > now {
                    lane.next_check = Some(down.next_probe.max(now + 1));
                    continue;
                }
                (1, true)
            } else if let Some(open) = &mut lane.breaker.open {
                if open.probe.is_some() || !lane.in_flight.is_empty() {
                    continue;
                }
                if open.next_probe > now {
                    lane.next_check = Some(open.next_probe);
                    continue;
                }
                (1, true)
            } else {
                let limit = lane.concurrency.effective(cap);
                (limit.saturating_sub(lane.in_flight.len()), false)
            };
            if allowed == 0 {
                // A completion re-arms the lane.
                continue;
            }
            let total_free = total_cap.saturating_sub(self.attempts.len());
            if total_free == 0 {
                // Any completion frees a slot and re-arms the waiting lanes.
                self.waiting_for_slot.push(key);
                continue;
            }
            allowed = allowed.min(total_free);
            if let Some(bucket) = &mut lane.bucket {
                allowed = allowed.min(bucket.available(now));
                if allowed == 0 {
                    lane.next_check = Some(bucket.next_token_at(now));
                    continue;
                }
            }
            if draining {
                let rate = self.ctx.control().uplink.drain_rate;
                let drain = self.drain.get_or_insert_with(|| {
                    TokenBucket::new(
                        crate::model::RateLimit {
                            count: rate,
                            per_secs: 1,
                        },
                        now,
                    )
                });
                allowed = allowed.min(drain.available(now));
                if allowed == 0 {
                    lane.next_check = Some(drain.next_token_at(now));
                    continue;
                }
            }
            let in_flight = &lane.in_flight;
            let scan = match self
                .ctx
                .store
                .due_batch(key, now, allowed, &|id| in_flight.contains_key(&id))
            {
                Ok(scan) => scan,
                Err(e) => {
                    tracing::error!(error = %e, subscription = %sub.id, "reading the due index failed");
                    lane.next_check = Some(now + 1000);
                    continue;
                }
            };
            lane.next_check = scan.next_due;
            if scan.ready.is_empty()
                && scan.next_due.is_none()
                && lane.in_flight.is_empty()
                && self.ctx.store.open_count(key) > 0
            {
                // Open deliveries but nothing due or on the wire: an ordered
                // lane whose head has no due key would wait forever.
                match self.ctx.store.repair_lanes(key) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(subscription = %sub.id, heads = n, "ordered lanes had no head in the due index; put back");
                        lane.next_check = Some(now);
                    }
                    Err(e) => tracing::error!(error = %e, "checking ordered lanes failed"),
                }
            }
            let started = scan.ready.len();
            if let Some(bucket) = &mut lane.bucket {
                bucket.take(started);
            }
            if let Some(drain) = &mut self.drain {
                drain.take(started);
            }
            for due in scan.ready {
                let delivery_id = due.id;
                if free {
                    match (&mut self.uplink.down, &mut lane.breaker.open) {
                        (Some(down), _) => down.probe = Some((key, delivery_id)),
                        (None, Some(open)) => open.probe = Some(delivery_id),
                        (None, None) => {}
                    }
                }
                lane.in_flight.insert(delivery_id, lane.dispatched);
                lane.dispatched += 1;
                self.stats.in_flight.fetch_add(1, Relaxed);
                let (ctx, sub) = (self.ctx.clone(), sub.clone());
                self.attempts.spawn(async move {
                    let summary = match attempt(&ctx, &sub, due, free).await {
                        Ok(summary) => summary,
                        Err(e) => {
                            tracing::error!(error = %e, subscription = %sub.id, "attempt could not be recorded");
                            Summary {
                                sub_key: sub.key,
                                delivery_id,
                                class: Class::Skipped,
                                host: String::new(),
                                dead: None,
                            }
                        }
                    };
                    (summary, free)
                });
            }
            if started > 0 {
                self.touched.insert(key);
            }
        }
    }

    /// Folds one attempt's outcome into its lane, the breaker and the uplink.
    fn completed(&mut self, summary: Summary) {
        self.stats.in_flight.fetch_sub(1, Relaxed);
        let now = now_ms();
        let control = self.ctx.control();
        let settings = self.ctx.settings();
        let sub = self.ctx.registry.get(summary.sub_key);
        let Some(lane) = self.lanes.get_mut(&summary.sub_key) else {
            return;
        };
        let dispatch = lane.in_flight.remove(&summary.delivery_id).unwrap_or(0);
        lane.next_check = Some(now);
        for key in self.waiting_for_slot.drain(..) {
            if let Some(waiting) = self.lanes.get_mut(&key) {
                waiting.next_check = Some(now);
            }
        }
        let lane = self.lanes.get_mut(&summary.sub_key).expect("present above");
        self.touched.insert(summary.sub_key);
        let Some(sub) = sub else { return };
        let cap = sub.max_in_flight.unwrap_or(settings.max_in_flight) as usize;
        let was_uplink_probe = self
            .uplink
            .down
            .as_ref()
            .is_some_and(|d| d.probe == Some((summary.sub_key, summary.delivery_id)));
        let was_breaker_probe = lane
            .breaker
            .open
            .as_ref()
            .is_some_and(|o| o.probe == Some(summary.delivery_id));

        match summary.class {
            Class::Skipped => {
                if was_uplink_probe {
                    if let Some(d) = &mut self.uplink.down {
                        d.probe = None;
                    }
                }
                if was_breaker_probe {
                    if let Some(o) = &mut lane.breaker.open {
                        o.probe = None;
                    }
                }
                return;
            }
            Class::Unreachable => {
                if self.uplink.unreachable(&summary.host, now, &control.uplink) {
                    tracing::warn!(
                        hosts = control.uplink.hosts,
                        "uplink down: connection failures to several hosts; holding deliveries without spending retries"
                    );
                    *self.stats.uplink_down_since.lock().unwrap() = Some(now);
                    // Every lane waits for the probe now.
                    for lane in self.lanes.values_mut() {
                        lane.next_check = Some(now);
                    }
                } else if was_uplink_probe {
                    self.uplink.probe_failed(now, &control.uplink);
                }
            }
            _ => {
                if self.uplink.reached(now, &control.uplink) {
                    tracing::info!("uplink back: draining the backlog at a bounded rate");
                    *self.stats.uplink_down_since.lock().unwrap() = None;
                    for lane in self.lanes.values_mut() {
                        lane.next_check = Some(now);
                    }
                }
            }
        }
        let lane = self.lanes.get_mut(&summary.sub_key).expect("present above");
        let uplink_down = self.uplink.down.is_some();
        match summary.class {
            Class::Delivered => {
                lane.concurrency.succeeded(cap);
                if lane.breaker.succeeded() {
                    tracing::info!(subscription = %sub.id, "breaker closed: the subscriber answers again");
                    events::emit(
                        &self.ctx,
                        &self.wakeup,
                        OperationalEvent::Recovered { sub: &sub },
                    );
                }
                if sub.failing_since.is_some() {
                    set_failing_since(&self.ctx, sub.key, None);
                }
            }
            Class::Skipped => {}
            _ => {
                if summary.class == Class::Congested {
                    let what = "a congestion signal (429/502/503/504 or timeout)";
                    lane.concurrency
                        .congested(cap, dispatch, lane.dispatched, what, now);
                }
                // While the uplink is down, failures say nothing about the subscriber.
                let counts = !(uplink_down && summary.class == Class::Unreachable);
                if counts {
                    if was_breaker_probe {
                        lane.breaker.probe_failed(control.breaker_probe_max, now);
                    }
                    if lane
                        .breaker
                        .failed(control.breaker_failures, control.breaker_probe, now)
                    {
                        tracing::warn!(
                            subscription = %sub.id,
                            failures = lane.breaker.consecutive_failures,
                            "breaker opened: holding deliveries, probing at growing intervals"
                        );
                        events::emit(
                            &self.ctx,
                            &self.wakeup,
                            OperationalEvent::BreakerOpened {
                                sub: &sub,
                                failures: lane.breaker.consecutive_failures,
                            },
                        );
                    }
                    self.check_disable(&sub, now, &control);
                } else if was_breaker_probe {
                    if let Some(o) = &mut lane.breaker.open {
                        o.probe = None;
                    }
                }
                if summary.class == Class::Gone {
                    events::emit(
                        &self.ctx,
                        &self.wakeup,
                        OperationalEvent::Disabled {
                            sub: &sub,
                            reason: "the endpoint answered 410 Gone",
                        },
                    );
                }
            }
        }
        if let Some((event_id, event_type)) = &summary.dead {
            if !event_type.starts_with(crate::model::RESERVED_TYPE_PREFIX) {
                events::emit(
                    &self.ctx,
                    &self.wakeup,
                    OperationalEvent::DeliveryDead {
                        sub: &sub,
                        delivery_id: summary.delivery_id,
                        event_id,
                        event_type,
                    },
                );
            }
        }
    }

    /// Auto-disable: every attempt failed for `disable_after`.
    fn check_disable(&self, sub: &Arc<Subscription>, now: Millis, control: &ControlSettings) {
        match sub.failing_since {
            None => set_failing_since(&self.ctx, sub.key, Some(now)),
            Some(since)
                if now.saturating_sub(since) >= control.disable_after.as_millis() as u64 =>
            {
                let (ctx, wakeup, sub) = (self.ctx.clone(), self.wakeup.clone(), sub.clone());
                let days = control.disable_after;
                tokio::spawn(async move {
                    let reason = format!(
                        "every attempt failed for {} (delivery.disable_after)",
                        humantime::format_duration(days)
                    );
                    match ctx
                        .registry
                        .disable(&ctx.store, sub.key, reason.clone(), now)
                        .await
                    {
                        Ok(Some(_)) => {
                            tracing::warn!(subscription = %sub.id, %reason, "subscription disabled");
                            events::emit(
                                &ctx,
                                &wakeup,
                                OperationalEvent::Disabled {
                                    sub: &sub,
                                    reason: &reason,
                                },
                            );
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "disabling a subscription failed"),
                    }
                });
            }
            Some(_) => {}
        }
    }

    /// Copies the state of changed lanes where the admin API reads it.
    fn publish_views(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        let settings = self.ctx.settings();
        let subs = self.ctx.registry.snapshot();
        let mut views = self.stats.lanes.lock().unwrap();
        for key in self.touched.drain() {
            let (Some(lane), Some(sub)) = (self.lanes.get(&key), subs.get(&key)) else {
                views.remove(&key);
                continue;
            };
            let cap = sub.max_in_flight.unwrap_or(settings.max_in_flight) as usize;
            views.insert(
                key,
                LaneView {
                    in_flight: lane.in_flight.len() as u64,
                    effective_max_in_flight: lane.concurrency.effective(cap) as u32,
                    concurrency_reason: lane.concurrency.reason.clone(),
                    breaker: lane.breaker.state_name(),
                    breaker_since: lane.breaker.open.as_ref().map(|o| o.since),
                    consecutive_failures: lane.breaker.consecutive_failures,
                },
            );
        }
    }

    async fn drain_on_shutdown(mut self, grace: Duration) {
        let waiting = self.attempts.len();
        if waiting == 0 {
            return;
        }
        tracing::info!(
            in_flight = waiting,
            grace_ms = grace.as_millis() as u64,
            "waiting for attempts on the wire"
        );
        let drained = tokio::time::timeout(grace, async {
            while self.attempts.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                cut_off = self.attempts.len(),
                "grace period over: attempts still on the wire are cut off and will be retried after restart"
            );
            self.attempts.abort_all();
            while self.attempts.join_next().await.is_some() {}
        }
    }
}

/// Keeps a lane's token bucket in step with its subscription's rate limit.
fn sync_bucket(lane: &mut Lane, sub: &Subscription, now: Millis) {
    match (sub.rate_limit, &lane.bucket) {
        (None, _) => lane.bucket = None,
        (Some(limit), Some(b)) if b.limit == limit => {}
        (Some(limit), _) => lane.bucket = Some(TokenBucket::new(limit, now)),
    }
}

/// Records when a subscription started failing (or that it stopped), off the hot path.
fn set_failing_since(ctx: &Arc<DeliveryContext>, key: u64, since: Option<Millis>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let result = ctx
            .registry
            .update(&ctx.store, key, |sub| {
                let changed = sub.failing_since.is_some() != since.is_some();
                if changed {
                    sub.failing_since = since;
                }
                Ok::<_, std::convert::Infallible>(changed)
            })
            .await;
        if let Err(crate::registry::UpdateError::Store(e)) = result {
            tracing::error!(error = %e, "recording a subscription's failure time failed");
        }
    });
}
