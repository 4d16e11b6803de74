//! Operations: the systemd protocol, reload, metrics, logs, check-config and
//! backup, each against a real `hookd serve` started by [`harness::Daemon`].

mod backup;
mod check_config;
mod harness;
mod logs;
mod metrics;
mod notify;
mod reload;
