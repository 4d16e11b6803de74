//! Security by default: SSRF refusals, asymmetric signatures, slow clients,
//! tenant-limited tokens, the admin socket's owners.

use crate::harness::{sub_to, wait_until, Daemon, Receiver, SOON};
use hookd::api;
use hyper::{Method, StatusCode};
use serde_json::json;

/// A daemon whose delivery policy allows nothing special-purpose.
async fn strict_daemon() -> Daemon {
    Daemon::builder()
        .set("delivery", "allow_networks", Vec::<String>::new())
        .set("delivery", "retry_schedule", vec!["100ms"])
        .start()
        .await
}

#[tokio::test]
async fn sub_add_refuses_private_addresses_in_every_encoding() {
    let daemon = strict_daemon().await;
    let urls = [
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/",
        "http://192.168.1.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ];
    for url in urls {
        let (status, body) = daemon
            .admin()
            .request(Method::POST, "/v1/subscriptions", Some(json!({"url": url})))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {text}");
        assert!(text.contains("delivery.allow_networks"), "{url}: {text}");
    }
}

#[tokio::test]
async fn a_hostname_that_resolves_to_loopback_is_not_connected_to() {
    let daemon = strict_daemon().await;
    let receiver = Receiver::start().await;
    // `localhost` passes `sub add` (a name), but resolves to loopback: the
    // connector refuses the address it would connect to.
    let url = receiver.url("/hook").replace("127.0.0.1", "localhost");
    let sub = daemon.add_sub(sub_to(url)).await;
    let id = daemon
        .post_new(&json!({"type": "ssrf.test", "data": {}}))
        .await;
    let delivery = wait_until("an attempt recorded", SOON, || async {
        let event = daemon.event(&id).await;
        let d = event
            .deliveries
            .into_iter()
            .find(|d| d.subscription_id == sub.id)
            .unwrap();
        if d.attempts > 0 {
            Ok(d)
        } else {
            Err("no attempt yet".into())
        }
    })
    .await;
    let detail = daemon.delivery(&delivery.id).await;
    let error = detail.attempt_log.unwrap()[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("blocked") && error.contains("allow_networks"),
        "{error}"
    );
    assert!(receiver.requests().is_empty(), "the receiver was reached");
}

#[tokio::test]
async fn v1a_signatures_verify_with_the_public_key_only() {
    let daemon = Daemon::builder().start().await;
    let receiver = Receiver::start().await;
    let mut create = sub_to(receiver.url("/signed"));
    create.signing = Some("v1+v1a".into());
    let both = daemon.add_sub(create).await;
    assert_eq!(both.signing, "v1+v1a");
    assert_eq!(both.public_keys.len(), 1);
    let mut create = sub_to(receiver.url("/asym"));
    create.signing = Some("v1a".into());
    let asym = daemon.add_sub(create).await;
    assert!(asym.secret.is_none(), "no shared secret for v1a only");

    daemon
        .post_new(&json!({"type": "sig.test", "data": {"x": 1}}))
        .await;
    for (path, sub, want_v1) in [("/signed", &both, true), ("/asym", &asym, false)] {
        let request = &receiver.wait_for_path(path, 1, SOON).await[0];
        let header = request.header("webhook-signature").unwrap();
        let id = request.header("webhook-id").unwrap();
        let ts: i64 = request
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            hookd::signing::verify_ed25519(&sub.public_keys[0], id, ts, &request.body, header),
            "{path}: {header}"
        );
        assert_eq!(header.contains("v1,"), want_v1, "{header}");
        if want_v1 {
            crate::harness::verify_signature(sub.secret.as_deref().unwrap(), request).unwrap();
        }
    }
    // `sub get` shows the public key, never a private one.
    let shown: api::Subscription = daemon
        .get(&format!("/v1/subscriptions/{}?show_secret=true", asym.id))
        .await;
    assert_eq!(shown.public_keys, asym.public_keys);
    let out = daemon.cli_ok(&["sub", "get", &asym.id]).await;
    assert!(out.contains(&asym.public_keys[0]), "{out}");
}

