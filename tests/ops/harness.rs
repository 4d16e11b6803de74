//! A real `hookd serve` in a temp dir: config on port 0, admin socket and
//! store in the dir, a notify socket the test holds (its `READY=1` is the
//! ready signal), stderr collected for assertions. Plain std IO, loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a daemon may take to become ready or a log line to appear.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Lines added under each section of the generated config, and the environment.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub ingest: String,
    pub storage: String,
    pub delivery: String,
    pub log: String,
    /// A store elsewhere than `<dir>/store` (e.g. a backup to restore).
    pub store: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// The same setup with one more environment variable for the daemon.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Setup {
        self.env.push((key.to_string(), value.into()));
        self
    }
}

/// A running daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub admin: PathBuf,
    pub ingest: SocketAddr,
    child: Child,
    notify: UnixDatagram,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Daemon {
    /// Starts a daemon with `setup` and waits for its `READY=1`.
    pub fn start(setup: Setup) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        Daemon::start_in(dir, setup)
    }

    /// Starts a daemon in an existing dir (its config is written anew).
    pub fn start_in(dir: tempfile::TempDir, setup: Setup) -> Daemon {
        let config = dir.path().join("hookd.toml");
        let admin = dir.path().join("admin.sock");
        write_config(dir.path(), &setup);
        let notify_path = dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookd"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in [
            "RUST_LOG",
            "JOURNAL_STREAM",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "CREDENTIALS_DIRECTORY",
            "HOOKD_SOCKET",
        ] {
            command.env_remove(var);
        }
        command.env("NOTIFY_SOCKET", &notify_path);
        for (k, v) in &setup.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn hookd");
        let log = collect_lines(child.stderr.take().expect("stderr is piped"));
        let mut daemon = Daemon {
            dir,
            config,
            admin,
            ingest: "127.0.0.1:0".parse().unwrap(),
            child,
            notify,
            log,
        };
        daemon.ingest = daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) -> SocketAddr {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("hookd exited ({status}) before ready:\n{}", self.log());
            }
            let Some(message) = self.recv_notify(Duration::from_millis(200)) else {
                continue;
            };
            if message.lines().any(|l| l == "READY=1") {
                let addr = message
                    .lines()
                    .find_map(|l| l.strip_prefix("HOOKD_INGEST="))
                    .expect("READY=1 carries HOOKD_INGEST");
                return addr.parse().expect("HOOKD_INGEST is an address");
            }
        }
        panic!("hookd not ready within {PATIENCE:?}:\n{}", self.log());
    }

    /// The next notification, if one arrives within `wait`.
    pub fn recv_notify(&self, wait: Duration) -> Option<String> {
        self.notify.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = self.notify.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Rewrites the config file (for a reload).
    pub fn rewrite_config(&self, setup: &Setup) {
        write_config(self.dir.path(), setup);
    }

    /// Writes raw text as the config file.
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    /// Waits until a log line after the first `skip` lines contains every
    /// one of `needles`; returns its index.
    pub fn wait_log(&self, skip: usize, needles: &[&str]) -> usize {
        let (lines, changed) = &*self.log;
        let deadline = Instant::now() + PATIENCE;
        let mut lines = lines.lock().unwrap();
        loop {
            if let Some(i) =
                (skip..lines.len()).find(|&i| needles.iter().all(|n| lines[i].contains(n)))
            {
                return i;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no log line with {needles:?} within {PATIENCE:?}:\n{}",
                lines.join("\n")
            );
            lines = changed.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// How many lines the daemon has logged.
    pub fn log_len(&self) -> usize {
        self.log.0.lock().unwrap().len()
    }

    /// `POST /v1/events` with an optional bearer token.
    pub fn post_event(&self, token: Option<&str>, body: &str) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let stream = TcpStream::connect(self.ingest).expect("connect to ingest");
        exchange(stream, "POST", "/v1/events", &headers, body.as_bytes())
    }

    /// `GET` on the ingest listener.
    pub fn get(&self, path: &str) -> Answer {
        let stream = TcpStream::connect(self.ingest).expect("connect to ingest");
        exchange(stream, "GET", path, &[], b"")
    }

    /// A request to the admin API on its Unix socket.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        let stream = UnixStream::connect(&self.admin).expect("connect to the admin socket");
        let headers = [("content-type", "application/json")];
        exchange(
            stream,
            method,
            path,
            &headers,
            body.unwrap_or("").as_bytes(),
        )
    }

    /// Runs the CLI against this daemon's admin socket.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_hookd"))
            .arg("--socket")
            .arg(&self.admin)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run the CLI")
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hookd did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, setup: &Setup) {
    let store = setup.store.clone().unwrap_or_else(|| dir.join("store"));
    let text = format!(
        "[ingest]\nlisten = \"127.0.0.1:0\"\n{}\n\
         [admin]\nsocket = {:?}\n\
         [storage]\npath = {:?}\n{}\n\
         [delivery]\n{}\n\
         [log]\n{}\n",
        setup.ingest,
        dir.join("admin.sock"),
        store,
        setup.storage,
        setup.delivery,
        setup.log,
    );
    std::fs::write(dir.join("hookd.toml"), text).unwrap();
}

fn collect_lines(stderr: impl Read + Send + 'static) -> Arc<(Mutex<Vec<String>>, Condvar)> {
    let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.0.lock().unwrap().push(line);
            sink.1.notify_all();
        }
    });
    log
}

/// One HTTP/1.1 request with `connection: close`, read to the end.
pub fn exchange(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: hookd\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// A receiver on loopback that answers every request with 200 and counts them.
pub struct Receiver {
    pub addr: SocketAddr,
    pub count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    /// Starts accepting on 127.0.0.1, port 0.
    pub fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let seen = seen.clone();
                std::thread::spawn(move || answer_ok(stream, &seen));
            }
        });
        Receiver { addr, count }
    }

    /// The URL deliveries go to.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

fn answer_ok(stream: TcpStream, seen: &std::sync::atomic::AtomicUsize) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut saw_request = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                if saw_request {
                    break;
                }
                continue;
            }
            saw_request = true;
            if let Some((k, v)) = trimmed.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stream = reader.get_mut();
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// Waits until `done` holds, checking every few milliseconds, for at most [`PATIENCE`].
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
