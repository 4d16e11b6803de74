//! The matching contract: event patterns and tenants decide who gets what.

use crate::harness::{sub_to, Daemon, Receiver, Recorded, SOON};
use hyper::{Method, StatusCode};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// For each event id, the set of receiver paths it was delivered to.
fn who_got_what(requests: &[Recorded]) -> BTreeMap<String, BTreeSet<String>> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in requests {
        let id = r.header("webhook-id").expect("webhook-id").to_string();
        map.entry(id).or_default().insert(r.path.clone());
    }
    map
}

fn paths(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|p| p.to_string()).collect()
}

/// Posts each (id, event) and checks the `deliveries` count of the answer;
/// then waits for every expected delivery and checks who got each event.
async fn post_and_check(
    daemon: &Daemon,
    receiver: &Receiver,
    cases: &[(serde_json::Value, &[&str])],
) {
    let mut expected = BTreeMap::new();
    let mut total = 0;
    for (event, want) in cases {
        let (status, body) = daemon.post_event(event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{event}: {body}");
        assert_eq!(
            body["deliveries"],
            want.len(),
            "deliveries of {event} (expected {want:?}): {body}"
        );
        let id = body["id"].as_str().unwrap().to_string();
        if !want.is_empty() {
            expected.insert(id, paths(want));
        }
        total += want.len();
    }
    let got = receiver.wait_for(total, SOON).await;
    assert_eq!(who_got_what(&got), expected);
    for r in &got {
        let body = r.json();
        let event = cases
            .iter()
            .find(|(e, _)| e["id"] == r.header("webhook-id").unwrap())
            .map(|(e, _)| e)
            .expect("a delivery of a posted event");
        assert_eq!(body["type"], event["type"], "{}", r.path);
    }
}

#[tokio::test]
async fn patterns_exact_prefix_star_and_empty() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    for (path, events) in [
        ("/exact", vec!["invoice.paid"]),
        ("/prefix", vec!["invoice.*"]),
        ("/star", vec!["*"]),
        ("/empty", vec![]),
        ("/two", vec!["user.created", "invoice.refunded"]),
    ] {
        let mut sub = sub_to(receiver.url(path));
        sub.events = events.into_iter().map(String::from).collect();
        daemon.add_sub(sub).await;
    }
    let all = ["/star", "/empty"];
    let cases: Vec<(serde_json::Value, &[&str])> = vec![
        (
            json!({"id": "e1", "type": "invoice.paid", "data": 1}),
            &["/exact", "/prefix", "/star", "/empty"],
        ),
        (
            json!({"id": "e2", "type": "invoice.paid.late", "data": 2}),
            &["/prefix", "/star", "/empty"],
        ),
        (
            json!({"id": "e3", "type": "invoice.refunded", "data": 3}),
            &["/prefix", "/star", "/empty", "/two"],
        ),
        (json!({"id": "e4", "type": "invoice", "data": 4}), &all),
        (
            json!({"id": "e5", "type": "invoices.paid", "data": 5}),
            &all,
        ),
        (
            json!({"id": "e6", "type": "user.created", "data": 6}),
            &["/star", "/empty", "/two"],
        ),
        (json!({"id": "e7", "type": "Invoice.paid", "data": 7}), &all),
    ];
    post_and_check(&daemon, &receiver, &cases).await;
}

#[tokio::test]
async fn tenants_route_events_to_their_own_subscriptions() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    for (path, tenant, events) in [
        ("/acme", Some("acme"), vec![]),
        ("/acme-invoices", Some("acme"), vec!["invoice.*"]),
        ("/globex", Some("globex"), vec![]),
        ("/untenanted", None, vec![]),
        ("/every-tenant", Some("*"), vec![]),
        ("/every-tenant-users", Some("*"), vec!["user.*"]),
    ] {
        let mut sub = sub_to(receiver.url(path));
        sub.tenant = tenant.map(String::from);
        sub.events = events.into_iter().map(String::from).collect();
        daemon.add_sub(sub).await;
    }
    let cases: Vec<(serde_json::Value, &[&str])> = vec![
        (
            json!({"id": "t1", "type": "invoice.paid", "tenant": "acme", "data": 1}),
            &["/acme", "/acme-invoices", "/every-tenant"],
        ),
        (
            json!({"id": "t2", "type": "user.created", "tenant": "acme", "data": 2}),
            &["/acme", "/every-tenant", "/every-tenant-users"],
        ),
        (
            json!({"id": "t3", "type": "invoice.paid", "tenant": "globex", "data": 3}),
            &["/globex", "/every-tenant"],
        ),
        (
            json!({"id": "t4", "type": "invoice.paid", "data": 4}),
            &["/untenanted", "/every-tenant"],
        ),
        (
            json!({"id": "t5", "type": "user.created", "data": 5}),
            &["/untenanted", "/every-tenant", "/every-tenant-users"],
        ),
        (
            json!({"id": "t6", "type": "invoice.paid", "tenant": "initech", "data": 6}),
            &["/every-tenant"],
        ),
        (
            json!({"id": "t7", "type": "invoice.paid", "tenant": "ACME", "data": 7}),
            &["/every-tenant"],
        ),
    ];
    post_and_check(&daemon, &receiver, &cases).await;

    // The stored event keeps its tenant.
    let event = daemon.event("t1").await;
    assert_eq!(event.tenant.as_deref(), Some("acme"));
    assert_eq!(event.deliveries.len(), 3);
}

#[tokio::test]
async fn every_subscriber_sees_the_same_webhook_id_and_body() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let mut secrets = BTreeMap::new();
    for path in ["/one", "/two", "/three"] {
        let sub = daemon.add_sub(sub_to(receiver.url(path))).await;
        secrets.insert(path.to_string(), sub.secret.unwrap());
    }
    let id = daemon
        .post_new(&json!({"type": "invoice.paid", "data": {"n": 1}}))
        .await;
    let got = receiver.wait_for(3, SOON).await;
    for r in &got {
        assert_eq!(r.header("webhook-id"), Some(id.as_str()), "{}", r.path);
        assert_eq!(r.body, got[0].body, "the same body for every subscriber");
        crate::harness::verify_signature(&secrets[&r.path], r)
            .unwrap_or_else(|e| panic!("{}: {e}", r.path));
    }
    // Each subscriber has its own secret: another's does not verify.
    let other = got.iter().find(|r| r.path != "/one").unwrap();
    assert!(crate::harness::verify_signature(&secrets["/one"], other).is_err());
}

#[tokio::test]
async fn invalid_patterns_and_tenants_are_refused_at_sub_add() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    for (events, tenant) in [
        (vec!["a*"], None),
        (vec!["*.paid"], None),
        (vec!["a.*.*"], None),
        (vec!["has space"], None),
        (vec![""], None),
        (vec![], Some("acme/eu")),
        (vec![], Some("")),
    ] {
        let body = json!({"url": receiver.url("/x"), "events": events, "tenant": tenant});
        let (status, answer) = daemon
            .admin()
            .request(Method::POST, "/v1/subscriptions", Some(body.clone()))
            .await
            .unwrap();
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let list: hookd::api::List<hookd::api::Subscription> = daemon.get("/v1/subscriptions").await;
    assert!(list.items.is_empty(), "no refused subscription exists");
}
