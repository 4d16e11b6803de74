//! A receiver for long runs: it lives in the test process (so it survives
//! every daemon kill), verifies every request's Standard Webhooks signature
//! as it arrives, and tallies successful deliveries per event id instead of
//! keeping every request.

use super::serve::{serve, Serving};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A fixed, valid Standard Webhooks secret: subscriptions are created with
/// it, so the receiver can verify from the very first request.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What arrived on one path.
#[derive(Debug, Default, Clone)]
pub struct PathTally {
    /// Requests answered 2xx, per `webhook-id`.
    pub delivered: HashMap<String, u32>,
    /// Body length of the last 2xx delivery of each id.
    pub body_len: HashMap<String, usize>,
    /// Requests in all, whatever the answer.
    pub requests: u64,
    /// Requests whose signature did not verify: `webhook-id: reason`.
    pub bad_signatures: Vec<String>,
}

impl PathTally {
    /// Ids delivered more than once, and the repeats in all.
    pub fn duplicates(&self) -> (usize, u64) {
        let repeated = self.delivered.values().filter(|&&n| n > 1);
        let ids = repeated.clone().count();
        let extra = repeated.map(|&n| u64::from(n) - 1).sum();
        (ids, extra)
    }

    /// Of `ids`, those never delivered here.
    pub fn missing<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        ids.into_iter()
            .filter(|id| !self.delivered.contains_key(*id))
            .cloned()
            .collect()
    }
}

struct Shared {
    /// Status every path answers with now.
    status: AtomicU16,
    tallies: watch::Sender<HashMap<String, PathTally>>,
    webhook: standardwebhooks::Webhook,
}

/// The receiver; stops accepting when dropped.
pub struct TallyReceiver {
    server: Serving,
    shared: Arc<Shared>,
}

impl TallyReceiver {
    /// Starts on 127.0.0.1:0, answering 200 everywhere, verifying with [`SECRET`].
    pub async fn start() -> TallyReceiver {
        let shared = Arc::new(Shared {
            status: AtomicU16::new(200),
            tallies: watch::channel(HashMap::new()).0,
            webhook: standardwebhooks::Webhook::new(SECRET).expect("SECRET is valid"),
        });
        let server = serve(shared.clone(), answer).await;
        TallyReceiver { server, shared }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    /// Every path answers `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// What arrived on `path` so far.
    pub fn tally(&self, path: &str) -> PathTally {
        self.shared
            .tallies
            .borrow()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until every id in `ids` was delivered to `path`; on timeout,
    /// fails the test naming (some of) the ids still missing.
    pub async fn wait_delivered(&self, path: &str, ids: &[String], deadline: Duration) {
        let mut rx = self.shared.tallies.subscribe();
        let done = tokio::time::timeout(
            deadline,
            rx.wait_for(|t| {
                let tally = t.get(path);
                ids.iter()
                    .all(|id| tally.is_some_and(|p| p.delivered.contains_key(id)))
            }),
        )
        .await;
        if done.is_err() {
            let missing = self.tally(path).missing(ids);
            panic!(
                "waited {deadline:?}: {} of {} ids never delivered to {path}, e.g. {:?}",
                missing.len(),
                ids.len(),
                &missing[..missing.len().min(10)]
            );
        }
    }
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
    let status = shared.status.load(Ordering::SeqCst);
    let id = parts
        .headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let verified = shared.webhook.verify(&body, &parts.headers);
    shared.tallies.send_modify(|tallies| {
        let tally = tallies.entry(path).or_default();
        tally.requests += 1;
        if let Err(e) = &verified {
            tally.bad_signatures.push(format!("{id}: {e}"));
        }
        if (200..300).contains(&status) && verified.is_ok() {
            *tally.delivered.entry(id.clone()).or_insert(0) += 1;
            tally.body_len.insert(id, body.len());
        }
    });
    // A request that fails verification is refused, as a real receiver would.
    let status = if verified.is_ok() { status } else { 400 };
    Ok(Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .body(Full::new(Bytes::from_static(b"tally")))
        .unwrap())
}
