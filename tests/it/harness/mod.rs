//! The shared pieces of the integration tests: a real daemon in a temp dir
//! ([`Daemon`]), a real webhook receiver ([`Receiver`]), a small HTTP client
//! for ingest ([`http`]), and waiting helpers that never guess with sleeps.
//!
//! Every test module draws on these; no single one uses them all.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod http;
pub mod load;
pub mod receiver;
pub mod serve;
pub mod tally;

pub use daemon::{Daemon, DaemonBuilder};
pub use receiver::{Receiver, Recorded, Reply};

use hookd::api;
use std::time::{Duration, Instant};

/// How long something that should happen "soon" may take before a test fails.
/// Generous on purpose: the suite shares two cores with other builds.
pub const SOON: Duration = Duration::from_secs(10);

/// A subscription request for `url` with everything else left at its default.
pub fn sub_to(url: String) -> api::SubscriptionCreate {
    api::SubscriptionCreate {
        url,
        ..Default::default()
    }
}

/// Waits until `check` returns `Ok`, for state that the daemon offers no
/// push notification for (a delivery's status in the admin API, say). The
/// admin API is asked again every 25 ms until `deadline`; the test fails
/// with `what` and the last value seen when it passes.
pub async fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        if start.elapsed() > deadline {
            panic!("waited {deadline:?} for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Verifies a delivery's Standard Webhooks signature with the independent
/// `standardwebhooks` crate.
pub fn verify_signature(secret: &str, request: &Recorded) -> Result<(), String> {
    let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string())?;
    webhook
        .verify(&request.body, &request.headers)
        .map_err(|e| e.to_string())
}

/// The `webhook-id`s of `requests`, in arrival order.
pub fn webhook_ids(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.header("webhook-id").unwrap_or_default().to_string())
        .collect()
}

/// Asserts the contract's error shape `{"error":{"code","message"}}` and returns the message.
pub fn error_message(body: &serde_json::Value) -> String {
    let error = &body["error"];
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "error answer without a code: {body}"
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty(),
        "error answer without a message: {body}"
    );
    message.to_string()
}
