//! The admin API's routes: one `match`, one small handler each.

use super::views;
use crate::api;
use crate::delivery::DeliveryContext;
use crate::http::{error_response, json_response, read_body, Response};
use crate::ingest::IngestState;
use crate::matching::validate_pattern;
use crate::model::{
    is_valid_name, now_ms, parse_delivery_id, rfc3339, DeliveryStatus, Millis, RateLimit, Secret,
    Signing, SubState, Subscription,
};
use crate::netpolicy::AddressPolicy;
use crate::registry::UpdateError;
use crate::scheduler::{SchedulerStats, Wakeup};
use crate::signing::{generate_key, parse_secret};
use crate::store::{DeliveryFilter, EventFilter, Store};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::unix::UCred;

/// What the admin handlers share.
pub struct AdminState {
    pub store: Arc<Store>,
    pub delivery: Arc<DeliveryContext>,
    pub ingest: Arc<IngestState>,
    pub wakeup: Arc<Wakeup>,
    pub stats: Arc<SchedulerStats>,
    pub started_at: Millis,
    pub listen: String,
    /// The address policy, to refuse subscription URLs that can never be delivered to.
    pub policy: RwLock<Arc<AddressPolicy>>,
    pub secret_overlap: RwLock<Duration>,
    /// `admin.allowed_uids` plus the daemon's own uid; empty: everyone who can open the socket.
    pub allowed_uids: RwLock<Vec<u32>>,
}

/// An error answer: status, code, message.
#[derive(Debug)]
pub(super) struct Fail(pub StatusCode, pub &'static str, pub String);

pub(super) type Answer = Result<Response, Fail>;

pub(super) fn bad(message: impl Into<String>) -> Fail {
    Fail(StatusCode::BAD_REQUEST, "invalid_request", message.into())
}

fn not_found(what: &str, id: &str) -> Fail {
    Fail(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} with id {id:?}"),
    )
}

pub(super) fn internal(e: crate::error::Error) -> Fail {
    tracing::error!(error = %e, "admin request failed");
    Fail(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

const LIST_LIMIT: usize = 50;
const MAX_LIST_LIMIT: usize = 10_000;

/// Routes one admin request.
pub async fn handle(
    state: Arc<AdminState>,
    peer: Option<UCred>,
    req: Request<Incoming>,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method != Method::GET {
        tracing::info!(
            method = %method, path = %path,
            uid = peer.map(|p| p.uid()), gid = peer.map(|p| p.gid()),
            "admin change"
        );
    }
    let s = &state;
    let answer = match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "status"]) => status(s),
        (&Method::GET, ["v1", "subscriptions"]) => list_subscriptions(s),
        (&Method::POST, ["v1", "subscriptions"]) => create_subscription(s, req).await,
        (&Method::GET, ["v1", "subscriptions", id]) => get_subscription(s, id, &query),
        (&Method::PATCH, ["v1", "subscriptions", id]) => update_subscription(s, id, req).await,
        (&Method::DELETE, ["v1", "subscriptions", id]) => delete_subscription(s, id).await,
        (&Method::POST, ["v1", "subscriptions", id, "pause"]) => {
            set_state(s, id, SubState::Paused).await
        }
        (&Method::POST, ["v1", "subscriptions", id, "resume"]) => {
            set_state(s, id, SubState::Active).await
        }
        (&Method::POST, ["v1", "subscriptions", id, "rotate-secret"]) => rotate_secret(s, id).await,
        (&Method::GET, ["v1", "events"]) => list_events(s, &query),
        (&Method::GET, ["v1", "events", id]) => get_event(s, id),
        (&Method::POST, ["v1", "events", id, "redeliver"]) => redeliver(s, id).await,
        (&Method::GET, ["v1", "deliveries"]) => list_deliveries(s, &query),
        (&Method::GET, ["v1", "deliveries", id]) => get_delivery(s, id),
        (&Method::POST, ["v1", "replay"]) => replay(s, req).await,
        (&Method::POST, ["v1", "backup"]) => super::backup::backup(s, req).await,
        _ => Err(Fail(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin route {method} {path}"),
        )),
    };
    answer.unwrap_or_else(|Fail(status, code, message)| error_response(status, code, &message))
}

