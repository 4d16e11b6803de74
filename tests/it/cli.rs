//! The CLI, run as the binary against a live daemon: JSON and human output,
//! every command of the contract, and its exit codes.

use crate::harness::daemon::{cli_at, BIN};
use crate::harness::{sub_to, verify_signature, Daemon, Receiver, SOON};
use hookd::api;
use serde_json::json;

#[tokio::test]
async fn sub_add_json_prints_the_subscription_with_id_and_secret() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/hook");
    let out = daemon
        .cli_ok(&[
            "sub",
            "add",
            "--url",
            &url,
            "--event",
            "invoice.*",
            "--event",
            "user.created",
            "--header",
            "X-Team: payments",
            "--json",
        ])
        .await;
    let sub: api::Subscription =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(sub.id.starts_with("sub_"), "{out}");
    let secret = sub.secret.clone().expect("the secret is printed");
    assert!(secret.starts_with("whsec_"), "{out}");
    assert_eq!(sub.url, url);
    assert_eq!(sub.events, ["invoice.*", "user.created"]);
    assert_eq!(sub.headers, ["X-Team: payments"]);

    daemon
        .post_new(&json!({"type": "invoice.paid", "data": 1}))
        .await;
    let got = receiver.wait_for(1, SOON).await;
    verify_signature(&secret, &got[0]).expect("the printed secret verifies deliveries");
    assert_eq!(got[0].header("x-team"), Some("payments"));

    // Without --json the secret is shown to people, once.
    let out = daemon
        .cli_ok(&["sub", "add", "--url", &receiver.url("/other")])
        .await;
    assert!(out.contains("whsec_"), "{out}");
}

#[tokio::test]
async fn sub_list_prints_an_aligned_table() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let mut a = sub_to(receiver.url("/a"));
    a.events = vec!["invoice.*".into()];
    a.tenant = Some("acme".into());
    let a = daemon.add_sub(a).await;
    let b = daemon
        .add_sub(sub_to(receiver.url("/a-much-longer-path/for/alignment")))
        .await;
    daemon.sub_action(&b.id, "pause").await;

    let out = daemon.cli_ok(&["sub", "list"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{out}");
    // Columns are counted in characters: a long URL is cut with a one-char ellipsis.
    let from = |line: &str, col: usize| line.chars().skip(col).collect::<String>();
    let column = |name: &str| lines[0].find(name).expect(name);
    assert!(lines[0].starts_with("ID"), "{out}");
    let (url, events, tenant, state) = (
        column("URL"),
        column("EVENTS"),
        column("TENANT"),
        column("STATE"),
    );
    assert!(url < events && events < tenant && tenant < state, "{out}");
    for (line, sub) in lines[1..].iter().zip([&a, &b]) {
        assert!(line.starts_with(&sub.id), "{out}");
        assert!(
            from(line, url).starts_with("http://127.0.0.1:"),
            "URL aligned:\n{out}"
        );
        let before_url: String = line.chars().take(url).collect();
        assert_eq!(before_url.trim_end(), sub.id, "{out}");
    }
    assert!(from(lines[1], events).starts_with("invoice.*"), "{out}");
    assert!(from(lines[1], tenant).starts_with("acme"), "{out}");
    assert!(from(lines[1], state).starts_with("active"), "{out}");
    assert!(from(lines[2], events).starts_with('-'), "{out}");
    assert!(from(lines[2], state).starts_with("paused"), "{out}");
    assert!(
        lines.iter().all(|l| l == &l.trim_end()),
        "no trailing spaces:\n{out}"
    );

    let out = daemon.cli_ok(&["--json", "sub", "list"]).await;
    let list: api::List<api::Subscription> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.items.len(), 2);
    assert!(
        list.items.iter().all(|s| s.secret.is_none()),
        "list never shows secrets"
    );
}

#[tokio::test]
async fn sub_get_hides_the_secret_unless_asked() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let secret = sub.secret.unwrap();

    let out = daemon.cli_ok(&["sub", "get", &sub.id]).await;
    assert!(out.contains(&sub.id) && out.contains(&sub.url), "{out}");
    assert!(!out.contains(&secret), "the secret is hidden:\n{out}");
    assert!(!out.contains("whsec_"), "{out}");
    let out = daemon.cli_ok(&["--json", "sub", "get", &sub.id]).await;
    assert!(!out.contains("whsec_"), "hidden in JSON too:\n{out}");

    let out = daemon
        .cli_ok(&["sub", "get", &sub.id, "--show-secret"])
        .await;
    assert!(out.contains(&secret), "--show-secret shows it:\n{out}");

    let missing = daemon.cli(&["sub", "get", "sub_missing"]).await;
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("sub_missing"), "{stderr}");
}

