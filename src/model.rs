//! The records hookd keeps: events, subscriptions, deliveries, attempts. No IO.
//!
//! These types are stored (bincode, see `store::codec`): add fields only at
//! the end of a struct with a new record version, never reorder or remove.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the one clock of every stored record.
pub type Millis = u64;

/// The wall clock in milliseconds.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: Millis) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Is `s` 1–128 chars of `[A-Za-z0-9_.:-]`? (types, ids, tenants, ordering keys)
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Event types under this prefix are hookd's own operational events.
pub const RESERVED_TYPE_PREFIX: &str = "hookd.";

/// An accepted event, without its data (stored in chunks beside it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// The idempotency key: given by the client or `evt_<ULID>`.
    pub id: String,
    pub event_type: String,
    pub tenant: Option<String>,
    pub ordering_key: Option<String>,
    pub received_at: Millis,
    /// Length of `data` in bytes, exactly as received.
    pub data_len: u32,
    /// Every delivery made for this event, fan-out first, redeliveries after.
    pub deliveries: Vec<u64>,
    /// How many of `deliveries` the fan-out made (what ingest answered).
    pub fanned_out: u32,
    /// The subscription key of each fan-out delivery, beside
    /// `deliveries[..fanned_out]`. A fan-out delivery has no record of its
    /// own until it changes; until then it is this event's, pending since
    /// `received_at`. Empty for events stored before that, whose deliveries
    /// all have records.
    pub subs: Vec<u64>,
}

impl Event {
    /// The fan-out delivery `id` as ingest made it, if this event made it
    /// and recorded its subscription.
    pub fn fresh_delivery(&self, seq: u64, id: u64) -> Option<Delivery> {
        let fanned_out = &self.deliveries[..(self.fanned_out as usize).min(self.deliveries.len())];
        let i = fanned_out.binary_search(&id).ok()?;
        let sub_key = *self.subs.get(i)?;
        Some(Delivery::new(
            id,
            seq,
            sub_key,
            self.ordering_key.clone(),
            self.received_at,
        ))
    }
}

/// Where a subscription stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum SubState {
    Active,
    /// Held by an operator; deliveries wait.
    Paused,
    /// Held by hookd (410 Gone, or failing too long); deliveries wait.
    Disabled {
        reason: String,
        since: Millis,
    },
}

/// A signing secret: the decoded HMAC key bytes.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Secret {
    pub key: Vec<u8>,
    /// For a secret replaced by rotation: it stops signing at this time.
    pub expires_at: Option<Millis>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("key", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A rate limit: at most `count` attempts per `per_secs`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RateLimit {
    pub count: u32,
    pub per_secs: u32,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.per_secs == 60 { "m" } else { "s" };
        write!(f, "{}/{unit}", self.count)
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("rate limit {s:?} is not N/s or N/m (e.g. 50/s)");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let per_secs = match unit.trim() {
            "s" => 1,
            "m" => 60,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!("rate limit {s:?} must allow at least 1"));
        }
        Ok(RateLimit { count, per_secs })
    }
}

/// A subscriber endpoint and what it receives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subscription {
    /// `sub_<ULID>`, shown to users.
    pub id: String,
    /// Internal number used in index keys.
    pub key: u64,
    pub url: String,
    /// Patterns: exact type, `prefix.*`, or `*`; empty means all types.
    pub events: Vec<String>,
    /// `None`: events without a tenant; `Some("*")`: every event.
    pub tenant: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The current secret first, then older ones still inside their overlap.
    pub secrets: Vec<Secret>,
    pub state: SubState,
    pub created_at: Millis,
    pub rate_limit: Option<RateLimit>,
    pub max_in_flight: Option<u32>,
    /// `POINTER OP VALUE` conditions, as given (parsed by `filter`).
    pub filters: Vec<String>,
    /// Since when every attempt has failed (cleared by a success), for auto-disable.
    pub failing_since: Option<Millis>,
    /// Which signatures deliveries carry.
    pub signing: Signing,
    /// Ed25519 key pairs (PKCS#8) for `v1a` signatures: the current one first,
    /// then older ones inside their rotation overlap.
    pub ed25519: Vec<Secret>,
}

/// The signature schemes of a subscription (Standard Webhooks `v1` and `v1a`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Signing {
    /// `v1`: HMAC-SHA256 with the shared secret.
    #[default]
    Hmac,
    /// `v1a`: Ed25519; receivers verify with the public key only.
    Ed25519,
    /// Both, side by side in one header.
    Both,
}

impl Signing {
    /// The API's name.
    pub fn name(self) -> &'static str {
        match self {
            Signing::Hmac => "v1",
            Signing::Ed25519 => "v1a",
            Signing::Both => "v1+v1a",
        }
    }

    /// Parses `v1`, `v1a` or `v1+v1a` (also `hmac`, `ed25519`, `both`).
    pub fn parse(s: &str) -> Option<Signing> {
        Some(match s {
            "v1" | "hmac" => Signing::Hmac,
            "v1a" | "ed25519" => Signing::Ed25519,
            "v1+v1a" | "both" => Signing::Both,
            _ => return None,
        })
    }

    /// Does it send HMAC (`v1`) signatures?
    pub fn hmac(self) -> bool {
        matches!(self, Signing::Hmac | Signing::Both)
    }

    /// Does it send Ed25519 (`v1a`) signatures?
    pub fn ed25519(self) -> bool {
        matches!(self, Signing::Ed25519 | Signing::Both)
    }
}

