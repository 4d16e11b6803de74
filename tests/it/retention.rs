//! `storage.retention`: closed events are purged once older than it (with
//! their idempotency key, so the id is new again); an event with an open
//! delivery is kept however old. And, by hand, the store's size under a long
//! run of ingest + delivery + purge.

use crate::harness::load::try_request;
use crate::harness::tally::{TallyReceiver, SECRET};
use crate::harness::{sub_to, wait_until, Daemon, SOON};
use hookd::api;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

/// The admin API's status code for `GET /v1/events/{id}`.
async fn event_status(daemon: &Daemon, id: &str) -> StatusCode {
    let (status, _) = daemon
        .admin()
        .request(Method::GET, &format!("/v1/events/{id}"), None)
        .await
        .expect("the admin API answers");
    status
}

#[tokio::test]
async fn delivered_events_are_purged_after_retention_and_open_ones_kept() {
    let receiver = TallyReceiver::start().await;
    let daemon = Daemon::builder()
        .set("storage", "retention", "1s")
        .start()
        .await;
    let mut flowing = sub_to(receiver.url("/flowing"));
    flowing.events = vec!["purge.*".into()];
    flowing.secret = Some(SECRET.into());
    daemon.add_sub(flowing).await;
    let mut held = sub_to(receiver.url("/held"));
    held.events = vec!["keep.*".into()];
    held.secret = Some(SECRET.into());
    let held = daemon.add_sub(held).await;
    daemon.sub_action(&held.id, "pause").await;

    let kept = daemon
        .post_new(&json!({"type": "keep.me", "id": "open-1", "data": {"n": 1}}))
        .await;
    let purged = daemon
        .post_new(&json!({"type": "purge.me", "id": "closed-1", "data": {"n": 1}}))
        .await;
    receiver
        .wait_delivered("/flowing", std::slice::from_ref(&purged), SOON)
        .await;
    wait_until("the delivered event purged", SOON, || async {
        match event_status(&daemon, &purged).await {
            StatusCode::NOT_FOUND => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    // Older than retention too, but its delivery is open: kept, and still pending.
    let event = daemon.event(&kept).await;
    assert_eq!(event.deliveries[0].status, "pending", "{event:?}");

    // The idempotency key went with it: the same id is a new event.
    let (status, body) = daemon
        .post_event(&json!({"type": "purge.me", "id": "closed-1", "data": {"n": 2}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body.get("duplicate").is_none(), "{body}");
    wait_until("the new event delivered", SOON, || async {
        match receiver.tally("/flowing").delivered.get(&purged) {
            Some(2) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Resumed, the held event is delivered, then purged in its turn.
    daemon.sub_action(&held.id, "resume").await;
    receiver
        .wait_delivered("/held", std::slice::from_ref(&kept), SOON)
        .await;
    wait_until("the held event purged once delivered", SOON, || async {
        match event_status(&daemon, &kept).await {
            StatusCode::NOT_FOUND => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
}

/// By hand: the store's size under a long run of ingest + delivery + purge,
/// with a fixed backlog held by a paused subscription. Prints bytes on disk
/// over time and per stored event.
///
/// `HOOKD_RETENTION_RUN_SECS=300 cargo test --test it steady_state -- --ignored --nocapture`
/// (`HOOKD_RETENTION_BACKLOG=N` sets the held backlog, default 2000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of minutes, run by hand"]
async fn steady_state_store_size_under_ingest_delivery_and_purge() {
    let secs: u64 = std::env::var("HOOKD_RETENTION_RUN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let backlog: usize = std::env::var("HOOKD_RETENTION_BACKLOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (rate, data_len, retention) = (100u64, 1024usize, 2u64);
    let receiver = TallyReceiver::start().await;
    let daemon = Daemon::builder()
        .set("storage", "retention", format!("{retention}s").as_str())
        .set("log", "level", "warn")
        .start()
        .await;
    let mut flowing = sub_to(receiver.url("/flowing"));
    flowing.events = vec!["flow.*".into()];
    flowing.secret = Some(SECRET.into());
    daemon.add_sub(flowing).await;
    let mut held = sub_to(receiver.url("/held"));
    held.events = vec!["held.*".into()];
    held.secret = Some(SECRET.into());
    let held = daemon.add_sub(held).await;
    daemon.sub_action(&held.id, "pause").await;

    let pad = "p".repeat(data_len - 20);
    let body =
        |kind: &str, n: u64| format!(r#"{{"type":"{kind}.x","data":{{"n":{n},"pad":"{pad}"}}}}"#);
    for start in (0..backlog).step_by(100) {
        let events: Vec<String> = (start..(start + 100).min(backlog))
            .map(|i| body("held", i as u64))
            .collect();
        let answer = daemon
            .post_raw("/v1/events/batch", format!("[{}]", events.join(",")))
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    }

    println!("steady: {rate} events/s of {data_len} B, retention {retention}s, {backlog} held by a paused subscription, {secs}s");
    println!("steady:   t(s)  on disk(B)  stored events  pending  B/stored event");
    let started = Instant::now();
    let mut next_sample = Duration::ZERO;
    let mut n = 0u64;
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let due = Duration::from_millis(n * 1000 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let answer = try_request(
            daemon.ingest_addr(),
            Method::POST,
            "/v1/events",
            body("flow", n),
            Duration::from_secs(10),
        )
        .await
        .expect("ingest answers");
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
        n += 1;
        if started.elapsed() >= next_sample {
            next_sample += Duration::from_secs(10.min(secs / 10).max(1));
            let status: api::Status = daemon.get("/v1/status").await;
            // The held backlog stays; the flowing events are those not yet purged.
            let flowing: api::List<api::Event> =
                daemon.get("/v1/events?type=flow.x&limit=10000").await;
            let stored = backlog as u64 + flowing.items.len() as u64;
            let per = status.store.size_bytes / stored.max(1);
            println!(
                "steady: {:6.0} {:11} {:14} {:8} {:14}",
                started.elapsed().as_secs_f64(),
                status.store.size_bytes,
                stored,
                status.deliveries.pending,
                per
            );
            samples.push((status.store.size_bytes, stored));
        }
    }
    let tail = &samples[samples.len() / 2..];
    let max = tail.iter().map(|s| s.0).max().unwrap_or(0);
    let min = tail.iter().map(|s| s.0).min().unwrap_or(0);
    let stored = tail.iter().map(|s| s.1).sum::<u64>() / tail.len().max(1) as u64;
    println!(
        "steady: second half of the run: {min}..{max} B on disk for ~{stored} stored events \
         ({} pending): {} B on disk per stored event, {} posted in all",
        backlog,
        max / stored.max(1),
        n
    );
}
