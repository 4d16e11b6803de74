//! The retry contract: the configured schedule with jitter, the attempt log,
//! Retry-After (seconds and HTTP date, capped), 410 Gone, dead deliveries
//! and redelivery.

use crate::harness::{sub_to, wait_until, Daemon, Receiver, Reply, SOON};
use hookd::api;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn failed_attempt_is_retried_on_schedule_and_logged() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        [Reply::status(500)
            .body("boom: database down")
            .delay(Duration::from_millis(50))],
    );
    receiver.set_default("/hook", Reply::ok().body("thanks"));
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon
        .post_new(&json!({"type": "retry.check", "data": 1}))
        .await;

    let got = receiver.wait_for_path("/hook", 2, SOON).await;
    let gap = got[1].at - got[0].at;
    eprintln!("gap between attempts: {gap:?} (schedule 300ms ±10%)");
    assert!(
        gap >= Duration::from_millis(270),
        "the retry waits at least 0.9 × 300 ms: {gap:?}"
    );
    assert!(gap < SOON, "{gap:?}");
    assert_eq!(got[0].header("webhook-id"), Some(id.as_str()));
    assert_eq!(
        got[1].header("webhook-id"),
        Some(id.as_str()),
        "the same webhook-id on every retry"
    );
    let secret = sub.secret.unwrap();
    for r in &got {
        crate::harness::verify_signature(&secret, r).unwrap();
    }

    let delivery = daemon.wait_event_delivery(&id, "delivered").await;
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.last_status, Some(200));
    assert_eq!(delivery.event_id, id);
    assert_eq!(delivery.subscription_id, sub.id);
    let log = delivery.attempt_log.expect("the attempt log");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!((log[0].no, log[1].no), (1, 2));
    assert_eq!(log[0].status, Some(500));
    assert_eq!(log[0].response, "boom: database down");
    assert!(
        log[0].latency_ms >= 50,
        "latency includes the receiver's 50 ms: {log:?}"
    );
    assert_eq!(log[1].status, Some(200));
    assert_eq!(log[1].response, "thanks");
    let at = |a: &api::Attempt| humantime::parse_rfc3339(&a.at).expect("attempt time");
    let logged_gap = at(&log[1]).duration_since(at(&log[0])).unwrap();
    assert!(logged_gap >= Duration::from_millis(270), "{log:?}");
}

#[tokio::test]
async fn retry_after_on_429_delays_the_retry_beyond_the_schedule() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::status(429).header("retry-after", "2")]);
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon
        .post_new(&json!({"type": "throttle.check", "data": 1}))
        .await;
    let got = receiver.wait_for_path("/hook", 2, SOON).await;
    let gap = got[1].at - got[0].at;
    eprintln!("gap after Retry-After: 2 -> {gap:?}");
    assert!(
        gap >= Duration::from_millis(1800),
        "Retry-After: 2 wins over the 300 ms schedule: {gap:?}"
    );
    // webhook-timestamp is the time of each attempt; the body is the same.
    let ts = |r: &crate::harness::Recorded| -> i64 {
        r.header("webhook-timestamp").unwrap().parse().unwrap()
    };
    assert!(
        ts(&got[1]) - ts(&got[0]) >= 1,
        "a fresh timestamp per attempt"
    );
    assert_eq!(got[0].body, got[1].body, "the same body on every attempt");
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for a time.
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn http_date_formats_the_rfc_example() {
    let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
}

#[tokio::test]
async fn retry_after_as_http_date_on_503_is_honoured() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    // Three seconds ahead, truncated to whole seconds by the format: at least 2 s.
    let date = http_date(SystemTime::now() + Duration::from_secs(3));
    receiver.script("/hook", [Reply::status(503).header("retry-after", &date)]);
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon
        .post_new(&json!({"type": "throttle.date", "data": 1}))
        .await;
    let got = receiver.wait_for_path("/hook", 2, SOON).await;
    let gap = got[1].at - got[0].at;
    eprintln!("gap after Retry-After: {date} -> {gap:?}");
    assert!(
        gap >= Duration::from_millis(1800),
        "an HTTP-date Retry-After is honoured: {gap:?}"
    );
}

