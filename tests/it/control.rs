//! Delivery control: ordered lanes, rate limits, AIMD, the circuit breaker,
//! auto-disable, operational events, uplink outage and payload filters.

use crate::harness::{sub_to, wait_until, Daemon, Receiver, Reply, SOON};
use bytes::Bytes;
use hookd::api;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One request as a [`FnReceiver`] saw it.
#[derive(Debug, Clone)]
struct Seen {
    data: Value,
    at: Instant,
    /// Requests on the wire at this one's arrival, itself included.
    concurrent: usize,
    status: u16,
}

/// A receiver whose answer is computed from the delivered body (and the
/// number of requests on the wire), for behaviour a fixed script cannot express.
struct FnReceiver {
    addr: SocketAddr,
    log: watch::Sender<Vec<Seen>>,
}

type Decide = dyn Fn(&Value, usize) -> (u16, Duration) + Send + Sync;

impl FnReceiver {
    async fn start(
        decide: impl Fn(&Value, usize) -> (u16, Duration) + Send + Sync + 'static,
    ) -> Arc<FnReceiver> {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Arc::new(decide)).await
    }

    async fn start_on(addr: SocketAddr, decide: Arc<Decide>) -> Arc<FnReceiver> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let receiver = Arc::new(FnReceiver {
            addr: listener.local_addr().unwrap(),
            log: watch::channel(Vec::new()).0,
        });
        let in_flight = Arc::new(AtomicUsize::new(0));
        let me = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (me, decide, in_flight) = (me.clone(), decide.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (me, decide, in_flight) =
                            (me.clone(), decide.clone(), in_flight.clone());
                        async move {
                            let concurrent = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let data = event["data"].clone();
                            let (status, hold) = decide(&data, concurrent);
                            me.log.send_modify(|log| {
                                log.push(Seen {
                                    data,
                                    at: Instant::now(),
                                    concurrent,
                                    status,
                                })
                            });
                            if !hold.is_zero() {
                                tokio::time::sleep(hold).await;
                            }
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(StatusCode::from_u16(status).unwrap())
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Waits until `done` holds for the log.
    async fn wait(
        &self,
        what: &str,
        deadline: Duration,
        done: impl Fn(&[Seen]) -> bool,
    ) -> Vec<Seen> {
        let mut log = self.log.subscribe();
        let waited = tokio::time::timeout(deadline, log.wait_for(|l| done(l)))
            .await
            .map(|r| r.map(|l| l.clone()));
        match waited {
            Ok(Ok(l)) => l,
            _ => panic!(
                "waited {deadline:?} for {what}; saw {} requests",
                self.log.borrow().len()
            ),
        }
    }
}

fn successes(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| (200..300).contains(&s.status))
        .count()
}

/// Per ordering key, the `n` of every request in arrival order.
fn by_key(seen: &[Seen]) -> HashMap<String, Vec<u64>> {
    let mut keys: HashMap<String, Vec<u64>> = HashMap::new();
    for s in seen {
        let key = s.data["k"].as_str().unwrap_or_default().to_string();
        keys.entry(key)
            .or_default()
            .push(s.data["n"].as_u64().unwrap());
    }
    keys
}

/// A lane's arrivals are in order: each request is the current head again
/// (a retry) or the next one. After each of `crashes` kills the lane may also
/// go back once to an earlier event, and go on in order from there: outcomes
/// not yet flushed at the kill are lost, so those deliveries are made again.
fn assert_in_order(key: &str, ns: &[u64], count: u64, crashes: usize) {
    let (mut head, mut rewinds) = (0, 0);
    assert_eq!(ns.first(), Some(&0), "key {key}: first request {ns:?}");
    for &n in ns {
        if n < head && rewinds < crashes {
            rewinds += 1;
        } else {
            assert!(n == head || n == head + 1, "key {key} out of order: {ns:?}");
        }
        head = n;
    }
    assert_eq!(
        head,
        count - 1,
        "key {key} did not reach its last event: {ns:?}"
    );
}

