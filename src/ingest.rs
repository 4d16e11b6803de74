//! The ingest HTTP server: `POST /v1/events`, `POST /v1/events/batch`,
//! `GET /healthz`, `GET /metrics`.
//!
//! A 2xx is sent only after the store's flusher reports the write durable.

use crate::config::IngestConfig;
use crate::error::Error;
use crate::http::{error_response, json_response, read_body, BodyError, Response};
use crate::metrics::{Gauges, IngestOutcome, Metrics};
use crate::model::{is_valid_name, RESERVED_TYPE_PREFIX};
use crate::registry::Registry;
use crate::scheduler::{SchedulerStats, Wakeup};
use crate::store::{Accepted, NewEvent, Store};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Events in one batch request, at most.
pub const MAX_BATCH: usize = 1000;

/// Ingest settings that a config reload may change.
#[derive(Clone)]
pub struct IngestSettings {
    /// SHA-256 of each accepted token: compared in constant time, never kept in clear.
    pub token_hashes: Vec<[u8; 32]>,
    /// Beside each hash: the one tenant that token may post for, if limited.
    pub token_tenants: Vec<Option<String>>,
    pub max_body: usize,
    /// For new connections: the time a client has to send its request head.
    pub header_timeout: Duration,
    /// The time a client has to send a whole request.
    pub request_timeout: Duration,
    /// For new connections: how long a keep-alive connection may sit idle.
    pub idle_timeout: Duration,
    /// The store's disk budget (`storage.max_disk`): past it ingest refuses.
    pub max_disk: u64,
}

impl IngestSettings {
    /// The settings `config` asks for; every token it accepts is hashed.
    pub fn new(config: &IngestConfig, max_disk: u64) -> IngestSettings {
        IngestSettings {
            token_hashes: config
                .all_tokens()
                .map(|t| sha256(t.expose().trim().as_bytes()))
                .collect(),
            token_tenants: config
                .all_tokens()
                .map(|t| t.tenant().map(str::to_string))
                .collect(),
            max_body: config.max_body.0 as usize,
            header_timeout: config.header_timeout.0,
            request_timeout: config.request_timeout.0,
            idle_timeout: config.idle_timeout.0,
            max_disk,
        }
    }
}

/// What the ingest handlers share.
pub struct IngestState {
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub wakeup: Arc<Wakeup>,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<SchedulerStats>,
    pub settings: RwLock<Arc<IngestSettings>>,
    /// Why ingest refuses events right now, if it does (disk budget, shutdown).
    pub refusing: RwLock<Option<String>>,
    pub shutting_down: AtomicBool,
    /// Room for request bodies (`ingest.max_in_flight_bytes`).
    pub admission: Admission,
}

/// Room for request bodies in memory, in KiB. A request takes its body's
/// share and the share goes with its events to the commit thread, which
/// drops it once the round that wrote them is answered: so what ingest
/// holds in bodies, parsed events and events queued for a round stays
/// bounded however many clients post at once, and a client that hangs up
/// while its events wait for their round does not free room they still
/// use. Waiters are let in in the order they came, each once all of its
/// share is free, so partly admitted requests can never starve each other.
pub struct Admission {
    room: Arc<tokio::sync::Semaphore>,
    capacity: u32,
    /// Requests waiting for room now.
    waiting: std::sync::atomic::AtomicU64,
}

/// A request's room, given back when dropped.
pub type Room = tokio::sync::OwnedSemaphorePermit;

impl Admission {
    pub fn new(max_in_flight_bytes: u64) -> Admission {
        let capacity = (max_in_flight_bytes / 1024).clamp(1, u32::MAX as u64 >> 3) as u32;
        Admission {
            room: Arc::new(tokio::sync::Semaphore::new(capacity as usize)),
            capacity,
            waiting: Default::default(),
        }
    }

    /// The room held now, in bytes (KiB granularity), counting what the
    /// first waiter has already set aside.
    pub fn held_bytes(&self) -> u64 {
        (self.capacity as u64 - self.room.available_permits() as u64) * 1024
    }

    /// Room for a body of `bytes` (a body larger than the whole budget
    /// takes all of it); `None` once `wait` passed without it.
    async fn admit(&self, bytes: u64, wait: Duration) -> Option<Room> {
        let kib = self.kib(bytes);
        if let Ok(room) = self.room.clone().try_acquire_many_owned(kib) {
            return Some(room);
        }
        // Counted down however the wait ends, the request's end included.
        struct Waiting<'a>(&'a std::sync::atomic::AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let admitted = tokio::time::timeout(wait, self.room.clone().acquire_many_owned(kib)).await;
        // The semaphore is never closed; a closed one would admit nothing.
        admitted.ok()?.ok()
    }

