//! systemd's notify protocol: `READY=1` once serving, `EXTEND_TIMEOUT_USEC`
//! while a slow store open runs, and watchdog pings that each follow a real
//! flush round-trip, so a daemon whose store or runtime is wedged stops
//! pinging and is restarted.

use crate::store::Store;
use std::future::Future;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where notifications go: systemd's `$NOTIFY_SOCKET`, a test's socket, or nowhere.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<Target>,
    /// How often `EXTEND_TIMEOUT_USEC` is sent while the store opens.
    extend_every: Duration,
    /// The watchdog timeout systemd enforces (`WatchdogSec=`), if any.
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    /// `@name`: Linux's abstract socket namespace.
    Abstract(Vec<u8>),
}

/// Each extension asks for this much more time; sent every [`EXTEND_EVERY`].
const EXTEND_BY: Duration = Duration::from_secs(30);
const EXTEND_EVERY: Duration = Duration::from_secs(5);

impl Notifier {
    /// The socket systemd names in `$NOTIFY_SOCKET`, if any, and the
    /// watchdog it asks for in `$WATCHDOG_USEC`.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec();
            match bytes.first() {
                None => None,
                Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
                Some(_) => Some(Target::Path(PathBuf::from(v))),
            }
        });
        Notifier {
            socket,
            extend_every: EXTEND_EVERY,
            watchdog: watchdog_timeout(),
        }
    }

    /// Notifications to a datagram socket at `path` (tests), extensions every `extend_every`.
    pub fn to_socket(path: impl Into<PathBuf>, extend_every: Duration) -> Notifier {
        Notifier {
            socket: Some(Target::Path(path.into())),
            extend_every,
            watchdog: None,
        }
    }

    /// The same, expecting watchdog pings before each `timeout` runs out.
    pub fn with_watchdog(mut self, timeout: Duration) -> Notifier {
        self.watchdog = Some(timeout);
        self
    }

    /// The watchdog timeout to ping within, if one is enforced.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.socket.is_some())
    }

    /// Sends one message of `KEY=value` lines; failures are logged, never fatal.
    pub fn send(&self, lines: &[&str]) {
        let Some(target) = &self.socket else { return };
        let mut message = lines.join("\n");
        message.push('\n');
        if let Err(e) = send_datagram(target, message.as_bytes()) {
            tracing::debug!(error = %e, "systemd notification not sent");
        }
    }

    /// Runs `opening` (the store open); while it takes longer than a few
    /// seconds, asks systemd each time for more start-up time, so a long
    /// recovery is not killed by `TimeoutStartSec`.
    pub async fn extend_start_while<F: Future>(&self, opening: F) -> F::Output {
        tokio::pin!(opening);
        if self.socket.is_none() {
            return opening.await;
        }
        let mut tick = tokio::time::interval(self.extend_every);
        tick.tick().await;
        let mut extended = false;
        loop {
            tokio::select! {
                out = &mut opening => return out,
                _ = tick.tick() => {
                    if !extended {
                        tracing::info!("the store is taking long to open (recovery); asking systemd for more time");
                        extended = true;
                    }
                    let usec = format!("EXTEND_TIMEOUT_USEC={}", EXTEND_BY.as_micros());
                    self.send(&[&usec, "STATUS=opening the store"]);
                }
            }
        }
    }
}

fn send_datagram(target: &Target, message: &[u8]) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match target {
        Target::Path(path) => socket.send_to(message, path)?,
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &addr)?
        }
    };
    Ok(())
}

/// The watchdog timeout systemd set (`WatchdogSec=`), read from the environment.
fn watchdog_timeout() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// `WATCHDOG_USEC` applies to us when `WATCHDOG_PID` is unset or names us
/// (libsystemd's `sd_watchdog_enabled` rule).
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == me => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

/// Pings the watchdog every half `timeout`, each time only after a flush
/// round-trip through the store's group-commit flusher succeeded within that
/// half: a wedged flusher, a stuck disk or a starved runtime stops the pings.
pub async fn watchdog(notifier: Notifier, store: Arc<Store>, timeout: Duration) {
    let every = timeout / 2;
    let mut failing = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(every, store.flusher().durable()).await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("watchdog: flush round-trips work again");
                    failing = false;
                }
                notifier.send(&["WATCHDOG=1"]);
            }
            Ok(Err(e)) if !failing => {
                tracing::error!(error = %e, "watchdog: flush failed; not pinging");
                failing = true;
            }
            Err(_) if !failing => {
                tracing::error!(
                    waited_ms = every.as_millis() as u64,
                    "watchdog: a flush round-trip did not finish in time; not pinging"
                );
                failing = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_env_follows_libsystemd() {
        let s = Some(Duration::from_millis(200));
        assert_eq!(parse_watchdog(Some("200000"), None, 7), s);
        assert_eq!(parse_watchdog(Some("200000"), Some("7"), 7), s);
        assert_eq!(parse_watchdog(Some("200000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("200000"), Some("x"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }

    #[tokio::test]
    async fn a_slow_open_asks_for_more_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let notifier = Notifier::to_socket(&path, Duration::from_millis(20));
        let out = notifier
            .extend_start_while(async {
                tokio::time::sleep(Duration::from_millis(110)).await;
                42
            })
            .await;
        assert_eq!(out, 42);
        let mut buf = [0u8; 256];
        let mut extensions = 0;
        while let Ok(n) = socket.recv(&mut buf) {
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(text.starts_with("EXTEND_TIMEOUT_USEC=30000000\n"), "{text}");
            extensions += 1;
        }
        assert!(extensions >= 2, "{extensions} extensions");

        // A quick open sends nothing.
        notifier.extend_start_while(async {}).await;
        assert!(socket.recv(&mut buf).is_err());
    }
}
