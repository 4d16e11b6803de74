//! Logs: secrets and payloads never reach stderr, whatever the level, and
//! under journald lines carry no timestamp of their own.

use crate::harness::{eventually, Daemon, Receiver, Setup};
use std::sync::atomic::Ordering;

#[test]
fn tokens_secrets_and_payloads_are_never_logged() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), "tok-SECRET-file\n").unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("ingest-tokens"), "tok-SECRET-cred\n").unwrap();
    let setup = Setup {
        ingest: "tokens = [\"tok-SECRET-inline\"]\ntokens_file = \"tokens\"".into(),
        delivery: "allow_networks = [\"127.0.0.0/8\"]".into(),
        ..Setup::default()
    }
    .env("RUST_LOG", "trace")
    .env("CREDENTIALS_DIRECTORY", creds.display().to_string());
    let daemon = Daemon::start_in(dir, setup.clone());

    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sub = format!(
        r#"{{"url":"{}?key=URL-SECRET","secret":"{secret}","headers":["Authorization: Bearer HDR-SECRET"]}}"#,
        receiver.url()
    );
    let created = daemon.admin("POST", "/v1/subscriptions", Some(&sub));
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();

    let event = r#"{"type":"invoice.paid","data":{"card":"PAYLOAD-SECRET"}}"#;
    for token in ["tok-SECRET-inline", "tok-SECRET-file", "tok-SECRET-cred"] {
        assert_eq!(daemon.post_event(Some(token), event).status, 202, "{token}");
    }
    assert_eq!(
        daemon.post_event(Some("tok-SECRET-wrong"), event).status,
        401
    );
    eventually("three deliveries", || {
        receiver.count.load(Ordering::SeqCst) >= 3
    });
    let rotated = daemon.admin(
        "POST",
        &format!("/v1/subscriptions/{id}/rotate-secret"),
        None,
    );
    assert_eq!(rotated.status, 200);
    let shown = daemon.admin(
        "GET",
        &format!("/v1/subscriptions/{id}?show_secret=true"),
        None,
    );
    assert_eq!(shown.status, 200);
    let mark = daemon.log_len();
    daemon.signal("HUP");
    daemon.wait_log(mark, &["config reloaded"]);

    let log = daemon.log();
    assert!(log.contains("event accepted"), "trace logging is on");
    let new_secret = rotated.json()["secret"].as_str().unwrap().to_string();
    for needle in [
        "tok-SECRET",
        "PAYLOAD-SECRET",
        "URL-SECRET",
        "HDR-SECRET",
        secret,
        &new_secret,
        &secret["whsec_".len()..],
    ] {
        assert!(!log.contains(needle), "{needle:?} was logged:\n{log}");
    }
}

#[test]
fn journald_lines_have_no_timestamp() {
    let ready_line = |daemon: &Daemon| {
        let i = daemon.wait_log(0, &["hookd ready"]);
        daemon.log().lines().nth(i).unwrap().to_string()
    };
    let journald = Daemon::start(Setup::default().env("JOURNAL_STREAM", "8:12345"));
    let line = ready_line(&journald);
    assert!(
        line.starts_with(" INFO") || line.starts_with("INFO"),
        "{line}"
    );

    let terminal = Daemon::start(Setup::default());
    let line = ready_line(&terminal);
    assert!(line.starts_with("20"), "a timestamp first: {line}");
}
