//! Black-box integration tests of hookd: every test starts the real binary
//! (`hookd serve --config FILE`) in a temp dir on port 0, waits for its
//! `READY=1` notification, and talks to it only through its public surfaces:
//! the ingest HTTP API, the admin socket, the CLI, signals, and webhook
//! deliveries to a real receiver in the test process.

mod harness;

mod admin;
mod batch;
mod budget;
mod cli;
mod config;
mod control;
mod crash;
mod data;
mod delivery;
mod diskfull;
mod faults;
mod ingest;
mod matching;
mod power;
mod restart;
mod retention;
mod retry;
mod security;
mod shutdown;
mod storage;
