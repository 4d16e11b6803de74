//! One attempt of one delivery: prepare -> send -> classify -> record.

use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::{now_ms, rfc3339, Attempt, DeliveryStatus, Millis, Subscription};
use crate::outbound::{AttemptOutcome, Outbound, OutboundRequest};
use crate::registry::Registry;
use crate::retry::{random_jitter, AttemptFacts, RetryPolicy, Verdict};
use crate::scheduler::ControlSettings;
use crate::signing::{sign_ed25519, signature_header};
use crate::store::{AttemptRecord, Due, Loaded, Store};
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// The `user-agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("hookd/", env!("CARGO_PKG_VERSION"));

/// Delivery settings that a config reload may change.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub excerpt_limit: usize,
    /// In-flight cap for subscriptions that do not set their own.
    pub max_in_flight: u32,
    /// In-flight cap across all subscriptions.
    pub max_in_flight_total: u32,
    /// Refuse to deliver over plain http.
    pub require_https: bool,
}

/// What every attempt shares.
pub struct DeliveryContext {
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub outbound: Outbound,
    pub settings: RwLock<Arc<DeliverySettings>>,
    pub control: RwLock<Arc<ControlSettings>>,
    pub metrics: Arc<Metrics>,
}

impl DeliveryContext {
    /// The settings in force now.
    pub fn settings(&self) -> Arc<DeliverySettings> {
        self.settings.read().unwrap().clone()
    }

    /// The delivery-control settings in force now.
    pub fn control(&self) -> Arc<ControlSettings> {
        self.control.read().unwrap().clone()
    }
}

/// How an attempt ended, for the scheduler's lane state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The delivery was not open any more: nothing was sent.
    Skipped,
    Delivered,
    /// 429, 502, 503, 504 or a timeout: the subscriber is overloaded.
    Congested,
    /// DNS, connect or TLS handshake failed: maybe the subscriber, maybe our uplink.
    Unreachable,
    /// Any other failure.
    Failed,
    /// 410 Gone: the subscription is now disabled.
    Gone,
}

/// What the scheduler learns from one attempt.
#[derive(Debug, Clone)]
pub struct Summary {
    pub sub_key: u64,
    pub delivery_id: u64,
    pub class: Class,
    /// The host that was tried (for uplink detection).
    pub host: String,
    /// Set when the delivery just went dead: (event id, event type).
    pub dead: Option<(String, String)>,
}

/// Makes one attempt of the `due` delivery to `sub` and records it. A `free`
/// attempt (a probe) spends nothing of the delivery's retry schedule.
pub async fn attempt(
    ctx: &DeliveryContext,
    sub: &Subscription,
    due: Due,
    free: bool,
) -> Result<Summary> {
    let url = sub
        .url
        .parse::<hyper::Uri>()
        .map_err(|e| format!("subscription url {:?} is invalid: {e}", sub.url));
    let host = url.as_ref().ok().and_then(hyper::Uri::authority);
    let mut summary = Summary {
        sub_key: sub.key,
        delivery_id: due.id,
        class: Class::Skipped,
        // `host:port`, for telling subscriber hosts apart.
        host: host.map(|a| a.as_str().to_string()).unwrap_or_default(),
        dead: None,
    };
    let Some(loaded) = ctx.store.load_for_attempt(due)? else {
        return Ok(summary);
    };
    let settings = ctx.settings();
    let started = SystemTime::now();
    let outcome = match url.and_then(|url| prepare(sub, url, &loaded, started, &settings)) {
        Ok(request) => ctx.outbound.send(request).await,
        Err(reason) => AttemptOutcome {
            status: None,
            error: Some(crate::outbound::AttemptError::Protocol(reason)),
            retry_after: None,
            latency: Duration::ZERO,
            excerpt: Vec::new(),
        },
    };
    let (record, verdict) = classify(&settings.retry, &loaded, &outcome, started, free);
    ctx.metrics.record_attempt(&outcome, &verdict);
    log_attempt(sub, &loaded, &record, &outcome);
    summary.class = class_of(&outcome, &verdict);
    let Some((_, made_due)) = ctx.store.record_loaded_attempt(&loaded, record).await? else {
        summary.class = Class::Skipped;
        return Ok(summary);
    };
    if let Some(successor) = made_due {
        // The next in an ordered lane waits until its head's close is on
        // disk: a crash may then repeat a head, but never reorder the lane.
        let durable = ctx.store.flusher().durable().await;
        ctx.store.settle(successor);
        durable?;
    }
    match verdict {
        Verdict::Dead => {
            summary.dead = Some((loaded.event.id.clone(), loaded.event.event_type.clone()));
        }
        Verdict::Gone => {
            let reason = format!("the endpoint answered 410 Gone at {}", rfc3339(now_ms()));
            ctx.registry
                .disable(&ctx.store, sub.key, reason, now_ms())
                .await?;
            tracing::warn!(subscription = %sub.id, "subscription disabled: endpoint answered 410 Gone");
        }
        Verdict::Delivered | Verdict::RetryAfter(_) => {}
    }
    Ok(summary)
}

