//! The real `hookd` binary in a temp dir, started the way systemd starts it:
//! `hookd serve --config FILE` with `NOTIFY_SOCKET` set, and considered up
//! only when its `READY=1` datagram names the ingest address.

use super::http::{self, Answer};
use hookd::api;
use hookd::cli::client::{with_query, AdminClient};
use hyper::{Method, StatusCode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hookd");

/// How long a daemon may take to become ready, or to exit once told to.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A config being put together; every test starts from the same defaults.
pub struct DaemonBuilder {
    dir: TempDir,
    config: toml::Table,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        DaemonBuilder::new()
    }
}

impl DaemonBuilder {
    /// Defaults: ingest on 127.0.0.1:0, socket and store in a fresh temp dir,
    /// loopback delivery allowed, a short retry schedule and timeouts.
    pub fn new() -> DaemonBuilder {
        let dir = tempfile::Builder::new()
            .prefix("hookd-it-")
            .tempdir()
            .expect("a temp dir");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let (socket, storage) = (path("admin.sock"), path("data"));
        DaemonBuilder {
            dir,
            config: toml::Table::new(),
        }
        .set("ingest", "listen", "127.0.0.1:0")
        .set("admin", "socket", socket.as_str())
        .set("storage", "path", storage.as_str())
        .set("delivery", "allow_networks", vec!["127.0.0.0/8"])
        .set("delivery", "retry_schedule", vec!["300ms", "600ms"])
        .set("delivery", "timeout", "5s")
        .set("delivery", "shutdown_grace", "2s")
        .set("log", "level", "hookd=debug,info")
    }

    /// The temp dir the daemon will live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sets `[section] key = value`, replacing a default.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        let table = self
            .config
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table
            .as_table_mut()
            .expect("config sections are tables")
            .insert(key.to_string(), value.into());
        self
    }

    fn write_config(&self) -> PathBuf {
        let path = self.dir.path().join("hookd.toml");
        let text = toml::to_string(&self.config).expect("the config serializes");
        std::fs::write(&path, text).expect("writing the config");
        path
    }

    fn configured_path(&self, section: &str, key: &str) -> PathBuf {
        let value = self.config[section][key]
            .as_str()
            .expect("a path is a string");
        PathBuf::from(value)
    }

    /// Starts the daemon and waits for its ready signal; fails the test with
    /// the daemon's log if it exits or is not ready within 30 s.
    pub async fn start(self) -> Daemon {
        let config_path = self.write_config();
        let socket = self.configured_path("admin", "socket");
        let storage = self.configured_path("storage", "path");
        let mut daemon = Daemon {
            dir: self.dir,
            config_path,
            socket,
            storage,
            child: None,
            ingest: SocketAddr::from(([127, 0, 0, 1], 0)),
            boots: 0,
        };
        daemon.boot().await;
        daemon
    }

    /// Runs `hookd serve` with this config, expecting it to refuse to start:
    /// returns its exit status and log once it exits. Fails the test if it
    /// becomes ready instead, or is still running after 30 s.
    pub async fn start_expecting_failure(self) -> Refused {
        let config_path = self.write_config();
        match launch(self.dir.path(), &config_path, 0).await {
            Ok((mut child, addr)) => {
                let _ = child.start_kill();
                panic!(
                    "hookd became ready on {addr} but should have refused to start; log:\n{}",
                    read_log(self.dir.path(), 0)
                )
            }
            Err(BootFailure::Exited(status)) => Refused {
                status,
                stderr: read_log(self.dir.path(), 0),
                _dir: Some(self.dir),
            },
            Err(other) => panic!(
                "hookd did not refuse to start: {other}; log:\n{}",
                read_log(self.dir.path(), 0)
            ),
        }
    }
}

/// A daemon that refused to start.
#[derive(Debug)]
pub struct Refused {
    pub status: ExitStatus,
    /// Everything it wrote to stderr (and stdout).
    pub stderr: String,
    /// The daemon's temp dir, kept alive so a test can look at what it left there.
    _dir: Option<TempDir>,
}

/// Why a daemon did not become ready.
enum BootFailure {
    Exited(ExitStatus),
    NotReady(String),
}

impl std::fmt::Display for BootFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootFailure::Exited(status) => write!(f, "it exited with {status}"),
            BootFailure::NotReady(why) => f.write_str(why),
        }
    }
}

