//! Counters and histograms, rendered in Prometheus text format. Labels are
//! closed sets (outcomes), never ids, so cardinality stays bounded.

use crate::outbound::AttemptOutcome;
use crate::retry::Verdict;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the attempt latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
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

/// Every metric hookd exports.
#[derive(Debug, Default)]
pub struct Metrics {
    ingest_requests: [AtomicU64; 8],
    pub events_accepted: AtomicU64,
    attempts: [AtomicU64; 4],
    latency_buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// Values read elsewhere (store, scheduler) at render time.
#[derive(Debug, Default)]
pub struct Gauges {
    pub pending: u64,
    pub in_flight: u64,
    pub store_bytes: u64,
    pub flush_rounds: u64,
    pub flush_micros: u64,
    pub subscriptions: u64,
    pub uplink_down: bool,
    pub breakers_open: u64,
}

impl Metrics {
    /// Counts one ingest request.
    pub fn ingest(&self, outcome: IngestOutcome) {
        self.ingest_requests[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts one attempt and its latency.
    pub fn record_attempt(&self, outcome: &AttemptOutcome, verdict: &Verdict) {
        let index = match verdict {
            Verdict::Delivered => 0,
            Verdict::RetryAfter(_) => 1,
            Verdict::Dead => 2,
            Verdict::Gone => 3,
        };
        self.attempts[index].fetch_add(1, Relaxed);
        let secs = outcome.latency.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(outcome.latency.as_micros() as u64, Relaxed);
    }

    /// Attempts that delivered, since start.
    pub fn delivered(&self) -> u64 {
        self.attempts[0].load(Relaxed)
    }

    /// Deliveries that went dead, since start.
    pub fn dead(&self) -> u64 {
        self.attempts[2].load(Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP hookd_ingest_requests_total Ingest requests by outcome.\n");
        out.push_str("# TYPE hookd_ingest_requests_total counter\n");
        for (name, value) in INGEST_OUTCOMES.iter().zip(&self.ingest_requests) {
            let _ = writeln!(
                out,
                "hookd_ingest_requests_total{{outcome=\"{name}\"}} {}",
                value.load(Relaxed)
            );
        }
        counter(
            &mut out,
            "hookd_events_accepted_total",
            "Events stored durably.",
            self.events_accepted.load(Relaxed),
        );
        out.push_str("# HELP hookd_attempts_total Delivery attempts by outcome.\n");
        out.push_str("# TYPE hookd_attempts_total counter\n");
        for (name, value) in ATTEMPT_OUTCOMES.iter().zip(&self.attempts) {
            let _ = writeln!(
                out,
                "hookd_attempts_total{{outcome=\"{name}\"}} {}",
                value.load(Relaxed)
            );
        }
        out.push_str("# HELP hookd_attempt_duration_seconds Attempt latency.\n");
        out.push_str("# TYPE hookd_attempt_duration_seconds histogram\n");
        for (bound, value) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "hookd_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                value.load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "hookd_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "hookd_attempt_duration_seconds_sum {}",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "hookd_attempt_duration_seconds_count {count}");
        gauge(
            &mut out,
            "hookd_deliveries_pending",
            "Open deliveries (waiting or retrying).",
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
        counter(
            &mut out,
            "hookd_flush_rounds_total",
            "Group-commit flush rounds.",
            gauges.flush_rounds,
        );
        let _ = writeln!(
            out,
            "# HELP hookd_flush_seconds_total Time spent in flush rounds.\n# TYPE hookd_flush_seconds_total counter\nhookd_flush_seconds_total {}",
            gauges.flush_micros as f64 / 1e6
        );
        out
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
