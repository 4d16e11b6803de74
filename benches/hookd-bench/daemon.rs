//! Running the real `hookd serve`: a private work directory with its config,
//! start until the sd_notify READY datagram, /proc figures, SIGTERM stop.

use crate::Res;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a SIGTERM may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A temporary directory holding one daemon's config, store, sockets and log.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A fresh directory with `hookd.toml` written for loopback benchmarking.
    pub fn new() -> Res<Workspace> {
        let dir = tempfile::Builder::new().prefix("hookd-bench-").tempdir()?;
        let ws = Workspace { dir };
        let config = format!(
            r#"# Written by hookd-bench.
[ingest]
listen = "127.0.0.1:0"

[admin]
socket = "{admin}"

[storage]
path = "{store}"

[delivery]
timeout = "5s"
retry_schedule = ["1s", "2s", "5s", "10s"]
allow_networks = ["127.0.0.0/8"]
max_in_flight = 64
shutdown_grace = "5s"

[log]
level = "info"
"#,
            admin = ws.admin_socket().display(),
            store = ws.store_dir().display(),
        );
        fs::write(ws.config(), config)?;
        Ok(ws)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("hookd.toml")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.path().join("admin.sock")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.path().join("store")
    }

    fn notify_socket(&self) -> PathBuf {
        self.path().join("notify.sock")
    }

    fn log(&self) -> PathBuf {
        self.path().join("hookd.log")
    }

    /// The last lines of the daemon's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// The daemon's warnings, errors and signal notices, at most `max` of them.
    pub fn log_problems(&self, max: usize) -> Vec<String> {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| {
                l.contains(" WARN ")
                    || l.contains(" ERROR ")
                    || l.contains("SIGTERM")
                    || l.contains("SIGINT")
            })
            .map(|l| l.chars().take(300).collect())
            .collect();
        let skipped = lines.len().saturating_sub(max);
        lines.truncate(max);
        if skipped > 0 {
            lines.push(format!("... and {skipped} more"));
        }
        lines
    }
}

/// A running `hookd serve`; killed if dropped without [`Daemon::stop`].
pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    pub ingest: SocketAddr,
    /// Spawn to READY.
    pub start_time: Duration,
}

impl Daemon {
    /// Starts `bin serve --config` in `ws` and waits for READY.
    pub fn start(bin: &Path, ws: &Workspace) -> Res<Daemon> {
        let notify = ws.notify_socket();
        let _ = fs::remove_file(&notify);
        let sock = UnixDatagram::bind(&notify)?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let log = File::options().create(true).append(true).open(ws.log())?;
        let started = Instant::now();
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(ws.config())
            .env("NOTIFY_SOCKET", &notify)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut daemon = Daemon {
            pid: child.id(),
            child: Some(child),
            ingest: SocketAddr::from(([127, 0, 0, 1], 0)),
            start_time: Duration::ZERO,
        };
        let mut buf = [0u8; 4096];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]);
                    if !msg.lines().any(|l| l == "READY=1") {
                        continue;
                    }
                    daemon.start_time = started.elapsed();
                    let addr = msg
                        .lines()
                        .find_map(|l| l.strip_prefix("HOOKD_INGEST="))
                        .ok_or_else(|| format!("READY without HOOKD_INGEST: {msg:?}"))?;
                    daemon.ingest = addr.parse()?;
                    return Ok(daemon);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
            let child = daemon.child.as_mut().expect("running");
            if let Some(status) = child.try_wait()? {
                daemon.child = None;
                return Err(format!(
                    "hookd exited ({status}) before it was ready; its log:\n{}",
                    ws.log_tail()
                )
                .into());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!("hookd not ready after {READY_TIMEOUT:?}").into());
            }
        }
    }

    /// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
    pub fn status_bytes(&self, field: &str) -> u64 {
        proc_status_bytes(self.pid, field)
    }

    /// Peak resident memory so far, bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM")
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits for the exit; returns how long that took.
    /// On an error the process is killed when `self` drops.
    pub fn stop(mut self) -> Res<Duration> {
        if let Some(status) = self.exited() {
            return Err(
                format!("hookd had already exited ({status}) before it was stopped").into(),
            );
        }
        let started = Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()?;
        if !status.success() {
            return Err(format!("kill -TERM {} failed", self.pid).into());
        }
        let exited = loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait()? {
                break status;
            }
            if started.elapsed() > STOP_TIMEOUT {
                return Err(format!("hookd still running {STOP_TIMEOUT:?} after SIGTERM").into());
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = started.elapsed();
        self.child = None;
        if !exited.success() {
            return Err(format!("hookd exited with {exited} after SIGTERM").into());
        }
        Ok(took)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `kB` field of /proc/PID/status, in bytes (0 if unreadable).
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU time of a process (0 if unreadable).
pub fn proc_cpu(pid: u32) -> Duration {
    stat_cpu(&fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// User + system time of a /proc/.../stat line.
fn stat_cpu(text: &str) -> Duration {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let total = ticks(11) + ticks(12);
    Duration::from_secs_f64(total as f64 / clock_ticks() as f64)
}

/// CPU time per thread name of a process (tokio workers, sled threads, ...);
/// numbered pools (`sled-io-0`, `sled-io-1`, ...) count as one name.
pub fn thread_cpu(pid: u32) -> BTreeMap<String, Duration> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let name = text
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-')
            .to_string();
        *by_name.entry(name).or_default() += stat_cpu(&text);
    }
    by_name
}

/// CPU time busy on all cores, from /proc/stat (user..steal, guests excluded).
pub fn system_busy() -> Duration {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        // user nice system idle iowait irq softirq steal: skip idle and iowait.
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Bytes allocated on disk under `path` (like `du -s`), and their apparent size.
pub fn disk_usage(path: &Path) -> (u64, u64) {
    let (mut allocated, mut apparent) = (0, 0);
    let Ok(entries) = fs::read_dir(path) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path());
            allocated += a;
            apparent += b;
        } else {
            allocated += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    (allocated, apparent)
}