    /// Grows `room` to what a body of `bytes` takes, waiting as
    /// [`Admission::admit`] does; `None` once `wait` passed without it.
    async fn grow(&self, room: &mut Room, bytes: u64, wait: Duration) -> Option<()> {
        let more = self.kib(bytes).saturating_sub(room.num_permits() as u32);
        if more > 0 {
            room.merge(self.admit(u64::from(more) * 1024, wait).await?);
        }
        Some(())
    }

    /// The room `bytes` take: whole KiB, at least one, at most the budget.
    fn kib(&self, bytes: u64) -> u32 {
        bytes.div_ceil(1024).clamp(1, self.capacity as u64) as u32
    }

    /// Requests waiting for room now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Handles one ingest request.
pub async fn handle(state: Arc<IngestState>, req: Request<Incoming>) -> Response {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => {
            json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (&Method::GET, "/metrics") => metrics(&state).await,
        (&Method::POST, "/v1/events") => post_events(&state, req, false).await,
        (&Method::POST, "/v1/events/batch") => post_events(&state, req, true).await,
        (_, "/healthz" | "/metrics" | "/v1/events" | "/v1/events/batch") => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method",
        ),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; events go to POST /v1/events",
        ),
    }
}

async fn metrics(state: &IngestState) -> Response {
    let uplink_down = state.stats.uplink_down_since.lock().unwrap().is_some();
    let breakers_open = state
        .stats
        .lanes
        .lock()
        .unwrap()
        .values()
        .filter(|l| l.breaker_since.is_some())
        .count() as u64;
    let gauges = Gauges {
        pending: state.store.open_total(),
        in_flight: state.stats.in_flight.load(Ordering::Relaxed),
        ingest_in_flight_bytes: state.admission.held_bytes(),
        ingest_waiting: state.admission.waiting(),
        store_bytes: state.store.size_on_disk(),
        subscriptions: state.registry.snapshot().len() as u64,
        uplink_down,
        breakers_open,
        census: state.metrics.census.current(&state.store).await,
    };
    let body = state.metrics.render(&gauges, &state.store.flusher().rounds);
    hyper::Response::builder()
        .header("content-type", "text/plain; version=0.0.4")
        .body(crate::http::full(Bytes::from(body)))
        .expect("static headers are valid")
}

async fn post_events(state: &IngestState, req: Request<Incoming>, batch: bool) -> Response {
    let (outcome, response) = match accept(state, req, batch).await {
        Ok((outcome, response)) => (outcome, response),
        Err(refusal) => (refusal.outcome, *refusal.response),
    };
    state.metrics.ingest(outcome);
    response
}

/// An ingest request that was refused, with its metric outcome.
struct Refusal {
    outcome: IngestOutcome,
    response: Box<Response>,
}

fn refuse(outcome: IngestOutcome, status: StatusCode, code: &str, message: &str) -> Refusal {
    Refusal {
        outcome,
        response: Box::new(error_response(status, code, message)),
    }
}

fn unavailable(reason: &str) -> Refusal {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason);
    response
        .headers_mut()
        .insert("retry-after", hyper::header::HeaderValue::from_static("5"));
    Refusal {
        outcome: IngestOutcome::Unavailable,
        response: Box::new(response),
    }
}

/// 503 while hookd shuts down or the store is over its disk budget.
fn refusing(state: &IngestState) -> Result<(), Refusal> {
    if state.shutting_down.load(Ordering::Relaxed) {
        return Err(unavailable(
            "hookd is shutting down; retry against the restarted daemon",
        ));
    }
    if let Some(reason) = state.refusing.read().unwrap().clone() {
        return Err(unavailable(&reason));
    }
    Ok(())
}

fn too_large(settings: &IngestSettings) -> Refusal {
    refuse(
        IngestOutcome::TooLarge,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!(
            "the body is over ingest.max_body ({} bytes)",
            settings.max_body
        ),
    )
}

/// Room for a body of `bytes`, waiting up to request_timeout (which the
/// body's own read then starts afresh).
async fn admit(
    state: &IngestState,
    settings: &IngestSettings,
    bytes: u64,
) -> Result<Room, Refusal> {
    state
        .admission
        .admit(bytes, settings.request_timeout)
        .await
        .ok_or_else(no_room)
}

