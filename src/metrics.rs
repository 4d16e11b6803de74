//! Counters and histograms, rendered in Prometheus text format. Labels are
//! closed sets (outcomes, statuses, error kinds), never ids, so cardinality
//! stays bounded.

use crate::outbound::{AttemptError, AttemptOutcome};
use crate::retry::Verdict;
use crate::store::{Census, Store};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the attempt latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of the flush (flush + fsync) latency histogram.
pub const FLUSH_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Why an ingest request ended as it did.
#[derive(Debug, Clone, Copy)]
pub enum IngestOutcome {
    Accepted = 0,
    Duplicate = 1,
    BadRequest = 2,
    Unauthorized = 3,
    TooLarge = 4,
    UnsupportedMediaType = 5,
    Unavailable = 6,
    Other = 7,
}

const INGEST_OUTCOMES: [&str; 8] = [
    "accepted",
    "duplicate",
    "bad_request",
    "unauthorized",
    "too_large",
    "unsupported_media_type",
    "unavailable",
    "other",
];

const ATTEMPT_OUTCOMES: [&str; 4] = ["delivered", "retrying", "dead", "gone"];

/// What the receiving end did, or why there was no answer.
const ATTEMPT_RESULTS: [&str; 12] = [
    "2xx", "3xx", "4xx", "5xx", "url", "dns", "connect", "tls", "blocked", "timeout", "protocol",
    "body",
];

/// A histogram with fixed bucket bounds, in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every metric hookd counts itself.
#[derive(Debug)]
pub struct Metrics {
    ingest_requests: [AtomicU64; 8],
    pub events_accepted: AtomicU64,
    attempts: [AtomicU64; 4],
    attempt_results: [AtomicU64; 12],
    latency: Histogram,
    /// The last census of the store, refreshed at scrape time.
    pub census: CensusCache,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ingest_requests: Default::default(),
            events_accepted: AtomicU64::new(0),
            attempts: Default::default(),
            attempt_results: Default::default(),
            latency: Histogram::new(&LATENCY_BUCKETS),
            census: CensusCache::default(),
        }
    }
}

/// Values read elsewhere (store, scheduler) at render time.
#[derive(Debug, Default)]
pub struct Gauges {
    pub pending: u64,
    pub in_flight: u64,
    /// Room held by ingest requests (`ingest.max_in_flight_bytes`), bytes.
    pub ingest_in_flight_bytes: u64,
    /// Ingest requests waiting for that room.
    pub ingest_waiting: u64,
    pub store_bytes: u64,
    pub subscriptions: u64,
    pub uplink_down: bool,
    pub breakers_open: u64,
    /// The census, and when it was taken (unix ms).
    pub census: Option<(Census, u64)>,
}

