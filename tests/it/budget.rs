//! `storage.max_disk`: past the budget ingest answers 503 with `Retry-After`
//! and `status` says why; once retention has purged delivered events, ingest
//! accepts again. Nothing acknowledged is evicted to make room.

use crate::harness::load::try_request;
use crate::harness::tally::{TallyReceiver, SECRET};
use crate::harness::{sub_to, wait_until, Daemon};
use hookd::api;
use hyper::{Method, StatusCode};
use std::time::{Duration, Instant};

#[tokio::test]
async fn over_the_disk_budget_ingest_is_refused_until_retention_frees_space() {
    let receiver = TallyReceiver::start().await;
    // A fresh store is under 1 KiB; the first few hundred events take it past this.
    let daemon = Daemon::builder()
        .set("storage", "max_disk", "256KiB")
        .set("storage", "retention", "1s")
        .start()
        .await;
    let mut sub = sub_to(receiver.url("/hook"));
    sub.secret = Some(SECRET.into());
    daemon.add_sub(sub).await;
    let before: api::Status = daemon.get("/v1/status").await;
    assert!(before.ingest.accepting, "{:?}", before.ingest);

    let pad = "b".repeat(2000);
    let post = |n: usize| {
        let body = format!(r#"{{"type":"budget.fill","id":"b-{n}","data":{{"pad":"{pad}"}}}}"#);
        try_request(
            daemon.ingest_addr(),
            Method::POST,
            "/v1/events",
            body,
            Duration::from_secs(10),
        )
    };
    let mut acked = Vec::new();
    let started = Instant::now();
    let refusal = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no refusal after {} events: {:?}",
            acked.len(),
            daemon.get::<api::Status>("/v1/status").await.store
        );
        let n = acked.len();
        let answer = post(n).await.expect("ingest answers");
        match answer.status {
            StatusCode::ACCEPTED => acked.push(format!("b-{n}")),
            StatusCode::SERVICE_UNAVAILABLE => break answer,
            other => panic!("posting b-{n}: {other} {}", answer.text()),
        }
    };
    let retry_after = refusal
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap());
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok()),
        "{:?}",
        refusal.headers
    );
    let error = &refusal.json()["error"];
    assert_eq!(error["code"], "unavailable", "{}", refusal.text());
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("storage.max_disk")),
        "{}",
        refusal.text()
    );
    let status: api::Status = daemon.get("/v1/status").await;
    assert!(!status.ingest.accepting, "{:?}", status.ingest);
    assert!(
        status
            .ingest
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("disk budget")),
        "{:?}",
        status.ingest
    );
    println!(
        "budget: refused after {} events; store {} bytes on disk, budget {}",
        acked.len(),
        status.store.size_bytes,
        status.store.max_disk_bytes
    );

    // The receiver takes everything, retention purges it, ingest reopens.
    receiver
        .wait_delivered("/hook", &acked, Duration::from_secs(30))
        .await;
    let reopened = wait_until(
        "ingest accepting again",
        Duration::from_secs(30),
        || async {
            let s: api::Status = daemon.get("/v1/status").await;
            match s.ingest.accepting {
                true => Ok(s),
                false => Err(format!("{:?} {:?}", s.ingest.reason, s.store)),
            }
        },
    )
    .await;
    println!(
        "budget: accepting again with {} bytes on disk, {} pending",
        reopened.store.size_bytes, reopened.deliveries.pending
    );
    let again = post(acked.len() + 1).await.expect("ingest answers");
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text());
    let tally = receiver.tally("/hook");
    assert!(
        tally.bad_signatures.is_empty(),
        "{:?}",
        tally.bad_signatures
    );
}
