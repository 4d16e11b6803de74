//! SIGTERM: ingest stops taking events (503), attempts on the wire get
//! `delivery.shutdown_grace` to finish, the store is flushed, the exit code
//! is 0, and an attempt the grace period cut off is made again after restart.

use crate::harness::{sub_to, Daemon, Receiver, Reply, SOON};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn sigterm_refuses_ingest_cuts_off_a_hanging_attempt_after_the_grace_and_exits_0() {
    let mut daemon = Daemon::builder()
        .set("delivery", "shutdown_grace", "1s")
        .set("delivery", "timeout", "30s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::hang()]);
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon
        .post_new(&json!({"type": "order.created", "data": {"n": 1}}))
        .await;
    receiver.wait_for_path("/hook", 1, SOON).await;

    // A client that has connected and begun its request when the signal comes.
    let mut late = tokio::net::TcpStream::connect(daemon.ingest_addr())
        .await
        .unwrap();
    let body = r#"{"type":"order.created","data":{"n":2}}"#;
    late.write_all(
        b"POST /v1/events HTTP/1.1\r\nhost: hookd\r\ncontent-type: application/json\r\n",
    )
    .await
    .unwrap();
    // Let the daemon accept it before it stops accepting.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    let pid = rustix::process::Pid::from_raw(daemon.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    crate::harness::wait_until("the daemon to start shutting down", SOON, || async {
        match daemon.log().contains("shutting down: refusing new events") {
            true => Ok(()),
            false => Err("not yet".to_string()),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    late.write_all(format!("content-length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SOON, late.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(
        answer.starts_with("http/1.1 503"),
        "a request during shutdown is refused: {answer:?}"
    );
    assert!(answer.contains("retry-after:"), "{answer}");
    assert!(answer.contains(r#""code":"unavailable""#), "{answer}");
    // And nobody new gets in at all.
    let fresh = crate::harness::load::try_request(
        daemon.ingest_addr(),
        hyper::Method::POST,
        "/v1/events",
        body,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        fresh.as_ref().map_or(true, |a| a.status == 503),
        "a new connection during shutdown: {fresh:?}"
    );

    let status = daemon.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit {status}; log:\n{}", daemon.log());
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "shutdown waited about the 1s grace for the hanging attempt: {took:?}"
    );
    assert!(
        daemon.log().contains("cut off"),
        "the cut-off attempt is logged:\n{}",
        daemon.log()
    );

    // The receiver answers now; the cut-off attempt is made again.
    daemon.restart().await;
    let requests = receiver.wait_for_path("/hook", 2, SOON).await;
    assert!(requests
        .iter()
        .all(|r| r.header("webhook-id") == Some(id.as_str())));
    let event = daemon.event(&id).await;
    let delivery = &event.deliveries[0];
    crate::harness::wait_until("the retried delivery delivered", SOON, || async {
        let d = daemon.delivery(&delivery.id).await;
        match d.status.as_str() {
            "delivered" => Ok(()),
            _ => Err(format!("{d:?}")),
        }
    })
    .await;
    // The request that was refused during shutdown was not stored.
    assert_eq!(daemon.events().await.len(), 1);
}