fn status(s: &AdminState) -> Answer {
    let subs = s.registry().snapshot();
    let count = |name: &str| subs.values().filter(|x| x.state_name() == name).count() as u64;
    let reason = if s.ingest.shutting_down.load(Ordering::Relaxed) {
        Some("shutting down".to_string())
    } else {
        s.ingest.refusing.read().unwrap().clone()
    };
    let now = now_ms();
    let status = api::Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: rfc3339(s.started_at),
        uptime_secs: now.saturating_sub(s.started_at) / 1000,
        ingest: api::IngestStatus {
            listen: s.listen.clone(),
            accepting: reason.is_none(),
            reason,
            events_accepted: s.delivery.metrics.events_accepted.load(Ordering::Relaxed),
        },
        store: api::StoreStatus {
            path: s.store.path().display().to_string(),
            size_bytes: s.store.size_on_disk(),
            max_disk_bytes: s.ingest.settings.read().unwrap().max_disk,
            held_bytes: s.store.held_bytes(),
        },
        subscriptions: api::SubscriptionCounts {
            active: count("active"),
            paused: count("paused"),
            disabled: count("disabled"),
        },
        deliveries: api::DeliveryCounts {
            pending: s.store.open_total(),
            in_flight: s.stats.in_flight.load(Ordering::Relaxed),
            delivered: s.delivery.metrics.delivered(),
            dead: s.delivery.metrics.dead(),
        },
        delivery_control: delivery_control(s),
    };
    Ok(json_response(StatusCode::OK, &status))
}

fn delivery_control(s: &AdminState) -> api::DeliveryControlStatus {
    let down = *s.stats.uplink_down_since.lock().unwrap();
    let lanes = s.stats.lanes.lock().unwrap();
    let mut breakers_open: Vec<api::BreakerStatus> = lanes
        .iter()
        .filter_map(|(key, lane)| {
            let since = lane.breaker_since?;
            Some(api::BreakerStatus {
                subscription_id: s.sub_id(*key),
                since: rfc3339(since),
            })
        })
        .collect();
    breakers_open.sort_by(|a, b| a.since.cmp(&b.since));
    api::DeliveryControlStatus {
        uplink: if down.is_some() { "down" } else { "up" }.to_string(),
        uplink_down_since: down.map(rfc3339),
        breakers_open,
    }
}

impl AdminState {
    /// May this peer use the admin API?
    pub fn peer_allowed(&self, peer: Option<&UCred>) -> bool {
        let allowed = self.allowed_uids.read().unwrap();
        allowed.is_empty() || peer.is_some_and(|p| allowed.contains(&p.uid()))
    }

    fn registry(&self) -> &crate::registry::Registry {
        &self.delivery.registry
    }

    fn view(&self, sub: &Subscription, show_secret: bool) -> api::Subscription {
        let cap = self.delivery.settings().max_in_flight;
        let lane = self.stats.lanes.lock().unwrap().get(&sub.key).cloned();
        views::subscription(sub, &self.store, lane.as_ref(), show_secret, cap)
    }

    fn find(&self, id: &str) -> Result<Arc<Subscription>, Fail> {
        self.registry()
            .find(id)
            .ok_or_else(|| not_found("subscription", id))
    }

    fn sub_id(&self, key: u64) -> String {
        self.registry()
            .get(key)
            .map(|s| s.id.clone())
            .unwrap_or_else(|| "(removed)".into())
    }
}

fn list_subscriptions(s: &AdminState) -> Answer {
    let subs = s.registry().snapshot();
    let mut items: Vec<_> = subs.values().map(|sub| s.view(sub, false)).collect();
    items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(json_response(StatusCode::OK, &api::List { items }))
}

fn get_subscription(s: &AdminState, id: &str, query: &str) -> Answer {
    let sub = s.find(id)?;
    let show = query_param(query, "show_secret").as_deref() == Some("true");
    Ok(json_response(StatusCode::OK, &s.view(&sub, show)))
}

