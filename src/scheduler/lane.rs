//! One subscription's delivery state: in-flight set, token bucket, adaptive
//! concurrency (AIMD) and circuit breaker. Owned by the scheduler task only.

use crate::model::{Millis, RateLimit};
use std::collections::HashMap;
use std::time::Duration;

/// A subscription's lane.
#[derive(Debug, Default)]
pub struct Lane {
    /// Attempts on the wire: delivery id → dispatch number.
    pub in_flight: HashMap<u64, u64>,
    /// Numbers attempts as they are dispatched (for AIMD's once-per-window rule).
    pub dispatched: u64,
    /// When to look at this lane's due index again; `None`: only when woken.
    pub next_check: Option<Millis>,
    pub bucket: Option<TokenBucket>,
    pub concurrency: Aimd,
    pub breaker: Breaker,
}

/// A token bucket: `count` tokens per `per_secs`, holding at most `count`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    pub limit: RateLimit,
    tokens: f64,
    updated: Millis,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Millis) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: limit.count as f64,
            updated: now,
        }
    }

    fn per_ms(&self) -> f64 {
        self.limit.count as f64 / (self.limit.per_secs as f64 * 1000.0)
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = now.saturating_sub(self.updated) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms()).min(self.limit.count as f64);
        self.updated = self.updated.max(now);
    }

    /// Whole tokens available now.
    pub fn available(&mut self, now: Millis) -> usize {
        self.refill(now);
        self.tokens.floor() as usize
    }

    /// Uses `n` tokens (which `available` said were there).
    pub fn take(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// When the next whole token will be there.
    pub fn next_token_at(&mut self, now: Millis) -> Millis {
        self.refill(now);
        let missing = (1.0 - self.tokens).max(0.0);
        now + (missing / self.per_ms()).ceil() as Millis
    }
}

/// Additive-increase, multiplicative-decrease of a lane's concurrency.
#[derive(Debug, Clone, Default)]
pub struct Aimd {
    /// The current limit; `None` until the first congestion signal (then the cap applies).
    limit: Option<f64>,
    /// Why the limit is what it is, for `sub get`.
    pub reason: Option<String>,
    /// Signals from attempts dispatched before this number reflect an older limit.
    window_start: u64,
}

impl Aimd {
    /// Attempts allowed on the wire at once, never above `cap`, never below 1.
    pub fn effective(&self, cap: usize) -> usize {
        match self.limit {
            None => cap,
            Some(l) => (l.floor() as usize).clamp(1, cap),
        }
    }

    /// A 429/502/503/504/timeout from the attempt dispatched as number
    /// `dispatch`: halve, once per window. Attempts that were already on the
    /// wire when the limit last fell say nothing about the new limit.
    /// `next_dispatch` is the number the next attempt will get.
    pub fn congested(
        &mut self,
        cap: usize,
        dispatch: u64,
        next_dispatch: u64,
        what: &str,
        now: Millis,
    ) {
        if dispatch < self.window_start {
            return;
        }
        let current = self.limit.unwrap_or(cap as f64);
        let next = (current / 2.0).max(1.0);
        self.limit = Some(next);
        self.window_start = next_dispatch;
        self.reason = Some(format!(
            "lowered to {} after {what} at {}",
            next.floor(),
            crate::model::rfc3339(now)
        ));
    }

    /// A success: grow by about one per round of successes, up to the cap.
    pub fn succeeded(&mut self, cap: usize) {
        if let Some(l) = self.limit {
            let next = l + 1.0 / l.max(1.0);
            if next >= cap as f64 {
                self.limit = None;
                self.reason = None;
            } else {
                self.limit = Some(next);
            }
        }
    }
}

/// A subscription's circuit breaker.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    pub consecutive_failures: u32,
    pub open: Option<Open>,
}

