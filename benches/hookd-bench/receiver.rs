//! The webhook receiver: answers every delivery 204 at once and notes when
//! each (subscription path, `webhook-id`) pair first arrived and how often.

use crate::load::parse_event_id;
use crate::{now_ns, Res};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Arrivals per (subscription index, event number), for `subs` x `events` pairs.
pub struct Tally {
    events: usize,
    hits: Vec<AtomicU32>,
    first_ns: Vec<AtomicU64>,
    /// Distinct tracked pairs seen at least once.
    pub unique: AtomicU64,
    /// Every request received.
    pub total: AtomicU64,
    /// Requests outside the tracked pairs (unknown path, id or event number).
    pub untracked: AtomicU64,
}

impl Tally {
    fn new(subs: usize, events: usize) -> Tally {
        let n = subs * events;
        Tally {
            events,
            hits: (0..n).map(|_| AtomicU32::new(0)).collect(),
            first_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
            unique: AtomicU64::new(0),
            total: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
        }
    }

    fn record(&self, sub: Option<usize>, event: Option<u64>, at_ns: u64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let slot = match (sub, event) {
            (Some(s), Some(e)) if (e as usize) < self.events => s * self.events + e as usize,
            _ => usize::MAX,
        };
        let Some(hits) = self.hits.get(slot) else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if hits.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_ns[slot].store(at_ns, Ordering::Relaxed);
            self.unique.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Compares arrivals with the events the load generator had accepted
    /// (`accepted_at[n]` = request start + 1, or 0 if not accepted).
    pub fn summarize(&self, accepted_at: &[AtomicU64]) -> Summary {
        let mut s = Summary::default();
        if self.events == 0 {
            return s;
        }
        for (slot, hits) in self.hits.iter().enumerate() {
            let hits = hits.load(Ordering::Relaxed);
            let event = slot % self.events;
            let sent = accepted_at
                .get(event)
                .map_or(0, |a| a.load(Ordering::Relaxed));
            if sent == 0 {
                s.unexpected += u64::from(hits > 0);
                continue;
            }
            s.expected += 1;
            if hits == 0 {
                s.missing += 1;
                continue;
            }
            s.duplicates += u64::from(hits - 1);
            let at = self.first_ns[slot].load(Ordering::Relaxed);
            s.last_ns = s.last_ns.max(at);
            s.latencies_us
                .push((at.saturating_sub(sent - 1) / 1000).min(u32::MAX as u64) as u32);
        }
        s.latencies_us.sort_unstable();
        s
    }
}

/// Arrivals against expectations.
#[derive(Debug, Default)]
pub struct Summary {
    pub expected: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Arrivals for events whose ingest request did not get a 2xx.
    pub unexpected: u64,
    /// First arrival of the last pair to arrive (`now_ns()` clock).
    pub last_ns: u64,
    /// Ingest request start to first arrival, microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    pub tally: Arc<Tally>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on 127.0.0.1 (any port) on runtime `rt`, expecting paths
    /// `/s/0` .. `/s/{subs-1}` and event numbers below `events`.
    pub fn start(rt: &tokio::runtime::Handle, subs: usize, events: usize) -> Res<Receiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tally = Arc::new(Tally::new(subs, events));
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let task = rt.spawn(serve(listener, tally.clone()));
        Ok(Receiver { addr, tally, task })
    }

    /// The URL of subscription path number `sub`.
    pub fn url(&self, sub: usize) -> String {
        format!("http://{}/s/{sub}", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which ends every connection.
        self.task.abort();
    }
}

async fn serve(listener: tokio::net::TcpListener, tally: Arc<Tally>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let tally = tally.clone();
        let service = service_fn(move |req| handle(tally.clone(), req));
        conns.spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    tally: Arc<Tally>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let sub = req
        .uri()
        .path()
        .strip_prefix("/s/")
        .and_then(|s| s.parse::<usize>().ok());
    let event = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_event_id);
    let _ = req.into_body().collect().await;
    tally.record(sub, event, now_ns());
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Empty::new())
        .expect("static response"))
}
