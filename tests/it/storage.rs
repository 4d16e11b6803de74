//! A store hookd cannot use is refused, never reset: a store locked by a
//! running hookd, one written by a newer schema, and one with garbage in its
//! data file each give a non-zero exit and an error that names the path and
//! says what to do, and the store's files stay where they are.

use crate::harness::load::XorShift;
use crate::harness::Daemon;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// Every file of the store with its length (sled's snapshot files come and go).
fn files(store: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(store)
        .expect("the store directory")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect()
}

/// Asserts the store's files are all still there, none shorter than before.
fn assert_kept(before: &BTreeMap<String, u64>, store: &Path) {
    let after = files(store);
    for (name, len) in before {
        if name.starts_with("snap.") {
            continue;
        }
        let now = after.get(name).copied();
        assert!(
            now.is_some_and(|n| n >= *len),
            "{name} was {len} bytes and is now {now:?}: {after:?}"
        );
    }
}

/// Asserts the refusal names the store and says what to do.
fn assert_refusal(stderr: &str, store: &Path, what: &[&str]) {
    let store = store.display().to_string();
    assert!(stderr.contains(&store), "names {store}: {stderr}");
    for w in what {
        assert!(stderr.contains(w), "says {w:?}: {stderr}");
    }
    assert!(
        !stderr.contains("Os {"),
        "no Debug-formatted error: {stderr}"
    );
}

async fn daemon_with_events(n: usize) -> (Daemon, Vec<String>) {
    let daemon = Daemon::start().await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            daemon
                .post_new(&json!({"type": "kept.event", "data": {"n": i}}))
                .await,
        );
    }
    (daemon, ids)
}

#[tokio::test]
async fn a_second_daemon_on_a_locked_store_is_refused_and_the_first_keeps_its_data() {
    let (first, ids) = daemon_with_events(5).await;
    let store = first.storage_path().to_owned();
    let before = files(&store);
    let refused = Daemon::builder()
        .set("storage", "path", store.display().to_string().as_str())
        .start_expecting_failure()
        .await;
    assert!(!refused.status.success(), "{refused:?}");
    assert_refusal(
        &refused.stderr,
        &store,
        &["locked", "another hookd", "storage.path"],
    );
    assert_kept(&before, &store);
    for id in &ids {
        assert_eq!(first.event(id).await.id, *id);
    }
    first
        .post_new(&json!({"type": "still.serving", "data": 1}))
        .await;
}

#[tokio::test]
async fn a_store_of_a_newer_schema_is_refused_and_kept_intact() {
    let (mut daemon, ids) = daemon_with_events(5).await;
    assert!(daemon.sigterm().await.success(), "{}", daemon.log());
    let store = daemon.storage_path().to_owned();
    let set_schema = |version: u32| {
        let db = sled::open(&store).expect("sled opens the stopped store");
        db.open_tree("meta")
            .unwrap()
            .insert("schema", &version.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    };
    set_schema(99);
    let before = files(&store);

    let refused = daemon.restart_expecting_failure().await;
    assert!(!refused.status.success(), "{refused:?}");
    assert_refusal(&refused.stderr, &store, &["newer hookd", "schema 99"]);
    assert_kept(&before, &store);

    // Nothing was touched: back at schema 1, every event is there, and the
    // store is marked with this hookd's schema before it writes to it.
    set_schema(1);
    daemon.restart().await;
    for id in &ids {
        assert_eq!(daemon.event(id).await.id, *id);
    }
    assert!(daemon.sigterm().await.success(), "{}", daemon.log());
    let db = sled::open(&store).expect("sled opens the stopped store");
    let schema = db
        .open_tree("meta")
        .unwrap()
        .get("schema")
        .unwrap()
        .unwrap();
    assert_eq!(schema.as_ref(), hookd::store::SCHEMA_VERSION.to_be_bytes());
}

/// Stops the daemon cleanly, writes garbage over `len` bytes of `db` at `at`
/// (a fraction of its length), and expects every start to refuse.
async fn refuses_garbage_at(at: f64, len: usize) {
    let (mut daemon, _) = daemon_with_events(60).await;
    assert!(daemon.sigterm().await.success(), "{}", daemon.log());
    let store = daemon.storage_path().to_owned();
    let db = store.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let start = (bytes.len() as f64 * at) as usize;
    let end = (start + len).min(bytes.len());
    let mut rng = XorShift::new(start as u64 + 1);
    for b in &mut bytes[start..end] {
        *b = rng.next_u64() as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    let before = files(&store);

    for attempt in 0..2 {
        let refused = daemon.restart_expecting_failure().await;
        assert!(!refused.status.success(), "attempt {attempt}: {refused:?}");
        assert_refusal(
            &refused.stderr,
            &store,
            &["damaged", "restore it from a backup", "move it aside"],
        );
        assert_kept(&before, &store);
        let now = std::fs::read(&db).unwrap();
        assert_eq!(
            now[..start.saturating_sub(4096)],
            bytes[..start.saturating_sub(4096)],
            "what comes before the damage is untouched"
        );
    }
}

#[tokio::test]
async fn garbage_over_the_start_of_the_data_file_is_refused_not_taken_for_a_new_store() {
    refuses_garbage_at(0.0, 4096).await;
}

#[tokio::test]
async fn garbage_in_the_middle_of_the_data_file_is_refused_not_recovered_short() {
    refuses_garbage_at(0.4, 512).await;
}