fn no_room() -> Refusal {
    unavailable(
        "ingest is holding ingest.max_in_flight_bytes of requests and found no room for \
         this one within ingest.request_timeout; retry",
    )
}

fn request_timeout(settings: &IngestSettings) -> Refusal {
    refuse(
        IngestOutcome::BadRequest,
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        &format!(
            "the request did not arrive within ingest.request_timeout ({})",
            humantime::format_duration(settings.request_timeout)
        ),
    )
}

fn body_refusal(settings: &IngestSettings, e: BodyError) -> Refusal {
    match e {
        BodyError::TooLarge => too_large(settings),
        BodyError::Read(e) => refuse(
            IngestOutcome::BadRequest,
            StatusCode::BAD_REQUEST,
            "bad_body",
            &format!("the body could not be read: {e}"),
        ),
    }
}

/// Reads a body of unknown length (chunked), taking room for each KiB
/// before it is kept; a body larger than the whole budget takes all of it.
/// As with a body of known length, a wait for room ends in a 503 after
/// request_timeout, and the reading itself may take request_timeout, not
/// counting the waits.
async fn read_chunked(
    state: &IngestState,
    settings: &IngestSettings,
    mut body: Incoming,
) -> Result<(Bytes, Room), Refusal> {
    use http_body_util::BodyExt;
    let mut room = admit(state, settings, 0).await?;
    let mut kept: Vec<u8> = Vec::new();
    let mut deadline = tokio::time::Instant::now() + settings.request_timeout;
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame())
        .await
        .map_err(|_| request_timeout(settings))?
    {
        let frame = frame.map_err(|e| body_refusal(settings, BodyError::Read(e.to_string())))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = kept.len() + data.len();
        if len > settings.max_body {
            return Err(too_large(settings));
        }
        let waited = tokio::time::Instant::now();
        (state.admission)
            .grow(&mut room, len as u64, settings.request_timeout)
            .await
            .ok_or_else(no_room)?;
        deadline += waited.elapsed();
        kept.extend_from_slice(&data);
    }
    Ok((Bytes::from(kept), room))
}

async fn accept(
    state: &IngestState,
    req: Request<Incoming>,
    batch: bool,
) -> Result<(IngestOutcome, Response), Refusal> {
    let settings = state.settings.read().unwrap().clone();
    let only_tenant = authorize(&settings, &req)?;
    refusing(state)?;
    check_content_type(&req)?;
    let declared = {
        use hyper::body::Body;
        req.body().size_hint()
    };
    if declared.lower() > settings.max_body as u64 {
        return Err(too_large(&settings));
    }
    // A body of known length (Content-Length) takes its room before it is
    // read, so clients wait unread and TCP holds the rest back. A chunked
    // one takes room as it arrives, a KiB at a time, and waits for more
    // before it reads on: charging it max_body up front would let a handful
    // of chunked requests hold the whole budget, and reading it first would
    // let any number of them hold max_body each. Either wait ends with
    // request_timeout.
    let (body, room) = match declared.exact() {
        Some(len) => {
            let room = admit(state, &settings, len).await?;
            let body = tokio::time::timeout(
                settings.request_timeout,
                read_body(req.into_body(), settings.max_body),
            )
            .await
            .map_err(|_| request_timeout(&settings))?
            .map_err(|e| body_refusal(&settings, e))?;
            (body, room)
        }
        None => read_chunked(state, &settings, req.into_body()).await?,
    };
    // The wait for room may have outlasted a shutdown or the disk budget.
    refusing(state)?;
    let events = parse_events(body, batch).map_err(|message| {
        refuse(
            IngestOutcome::BadRequest,
            StatusCode::BAD_REQUEST,
            "invalid_event",
            &message,
        )
    })?;
    if let Some(tenant) = only_tenant {
        if let Some(i) = events
            .iter()
            .position(|e| e.tenant.as_deref() != Some(tenant))
        {
            let which = if batch {
                format!("events[{i}]")
            } else {
                "the event".into()
            };
            return Err(refuse(
                IngestOutcome::Unauthorized,
                StatusCode::FORBIDDEN,
                "forbidden_tenant",
                &format!(
                    "this token may only post events with tenant {tenant:?}; {which} has another"
                ),
            ));
        }
    }

    let routes: Vec<Vec<u64>> = events.iter().map(|e| state.registry.route(e)).collect();
    let routed = routed_subscriptions(&routes);
    // Duplicates are answered after the round's flush too: the first copy
    // may not be on disk yet.
    let answers = state
        .store
        .ingest_holding(events, routes, Some(room))
        .await
        .map_err(|e| match e {
            Error::Flush(_) => {
                tracing::error!(error = %e, "ingest flush failed");
                unavailable("the store could not make the write durable; retry")
            }
            _ => {
                tracing::error!(error = %e, "ingest write failed");
                unavailable("the store could not take the write; retry")
            }
        })?;
    if answers.iter().any(|a| !a.duplicate) {
        state.wakeup.subs(&routed);
    }
    let fresh = answers.iter().filter(|a| !a.duplicate).count() as u64;
    state
        .metrics
        .events_accepted
        .fetch_add(fresh, Ordering::Relaxed);
    for answer in &answers {
        tracing::debug!(
            event = %answer.id,
            deliveries = answer.deliveries,
            duplicate = answer.duplicate,
            "event accepted"
        );
    }

    if batch {
        let results: Vec<_> = answers.iter().map(answer_json).collect();
        return Ok((
            IngestOutcome::Accepted,
            json_response(StatusCode::ACCEPTED, &results),
        ));
    }
    let answer = &answers[0];
    let (status, outcome) = if answer.duplicate {
        (StatusCode::OK, IngestOutcome::Duplicate)
    } else {
        (StatusCode::ACCEPTED, IngestOutcome::Accepted)
    };
    Ok((outcome, json_response(status, &answer_json(answer))))
}

