//! `GET /metrics` after real traffic: every family present, values moved.

use crate::harness::{eventually, Daemon, Receiver, Setup};
use std::collections::BTreeMap;

/// `series -> value` of one scrape (`name{labels}` as written).
fn scrape(daemon: &Daemon) -> BTreeMap<String, f64> {
    let answer = daemon.get("/metrics");
    assert_eq!(answer.status, 200);
    assert!(answer
        .headers
        .contains("content-type: text/plain; version=0.0.4"));
    answer
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no {series} in {m:#?}"))
}

#[test]
fn metrics_move_with_traffic() {
    let receiver = Receiver::start();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let daemon = Daemon::start(Setup {
        delivery: "allow_networks = [\"127.0.0.0/8\"]\nretry_schedule = [\"200ms\"]".into(),
        ..Setup::default()
    });
    let before = scrape(&daemon);
    for series in [
        "hookd_ingest_requests_total{outcome=\"accepted\"}",
        "hookd_events_accepted_total",
        "hookd_attempts_total{outcome=\"delivered\"}",
        "hookd_attempt_results_total{result=\"2xx\"}",
        "hookd_attempt_duration_seconds_count",
        "hookd_deliveries_pending",
        "hookd_deliveries{status=\"dead\"}",
        "hookd_deliveries_due",
        "hookd_oldest_pending_age_seconds",
    ] {
        assert_eq!(value(&before, series), 0.0, "{series} at start");
    }
    let flushes_before = value(&before, "hookd_flush_duration_seconds_count");

    let sub = |url: String| {
        let body = format!(r#"{{"url":"{url}"}}"#);
        let answer = daemon.admin("POST", "/v1/subscriptions", Some(&body));
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()["id"].as_str().unwrap().to_string()
    };
    sub(receiver.url());
    sub(format!("http://{closed}/hook"));
    let held = sub(receiver.url());
    let paused = daemon.admin("POST", &format!("/v1/subscriptions/{held}/pause"), None);
    assert_eq!(paused.status, 200, "{}", paused.body);

    for n in 0..5 {
        let event = format!(r#"{{"type":"invoice.paid","data":{{"n":{n}}}}}"#);
        assert_eq!(daemon.post_event(None, &event).status, 202);
    }
    assert_eq!(daemon.post_event(None, "{not json").status, 400);

    // 5 delivered, 5 dead after two refused connections each, 5 held.
    let mut after = BTreeMap::new();
    eventually("deliveries settle and the census sees them", || {
        after = scrape(&daemon);
        value(&after, "hookd_deliveries{status=\"dead\"}") == 5.0
            && value(&after, "hookd_deliveries{status=\"delivered\"}") == 5.0
    });
    let v = |s: &str| value(&after, s);
    assert_eq!(v("hookd_ingest_requests_total{outcome=\"accepted\"}"), 5.0);
    assert_eq!(
        v("hookd_ingest_requests_total{outcome=\"bad_request\"}"),
        1.0
    );
    assert_eq!(v("hookd_events_accepted_total"), 5.0);
    assert_eq!(v("hookd_attempts_total{outcome=\"delivered\"}"), 5.0);
    assert_eq!(v("hookd_attempts_total{outcome=\"retrying\"}"), 5.0);
    assert_eq!(v("hookd_attempts_total{outcome=\"dead\"}"), 5.0);
    assert_eq!(v("hookd_attempt_results_total{result=\"2xx\"}"), 5.0);
    assert_eq!(v("hookd_attempt_results_total{result=\"connect\"}"), 10.0);
    assert_eq!(v("hookd_attempt_duration_seconds_count"), 15.0);
    assert_eq!(
        v("hookd_attempt_duration_seconds_bucket{le=\"+Inf\"}"),
        15.0
    );
    assert_eq!(v("hookd_deliveries_pending"), 5.0);
    assert_eq!(v("hookd_deliveries{status=\"pending\"}"), 5.0);
    assert_eq!(v("hookd_deliveries_due"), 5.0);
    assert!(v("hookd_oldest_pending_age_seconds") > 0.0);
    assert!(v("hookd_store_bytes") > 0.0);
    assert!(v("hookd_flush_duration_seconds_count") >= flushes_before + 5.0);
    assert!(v("hookd_flush_duration_seconds_sum") > 0.0);
    assert_eq!(v("hookd_subscriptions"), 3.0);
    assert_eq!(receiver.count.load(std::sync::atomic::Ordering::SeqCst), 5);
}
