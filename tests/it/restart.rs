//! Durability across crashes and restarts: acknowledged events survive
//! kill -9, attempts cut off by a crash or a shutdown are made again, and
//! SIGTERM is a clean exit.

use crate::harness::{sub_to, Daemon, Receiver, Reply, SOON};
use hookd::api;
use serde_json::json;
use std::time::{Duration, Instant};

async fn post_many(daemon: &Daemon, n: usize, event_type: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            daemon
                .post_new(&json!({"type": event_type, "data": {"i": i}}))
                .await,
        );
    }
    ids
}

#[tokio::test]
async fn held_backlog_survives_kill9_and_flows_after_restart() {
    let mut daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon.sub_action(&sub.id, "pause").await;
    let ids = post_many(&daemon, 50, "backlog.item").await;

    // Straight after the last acknowledgement: no shutdown, no flush.
    daemon.kill9().await;
    daemon.restart().await;
    let after = daemon.subscription(&sub.id).await;
    assert_eq!(after.state, "paused", "the pause survives the crash");
    assert_eq!(after.pending, 50, "all 50 are still pending");
    assert_eq!(daemon.events().await.len(), 50);

    daemon.sub_action(&sub.id, "resume").await;
    let got = receiver.wait_for_delivered(&ids, SOON).await;
    eprintln!("{} requests for 50 events", got.len());
    let secret = sub.secret.unwrap();
    for r in &got {
        crate::harness::verify_signature(&secret, r).unwrap();
    }
}

#[tokio::test]
async fn failing_backlog_survives_kill9_and_is_delivered_after_restart() {
    let schedule = vec!["300ms"; 10];
    // The breaker would hold the backlog after ten failures; this test wants
    // every event attempted before the kill.
    let mut daemon = Daemon::builder()
        .set("delivery", "retry_schedule", schedule)
        .set("delivery", "breaker_failures", 1000)
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/hook", Reply::status(503));
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let ids = post_many(&daemon, 50, "flaky.item").await;
    // Every event has been tried and failed at least once.
    receiver
        .wait_until("a failed attempt of each event", SOON, |log| {
            ids.iter().all(|id| {
                log.iter()
                    .any(|r| r.header("webhook-id") == Some(id.as_str()))
            })
        })
        .await;

    daemon.kill9().await;
    receiver.set_default("/hook", Reply::ok());
    daemon.restart().await;
    receiver.wait_for_delivered(&ids, SOON).await;
    crate::harness::wait_until("50 delivered in the admin API", SOON, async || {
        let n = daemon.deliveries(None, Some("delivered")).await.len();
        if n == 50 {
            Ok(())
        } else {
            Err(format!("{n} delivered"))
        }
    })
    .await;
    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.deliveries.pending, 0);
}

#[tokio::test]
async fn attempt_on_the_wire_at_kill9_is_made_again_after_restart() {
    let mut daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::hang()]);
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon
        .post_new(&json!({"type": "inflight.item", "data": 1}))
        .await;
    receiver.wait_for(1, SOON).await;

    // The attempt is on the wire (the receiver holds it): crash now.
    daemon.kill9().await;
    daemon.restart().await;
    let got = receiver.wait_for(2, SOON).await;
    assert_eq!(got[1].header("webhook-id"), Some(id.as_str()));
    assert!(got[1].succeeded());
    crate::harness::verify_signature(sub.secret.as_deref().unwrap(), &got[1]).unwrap();
    daemon.wait_event_delivery(&id, "delivered").await;
}

#[tokio::test]
async fn sigterm_exits_zero_and_a_held_event_is_delivered_after_restart() {
    let mut daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon.sub_action(&sub.id, "pause").await;
    let id = daemon
        .post_new(&json!({"type": "shutdown.item", "data": 1}))
        .await;

    let stopping = Instant::now();
    let exit = daemon.sigterm().await;
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean exit: {exit}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "an idle daemon stops promptly: {:?}",
        stopping.elapsed()
    );
    assert!(
        std::os::unix::net::UnixStream::connect(daemon.socket_path()).is_err(),
        "nothing answers on the admin socket after exit"
    );

    daemon.restart().await;
    daemon.sub_action(&sub.id, "resume").await;
    receiver
        .wait_for_delivered(std::slice::from_ref(&id), SOON)
        .await;
    daemon.wait_event_delivery(&id, "delivered").await;
}

