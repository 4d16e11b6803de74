//! The ingest API contract for single events: answers, error codes, tokens,
//! limits, health and metrics, idempotency, the disk budget.

use crate::harness::{error_message, http, sub_to, wait_until, Daemon, Receiver, SOON};
use hookd::api;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn new_event_gets_202_with_generated_id_and_delivery_count() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    for (path, pattern) in [("/a", "invoice.paid"), ("/b", "invoice.*")] {
        let mut sub = sub_to(receiver.url(path));
        sub.events = vec![pattern.into()];
        daemon.add_sub(sub).await;
    }
    let mut other = sub_to(receiver.url("/other"));
    other.events = vec!["other.type".into()];
    daemon.add_sub(other).await;

    let (status, body) = daemon
        .post_event(&json!({"type": "invoice.paid", "data": {"n": 1}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().expect("an id");
    let ulid = id
        .strip_prefix("evt_")
        .expect("generated ids start with evt_");
    assert_eq!(ulid.len(), 26, "evt_ + a 26-char ULID: {id}");
    assert_eq!(body["deliveries"], 2, "{body}");
    assert!(body.get("duplicate").is_none(), "{body}");

    let (status, body) = daemon
        .post_event(&json!({"type": "nobody.listens", "data": []}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["deliveries"], 0,
        "an event nobody subscribes to: {body}"
    );
}

#[tokio::test]
async fn repeated_id_is_a_200_duplicate_and_stored_once() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let event = json!({"type": "order.created", "id": "order-42", "data": {"n": 1}});

    let (status, first) = daemon.post_event(&event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first, json!({"id": "order-42", "deliveries": 1}));

    // Same id, different data: still the first event.
    let again = json!({"type": "order.created", "id": "order-42", "data": {"n": 2}});
    let (status, second) = daemon.post_event(&again).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        second,
        json!({"id": "order-42", "deliveries": 1, "duplicate": true})
    );

    let events = daemon.events().await;
    assert_eq!(events.len(), 1, "one event stored: {events:?}");
    let stored = daemon.event("order-42").await;
    assert_eq!(stored.data.expect("data").get(), r#"{"n":1}"#);
    let delivered = receiver.wait_for(1, SOON).await;
    assert_eq!(delivered[0].json()["data"], json!({"n": 1}));
}

#[tokio::test]
async fn invalid_events_are_400_with_json_error_and_nothing_stored() {
    let daemon = Daemon::start().await;
    let long_type = "t".repeat(129);
    let long_id = "i".repeat(129);
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "bad JSON"),
        ("[1,2]".into(), "not an object"),
        (r#"{"data":1}"#.into(), "missing type"),
        (r#"{"type":"","data":1}"#.into(), "empty type"),
        (r#"{"type":"has space","data":1}"#.into(), "type charset"),
        (r#"{"type":"a/b","data":1}"#.into(), "type charset"),
        (
            format!(r#"{{"type":"{long_type}","data":1}}"#),
            "type of 129 chars",
        ),
        (r#"{"type":"a.b"}"#.into(), "missing data"),
        (r#"{"type":"a.b","data":1,"id":""}"#.into(), "empty id"),
        (r#"{"type":"a.b","data":1,"id":"a b"}"#.into(), "id charset"),
        (
            format!(r#"{{"type":"a.b","data":1,"id":"{long_id}"}}"#),
            "id of 129 chars",
        ),
        (
            r#"{"type":"a.b","data":1,"id":7}"#.into(),
            "id not a string",
        ),
        (
            r#"{"type":"a.b","data":1,"tenant":""}"#.into(),
            "empty tenant",
        ),
        (
            r#"{"type":"a.b","data":1,"tenant":"acme/eu"}"#.into(),
            "tenant charset",
        ),
        (
            r#"{"type":"hookd.subscription.disabled","data":1}"#.into(),
            "reserved hookd. type",
        ),
        (
            r#"{"type":"hookd.x","data":1}"#.into(),
            "reserved hookd. type",
        ),
    ];
    for (body, why) in &cases {
        let answer = daemon.post_raw("/v1/events", body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{why}: {body} -> {}",
            answer.text()
        );
        error_message(&answer.json());
    }
    let reserved = daemon
        .post_raw("/v1/events", r#"{"type":"hookd.x","data":1}"#)
        .await;
    assert!(
        error_message(&reserved.json()).contains("hookd."),
        "the refusal names the reserved prefix: {}",
        reserved.text()
    );
    assert!(
        daemon.events().await.is_empty(),
        "no refused event is stored"
    );

    // The limits themselves are allowed.
    let max = json!({"type": "t".repeat(128), "id": "i".repeat(128), "tenant": "T".repeat(128), "data": 1});
    let (status, body) = daemon.post_event(&max).await;
    assert_eq!(status, StatusCode::ACCEPTED, "128-char fields: {body}");
    let charset = json!({"type": "Az09_.:-", "id": "Az09_.:-", "tenant": "Az09_.:-", "ordering_key": "Az09_.:-", "data": 1});
    let (status, body) = daemon.post_event(&charset).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the whole charset: {body}");
}

#[tokio::test]
async fn tokens_are_required_when_configured() {
    let daemon = Daemon::builder()
        .set("ingest", "tokens", vec!["secret-token"])
        .start()
        .await;
    let event = r#"{"type":"a.b","data":1}"#;
    let json = ("content-type", "application/json");
    let cases: [(&[(&str, &str)], StatusCode); 5] = [
        (&[json], StatusCode::UNAUTHORIZED),
        (
            &[json, ("authorization", "Bearer wrong-token")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            &[json, ("authorization", "Bearer secret-token-but-longer")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            &[json, ("authorization", "Basic c2VjcmV0LXRva2Vu")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            &[json, ("authorization", "Bearer secret-token")],
            StatusCode::ACCEPTED,
        ),
    ];
    for (headers, want) in cases {
        let answer = daemon
            .ingest(Method::POST, "/v1/events", headers, event)
            .await;
        assert_eq!(answer.status, want, "{headers:?}: {}", answer.text());
        if want == StatusCode::UNAUTHORIZED {
            error_message(&answer.json());
        }
    }
    assert_eq!(daemon.events().await.len(), 1, "only the authorized event");
}

#[tokio::test]
async fn body_over_max_body_is_413() {
    let daemon = Daemon::builder()
        .set("ingest", "max_body", "1KiB")
        .start()
        .await;
    let event = |len: usize| format!(r#"{{"type":"a.b","data":"{}"}}"#, "x".repeat(len));
    let big = daemon.post_raw("/v1/events", event(2048)).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.text());
    error_message(&big.json());
    let batch = daemon
        .post_raw("/v1/events/batch", format!("[{}]", event(2048)))
        .await;
    assert_eq!(
        batch.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        batch.text()
    );

    // Without a Content-Length the limit holds too.
    let body = event(2048);
    let chunked = format!(
        "POST /v1/events HTTP/1.1\r\nhost: hookd\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (answer, _) = http::raw_exchange(daemon.ingest_addr(), chunked.as_bytes(), SOON)
        .await
        .expect("the daemon answers and closes");
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "a chunked body over max_body: {answer}"
    );

    let fits = daemon.post_raw("/v1/events", event(900)).await;
    assert_eq!(fits.status, StatusCode::ACCEPTED, "{}", fits.text());
    assert_eq!(daemon.events().await.len(), 1);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let daemon = Daemon::start().await;
    let event = r#"{"type":"a.b","data":1}"#;
    for headers in [
        &[("content-type", "text/plain")][..],
        &[("content-type", "application/x-www-form-urlencoded")][..],
        &[][..],
    ] {
        let answer = daemon
            .ingest(Method::POST, "/v1/events", headers, event)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{headers:?}: {}",
            answer.text()
        );
        error_message(&answer.json());
    }
    let with_charset = daemon
        .ingest(
            Method::POST,
            "/v1/events",
            &[("content-type", "application/json; charset=utf-8")],
            event,
        )
        .await;
    assert_eq!(
        with_charset.status,
        StatusCode::ACCEPTED,
        "{}",
        with_charset.text()
    );
}

#[tokio::test]
async fn unknown_path_is_404_and_health_and_metrics_answer() {
    let daemon = Daemon::start().await;
    let missing = daemon.ingest(Method::GET, "/nope", &[], "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    error_message(&missing.json());
    let missing = daemon.post_raw("/v1/event", "{}").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());

    let health = daemon.ingest(Method::GET, "/healthz", &[], "").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());

    daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    let metrics = daemon.ingest(Method::GET, "/metrics", &[], "").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let content_type = metrics.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain"),
        "Prometheus text format: {content_type}"
    );
    let text = metrics.text();
    let accepted = text
        .lines()
        .find(|l| l.starts_with("hookd_events_accepted_total"))
        .unwrap_or_else(|| panic!("no hookd_events_accepted_total in:\n{text}"));
    assert_eq!(accepted, "hookd_events_accepted_total 1", "{text}");
}

#[tokio::test]
async fn idempotency_survives_a_restart() {
    let mut daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let event = json!({"type": "order.created", "id": "order-7", "data": {}});
    let (status, body) = daemon.post_event(&event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    receiver.wait_for(1, SOON).await;

    let exit = daemon.sigterm().await;
    assert!(exit.success(), "SIGTERM exits 0: {exit}");
    daemon.restart().await;
    let (status, body) = daemon.post_event(&event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"id": "order-7", "deliveries": 1, "duplicate": true})
    );

    daemon.kill9().await;
    daemon.restart().await;
    let (status, body) = daemon.post_event(&event).await;
    assert_eq!(status, StatusCode::OK, "after kill -9 too: {body}");
    assert_eq!(daemon.events().await.len(), 1);
}

#[tokio::test]
async fn public_listen_without_tokens_refuses_to_start() {
    let refused = Daemon::builder()
        .set("ingest", "listen", "0.0.0.0:0")
        .start_expecting_failure()
        .await;
    assert!(!refused.status.success(), "{:?}", refused);
    assert!(
        refused.stderr.contains("ingest.tokens"),
        "stderr names ingest.tokens: {}",
        refused.stderr
    );
}

#[tokio::test]
async fn duplicate_answer_keeps_the_original_count_after_a_redeliver() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let event = json!({"type": "a.b", "id": "retry-me", "data": 1});
    let (_, first) = daemon.post_event(&event).await;
    assert_eq!(first["deliveries"], 1);
    receiver.wait_for(1, SOON).await;
    daemon.wait_event_delivery("retry-me", "delivered").await;
    daemon.cli_ok(&["event", "redeliver", "retry-me"]).await;
    receiver.wait_for(2, SOON).await;

    let (status, again) = daemon.post_event(&event).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again,
        json!({"id": "retry-me", "deliveries": 1, "duplicate": true}),
        "the client's retry is answered like the original post"
    );
}

#[tokio::test]
async fn concurrent_posts_of_one_id_accept_exactly_one() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let addr = daemon.ingest_addr();
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..16 {
        let body = json!({"type": "race.item", "id": "race-1", "data": n}).to_string();
        posts.spawn(async move {
            http::request(
                addr,
                Method::POST,
                "/v1/events",
                &[("content-type", "application/json")],
                body,
            )
            .await
        });
    }
    let mut statuses = Vec::new();
    while let Some(answer) = posts.join_next().await {
        statuses.push(answer.unwrap().status);
    }
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let duplicates = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((accepted, duplicates), (1, 15), "{statuses:?}");
    assert_eq!(daemon.events().await.len(), 1);
    let event = daemon.event("race-1").await;
    assert_eq!(event.deliveries.len(), 1, "{event:?}");
}

#[tokio::test]
async fn many_ids_posted_many_times_at_once_are_each_accepted_once() {
    // 400 requests in flight together: many are looked up before the round
    // that stores their id is visible, and must still come out duplicates.
    let daemon = Daemon::start().await;
    let addr = daemon.ingest_addr();
    let mut posts = tokio::task::JoinSet::new();
    for copy in 0..8 {
        for n in 0..50 {
            let body = json!({"type": "race.item", "id": format!("race-{n}"), "data": copy});
            let body = body.to_string();
            posts.spawn(async move {
                let answer = http::request(
                    addr,
                    Method::POST,
                    "/v1/events",
                    &[("content-type", "application/json")],
                    body,
                )
                .await;
                (n, answer.status)
            });
        }
    }
    let mut accepted = vec![0; 50];
    let mut duplicates = 0;
    while let Some(answer) = posts.join_next().await {
        match answer.unwrap() {
            (n, StatusCode::ACCEPTED) => accepted[n] += 1,
            (_, StatusCode::OK) => duplicates += 1,
            (n, other) => panic!("race-{n}: {other}"),
        }
    }
    assert!(accepted.iter().all(|&a| a == 1), "{accepted:?}");
    assert_eq!(duplicates, 350);
    assert_eq!(daemon.events().await.len(), 50);
}

#[tokio::test]
async fn over_the_disk_budget_ingest_answers_503_with_retry_after() {
    let daemon = Daemon::builder()
        .set("storage", "max_disk", "1KiB")
        .start()
        .await;
    // An empty store is under 1 KiB; one 4 KB event takes it over.
    let first = json!({"type": "a.b", "id": "fills-it", "data": "x".repeat(4096)});
    let (status, body) = daemon.post_event(&first).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The budget is checked in the background: wait until status reports it.
    let status: api::Status = wait_until("ingest to stop accepting", SOON, async || {
        let status: api::Status = daemon.get("/v1/status").await;
        if status.ingest.accepting {
            Err(format!("{:?}", status.ingest))
        } else {
            Ok(status)
        }
    })
    .await;
    let reason = status.ingest.reason.unwrap_or_default();
    assert!(
        reason.contains("max_disk"),
        "the reason names the key: {reason}"
    );

    let answer = daemon
        .post_raw("/v1/events", r#"{"type":"a.b","data":1}"#)
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    assert!(
        answer.headers.contains_key("retry-after"),
        "{:?}",
        answer.headers
    );
    error_message(&answer.json());
    assert_eq!(daemon.events().await.len(), 1, "nothing more was stored");
}

#[tokio::test]
async fn slow_request_headers_are_cut_off_after_header_timeout() {
    let daemon = Daemon::builder()
        .set("ingest", "header_timeout", "500ms")
        .start()
        .await;
    let started = Instant::now();
    let closed = http::raw_exchange(
        daemon.ingest_addr(),
        b"POST /v1/events HTTP/1.1\r\nhost: hookd\r\n",
        SOON,
    )
    .await;
    let (_, at) = closed.expect("the daemon closes a connection whose headers never end");
    let took = at - started;
    assert!(
        took >= Duration::from_millis(400),
        "not before the header timeout: {took:?}"
    );
    // A normal request right after is served.
    let health = daemon.ingest(Method::GET, "/healthz", &[], "").await;
    assert_eq!(health.status, StatusCode::OK);
}

/// Sends `request` on a new connection; the status line and headers of the answer.
async fn raw_answer_head(daemon: &Daemon, request: &[u8]) -> String {
    let mut stream = sent(daemon, request).await;
    read_until(&mut stream, "\r\n\r\n").await
}

/// A connection to ingest on which `request` (or its start) has been sent.
async fn sent(daemon: &Daemon, request: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(daemon.ingest_addr())
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Reads from `stream` until what arrived contains `wanted`; all of it.
async fn read_until(stream: &mut tokio::net::TcpStream, wanted: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(wanted) {
        let n = tokio::time::timeout(SOON, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} within {SOON:?}"))
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn requests_past_the_in_flight_budget_wait_unread_and_are_taken_when_room_frees() {
    use tokio::io::AsyncWriteExt;
    let daemon = Daemon::builder()
        .set("ingest", "max_in_flight_bytes", "4KiB")
        .start()
        .await;
    let receiver = Receiver::start().await;
    daemon.add_sub(sub_to(receiver.url("/held"))).await;

    // A client announces a 3,000-byte batch and sends only its start: it
    // holds 3 KiB of the 4 KiB while the rest of its body is awaited.
    let events: Vec<_> = (0..25)
        .map(|n| json!({"type": "room.test", "id": format!("slow-{n}"), "data": {"pad": "x".repeat(20)}}))
        .collect();
    let mut body = serde_json::to_string(&events).unwrap();
    assert!(body.len() < 3000, "{}", body.len());
    body.push_str(&" ".repeat(3000 - body.len()));
    let head = format!(
        "POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut slow = sent(&daemon, head.as_bytes()).await;
    slow.write_all(&body.as_bytes()[..100]).await.unwrap();
    daemon
        .wait_for_gauge("hookd_ingest_in_flight_bytes", 3072)
        .await;

    // A small event still fits beside it.
    let (status, answer) = daemon
        .post_event(&json!({"type": "room.test", "id": "small", "data": {}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // A chunked event takes room for what it turns out to be, not max_body.
    let event = r#"{"type":"room.test","id":"chunked","data":{}}"#;
    let chunked = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n0\r\n\r\n",
        event.len()
    );
    let head = raw_answer_head(&daemon, chunked.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    // A body declared over max_body is refused at once, not after a wait for room.
    let huge = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 2000000\r\n\r\n";
    let head = raw_answer_head(&daemon, huge.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // A 2 KiB batch does not fit: it waits, unanswered, for room.
    let late: Vec<_> = (0..20)
        .map(|n| json!({"type": "room.test", "id": format!("late-{n}"), "data": {"pad": "y".repeat(40)}}))
        .collect();
    let late_body = json!(late).to_string();
    assert!(
        (1025..=2048).contains(&late_body.len()),
        "{}",
        late_body.len()
    );
    let addr = daemon.ingest_addr();
    let waiting = tokio::spawn(async move {
        http::request(
            addr,
            Method::POST,
            "/v1/events/batch",
            &[("content-type", "application/json")],
            late_body,
        )
        .await
    });
    daemon
        .wait_for_gauge("hookd_ingest_waiting_requests", 1)
        .await;
    // A waiter that hangs up keeps no room.
    let quitter_head = "POST /v1/events/batch HTTP/1.1\r\nHost: x\r\n\
                        Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n";
    let quitter = sent(&daemon, quitter_head.as_bytes()).await;
    daemon
        .wait_for_gauge("hookd_ingest_waiting_requests", 2)
        .await;
    // hyper notices only when it reads the body: once room frees.
    drop(quitter);
    assert!(!waiting.is_finished(), "answered while the room was held");
    // First come, first served: the waiter has reserved the free KiB.
    assert_eq!(daemon.gauge("hookd_ingest_in_flight_bytes").await, 4096);

    // Once the slow body arrives, both batches are stored, and the room comes back.
    slow.write_all(&body.as_bytes()[100..]).await.unwrap();
    let text = read_until(&mut slow, "slow-24").await;
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    let late_answer = waiting.await.unwrap();
    assert_eq!(
        late_answer.status,
        StatusCode::ACCEPTED,
        "{}",
        late_answer.text()
    );
    // Neither goes up again once both are down.
    daemon
        .wait_for_gauge("hookd_ingest_waiting_requests", 0)
        .await;
    daemon
        .wait_for_gauge("hookd_ingest_in_flight_bytes", 0)
        .await;

    let ids: Vec<String> = (0..25)
        .map(|n| format!("slow-{n}"))
        .chain((0..20).map(|n| format!("late-{n}")))
        .chain(["small".to_string(), "chunked".to_string()])
        .collect();
    for id in &ids {
        assert_eq!(&daemon.event(id).await.id, id);
    }
    receiver.wait_for_delivered(&ids, SOON).await;
}

#[tokio::test]
async fn a_chunked_body_takes_room_as_it_arrives_and_waits_unread_when_there_is_none() {
    use tokio::io::AsyncWriteExt;
    let daemon = Daemon::builder()
        .set("ingest", "max_in_flight_bytes", "4KiB")
        .start()
        .await;
    // An event whose body arrives in two chunks, the first of `first` bytes.
    let chunks = |id: &str, first: usize| {
        let event = json!({"type": "room.test", "id": id, "data": {"pad": "x".repeat(first)}});
        let event = event.to_string();
        let (a, b) = event.split_at(first);
        let head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        (
            format!("{head}{:x}\r\n{a}\r\n", a.len()),
            format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()),
        )
    };
    // A client sends 3,000 bytes of a chunked body and stops: it holds the
    // 3 KiB it sent, not max_body and not nothing.
    let (start, rest) = chunks("chunked-a", 3000);
    let a = sent(&daemon, start.as_bytes()).await;
    daemon
        .wait_for_gauge("hookd_ingest_in_flight_bytes", 3072)
        .await;
    // Another's 2,000 bytes do not fit beside it: it waits, its body unread.
    let (b_start, b_rest) = chunks("chunked-b", 2000);
    let b = sent(&daemon, b_start.as_bytes()).await;
    daemon
        .wait_for_gauge("hookd_ingest_waiting_requests", 1)
        .await;
    // The first is answered once its body ends; its room goes to the second.
    let accepted = |mut stream: tokio::net::TcpStream, rest: String, id: &'static str| async move {
        stream.write_all(rest.as_bytes()).await.unwrap();
        let answer = read_until(&mut stream, id).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    };
    accepted(a, rest, "chunked-a").await;
    daemon
        .wait_for_gauge("hookd_ingest_waiting_requests", 0)
        .await;
    accepted(b, b_rest, "chunked-b").await;
    daemon
        .wait_for_gauge("hookd_ingest_in_flight_bytes", 0)
        .await;
    for id in ["chunked-a", "chunked-b"] {
        assert_eq!(daemon.event(id).await.id, id);
    }
}
