//! The log subscriber: `tracing` to stderr in key=value lines, the level
//! from `log.level` unless `RUST_LOG` is set, and changeable at run time
//! (SIGHUP) through [`LogControl`].
//!
//! Under systemd (`JOURNAL_STREAM` set) lines carry no timestamp: the
//! journal stamps each line itself.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// Changes the level of the installed subscriber.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it wins over the config, now and on reload.
    from_env: bool,
}

impl LogControl {
    /// Applies a new `log.level`; a no-op (said in the answer) when `RUST_LOG` rules.
    pub fn set_level(&self, level: &str) -> Result<LevelChange, String> {
        if self.from_env {
            return Ok(LevelChange::KeptEnv);
        }
        let filter = EnvFilter::try_new(level)
            .map_err(|e| format!("key log.level: {level:?} is not a tracing filter: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("the log level could not be changed: {e}"))?;
        Ok(LevelChange::Applied)
    }
}

/// What [`LogControl::set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    Applied,
    /// `RUST_LOG` is set and keeps deciding the level.
    KeptEnv,
}

/// Installs the global subscriber with `level` (a filter such as `info` or
/// `hookd=debug,hyper=warn`); `RUST_LOG` overrides it. An invalid level
/// falls back to `info`, said in the first line.
pub fn init(level: &str) -> LogControl {
    let from_env = std::env::var_os(EnvFilter::DEFAULT_ENV).is_some_and(|v| !v.is_empty());
    let mut complaint = None;
    let filter = if from_env {
        EnvFilter::try_from_default_env().unwrap_or_else(|e| {
            complaint = Some(format!("RUST_LOG is not a valid filter ({e}); using info"));
            EnvFilter::new("info")
        })
    } else {
        EnvFilter::try_new(level).unwrap_or_else(|e| {
            complaint = Some(format!(
                "log.level {level:?} is not valid ({e}); using info"
            ));
            EnvFilter::new("info")
        })
    };
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let stamped = (!journald).then(|| fmt::layer().with_writer(std::io::stderr).with_ansi(false));
    let unstamped = journald.then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .without_time()
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stamped)
        .with(unstamped)
        .try_init();
    if let Some(complaint) = complaint {
        tracing::warn!("{complaint}");
    }
    LogControl { handle, from_env }
}