impl Metrics {
    /// Counts one ingest request.
    pub fn ingest(&self, outcome: IngestOutcome) {
        self.ingest_requests[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts one attempt, what came back, and its latency.
    pub fn record_attempt(&self, outcome: &AttemptOutcome, verdict: &Verdict) {
        let index = match verdict {
            Verdict::Delivered => 0,
            Verdict::RetryAfter(_) => 1,
            Verdict::Dead => 2,
            Verdict::Gone => 3,
        };
        self.attempts[index].fetch_add(1, Relaxed);
        if let Some(result) = attempt_result(outcome) {
            self.attempt_results[result].fetch_add(1, Relaxed);
        }
        self.latency.observe(outcome.latency);
    }

    /// Attempts that delivered, since start.
    pub fn delivered(&self) -> u64 {
        self.attempts[0].load(Relaxed)
    }

    /// Deliveries that went dead, since start.
    pub fn dead(&self) -> u64 {
        self.attempts[2].load(Relaxed)
    }

    /// The Prometheus text exposition; `flush` is the store's flush histogram.
    pub fn render(&self, gauges: &Gauges, flush: &Histogram) -> String {
        let mut out = String::with_capacity(8192);
        labelled(
            &mut out,
            "hookd_ingest_requests_total",
            "Ingest requests by outcome.",
            "counter",
            "outcome",
            INGEST_OUTCOMES
                .iter()
                .copied()
                .zip(load(&self.ingest_requests)),
        );
        counter(
            &mut out,
            "hookd_events_accepted_total",
            "Events stored durably.",
            self.events_accepted.load(Relaxed),
        );
        labelled(
            &mut out,
            "hookd_attempts_total",
            "Delivery attempts by what they did to the delivery.",
            "counter",
            "outcome",
            ATTEMPT_OUTCOMES.iter().copied().zip(load(&self.attempts)),
        );
        labelled(
            &mut out,
            "hookd_attempt_results_total",
            "Delivery attempts by the receiver's status class or the error.",
            "counter",
            "result",
            ATTEMPT_RESULTS
                .iter()
                .copied()
                .zip(load(&self.attempt_results)),
        );
        self.latency.render(
            &mut out,
            "hookd_attempt_duration_seconds",
            "Attempt latency, connect to response.",
        );
        gauge(
            &mut out,
            "hookd_deliveries_pending",
            "Open deliveries (waiting or retrying), live.",
            gauges.pending,
        );
        gauge(
            &mut out,
            "hookd_deliveries_in_flight",
            "Attempts on the wire.",
            gauges.in_flight,
        );
        gauge(
            &mut out,
            "hookd_ingest_in_flight_bytes",
            "Room held by ingest requests being read, parsed or written \
             (at most ingest.max_in_flight_bytes).",
            gauges.ingest_in_flight_bytes,
        );
        gauge(
            &mut out,
            "hookd_ingest_waiting_requests",
            "Ingest requests waiting, unread, for room under ingest.max_in_flight_bytes.",
            gauges.ingest_waiting,
        );
        if let Some((census, taken_at)) = &gauges.census {
            labelled(
                &mut out,
                "hookd_deliveries",
                "Stored deliveries by status, as of the last census.",
                "gauge",
                "status",
                census.by_status.iter().map(|(k, v)| (*k, *v)),
            );
            gauge(
                &mut out,
                "hookd_deliveries_due",
                "Open deliveries whose next attempt is due, as of the last census.",
                census.due,
            );
            let age_ms = census
                .oldest_open_at
                .map_or(0, |at| taken_at.saturating_sub(at));
            let _ = writeln!(
                out,
                "# HELP hookd_oldest_pending_age_seconds Age of the oldest open delivery (0: none).\n\
                 # TYPE hookd_oldest_pending_age_seconds gauge\n\
                 hookd_oldest_pending_age_seconds {}",
                age_ms as f64 / 1000.0
            );
            let _ = writeln!(
                out,
                "# HELP hookd_census_timestamp_seconds When the census of the store was taken.\n\
                 # TYPE hookd_census_timestamp_seconds gauge\n\
                 hookd_census_timestamp_seconds {}",
                *taken_at as f64 / 1000.0
            );
        }
        gauge(
            &mut out,
            "hookd_store_bytes",
            "Bytes the store occupies on disk.",
            gauges.store_bytes,
        );
        gauge(
            &mut out,
            "hookd_subscriptions",
            "Subscriptions.",
            gauges.subscriptions,
        );
        gauge(
            &mut out,
            "hookd_uplink_down",
            "1 while the box's own network is judged down.",
            gauges.uplink_down as u64,
        );
        gauge(
            &mut out,
            "hookd_breakers_open",
            "Subscriptions whose circuit breaker is open.",
            gauges.breakers_open,
        );
        flush.render(
            &mut out,
            "hookd_flush_duration_seconds",
            "Group-commit rounds: sled flush plus fsync of the data file.",
        );
        out
    }
}

fn load<const N: usize>(values: &[AtomicU64; N]) -> impl Iterator<Item = u64> + '_ {
    values.iter().map(|v| v.load(Relaxed))
}

/// The index into [`ATTEMPT_RESULTS`] of an attempt's result.
fn attempt_result(outcome: &AttemptOutcome) -> Option<usize> {
    let name = match (&outcome.error, outcome.status) {
        (Some(e), _) => match e {
            AttemptError::Url(_) => "url",
            AttemptError::Dns(_) => "dns",
            AttemptError::Connect(_) => "connect",
            AttemptError::Tls(_) => "tls",
            AttemptError::Blocked(_) => "blocked",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Protocol(_) => "protocol",
            AttemptError::Body(_) => "body",
        },
        (None, Some(s)) if (200..300).contains(&s) => "2xx",
        (None, Some(s)) if (300..400).contains(&s) => "3xx",
        (None, Some(s)) if (400..500).contains(&s) => "4xx",
        (None, Some(_)) => "5xx",
        (None, None) => return None,
    };
    ATTEMPT_RESULTS.iter().position(|r| *r == name)
}

fn labelled<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (value_name, value) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{value_name}\"}} {value}");
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Scans of the whole store are taken at scrape time, but at most every
/// [`CENSUS_MIN_INTERVAL`] and never more than 1/[`CENSUS_COST_FACTOR`] of
/// the time: a store with a large backlog is counted less often, not slower.
const CENSUS_MIN_INTERVAL: Duration = Duration::from_secs(2);
const CENSUS_COST_FACTOR: u32 = 20;