fn class_of(outcome: &AttemptOutcome, verdict: &Verdict) -> Class {
    use crate::outbound::AttemptError;
    match (verdict, outcome.status, &outcome.error) {
        (Verdict::Delivered, _, _) => Class::Delivered,
        (Verdict::Gone, _, _) => Class::Gone,
        (_, Some(429 | 502 | 503 | 504), _) => Class::Congested,
        (_, _, Some(AttemptError::Timeout(_))) => Class::Congested,
        (_, None, Some(e)) if e.is_connection_level() => Class::Unreachable,
        _ => Class::Failed,
    }
}

/// Builds the signed request: Standard Webhooks headers, the subscription's own headers, the body.
pub fn prepare(
    sub: &Subscription,
    url: hyper::Uri,
    loaded: &Loaded,
    now: SystemTime,
    settings: &DeliverySettings,
) -> std::result::Result<OutboundRequest, String> {
    if settings.require_https && url.scheme_str() != Some("https") {
        return Err(format!(
            "delivery.require_https is set and {} is not https; sub update the url",
            sub.url
        ));
    }
    let body = body(
        &loaded.event.event_type,
        loaded.event.received_at,
        &loaded.data,
    );
    let timestamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0);
    let id = &loaded.event.id;
    let mut signature = String::new();
    if sub.signing.hmac() {
        signature = signature_header(sub.signing_keys(now_ms), id, timestamp, &body);
    }
    if sub.signing.ed25519() {
        for pair in sub.ed25519_keys(now_ms) {
            if let Some(sig) = sign_ed25519(pair, id, timestamp, &body) {
                if !signature.is_empty() {
                    signature.push(' ');
                }
                signature.push_str(&sig);
            }
        }
    }

    let mut headers = HeaderMap::new();
    for (name, value) in &sub.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    // Ours last, so a custom header can never replace a signature header.
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    set(&mut headers, "webhook-id", &loaded.event.id);
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(timestamp),
    );
    set(&mut headers, "webhook-signature", &signature);
    Ok(OutboundRequest {
        url,
        headers,
        body,
        timeout: settings.timeout,
        excerpt_limit: settings.excerpt_limit,
    })
}

