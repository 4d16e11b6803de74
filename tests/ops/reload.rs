//! SIGHUP: tokens, delivery settings and the log level change in place; an
//! invalid file is refused and the running config stays.

use crate::harness::{eventually, Daemon, Receiver, Setup};

const EVENT: &str = r#"{"type":"invoice.paid","data":{"n":1}}"#;

fn with_tokens_file() -> Setup {
    Setup {
        ingest: "tokens = [\"inline-old\"]\ntokens_file = \"tokens\"".into(),
        ..Setup::default()
    }
}

#[test]
fn tokens_change_on_hangup() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), "# ingest tokens\nfile-old\n").unwrap();
    let daemon = Daemon::start_in(dir, with_tokens_file());
    for token in ["inline-old", "file-old"] {
        assert_eq!(daemon.post_event(Some(token), EVENT).status, 202, "{token}");
    }
    assert_eq!(daemon.post_event(Some("file-new"), EVENT).status, 401);

    // Rotate: a new token in the file, another inline.
    std::fs::write(daemon.dir.path().join("tokens"), "file-new\n").unwrap();
    let mut setup = with_tokens_file();
    setup.ingest = "tokens = [\"inline-new\"]\ntokens_file = \"tokens\"".into();
    daemon.rewrite_config(&setup);
    let mark = daemon.log_len();
    daemon.signal("HUP");
    daemon.wait_log(mark, &["config reloaded", "tokens_changed=true"]);
    for token in ["inline-old", "file-old"] {
        assert_eq!(daemon.post_event(Some(token), EVENT).status, 401, "{token}");
    }
    for token in ["inline-new", "file-new"] {
        assert_eq!(daemon.post_event(Some(token), EVENT).status, 202, "{token}");
    }
}

#[test]
fn an_invalid_file_is_refused_and_the_old_config_stays() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), "file-old\n").unwrap();
    let daemon = Daemon::start_in(dir, with_tokens_file());

    daemon.write_config_text(&format!(
        "{}\n[delivery]\ntimeout = \"soonish\"\n",
        std::fs::read_to_string(&daemon.config)
            .unwrap()
            .replace("[delivery]\n", "")
    ));
    let mark = daemon.log_len();
    daemon.signal("HUP");
    let line = daemon.wait_log(mark, &["config reload refused"]);
    let log = daemon.log();
    let refused = log.lines().nth(line).unwrap();
    assert!(
        refused.contains("timeout") && refused.contains("soonish"),
        "{refused}"
    );
    assert_eq!(daemon.post_event(Some("file-old"), EVENT).status, 202);
    assert_eq!(daemon.get("/healthz").status, 200);

    // A token file that vanished is refused the same way.
    std::fs::remove_file(daemon.dir.path().join("tokens")).unwrap();
    daemon.rewrite_config(&with_tokens_file());
    let mark = daemon.log_len();
    daemon.signal("HUP");
    daemon.wait_log(mark, &["config reload refused", "ingest.tokens_file"]);
    assert_eq!(daemon.post_event(Some("file-old"), EVENT).status, 202);
}

#[test]
fn restart_only_keys_are_reported_not_applied() {
    let daemon = Daemon::start(Setup::default());
    let setup = Setup {
        storage: "cache = \"32MiB\"".into(),
        ..Setup::default()
    };
    daemon.rewrite_config(&setup);
    let mark = daemon.log_len();
    daemon.signal("HUP");
    daemon.wait_log(mark, &["needs a restart", "key=storage.cache"]);
    daemon.wait_log(mark, &["config reloaded", "need_restart=1"]);
}

#[test]
fn log_level_and_address_policy_change_live() {
    let receiver = Receiver::start();
    let daemon = Daemon::start(Setup::default());
    let sub = format!(r#"{{"url":"{}"}}"#, receiver.url());

    // Loopback is blocked by default, and no debug lines are logged.
    let refused = daemon.admin("POST", "/v1/subscriptions", Some(&sub));
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(daemon.post_event(None, EVENT).status, 202);

    let setup = Setup {
        delivery: "allow_networks = [\"127.0.0.0/8\"]\nretry_schedule = [\"1s\"]".into(),
        log: "level = \"debug\"".into(),
        ..Setup::default()
    };
    daemon.rewrite_config(&setup);
    let mark = daemon.log_len();
    daemon.signal("HUP");
    daemon.wait_log(
        mark,
        &["config reloaded", "delivery.allow_networks", "log.level"],
    );
    assert!(
        !daemon.log().contains("event accepted"),
        "a debug line before the level changed"
    );

    let created = daemon.admin("POST", "/v1/subscriptions", Some(&sub));
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(daemon.post_event(None, EVENT).status, 202);
    daemon.wait_log(mark, &["event accepted"]);
    eventually("the receiver gets the delivery", || {
        receiver.count.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
}
