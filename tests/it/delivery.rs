//! The delivery request contract (Standard Webhooks), and how deliveries
//! flow: latency, isolation between subscribers, pausing, secret rotation,
//! redirects, timeouts and the outbound address policy.

use crate::harness::{sub_to, verify_signature, wait_until, Daemon, Receiver, Reply, SOON};
use base64::Engine;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const GIVEN_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn delivery_has_standard_webhooks_headers_that_verify() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let mut create = sub_to(receiver.url("/generated"));
    create.headers = vec![
        "X-Team: payments".into(),
        "Authorization: Bearer rcv".into(),
    ];
    let generated = daemon.add_sub(create).await;
    let generated_secret = generated.secret.expect("sub add answers the secret");
    let key = generated_secret
        .strip_prefix("whsec_")
        .expect("secrets start with whsec_");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("base64 after whsec_");
    assert_eq!(key.len(), 32, "hookd generates 32-byte keys");
    let mut create = sub_to(receiver.url("/given"));
    create.secret = Some(GIVEN_SECRET.into());
    let given = daemon.add_sub(create).await;
    assert_eq!(given.secret.as_deref(), Some(GIVEN_SECRET));

    let (status, _) = daemon
        .post_event(&json!({"type": "invoice.paid", "id": "inv_1001", "data": {"amount": 5}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let got = receiver.wait_for(2, SOON).await;
    let now = unix_now();
    for r in &got {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("user-agent"),
            Some(concat!("hookd/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(r.header("webhook-id"), Some("inv_1001"));
        let ts: i64 = r
            .header("webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .expect("webhook-timestamp is unix seconds");
        assert!((now - ts).abs() <= 60, "timestamp {ts} is now ({now})");
        let signature = r.header("webhook-signature").expect("webhook-signature");
        assert!(
            signature.starts_with("v1,") && !signature.contains(' '),
            "one v1 signature: {signature}"
        );
        let body = r.json();
        assert_eq!(body["type"], "invoice.paid");
        assert_eq!(body["data"], json!({"amount": 5}));
        let timestamp = body["timestamp"].as_str().expect("a timestamp");
        assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{timestamp}");
    }
    let on = |path: &str| got.iter().find(|r| r.path == path).unwrap();
    verify_signature(&generated_secret, on("/generated")).unwrap();
    verify_signature(GIVEN_SECRET, on("/given")).unwrap();
    assert!(
        verify_signature(GIVEN_SECRET, on("/generated")).is_err(),
        "a wrong secret does not verify"
    );
    let custom = on("/generated");
    assert_eq!(custom.header("x-team"), Some("payments"));
    assert_eq!(custom.header("authorization"), Some("Bearer rcv"));
    assert_eq!(on("/given").header("x-team"), None);
}

#[tokio::test]
async fn subscription_headers_cannot_replace_signature_headers() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    for header in [
        "webhook-signature: v1,forged",
        "Webhook-Id: x",
        "user-agent: other",
        "content-type: text/plain",
    ] {
        let body = json!({"url": receiver.url("/x"), "headers": [header]});
        let (status, answer) = daemon
            .admin()
            .request(Method::POST, "/v1/subscriptions", Some(body))
            .await
            .unwrap();
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{header}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[tokio::test]
async fn new_event_reaches_the_receiver_quickly() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let mut worst = Duration::ZERO;
    for n in 1..=5 {
        let posted = Instant::now();
        daemon
            .post_new(&json!({"type": "latency.probe", "data": n}))
            .await;
        let got = receiver.wait_for(n, SOON).await;
        let latency = got[n - 1].at - posted;
        eprintln!("event {n}: post to arrival {latency:?}");
        worst = worst.max(latency);
    }
    assert!(
        worst < Duration::from_secs(2),
        "a new event reaches its subscriber within 2 s (worst {worst:?})"
    );
}

#[tokio::test]
async fn hanging_subscriber_does_not_slow_another() {
    let daemon = Daemon::builder()
        .set("delivery", "timeout", "5s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/hang", Reply::hang());
    daemon.add_sub(sub_to(receiver.url("/hang"))).await;
    daemon.add_sub(sub_to(receiver.url("/healthy"))).await;

    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            daemon
                .post_new(&json!({"type": "load.item", "data": n}))
                .await,
        );
    }
    let got = receiver.wait_for_path("/healthy", 20, SOON).await;
    let took = got.last().unwrap().at - started;
    eprintln!("20 events to the healthy subscriber in {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "the healthy subscriber got all 20 in {took:?}, beside a hanging one"
    );
    let mut delivered: Vec<String> = crate::harness::webhook_ids(&got);
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
    assert!(
        !receiver.requests_to("/hang").is_empty(),
        "the hanging subscriber was tried too"
    );
}

#[tokio::test]
async fn paused_subscription_holds_deliveries_until_resumed() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let paused = daemon.sub_action(&sub.id, "pause").await;
    assert_eq!(paused.state, "paused");

    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, body) = daemon
            .post_event(&json!({"type": "held.item", "data": n}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["deliveries"], 1, "a paused sub still gets fan-out");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // Bounded observation window: nothing may arrive within 1 s while paused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        receiver.requests().is_empty(),
        "nothing is delivered while paused: {:?}",
        crate::harness::webhook_ids(&receiver.requests())
    );
    let shown = daemon.subscription(&sub.id).await;
    assert_eq!(shown.state, "paused");
    assert_eq!(shown.pending, 5, "the held deliveries are pending");

    let resumed = daemon.sub_action(&sub.id, "resume").await;
    assert_eq!(resumed.state, "active");
    receiver.wait_for_delivered(&ids, SOON).await;
}

#[tokio::test]
async fn rotated_secret_and_old_secret_both_sign_during_the_overlap() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let mut create = sub_to(receiver.url("/hook"));
    create.secret = Some(GIVEN_SECRET.into());
    let sub = daemon.add_sub(create).await;

    let rotated = daemon.sub_action(&sub.id, "rotate-secret").await;
    let new_secret = rotated
        .secret
        .clone()
        .expect("rotation answers the new secret");
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, GIVEN_SECRET);
    assert_eq!(
        rotated.previous_secrets_until.len(),
        1,
        "the old secret keeps signing until a time: {rotated:?}"
    );

    daemon
        .post_new(&json!({"type": "rotation.check", "data": 1}))
        .await;
    let got = receiver.wait_for(1, SOON).await;
    let signature = got[0].header("webhook-signature").unwrap();
    let entries: Vec<&str> = signature.split(' ').collect();
    assert_eq!(entries.len(), 2, "two signatures: {signature}");
    assert!(entries.iter().all(|e| e.starts_with("v1,")), "{signature}");
    verify_signature(&new_secret, &got[0]).expect("the new secret verifies");
    verify_signature(GIVEN_SECRET, &got[0]).expect("the old secret still verifies");

    let shown = daemon.subscription(&sub.id).await;
    assert_eq!(shown.secret, None, "get does not show the secret");
    let shown: hookd::api::Subscription = daemon
        .get(&format!("/v1/subscriptions/{}?show_secret=true", sub.id))
        .await;
    assert_eq!(shown.secret.as_deref(), Some(new_secret.as_str()));
}

