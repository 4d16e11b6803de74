//! systemd's notify protocol against a fake `NOTIFY_SOCKET`.

use crate::harness::{Daemon, Setup};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

#[test]
fn ready_comes_once_serving_and_stopping_on_term() {
    let daemon = Daemon::start(Setup::default());
    // READY=1 has arrived (start waits for it): both listeners answer now.
    assert_eq!(daemon.get("/healthz").status, 200);
    UnixStream::connect(&daemon.admin).expect("the admin socket is bound");
    assert_eq!(daemon.admin("GET", "/v1/status", None).status, 200);
    // Without WATCHDOG_USEC there are no pings.
    assert_eq!(daemon.recv_notify(Duration::from_millis(300)), None);

    daemon.signal("TERM");
    let stopping = daemon
        .recv_notify(Duration::from_secs(10))
        .expect("a notification on SIGTERM");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let status = daemon.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn watchdog_pings_follow_flushes() {
    // WATCHDOG_PID stays unset: like libsystemd, hookd then takes WATCHDOG_USEC as its own.
    let daemon = Daemon::start(Setup::default().env("WATCHDOG_USEC", "200000"));
    let window = Duration::from_secs(2);
    let started = Instant::now();
    let mut pings = 0;
    let mut first = None;
    while started.elapsed() < window {
        let Some(message) = daemon.recv_notify(window.saturating_sub(started.elapsed())) else {
            break;
        };
        assert_eq!(message, "WATCHDOG=1\n");
        pings += 1;
        first.get_or_insert(started.elapsed());
    }
    // One every 100 ms (half the timeout); allow for a loaded machine.
    assert!(pings >= 5, "{pings} pings in {window:?}");
    assert!(first.unwrap() < Duration::from_millis(500), "{first:?}");

    let metrics = daemon.get("/metrics").body;
    let rounds: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookd_flush_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("flush rounds metric");
    // Each ping followed its own flush round-trip.
    assert!(rounds >= pings, "{rounds} flush rounds for {pings} pings");
}

#[test]
fn no_watchdog_for_another_pid() {
    let daemon = Daemon::start(
        Setup::default()
            .env("WATCHDOG_USEC", "200000")
            .env("WATCHDOG_PID", "1"),
    );
    assert_eq!(daemon.recv_notify(Duration::from_millis(600)), None);
}
