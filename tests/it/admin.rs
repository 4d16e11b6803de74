//! The admin socket and API: socket mode, stale and live sockets, the store
//! lock, status, validation and subscription removal.

use crate::harness::{sub_to, Daemon, Receiver, Reply, SOON};
use hookd::api;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

#[tokio::test]
async fn admin_socket_has_mode_0660() {
    let daemon = Daemon::start().await;
    let meta = std::fs::metadata(daemon.socket_path()).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "mode {:o}",
        meta.permissions().mode()
    );
    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    let store = std::fs::metadata(daemon.storage_path()).unwrap();
    assert_eq!(
        store.permissions().mode() & 0o777,
        0o700,
        "the store is private"
    );
}

#[tokio::test]
async fn admin_socket_directory_is_created() {
    let builder = Daemon::builder();
    let socket = builder.dir().join("run/hookd/admin.sock");
    let daemon = builder
        .set("admin", "socket", socket.display().to_string().as_str())
        .start()
        .await;
    assert_eq!(daemon.socket_path(), socket);
    let _: api::Status = daemon.get("/v1/status").await;
}

#[tokio::test]
async fn regular_file_at_the_socket_path_is_refused_not_deleted() {
    let builder = Daemon::builder();
    let path = builder.dir().join("admin.sock");
    std::fs::write(&path, "precious data").unwrap();
    let refused = builder.start_expecting_failure().await;
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains(&path.display().to_string()),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&path).ok().as_deref(),
        Some("precious data"),
        "the file is left alone"
    );
}

#[tokio::test]
async fn stale_socket_file_is_replaced() {
    let builder = Daemon::builder();
    let path = builder.dir().join("admin.sock");
    // A socket file nobody listens on, as a crashed daemon leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let daemon = builder.start().await;
    let status: api::Status = daemon.get("/v1/status").await;
    assert!(status.ingest.accepting);
}

#[tokio::test]
async fn second_daemon_on_a_live_socket_is_refused() {
    let first = Daemon::start().await;
    let socket = first.socket_path().display().to_string();
    let refused = Daemon::builder()
        .set("admin", "socket", socket.as_str())
        .start_expecting_failure()
        .await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused.stderr.contains(&socket),
        "stderr names the socket: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("already running") || refused.stderr.contains("another"),
        "stderr says it is in use: {}",
        refused.stderr
    );
    // The first daemon is untouched.
    let status: api::Status = first.get("/v1/status").await;
    assert!(status.ingest.accepting);
    first
        .post_new(&json!({"type": "still.here", "data": 1}))
        .await;
}

#[tokio::test]
async fn second_daemon_on_a_locked_store_is_refused() {
    let first = Daemon::start().await;
    let storage = first.storage_path().display().to_string();
    let refused = Daemon::builder()
        .set("storage", "path", storage.as_str())
        .start_expecting_failure()
        .await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused.stderr.contains(&storage),
        "stderr names the store path: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("lock"),
        "stderr says it is locked: {}",
        refused.stderr
    );
    first
        .post_new(&json!({"type": "still.here", "data": 1}))
        .await;
    let status: api::Status = first.get("/v1/status").await;
    assert_eq!(status.ingest.events_accepted, 1);
}

#[tokio::test]
async fn locked_store_refusal_says_another_hookd_holds_it() {
    let first = Daemon::start().await;
    let storage = first.storage_path().display().to_string();
    let refused = Daemon::builder()
        .set("storage", "path", storage.as_str())
        .start_expecting_failure()
        .await;
    assert!(
        refused.stderr.contains("another hookd") && refused.stderr.contains("storage.path"),
        "the refusal says who holds the store and what to change: {}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("Os {"),
        "no Debug-formatted OS error: {}",
        refused.stderr
    );
}

#[tokio::test]
async fn status_reports_ingest_store_and_counts() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let paused = daemon.add_sub(sub_to(receiver.url("/paused"))).await;
    daemon.sub_action(&paused.id, "pause").await;
    daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    receiver.wait_for_path("/hook", 1, SOON).await;
    daemon
        .wait_delivery_status(
            &daemon.deliveries(Some(&sub.id), None).await[0].id,
            "delivered",
        )
        .await;

    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.ingest.listen, daemon.ingest_addr().to_string());
    assert!(status.ingest.accepting);
    assert_eq!(status.ingest.reason, None);
    assert_eq!(status.ingest.events_accepted, 1);
    assert_eq!(
        std::path::Path::new(&status.store.path),
        daemon.storage_path()
    );
    assert_eq!(
        (status.subscriptions.active, status.subscriptions.paused),
        (1, 1)
    );
    assert_eq!(status.deliveries.pending, 1, "the paused one waits");
    assert_eq!(status.deliveries.delivered, 1);
}

