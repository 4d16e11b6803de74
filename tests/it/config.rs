//! Bad configuration is refused at start with exit code 2, naming the file,
//! the key and the reason.

use crate::harness::daemon::BIN;
use crate::harness::{Daemon, DaemonBuilder};

/// Starts with `builder`'s config, expects exit code 2, returns stderr.
async fn refused(builder: DaemonBuilder) -> String {
    let config = builder.dir().join("hookd.toml").display().to_string();
    let refused = builder.start_expecting_failure().await;
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains(&config),
        "stderr names the config file {config}: {}",
        refused.stderr
    );
    refused.stderr
}

#[tokio::test]
async fn unknown_key_is_refused_by_name() {
    let stderr = refused(Daemon::builder().set("ingest", "listen_on", "127.0.0.1:0")).await;
    assert!(stderr.contains("listen_on"), "{stderr}");
    let stderr = refused(Daemon::builder().set("delivery", "retries", 3)).await;
    assert!(stderr.contains("retries"), "{stderr}");
}

#[tokio::test]
async fn unknown_section_is_refused_by_name() {
    let stderr = refused(Daemon::builder().set("storag", "path", "/tmp/x")).await;
    assert!(stderr.contains("storag"), "{stderr}");
}

#[tokio::test]
async fn bad_duration_names_the_key() {
    let stderr = refused(Daemon::builder().set("delivery", "timeout", "soon")).await;
    assert!(
        stderr.contains("timeout") && stderr.contains("soon"),
        "{stderr}"
    );
    let stderr =
        refused(Daemon::builder().set("delivery", "retry_schedule", vec!["1s", "later"])).await;
    assert!(
        stderr.contains("retry_schedule") && stderr.contains("later"),
        "{stderr}"
    );
    let stderr = refused(Daemon::builder().set("storage", "retention", 7)).await;
    assert!(stderr.contains("retention"), "{stderr}");
}

#[tokio::test]
async fn bad_size_cidr_and_address_name_the_key() {
    let stderr = refused(Daemon::builder().set("ingest", "max_body", "lots")).await;
    assert!(stderr.contains("max_body"), "{stderr}");
    let stderr =
        refused(Daemon::builder().set("delivery", "allow_networks", vec!["10.0.0.0/99"])).await;
    assert!(stderr.contains("allow_networks"), "{stderr}");
    let stderr = refused(Daemon::builder().set("ingest", "listen", "localhost")).await;
    assert!(stderr.contains("listen"), "{stderr}");
    let stderr = refused(Daemon::builder().set("delivery", "timeout", "0s")).await;
    assert!(stderr.contains("delivery.timeout"), "{stderr}");
}

#[tokio::test]
async fn missing_config_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let out = tokio::process::Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[tokio::test]
async fn example_config_passes_check_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let out = tokio::process::Command::new(BIN)
        .args(["check-config", example])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}
