//! Black-box integration tests of hookd: every test starts the real binary
//! (`hookd serve --config FILE`) in a temp dir on port 0, waits for its
//! `READY=1` notification, and talks to it only through its public surfaces:
//! the ingest HTTP API, the admin socket, the CLI, signals, and webhook
//! deliveries to a real receiver in the test process.

mod harness;

mod budget;
mod control;
mod crash;
mod diskfull;
mod faults;
mod ingest;
mod power;
mod retention;
mod shutdown;
mod storage;