/// Runs the CLI as uid/gid 65534 (nobody), or `None` when not root.
async fn cli_as_nobody(daemon: &Daemon, args: &[&str]) -> Option<std::process::Output> {
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        eprintln!("skipped: running the CLI as another user needs root");
        return None;
    }
    let socket = daemon.socket_path().display().to_string();
    let mut command = tokio::process::Command::new("setpriv");
    command.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        crate::harness::daemon::BIN,
        "--socket",
        &socket,
    ]);
    command.args(args);
    Some(command.output().await.expect("setpriv runs"))
}

#[tokio::test]
async fn the_admin_socket_takes_its_group_and_allowed_uids() {
    let daemon = Daemon::builder()
        .set("admin", "group", "65534")
        .set("admin", "allowed_uids", vec![12345i64])
        .start()
        .await;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(daemon.socket_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534);
    // The daemon's own uid is always allowed.
    daemon.cli_ok(&["status"]).await;
    let Some(out) = cli_as_nobody(&daemon, &["status"]).await else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got in: {stderr}");
    assert!(stderr.contains("allowed_uids"), "{stderr}");
    assert!(
        daemon.log().contains("admin connection refused"),
        "the refusal is logged"
    );
}

#[tokio::test]
async fn an_allowed_uid_in_the_socket_group_may_use_the_cli() {
    let daemon = Daemon::builder()
        .set("admin", "group", "65534")
        .set("admin", "allowed_uids", vec![65534i64])
        .start()
        .await;
    let Some(out) = cli_as_nobody(&daemon, &["status"]).await else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Connects to ingest and sends `bytes` (maybe a partial request).
async fn raw_connection(daemon: &Daemon, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(daemon.ingest_addr())
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the peer closes; returns what arrived, or `None` if it stayed open past `deadline`.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    deadline: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(deadline, stream.read_to_end(&mut got)).await;
    match read {
        Ok(_) => Some(got),
        Err(_) => None,
    }
}

const EVENT: &str = r#"{"type":"slow.test","data":{}}"#;

#[tokio::test]
async fn slow_and_idle_clients_do_not_starve_ingest() {
    let daemon = Daemon::builder()
        .set("ingest", "header_timeout", "1s")
        .set("ingest", "idle_timeout", "1s")
        .start()
        .await;
    // Forty clients trickle half a request head and stop.
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(
            raw_connection(
                &daemon,
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Ty",
            )
            .await,
        );
    }
    // A real client is served meanwhile, at once.
    let started = std::time::Instant::now();
    let (status, _) = daemon
        .post_event(&json!({"type": "slow.test", "data": {}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The slow ones are cut off once header_timeout passes.
    for stream in &mut slow {
        assert!(
            read_until_closed(stream, SOON).await.is_some(),
            "a slow client was kept open"
        );
    }

    // A keep-alive connection that goes quiet after a request is closed too.
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{EVENT}",
        EVENT.len()
    );
    let mut idle = raw_connection(&daemon, request.as_bytes()).await;
    let answer = read_until_closed(&mut idle, SOON)
        .await
        .expect("closed after idle_timeout");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 202"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408() {
    let daemon = Daemon::builder()
        .set("ingest", "request_timeout", "1s")
        .start()
        .await;
    let head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":";
    let mut stream = raw_connection(&daemon, head.as_bytes()).await;
    let answer = read_until_closed(&mut stream, SOON)
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("ingest.request_timeout"), "{text}");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_slots_come_back() {
    let daemon = Daemon::builder()
        .set("ingest", "max_connections", 4)
        .set("ingest", "header_timeout", "1s")
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(raw_connection(&daemon, b"POST /v1/events HTTP/1.1\r\n").await);
    }
    // Give the daemon a moment to accept all four: wait until a fifth is refused.
    let refused = wait_until("a connection past the cap closed at once", SOON, || async {
        let mut extra = raw_connection(&daemon, b"").await;
        match read_until_closed(&mut extra, std::time::Duration::from_millis(300)).await {
            Some(bytes) if bytes.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let () = refused;
    // Once header_timeout frees the held slots, ingest serves again.
    for stream in &mut held {
        assert!(read_until_closed(stream, SOON).await.is_some());
    }
    let (status, body) = daemon
        .post_event(&json!({"type": "cap.test", "data": {}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_tenant_token_posts_only_for_its_tenant() {
    let mut open = toml::Table::new();
    open.insert("token".into(), "acme-token".into());
    open.insert("tenant".into(), "acme".into());
    let daemon = Daemon::builder()
        .set(
            "ingest",
            "tokens",
            toml::Value::Array(vec!["admin-token".into(), toml::Value::Table(open)]),
        )
        .start()
        .await;
    let post = |token: &'static str, body: serde_json::Value, path: &'static str| {
        let addr = daemon.ingest_addr();
        async move {
            let auth = format!("Bearer {token}");
            crate::harness::http::request(
                addr,
                Method::POST,
                path,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                body.to_string(),
            )
            .await
        }
    };
    let ok = post(
        "acme-token",
        json!({"type": "t.x", "tenant": "acme", "data": {}}),
        "/v1/events",
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text());
    let other = post(
        "acme-token",
        json!({"type": "t.x", "tenant": "globex", "data": {}}),
        "/v1/events",
    )
    .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.text());
    assert_eq!(other.json()["error"]["code"], "forbidden_tenant");
    let untenanted = post(
        "acme-token",
        json!({"type": "t.x", "data": {}}),
        "/v1/events",
    )
    .await;
    assert_eq!(untenanted.status, StatusCode::FORBIDDEN);
    let batch = post(
        "acme-token",
        json!([{"type": "t.x", "tenant": "acme", "data": {}}, {"type": "t.x", "tenant": "globex", "data": {}}]),
        "/v1/events/batch",
    )
    .await;
    assert_eq!(batch.status, StatusCode::FORBIDDEN);
    assert!(batch.text().contains("events[1]"), "{}", batch.text());
    // The unlimited token posts for anyone.
    let admin = post(
        "admin-token",
        json!({"type": "t.x", "tenant": "globex", "data": {}}),
        "/v1/events",
    )
    .await;
    assert_eq!(admin.status, StatusCode::ACCEPTED);
    assert!(
        !daemon.log().contains("acme-token"),
        "a token reached the log"
    );
}

#[tokio::test]
async fn store_files_are_owner_only() {
    let daemon = Daemon::builder().start().await;
    let batch: Vec<serde_json::Value> = (0..200)
        .map(|i| json!({"type": "perm.x", "data": {"i": i, "pad": "x".repeat(2000)}}))
        .collect();
    daemon.post_batch(&serde_json::Value::Array(batch)).await;
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            out.push((entry.path(), mode));
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), out);
            }
        }
    }
    let store = daemon.storage_path().to_path_buf();
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // New files get fixed within a second; wait for a state with none open to others.
    wait_until("every store file owner-only", SOON, || async {
        let mut files = Vec::new();
        walk(&store, &mut files);
        let open: Vec<_> = files
            .into_iter()
            .filter(|(_, mode)| mode & 0o077 != 0)
            .collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn require_https_refuses_plain_http_urls() {
    let daemon = Daemon::builder()
        .set("delivery", "require_https", true)
        .start()
        .await;
    let (status, body) = daemon
        .admin()
        .request(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "http://127.0.0.1:9/x"})),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("delivery.require_https"), "{text}");
    let (status, _) = daemon
        .admin()
        .request(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"url": "https://127.0.0.1:9/x"})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
}
