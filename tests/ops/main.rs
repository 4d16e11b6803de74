//! Operations: the systemd protocol, reload, metrics, logs, check-config and
//! backup, each against a real `hookd serve` started by [`harness::Daemon`].

mod check_config;
#[allow(dead_code)] // helpers for the tests still to come
mod harness;
mod logs;
mod metrics;
mod notify;
mod reload;
