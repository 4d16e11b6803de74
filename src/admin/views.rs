//! Model records as the admin API shows them.

use crate::api;
use crate::model::{delivery_id_string, rfc3339, Attempt, Delivery, Event, SubState, Subscription};
use crate::scheduler::LaneView;
use crate::signing::format_secret;
use crate::store::Store;

/// A subscription; its current secret only when `show_secret`.
pub fn subscription(
    sub: &Subscription,
    store: &Store,
    lane: Option<&LaneView>,
    show_secret: bool,
    default_cap: u32,
) -> api::Subscription {
    let cap = sub.max_in_flight.unwrap_or(default_cap);
    let disabled_reason = match &sub.state {
        SubState::Disabled { reason, since } => {
            Some(format!("{reason} (since {})", rfc3339(*since)))
        }
        _ => None,
    };
    api::Subscription {
        id: sub.id.clone(),
        url: sub.url.clone(),
        events: sub.events.clone(),
        tenant: sub.tenant.clone(),
        headers: sub
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect(),
        state: sub.state_name().to_string(),
        disabled_reason,
        created_at: rfc3339(sub.created_at),
        rate_limit: sub.rate_limit.map(|r| r.to_string()),
        max_in_flight: cap,
        filters: sub.filters.clone(),
        secret: (show_secret && sub.signing.hmac())
            .then(|| sub.secrets.first().map(|s| format_secret(&s.key)))
            .flatten(),
        previous_secrets_until: sub
            .secrets
            .iter()
            .skip(1)
            .filter_map(|s| s.expires_at.map(rfc3339))
            .collect(),
        signing: sub.signing.name().to_string(),
        public_keys: sub
            .ed25519
            .iter()
            .filter_map(|k| crate::signing::public_key(&k.key))
            .collect(),
        pending: store.open_count(sub.key),
        in_flight: lane.map_or(0, |l| l.in_flight),
        effective_max_in_flight: lane.map_or(cap, |l| l.effective_max_in_flight),
        concurrency_reason: lane.and_then(|l| l.concurrency_reason.clone()),
        breaker: lane.map_or("closed", |l| l.breaker).to_string(),
        breaker_since: lane.and_then(|l| l.breaker_since).map(rfc3339),
        consecutive_failures: lane.map_or(0, |l| l.consecutive_failures),
        failing_since: sub.failing_since.map(rfc3339),
    }
}

/// A delivery, with the event and subscription ids resolved.
pub fn delivery(d: &Delivery, event: Option<&Event>, sub_id: &str) -> api::Delivery {
    api::Delivery {
        id: delivery_id_string(d.id),
        event_id: event.map(|e| e.id.clone()).unwrap_or_default(),
        event_type: event.map(|e| e.event_type.clone()).unwrap_or_default(),
        subscription_id: sub_id.to_string(),
        status: d.status.name().to_string(),
        attempts: d.attempts,
        next_at: d.status.is_open().then(|| rfc3339(d.next_at)),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        created_at: rfc3339(d.created_at),
        updated_at: rfc3339(d.updated_at),
        ordering_key: event.and_then(|e| e.ordering_key.clone()),
        attempt_log: None,
    }
}

/// One attempt.
pub fn attempt(a: &Attempt) -> api::Attempt {
    api::Attempt {
        no: a.no,
        at: rfc3339(a.at),
        status: a.status,
        error: a.error.clone(),
        latency_ms: a.latency_ms as u64,
        response: String::from_utf8_lossy(&a.response).into_owned(),
    }
}
