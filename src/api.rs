//! JSON shapes of the admin API, shared by the server (`admin`) and the CLI.
//!
//! Times are RFC 3339 strings in UTC with milliseconds; ids are strings.
//! Every list endpoint answers `{"items": [...]}`. Errors are
//! `{"error": {"code": "...", "message": "..."}}`, as on the ingest API.
//!
//! Routes:
//!
//! ```text
//! GET    /v1/status
//! GET    /v1/subscriptions
//! POST   /v1/subscriptions                    SubscriptionCreate -> 201 Subscription (with secret)
//! GET    /v1/subscriptions/{id}[?show_secret=true]
//! PATCH  /v1/subscriptions/{id}               SubscriptionUpdate -> Subscription
//! DELETE /v1/subscriptions/{id}               -> 204
//! POST   /v1/subscriptions/{id}/pause         -> Subscription
//! POST   /v1/subscriptions/{id}/resume        -> Subscription
//! POST   /v1/subscriptions/{id}/rotate-secret -> Subscription (with the new secret)
//! GET    /v1/events[?type=T&status=S&limit=N]
//! GET    /v1/events/{id}                      -> Event (with data and deliveries)
//! POST   /v1/events/{id}/redeliver            -> Requeued
//! GET    /v1/deliveries[?sub=ID&status=S&key=K&limit=N]
//! GET    /v1/deliveries/{id}                  -> Delivery (with attempt_log)
//! POST   /v1/replay                           ReplayRequest -> Requeued
//! POST   /v1/backup                           BackupRequest -> Backup
//! ```

use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub started_at: String,
    pub uptime_secs: u64,
    pub ingest: IngestStatus,
    pub store: StoreStatus,
    pub subscriptions: SubscriptionCounts,
    pub deliveries: DeliveryCounts,
    #[serde(default)]
    pub delivery_control: DeliveryControlStatus,
}

/// Breakers and the uplink.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeliveryControlStatus {
    /// `up` or `down` (the box's own network, judged from failures to several hosts).
    pub uplink: String,
    pub uplink_down_since: Option<String>,
    /// Subscriptions whose breaker is open, with the time it opened.
    pub breakers_open: Vec<BreakerStatus>,
}

/// One open breaker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakerStatus {
    pub subscription_id: String,
    pub since: String,
}

/// Whether ingest accepts events, and why not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestStatus {
    pub listen: String,
    pub accepting: bool,
    /// Why ingest refuses events, when it does (disk budget, shutting down, store error).
    pub reason: Option<String>,
    pub events_accepted: u64,
}

/// The store on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreStatus {
    pub path: String,
    pub size_bytes: u64,
    pub max_disk_bytes: u64,
    /// What the stored events account for, which the disk budget also
    /// judges (sled's file seldom shrinks when retention frees space).
    #[serde(default)]
    pub held_bytes: u64,
}

/// Subscriptions by state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionCounts {
    pub active: u64,
    pub paused: u64,
    pub disabled: u64,
}

/// Deliveries by state, counted live by the scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryCounts {
    /// Waiting for an attempt (never tried or retrying).
    pub pending: u64,
    /// Attempts on the wire right now.
    pub in_flight: u64,
    /// Delivered since start.
    pub delivered: u64,
    /// Given up since start.
    pub dead: u64,
}

/// `POST /v1/subscriptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionCreate {
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    /// `whsec_...`; generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Custom headers as `"Name: value"` strings.
    #[serde(default)]
    pub headers: Vec<String>,
    /// `N/s` or `N/m`.
    #[serde(default)]
    pub rate_limit: Option<String>,
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// `POINTER OP VALUE` conditions.
    #[serde(default)]
    pub filters: Vec<String>,
    /// `v1` (HMAC, the default), `v1a` (Ed25519) or `v1+v1a`.
    #[serde(default)]
    pub signing: Option<String>,
}

/// `PATCH /v1/subscriptions/{id}`: a field given replaces that field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionUpdate {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limit: Option<String>,
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    #[serde(default)]
    pub filters: Option<Vec<String>>,
}

/// A subscription as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub tenant: Option<String>,
    pub headers: Vec<String>,
    /// `active`, `paused` or `disabled`.
    pub state: String,
    /// Why and since when it is disabled, when it is.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub rate_limit: Option<String>,
    pub max_in_flight: u32,
    pub filters: Vec<String>,
    /// Present only on creation, rotation, or `?show_secret=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Older secrets still signing during a rotation overlap, and until when.
    #[serde(default)]
    pub previous_secrets_until: Vec<String>,
    /// `v1`, `v1a` or `v1+v1a`.
    #[serde(default)]
    pub signing: String,
    /// For `v1a`: the Ed25519 public keys (`whpk_...`) receivers verify with, current first.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// Live scheduler state: deliveries waiting, attempts on the wire.
    pub pending: u64,
    pub in_flight: u64,
    /// The concurrency in force now (AIMD lowers it on 429/502/503/504/timeouts).
    #[serde(default)]
    pub effective_max_in_flight: u32,
    /// Why the effective concurrency is below `max_in_flight`, if it is.
    #[serde(default)]
    pub concurrency_reason: Option<String>,
    /// Circuit breaker: `closed`, `open` or `probing`.
    #[serde(default)]
    pub breaker: String,
    #[serde(default)]
    pub breaker_since: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Since when every attempt has failed (auto-disable counts from here).
    #[serde(default)]
    pub failing_since: Option<String>,
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub tenant: Option<String>,
    pub ordering_key: Option<String>,
    pub received_at: String,
    /// `data` exactly as it was posted (only in `GET /v1/events/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<serde_json::value::RawValue>>,
    pub deliveries: Vec<Delivery>,
}

/// A delivery: one event to one subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub subscription_id: String,
    /// `pending`, `failed` (retrying), `delivered`, `dead` or `cancelled`.
    pub status: String,
    pub attempts: u32,
    /// When the next attempt is due, for pending and failed deliveries.
    pub next_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub ordering_key: Option<String>,
    /// Every attempt, oldest first (only in `GET /v1/deliveries/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<Attempt>>,
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub no: u32,
    pub at: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
    /// The first bytes of the response body, lossily decoded as UTF-8.
    pub response: String,
}

/// `POST /v1/replay`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub subscription_id: String,
    /// A duration back from now (`2h`) or an RFC 3339 time.
    pub since: String,
    /// Only events whose delivery to this subscription has this status.
    #[serde(default)]
    pub status: Option<String>,
}

/// Answer to replay and redeliver: the deliveries created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requeued {
    pub deliveries: Vec<String>,
}

/// `POST /v1/backup`: the daemon writes a copy of its store to `path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// An absolute path that does not exist yet, writable by the daemon.
    pub path: String,
}

/// Answer to `POST /v1/backup`: what the backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    pub path: String,
    pub subscriptions: u64,
    pub events: u64,
    pub deliveries: u64,
    /// Deliveries still open in the backup: attempted after a restore.
    pub open_deliveries: u64,
    pub size_bytes: u64,
    pub took_ms: u64,
}

/// Every list endpoint answers this.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List<T> {
    pub items: Vec<T>,
}

/// The error body of every endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and people (`message`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
