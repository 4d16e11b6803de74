//! Power loss: the store on LazyFS, which keeps every byte not yet fsynced in
//! a cache of its own and drops it on command, as a power cut does. Under
//! load (single events, batches, events of 200 KB) and after an admin change,
//! the daemon is killed and then the cache dropped; the restarted daemon
//! must hold and deliver every acknowledged event, and keep the change.
//!
//! Needs root, `/dev/fuse` and a C++ toolchain (to build LazyFS once, see
//! `../shared/tools/lazyfs/`); without them the test says why and passes.

use crate::harness::load::{seed_from_env, Load, LoadSpec};
use crate::harness::tally::{TallyReceiver, SECRET};
use crate::harness::{sub_to, Daemon, DaemonBuilder};
use hookd::api;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LAZYFS_SH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/tools/lazyfs/lazyfs.sh"
);

/// A LazyFS mount in a temp dir; unmounted on drop, also when a test fails.
struct LazyFs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LazyFs {
    /// Builds (once) and mounts LazyFS, or says why it cannot and returns `None`.
    fn mount_or_skip(test: &str) -> Option<LazyFs> {
        let skip = |why: String| {
            println!("{test}: skipped: {why}");
            eprintln!("{test}: skipped: {why}");
            None
        };
        if !rustix::process::geteuid().is_root() {
            return skip("needs root to mount LazyFS (FUSE)".into());
        }
        if !Path::new("/dev/fuse").exists() {
            return skip("/dev/fuse does not exist: FUSE is not available here".into());
        }
        if !Path::new(LAZYFS_SH).exists() {
            return skip(format!("{LAZYFS_SH} is missing"));
        }
        let began = std::time::Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("hookd-lazyfs-")
            .tempdir()
            .expect("a temp dir");
        // The load below writes a few tens of MB; the cache must never fill
        // (LazyFS would then write through and the test would prove less).
        let out = Command::new(LAZYFS_SH)
            .arg("mount")
            .arg(dir.path())
            .env("LAZYFS_CACHE", "256mb")
            .output()
            .expect("running lazyfs.sh mount");
        // `mount` builds LazyFS first if needed (once, ~2 min).
        if !out.status.success() {
            return skip(format!(
                "LazyFS could not be built or mounted (it needs a C++ toolchain and its \
                 packages, and a usable FUSE): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mnt = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        println!("{test}: LazyFS mounted in {:?}", began.elapsed());
        Some(LazyFs { dir, mnt })
    }

    /// Sends a fault command and waits until LazyFS logs `done` for it.
    async fn command(&self, command: &str, done: &str) -> String {
        let log = self.dir.path().join("lazyfs.log");
        let before = std::fs::read_to_string(&log).unwrap_or_default().len();
        std::fs::write(self.dir.path().join("faults.fifo"), format!("{command}\n"))
            .expect("writing the LazyFS fault FIFO");
        for _ in 0..200 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text[before.min(text.len())..]
                .lines()
                .find(|l| l.contains(done))
            {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("LazyFS did not log {done:?} within 5s after {command}");
    }

    /// Percent of LazyFS's cache pages in use.
    async fn cache_usage(&self) -> f64 {
        let line = self
            .command("lazyfs::display-cache-usage", "cache usage")
            .await;
        line.rsplit(' ')
            .next()
            .and_then(|p| p.trim_end_matches('%').parse().ok())
            .unwrap_or_else(|| panic!("no percentage in {line:?}"))
    }

    /// The power cut: everything not fsynced is gone.
    async fn clear_cache(&self) {
        self.command("lazyfs::clear-cache", "cache is cleared")
            .await;
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let began = std::time::Instant::now();
        let _ = Command::new(LAZYFS_SH)
            .arg("umount")
            .arg(self.dir.path())
            .status();
        println!("power: LazyFS unmounted in {:?}", began.elapsed());
    }
}

/// The daemon's config for power cuts: store on the mount, socket outside it.
fn on_lazyfs(lazy: &LazyFs) -> DaemonBuilder {
    let store = lazy.mnt.join("data").display().to_string();
    let schedule: Vec<&str> = std::iter::repeat_n("100ms", 40).collect();
    Daemon::builder()
        .set("storage", "path", store.as_str())
        .set("ingest", "max_body", "1MiB")
        .set("delivery", "retry_schedule", schedule)
        .set("delivery", "breaker_probe", "100ms")
        .set("delivery", "breaker_probe_max", "200ms")
        .set("log", "level", "hookd=info")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_and_admin_changes_survive_power_cuts() {
    let Some(lazy) = LazyFs::mount_or_skip("power") else {
        return;
    };
    let seed = seed_from_env("HOOKD_POWER_SEED");
    let began = std::time::Instant::now();
    let receiver = TallyReceiver::start().await;
    let mut daemon = on_lazyfs(&lazy).start().await;
    let mut active = sub_to(receiver.url("/active"));
    active.secret = Some(SECRET.into());
    daemon.add_sub(active).await;
    let mut held = sub_to(receiver.url("/paused"));
    held.secret = Some(SECRET.into());
    let held = daemon.add_sub(held).await;

    let load = Load::start(LoadSpec {
        clients: 3,
        seed,
        batch_one_in: 4,
        max_batch: 3,
        // Far over sled's blob threshold (~128 KiB) and under max_body.
        big_one_in: 6,
        big_data: 200_000,
        pause_ms: (5, 20),
        event_type: "power.tick".into(),
    });
    let cuts = 2;
    for cut in 0..cuts {
        load.aim(Some(daemon.ingest_addr()));
        tokio::time::sleep(Duration::from_millis(600)).await;
        if cut == 0 {
            let paused = daemon.sub_action(&held.id, "pause").await;
            assert_eq!(paused.state, "paused");
        }
        // A backlog at the cut: open deliveries must survive too.
        receiver.set_status(503);
        tokio::time::sleep(Duration::from_millis(600)).await;
        daemon.kill9().await;
        load.aim(None);
        let usage = lazy.cache_usage().await;
        assert!(
            usage < 90.0,
            "LazyFS's cache is {usage}% full: it may have written through, the cut proves less"
        );
        lazy.clear_cache().await;
        println!(
            "power: cut {cut} at {:?}: {} acknowledged so far, LazyFS cache {usage:.1}% used \
             before the cut",
            began.elapsed(),
            load.acked()
        );
        receiver.set_status(200);
        daemon.restart().await;
        println!("power: restarted at {:?}", began.elapsed());
    }
    let report = load.stop().await;
    println!("power: load stopped at {:?}", began.elapsed());
    assert!(
        report.unexpected.is_empty(),
        "unexpected answers: {:?}",
        report.unexpected
    );

    let acked: Vec<String> = report.acked.keys().cloned().collect();
    let big = report.acked.values().filter(|&&n| n > 100_000).count();
    assert!(
        acked.len() > 50 && big > 5,
        "too little load to prove anything: {} acknowledged, {big} big",
        acked.len()
    );
    let mut lost = Vec::new();
    for (id, len) in &report.acked {
        let found: Result<api::Event, _> =
            daemon.admin().get_json(&format!("/v1/events/{id}")).await;
        match found {
            Ok(event) => {
                let stored = event.data.as_ref().map(|d| d.get().len());
                assert_eq!(stored, Some(*len), "event {id}: data length after the cuts");
            }
            Err(e) => lost.push(format!("{id}: {e}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost to power cuts (seed {seed}), e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    println!("power: every event found at {:?}", began.elapsed());
    receiver
        .wait_delivered("/active", &acked, Duration::from_secs(60))
        .await;
    println!("power: every event delivered at {:?}", began.elapsed());
    let tally = receiver.tally("/active");
    assert!(
        tally.bad_signatures.is_empty(),
        "{:?}",
        tally.bad_signatures
    );
    let after = daemon.subscription(&held.id).await;
    assert_eq!(
        after.state, "paused",
        "the pause survives the cuts: {after:?}"
    );
    // Pages over sled's blob threshold go to files sled never fsyncs: none may appear.
    let blobs: Vec<_> = std::fs::read_dir(lazy.mnt.join("data/blobs"))
        .expect("the store's blobs directory")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(blobs.is_empty(), "sled wrote blob files: {blobs:?}");
    let (dup_ids, _) = tally.duplicates();
    println!(
        "power: seed {seed}, {cuts} cuts: {} events acknowledged ({big} of 200 KB), 0 lost, all \
         delivered ({dup_ids} more than once); the paused subscription is still paused",
        acked.len()
    );
    assert!(daemon.sigterm().await.success(), "{}", daemon.log());
    println!("power: stopped at {:?}", began.elapsed());
}
