//! Tests of the command line: parsing, requests built, human views, and
//! whole commands against a tiny admin API on a Unix socket.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use clap::{CommandFactory, Parser};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::UnixListener;

use super::output::parse_rfc3339;
use super::*;

/// Serve `handler` on a socket in a fresh temp dir; the dir lives as long as the guard.
pub(crate) fn serve<F, Fut>(handler: F) -> (tempfile::TempDir, PathBuf)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let h = handler.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(h))
                    .await;
            });
        }
    });
    (dir, path)
}

/// The shape main.rs will have: its own commands next to the flattened admin ones.
#[derive(Debug, clap::Parser)]
#[command(name = "hookd")]
struct TestCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    /// Run the daemon
    Serve,
    #[command(flatten)]
    Admin(AdminCommand),
}

fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
    TestCli::try_parse_from(std::iter::once("hookd").chain(args.iter().copied()))
}

fn admin(args: &[&str]) -> AdminCommand {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).cmd {
        Top::Admin(a) => a,
        Top::Serve => panic!("not an admin command"),
    }
}

fn planned(args: &[&str]) -> (String, String, Option<serde_json::Value>) {
    let p = plan(admin(args)).unwrap();
    (p.method.to_string(), p.path, p.body)
}

const NOW: &str = "2024-05-01T10:00:00.000Z";

fn now() -> i64 {
    parse_rfc3339(NOW).unwrap()
}

#[test]
fn clap_definition_is_consistent() {
    TestCli::command().debug_assert();
}

#[test]
fn every_subcommand_and_argument_has_help() {
    fn walk(cmd: &clap::Command, path: &str) {
        for sub in cmd.get_subcommands() {
            let name = format!("{path} {}", sub.get_name());
            assert!(sub.get_about().is_some(), "no help for `{name}`");
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" || arg.is_hide_set() {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "no help for `{name}` argument {}",
                    arg.get_id()
                );
            }
            walk(sub, &name);
        }
    }
    walk(&TestCli::command(), "hookd");
}

#[test]
fn global_flags_before_or_after_the_command() {
    let cli = parse(&["--socket", "/tmp/x.sock", "sub", "list", "--json"]).unwrap();
    assert_eq!(cli.global.socket_path(), PathBuf::from("/tmp/x.sock"));
    assert!(cli.global.json);
    let cli = parse(&["status", "--socket", "/tmp/y.sock"]).unwrap();
    assert_eq!(cli.global.socket_path(), PathBuf::from("/tmp/y.sock"));
    assert!(!cli.global.json);
}

#[test]
fn default_socket_is_one_of_the_two() {
    let d = default_socket();
    assert!(
        d == Path::new("./hookd.sock") || d == Path::new("/run/hookd/admin.sock"),
        "{d:?}"
    );
}

#[test]
fn requests_of_simple_commands() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["status"], "GET", "/v1/status"),
        (&["sub", "list"], "GET", "/v1/subscriptions"),
        (&["sub", "get", "s1"], "GET", "/v1/subscriptions/s1"),
        (
            &["sub", "get", "s1", "--show-secret"],
            "GET",
            "/v1/subscriptions/s1?show_secret=true",
        ),
        (&["sub", "rm", "s1"], "DELETE", "/v1/subscriptions/s1"),
        (
            &["sub", "pause", "s1"],
            "POST",
            "/v1/subscriptions/s1/pause",
        ),
        (
            &["sub", "resume", "s1"],
            "POST",
            "/v1/subscriptions/s1/resume",
        ),
        (
            &["sub", "rotate-secret", "s1"],
            "POST",
            "/v1/subscriptions/s1/rotate-secret",
        ),
        (&["event", "list"], "GET", "/v1/events"),
        (
            &[
                "event",
                "list",
                "--type",
                "order.created",
                "--status",
                "dead",
                "--limit",
                "5",
            ],
            "GET",
            "/v1/events?type=order.created&status=dead&limit=5",
        ),
        (&["event", "get", "e1"], "GET", "/v1/events/e1"),
        (
            &["event", "redeliver", "e1"],
            "POST",
            "/v1/events/e1/redeliver",
        ),
        (
            &[
                "delivery",
                "list",
                "--sub",
                "s1",
                "--status",
                "failed",
                "--key",
                "cust 7/a&b",
                "--limit",
                "20",
            ],
            "GET",
            "/v1/deliveries?sub=s1&status=failed&key=cust%207%2Fa%26b&limit=20",
        ),
        (&["delivery", "get", "d1"], "GET", "/v1/deliveries/d1"),
    ];
    for (args, method, path) in cases {
        let (m, p, body) = planned(args);
        assert_eq!((m.as_str(), p.as_str()), (*method, *path), "{args:?}");
        assert_eq!(body, None, "{args:?}");
    }
}