async fn create_subscription(s: &AdminState, req: Request<Incoming>) -> Answer {
    let create: api::SubscriptionCreate = json_body(req).await?;
    let policy = s.policy.read().unwrap().clone();
    let url = validate_url(&create.url, &policy, s.delivery.settings().require_https)?;
    let events = validate_patterns(&create.events)?;
    if let Some(t) = &create.tenant {
        if t != "*" && !is_valid_name(t) {
            return Err(bad(format!(
                "tenant {t:?} must be \"*\" or 1-128 chars of [A-Za-z0-9_.:-]"
            )));
        }
    }
    let key = match &create.secret {
        Some(secret) => parse_secret(secret).map_err(|e| bad(format!("secret: {e}")))?,
        None => generate_key(),
    };
    let headers = parse_headers(&create.headers)?;
    let rate_limit = parse_rate_limit(create.rate_limit.as_deref())?;
    let max_in_flight = validate_max_in_flight(create.max_in_flight)?;
    validate_filters(&create.filters)?;
    let signing = match create.signing.as_deref() {
        None => Signing::Hmac,
        Some(name) => Signing::parse(name).ok_or_else(|| {
            bad(format!(
                "signing {name:?} must be v1 (HMAC), v1a (Ed25519) or v1+v1a"
            ))
        })?,
    };
    if create.secret.is_some() && !signing.hmac() {
        return Err(bad(
            "a secret is for v1 (HMAC) signing; v1a uses a key pair hookd makes",
        ));
    }
    let ed25519 = if signing.ed25519() {
        vec![Secret {
            key: crate::signing::generate_ed25519(),
            expires_at: None,
        }]
    } else {
        Vec::new()
    };
    let sub = Subscription {
        id: format!("sub_{}", ulid::Ulid::new()),
        key: s.store.next_id().map_err(internal)?,
        url,
        events,
        tenant: create.tenant,
        headers,
        secrets: vec![Secret {
            key,
            expires_at: None,
        }],
        state: SubState::Active,
        created_at: now_ms(),
        rate_limit,
        max_in_flight,
        filters: create.filters,
        failing_since: None,
        signing,
        ed25519,
    };
    let sub = s.registry().insert(&s.store, sub).await.map_err(internal)?;
    // The host only: webhook URLs often carry a secret in their path or query.
    let host = sub.url.parse::<hyper::Uri>().ok();
    let host = host.as_ref().and_then(|u| u.host()).unwrap_or("?");
    tracing::info!(subscription = %sub.id, host = %host, "subscription created");
    Ok(json_response(StatusCode::CREATED, &s.view(&sub, true)))
}

async fn update_subscription(s: &AdminState, id: &str, req: Request<Incoming>) -> Answer {
    let update: api::SubscriptionUpdate = json_body(req).await?;
    let key = s.find(id)?.key;
    let policy = s.policy.read().unwrap().clone();
    let require_https = s.delivery.settings().require_https;
    let sub = change_subscription(s, id, key, |sub| {
        if let Some(url) = &update.url {
            sub.url = validate_url(url, &policy, require_https)?;
        }
        if let Some(events) = &update.events {
            sub.events = validate_patterns(events)?;
        }
        if let Some(headers) = &update.headers {
            sub.headers = parse_headers(headers)?;
        }
        if update.rate_limit.is_some() {
            sub.rate_limit = parse_rate_limit(update.rate_limit.as_deref())?;
        }
        if update.max_in_flight.is_some() {
            sub.max_in_flight = validate_max_in_flight(update.max_in_flight)?;
        }
        if let Some(filters) = &update.filters {
            validate_filters(filters)?;
            sub.filters = filters.clone();
        }
        Ok(true)
    })
    .await?;
    s.wakeup.subs(&[sub.key]);
    tracing::info!(subscription = %sub.id, "subscription updated; pending deliveries kept");
    Ok(json_response(StatusCode::OK, &s.view(&sub, false)))
}

/// Applies `change` to subscription `key` durably through the registry.
async fn change_subscription(
    s: &AdminState,
    id: &str,
    key: u64,
    change: impl FnOnce(&mut Subscription) -> Result<bool, Fail>,
) -> Result<Arc<Subscription>, Fail> {
    match s.registry().update(&s.store, key, change).await {
        Ok(Some(sub)) => Ok(sub),
        Ok(None) => Err(not_found("subscription", id)),
        Err(UpdateError::Refused(fail)) => Err(fail),
        Err(UpdateError::Store(e)) => Err(internal(e)),
    }
}

