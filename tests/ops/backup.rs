//! `hookd backup DEST` while events keep arriving, then a new daemon on the
//! backup: every event acknowledged before the backup started is there.

use crate::harness::{eventually, exchange, Daemon, Receiver, Setup};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Posts events with ids `evt_wW_N` until `stop`; records each acknowledged id and when.
fn writer(
    w: usize,
    ingest: SocketAddr,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) && n < 20_000 {
            let id = format!("evt_w{w}_{n}");
            // Every other event in one of three ordered lanes.
            let lane = if n % 2 == 0 {
                format!(r#","ordering_key":"lane{}""#, n % 3)
            } else {
                String::new()
            };
            let body =
                format!(r#"{{"type":"order.created","id":"{id}","data":{{"n":{n}}}{lane}}}"#);
            let stream = TcpStream::connect(ingest).unwrap();
            let answer = exchange(
                stream,
                "POST",
                "/v1/events",
                &[("content-type", "application/json")],
                body.as_bytes(),
            );
            assert_eq!(answer.status, 202, "{}", answer.body);
            acked.lock().unwrap().push((id, Instant::now()));
            n += 1;
        }
    })
}

#[test]
fn backup_while_ingesting_then_restore_has_every_acknowledged_event() {
    let receiver = Receiver::start();
    let live = Daemon::start(Setup {
        delivery: "allow_networks = [\"127.0.0.0/8\"]".into(),
        ..Setup::default()
    });
    let add = |url: String| {
        let answer = live.admin(
            "POST",
            "/v1/subscriptions",
            Some(&format!(r#"{{"url":"{url}"}}"#)),
        );
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()["id"].as_str().unwrap().to_string()
    };
    add(receiver.url());
    let held = add(receiver.url());
    let paused = live.admin("POST", &format!("/v1/subscriptions/{held}/pause"), None);
    assert_eq!(paused.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..2)
        .map(|w| writer(w, live.ingest, stop.clone(), acked.clone()))
        .collect();
    eventually("500 events acknowledged", || {
        acked.lock().unwrap().len() >= 500
    });

    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("hookd-backup");
    let started = Instant::now();
    let output = live.cli(&["backup", dest.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("Backup written to "), "{stdout}");
    assert!(stdout.contains("To restore: stop hookd"), "{stdout}");
    // Ingest went on during the backup.
    let during = acked.lock().unwrap().len();
    eventually("more events after the backup", || {
        acked.lock().unwrap().len() > during + 20
    });
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }

    // A second backup to the same place is refused, and the first is intact.
    let again = live.cli(&["backup", dest.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let before: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(before.len() >= 500);

    let restored = Daemon::start(Setup {
        store: Some(dest.clone()),
        ..Setup::default()
    });
    for id in &before {
        let answer = restored.admin("GET", &format!("/v1/events/{id}"), None);
        assert_eq!(answer.status, 200, "{id} is missing from the backup");
        let event = answer.json();
        assert_eq!(event["deliveries"].as_array().unwrap().len(), 2, "{id}");
        let n = id.rsplit('_').next().unwrap();
        assert_eq!(event["data"]["n"].to_string(), n, "{id}: {event}");
    }

    // The paused subscription's lane holds every keyed delivery, in order.
    let in_lane0 = before
        .iter()
        .filter(|id| {
            let n: u64 = id.rsplit('_').next().unwrap().parse().unwrap();
            n % 2 == 0 && n % 3 == 0
        })
        .count();
    let lane = restored.admin(
        "GET",
        &format!("/v1/deliveries?sub={held}&key=lane0&limit=10000"),
        None,
    );
    assert_eq!(lane.status, 200, "{}", lane.body);
    let lane = lane.json()["items"].as_array().unwrap().len();
    assert!(
        lane >= in_lane0,
        "{lane} in the lane, {in_lane0} acknowledged"
    );

    // The rebuilt due index and lanes agree with the delivery records.
    let metrics = restored.get("/metrics").body;
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series}"))
            .parse()
            .unwrap()
    };
    let open = value("hookd_deliveries{status=\"pending\"}")
        + value("hookd_deliveries{status=\"failed\"}");
    assert_eq!(value("hookd_deliveries_pending"), open);
    assert!(
        open >= before.len() as f64,
        "the paused subscription's deliveries"
    );
}

#[test]
fn a_restored_store_draws_its_new_ids_above_the_ones_it_holds() {
    let stores = tempfile::tempdir().unwrap();
    let store = stores.path().join("store");
    let on = |store: &std::path::Path| Setup {
        store: Some(store.to_owned()),
        ..Setup::default()
    };
    // Restarted once, the store draws ids from two million on (sled adds
    // that at every open), as a fresh copy of it would on its first open.
    assert!(Daemon::start(on(&store)).stop().success());
    let post = |daemon: &Daemon, n: u64| {
        // Every other event without an id: its made-up id says its seq.
        let id = match n % 2 {
            0 => format!(r#""id":"ev-{n}","#),
            _ => String::new(),
        };
        let body = format!(r#"{{"type":"a.b",{id}"data":{{"n":{n}}}}}"#);
        let answer = daemon.post_event(None, &body);
        assert_eq!(answer.status, 202, "{}", answer.body);
        (answer.json()["id"].as_str().unwrap().to_string(), n)
    };
    let live = Daemon::start(on(&store));
    let old: Vec<_> = (0..20).map(|n| post(&live, n)).collect();
    let dest = stores.path().join("backup");
    let output = live.cli(&["backup", dest.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(live.stop().success());

    let restored = Daemon::start(on(&dest));
    let new: Vec<_> = (100..120).map(|n| post(&restored, n)).collect();
    for (id, n) in old.iter().chain(&new) {
        let answer = restored.admin("GET", &format!("/v1/events/{id}"), None);
        assert_eq!(answer.status, 200, "{id}: {}", answer.body);
        assert_eq!(answer.json()["data"]["n"], *n, "{id}");
    }
    let listed = restored.admin("GET", "/v1/events?limit=100", None);
    assert_eq!(
        listed.json()["items"].as_array().unwrap().len(),
        40,
        "{}",
        listed.body
    );
}