/// A running (or stopped, between `kill9`/`sigterm` and `restart`) daemon.
/// Dropping it kills the process; if the test is failing, the daemon's log
/// is printed first.
pub struct Daemon {
    dir: TempDir,
    config_path: PathBuf,
    socket: PathBuf,
    storage: PathBuf,
    child: Option<Child>,
    ingest: SocketAddr,
    boots: u32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- hookd log ({}, ingest {}) -----\n{}----- end of hookd log -----",
                self.dir.path().display(),
                self.ingest_url(),
                self.log()
            );
        }
    }
}

impl Daemon {
    /// A daemon with the default test config.
    pub async fn start() -> Daemon {
        DaemonBuilder::new().start().await
    }

    /// A builder to change the config first.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::new()
    }

    async fn boot(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        let boot = self.boots;
        self.boots += 1;
        match launch(self.dir.path(), &self.config_path, boot).await {
            Ok((child, addr)) => {
                self.child = Some(child);
                self.ingest = addr;
            }
            Err(failure) => panic!(
                "hookd did not become ready: {failure}; log:\n{}",
                self.log()
            ),
        }
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .expect("the daemon is running")
    }

    /// The ingest address from the ready signal.
    pub fn ingest_addr(&self) -> SocketAddr {
        self.ingest
    }

    /// `http://127.0.0.1:PORT`.
    pub fn ingest_url(&self) -> String {
        format!("http://{}", self.ingest)
    }

    /// The admin socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The store directory.
    pub fn storage_path(&self) -> &Path {
        &self.storage
    }

    /// Everything the daemon wrote to stderr, over all its boots.
    pub fn log(&self) -> String {
        (0..self.boots)
            .map(|n| format!("=== boot {n} ===\n{}", read_log(self.dir.path(), n)))
            .collect()
    }

    /// A client of the admin API.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.socket)
    }

    /// Any request to ingest.
    pub async fn ingest(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<bytes::Bytes>,
    ) -> Answer {
        http::request(self.ingest, method, path, headers, body).await
    }

    /// `POST {path}` with `Content-Type: application/json` and these exact bytes.
    pub async fn post_raw(&self, path: &str, body: impl Into<bytes::Bytes>) -> Answer {
        self.ingest(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// `POST /v1/events` with `event` as the body: status and JSON answer.
    pub async fn post_event(&self, event: &serde_json::Value) -> (StatusCode, serde_json::Value) {
        let answer = self.post_raw("/v1/events", event.to_string()).await;
        (answer.status, answer.json())
    }

    /// Posts an event that must be accepted (202); returns its id.
    pub async fn post_new(&self, event: &serde_json::Value) -> String {
        let (status, body) = self.post_event(event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "posting {event}: {body}");
        body["id"]
            .as_str()
            .expect("the answer has an id")
            .to_string()
    }

    /// `POST /v1/events/batch` with `events` as the body.
    pub async fn post_batch(&self, events: &serde_json::Value) -> (StatusCode, serde_json::Value) {
        let answer = self.post_raw("/v1/events/batch", events.to_string()).await;
        (answer.status, answer.json())
    }

    /// Creates a subscription through the admin API (the answer carries the secret).
    pub async fn add_sub(&self, create: api::SubscriptionCreate) -> api::Subscription {
        self.admin()
            .send_json(Method::POST, "/v1/subscriptions", &create)
            .await
            .unwrap_or_else(|e| panic!("creating subscription {create:?}: {e}"))
    }

    /// A subscription as the admin API shows it.
    pub async fn subscription(&self, id: &str) -> api::Subscription {
        self.get(&format!("/v1/subscriptions/{id}")).await
    }

    /// `POST /v1/subscriptions/{id}/{action}` (pause, resume, rotate-secret).
    pub async fn sub_action(&self, id: &str, action: &str) -> api::Subscription {
        self.admin()
            .post_empty(&format!("/v1/subscriptions/{id}/{action}"))
            .await
            .unwrap_or_else(|e| panic!("{action} {id}: {e}"))
    }

    /// An event with its data and deliveries.
    pub async fn event(&self, id: &str) -> api::Event {
        self.get(&format!("/v1/events/{id}")).await
    }

    /// Every stored event (up to 10000), newest first.
    pub async fn events(&self) -> Vec<api::Event> {
        let list: api::List<api::Event> = self.get("/v1/events?limit=10000").await;
        list.items
    }

    /// A gauge from `/metrics`.
    pub async fn gauge(&self, name: &str) -> u64 {
        let metrics = self.ingest(Method::GET, "/metrics", &[], "").await.text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    }

    /// Waits until the gauge `name` reads `want`.
    pub async fn wait_for_gauge(&self, name: &str, want: u64) {
        let what = format!("{name} at {want}");
        super::wait_until(&what, super::SOON, || async {
            match self.gauge(name).await {
                got if got == want => Ok(()),
                got => Err(format!("{got}")),
            }
        })
        .await;
    }

    /// A delivery with its attempt log.
    pub async fn delivery(&self, id: &str) -> api::Delivery {
        self.get(&format!("/v1/deliveries/{id}")).await
    }

    /// Deliveries, optionally of one subscription and in one status.
    pub async fn deliveries(&self, sub: Option<&str>, status: Option<&str>) -> Vec<api::Delivery> {
        let path = with_query(
            "/v1/deliveries",
            &[("sub", sub), ("status", status), ("limit", Some("10000"))],
        );
        let list: api::List<api::Delivery> = self.get(&path).await;
        list.items
    }

    /// Waits until delivery `id` has `status` (polling the admin API, see
    /// [`wait_until`](super::wait_until)).
    pub async fn wait_delivery_status(&self, id: &str, status: &str) -> api::Delivery {
        let what = format!("delivery {id} to be {status}");
        super::wait_until(&what, super::SOON, async || {
            let d = self.delivery(id).await;
            if d.status == status {
                Ok(d)
            } else {
                Err(format!("{d:?}"))
            }
        })
        .await
    }

    /// Waits until the first delivery of event `event_id` has `status`.
    pub async fn wait_event_delivery(&self, event_id: &str, status: &str) -> api::Delivery {
        let event = self.event(event_id).await;
        let first = event
            .deliveries
            .first()
            .unwrap_or_else(|| panic!("event {event_id} has no deliveries"));
        self.wait_delivery_status(&first.id, status).await
    }

    /// `GET` an admin path and decode it.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.admin()
            .get_json(path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Runs `hookd --socket <this daemon's socket> ARGS...`.
    pub async fn cli(&self, args: &[&str]) -> Output {
        cli_at(&self.socket, args).await
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert!(
            out.status.success(),
            "hookd {args:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("CLI output is UTF-8")
    }

    /// Kills the daemon with SIGKILL and reaps it: no shutdown, no flush.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("the daemon is running");
        child.start_kill().expect("SIGKILL is delivered");
        let _ = child.wait().await;
    }

    /// Sends SIGTERM and waits (up to 30 s) for the daemon to exit.
    pub async fn sigterm(&mut self) -> ExitStatus {
        self.stop_with(rustix::process::Signal::TERM).await
    }

    /// Sends `signal` and waits (up to 30 s) for the daemon to exit.
    pub async fn stop_with(&mut self, signal: rustix::process::Signal) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        let pid = child.id().expect("the daemon has a pid");
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("a valid pid");
        rustix::process::kill_process(pid, signal).expect("the signal is delivered");
        match tokio::time::timeout(START_DEADLINE, child.wait()).await {
            Ok(status) => status.expect("waiting for the daemon"),
            Err(_) => {
                let _ = child.start_kill();
                panic!(
                    "hookd did not exit within {START_DEADLINE:?} of {signal:?}; log:\n{}",
                    self.log()
                )
            }
        }
    }

    /// Starts a new process on the same config and store (after `kill9` or
    /// `sigterm`) and waits for it to be ready.
    pub async fn restart(&mut self) {
        self.boot().await;
    }
}

/// Runs `hookd --socket SOCKET ARGS...` (up to 30 s).
pub async fn cli_at(socket: &Path, args: &[&str]) -> Output {
    let run = Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("HOOKD_SOCKET")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(START_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("hookd {args:?} did not finish within {START_DEADLINE:?}"))
        .expect("running the hookd CLI")
}

fn log_path(dir: &Path, boot: u32) -> PathBuf {
    dir.join(format!("hookd-{boot}.log"))
}

fn read_log(dir: &Path, boot: u32) -> String {
    std::fs::read_to_string(log_path(dir, boot)).unwrap_or_else(|e| format!("(no log: {e})\n"))
}

/// Spawns `hookd serve --config CONFIG` with a fresh notify socket and waits
/// for `READY=1` (with `HOOKD_INGEST=`), its exit, or the deadline.
async fn launch(dir: &Path, config: &Path, boot: u32) -> Result<(Child, SocketAddr), BootFailure> {
    let (mut child, notify) = spawn(dir, config, boot);
    let outcome = tokio::select! {
        ready = read_ready(&notify) => ready.map_err(BootFailure::NotReady),
        status = child.wait() => Err(BootFailure::Exited(status.expect("waiting for hookd"))),
        _ = tokio::time::sleep(START_DEADLINE) => {
            Err(BootFailure::NotReady(format!("no READY=1 within {START_DEADLINE:?}")))
        }
    };
    match outcome {
        Ok(addr) => Ok((child, addr)),
        Err(failure) => {
            let _ = child.start_kill();
            Err(failure)
        }
    }
}

/// Spawns `hookd serve --config CONFIG`, logging to the boot's log file,
/// with `NOTIFY_SOCKET` pointing at a fresh datagram socket.
fn spawn(dir: &Path, config: &Path, boot: u32) -> (Child, UnixDatagram) {
    let notify_path = dir.join(format!("notify-{boot}.sock"));
    let notify = UnixDatagram::bind(&notify_path).expect("binding the notify socket");
    let log = std::fs::File::create(log_path(dir, boot)).expect("creating the log file");
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("RUST_LOG")
        .env_remove("HOOKD_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a second handle on the log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawning hookd");
    (child, notify)
}

/// Reads notifications until `READY=1`; returns the `HOOKD_INGEST=` address.
async fn read_ready(notify: &UnixDatagram) -> Result<SocketAddr, String> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = notify
            .recv(&mut buf)
            .await
            .map_err(|e| format!("reading the notify socket: {e}"))?;
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !message.lines().any(|l| l == "READY=1") {
            continue;
        }
        let addr = message
            .lines()
            .find_map(|l| l.strip_prefix("HOOKD_INGEST="))
            .ok_or_else(|| format!("READY=1 without HOOKD_INGEST: {message:?}"))?;
        return addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("HOOKD_INGEST={addr:?} is not an address: {e}"));
    }
}