#[tokio::test]
async fn sigterm_lets_a_slow_attempt_finish_within_the_grace() {
    let mut daemon = Daemon::builder()
        .set("delivery", "shutdown_grace", "5s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::ok().delay(Duration::from_millis(500))]);
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon
        .post_new(&json!({"type": "shutdown.slow", "data": 1}))
        .await;
    receiver.wait_for(1, SOON).await;
    let exit = daemon.sigterm().await;
    assert_eq!(exit.code(), Some(0), "{exit}");

    daemon.restart().await;
    let delivery = daemon.wait_event_delivery(&id, "delivered").await;
    assert_eq!(
        delivery.attempts, 1,
        "finished before exit, recorded: {delivery:?}"
    );
    // Bounded observation window: no repeat within 500 ms of the restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 1, "not delivered twice");
}

#[tokio::test]
async fn concurrently_acknowledged_events_all_survive_kill9() {
    let mut daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon.sub_action(&sub.id, "pause").await;
    let addr = daemon.ingest_addr();
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..64 {
        posts.spawn(async move {
            let body = json!({"type": "burst.item", "data": n}).to_string();
            crate::harness::http::request(
                addr,
                hyper::Method::POST,
                "/v1/events",
                &[("content-type", "application/json")],
                body,
            )
            .await
        });
    }
    let mut ids = Vec::new();
    while let Some(answer) = posts.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(
            answer.status,
            hyper::StatusCode::ACCEPTED,
            "{}",
            answer.text()
        );
        ids.push(answer.json()["id"].as_str().unwrap().to_string());
    }
    daemon.kill9().await;
    daemon.restart().await;
    let mut stored: Vec<String> = daemon.events().await.into_iter().map(|e| e.id).collect();
    stored.sort();
    ids.sort();
    assert_eq!(stored, ids, "every acknowledged event is on disk");
    daemon.sub_action(&sub.id, "resume").await;
    receiver.wait_for_delivered(&ids, SOON).await;
}

#[tokio::test]
async fn sigint_is_a_clean_exit_too() {
    let mut daemon = Daemon::start().await;
    daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    let exit = daemon.stop_with(rustix::process::Signal::INT).await;
    assert_eq!(exit.code(), Some(0), "{exit}");
    daemon.restart().await;
    assert_eq!(daemon.events().await.len(), 1);
}

#[tokio::test]
async fn counts_carried_over_a_clean_restart_do_not_outlive_a_crash_after_it() {
    let mut daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon.sub_action(&sub.id, "pause").await;
    let mut ids = post_many(&daemon, 20, "counts.item").await;
    let held = daemon
        .get::<api::Status>("/v1/status")
        .await
        .store
        .held_bytes;
    assert!(held > 0, "20 stored events hold bytes");

    // A clean shutdown writes the counts down; the next start takes them.
    assert_eq!(daemon.sigterm().await.code(), Some(0));
    daemon.restart().await;
    assert_eq!(daemon.subscription(&sub.id).await.pending, 20);
    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.store.held_bytes, held);
    assert_eq!(status.deliveries.pending, 20);

    // More events, then a crash: the counts of the clean shutdown are stale
    // now, and the start after the crash must count afresh.
    ids.extend(post_many(&daemon, 10, "counts.item").await);
    let held_after = daemon
        .get::<api::Status>("/v1/status")
        .await
        .store
        .held_bytes;
    assert!(held_after > held);
    daemon.kill9().await;
    daemon.restart().await;
    assert_eq!(daemon.subscription(&sub.id).await.pending, 30);
    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.store.held_bytes, held_after);
    assert_eq!(status.deliveries.pending, 30);

    daemon.sub_action(&sub.id, "resume").await;
    receiver.wait_for_delivered(&ids, SOON).await;
}
