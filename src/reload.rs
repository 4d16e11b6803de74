//! SIGHUP: a new config applied to the running daemon. Tokens, delivery
//! settings, the disk budget, the address policy and the log level change in
//! place; keys that shape what was opened or bound at start (the listen
//! address, the socket, the store) need a restart and are reported so.

use crate::admin::AdminState;
use crate::config::Config;
use crate::daemon::{allowed_uids, control_settings, delivery_settings};
use crate::delivery::DeliveryContext;
use crate::ingest::{IngestSettings, IngestState};
use crate::logging::{LevelChange, LogControl};
use crate::netpolicy::AddressPolicy;
use crate::scheduler::Wakeup;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Keys a reload applies without a restart. Any other key that changed is
/// reported as needing one, so a key added later is never silently ignored.
pub const LIVE_KEYS: &[&str] = &[
    "ingest.tokens",
    "ingest.tokens_file",
    "ingest.max_body",
    "ingest.header_timeout",
    "ingest.request_timeout",
    "ingest.idle_timeout",
    "storage.max_disk",
    "delivery.timeout",
    "delivery.retry_schedule",
    "delivery.allow_networks",
    "delivery.max_in_flight",
    "delivery.max_in_flight_total",
    "delivery.max_retry_after",
    "delivery.secret_overlap",
    "delivery.response_excerpt",
    "delivery.require_https",
    "delivery.breaker_failures",
    "delivery.breaker_probe",
    "delivery.breaker_probe_max",
    "delivery.disable_after",
    "delivery.uplink_hosts",
    "delivery.uplink_window",
    "delivery.uplink_probe",
    "delivery.uplink_drain_rate",
    "delivery.uplink_drain_for",
    "admin.allowed_uids",
    "log.level",
];

/// The running daemon's parts a reload changes.
pub struct Live {
    pub ingest: Arc<IngestState>,
    pub delivery: Arc<DeliveryContext>,
    pub admin: Arc<AdminState>,
    pub wakeup: Arc<Wakeup>,
    /// The log level, when this process installed the subscriber.
    pub log: Option<LogControl>,
}

/// Applies new configs to the [`Live`] parts, knowing what is running.
pub struct Reloader {
    /// What was bound and opened at start: restart-only keys compare against it.
    started: Config,
    /// The last config applied.
    current: Config,
    live: Live,
}

/// What a reload did, for the log and for tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Live keys whose value changed, now in force.
    pub applied: Vec<String>,
    /// Keys that differ from what is running and wait for a restart.
    pub need_restart: Vec<String>,
    /// The set of accepted ingest tokens changed (also when only a file's content did).
    pub tokens_changed: bool,
}

impl Reloader {
    /// Starts from the config the daemon was started with.
    pub fn new(config: Config, live: Live) -> Reloader {
        Reloader {
            started: config.clone(),
            current: config,
            live,
        }
    }

    /// Applies `new` (already validated) and logs what changed.
    pub fn apply(&mut self, new: Config) -> Outcome {
        let mut outcome = Outcome {
            applied: changed_keys(&self.current, &new)
                .into_iter()
                .filter(|k| is_live(k))
                .collect(),
            need_restart: changed_keys(&self.started, &new)
                .into_iter()
                .filter(|k| !is_live(k))
                .collect(),
            tokens_changed: false,
        };

        let live = &self.live;
        if outcome.applied.iter().any(|k| k == "log.level") {
            if let Some(log) = &live.log {
                match log.set_level(&new.log.level) {
                    Ok(LevelChange::Applied) => {}
                    Ok(LevelChange::KeptEnv) => tracing::warn!(
                        level = %new.log.level,
                        "log.level changed, but RUST_LOG is set and keeps deciding the level"
                    ),
                    Err(reason) => tracing::warn!(%reason, "log.level not applied"),
                }
            }
        }

        let ingest = IngestSettings::new(&new.ingest, new.storage.max_disk.0);
        {
            let mut settings = live.ingest.settings.write().unwrap();
            outcome.tokens_changed = settings.token_hashes != ingest.token_hashes;
            *settings = Arc::new(ingest);
        }
        *live.delivery.settings.write().unwrap() = Arc::new(delivery_settings(&new));
        *live.delivery.control.write().unwrap() = Arc::new(control_settings(&new));
        *live.admin.allowed_uids.write().unwrap() = allowed_uids(&new);
        if outcome
            .applied
            .iter()
            .any(|k| k == "delivery.allow_networks")
        {
            let policy = AddressPolicy::new(new.delivery.allow_networks.clone());
            live.delivery.outbound.set_policy(policy.clone());
            *live.admin.policy.write().unwrap() = Arc::new(policy);
        }
        *live.admin.secret_overlap.write().unwrap() = new.delivery.secret_overlap.0;
        // Caps may have changed: every lane looks again.
        live.wakeup.all();

        for key in &outcome.need_restart {
            tracing::warn!(
                key = %key,
                "config key changed in the file but needs a restart to apply; the running value stays"
            );
        }
        let applied = if outcome.applied.is_empty() {
            "none".to_string()
        } else {
            outcome.applied.join(",")
        };
        tracing::info!(
            applied = %applied,
            tokens_changed = outcome.tokens_changed,
            tokens = live.ingest.settings.read().unwrap().token_hashes.len(),
            need_restart = outcome.need_restart.len(),
            "config reloaded"
        );
        self.current = new;
        outcome
    }
}

fn is_live(key: &str) -> bool {
    LIVE_KEYS.contains(&key)
}

/// The dotted keys (`delivery.timeout`) whose effective values differ.
/// Tokens serialize redacted, so only a change in their number shows here.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (flatten(old), flatten(new));
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn flatten(config: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(sections)) = toml::Value::try_from(config) {
        for (section, value) in sections {
            match value {
                toml::Value::Table(keys) => {
                    for (key, value) in keys {
                        out.insert(format!("{section}.{key}"), value);
                    }
                }
                other => {
                    out.insert(section, other);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_and_sorted() {
        let old = Config::parse("").unwrap();
        let new = Config::parse(
            "[delivery]\ntimeout = \"5s\"\n[storage]\npath = \"/elsewhere\"\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        assert_eq!(
            changed_keys(&old, &new),
            ["delivery.timeout", "log.level", "storage.path"]
        );
        assert!(changed_keys(&new, &new).is_empty());
        let optional = Config::parse("[ingest]\ntokens_file = \"/dev/null\"\n").unwrap();
        assert_eq!(changed_keys(&old, &optional), ["ingest.tokens_file"]);
    }

    #[test]
    fn every_live_key_exists() {
        let keys = flatten(&Config::parse("[ingest]\ntokens_file = \"/dev/null\"\n").unwrap());
        for key in LIVE_KEYS {
            assert!(keys.contains_key(*key), "{key} is not a config key");
        }
    }
}
