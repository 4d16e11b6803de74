//! Load that outlives the daemon: client tasks that keep posting events
//! across kills and restarts and record every id that was acknowledged.

use super::http::Answer;
use bytes::Bytes;
use hyper::Method;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A tiny seeded PRNG (xorshift64*): tests print the seed, so a failing
/// schedule of kills can be replayed exactly.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// A seed from `var` if set (to replay a run), else from the clock.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// Sends one request with a deadline on the whole exchange; unlike
/// [`super::http::request`], a refused or cut connection is an `Err`, not a
/// panic, because the daemon may be killed at any moment.
pub async fn try_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
    deadline: Duration,
) -> Result<Answer, String> {
    let headers = [("content-type", "application/json")];
    let exchange = super::http::exchange(addr, method, path, &headers, body.into());
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {deadline:?}")))
}

/// What the client tasks do.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub clients: usize,
    pub seed: u64,
    /// One request in this many is a batch of 2..=`max_batch` events (0: never).
    pub batch_one_in: u64,
    pub max_batch: u64,
    /// One event in this many carries about `big_data` bytes of data (0: never).
    pub big_one_in: u64,
    pub big_data: usize,
    /// Pause between one client's requests, in milliseconds (lo, hi).
    pub pause_ms: (u64, u64),
    pub event_type: String,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            clients: 4,
            seed: 1,
            batch_one_in: 4,
            max_batch: 5,
            big_one_in: 0,
            big_data: 0,
            pause_ms: (5, 25),
            event_type: "load.tick".into(),
        }
    }
}

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Every id answered 2xx (new or duplicate), with its data's length in bytes.
    pub acked: BTreeMap<String, usize>,
    /// Every id ever sent, acknowledged or not.
    pub attempted: HashSet<String>,
    pub requests: u64,
    /// Answered 503 (shutting down, disk budget, store trouble).
    pub unavailable: u64,
    /// No answer: connection refused or cut, or no answer in time.
    pub no_answer: u64,
    /// Answers that no run of this load should get (4xx, 500, ...).
    pub unexpected: Vec<String>,
}

/// Client tasks posting to whichever daemon [`Load::aim`] names last.
pub struct Load {
    target: watch::Sender<Option<SocketAddr>>,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    /// Bumped on every acknowledged request.
    acks: Arc<watch::Sender<u64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients, idle until [`Load::aim`] gives them an address.
    pub fn start(spec: LoadSpec) -> Load {
        let (target, _) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let acks = Arc::new(watch::channel(0u64).0);
        let tasks = (0..spec.clients)
            .map(|client| {
                let (rx, stop, report) = (target.subscribe(), stop.clone(), report.clone());
                let (spec, acks) = (spec.clone(), acks.clone());
                tokio::spawn(run_client(client, spec, rx, stop, report, acks))
            })
            .collect();
        Load {
            target,
            stop,
            report,
            acks,
            tasks,
        }
    }

    /// Points the clients at `addr` (`None`: the daemon is down, wait).
    pub fn aim(&self, addr: Option<SocketAddr>) {
        self.target.send_replace(addr);
    }

    /// Resolves right after the next acknowledged request (or after `deadline`):
    /// a kill then lands while that event is as fresh as it gets.
    pub async fn next_ack(&self, deadline: Duration) {
        let mut acks = self.acks.subscribe();
        acks.borrow_and_update();
        let _ = tokio::time::timeout(deadline, acks.changed()).await;
    }

    /// Ids acknowledged so far.
    pub fn acked(&self) -> usize {
        self.report.lock().unwrap().acked.len()
    }

    /// Stops the clients (each finishes its request in progress) and reports.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.target.send_replace(None);
        for task in self.tasks {
            task.await.expect("a load client panicked");
        }
        let report = self.report.lock().unwrap().clone();
        report
    }
}

async fn run_client(
    client: usize,
    spec: LoadSpec,
    mut target: watch::Receiver<Option<SocketAddr>>,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    acks: Arc<watch::Sender<u64>>,
) {
    let mut rng = XorShift::new(spec.seed ^ ((client as u64 + 1) << 32));
    let pad = "x".repeat(spec.big_data);
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let current = *target.borrow_and_update();
        let Some(addr) = current else {
            let _ = tokio::time::timeout(Duration::from_millis(100), target.changed()).await;
            continue;
        };
        let count = if spec.batch_one_in > 0 && rng.below(spec.batch_one_in) == 0 {
            2 + rng.below(spec.max_batch.max(2) - 1)
        } else {
            1
        };
        let mut sent = Vec::new();
        for _ in 0..count {
            seq += 1;
            let id = format!("c{client}-{seq}");
            let big = spec.big_one_in > 0 && rng.below(spec.big_one_in) == 0;
            let data = format!(
                r#"{{"client":{client},"n":{seq},"pad":"{}"}}"#,
                if big { pad.as_str() } else { "" }
            );
            let event = format!(
                r#"{{"type":"{}","id":"{id}","data":{data}}}"#,
                spec.event_type
            );
            sent.push((id, data.len(), event));
        }
        let (path, body) = if count == 1 {
            ("/v1/events", sent[0].2.clone())
        } else {
            let events: Vec<&str> = sent.iter().map(|(_, _, e)| e.as_str()).collect();
            ("/v1/events/batch", format!("[{}]", events.join(",")))
        };
        let answer = try_request(addr, Method::POST, path, body, Duration::from_secs(10)).await;
        {
            let mut r = report.lock().unwrap();
            r.requests += 1;
            r.attempted.extend(sent.iter().map(|(id, _, _)| id.clone()));
            match &answer {
                Ok(a) if a.status.is_success() => {
                    for (id, len, _) in &sent {
                        r.acked.insert(id.clone(), *len);
                    }
                    acks.send_modify(|n| *n += 1);
                }
                Ok(a) if a.status == hyper::StatusCode::SERVICE_UNAVAILABLE => r.unavailable += 1,
                Ok(a) => r
                    .unexpected
                    .push(format!("{path}: {} {}", a.status, a.text())),
                Err(_) => r.no_answer += 1,
            }
        }
        if answer.is_err() {
            // The daemon is gone; wait for the next one rather than spin.
            let _ = tokio::time::timeout(Duration::from_millis(50), target.changed()).await;
        }
        tokio::time::sleep(rng.millis(spec.pause_ms.0, spec.pause_ms.1)).await;
    }
}