async fn delete_subscription(s: &AdminState, id: &str) -> Answer {
    let sub = s.find(id)?;
    s.registry().forget(sub.key).await;
    let cancelled = s
        .store
        .remove_subscription(sub.key)
        .await
        .map_err(internal)?;
    tracing::info!(subscription = %sub.id, cancelled, "subscription removed; its open deliveries are cancelled");
    Ok(hyper::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(crate::http::full(bytes::Bytes::new()))
        .expect("static response"))
}

async fn set_state(s: &AdminState, id: &str, state: SubState) -> Answer {
    let key = s.find(id)?.key;
    let resuming = state == SubState::Active;
    let sub = change_subscription(s, id, key, |sub| {
        sub.state = state;
        if resuming {
            // A fresh start: failures before the resume do not count toward auto-disable.
            sub.failing_since = None;
        }
        Ok(true)
    })
    .await?;
    if resuming {
        s.wakeup.subs(&[sub.key]);
    }
    tracing::info!(subscription = %sub.id, state = sub.state_name(), "subscription state changed");
    Ok(json_response(StatusCode::OK, &s.view(&sub, false)))
}

async fn rotate_secret(s: &AdminState, id: &str) -> Answer {
    let key = s.find(id)?.key;
    let overlap = *s.secret_overlap.read().unwrap();
    let sub = change_subscription(s, id, key, |sub| {
        let now = now_ms();
        let until = now + overlap.as_millis() as u64;
        for old in &mut sub.secrets {
            old.expires_at = Some(old.expires_at.map_or(until, |t| t.min(until)));
        }
        sub.secrets
            .retain(|old| old.expires_at.is_none_or(|t| t > now));
        sub.secrets.insert(
            0,
            Secret {
                key: generate_key(),
                expires_at: None,
            },
        );
        Ok(true)
    })
    .await?;
    tracing::info!(subscription = %sub.id, overlap_secs = overlap.as_secs(), "secret rotated");
    Ok(json_response(StatusCode::OK, &s.view(&sub, true)))
}

fn list_events(s: &AdminState, query: &str) -> Answer {
    let filter = EventFilter {
        event_type: query_param(query, "type"),
        status: parse_status(query_param(query, "status"))?,
        limit: parse_limit(query)?,
    };
    let events = s.store.list_events(&filter).map_err(internal)?;
    let items: Vec<api::Event> = events
        .iter()
        .map(|d| event_view(s, &d.event, &d.deliveries, None))
        .collect();
    Ok(json_response(StatusCode::OK, &api::List { items }))
}

fn event_view(
    s: &AdminState,
    event: &crate::model::Event,
    deliveries: &[crate::model::Delivery],
    data: Option<&[u8]>,
) -> api::Event {
    api::Event {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        tenant: event.tenant.clone(),
        ordering_key: event.ordering_key.clone(),
        received_at: rfc3339(event.received_at),
        data: data.and_then(|d| {
            serde_json::value::RawValue::from_string(String::from_utf8_lossy(d).into_owned()).ok()
        }),
        deliveries: deliveries
            .iter()
            .map(|d| views::delivery(d, Some(event), &s.sub_id(d.sub_key)))
            .collect(),
    }
}

fn get_event(s: &AdminState, id: &str) -> Answer {
    let detail = s
        .store
        .event_detail(id)
        .map_err(internal)?
        .ok_or_else(|| not_found("event", id))?;
    let view = event_view(s, &detail.event, &detail.deliveries, Some(&detail.data));
    Ok(json_response(StatusCode::OK, &view))
}

async fn redeliver(s: &AdminState, id: &str) -> Answer {
    let detail = s
        .store
        .event_detail(id)
        .map_err(internal)?
        .ok_or_else(|| not_found("event", id))?;
    let subs: BTreeSet<u64> = detail
        .deliveries
        .iter()
        .map(|d| d.sub_key)
        .filter(|k| s.registry().get(*k).is_some())
        .collect();
    let subs: Vec<u64> = subs.into_iter().collect();
    if subs.is_empty() {
        return Err(bad(format!(
            "event {id:?} has no deliveries to existing subscriptions; nothing to redeliver"
        )));
    }
    let ids = s.store.requeue(detail.seq, &subs).await.map_err(internal)?;
    s.wakeup.subs(&subs);
    Ok(json_response(
        StatusCode::OK,
        &api::Requeued {
            deliveries: ids
                .into_iter()
                .map(crate::model::delivery_id_string)
                .collect(),
        },
    ))
}

