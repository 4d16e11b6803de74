//! The crate's error type: each variant says what failed and where.

use std::path::PathBuf;

/// Everything that can stop hookd or fail an operation, with its context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error("config key {key}: {reason}")]
    ConfigValue { key: String, reason: String },

    #[error("store at {path}: {reason}")]
    StoreOpen { path: PathBuf, reason: String },

    #[error("store: {0}")]
    Store(#[from] sled::Error),

    #[error("store: record {what} could not be decoded: {source}")]
    Decode {
        what: String,
        #[source]
        source: bincode::Error,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the store failed to flush: {0}")]
    Flush(String),

    /// A write shared by several callers failed; each gets its reason.
    #[error("the store could not take the write: {0}")]
    Write(String),

    #[error("backup to {path}: {reason}")]
    Backup { path: PathBuf, reason: String },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An IO error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