#[test]
fn sub_add_body() {
    let (m, p, body) = planned(&[
        "sub",
        "add",
        "--url",
        "https://example.com/hook",
        "--event",
        "order.*",
        "--event",
        "user.created",
        "--tenant",
        "acme",
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "--header",
        "X-Env: prod",
        "--filter",
        "/data/amount > 100",
        "--rate-limit",
        "10/s",
        "--max-in-flight",
        "4",
    ]);
    assert_eq!((m.as_str(), p.as_str()), ("POST", "/v1/subscriptions"));
    assert_eq!(
        body.unwrap(),
        json!({
            "url": "https://example.com/hook",
            "events": ["order.*", "user.created"],
            "tenant": "acme",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "headers": ["X-Env: prod"],
            "rate_limit": "10/s",
            "max_in_flight": 4,
            "filters": ["/data/amount > 100"],
        })
    );
    // the minimal form sends only what was given (plus empty lists)
    let (_, _, body) = planned(&["sub", "add", "--url", "http://localhost:9000/h"]);
    assert_eq!(
        body.unwrap(),
        json!({"url": "http://localhost:9000/h", "events": [], "headers": [], "filters": []})
    );
    // and the body is what the server's deny_unknown_fields shape accepts
    let _: crate::api::SubscriptionCreate =
        serde_json::from_value(planned(&["sub", "add", "--url", "http://h"]).2.unwrap()).unwrap();
}

#[test]
fn sub_update_sends_only_given_fields() {
    let (m, p, body) = planned(&["sub", "update", "s1", "--event", "a", "--event", "b"]);
    assert_eq!((m.as_str(), p.as_str()), ("PATCH", "/v1/subscriptions/s1"));
    assert_eq!(body.clone().unwrap(), json!({"events": ["a", "b"]}));
    let _: crate::api::SubscriptionUpdate = serde_json::from_value(body.unwrap()).unwrap();
    let (_, _, body) = planned(&[
        "sub",
        "update",
        "s1",
        "--url",
        "https://new.example",
        "--rate-limit",
        "5/m",
        "--max-in-flight",
        "2",
        "--header",
        "A: 1",
        "--filter",
        "/type == \"x\"",
    ]);
    assert_eq!(
        body.unwrap(),
        json!({
            "url": "https://new.example", "rate_limit": "5/m", "max_in_flight": 2,
            "headers": ["A: 1"], "filters": ["/type == \"x\""],
        })
    );
}