#[tokio::test]
async fn admin_errors_have_the_json_error_shape() {
    let daemon = Daemon::start().await;
    let admin = daemon.admin();
    let cases = [
        (Method::GET, "/v1/nope", None, StatusCode::NOT_FOUND),
        (
            Method::GET,
            "/v1/subscriptions/sub_missing",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/events/evt_missing",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/deliveries/not-a-delivery",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "ftp://example.com/x"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "http://127.0.0.1:9/x", "secret": "whsec_AAAA"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "http://127.0.0.1:9/x", "headers": ["no colon"]})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "http://127.0.0.1:9/x", "unknown": 1})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/deliveries?status=sideways",
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, body, want) in cases {
        let (status, answer) = admin
            .request(method.clone(), path, body.clone())
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, want, "{method} {path} {body:?}: {text}");
        let error: api::ErrorBody = serde_json::from_slice(&answer)
            .unwrap_or_else(|e| panic!("{method} {path}: not an error body ({e}): {text}"));
        assert!(!error.error.code.is_empty() && !error.error.message.is_empty());
    }
}

#[tokio::test]
async fn removing_a_subscription_cancels_its_open_deliveries() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon.sub_action(&sub.id, "pause").await;
    let id = daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    daemon
        .admin()
        .delete(&format!("/v1/subscriptions/{}", sub.id))
        .await
        .unwrap();

    let (status, _) = daemon
        .admin()
        .request(Method::GET, &format!("/v1/subscriptions/{}", sub.id), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let event = daemon.event(&id).await;
    assert_eq!(event.deliveries[0].status, "cancelled", "{event:?}");
    let (status, body) = daemon.post_event(&json!({"type": "a.b", "data": 2})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["deliveries"], 0, "a removed sub gets no fan-out");
    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.deliveries.pending, 0);
}

#[tokio::test]
async fn an_attempt_on_the_wire_when_its_subscription_is_removed_stays_cancelled() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    // Answers 200, but only after the subscription is gone.
    receiver.script("/hook", [Reply::ok().delay(Duration::from_secs(2))]);
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    receiver.wait_for(1, SOON).await;
    daemon.wait_for_gauge("hookd_deliveries_in_flight", 1).await;
    daemon
        .admin()
        .delete(&format!("/v1/subscriptions/{}", sub.id))
        .await
        .unwrap();

    // The attempt ends (200) and is done with once nothing is in flight.
    daemon.wait_for_gauge("hookd_deliveries_in_flight", 0).await;
    assert_eq!(receiver.requests()[0].answered, 200);
    let event = daemon.event(&id).await;
    let delivery = daemon.delivery(&event.deliveries[0].id).await;
    assert_eq!(delivery.status, "cancelled", "{delivery:?}");
    assert_eq!(delivery.attempts, 0, "{delivery:?}");
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn delivered_events_are_purged_after_the_retention() {
    let daemon = Daemon::builder()
        .set("storage", "retention", "1s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    receiver.wait_for(1, SOON).await;
    daemon.wait_event_delivery(&id, "delivered").await;
    let path = format!("/v1/events/{id}");
    crate::harness::wait_until(
        "the delivered event to be purged",
        std::time::Duration::from_secs(15),
        async || {
            let (status, _) = daemon
                .admin()
                .request(Method::GET, &path, None)
                .await
                .unwrap();
            if status == StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(format!("GET {path} -> {status}"))
            }
        },
    )
    .await;
}