/// Boots that are cut short or expected to fail, on the same config and store.
impl Daemon {
    /// Starts a new process and kills it with SIGKILL `after` its spawn,
    /// whether or not it is ready by then: a crash during startup and
    /// recovery. Returns whether it had sent `READY=1` before the kill.
    /// Fails the test if the process exits on its own first.
    pub async fn kill9_during_start(&mut self, after: Duration) -> bool {
        assert!(self.child.is_none(), "the daemon is already running");
        let boot = self.boots;
        self.boots += 1;
        let (mut child, notify) = spawn(self.dir.path(), &self.config_path, boot);
        let deadline = tokio::time::sleep(after);
        tokio::pin!(deadline);
        let (mut ready, mut listening) = (false, true);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                heard = read_ready(&notify), if listening => {
                    ready = heard.is_ok();
                    listening = false;
                }
                status = child.wait() => panic!(
                    "hookd exited with {status:?} before the kill {after:?} into boot {boot}; log:\n{}",
                    self.log()
                ),
            }
        }
        child.start_kill().expect("SIGKILL is delivered");
        let _ = child.wait().await;
        ready
    }

    /// Starts a new process that must refuse to start (after `kill9` or
    /// `sigterm`): returns its exit status and log once it exits.
    pub async fn restart_expecting_failure(&mut self) -> Refused {
        assert!(self.child.is_none(), "the daemon is already running");
        let boot = self.boots;
        self.boots += 1;
        match launch(self.dir.path(), &self.config_path, boot).await {
            Ok((mut child, addr)) => {
                let _ = child.start_kill();
                panic!(
                    "hookd became ready on {addr} but should have refused to start; log:\n{}",
                    read_log(self.dir.path(), boot)
                )
            }
            Err(BootFailure::Exited(status)) => Refused {
                status,
                stderr: read_log(self.dir.path(), boot),
                _dir: None,
            },
            Err(BootFailure::NotReady(why)) => panic!(
                "hookd did not refuse to start: {why}; log:\n{}",
                read_log(self.dir.path(), boot)
            ),
        }
    }

    /// Waits for the running daemon to exit on its own (up to `deadline`).
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        match tokio::time::timeout(deadline, child.wait()).await {
            Ok(status) => status.expect("waiting for the daemon"),
            Err(_) => {
                let _ = child.start_kill();
                panic!(
                    "hookd did not exit within {deadline:?}; log:\n{}",
                    self.log()
                )
            }
        }
    }
}