#[tokio::test]
async fn old_secret_stops_signing_after_the_overlap() {
    let daemon = Daemon::builder()
        .set("delivery", "secret_overlap", "1s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    let mut create = sub_to(receiver.url("/hook"));
    create.secret = Some(GIVEN_SECRET.into());
    let sub = daemon.add_sub(create).await;
    let rotated = daemon.sub_action(&sub.id, "rotate-secret").await;
    let new_secret = rotated.secret.unwrap();
    let until = humantime::parse_rfc3339(&rotated.previous_secrets_until[0]).unwrap();

    // Wait until the time the API named; signatures carry whole-second
    // timestamps, so give it one more second past that time.
    let wait =
        until.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(1100);
    tokio::time::sleep(wait).await;
    daemon
        .post_new(&json!({"type": "rotation.after", "data": 1}))
        .await;
    let got = receiver.wait_for(1, SOON).await;
    let signature = got[0].header("webhook-signature").unwrap();
    assert_eq!(
        signature.split(' ').count(),
        1,
        "one signature: {signature}"
    );
    verify_signature(&new_secret, &got[0]).expect("the new secret verifies");
    assert!(verify_signature(GIVEN_SECRET, &got[0]).is_err());
}

#[tokio::test]
async fn redirects_are_not_followed_but_retried_as_failures() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    receiver.script(
        "/moved",
        [Reply::status(302).header("location", &receiver.url("/elsewhere"))],
    );
    daemon.add_sub(sub_to(receiver.url("/moved"))).await;
    let id = daemon
        .post_new(&json!({"type": "redirect.check", "data": 1}))
        .await;
    // The retry comes to the same URL: the redirect was a failed attempt.
    let got = receiver.wait_for_path("/moved", 2, SOON).await;
    assert!(got
        .iter()
        .all(|r| r.header("webhook-id") == Some(id.as_str())));
    assert!(
        receiver.requests_to("/elsewhere").is_empty(),
        "the Location was not followed"
    );
    let delivery = daemon.wait_event_delivery(&id, "delivered").await;
    let log = delivery.attempt_log.unwrap();
    assert_eq!(log[0].status, Some(302));
    assert_eq!(log[1].status, Some(200));
}