#[test]
fn sub_update_needs_a_change() {
    let err = parse(&["sub", "update", "s1"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn replay_body() {
    let (m, p, body) = planned(&["replay", "--sub", "s1", "--since", "2h", "--status", "dead"]);
    assert_eq!((m.as_str(), p.as_str()), ("POST", "/v1/replay"));
    assert_eq!(
        body.clone().unwrap(),
        json!({"subscription_id": "s1", "since": "2h", "status": "dead"})
    );
    let _: crate::api::ReplayRequest = serde_json::from_value(body.unwrap()).unwrap();
    let (_, _, body) = planned(&["replay", "--sub", "s1", "--since", "2024-05-01T08:00:00Z"]);
    assert_eq!(
        body.unwrap(),
        json!({"subscription_id": "s1", "since": "2024-05-01T08:00:00Z"})
    );
}

#[test]
fn ids_cannot_escape_their_route() {
    let (_, p, _) = planned(&["sub", "pause", "../../v1/replay"]);
    assert_eq!(p, "/v1/subscriptions/..%2F..%2Fv1%2Freplay/pause");
}

#[test]
fn bad_flag_values_are_refused_by_the_parser() {
    let bad: &[&[&str]] = &[
        &["sub", "add", "--url", "ftp://x"],
        &["sub", "add", "--url", "https://"],
        &["sub", "add", "--url", "http://h", "--secret", "hunter2"],
        &["sub", "add", "--url", "http://h", "--header", "no colon"],
        &["sub", "add", "--url", "http://h", "--header", "Bad Name: x"],
        &["sub", "add", "--url", "http://h", "--rate-limit", "10"],
        &["sub", "add", "--url", "http://h", "--rate-limit", "0/s"],
        &["sub", "add", "--url", "http://h", "--rate-limit", "10/h"],
        &["sub", "add", "--url", "http://h", "--max-in-flight", "0"],
        &["sub", "add", "--url", "http://h", "--filter", " "],
        &["sub", "add"],
        &["delivery", "list", "--status", "lost"],
        &["event", "list", "--limit", "0"],
        &["replay", "--sub", "s1", "--since", "yesterday"],
        &["replay", "--since", "2h"],
        &["sub", "get"],
    ];
    for args in bad {
        assert!(parse(args).is_err(), "{args:?} was accepted");
    }
}

fn sub_json(secret: bool) -> serde_json::Value {
    let mut v = json!({
        "id": "sub_01HX",
        "url": "https://example.com/hooks/orders",
        "events": ["order.*"],
        "tenant": null,
        "headers": ["X-Env: prod"],
        "state": "active",
        "disabled_reason": null,
        "created_at": "2024-04-30T10:00:00.000Z",
        "rate_limit": "10/s",
        "max_in_flight": 4,
        "filters": [],
        "previous_secrets_until": [],
        "pending": 3,
        "in_flight": 1
    });
    if secret {
        v["secret"] = json!("whsec_c2VjcmV0");
    }
    v
}

fn sub_value(secret: bool) -> crate::api::Subscription {
    serde_json::from_value(sub_json(secret)).unwrap()
}

#[test]
fn status_view() {
    let s: crate::api::Status = serde_json::from_value(json!({
        "version": "0.1.0",
        "started_at": "2024-05-01T07:00:00.000Z",
        "uptime_secs": 10_800,
        "ingest": {"listen": "0.0.0.0:8080", "accepting": false, "reason": "disk budget exceeded", "events_accepted": 1234},
        "store": {"path": "/var/lib/hookd", "size_bytes": 1_073_741_824u64, "max_disk_bytes": 4_294_967_296u64},
        "subscriptions": {"active": 3, "paused": 1, "disabled": 0},
        "deliveries": {"pending": 5, "in_flight": 2, "delivered": 100, "dead": 1}
    }))
    .unwrap();
    assert_eq!(
        render::status(&s, now()),
        "version:          0.1.0\n\
         started:          2024-05-01T07:00:00.000Z (3h ago)\n\
         uptime:           3h\n\
         ingest:           NOT ACCEPTING on 0.0.0.0:8080: disk budget exceeded\n\
         events accepted:  1234\n\
         store:            /var/lib/hookd: 1.0 GiB of 4.0 GiB (25.0%)\n\
         subscriptions:    3 active, 1 paused, 0 disabled\n\
         deliveries:       5 pending, 2 in flight; since start: 100 delivered, 1 dead\n\
         uplink:           up\n\
         breakers open:    none\n"
    );
}

#[test]
fn sub_views_show_the_secret_only_when_meant_to() {
    let created = render::sub_created(&sub_value(true), now());
    assert!(
        created.starts_with("Created subscription sub_01HX.\n\nid:"),
        "{created}"
    );
    assert!(
        created.contains("\nSigning secret:\n  whsec_c2VjcmV0\n"),
        "{created}"
    );
    assert!(created.contains("will not be shown again"), "{created}");
    assert_eq!(created.matches("whsec_c2VjcmV0").count(), 1, "{created}");
    assert!(
        created.contains("created:        2024-04-30T10:00:00.000Z (1d ago)\n"),
        "{created}"
    );

    let hidden = render::sub_block(&sub_value(false), now(), render::SecretLine::IfPresent);
    assert!(
        hidden.contains("secret:         (hidden; use --show-secret)\n"),
        "{hidden}"
    );
    assert!(!hidden.contains("whsec_"), "{hidden}");
    assert!(
        hidden.contains("pending:        3 (1 in flight)\n"),
        "{hidden}"
    );
    assert!(hidden.contains("tenant:         -\n"), "{hidden}");

    let shown = render::sub_block(&sub_value(true), now(), render::SecretLine::IfPresent);
    assert!(
        shown.contains("secret:         whsec_c2VjcmV0\n"),
        "{shown}"
    );

    let rotated = render::sub_rotated(&sub_value(true), now());
    assert!(rotated.contains("  whsec_c2VjcmV0\n"), "{rotated}");
    assert!(rotated.contains("will not be shown again"), "{rotated}");
}

#[test]
fn sub_list_table() {
    let mut long = sub_json(false);
    long["id"] = json!("sub_2");
    long["url"] = json!("https://a-very-long-host-name.example.com/with/a/long/path/to/the/hook");
    long["state"] = json!("paused");
    long["tenant"] = json!("acme");
    long["pending"] = json!(12);
    let list: crate::api::List<crate::api::Subscription> =
        serde_json::from_value(json!({"items": [sub_json(false), long]})).unwrap();
    assert_eq!(
        render::sub_list(&list),
        "ID        URL                                               EVENTS   TENANT  STATE   PENDING\n\
         sub_01HX  https://example.com/hooks/orders                  order.*  -       active        3\n\
         sub_2     https://a-very-long-host-name.example.com/with/…  order.*  acme    paused       12\n"
    );
    let empty: crate::api::List<crate::api::Subscription> =
        serde_json::from_value(json!({"items": []})).unwrap();
    assert_eq!(render::sub_list(&empty), "No subscriptions.\n");
}

fn delivery_json(id: &str, status: &str) -> serde_json::Value {
    json!({
        "id": id, "event_id": "evt_1", "event_type": "order.created", "subscription_id": "sub_01HX",
        "status": status, "attempts": 2, "next_at": "2024-05-01T10:05:00.000Z",
        "last_status": 503, "last_error": null,
        "created_at": "2024-05-01T09:00:00.000Z", "updated_at": "2024-05-01T09:59:30.000Z",
        "ordering_key": null
    })
}

#[test]
fn event_list_table_summarises_deliveries() {
    let list: crate::api::List<crate::api::Event> = serde_json::from_value(json!({"items": [{
        "id": "evt_1", "type": "order.created", "tenant": null, "ordering_key": null,
        "received_at": "2024-05-01T09:59:57.000Z",
        "deliveries": [delivery_json("d1", "delivered"), delivery_json("d2", "failed"), delivery_json("d3", "delivered")]
    }, {
        "id": "evt_2", "type": "user.deleted", "tenant": null, "ordering_key": null,
        "received_at": "2024-04-29T10:00:00.000Z", "deliveries": []
    }]}))
    .unwrap();
    assert_eq!(
        render::event_list(&list, now()),
        "ID     TYPE           DELIVERIES             NEXT   RECEIVED\n\
         evt_1  order.created  1 failed, 2 delivered  in 5m  3s ago\n\
         evt_2  user.deleted   none                   -      2d ago\n"
    );
}

#[test]
fn delivery_list_table() {
    let mut dead = delivery_json("d2", "dead");
    dead["next_at"] = json!(null);
    dead["last_error"] =
        json!("connect: connection refused (os error 111) while connecting to upstream host");
    dead["last_status"] = json!(null);
    let list: crate::api::List<crate::api::Delivery> =
        serde_json::from_value(json!({"items": [delivery_json("d1", "failed"), dead]})).unwrap();
    assert_eq!(
        render::delivery_list(&list, now()),
        "ID  TYPE           SUB       STATUS  ATTEMPTS  LAST                                      NEXT   CREATED\n\
         d1  order.created  sub_01HX  failed         2  503 Service Unavailable                   in 5m  1h ago\n\
         d2  order.created  sub_01HX  dead           2  connect: connection refused (os error 1…  -      1h ago\n"
    );
}

#[test]
fn delivery_view_with_attempt_log() {
    let mut d = delivery_json("d1", "failed");
    d["attempt_log"] = json!([
        {"no": 1, "at": "2024-05-01T09:00:00.000Z", "status": null, "error": "timeout after 10s", "latency_ms": 10_000, "response": ""},
        {"no": 2, "at": "2024-05-01T09:59:30.000Z", "status": 503, "error": null, "latency_ms": 120, "response": "upstream down\n\x1b[2Jretry later"}
    ]);
    let d: crate::api::Delivery = serde_json::from_value(d).unwrap();
    assert_eq!(
        render::delivery(&d, now()),
        "id:            d1\n\
         event:         evt_1 (order.created)\n\
         subscription:  sub_01HX\n\
         status:        failed\n\
         attempts:      2\n\
         last:          503 Service Unavailable\n\
         next attempt:  2024-05-01T10:05:00.000Z (in 5m)\n\
         ordering key:  -\n\
         created:       2024-05-01T09:00:00.000Z (1h ago)\n\
         updated:       2024-05-01T09:59:30.000Z (30s ago)\n\
         \n\
         NO  AT       STATUS/ERROR             LATENCY\n\
         \x201  1h ago   timeout after 10s            10s\n\
         \x202  30s ago  503 Service Unavailable    120ms\n\
         \n\
         Response of attempt 2 (first bytes):\n\
         \x20 upstream down\n\
         \x20 \u{FFFD}[2Jretry later\n"
    );
}

#[test]
fn event_view_shows_data_as_posted() {
    let e: crate::api::Event = serde_json::from_value(json!({
        "id": "evt_1", "type": "order.created", "tenant": "acme", "ordering_key": "order-7",
        "received_at": "2024-05-01T09:59:00.000Z",
        "data": {"order": 7},
        "deliveries": [delivery_json("d1", "delivered")]
    }))
    .unwrap();
    let out = render::event(&e, now());
    assert!(out.starts_with("id:            evt_1\ntype:          order.created\ntenant:        acme\nordering key:  order-7\nreceived:      2024-05-01T09:59:00.000Z (1m ago)\n\nDeliveries:\nID  SUB"), "{out}");
    assert!(out.ends_with("\nData:\n{\n  \"order\": 7\n}\n"), "{out}");
}

#[test]
fn requeued_view() {
    let r: crate::api::Requeued =
        serde_json::from_value(json!({"deliveries": ["d1", "d2"]})).unwrap();
    assert_eq!(
        render::requeued(&r, "replay"),
        "Queued 2 deliveries:\n  d1\n  d2\n"
    );
    let r: crate::api::Requeued = serde_json::from_value(json!({"deliveries": []})).unwrap();
    assert_eq!(
        render::requeued(&r, "replay"),
        "Nothing to replay: no matching deliveries.\n"
    );
}

/// A fake daemon for whole commands: answers from fixtures, checks queries.
async fn fake_daemon(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let reply = |status: u16, body: String| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    match (method.as_str(), pq.as_str()) {
        ("POST", "/v1/subscriptions") => {
            let create: crate::api::SubscriptionCreate = serde_json::from_slice(&body).unwrap();
            // compact, keys in the server's order (not sorted), a number spelled oddly
            let body = format!(
                r#"{{"id":"sub_01HX","url":{},"events":[],"tenant":null,"headers":[],"state":"active","disabled_reason":null,"created_at":"2024-05-01T10:00:00.000Z","rate_limit":null,"max_in_flight":4.0,"filters":[],"secret":"whsec_c2VjcmV0","previous_secrets_until":[],"pending":0,"in_flight":0}}"#,
                json!(create.url)
            );
            reply(201, body)
        }
        ("GET", "/v1/subscriptions/sub_01HX") => reply(200, sub_json(false).to_string()),
        ("GET", "/v1/subscriptions/sub_01HX?show_secret=true") => {
            reply(200, sub_json(true).to_string())
        }
        ("DELETE", "/v1/subscriptions/sub_01HX") => reply(204, String::new()),
        _ => reply(
            404,
            json!({"error": {"code": "not_found", "message": format!("no route {method} {pq}")}})
                .to_string(),
        ),
    }
}

#[tokio::test]
async fn sub_add_json_prints_the_answer_as_received() {
    let (_dir, sock) = serve(fake_daemon);
    let client = AdminClient::new(&sock);
    let cmd = admin(&["sub", "add", "--url", "https://example.com/h"]);
    let out = execute(&client, true, cmd).await.unwrap();
    assert!(
        out.starts_with("{\n  \"id\": \"sub_01HX\",\n  \"url\": \"https://example.com/h\",\n"),
        "{out}"
    );
    assert!(out.contains("\n  \"max_in_flight\": 4.0,\n"), "{out}");
    assert!(out.contains("\n  \"secret\": \"whsec_c2VjcmV0\""), "{out}");
    assert!(out.ends_with("}\n"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], "sub_01HX");
}

#[tokio::test]
async fn sub_get_hides_the_secret_unless_asked() {
    let (_dir, sock) = serve(fake_daemon);
    let client = AdminClient::new(&sock);
    let out = execute(&client, false, admin(&["sub", "get", "sub_01HX"]))
        .await
        .unwrap();
    assert!(out.contains("(hidden; use --show-secret)"), "{out}");
    let out = execute(
        &client,
        false,
        admin(&["sub", "get", "sub_01HX", "--show-secret"]),
    )
    .await
    .unwrap();
    assert!(out.contains("secret:         whsec_c2VjcmV0\n"), "{out}");
}

#[tokio::test]
async fn sub_rm_answers_204() {
    let (_dir, sock) = serve(fake_daemon);
    let client = AdminClient::new(&sock);
    let out = execute(&client, false, admin(&["sub", "rm", "sub_01HX"]))
        .await
        .unwrap();
    assert_eq!(out, "Deleted subscription sub_01HX.\n");
    let out = execute(&client, true, admin(&["sub", "rm", "sub_01HX"]))
        .await
        .unwrap();
    assert_eq!(out, "");
}

#[tokio::test]
async fn api_errors_come_back_with_their_message() {
    let (_dir, sock) = serve(fake_daemon);
    let client = AdminClient::new(&sock);
    for json in [false, true] {
        let err = execute(&client, json, admin(&["sub", "pause", "nope"]))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no route POST /v1/subscriptions/nope/pause"
        );
        assert_eq!(err.exit_code(), 1);
    }
}

#[tokio::test]
async fn run_names_the_socket_when_the_daemon_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let err = run(&sock, false, AdminCommand::Status).await.unwrap_err();
    assert!(
        err.to_string().contains(&sock.display().to_string()),
        "{err}"
    );
    assert_eq!(err.exit_code(), 3);
}
