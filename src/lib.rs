//! hookd: a webhook delivery daemon in one binary.
//!
//! `ingest` takes events over HTTP and writes each with its deliveries in one
//! durable `store` batch (group commit in `store::Flusher`). The `scheduler`
//! reads each subscription's due index in bounded batches and runs
//! `delivery` attempts (signed by `signing`, sent by `outbound` under the
//! `netpolicy` SSRF rules, rescheduled by `retry`). Operators use `admin`
//! over a Unix socket, through the `cli`. `daemon::run` ties it together.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod error;
pub mod filter;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod matching;
pub mod metrics;
pub mod model;
pub mod netpolicy;
pub mod outbound;
pub mod registry;
pub mod reload;
pub mod retry;
pub mod scheduler;
pub mod signing;
pub mod store;
pub mod systemd;