/// Every subscription some event fans out to, once each. A duplicate among
/// new events wakes its subscriptions for nothing, which costs one read.
fn routed_subscriptions(routes: &[Vec<u64>]) -> Vec<u64> {
    let mut subs: Vec<u64> = routes.iter().flatten().copied().collect();
    subs.sort_unstable();
    subs.dedup();
    subs
}

fn answer_json(a: &Accepted) -> serde_json::Value {
    if a.duplicate {
        serde_json::json!({"id": a.id, "deliveries": a.deliveries, "duplicate": true})
    } else {
        serde_json::json!({"id": a.id, "deliveries": a.deliveries})
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Checks the bearer token; answers the tenant it is limited to, if any.
fn authorize<'s>(
    settings: &'s IngestSettings,
    req: &Request<Incoming>,
) -> Result<Option<&'s str>, Refusal> {
    if settings.token_hashes.is_empty() {
        return Ok(None);
    }
    let unauthorized = |message: &str| {
        let mut r = refuse(
            IngestOutcome::Unauthorized,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message,
        );
        r.response.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        r
    };
    let Some(value) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return Err(unauthorized("missing Authorization: Bearer <token>"));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be Bearer <token>"))?;
    let presented = sha256(token.trim().as_bytes());
    // Compare against every token so the time taken says nothing about which matched.
    let mut ok = subtle::Choice::from(0);
    let mut matched = 0u32;
    for (i, hash) in settings.token_hashes.iter().enumerate() {
        let eq = subtle::ConstantTimeEq::ct_eq(&presented[..], &hash[..]);
        matched = subtle::ConditionallySelectable::conditional_select(&matched, &(i as u32), eq);
        ok |= eq;
    }
    if bool::from(ok) {
        Ok(settings
            .token_tenants
            .get(matched as usize)
            .and_then(|t| t.as_deref()))
    } else {
        Err(unauthorized("the token is not valid"))
    }
}

fn check_content_type(req: &Request<Incoming>) -> Result<(), Refusal> {
    let ok = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(refuse(
            IngestOutcome::UnsupportedMediaType,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ))
    }
}

/// One event as posted; `data` stays raw.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted<'a> {
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// `Some` whenever the field is present, `null` included.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    id: Option<String>,
    tenant: Option<String>,
    ordering_key: Option<String>,
}

/// Any JSON value, `null` too, as present: serde would read `null` as `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

