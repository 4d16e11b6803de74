//! The one error type of the admin client.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::StatusCode;

/// Everything that can go wrong while talking to the daemon's admin API.
///
/// `Display` is written for people and meant to be printed as `error: {e}`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The admin socket could not be connected (missing, refused, permission denied, ...).
    #[error("{}", connect_message(socket, source))]
    Connect {
        /// The socket path that was tried.
        socket: PathBuf,
        /// What `connect(2)` said.
        #[source]
        source: io::Error,
    },

    /// The daemon did not answer in time.
    #[error("hookd at {} did not answer within {}", socket.display(), humantime::format_duration(*after))]
    Timeout {
        /// The socket path that was used.
        socket: PathBuf,
        /// How long the client waited.
        after: Duration,
    },

    /// The HTTP exchange over the socket failed (connection closed, malformed answer, ...).
    #[error("talking to hookd at {}: {source}", socket.display())]
    Http {
        /// The socket path that was used.
        socket: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The API refused the request with its error body `{"error":{"code","message"}}`.
    #[error("{message}")]
    Api {
        /// HTTP status of the answer.
        status: StatusCode,
        /// Machine-readable error code, e.g. `not_found`.
        code: String,
        /// Human-readable message.
        message: String,
    },

    /// The API answered with an error status but without the usual error body.
    #[error("hookd answered {status}{}", excerpt_suffix(body))]
    UnexpectedStatus {
        /// HTTP status of the answer.
        status: StatusCode,
        /// The start of the body, lossily decoded.
        body: String,
    },

    /// A successful answer could not be decoded into the expected shape.
    #[error(
        "could not decode the answer to {request}: {source} (try --json to see it as received)"
    )]
    Decode {
        /// Method and path of the request, e.g. `GET /v1/status`.
        request: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },

    /// The request could not be built (e.g. a path that is not a valid URI).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[source] io::Error),
}

impl CliError {
    /// Suggested process exit code.
    ///
    /// `1`: the daemon refused the request or answered something unexpected;
    /// `3`: the daemon could not be reached (no socket, refused, timeout, broken connection).
    /// (`2` stays with clap for usage errors.)
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Connect { .. } | CliError::Timeout { .. } | CliError::Http { .. } => 3,
            _ => 1,
        }
    }

    /// The API's error code, when the API answered with an error body.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            CliError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the API answered with an error status.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CliError::Api { status, .. } | CliError::UnexpectedStatus { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

const HINT: &str = "pass --socket PATH or set HOOKD_SOCKET if the daemon listens elsewhere";

fn connect_message(socket: &Path, err: &io::Error) -> String {
    let path = socket.display();
    match err.kind() {
        io::ErrorKind::NotFound => format!(
            "cannot connect to hookd: no admin socket at {path}; is the daemon running? ({HINT})"
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "cannot connect to hookd: nothing is listening on {path} (stale socket?); \
             is the daemon running? ({HINT})"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot connect to hookd: permission denied on {path}; run as a user allowed to \
             use the admin socket ({HINT})"
        ),
        _ => format!("cannot connect to hookd at {path}: {err}; is the daemon running? ({HINT})"),
    }
}

fn excerpt_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::cli::output::one_line(body, 200))
    }
}