impl Subscription {
    /// The secrets that sign at `now`: the current one and unexpired older ones.
    pub fn signing_keys(&self, now: Millis) -> impl Iterator<Item = &[u8]> {
        live(&self.secrets, now)
    }

    /// The Ed25519 key pairs (PKCS#8) that sign at `now`.
    pub fn ed25519_keys(&self, now: Millis) -> impl Iterator<Item = &[u8]> {
        live(&self.ed25519, now)
    }

    /// Does this subscription's state let deliveries flow?
    pub fn is_active(&self) -> bool {
        self.state == SubState::Active
    }

    /// `active`, `paused` or `disabled`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            SubState::Active => "active",
            SubState::Paused => "paused",
            SubState::Disabled { .. } => "disabled",
        }
    }
}

fn live(keys: &[Secret], now: Millis) -> impl Iterator<Item = &[u8]> {
    keys.iter()
        .filter(move |s| s.expires_at.is_none_or(|t| t > now))
        .map(|s| s.key.as_slice())
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not attempted yet.
    Pending,
    /// Last attempt failed; another is scheduled.
    Failed,
    Delivered,
    /// Given up after the last retry; kept for inspection and redelivery.
    Dead,
    /// Cancelled by an operator (its subscription was removed).
    Cancelled,
}

impl DeliveryStatus {
    /// The API's name of this status.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the API's name of a status.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "failed" => DeliveryStatus::Failed,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            "cancelled" => DeliveryStatus::Cancelled,
            _ => return None,
        })
    }

    /// Will this delivery be attempted again?
    pub fn is_open(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Failed)
    }
}

/// One event to one subscription.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub id: u64,
    /// The event's internal sequence number.
    pub event_seq: u64,
    pub sub_key: u64,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due (for open deliveries).
    pub next_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// The event's ordering key: deliveries sharing it go one at a time, in order.
    pub lane: Option<String>,
    /// Attempts that used up the retry schedule (probes while a breaker is
    /// open or the uplink is down do not).
    pub spent: u32,
}

impl Delivery {
    /// A fresh delivery of event `event_seq` to `sub_key`, due at `now`.
    pub fn new(
        id: u64,
        event_seq: u64,
        sub_key: u64,
        lane: Option<String>,
        now: Millis,
    ) -> Delivery {
        Delivery {
            id,
            event_seq,
            sub_key,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_at: now,
            created_at: now,
            updated_at: now,
            last_status: None,
            last_error: None,
            lane,
            spent: 0,
        }
    }
}

/// One recorded attempt of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub no: u32,
    pub at: Millis,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u32,
    /// The first bytes of the response body.
    pub response: Vec<u8>,
}

/// `dlv_` + the delivery number as 16 hex digits.
pub fn delivery_id_string(id: u64) -> String {
    DeliveryId(id).to_string()
}

/// Shows a delivery number as `dlv_<16 hex>`, formatted only when shown
/// (a log line below the level in force costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryId(pub u64);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dlv_{:016x}", self.0)
    }
}

/// Parses `dlv_<16 hex>` back to the delivery number.
pub fn parse_delivery_id(s: &str) -> Option<u64> {
    let hex = s.strip_prefix("dlv_")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("invoice.paid"));
        assert!(is_valid_name("A-z_0:9."));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("has space"));
        assert!(!is_valid_name(&"x".repeat(129)));
        assert!(is_valid_name(&"x".repeat(128)));
    }

    #[test]
    fn delivery_ids_round_trip() {
        assert_eq!(delivery_id_string(0xbeef), "dlv_000000000000beef");
        for id in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(parse_delivery_id(&delivery_id_string(id)), Some(id));
        }
        assert_eq!(parse_delivery_id("dlv_xyz"), None);
        assert_eq!(parse_delivery_id("sub_0000000000000001"), None);
    }

    #[test]
    fn rate_limits() {
        assert_eq!(
            "50/s".parse::<RateLimit>(),
            Ok(RateLimit {
                count: 50,
                per_secs: 1
            })
        );
        assert_eq!("20/m".parse::<RateLimit>().unwrap().to_string(), "20/m");
        assert!("0/s".parse::<RateLimit>().is_err());
        assert!("5/h".parse::<RateLimit>().is_err());
        assert!("fast".parse::<RateLimit>().is_err());
    }

    #[test]
    fn rotated_secrets_expire() {
        let mut sub = Subscription {
            id: "sub_x".into(),
            key: 1,
            url: "http://x".into(),
            events: vec![],
            tenant: None,
            headers: vec![],
            secrets: vec![Secret {
                key: vec![1],
                expires_at: None,
            }],
            state: SubState::Active,
            created_at: 0,
            rate_limit: None,
            max_in_flight: None,
            filters: vec![],
            failing_since: None,
            signing: Signing::Hmac,
            ed25519: vec![],
        };
        sub.secrets.push(Secret {
            key: vec![2],
            expires_at: Some(100),
        });
        assert_eq!(sub.signing_keys(50).count(), 2);
        assert_eq!(sub.signing_keys(100).count(), 1);
    }
}