#[tokio::test]
async fn retry_after_is_capped_by_max_retry_after() {
    let daemon = Daemon::builder()
        .set("delivery", "max_retry_after", "1s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::status(429).header("retry-after", "60")]);
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon
        .post_new(&json!({"type": "throttle.cap", "data": 1}))
        .await;
    // SOON (10 s) is far below the 60 s asked for: arriving at all proves the cap.
    let got = receiver.wait_for_path("/hook", 2, SOON).await;
    let gap = got[1].at - got[0].at;
    eprintln!("gap after Retry-After: 60 capped at 1s -> {gap:?}");
    assert!(
        gap >= Duration::from_millis(900),
        "the capped wait is still 1 s: {gap:?}"
    );
    assert!(gap < Duration::from_secs(5), "capped near 1 s: {gap:?}");
}

#[tokio::test]
async fn gone_410_disables_the_subscription_and_holds_until_resume() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::status(410)]);
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let first = daemon
        .post_new(&json!({"type": "gone.first", "data": 1}))
        .await;
    receiver.wait_for(1, SOON).await;

    let disabled = wait_until("the subscription to be disabled", SOON, async || {
        let s = daemon.subscription(&sub.id).await;
        if s.state == "disabled" {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let reason = disabled.disabled_reason.unwrap_or_default();
    assert!(reason.contains("410"), "the reason names the 410: {reason}");
    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.subscriptions.disabled, 1);

    let (status, body) = daemon
        .post_event(&json!({"type": "gone.second", "data": 2}))
        .await;
    assert_eq!(status, hyper::StatusCode::ACCEPTED);
    assert_eq!(body["deliveries"], 1, "a disabled sub still gets fan-out");
    let second = body["id"].as_str().unwrap().to_string();
    // Bounded observation window: nothing more may arrive within 1 s while disabled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests().len(), 1, "held while disabled");

    let resumed = daemon.sub_action(&sub.id, "resume").await;
    assert_eq!(resumed.state, "active");
    assert_eq!(resumed.disabled_reason, None);
    receiver
        .wait_for_delivered(&[first.clone(), second.clone()], SOON)
        .await;
    daemon.wait_event_delivery(&first, "delivered").await;
}

#[tokio::test]
async fn delivery_is_dead_after_the_last_retry_and_can_be_redelivered() {
    // Two retries of very different lengths, so that each gap shows which one was used.
    let daemon = Daemon::builder()
        .set("delivery", "retry_schedule", vec!["300ms", "2500ms"])
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/hook", Reply::status(500));
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon
        .post_new(&json!({"type": "doomed.item", "data": 1}))
        .await;

    // A schedule of two retries: three attempts, then dead.
    let got = receiver.wait_for_path("/hook", 3, SOON).await;
    let (first_gap, second_gap) = (got[1].at - got[0].at, got[2].at - got[1].at);
    eprintln!("gaps {first_gap:?} and {second_gap:?} for a schedule of 300ms, 2500ms");
    assert!(
        first_gap >= Duration::from_millis(270) && first_gap < Duration::from_millis(1500),
        "the first retry follows the first delay: {first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(2250),
        "the second retry waits 0.9 × 2500 ms: {second_gap:?}"
    );
    let dead = daemon.wait_event_delivery(&id, "dead").await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.next_at, None, "a dead delivery is not scheduled");
    assert_eq!(dead.attempt_log.as_ref().map(Vec::len), Some(3));
    let listed = daemon.deliveries(Some(&sub.id), Some("dead")).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Bounded observation window: no fourth attempt within 1 s of going dead.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests().len(), 3);

    receiver.set_default("/hook", Reply::ok());
    let requeued = daemon.cli_ok(&["--json", "event", "redeliver", &id]).await;
    let requeued: api::Requeued = serde_json::from_str(&requeued).unwrap();
    assert_eq!(requeued.deliveries.len(), 1, "{requeued:?}");
    let got = receiver.wait_for_path("/hook", 4, SOON).await;
    assert_eq!(got[3].header("webhook-id"), Some(id.as_str()));
    assert!(got[3].succeeded());

    let redelivered = daemon
        .wait_delivery_status(&requeued.deliveries[0], "delivered")
        .await;
    assert_eq!(redelivered.attempts, 1);
    let event = daemon.event(&id).await;
    let statuses: Vec<&str> = event.deliveries.iter().map(|d| d.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["dead", "delivered"],
        "the dead one stays inspectable"
    );
}

#[tokio::test]
async fn any_2xx_is_success_and_other_4xx_are_retried() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    receiver.set_default("/no-content", Reply::status(204).body(""));
    receiver.set_default("/accepted", Reply::status(202));
    receiver.script("/bad-request", [Reply::status(400), Reply::status(404)]);
    for path in ["/no-content", "/accepted", "/bad-request"] {
        let mut sub = sub_to(receiver.url(path));
        sub.events = vec![format!("status{}", path.replace('/', "."))];
        daemon.add_sub(sub).await;
    }
    let no_content = daemon
        .post_new(&json!({"type": "status.no-content", "data": 1}))
        .await;
    let accepted = daemon
        .post_new(&json!({"type": "status.accepted", "data": 1}))
        .await;
    let bad = daemon
        .post_new(&json!({"type": "status.bad-request", "data": 1}))
        .await;
    for id in [&no_content, &accepted] {
        let d = daemon.wait_event_delivery(id, "delivered").await;
        assert_eq!(d.attempts, 1, "{d:?}");
    }
    // 400, then 404 (600 ms later), then the default 200.
    let got = receiver.wait_for_path("/bad-request", 3, SOON).await;
    assert!(got[2].succeeded());
    let d = daemon.wait_event_delivery(&bad, "delivered").await;
    let log = d.attempt_log.unwrap();
    let statuses: Vec<Option<u16>> = log.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(400), Some(404), Some(200)]);
}

#[tokio::test]
async fn connection_refused_is_a_failed_attempt_and_ends_dead() {
    let daemon = Daemon::start().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    daemon
        .add_sub(sub_to(format!("http://127.0.0.1:{port}/hook")))
        .await;
    let id = daemon
        .post_new(&json!({"type": "unreachable.item", "data": 1}))
        .await;
    let dead = daemon.wait_event_delivery(&id, "dead").await;
    assert_eq!(dead.attempts, 3, "{dead:?}");
    let log = dead.attempt_log.unwrap();
    assert!(
        log.iter().all(|a| a.status.is_none() && a.error.is_some()),
        "each attempt records the connection error: {log:?}"
    );
}