#[tokio::test]
async fn timeout_is_a_failed_attempt_and_is_retried() {
    let daemon = Daemon::builder()
        .set("delivery", "timeout", "500ms")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.script("/slow", [Reply::hang()]);
    daemon.add_sub(sub_to(receiver.url("/slow"))).await;
    let id = daemon
        .post_new(&json!({"type": "timeout.check", "data": 1}))
        .await;
    let got = receiver.wait_for_path("/slow", 2, SOON).await;
    let gap = got[1].at - got[0].at;
    // The retry starts at least 500 ms + 270 ms (300 ms less its jitter)
    // after the first attempt started. Arrivals can be a little closer: the
    // first request's trip, connecting included, may take longer than the
    // retry's.
    assert!(
        gap >= Duration::from_millis(500 + 270 - 20),
        "the retry follows the 500 ms timeout and the 300 ms schedule: {gap:?}"
    );
    let delivery = daemon.wait_event_delivery(&id, "delivered").await;
    let log = delivery.attempt_log.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].status, None);
    let error = log[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("timed out"),
        "the timeout is recorded: {error}"
    );
    assert!(log[0].latency_ms >= 450, "{log:?}");
    assert_eq!(log[1].status, Some(200));
}

#[tokio::test]
async fn loopback_is_blocked_unless_allow_networks_covers_it() {
    let daemon = Daemon::builder()
        .set("delivery", "allow_networks", Vec::<String>::new())
        .start()
        .await;
    let receiver = Receiver::start().await;

    // A literal loopback address is refused when the subscription is made.
    let body = json!({"url": receiver.url("/hook")});
    let (status, answer) = daemon
        .admin()
        .request(Method::POST, "/v1/subscriptions", Some(body))
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A name that resolves to loopback is refused when connecting.
    let port = receiver.url("").rsplit(':').next().unwrap().to_string();
    let sub = daemon
        .add_sub(sub_to(format!("http://localhost:{port}/hook")))
        .await;
    let id = daemon
        .post_new(&json!({"type": "ssrf.check", "data": 1}))
        .await;
    let event = daemon.event(&id).await;
    let delivery = wait_until("a failed attempt", SOON, async || {
        let d = daemon.delivery(&event.deliveries[0].id).await;
        if d.attempts >= 1 {
            Ok(d)
        } else {
            Err(format!("{d:?}"))
        }
    })
    .await;
    let error = delivery.last_error.unwrap_or_default();
    assert!(
        error.contains("blocked"),
        "the attempt was blocked: {error}"
    );
    assert_ne!(delivery.status, "delivered");
    assert!(receiver.requests().is_empty(), "nothing reached loopback");
    assert_eq!(daemon.subscription(&sub.id).await.state, "active");
}

#[tokio::test]
async fn max_in_flight_caps_attempts_on_the_wire() {
    let daemon = Daemon::builder()
        .set("delivery", "max_in_flight", 3)
        .set("delivery", "timeout", "30s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/default-cap", Reply::hang());
    receiver.set_default("/own-cap", Reply::hang());
    let default_cap = daemon.add_sub(sub_to(receiver.url("/default-cap"))).await;
    assert_eq!(default_cap.max_in_flight, 3);
    let mut own = sub_to(receiver.url("/own-cap"));
    own.max_in_flight = Some(1);
    daemon.add_sub(own).await;
    for n in 0..6 {
        daemon
            .post_new(&json!({"type": "cap.item", "data": n}))
            .await;
    }
    receiver.wait_for_path("/default-cap", 3, SOON).await;
    receiver.wait_for_path("/own-cap", 1, SOON).await;
    // Bounded observation window: with every attempt hanging, no more start within 1 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests_to("/default-cap").len(), 3);
    assert_eq!(receiver.requests_to("/own-cap").len(), 1);
    let status: hookd::api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.deliveries.in_flight, 4);
}

#[tokio::test]
async fn deliveries_sharing_an_ordering_key_are_attempted_in_order() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    // The head of the lane fails once; the others must wait for it.
    receiver.script("/hook", [Reply::status(500)]);
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            daemon
                .post_new(&json!({"type": "order.step", "ordering_key": "order-1", "data": n}))
                .await,
        );
    }
    let got = receiver.wait_for(4, SOON).await;
    let order = crate::harness::webhook_ids(&got);
    assert_eq!(
        order,
        [ids[0].as_str(), &ids[0], &ids[1], &ids[2]],
        "one at a time, in ingest order, the failed head retried first"
    );
}

#[tokio::test]
async fn subscription_shows_its_attempts_on_the_wire() {
    let daemon = Daemon::builder()
        .set("delivery", "timeout", "30s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/hang", Reply::hang());
    let sub = daemon.add_sub(sub_to(receiver.url("/hang"))).await;
    for n in 0..2 {
        daemon
            .post_new(&json!({"type": "wire.item", "data": n}))
            .await;
    }
    receiver.wait_for(2, SOON).await;
    let status: hookd::api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.deliveries.in_flight, 2, "status sees both");
    let shown = daemon.subscription(&sub.id).await;
    assert_eq!(shown.pending, 2);
    assert_eq!(shown.in_flight, 2, "the subscription sees both: {shown:?}");
}
