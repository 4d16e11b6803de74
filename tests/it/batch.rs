//! Batches: one result per event, all-or-nothing, duplicates, the size limit.

use crate::harness::{error_message, sub_to, Daemon, Receiver, SOON};
use hyper::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn batch_is_accepted_with_one_result_per_event() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let (status, body) = daemon
        .post_batch(&json!([
            {"type": "a.one", "data": 1, "id": "b-1"},
            {"type": "a.two", "data": 2},
            {"type": "a.three", "data": 3, "tenant": "acme"},
        ]))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let results = body.as_array().expect("an array of results");
    assert_eq!(results.len(), 3, "{body}");
    assert_eq!(results[0], json!({"id": "b-1", "deliveries": 1}));
    assert!(results[1]["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(results[1]["deliveries"], 1);
    assert_eq!(
        results[2]["deliveries"], 0,
        "a tenant event does not reach an untenanted subscription"
    );
    let delivered = receiver.wait_for(2, SOON).await;
    let mut types: Vec<String> = delivered
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["a.one", "a.two"]);
}

#[tokio::test]
async fn batch_with_one_bad_event_stores_none() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let (status, body) = daemon
        .post_batch(&json!([
            {"type": "a.one", "data": 1, "id": "good-1"},
            {"type": "bad type", "data": 2},
            {"type": "a.three", "data": 3, "id": "good-3"},
        ]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = error_message(&body);
    assert!(
        message.contains("events[1]"),
        "the error names the bad event: {message}"
    );
    assert!(
        daemon.events().await.is_empty(),
        "nothing of the batch is stored"
    );

    // The good ids were not consumed: posting them now is new, not a duplicate.
    let (status, body) = daemon
        .post_event(&json!({"type": "a.one", "data": 1, "id": "good-1"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (status, body) = daemon.post_batch(&json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty batch: {body}");
    let (status, body) = daemon
        .post_batch(&json!({"type": "a.one", "data": 1}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a batch must be an array: {body}"
    );
}

#[tokio::test]
async fn duplicates_inside_a_batch_and_against_stored_events() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    daemon
        .post_new(&json!({"type": "a.b", "data": 0, "id": "before"}))
        .await;
    let (status, body) = daemon
        .post_batch(&json!([
            {"type": "a.b", "data": 1, "id": "x"},
            {"type": "a.b", "data": 2, "id": "x"},
            {"type": "a.b", "data": 3, "id": "before"},
            {"type": "a.b", "data": 4, "id": "y"},
        ]))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!([
            {"id": "x", "deliveries": 1},
            {"id": "x", "deliveries": 1, "duplicate": true},
            {"id": "before", "deliveries": 1, "duplicate": true},
            {"id": "y", "deliveries": 1},
        ])
    );
    let mut ids: Vec<String> = daemon.events().await.into_iter().map(|e| e.id).collect();
    ids.sort();
    assert_eq!(ids, ["before", "x", "y"]);
    assert_eq!(
        daemon.event("x").await.data.unwrap().get(),
        "1",
        "the first copy in the batch wins"
    );
    let delivered = receiver.wait_for(3, SOON).await;
    assert_eq!(delivered.len(), 3, "one delivery per distinct event");
}

#[tokio::test]
async fn batch_of_more_than_1000_is_refused() {
    let daemon = Daemon::start().await;
    let batch = |n: usize| {
        let events: Vec<Value> = (0..n)
            .map(|i| json!({"type": "bulk.item", "data": i}))
            .collect();
        Value::Array(events)
    };
    let (status, body) = daemon.post_batch(&batch(1001)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("1000"), "{body}");
    assert!(daemon.events().await.is_empty());

    let (status, body) = daemon.post_batch(&batch(1000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "1000 is allowed");
    assert_eq!(body.as_array().map(Vec::len), Some(1000));
    assert_eq!(daemon.events().await.len(), 1000);
}
