//! A full disk never turns into an acknowledged loss: the store on a 2 MiB
//! tmpfs fills up, ingest answers 503 (never 2xx for what it could not
//! keep), the daemon exits non-zero because sled stays unusable after an I/O
//! error, and once space is freed a restart has every acknowledged event.
//!
//! Needs root to mount the tmpfs; without it the test says why and passes.

use crate::harness::load::try_request;
use crate::harness::tally::{TallyReceiver, SECRET};
use crate::harness::{sub_to, Daemon};
use hyper::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small tmpfs, unmounted on drop (after the daemon on it has died).
struct Tmpfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Tmpfs {
    fn mount_or_skip(size: &str) -> Option<Tmpfs> {
        if !rustix::process::geteuid().is_root() {
            println!("diskfull: skipped: needs root to mount a small tmpfs");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("hookd-full-")
            .tempdir()
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { _dir: dir, mnt }),
            Ok(o) => {
                println!(
                    "diskfull: skipped: cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("diskfull: skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.mnt)
            .status()
            .unwrap();
        assert!(status.success(), "remounting the tmpfs at {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        if Path::new(&self.mnt).join("data").exists() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

#[tokio::test]
async fn a_full_disk_refuses_ingest_stops_the_daemon_and_loses_nothing_acknowledged() {
    let Some(tmpfs) = Tmpfs::mount_or_skip("2m") else {
        return;
    };
    let receiver = TallyReceiver::start().await;
    let store = tmpfs.mnt.join("data").display().to_string();
    let mut daemon = Daemon::builder()
        .set("storage", "path", store.as_str())
        .set("log", "level", "hookd=info")
        .start()
        .await;
    let mut sub = sub_to(receiver.url("/hook"));
    sub.secret = Some(SECRET.into());
    let sub = daemon.add_sub(sub).await;
    // Held, so the store keeps growing until the disk is full.
    daemon.sub_action(&sub.id, "pause").await;

    let pad = "f".repeat(3000);
    let mut acked = Vec::new();
    let started = Instant::now();
    let refusal = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "2 MiB never filled up: {} acknowledged",
            acked.len()
        );
        let id = format!("full-{}", acked.len());
        let body = format!(r#"{{"type":"disk.fill","id":"{id}","data":{{"pad":"{pad}"}}}}"#);
        match try_request(
            daemon.ingest_addr(),
            Method::POST,
            "/v1/events",
            body,
            Duration::from_secs(10),
        )
        .await
        {
            Ok(a) if a.status == StatusCode::ACCEPTED => acked.push(id),
            Ok(a) => break Some(a),
            // The daemon already stopped: no answer is no acknowledgement.
            Err(_) => break None,
        }
    };
    if let Some(answer) = &refusal {
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text()
        );
        assert!(answer.headers.contains_key("retry-after"), "{answer:?}");
        assert_eq!(answer.json()["error"]["code"], "unavailable");
    }
    let exit = daemon.wait_exit(Duration::from_secs(30)).await;
    assert!(
        !exit.success(),
        "an unusable store stops the daemon with an error: {exit}"
    );
    let log = daemon.log();
    // The write or the flush after it may be the one that fails.
    let said = [
        format!("a write to the store at {store} failed: no storage space"),
        format!("flushing the store at {store} failed: no storage space"),
    ];
    assert!(
        said.iter().any(|why| log.contains(why)),
        "the log says where and why:\n{log}"
    );
    println!(
        "diskfull: {} acknowledged before the disk filled; then {}; the daemon exited with {exit}",
        acked.len(),
        refusal.map_or("no answer".to_string(), |a| a.status.to_string())
    );

    tmpfs.resize("16m");
    daemon.restart().await;
    for id in &acked {
        assert_eq!(daemon.event(id).await.id, *id, "acknowledged, so kept");
    }
    daemon.sub_action(&sub.id, "resume").await;
    receiver
        .wait_delivered("/hook", &acked, Duration::from_secs(30))
        .await;
    daemon
        .post_new(&serde_json::json!({"type": "disk.fill", "data": "room again"}))
        .await;
    assert!(daemon.sigterm().await.success(), "{}", daemon.log());
}
