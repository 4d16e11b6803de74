//! Crash safety: `kill -9` at random moments never loses an acknowledged event.
//!
//! Client tasks post single events and batches the whole time and record
//! every id answered 2xx; the receiver lives in the test process, so it
//! survives every kill, and verifies every signature. Each cycle kills the
//! daemon at a random moment of one of four situations: under load, while a
//! backlog drains (the receiver answered 503 for a while), during startup
//! and recovery (killed a few ms after spawn, before or just after READY),
//! and right after READY while the restarted daemon works off what is due.
//! At the end everything is drained and every acknowledged id must have been
//! delivered with a valid signature, with nothing left pending, also to a
//! subscription paused until then, so each event had to survive every kill.
//!
//! CI runs 5 cycles; a soak runs as many as `HOOKD_SOAK_CYCLES` says:
//! `HOOKD_SOAK_CYCLES=200 cargo test --release --test it crash -- --nocapture`.
//! `HOOKD_CRASH_SEED=N` replays the schedule of kills of a printed seed.

use crate::harness::load::{seed_from_env, Load, LoadSpec, XorShift};
use crate::harness::tally::{TallyReceiver, SECRET};
use crate::harness::{sub_to, wait_until, Daemon};
use hookd::api;
use std::time::{Duration, Instant};

/// What one cycle does before its kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    UnderLoad,
    DrainingBacklog,
    DuringStartup,
    JustAfterReady,
}

const MOMENTS: [Moment; 4] = [
    Moment::UnderLoad,
    Moment::DrainingBacklog,
    Moment::DuringStartup,
    Moment::JustAfterReady,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_to_kill9_at_random_moments() {
    let cycles: usize = std::env::var("HOOKD_SOAK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed = seed_from_env("HOOKD_CRASH_SEED");
    println!("crash: seed {seed} (HOOKD_CRASH_SEED={seed} replays it), {cycles} cycles");
    let started = Instant::now();
    let mut rng = XorShift::new(seed);

    let receiver = TallyReceiver::start().await;
    // Retries fast and many, so a 503 phase never makes a delivery dead; the
    // breaker opens on a failing phase and probes often, so it closes soon.
    let schedule: Vec<&str> = std::iter::repeat_n("100ms", 40).collect();
    let mut daemon = Daemon::builder()
        .set("delivery", "retry_schedule", schedule)
        .set("delivery", "breaker_probe", "100ms")
        .set("delivery", "breaker_probe_max", "200ms")
        .set("delivery", "timeout", "2s")
        .set("log", "level", "hookd=info")
        .start()
        .await;
    let mut sub = sub_to(receiver.url("/hook"));
    sub.secret = Some(SECRET.into());
    daemon.add_sub(sub).await;
    // Paused until the end: its deliveries prove each acknowledged event was
    // in the store through every kill (the other may deliver one before a
    // kill even if it was never made durable).
    let mut held = sub_to(receiver.url("/held"));
    held.secret = Some(SECRET.into());
    let held = daemon.add_sub(held).await;
    daemon.sub_action(&held.id, "pause").await;

    let load = Load::start(LoadSpec {
        seed,
        ..LoadSpec::default()
    });
    load.aim(Some(daemon.ingest_addr()));
    let mut ready_boots = 1;
    let mut startup_kills = (0, 0); // (before READY, after READY)
    let mut kinds = [0usize; 4];

    for cycle in 0..cycles {
        // Every moment once, then at random.
        let moment = MOMENTS
            .get(cycle)
            .copied()
            .unwrap_or_else(|| MOMENTS[rng.below(MOMENTS.len() as u64) as usize]);
        kinds[MOMENTS.iter().position(|m| *m == moment).unwrap()] += 1;
        match moment {
            Moment::UnderLoad | Moment::DuringStartup | Moment::JustAfterReady => {
                tokio::time::sleep(rng.millis(150, 600)).await;
                // Right on the heels of an acknowledgement: the freshest write there is.
                load.next_ack(Duration::from_secs(2)).await;
            }
            Moment::DrainingBacklog => {
                receiver.set_status(503);
                tokio::time::sleep(rng.millis(300, 700)).await;
                receiver.set_status(200);
                tokio::time::sleep(rng.millis(0, 300)).await;
            }
        }
        daemon.kill9().await;
        load.aim(None);
        match moment {
            Moment::DuringStartup => {
                for _ in 0..1 + rng.below(2) {
                    if daemon.kill9_during_start(rng.millis(0, 150)).await {
                        startup_kills.1 += 1;
                    } else {
                        startup_kills.0 += 1;
                    }
                }
            }
            Moment::JustAfterReady => {
                daemon.restart().await;
                ready_boots += 1;
                load.aim(Some(daemon.ingest_addr()));
                tokio::time::sleep(rng.millis(0, 30)).await;
                daemon.kill9().await;
                load.aim(None);
            }
            Moment::UnderLoad | Moment::DrainingBacklog => {}
        }
        // `restart` fails the test unless the store opens and READY comes.
        daemon.restart().await;
        ready_boots += 1;
        load.aim(Some(daemon.ingest_addr()));
        println!(
            "crash: cycle {cycle} {moment:?}: {} acknowledged so far",
            load.acked()
        );
    }

    let report = load.stop().await;
    receiver.set_status(200);
    let acked: Vec<String> = report.acked.keys().cloned().collect();
    daemon.sub_action(&held.id, "resume").await;
    wait_until("nothing pending", Duration::from_secs(60), || async {
        let status: api::Status = daemon.get("/v1/status").await;
        match status.deliveries.pending {
            0 => Ok(()),
            n => Err(format!("{n} pending")),
        }
    })
    .await;

    // Nothing is pending, so whatever was not delivered is lost.
    for path in ["/hook", "/held"] {
        let tally = receiver.tally(path);
        let lost = tally.missing(&acked);
        assert!(
            lost.is_empty(),
            "seed {seed}: {} of {} acknowledged events never delivered to {path}, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
        let bad = tally.bad_signatures;
        assert!(
            bad.is_empty(),
            "deliveries to {path} with a bad signature: {bad:?}"
        );
    }
    let tally = receiver.tally("/hook");
    assert!(
        report.unexpected.is_empty(),
        "answers no client should get: {:?}",
        report.unexpected
    );
    let invented: Vec<&String> = tally
        .delivered
        .keys()
        .filter(|id| !report.attempted.contains(*id))
        .collect();
    assert!(
        invented.is_empty(),
        "delivered but never posted: {invented:?}"
    );
    let (dup_ids, dup_extra) = tally.duplicates();
    let (held_dup_ids, _) = receiver.tally("/held").duplicates();
    println!(
        "crash: seed {seed}, {cycles} cycles ({} under load, {} draining a backlog, {} during \
         startup, {} just after READY) in {:.1?}; {} requests, {} events acknowledged, 0 lost; \
         {} posted without an answer, {} answered 503; {} deliveries in all to the live \
         subscription, {dup_ids} ids delivered more than once ({dup_extra} repeats), \
         {held_dup_ids} to the held one; {ready_boots} boots ready, startup kills {} before \
         READY and {} after",
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3],
        started.elapsed(),
        report.requests,
        acked.len(),
        report.attempted.len() - acked.len(),
        report.unavailable,
        tally.requests,
        startup_kills.0,
        startup_kills.1,
    );
    assert!(
        acked.len() > 50,
        "too little load to prove anything: {report:?}"
    );
}
