//! The load generator: keep-alive HTTP/1.1 connections, each sending one
//! request after another until a request count or a deadline is reached.

use crate::{now_ns, Res};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Padding that brings one event's JSON to about 300 bytes.
const PAD: &str = "Lorem-ipsum-dolor-sit-amet-consectetur-adipiscing-elit-sed-do-eiusmod-tempor-\
incididunt-ut-labore-et-dolore-magna-aliqua-Ut-enim-ad-minim-veniam-quis-nostrud-exercitation-\
ullamco-laboris-nisi-ut-aliquip-ex-ea-commodo-consequat-Duis";

/// Connection errors tolerated in one run before it gives up.
const MAX_ERRORS: u64 = 1000;

/// The id of event number `n`; the receiver parses it back from `webhook-id`.
pub fn event_id(n: u64) -> String {
    format!("e{n:010}")
}

/// Event number of an id made by [`event_id`].
pub fn parse_event_id(id: &str) -> Option<u64> {
    id.strip_prefix('e')?.parse().ok()
}

/// Appends the JSON of event number `n`, with its id unless `anonymous`
/// (then hookd makes one up); with `keys` above 0 it carries ordering key
/// `k{n % keys}`.
pub fn write_event(out: &mut String, n: u64, keys: u64, anonymous: bool) {
    let key = if keys > 0 {
        format!(r#","ordering_key":"k{}""#, n % keys)
    } else {
        String::new()
    };
    // About as long either way: the id moves into the data.
    let (id, reference) = match anonymous {
        false => (format!(r#","id":"{}""#, event_id(n)), String::new()),
        true => (String::new(), format!(r#""ref":"{}","#, event_id(n))),
    };
    let _ = write!(
        out,
        r#"{{"type":"bench.event"{id}{key},"data":{{"seq":{n},{reference}"origin":"hookd-bench","pad":"{PAD}"}}}}"#,
    );
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// `/v1/events` (one event per request) or `/v1/events/batch`.
    pub path: &'static str,
    pub connections: usize,
    /// Events per request; above 0 the body is a JSON array (batch).
    pub batch: Option<usize>,
    /// The run stops after this many requests ...
    pub max_requests: u64,
    /// ... or after this long, whichever comes first.
    pub max_time: Duration,
    /// Record when each accepted event's request started (for delivery latency).
    pub track_events: bool,
    /// Distinct ordering keys the events carry (0: none).
    pub ordering_keys: u64,
    /// Events without ids: hookd makes them up, and keeps no id key.
    pub anonymous: bool,
}

impl Plan {
    fn events_per_request(&self) -> u64 {
        self.batch.unwrap_or(1) as u64
    }

    /// The request body of request number `i`.
    fn body(&self, i: u64) -> Bytes {
        let per = self.events_per_request();
        let mut out = String::with_capacity(320 * per as usize + 2);
        match self.batch {
            None => write_event(&mut out, i, self.ordering_keys, self.anonymous),
            Some(_) => {
                out.push('[');
                for j in 0..per {
                    if j > 0 {
                        out.push(',');
                    }
                    write_event(&mut out, i * per + j, self.ordering_keys, self.anonymous);
                }
                out.push(']');
            }
        }
        Bytes::from(out)
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered with a 2xx.
    pub ok: u64,
    /// Answers by status code, 2xx included.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection or protocol errors (each followed by a reconnect).
    pub errors: u64,
    /// The body of the first non-2xx answer, shortened.
    pub first_refusal: Option<String>,
    /// `now_ns()` when the run started, and how long it took.
    pub started_ns: u64,
    pub elapsed: Duration,
    /// Latency of each 2xx request in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// Per event number: `now_ns()` + 1 at the start of its request if it
    /// was accepted, else 0. Empty unless the plan tracks events.
    pub accepted_at: Arc<Vec<AtomicU64>>,
}

impl Outcome {
    /// Accepted events per second.
    pub fn events_per_s(&self, plan: &Plan) -> f64 {
        (self.ok * plan.events_per_request()) as f64 / self.elapsed.as_secs_f64()
    }

    /// Accepted requests per second.
    pub fn requests_per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Non-2xx answers, as `code×count`.
    pub fn refusals(&self) -> Option<String> {
        let bad: Vec<String> = self
            .statuses
            .iter()
            .filter(|(code, _)| !(200..300).contains(*code))
            .map(|(code, n)| format!("{code}x{n}"))
            .collect();
        (!bad.is_empty()).then(|| bad.join(" "))
    }
}

/// What one connection gathered.
#[derive(Default)]
struct PerConnection {
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_refusal: Option<String>,
    latencies_us: Vec<u32>,
}

/// Runs `plan` to its end. Call on the load runtime.
pub async fn run(plan: &Plan) -> Res<Outcome> {
    let plan = Arc::new(plan.clone());
    let slots = if plan.track_events {
        (plan.max_requests * plan.events_per_request()) as usize
    } else {
        0
    };
    let accepted_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..slots).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let started_ns = now_ns();
    let deadline = started + plan.max_time;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..plan.connections {
        let (plan, next, errors, accepted_at) = (
            plan.clone(),
            next.clone(),
            errors.clone(),
            accepted_at.clone(),
        );
        tasks.spawn(async move { connection(&plan, &next, &errors, &accepted_at, deadline).await });
    }
    let mut outcome = Outcome {
        started_ns,
        ..Outcome::default()
    };
    while let Some(done) = tasks.join_next().await {
        let c = done.map_err(|e| format!("a load connection panicked: {e}"))?;
        outcome.ok += c.ok;
        outcome.errors += c.errors;
        outcome.first_refusal = outcome.first_refusal.or(c.first_refusal);
        for (code, n) in c.statuses {
            *outcome.statuses.entry(code).or_default() += n;
        }
        outcome.latencies_us.extend(c.latencies_us);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies_us.sort_unstable();
    outcome.accepted_at = accepted_at;
    if outcome.errors >= MAX_ERRORS {
        return Err(format!(
            "load to {} gave up after {} connection errors",
            plan.addr, outcome.errors
        )
        .into());
    }
    Ok(outcome)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connection(
    plan: &Plan,
    next: &AtomicU64,
    errors: &AtomicU64,
    accepted_at: &[AtomicU64],
    deadline: Instant,
) -> PerConnection {
    let mut me = PerConnection::default();
    let host = plan.addr.to_string();
    let mut sender: Option<Sender> = None;
    loop {
        if Instant::now() >= deadline || errors.load(Ordering::Relaxed) >= MAX_ERRORS {
            break;
        }
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(plan.addr).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    me.errors += 1;
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.max_requests {
            break;
        }
        let req = Request::post(plan.path)
            .header(HOST, &host)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(plan.body(i)))
            .expect("static request parts are valid");
        let start_ns = now_ns();
        let start = Instant::now();
        let answer = async {
            s.ready().await?;
            let resp = s.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<(u16, Bytes), hyper::Error>((status, body))
        }
        .await;
        match answer {
            Ok((status, body)) => {
                if !(200..300).contains(&status) && me.first_refusal.is_none() {
                    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
                    me.first_refusal = Some(format!("{status} {text}"));
                }
                *me.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    me.ok += 1;
                    me.latencies_us
                        .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    let per = plan.events_per_request();
                    for n in i * per..(i + 1) * per {
                        if let Some(slot) = accepted_at.get(n as usize) {
                            slot.store(start_ns + 1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Err(_) => {
                me.errors += 1;
                errors.fetch_add(1, Ordering::Relaxed);
                sender = None;
            }
        }
    }
    me
}

/// The `q`-quantile (0..=1) of sorted values, or 0 when there are none.
pub fn quantile<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)].into()
}

/// The daemon's Prometheus metrics (`GET /metrics`), by series name with labels.
pub async fn scrape(addr: SocketAddr) -> Res<BTreeMap<String, f64>> {
    let mut sender = connect(addr).await?;
    let req = Request::get("/metrics")
        .header(HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("static request parts are valid");
    let resp = sender.send_request(req).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect())
}
