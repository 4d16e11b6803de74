//! A real webhook receiver: a hyper server on 127.0.0.1:0 in the test
//! process that records every request and answers from a per-path script.

use super::serve::{serve, Serving};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
    hang: bool,
}

impl Reply {
    /// Answers `status` with a short body naming it.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: format!("answer {status}"),
            delay: Duration::ZERO,
            hang: false,
        }
    }

    /// `200 ok`.
    pub fn ok() -> Reply {
        Reply::status(200).body("ok")
    }

    /// Never answers: the request stays open until the client gives up.
    pub fn hang() -> Reply {
        Reply {
            hang: true,
            ..Reply::ok()
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the response body.
    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_string();
        self
    }

    /// Waits this long before answering.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the whole request (body included) had arrived.
    pub at: Instant,
    /// The status the script answered with (0 for a request left hanging).
    pub answered: u16,
}

impl Recorded {
    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Did the script answer this request with a 2xx?
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.answered)
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "delivery body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// What one path answers: the queued replies first, then `default` forever.
struct Script {
    queue: VecDeque<Reply>,
    default: Reply,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            queue: VecDeque::new(),
            default: Reply::ok(),
        }
    }
}

struct Shared {
    scripts: Mutex<HashMap<String, Script>>,
    log: watch::Sender<Vec<Recorded>>,
}

/// The receiver; stops accepting when dropped.
pub struct Receiver {
    server: Serving,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1:0 that answers `200 ok` everywhere.
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared {
            scripts: Mutex::new(HashMap::new()),
            log: watch::channel(Vec::new()).0,
        });
        let server = serve(shared.clone(), answer).await;
        Receiver { server, shared }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    /// Queues replies for `path`, answered in order before its default.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut scripts = self.shared.scripts.lock().unwrap();
        scripts
            .entry(path.to_string())
            .or_default()
            .queue
            .extend(replies);
    }

    /// What `path` answers once its queue is used up (initially `200 ok`).
    pub fn set_default(&self, path: &str, reply: Reply) {
        let mut scripts = self.shared.scripts.lock().unwrap();
        scripts.entry(path.to_string()).or_default().default = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.borrow().clone()
    }

    /// The requests to `path` so far, in arrival order.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        on_path(&self.shared.log.borrow(), path)
    }

    /// Waits until `n` requests have arrived in all, and returns all of them.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        self.wait_until(&format!("{n} requests"), deadline, |log| log.len() >= n)
            .await
    }

    /// Waits until `n` requests to `path` have arrived, and returns them.
    pub async fn wait_for_path(&self, path: &str, n: usize, deadline: Duration) -> Vec<Recorded> {
        let log = self
            .wait_until(&format!("{n} requests to {path}"), deadline, |log| {
                log.iter().filter(|r| r.path == path).count() >= n
            })
            .await;
        on_path(&log, path)
    }

    /// Waits until every event id in `ids` has been delivered successfully
    /// (answered 2xx) at least once; repeats are allowed. Returns every request.
    pub async fn wait_for_delivered(&self, ids: &[String], deadline: Duration) -> Vec<Recorded> {
        let what = format!("{} event ids delivered", ids.len());
        self.wait_until(&what, deadline, |log| missing(log, ids).is_empty())
            .await
    }

    /// Waits until `done` holds for the request log; returns the log.
    pub async fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let mut log = self.shared.log.subscribe();
        let waited = tokio::time::timeout(deadline, log.wait_for(|log| done(log))).await;
        match waited {
            Ok(Ok(log)) => log.clone(),
            _ => {
                let log = self.shared.log.borrow();
                let seen: Vec<String> = log
                    .iter()
                    .map(|r| {
                        let id = r.header("webhook-id").unwrap_or("-");
                        format!("{} {id} -> {}", r.path, r.answered)
                    })
                    .collect();
                panic!(
                    "waited {deadline:?} for {what}; {} requests arrived: {seen:?}",
                    log.len()
                )
            }
        }
    }
}

/// The ids in `ids` that no request in `log` delivered successfully.
pub fn missing(log: &[Recorded], ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| {
            !log.iter()
                .any(|r| r.succeeded() && r.header("webhook-id") == Some(id.as_str()))
        })
        .cloned()
        .collect()
}

fn on_path(log: &[Recorded], path: &str) -> Vec<Recorded> {
    log.iter().filter(|r| r.path == path).cloned().collect()
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = {
        let mut scripts = shared.scripts.lock().unwrap();
        let script = scripts.entry(path.clone()).or_default();
        script
            .queue
            .pop_front()
            .unwrap_or_else(|| script.default.clone())
    };
    shared.log.send_modify(|log| {
        log.push(Recorded {
            path,
            headers: parts.headers,
            body,
            at: Instant::now(),
            answered: if reply.hang { 0 } else { reply.status },
        })
    });
    if reply.hang {
        std::future::pending::<()>().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(Bytes::from(reply.body.clone())))
        .unwrap())
}