async fn post_keyed(daemon: &Daemon, key: &str, n: u64) {
    let (status, body) = daemon
        .post_event(
            &json!({"type": "order.updated", "ordering_key": key, "data": {"k": key, "n": n}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_failing_head_blocks_only_its_own_key_and_order_holds() {
    let daemon = Daemon::builder()
        .set("delivery", "retry_schedule", vec!["300ms"; 6])
        .start()
        .await;
    // The first event of key k0 fails three times; everything else succeeds.
    let failures = Arc::new(Mutex::new(0));
    let f = failures.clone();
    let receiver = FnReceiver::start(move |data, _| {
        if data["k"] == "k0" && data["n"] == 0 {
            let mut f = f.lock().unwrap();
            *f += 1;
            if *f <= 3 {
                return (500, Duration::ZERO);
            }
        }
        (200, Duration::ZERO)
    })
    .await;
    daemon.add_sub(sub_to(receiver.url())).await;
    let (keys, per_key) = (4, 10u64);
    for n in 0..per_key {
        for k in 0..keys {
            post_keyed(&daemon, &format!("k{k}"), n).await;
        }
    }
    let total = (keys as u64 * per_key) as usize;
    let seen = receiver
        .wait("every event delivered", SOON * 2, |s| successes(s) >= total)
        .await;
    let lanes = by_key(&seen);
    for (key, ns) in &lanes {
        assert_in_order(key, ns, per_key, 0);
    }
    assert_eq!(
        lanes["k0"].iter().filter(|n| **n == 0).count(),
        4,
        "k0's head: 3 failures, 1 success"
    );
    // Other keys were not held behind k0: they finished before k0's head got through.
    let k0_head_success = seen
        .iter()
        .find(|s| s.data["k"] == "k0" && s.data["n"] == 0 && s.status == 200)
        .unwrap()
        .at;
    for k in 1..keys {
        let last = seen
            .iter()
            .filter(|s| s.data["k"] == format!("k{k}"))
            .map(|s| s.at)
            .max()
            .unwrap();
        assert!(
            last < k0_head_success,
            "key k{k} waited for k0's failing head"
        );
    }
}

#[tokio::test]
async fn order_holds_across_kill_9() {
    let mut daemon = Daemon::builder().start().await;
    // Slow answers keep the lanes busy when the daemon dies.
    let receiver = FnReceiver::start(|_, _| (200, Duration::from_millis(20))).await;
    let sub = daemon.add_sub(sub_to(receiver.url())).await;
    let (keys, per_key) = (3, 30u64);
    for n in 0..per_key {
        for k in 0..keys {
            post_keyed(&daemon, &format!("k{k}"), n).await;
        }
    }
    receiver
        .wait("some deliveries before the kill", SOON, |s| s.len() >= 10)
        .await;
    daemon.kill9().await;
    daemon.restart().await;
    let total = (keys as u64 * per_key) as usize;
    let seen = receiver
        .wait("every event after the restart", SOON * 2, |s| {
            let lanes = by_key(s);
            lanes.len() == keys
                && lanes
                    .values()
                    .map(|ns| ns.iter().max().copied().unwrap_or(0) + 1)
                    .sum::<u64>() as usize
                    == total
        })
        .await;
    for (key, ns) in &by_key(&seen) {
        assert_in_order(key, ns, per_key, 1);
    }
    // The lane listing shows what is left of a lane, head first (nothing, now).
    wait_until("no pending deliveries", SOON, || async {
        let s = daemon.subscription(&sub.id).await;
        if s.pending == 0 {
            Ok(())
        } else {
            Err(format!("{} pending", s.pending))
        }
    })
    .await;
}

#[tokio::test]
async fn delivery_list_by_key_shows_one_lane_head_first() {
    let daemon = Daemon::builder().start().await;
    let receiver = Receiver::start().await;
    let mut create = sub_to(receiver.url("/lane"));
    create.events = vec!["order.*".into()];
    let sub = daemon.add_sub(create).await;
    daemon.sub_action(&sub.id, "pause").await;
    for n in 0..3 {
        post_keyed(&daemon, "cust-1", n).await;
        post_keyed(&daemon, "cust-2", n).await;
    }
    let path = format!("/v1/deliveries?sub={}&key=cust-1", sub.id);
    let lane: api::List<api::Delivery> = daemon.get(&path).await;
    assert_eq!(lane.items.len(), 3);
    assert!(lane
        .items
        .iter()
        .all(|d| d.ordering_key.as_deref() == Some("cust-1")));
    let created: Vec<&str> = lane.items.iter().map(|d| d.id.as_str()).collect();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted, "head first, in ingest order");
    let out = daemon
        .cli_ok(&["delivery", "list", "--sub", &sub.id, "--key", "cust-2"])
        .await;
    assert_eq!(out.lines().count(), 4, "a header and three rows:\n{out}");
}

#[tokio::test]
async fn a_rate_limited_subscription_gets_its_rate_and_does_not_slow_another() {
    let daemon = Daemon::builder().start().await;
    let receiver = Receiver::start().await;
    let mut limited = sub_to(receiver.url("/limited"));
    limited.rate_limit = Some("20/s".into());
    daemon.add_sub(limited).await;
    daemon.add_sub(sub_to(receiver.url("/free"))).await;
    let events = 100;
    let batch: Vec<Value> = (0..events)
        .map(|i| json!({"type": "rate.test", "data": {"i": i}}))
        .collect();
    let started = Instant::now();
    let (status, _) = daemon.post_batch(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    receiver.wait_for_path("/free", events, SOON).await;
    let free_done = started.elapsed();
    // The limited one: a burst of 20, then 20/s. Measure over whole seconds.
    let arrivals = receiver.wait_for_path("/limited", 80, SOON * 2).await;
    let first = arrivals[0].at;
    let in_window = |from: f64, to: f64| {
        arrivals
            .iter()
            .filter(|r| {
                let t = r.at.duration_since(first).as_secs_f64();
                t >= from && t < to
            })
            .count()
    };
    let steady = in_window(1.0, 3.0) as f64 / 2.0;
    eprintln!("unlimited done in {free_done:?}; limited steady rate {steady}/s");
    assert!(
        (12.0..=28.0).contains(&steady),
        "steady rate {steady}/s, wanted about 20/s"
    );
    assert!(
        free_done < Duration::from_millis(2500),
        "the unlimited subscription took {free_done:?}"
    );
}

#[tokio::test]
async fn aimd_converges_to_what_the_subscriber_can_take() {
    let daemon = Daemon::builder()
        .set("delivery", "retry_schedule", vec!["50ms"; 30])
        .start()
        .await;
    // Above two requests on the wire the subscriber answers 429.
    let receiver = FnReceiver::start(|_, concurrent| {
        if concurrent > 2 {
            (429, Duration::ZERO)
        } else {
            (200, Duration::from_millis(40))
        }
    })
    .await;
    let mut create = sub_to(receiver.url());
    create.max_in_flight = Some(16);
    let sub = daemon.add_sub(create).await;
    let batch: Vec<Value> = (0..150)
        .map(|i| json!({"type": "aimd.test", "data": {"i": i}}))
        .collect();
    daemon.post_batch(&Value::Array(batch)).await;
    let seen = receiver
        .wait("every event delivered", SOON * 3, |s| successes(s) >= 150)
        .await;
    let second_half = &seen[seen.len() / 2..];
    let rejected = second_half.iter().filter(|s| s.status == 429).count();
    let mut concurrency: Vec<usize> = second_half.iter().map(|s| s.concurrent).collect();
    concurrency.sort_unstable();
    let median = concurrency[concurrency.len() / 2];
    eprintln!(
        "second half: median concurrency {median}, {rejected} of {} rejected",
        second_half.len()
    );
    assert!((1..=3).contains(&median), "median concurrency {median}");
    assert!(
        rejected * 3 < second_half.len(),
        "{rejected} of {} still rejected",
        second_half.len()
    );
    let view = daemon.subscription(&sub.id).await;
    assert_eq!(view.max_in_flight, 16);
    assert!(view.effective_max_in_flight <= 4, "{view:?}");
}

#[tokio::test]
async fn the_breaker_opens_probes_and_closes_and_tells_an_operations_subscriber() {
    let daemon = Daemon::builder()
        .set(
            "delivery",
            "retry_schedule",
            vec!["100ms", "100ms", "100ms"],
        )
        .set("delivery", "breaker_failures", 3)
        .set("delivery", "breaker_probe", "300ms")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/flaky", Reply::status(500));
    let sub = daemon.add_sub(sub_to(receiver.url("/flaky"))).await;
    let mut ops = sub_to(receiver.url("/ops"));
    ops.events = vec!["hookd.*".into()];
    daemon.add_sub(ops).await;
    let id = daemon
        .post_new(&json!({"type": "breaker.test", "data": {}}))
        .await;

    let opened = receiver.wait_for_path("/ops", 1, SOON).await;
    assert_eq!(
        opened[0].json()["type"],
        "hookd.subscription.breaker_opened"
    );
    assert_eq!(opened[0].json()["data"]["subscription_id"], sub.id.as_str());
    let view = daemon.subscription(&sub.id).await;
    assert!(
        view.breaker == "open" || view.breaker == "probing",
        "{view:?}"
    );
    assert!(view.breaker_since.is_some());
    let status: api::Status = daemon.get("/v1/status").await;
    assert_eq!(status.delivery_control.breakers_open.len(), 1);

    // Probes keep coming at growing intervals, and spend no retry budget:
    // three retries would have made the delivery dead by now.
    receiver.wait_for_path("/flaky", 6, SOON).await;
    let delivery = daemon
        .event(&id)
        .await
        .deliveries
        .into_iter()
        .find(|d| d.subscription_id == sub.id)
        .unwrap();
    assert_eq!(delivery.status, "failed", "{delivery:?}");
    let flaky = receiver.requests_to("/flaky");
    let gaps: Vec<Duration> = flaky.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[4] > gaps[2], "probe intervals grow: {gaps:?}");

    receiver.set_default("/flaky", Reply::ok());
    let recovered = receiver.wait_for_path("/ops", 2, SOON * 2).await;
    assert_eq!(recovered[1].json()["type"], "hookd.subscription.recovered");
    wait_until("the event delivered", SOON, || async {
        let e = daemon.event(&id).await;
        match e.deliveries.iter().find(|d| d.subscription_id == sub.id) {
            Some(d) if d.status == "delivered" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(daemon.subscription(&sub.id).await.breaker, "closed");
}

#[tokio::test]
async fn a_subscription_failing_too_long_is_disabled_and_resume_brings_it_back() {
    let daemon = Daemon::builder()
        .set("delivery", "retry_schedule", vec!["200ms"; 20])
        .set("delivery", "disable_after", "1s")
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/down", Reply::status(503));
    let sub = daemon.add_sub(sub_to(receiver.url("/down"))).await;
    let mut ops = sub_to(receiver.url("/ops"));
    ops.events = vec!["hookd.subscription.disabled".into()];
    daemon.add_sub(ops).await;
    let id = daemon
        .post_new(&json!({"type": "disable.test", "data": {}}))
        .await;
    let disabled = receiver.wait_for_path("/ops", 1, SOON).await;
    assert_eq!(disabled[0].json()["type"], "hookd.subscription.disabled");
    let view = daemon.subscription(&sub.id).await;
    assert_eq!(view.state, "disabled");
    assert!(
        view.disabled_reason
            .as_deref()
            .unwrap_or("")
            .contains("disable_after"),
        "{view:?}"
    );

    receiver.set_default("/down", Reply::ok());
    daemon.sub_action(&sub.id, "resume").await;
    wait_until("delivered after resume", SOON, || async {
        let e = daemon.event(&id).await;
        match e.deliveries.iter().find(|d| d.subscription_id == sub.id) {
            Some(d) if d.status == "delivered" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_dead_delivery_is_reported_as_an_operational_event() {
    let daemon = Daemon::builder()
        .set("delivery", "retry_schedule", vec!["100ms"])
        .start()
        .await;
    let receiver = Receiver::start().await;
    receiver.set_default("/broken", Reply::status(500));
    let sub = daemon.add_sub(sub_to(receiver.url("/broken"))).await;
    let mut ops = sub_to(receiver.url("/ops"));
    ops.events = vec!["hookd.delivery.dead".into()];
    let ops = daemon.add_sub(ops).await;
    let mut everything = sub_to(receiver.url("/all"));
    everything.events = vec!["*".into()];
    daemon.add_sub(everything).await;
    let id = daemon
        .post_new(&json!({"type": "dead.test", "data": {}}))
        .await;
    let dead = receiver.wait_for_path("/ops", 1, SOON).await;
    let event = dead[0].json();
    assert_eq!(event["type"], "hookd.delivery.dead");
    assert_eq!(event["data"]["event_id"], id.as_str());
    assert_eq!(event["data"]["subscription_id"], sub.id.as_str());
    crate::harness::verify_signature(ops.secret.as_deref().unwrap(), &dead[0]).unwrap();
    // `*` does not match hookd's own types: /all got only the application event.
    let all = receiver.requests_to("/all");
    assert!(
        all.iter().all(|r| r.json()["type"] == "dead.test"),
        "{:?}",
        all.len()
    );
}

#[tokio::test]
async fn ingest_refuses_the_reserved_prefix() {
    let daemon = Daemon::builder().start().await;
    let (status, body) = daemon
        .post_event(&json!({"type": "hookd.delivery.dead", "data": {}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reserved"),
        "{body}"
    );
}

/// A port on `ip` with nothing listening (bound then released).
fn closed_port(ip: &str) -> SocketAddr {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind a loopback address");
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn an_uplink_outage_spends_no_retries_and_drains_when_hosts_return() {
    let daemon = Daemon::builder()
        .set("delivery", "retry_schedule", vec!["100ms", "100ms"])
        .set("delivery", "uplink_hosts", 3)
        .set("delivery", "uplink_window", "10s")
        .set("delivery", "uplink_probe", "200ms")
        .set("delivery", "breaker_probe_max", "1s")
        .start()
        .await;
    // Three hosts, all unreachable: connection refused on closed ports.
    let hosts: Vec<SocketAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| closed_port(ip))
        .collect();
    let mut subs = Vec::new();
    for addr in &hosts {
        subs.push(daemon.add_sub(sub_to(format!("http://{addr}/hook"))).await);
    }
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                daemon
                    .post_new(&json!({"type": "uplink.test", "data": {"i": i}}))
                    .await,
            );
        }
        ids
    };
    wait_until("the uplink marked down", SOON, || async {
        let s: api::Status = daemon.get("/v1/status").await;
        if s.delivery_control.uplink == "down" {
            Ok(())
        } else {
            Err(s.delivery_control.uplink)
        }
    })
    .await;
    // Long past the schedule (two 100 ms retries), nothing is dead: observe for 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        for d in daemon.event(id).await.deliveries {
            assert_ne!(d.status, "dead", "{d:?}");
        }
    }
    let metrics = crate::harness::http::request(
        daemon.ingest_addr(),
        hyper::Method::GET,
        "/metrics",
        &[],
        Bytes::new(),
    )
    .await
    .text();
    assert!(metrics.contains("hookd_uplink_down 1"), "{metrics}");

    // The hosts come back.
    let mut receivers = Vec::new();
    for addr in &hosts {
        receivers.push(
            FnReceiver::start_on(*addr, Arc::new(|_: &Value, _| (200, Duration::ZERO))).await,
        );
    }
    for r in &receivers {
        r.wait("the backlog drained", SOON * 2, |s| {
            successes(s) >= ids.len()
        })
        .await;
    }
    let s: api::Status = daemon.get("/v1/status").await;
    assert_eq!(s.delivery_control.uplink, "up");
    let _ = subs;
}

#[tokio::test]
async fn filters_select_events_by_payload() {
    let daemon = Daemon::builder().start().await;
    let receiver = Receiver::start().await;
    let mut create = sub_to(receiver.url("/big"));
    create.filters = vec![
        "/data/amount >= 100".into(),
        "/data/status in [\"paid\",\"refunded\"]".into(),
        "/data/customer/vip exists".into(),
    ];
    daemon.add_sub(create).await;
    let cases = [
        (
            json!({"amount": 150, "status": "paid", "customer": {"vip": true}}),
            1,
        ),
        (
            json!({"amount": 150, "status": "void", "customer": {"vip": true}}),
            0,
        ),
        (
            json!({"amount": 99.5, "status": "paid", "customer": {"vip": true}}),
            0,
        ),
        (
            json!({"amount": "150", "status": "paid", "customer": {"vip": true}}),
            0,
        ),
        (
            json!({"amount": 100, "status": "refunded", "customer": {}}),
            0,
        ),
        (
            json!({"amount": 100, "status": "refunded", "customer": {"vip": null}}),
            1,
        ),
    ];
    for (data, want) in &cases {
        let (status, body) = daemon
            .post_event(&json!({"type": "pay.x", "data": data}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["deliveries"], *want, "{data}");
    }
    receiver.wait_for_path("/big", 2, SOON).await;

    // A bad condition is refused at `sub add`, naming it.
    let (status, body) = daemon
        .admin()
        .request(
            hyper::Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": receiver.url("/x"), "filters": ["/data/amount >> 5"]})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#"filter \"/data/amount >> 5\""#), "{text}");
}

#[tokio::test]
async fn sub_update_changes_url_and_keeps_pending_deliveries() {
    let daemon = Daemon::builder().start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/old"))).await;
    daemon.sub_action(&sub.id, "pause").await;
    for i in 0..5 {
        daemon
            .post_new(&json!({"type": "move.x", "data": {"i": i}}))
            .await;
    }
    let out = daemon
        .cli_ok(&[
            "sub",
            "update",
            &sub.id,
            "--url",
            &receiver.url("/new"),
            "--rate-limit",
            "100/s",
            "--max-in-flight",
            "4",
        ])
        .await;
    assert!(out.contains("/new"), "{out}");
    let view = daemon.subscription(&sub.id).await;
    assert_eq!(
        (view.pending, view.rate_limit.as_deref(), view.max_in_flight),
        (5, Some("100/s"), 4)
    );
    daemon.sub_action(&sub.id, "resume").await;
    receiver.wait_for_path("/new", 5, SOON).await;
    assert!(receiver.requests_to("/old").is_empty());
}