#[tokio::test]
async fn sub_pause_resume_rotate_and_rm() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let out = daemon.cli_ok(&["sub", "pause", &sub.id]).await;
    assert!(out.contains("paused"), "{out}");
    assert_eq!(daemon.subscription(&sub.id).await.state, "paused");
    let out = daemon.cli_ok(&["sub", "resume", &sub.id]).await;
    assert!(out.contains("active"), "{out}");
    assert_eq!(daemon.subscription(&sub.id).await.state, "active");

    let out = daemon
        .cli_ok(&["--json", "sub", "rotate-secret", &sub.id])
        .await;
    let rotated: api::Subscription = serde_json::from_str(&out).unwrap();
    let new_secret = rotated.secret.unwrap();
    assert_ne!(Some(&new_secret), sub.secret.as_ref());
    daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    let got = receiver.wait_for(1, SOON).await;
    verify_signature(&new_secret, &got[0]).unwrap();
    verify_signature(sub.secret.as_deref().unwrap(), &got[0]).unwrap();

    daemon.cli_ok(&["sub", "rm", &sub.id]).await;
    let out = daemon.cli_ok(&["sub", "list"]).await;
    assert!(!out.contains(&sub.id), "{out}");
}

#[tokio::test]
async fn event_and_delivery_commands_show_what_happened() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let id = daemon
        .post_new(&json!({"type": "invoice.paid", "id": "inv-cli-1", "data": {"amount": 1250, "rate": 0.5}}))
        .await;
    receiver.wait_for(1, SOON).await;
    let delivered = daemon.wait_event_delivery(&id, "delivered").await;

    let out = daemon.cli_ok(&["event", "list"]).await;
    assert!(
        out.contains("inv-cli-1") && out.contains("invoice.paid"),
        "{out}"
    );
    let out = daemon
        .cli_ok(&["event", "list", "--type", "other.type"])
        .await;
    assert!(!out.contains("inv-cli-1"), "{out}");

    let out = daemon.cli_ok(&["event", "get", &id]).await;
    assert!(out.contains("inv-cli-1"), "{out}");
    assert!(out.contains("1250"), "the data is shown:\n{out}");
    assert!(
        out.contains(&delivered.id),
        "the deliveries are shown:\n{out}"
    );
    let out = daemon.cli_ok(&["--json", "event", "get", &id]).await;
    let event: api::Event = serde_json::from_str(&out).unwrap();
    let data: serde_json::Value = serde_json::from_str(event.data.unwrap().get()).unwrap();
    assert_eq!(data, json!({"amount": 1250, "rate": 0.5}));

    let out = daemon
        .cli_ok(&[
            "delivery",
            "list",
            "--sub",
            &sub.id,
            "--status",
            "delivered",
        ])
        .await;
    assert!(
        out.contains(&delivered.id) && out.contains("delivered"),
        "{out}"
    );
    let out = daemon
        .cli_ok(&["delivery", "list", "--sub", &sub.id, "--status", "dead"])
        .await;
    assert!(!out.contains(&delivered.id), "{out}");

    let out = daemon.cli_ok(&["delivery", "get", &delivered.id]).await;
    assert!(out.contains(&delivered.id) && out.contains("200"), "{out}");
}

#[tokio::test]
async fn replay_since_creates_new_deliveries_that_arrive() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(daemon.post_new(&json!({"type": "a.b", "data": n})).await);
    }
    receiver.wait_for(3, SOON).await;
    for id in &ids {
        daemon.wait_event_delivery(id, "delivered").await;
    }

    let out = daemon
        .cli_ok(&["replay", "--sub", &sub.id, "--since", "1h"])
        .await;
    assert!(out.contains('3'), "three deliveries queued:\n{out}");
    let got = receiver.wait_for(6, SOON).await;
    let mut replayed = crate::harness::webhook_ids(&got[3..]);
    replayed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(replayed, want, "each event once more");
    let deliveries = daemon.deliveries(Some(&sub.id), None).await;
    assert_eq!(deliveries.len(), 6, "{deliveries:?}");

    // Nothing is dead, so a replay of dead ones queues nothing.
    let out = daemon
        .cli_ok(&[
            "--json", "replay", "--sub", &sub.id, "--since", "1h", "--status", "dead",
        ])
        .await;
    let requeued: api::Requeued = serde_json::from_str(&out).unwrap();
    assert!(requeued.deliveries.is_empty(), "{out}");
}