/// `{"type":...,"timestamp":...,"data":<data as received>}` without re-encoding `data`.
pub fn body(event_type: &str, received_at: Millis, data: &[u8]) -> Bytes {
    use std::io::Write;
    // 24 bytes of timestamp and 36 of JSON around the fields.
    let mut out = Vec::with_capacity(event_type.len() + data.len() + 64);
    // `event_type` is [A-Za-z0-9_.:-] only, so it needs no JSON escaping.
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(br#"","timestamp":""#);
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(received_at);
    write!(out, "{}", humantime::format_rfc3339_millis(at)).expect("a Vec takes every write");
    out.extend_from_slice(br#"","data":"#);
    out.extend_from_slice(data);
    out.push(b'}');
    Bytes::from(out)
}

/// Turns an outcome into the attempt record and the delivery's next state.
pub fn classify(
    policy: &RetryPolicy,
    loaded: &Loaded,
    outcome: &AttemptOutcome,
    started: SystemTime,
    free: bool,
) -> (AttemptRecord, Verdict) {
    let no = loaded.delivery.attempts + 1;
    let spent = if free {
        loaded.delivery.spent
    } else {
        loaded.delivery.spent + 1
    };
    let at = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0);
    let mut verdict = policy.verdict(AttemptFacts {
        status: outcome.status,
        retry_after: outcome.retry_after.as_deref(),
        attempts: spent.max(1),
        jitter: random_jitter(),
        now: SystemTime::now(),
    });
    if free && matches!(verdict, Verdict::Dead | Verdict::RetryAfter(_)) {
        verdict = Verdict::RetryAfter(policy.hold_delay(spent, random_jitter()));
    }
    let error = match (&outcome.error, outcome.status) {
        (Some(e), _) => Some(e.to_string()),
        (None, Some(s)) if !(200..300).contains(&s) => Some(format!("HTTP {s}")),
        _ => None,
    };
    let finished_at = now_ms();
    let (status, next_at) = match verdict {
        Verdict::Delivered => (DeliveryStatus::Delivered, finished_at),
        Verdict::Dead => (DeliveryStatus::Dead, finished_at),
        Verdict::RetryAfter(d) => (
            DeliveryStatus::Failed,
            finished_at + d.as_millis() as Millis,
        ),
        // Held with its subscription; flows again on `sub resume`.
        Verdict::Gone => (DeliveryStatus::Failed, finished_at),
    };
    let record = AttemptRecord {
        attempt: Attempt {
            no,
            at,
            status: outcome.status,
            error,
            latency_ms: outcome.latency.as_millis().min(u32::MAX as u128) as u32,
            response: outcome.excerpt.clone(),
        },
        spent,
        status,
        next_at,
    };
    (record, verdict)
}

fn log_attempt(
    sub: &Subscription,
    loaded: &Loaded,
    record: &AttemptRecord,
    outcome: &AttemptOutcome,
) {
    let delivery = crate::model::DeliveryId(loaded.delivery.id);
    let latency_ms = outcome.latency.as_millis() as u64;
    let status = outcome.status.unwrap_or(0);
    match record.status {
        DeliveryStatus::Delivered => tracing::debug!(
            %delivery, subscription = %sub.id, status, latency_ms, attempt = record.attempt.no, "delivered"
        ),
        DeliveryStatus::Dead => tracing::warn!(
            %delivery, subscription = %sub.id, status, latency_ms, attempt = record.attempt.no,
            error = record.attempt.error.as_deref().unwrap_or(""), "delivery dead: retries used up"
        ),
        _ => tracing::info!(
            %delivery, subscription = %sub.id, status, latency_ms, attempt = record.attempt.no,
            error = record.attempt.error.as_deref().unwrap_or(""),
            next_in_ms = record.next_at.saturating_sub(now_ms()), "attempt failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_keeps_data_byte_for_byte() {
        let data = br#"{ "b":1,  "a" : [1.50, "\u00e9"] }"#;
        let b = body("invoice.paid", 0, data);
        let text = std::str::from_utf8(&b).unwrap();
        assert_eq!(
            text,
            r#"{"type":"invoice.paid","timestamp":"1970-01-01T00:00:00.000Z","data":{ "b":1,  "a" : [1.50, "\u00e9"] }}"#
        );
        let parsed: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(parsed["type"], "invoice.paid");
    }
}
