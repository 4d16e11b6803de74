//! hookd's own operational events (`hookd.*`), stored and delivered like any
//! event, to subscriptions that name them.

use super::Wakeup;
use crate::delivery::DeliveryContext;
use crate::model::{delivery_id_string, Subscription};
use crate::store::NewEvent;
use bytes::Bytes;
use serde_json::json;
use std::sync::Arc;

/// Something hookd tells its operators about.
pub enum OperationalEvent<'a> {
    Disabled {
        sub: &'a Subscription,
        reason: &'a str,
    },
    BreakerOpened {
        sub: &'a Subscription,
        failures: u32,
    },
    Recovered {
        sub: &'a Subscription,
    },
    DeliveryDead {
        sub: &'a Subscription,
        delivery_id: u64,
        event_id: &'a str,
        event_type: &'a str,
    },
}

impl OperationalEvent<'_> {
    fn type_and_data(&self) -> (&'static str, serde_json::Value) {
        match self {
            OperationalEvent::Disabled { sub, reason } => (
                "hookd.subscription.disabled",
                json!({"subscription_id": sub.id, "url": sub.url, "reason": reason}),
            ),
            OperationalEvent::BreakerOpened { sub, failures } => (
                "hookd.subscription.breaker_opened",
                json!({"subscription_id": sub.id, "url": sub.url, "consecutive_failures": failures}),
            ),
            OperationalEvent::Recovered { sub } => (
                "hookd.subscription.recovered",
                json!({"subscription_id": sub.id, "url": sub.url}),
            ),
            OperationalEvent::DeliveryDead {
                sub,
                delivery_id,
                event_id,
                event_type,
            } => (
                "hookd.delivery.dead",
                json!({"subscription_id": sub.id, "url": sub.url,
                       "delivery_id": delivery_id_string(*delivery_id),
                       "event_id": event_id, "event_type": event_type}),
            ),
        }
    }
}

/// Stores an operational event and wakes the subscriptions it fans out to.
/// Off the scheduler's path: a task does the write.
pub fn emit(ctx: &Arc<DeliveryContext>, wakeup: &Arc<Wakeup>, event: OperationalEvent<'_>) {
    let (event_type, data) = event.type_and_data();
    let event = NewEvent {
        id: None,
        event_type: event_type.to_string(),
        tenant: None,
        ordering_key: None,
        data: Bytes::from(data.to_string()),
    };
    let (ctx, wakeup) = (ctx.clone(), wakeup.clone());
    tokio::spawn(async move {
        let subs = ctx.registry.route(&event);
        let event_type = event.event_type.clone();
        // Without an id of its own, the event is never a duplicate.
        match ctx.store.ingest(vec![event], vec![subs.clone()]).await {
            Ok(_) => wakeup.subs(&subs),
            Err(e) => {
                tracing::error!(error = %e, %event_type, "storing an operational event failed")
            }
        }
    });
}
