//! `data` is kept byte-for-byte: odd whitespace, number spellings, escapes,
//! scalars, and payloads larger than the store's chunks.

use crate::harness::{sub_to, Daemon, Receiver, SOON};
use hyper::StatusCode;

/// Splits a delivery body `{"type":T,"timestamp":S,"data":D}` into (T, S, D)
/// by position, without parsing D.
fn split_body(body: &[u8]) -> (String, String, Vec<u8>) {
    let text = std::str::from_utf8(body).expect("the body is UTF-8");
    let rest = text
        .strip_prefix(r#"{"type":""#)
        .unwrap_or_else(|| panic!("body does not start with type: {text}"));
    let (event_type, rest) = rest.split_once('"').expect("type ends");
    let rest = rest
        .strip_prefix(r#","timestamp":""#)
        .unwrap_or_else(|| panic!("timestamp does not follow type: {text}"));
    let (timestamp, rest) = rest.split_once('"').expect("timestamp ends");
    let data = rest
        .strip_prefix(r#","data":"#)
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or_else(|| panic!("data does not follow timestamp: {text}"));
    (
        event_type.to_string(),
        timestamp.to_string(),
        data.as_bytes().to_vec(),
    )
}

#[tokio::test]
async fn data_is_delivered_byte_for_byte() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let data = "{ \"z\" : 1.50,\n\t\"a\":[1 , 2,3.0e0 ],  \"s\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" é\",\r\n \"n\":null ,\"big\":12345678901234567890123 }";
    let body = format!("{{\"id\":\"raw-1\",  \"data\" :  {data}  ,\"type\":\"doc.raw\"}}");
    let answer = daemon.post_raw("/v1/events", body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());

    let delivered = receiver.wait_for(1, SOON).await;
    let request = &delivered[0];
    let (event_type, timestamp, got) = split_body(&request.body);
    assert_eq!(event_type, "doc.raw");
    assert!(
        humantime::parse_rfc3339(&timestamp).is_ok(),
        "timestamp {timestamp:?} is RFC 3339"
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        data,
        "data must be the posted bytes exactly"
    );
    crate::harness::verify_signature(sub.secret.as_deref().unwrap(), request).unwrap();

    // The admin API shows the same bytes.
    let stored = daemon.event("raw-1").await;
    assert_eq!(stored.data.expect("data").get(), data);

    // Scalars and strings as data, too.
    for (n, data) in ["1.50", "\"\\u00e9\"", "[ ]", "false"].iter().enumerate() {
        let body = format!(r#"{{"type":"doc.scalar","data":{data}}}"#);
        let answer = daemon.post_raw("/v1/events", body).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
        let delivered = receiver.wait_for(n + 2, SOON).await;
        let (_, _, got) = split_body(&delivered[n + 1].body);
        assert_eq!(String::from_utf8_lossy(&got), *data);
    }
}

#[tokio::test]
async fn large_data_spanning_store_chunks_is_delivered_intact() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    // 200 KB: several of the store's chunks, and over sled's blob threshold.
    let items: Vec<String> = (0..20_000).map(|i| format!("{i:08}")).collect();
    let data = format!("[\"{}\"]", items.join("\", \""));
    assert!(data.len() > 200_000);
    let body = format!(r#"{{"type":"doc.big","id":"big-1","data":{data}}}"#);
    let answer = daemon.post_raw("/v1/events", body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let delivered = receiver.wait_for(1, SOON).await;
    let (_, _, got) = split_body(&delivered[0].body);
    assert_eq!(got.len(), data.len());
    assert!(got == data.as_bytes(), "200 KB of data arrive unchanged");
}

#[tokio::test]
async fn null_data_is_accepted_and_delivered_as_null() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let answer = daemon
        .post_raw("/v1/events", r#"{"type":"a.b","id":"null-1","data":null}"#)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let delivered = receiver.wait_for(1, SOON).await;
    let (_, _, data) = split_body(&delivered[0].body);
    assert_eq!(data, b"null");
    // Absent data is still refused.
    let answer = daemon.post_raw("/v1/events", r#"{"type":"a.b"}"#).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
}