#[tokio::test]
async fn status_prints_for_people_and_as_json() {
    let daemon = Daemon::start().await;
    let out = daemon.cli_ok(&["status"]).await;
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert!(
        out.contains(&daemon.ingest_addr().to_string()),
        "the ingest address:\n{out}"
    );
    let out = daemon.cli_ok(&["--json", "status"]).await;
    let status: api::Status = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(status.ingest.accepting);
    assert_eq!(status.ingest.listen, daemon.ingest_addr().to_string());
}

#[tokio::test]
async fn hookd_socket_env_names_the_socket() {
    let daemon = Daemon::start().await;
    let out = tokio::process::Command::new(BIN)
        .args(["--json", "status"])
        .env("HOOKD_SOCKET", daemon.socket_path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _: api::Status = serde_json::from_slice(&out.stdout).unwrap();
}

#[tokio::test]
async fn missing_socket_exits_3_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-daemon-here.sock");
    let out = cli_at(&socket, &["status"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&socket.display().to_string()),
        "stderr names the socket: {stderr}"
    );

    // A daemon that was killed leaves a socket nobody answers on: also 3.
    let mut daemon = Daemon::start().await;
    daemon.kill9().await;
    let out = daemon.cli(&["status"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&daemon.socket_path().display().to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn sub_update_moves_pending_deliveries_to_the_new_url() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/old"))).await;
    daemon.cli_ok(&["sub", "pause", &sub.id]).await;
    let id = daemon.post_new(&json!({"type": "a.b", "data": 1})).await;
    let new_url = receiver.url("/new");
    let out = daemon
        .cli_ok(&["--json", "sub", "update", &sub.id, "--url", &new_url])
        .await;
    let updated: api::Subscription = serde_json::from_str(&out).unwrap();
    assert_eq!(updated.url, new_url);
    assert_eq!(updated.pending, 1, "the pending delivery is kept");
    daemon.cli_ok(&["sub", "resume", &sub.id]).await;
    let got = receiver.wait_for(1, SOON).await;
    assert_eq!(got[0].path, "/new");
    assert_eq!(got[0].header("webhook-id"), Some(id.as_str()));
}

#[tokio::test]
async fn replay_status_dead_resends_only_the_dead() {
    let daemon = Daemon::start().await;
    let receiver = Receiver::start().await;
    let sub = daemon.add_sub(sub_to(receiver.url("/hook"))).await;
    let fine = daemon
        .post_new(&json!({"type": "a.b", "data": "fine"}))
        .await;
    daemon.wait_event_delivery(&fine, "delivered").await;
    receiver.set_default("/hook", crate::harness::Reply::status(500));
    let doomed = daemon
        .post_new(&json!({"type": "a.b", "data": "doomed"}))
        .await;
    daemon.wait_event_delivery(&doomed, "dead").await;
    assert_eq!(
        receiver.requests().len(),
        4,
        "1 delivered, 3 failed attempts"
    );

    receiver.set_default("/hook", crate::harness::Reply::ok());
    let out = daemon
        .cli_ok(&[
            "--json", "replay", "--sub", &sub.id, "--since", "1h", "--status", "dead",
        ])
        .await;
    let requeued: api::Requeued = serde_json::from_str(&out).unwrap();
    assert_eq!(requeued.deliveries.len(), 1, "only the dead one: {out}");
    let got = receiver.wait_for(5, SOON).await;
    assert_eq!(got[4].header("webhook-id"), Some(doomed.as_str()));
    daemon
        .wait_delivery_status(&requeued.deliveries[0], "delivered")
        .await;
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let daemon = Daemon::start().await;
    for args in [
        &["sub", "add"][..],
        &["sub", "add", "--url", "not-a-url"][..],
        &["delivery", "list", "--status", "sideways"][..],
        &["replay", "--sub", "x", "--since", "whenever"][..],
        &["frobnicate"][..],
    ] {
        let out = daemon.cli(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