/// The last census of the store and what it cost.
#[derive(Debug, Default)]
pub struct CensusCache {
    last: tokio::sync::Mutex<Option<Taken>>,
}

#[derive(Debug, Clone)]
struct Taken {
    census: Census,
    at: Instant,
    at_ms: u64,
    cost: Duration,
}

impl CensusCache {
    /// A census no older than the throttle allows, and when it was taken
    /// (unix ms); `None` if the store cannot be read.
    pub async fn current(&self, store: &Arc<Store>) -> Option<(Census, u64)> {
        let mut last = self.last.lock().await;
        if let Some(taken) = last.as_ref() {
            let wait = CENSUS_MIN_INTERVAL.max(taken.cost * CENSUS_COST_FACTOR);
            if taken.at.elapsed() < wait {
                return Some((taken.census.clone(), taken.at_ms));
            }
        }
        let store = store.clone();
        let started = Instant::now();
        let at_ms = crate::model::now_ms();
        let census = tokio::task::spawn_blocking(move || store.census(at_ms))
            .await
            .ok()?;
        match census {
            Ok(census) => {
                *last = Some(Taken {
                    census: census.clone(),
                    at: started,
                    at_ms,
                    cost: started.elapsed(),
                });
                Some((census, at_ms))
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the store census failed");
                last.as_ref().map(|t| (t.census.clone(), t.at_ms))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&FLUSH_BUCKETS);
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "X.");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum 10.0033\nx_count 3\n"), "{out}");
    }

    #[test]
    fn attempt_results_are_a_closed_set() {
        let outcome = |status, error| AttemptOutcome {
            status,
            error,
            retry_after: None,
            latency: Duration::ZERO,
            excerpt: Vec::new(),
        };
        let name = |o: &AttemptOutcome| attempt_result(o).map(|i| ATTEMPT_RESULTS[i]);
        assert_eq!(name(&outcome(Some(204), None)), Some("2xx"));
        assert_eq!(name(&outcome(Some(503), None)), Some("5xx"));
        assert_eq!(name(&outcome(Some(410), None)), Some("4xx"));
        let timeout = AttemptError::Timeout(Duration::from_secs(1));
        assert_eq!(name(&outcome(None, Some(timeout))), Some("timeout"));
        let connect = AttemptError::Connect("refused".into());
        assert_eq!(name(&outcome(None, Some(connect))), Some("connect"));
    }
}