/// Parses and validates a single event or a batch; errors say which field of which event.
pub fn parse_events(body: impl Into<Bytes>, batch: bool) -> Result<Vec<NewEvent>, String> {
    let body = &body.into();
    if batch {
        let items: Vec<&RawValue> = serde_json::from_slice(body)
            .map_err(|e| format!("the body must be a JSON array of events: {e}"))?;
        if items.is_empty() {
            return Err("the batch is empty; send 1 to 1000 events".into());
        }
        if items.len() > MAX_BATCH {
            return Err(format!(
                "the batch has {} events; at most {MAX_BATCH} per request",
                items.len()
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                parse_event(body, raw.get().as_bytes()).map_err(|e| format!("events[{i}]: {e}"))
            })
            .collect()
    } else {
        Ok(vec![parse_event(body, body)?])
    }
}

/// Parses and validates one event: `bytes`, a part of `body`, whose `data`
/// it keeps as a view of `body` rather than a copy.
fn parse_event(body: &Bytes, bytes: &[u8]) -> Result<NewEvent, String> {
    let posted: Posted<'_> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            format!("{e}")
        } else {
            format!("the body is not valid JSON: {e}")
        }
    })?;
    let event_type = posted
        .event_type
        .ok_or("field type is missing; give the event's type, e.g. \"invoice.paid\"")?;
    if !is_valid_name(&event_type) {
        return Err(format!(
            "field type {event_type:?} must be 1-128 chars of [A-Za-z0-9_.:-]"
        ));
    }
    if event_type.starts_with(RESERVED_TYPE_PREFIX) {
        return Err(format!(
            "field type {event_type:?}: types starting with {RESERVED_TYPE_PREFIX:?} are reserved for hookd's own events"
        ));
    }
    let data = posted
        .data
        .ok_or("field data is missing; give the payload as any JSON value")?;
    for (name, value) in [
        ("id", &posted.id),
        ("tenant", &posted.tenant),
        ("ordering_key", &posted.ordering_key),
    ] {
        if let Some(v) = value {
            if !is_valid_name(v) {
                return Err(format!(
                    "field {name} {v:?} must be 1-128 chars of [A-Za-z0-9_.:-]"
                ));
            }
        }
    }
    Ok(NewEvent {
        id: posted.id,
        event_type,
        tenant: posted.tenant,
        ordering_key: posted.ordering_key,
        data: body.slice_ref(data.get().as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_kept_byte_for_byte() {
        let body = br#"{"type":"a.b","data":{ "x" : 1.50e0, "y":"\u00e9" }}"#;
        let events = parse_events(&body[..], false).unwrap();
        assert_eq!(&events[0].data[..], br#"{ "x" : 1.50e0, "y":"\u00e9" }"#);
    }

    #[test]
    fn field_errors_name_the_field() {
        let cases: [(&'static [u8], &str); 7] = [
            (b"{", "not valid JSON"),
            (br#"{"data":1}"#, "type is missing"),
            (br#"{"type":"a b","data":1}"#, "field type"),
            (br#"{"type":"a"}"#, "data is missing"),
            (br#"{"type":"a","data":1,"id":""}"#, "field id"),
            (br#"{"type":"hookd.x","data":1}"#, "reserved"),
            (br#"{"type":"a","data":1,"tenantt":"x"}"#, "tenantt"),
        ];
        for (body, want) in cases {
            let err = parse_events(body, false).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[tokio::test]
    async fn admission_waits_for_room_and_gives_up_after_its_wait() {
        let admission = std::sync::Arc::new(Admission::new(4096));
        let long = Duration::from_secs(10);
        let held = admission.admit(3000, long).await.expect("room at first");
        assert_eq!(admission.held_bytes(), 3072);
        // A body larger than the budget needs all of it.
        let short = Duration::from_millis(50);
        assert!(admission.admit(1 << 20, short).await.is_none());
        assert_eq!(admission.waiting(), 0);
        let small = admission.admit(1000, long).await.expect("1 KiB fits");
        assert!(admission.admit(1, short).await.is_none());
        // A waiter gets in as soon as room comes back.
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(1 << 20, long).await.is_some() })
        };
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        drop(small);
        assert!(waiter.await.unwrap(), "admitted once the room was free");
        assert_eq!((admission.held_bytes(), admission.waiting()), (0, 0));
    }

    #[test]
    fn batch_errors_name_the_index() {
        let err = parse_events(
            &br#"[{"type":"a","data":1},{"type":"","data":1}]"#[..],
            true,
        )
        .unwrap_err();
        assert!(err.starts_with("events[1]"), "{err}");
        assert!(parse_events(&b"[]"[..], true)
            .unwrap_err()
            .contains("empty"));
        let many = format!("[{}]", vec![r#"{"type":"a","data":1}"#; 1001].join(","));
        assert!(parse_events(many, true).unwrap_err().contains("1000"));
    }
}