fn list_deliveries(s: &AdminState, query: &str) -> Answer {
    let sub_key = match query_param(query, "sub") {
        Some(id) => Some(s.find(&id)?.key),
        None => None,
    };
    let filter = DeliveryFilter {
        sub_key,
        status: parse_status(query_param(query, "status"))?,
        limit: parse_limit(query)?,
    };
    let deliveries = match (query_param(query, "key"), sub_key) {
        (Some(key), Some(sub_key)) => {
            // One ordered lane: its open deliveries, head first.
            let mut lane = s
                .store
                .lane_deliveries(sub_key, &key, filter.limit)
                .map_err(internal)?;
            lane.retain(|d| filter.status.is_none_or(|st| st == d.status));
            lane
        }
        (Some(_), None) => return Err(bad("key needs sub: a lane belongs to one subscription")),
        (None, _) => s.store.list_deliveries(&filter).map_err(internal)?,
    };
    let items: Vec<api::Delivery> = deliveries
        .iter()
        .map(|d| {
            let event = s.store.event_header(d.event_seq).ok().flatten();
            views::delivery(d, event.as_ref(), &s.sub_id(d.sub_key))
        })
        .collect();
    Ok(json_response(StatusCode::OK, &api::List { items }))
}

fn get_delivery(s: &AdminState, id: &str) -> Answer {
    let number = parse_delivery_id(id).ok_or_else(|| {
        bad(format!(
            "{id:?} is not a delivery id (dlv_ and 16 hex digits)"
        ))
    })?;
    let d = s
        .store
        .delivery(number)
        .map_err(internal)?
        .ok_or_else(|| not_found("delivery", id))?;
    let event = s.store.event_header(d.event_seq).map_err(internal)?;
    let mut view = views::delivery(&d, event.as_ref(), &s.sub_id(d.sub_key));
    let attempts = s.store.attempts(number).map_err(internal)?;
    view.attempt_log = Some(attempts.iter().map(views::attempt).collect());
    Ok(json_response(StatusCode::OK, &view))
}

async fn replay(s: &AdminState, req: Request<Incoming>) -> Answer {
    let request: api::ReplayRequest = json_body(req).await?;
    let sub = s.find(&request.subscription_id)?;
    let since = parse_since(&request.since)?;
    let status = parse_status(request.status)?;
    let mut seqs = Vec::new();
    for (seq, event) in s.store.events_since(since).map_err(internal)? {
        let mut latest = None;
        for &id in &event.deliveries {
            if let Some(d) = s.store.delivery(id).map_err(internal)? {
                if d.sub_key == sub.key {
                    latest = Some(d);
                }
            }
        }
        let Some(latest) = latest else { continue };
        if latest.status.is_open() {
            continue;
        }
        if status.is_some_and(|want| latest.status != want) {
            continue;
        }
        seqs.push(seq);
    }
    let mut created = Vec::new();
    for seq in seqs.into_iter().rev() {
        created.extend(s.store.requeue(seq, &[sub.key]).await.map_err(internal)?);
    }
    s.wakeup.subs(&[sub.key]);
    tracing::info!(subscription = %sub.id, requeued = created.len(), "replay");
    Ok(json_response(
        StatusCode::OK,
        &api::Requeued {
            deliveries: created
                .into_iter()
                .map(crate::model::delivery_id_string)
                .collect(),
        },
    ))
}

pub(super) async fn json_body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Fail> {
    let body = read_body(req.into_body(), 1 << 20).await.map_err(|_| {
        Fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "admin requests are at most 1 MiB".into(),
        )
    })?;
    serde_json::from_slice(&body).map_err(|e| bad(format!("the request body is not valid: {e}")))
}