/// An open breaker: deliveries held, one probe at a time.
#[derive(Debug, Clone)]
pub struct Open {
    pub since: Millis,
    pub interval: Duration,
    pub next_probe: Millis,
    /// The delivery being tried as the probe, while one is on the wire.
    pub probe: Option<u64>,
}

impl Breaker {
    /// Counts a failure; true when this one opened the breaker.
    pub fn failed(&mut self, threshold: u32, first_probe: Duration, now: Millis) -> bool {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.open.is_none() && self.consecutive_failures >= threshold {
            self.open = Some(Open {
                since: now,
                interval: first_probe,
                next_probe: now + first_probe.as_millis() as Millis,
                probe: None,
            });
            return true;
        }
        false
    }

    /// A probe failed: wait twice as long (up to `max`) for the next.
    pub fn probe_failed(&mut self, max: Duration, now: Millis) {
        if let Some(open) = &mut self.open {
            open.interval = (open.interval * 2).min(max);
            open.next_probe = now + open.interval.as_millis() as Millis;
            open.probe = None;
        }
    }

    /// A success; true when it closed an open breaker.
    pub fn succeeded(&mut self) -> bool {
        self.consecutive_failures = 0;
        self.open.take().is_some()
    }

    /// `closed`, `open` or `probing`.
    pub fn state_name(&self) -> &'static str {
        match &self.open {
            None => "closed",
            Some(Open { probe: Some(_), .. }) => "probing",
            Some(_) => "open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate_and_caps_the_burst() {
        let limit = RateLimit {
            count: 20,
            per_secs: 1,
        };
        let mut b = TokenBucket::new(limit, 0);
        assert_eq!(b.available(0), 20);
        b.take(20);
        assert_eq!(b.available(0), 0);
        assert_eq!(b.next_token_at(0), 50);
        assert_eq!(b.available(500), 10);
        assert_eq!(b.available(10_000), 20);
        let mut per_minute = TokenBucket::new(
            RateLimit {
                count: 6,
                per_secs: 60,
            },
            0,
        );
        per_minute.take(6);
        assert_eq!(per_minute.next_token_at(0), 10_000);
    }

    #[test]
    fn aimd_halves_on_congestion_and_grows_back() {
        let mut a = Aimd::default();
        assert_eq!(a.effective(16), 16);
        // Attempts 0..16 on the wire; attempt 3 is refused.
        a.congested(16, 3, 16, "HTTP 429", 1000);
        assert_eq!(a.effective(16), 8);
        a.congested(16, 9, 16, "HTTP 429", 1001); // on the wire before the decrease
        assert_eq!(a.effective(16), 8);
        a.congested(16, 17, 20, "HTTP 429", 2000);
        assert_eq!(a.effective(16), 4);
        assert!(a.reason.as_deref().unwrap().contains("429"));
        // About one more per round of successes at the current limit.
        for _ in 0..5 {
            a.succeeded(16);
        }
        assert_eq!(a.effective(16), 5);
        for _ in 0..200 {
            a.succeeded(16);
        }
        assert_eq!(a.effective(16), 16);
        assert!(a.reason.is_none());
    }

    #[test]
    fn breaker_opens_after_threshold_and_backs_off() {
        let mut b = Breaker::default();
        let probe = Duration::from_secs(5);
        for i in 0..9 {
            assert!(!b.failed(10, probe, i));
        }
        assert!(b.failed(10, probe, 9));
        assert_eq!(b.state_name(), "open");
        assert_eq!(b.open.as_ref().unwrap().next_probe, 5009);
        b.probe_failed(Duration::from_secs(8), 6000);
        assert_eq!(b.open.as_ref().unwrap().next_probe, 14_000);
        b.probe_failed(Duration::from_secs(8), 14_000);
        assert_eq!(b.open.as_ref().unwrap().interval, Duration::from_secs(8));
        assert!(b.succeeded());
        assert_eq!(b.state_name(), "closed");
        assert!(!b.succeeded());
    }
}