/// A subscription URL: http(s), a host, and not an address the policy can never allow.
fn validate_url(url: &str, policy: &AddressPolicy, require_https: bool) -> Result<String, Fail> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| bad(format!("url {url:?} is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if require_https => {
            return Err(bad(format!(
                "url {url:?} is plain http but delivery.require_https is set; use https://"
            )))
        }
        Some("http") => {}
        _ => {
            return Err(bad(format!(
                "url {url:?} must start with http:// or https://"
            )))
        }
    }
    let Some(host) = uri.host() else {
        return Err(bad(format!("url {url:?} has no host")));
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad(format!(
            "url {url:?} must not carry credentials; use --header for auth"
        )));
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
        policy
            .check(ip)
            .map_err(|blocked| bad(format!("url {url:?}: {blocked}")))?;
    }
    Ok(url.to_string())
}

fn validate_patterns(patterns: &[String]) -> Result<Vec<String>, Fail> {
    for p in patterns {
        validate_pattern(p).map_err(bad)?;
    }
    Ok(patterns.to_vec())
}

/// Headers hookd sets itself and a subscription may not override.
const RESERVED_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "transfer-encoding",
];

fn parse_headers(headers: &[String]) -> Result<Vec<(String, String)>, Fail> {
    headers
        .iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| bad(format!("header {h:?} must be 'Name: value'")))?;
            let (name, value) = (name.trim(), value.trim());
            hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                bad(format!(
                    "header name {name:?} is not a valid HTTP header name"
                ))
            })?;
            hyper::header::HeaderValue::from_str(value).map_err(|_| {
                bad(format!(
                    "header {name:?} has a value that is not valid in HTTP"
                ))
            })?;
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(bad(format!(
                    "header {name:?} is set by hookd and cannot be overridden"
                )));
            }
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

fn parse_rate_limit(value: Option<&str>) -> Result<Option<RateLimit>, Fail> {
    match value {
        None | Some("" | "none") => Ok(None),
        Some(v) => v.parse::<RateLimit>().map(Some).map_err(bad),
    }
}

fn validate_max_in_flight(value: Option<u32>) -> Result<Option<u32>, Fail> {
    match value {
        Some(n) if n == 0 || n > 10_000 => {
            Err(bad(format!("max_in_flight {n} must be 1 to 10000")))
        }
        other => Ok(other),
    }
}

fn validate_filters(filters: &[String]) -> Result<(), Fail> {
    crate::filter::parse_all(filters).map(|_| ()).map_err(bad)
}

fn parse_status(value: Option<String>) -> Result<Option<DeliveryStatus>, Fail> {
    value
        .map(|v| {
            DeliveryStatus::parse(&v).ok_or_else(|| {
                bad(format!(
                    "status {v:?} is not one of pending, failed, delivered, dead, cancelled"
                ))
            })
        })
        .transpose()
}

fn parse_limit(query: &str) -> Result<usize, Fail> {
    match query_param(query, "limit") {
        None => Ok(LIST_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit {v:?} must be 1 to {MAX_LIST_LIMIT}"))),
        },
    }
}

/// `2h` back from now, or an RFC 3339 time.
fn parse_since(since: &str) -> Result<Millis, Fail> {
    if let Ok(d) = humantime::parse_duration(since.trim()) {
        return Ok(now_ms().saturating_sub(d.as_millis() as u64));
    }
    humantime::parse_rfc3339_weak(since.trim())
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as Millis)
                .unwrap_or(0)
        })
        .map_err(|_| {
            bad(format!(
                "since {since:?} is neither a duration (2h, 30m) nor a time (2026-12-03T18:00:00Z)"
            ))
        })
}

/// The percent-decoded value of `name` in a query string.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(query_param("a=1&b=x%20y", "b").as_deref(), Some("x y"));
        assert_eq!(query_param("a=1", "b"), None);
        assert_eq!(query_param("k=%zz", "k").as_deref(), Some("%zz"));
        assert_eq!(query_param("k=%4", "k").as_deref(), Some("%4"));
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(
            parse_headers(&["X-Team: payments".into()]).unwrap(),
            vec![("X-Team".to_string(), "payments".to_string())]
        );
        assert!(parse_headers(&["nocolon".into()]).is_err());
        assert!(parse_headers(&["webhook-id: x".into()]).is_err());
        assert!(parse_headers(&["bad name: x".into()]).is_err());
    }

    #[test]
    fn since_takes_durations_and_times() {
        assert!(parse_since("2h").unwrap() <= now_ms());
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_since("yesterday-ish").is_err());
    }
}
