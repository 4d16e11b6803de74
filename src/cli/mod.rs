//! The admin command line: `hookd status`, `hookd sub ...`, `hookd event ...`,
//! `hookd delivery ...`, `hookd replay ...`, `hookd backup ...`. It talks to the daemon's admin
//! API (HTTP/1.1 + JSON on a Unix socket) through [`AdminClient`].
//!
//! `main.rs` flattens [`AdminCommand`] into its own subcommands, flattens
//! [`GlobalArgs`] for `--socket`/`--json`, and calls [`run`] (or
//! [`run_and_report`]).

pub mod client;
mod error;
mod output;
mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hyper::Method;

use crate::api::{BackupRequest, ReplayRequest, SubscriptionCreate, SubscriptionUpdate};

pub use client::AdminClient;
pub use error::CliError;

/// Where the admin socket is when neither `--socket` nor `HOOKD_SOCKET` says:
/// `./hookd.sock` if it exists (a daemon run from this directory), else
/// `/run/hookd/admin.sock`.
pub fn default_socket() -> PathBuf {
    let local = Path::new("./hookd.sock");
    if local.exists() {
        local.to_path_buf()
    } else {
        PathBuf::from("/run/hookd/admin.sock")
    }
}

/// Environment variable naming the admin socket when `--socket` is not given.
pub const SOCKET_ENV: &str = "HOOKD_SOCKET";

/// Options of every admin command. Flatten into the top-level parser with
/// `#[command(flatten)]`; both are global, so they may come before or after
/// the subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Admin socket of the daemon; HOOKD_SOCKET also sets it [default: ./hookd.sock if it exists, else /run/hookd/admin.sock]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub socket: Option<PathBuf>,

    /// Print the API's JSON answer (pretty-printed) instead of tables
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

impl GlobalArgs {
    /// The socket to use: `--socket`, else `HOOKD_SOCKET` (when set and not
    /// empty), else [`default_socket`].
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .or_else(|| {
                std::env::var_os(SOCKET_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(default_socket)
    }
}

/// The admin commands, talking to a running daemon.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Show the daemon's state: ingest, store, subscriptions, delivery counters
    Status,

    /// Create, inspect, change and delete subscriptions
    #[command(subcommand)]
    Sub(SubCommand),

    /// Inspect received events and queue them again
    #[command(subcommand)]
    Event(EventCommand),

    /// Inspect deliveries and their attempt logs
    #[command(subcommand)]
    Delivery(DeliveryCommand),

    /// Queue a subscription's past events for delivery again
    ///
    /// Creates new deliveries for the events received since a point in time,
    /// optionally only those whose delivery to this subscription has a given
    /// status (typically `dead`, after fixing the receiving end).
    Replay(ReplayArgs),

    /// Copy the live store to a new directory while hookd keeps running
    ///
    /// The daemon writes the copy, so DEST must be writable by its user (under
    /// the systemd unit: inside /var/lib/hookd-backup). Every event accepted
    /// before the backup starts is in it. To restore: stop hookd, move DEST to
    /// storage.path, start hookd.
    Backup(BackupArgs),
}

/// `hookd backup`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// A directory that does not exist yet (relative paths are taken from here)
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

/// How long `hookd backup` waits for the daemon: a large store takes a while.
const BACKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// `hookd sub ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SubCommand {
    /// Create a subscription and print its signing secret (shown only this once)
    Add(SubAddArgs),

    /// List all subscriptions
    List,

    /// Show one subscription (the secret only with --show-secret)
    Get {
        /// Subscription id
        id: String,
        /// Also show the signing secret
        #[arg(long)]
        show_secret: bool,
    },

    /// Delete a subscription
    Rm {
        /// Subscription id
        id: String,
    },

    /// Stop delivering to a subscription until it is resumed
    Pause {
        /// Subscription id
        id: String,
    },

    /// Resume delivering to a paused subscription
    Resume {
        /// Subscription id
        id: String,
    },

    /// Replace the signing secret and print the new one (shown only this once)
    ///
    /// Older secrets keep signing for an overlap period so that receivers can
    /// switch over; `sub get` shows until when.
    RotateSecret {
        /// Subscription id
        id: String,
    },

    /// Change a subscription: each flag given replaces that whole field
    ///
    /// For example `--event a --event b` replaces the list of events with
    /// `a, b`; fields whose flag is not given stay as they are.
    Update(SubUpdateArgs),
}

/// `hookd sub add`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubAddArgs {
    /// Endpoint that receives the webhooks (http:// or https://)
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub url: String,

    /// Event type or pattern to deliver (e.g. order.created, order.*); repeat for several
    #[arg(long = "event", value_name = "PATTERN")]
    pub events: Vec<String>,

    /// Tenant the subscription belongs to
    #[arg(long, value_name = "T")]
    pub tenant: Option<String>,

    /// Signing secret, whsec_ followed by base64; generated when not given
    #[arg(long, value_name = "whsec_...", value_parser = parse_secret)]
    pub secret: Option<String>,

    /// Extra HTTP header sent with each delivery, 'Name: value'; repeat for several
    #[arg(long = "header", value_name = "'Name: value'", value_parser = parse_header)]
    pub headers: Vec<String>,

    /// Condition on the event, 'POINTER OP VALUE' (e.g. '/data/amount > 100'); repeat for several
    #[arg(long = "filter", value_name = "'POINTER OP VALUE'", value_parser = parse_filter)]
    pub filters: Vec<String>,

    /// Maximum delivery rate, N per second (N/s) or per minute (N/m)
    #[arg(long, value_name = "N/s|N/m", value_parser = parse_rate_limit)]
    pub rate_limit: Option<String>,

    /// Maximum number of attempts on the wire at once
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,

    /// Signatures to send: v1 (HMAC with the secret, the default), v1a
    /// (Ed25519: receivers verify with the public key `sub get` shows), or v1+v1a
    #[arg(long, value_name = "v1|v1a|v1+v1a", value_parser = ["v1", "v1a", "v1+v1a"])]
    pub signing: Option<String>,
}

/// `hookd sub update`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    override_usage = "hookd sub update <ID> [--url URL] [--event PATTERN]... \
[--header 'Name: value']... [--filter 'POINTER OP VALUE']... [--rate-limit N/s|N/m] \
[--max-in-flight N]"
)]
#[command(group(
    clap::ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args(["url", "events", "headers", "filters", "rate_limit", "max_in_flight"])
))]
pub struct SubUpdateArgs {
    /// Subscription id
    pub id: String,

    /// New endpoint (http:// or https://)
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub url: Option<String>,

    /// Event type or pattern; repeat for several; replaces the whole list
    #[arg(long = "event", value_name = "PATTERN")]
    pub events: Option<Vec<String>>,

    /// Extra HTTP header, 'Name: value'; repeat for several; replaces all headers
    #[arg(long = "header", value_name = "'Name: value'", value_parser = parse_header)]
    pub headers: Option<Vec<String>>,

    /// Condition, 'POINTER OP VALUE'; repeat for several; replaces all filters
    #[arg(long = "filter", value_name = "'POINTER OP VALUE'", value_parser = parse_filter)]
    pub filters: Option<Vec<String>>,

    /// New maximum delivery rate, N/s or N/m
    #[arg(long, value_name = "N/s|N/m", value_parser = parse_rate_limit)]
    pub rate_limit: Option<String>,

    /// New maximum number of attempts on the wire at once
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
}

/// `hookd event ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EventCommand {
    /// List received events
    List {
        /// Only events of this type
        #[arg(long = "type", value_name = "T")]
        event_type: Option<String>,
        /// Only events with a delivery in this status (pending, failed, delivered, dead)
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// At most this many events
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },

    /// Show an event: its deliveries and its data
    Get {
        /// Event id
        id: String,
    },

    /// Queue an event for delivery again
    Redeliver {
        /// Event id
        id: String,
    },
}

/// `hookd delivery ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeliveryCommand {
    /// List deliveries
    List {
        /// Only deliveries to this subscription
        #[arg(long = "sub", value_name = "ID")]
        sub: Option<String>,
        /// Only deliveries in this status
        #[arg(long, value_name = "S", value_parser = ["pending", "delivered", "failed", "dead"])]
        status: Option<String>,
        /// Only deliveries of events with this ordering key
        #[arg(long, value_name = "K")]
        key: Option<String>,
        /// At most this many deliveries
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },

    /// Show a delivery, its attempt log and the last response
    Get {
        /// Delivery id
        id: String,
    },
}

/// `hookd replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Subscription to deliver to
    #[arg(long = "sub", value_name = "ID")]
    pub sub: String,

    /// Events received since this long ago (30m, 2h, 1d) or since an RFC 3339 time
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
    pub since: String,

    /// Only events whose delivery to this subscription has this status (e.g. dead)
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
}

fn parse_url(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(s.to_string()),
        _ => Err("expected an http:// or https:// URL with a host".to_string()),
    }
}

fn parse_secret(s: &str) -> Result<String, String> {
    match s.strip_prefix("whsec_") {
        Some(rest) if !rest.is_empty() => Ok(s.to_string()),
        _ => Err("expected whsec_ followed by the base64 key".to_string()),
    }
}

fn parse_header(s: &str) -> Result<String, String> {
    let Some((name, _value)) = s.split_once(':') else {
        return Err("expected 'Name: value'".to_string());
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!(
            "invalid header name {name:?}; expected 'Name: value'"
        ));
    }
    Ok(s.to_string())
}

fn parse_filter(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("expected 'POINTER OP VALUE', e.g. '/data/amount > 100'".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn parse_rate_limit(s: &str) -> Result<String, String> {
    let ok = s
        .strip_suffix("/s")
        .or_else(|| s.strip_suffix("/m"))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 0);
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected N/s or N/m with N a positive whole number, e.g. 10/s".to_string())
    }
}

fn parse_since(s: &str) -> Result<String, String> {
    if humantime::parse_duration(s).is_ok() || output::parse_rfc3339(s).is_some() {
        Ok(s.to_string())
    } else {
        Err(
            "expected a duration (30m, 2h, 1d) or an RFC 3339 time (2024-05-01T10:00:00Z)"
                .to_string(),
        )
    }
}

/// How the answer of a request is shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Status,
    SubCreated,
    SubList,
    Sub,
    SubUpdated,
    SubDeleted,
    SubState,
    SubRotated,
    EventList,
    Event,
    Redelivered,
    DeliveryList,
    Delivery,
    Replayed,
    Backup,
}

/// One command as an HTTP request plus the way to show its answer.
#[derive(Debug, Clone)]
struct Plan {
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
    view: View,
    /// The id the command was about (for messages on empty answers).
    id: Option<String>,
    /// Longer than the client's default, for long work.
    timeout: Option<std::time::Duration>,
}

impl Plan {
    fn new(method: Method, path: String, view: View) -> Self {
        Plan {
            method,
            path,
            body: None,
            view,
            id: None,
            timeout: None,
        }
    }

    fn body(mut self, body: impl serde::Serialize) -> Result<Self, CliError> {
        let mut v = serde_json::to_value(body)
            .map_err(|e| CliError::InvalidRequest(format!("encoding the request body: {e}")))?;
        // Send only the fields that were given: for PATCH, an absent field
        // means "leave as is", and no reader has to wonder what null means.
        if let serde_json::Value::Object(map) = &mut v {
            map.retain(|_, field| !field.is_null());
        }
        self.body = Some(v);
        Ok(self)
    }

    fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }
}

const SUBS: &str = "/v1/subscriptions";
const EVENTS: &str = "/v1/events";
const DELIVERIES: &str = "/v1/deliveries";

fn plan(cmd: AdminCommand) -> Result<Plan, CliError> {
    use client::{item_path, with_query};
    let get = Method::GET;
    let post = Method::POST;
    let limit_str = |l: Option<u32>| l.map(|n| n.to_string());
    Ok(match cmd {
        AdminCommand::Status => Plan::new(get, "/v1/status".into(), View::Status),
        AdminCommand::Sub(sub) => match sub {
            SubCommand::Add(a) => {
                Plan::new(post, SUBS.into(), View::SubCreated).body(SubscriptionCreate {
                    url: a.url,
                    events: a.events,
                    tenant: a.tenant,
                    secret: a.secret,
                    headers: a.headers,
                    rate_limit: a.rate_limit,
                    max_in_flight: a.max_in_flight,
                    filters: a.filters,
                    signing: a.signing,
                })?
            }
            SubCommand::List => Plan::new(get, SUBS.into(), View::SubList),
            SubCommand::Get { id, show_secret } => {
                let path = item_path(SUBS, &id, "");
                let path = with_query(&path, &[("show_secret", show_secret.then_some("true"))]);
                Plan::new(get, path, View::Sub).id(&id)
            }
            SubCommand::Rm { id } => {
                Plan::new(Method::DELETE, item_path(SUBS, &id, ""), View::SubDeleted).id(&id)
            }
            SubCommand::Pause { id } => {
                Plan::new(post, item_path(SUBS, &id, "/pause"), View::SubState).id(&id)
            }
            SubCommand::Resume { id } => {
                Plan::new(post, item_path(SUBS, &id, "/resume"), View::SubState).id(&id)
            }
            SubCommand::RotateSecret { id } => Plan::new(
                post,
                item_path(SUBS, &id, "/rotate-secret"),
                View::SubRotated,
            )
            .id(&id),
            SubCommand::Update(u) => {
                Plan::new(Method::PATCH, item_path(SUBS, &u.id, ""), View::SubUpdated)
                    .id(&u.id)
                    .body(SubscriptionUpdate {
                        url: u.url,
                        events: u.events,
                        headers: u.headers,
                        rate_limit: u.rate_limit,
                        max_in_flight: u.max_in_flight,
                        filters: u.filters,
                    })?
            }
        },
        AdminCommand::Event(ev) => match ev {
            EventCommand::List {
                event_type,
                status,
                limit,
            } => {
                let limit = limit_str(limit);
                let path = with_query(
                    EVENTS,
                    &[
                        ("type", event_type.as_deref()),
                        ("status", status.as_deref()),
                        ("limit", limit.as_deref()),
                    ],
                );
                Plan::new(get, path, View::EventList)
            }
            EventCommand::Get { id } => Plan::new(get, item_path(EVENTS, &id, ""), View::Event),
            EventCommand::Redeliver { id } => Plan::new(
                post,
                item_path(EVENTS, &id, "/redeliver"),
                View::Redelivered,
            )
            .id(&id),
        },
        AdminCommand::Delivery(d) => match d {
            DeliveryCommand::List {
                sub,
                status,
                key,
                limit,
            } => {
                let limit = limit_str(limit);
                let path = with_query(
                    DELIVERIES,
                    &[
                        ("sub", sub.as_deref()),
                        ("status", status.as_deref()),
                        ("key", key.as_deref()),
                        ("limit", limit.as_deref()),
                    ],
                );
                Plan::new(get, path, View::DeliveryList)
            }
            DeliveryCommand::Get { id } => {
                Plan::new(get, item_path(DELIVERIES, &id, ""), View::Delivery)
            }
        },
        AdminCommand::Replay(r) => {
            Plan::new(post, "/v1/replay".into(), View::Replayed).body(ReplayRequest {
                subscription_id: r.sub,
                since: r.since,
                status: r.status,
            })?
        }
        AdminCommand::Backup(b) => {
            // The daemon has its own working directory: send an absolute path.
            let dest = std::path::absolute(&b.dest).map_err(|e| {
                CliError::InvalidRequest(format!("backup path {}: {e}", b.dest.display()))
            })?;
            let mut plan =
                Plan::new(post, "/v1/backup".into(), View::Backup).body(BackupRequest {
                    path: dest.display().to_string(),
                })?;
            plan.timeout = Some(BACKUP_TIMEOUT);
            plan
        }
    })
}

/// Do the request of `cmd` and return what it prints: the API's JSON
/// re-indented (`json`), or the human view. Nothing is printed; [`run`] does
/// that. Handy for tests that drive the CLI against a daemon.
pub async fn execute(
    client: &AdminClient,
    json: bool,
    cmd: AdminCommand,
) -> Result<String, CliError> {
    let plan = plan(cmd)?;
    let client = match plan.timeout {
        Some(t) => client.clone().with_timeout(t),
        None => client.clone(),
    };
    let body = client
        .request_ok(plan.method.clone(), &plan.path, plan.body.clone())
        .await?;
    if json {
        return pretty(&plan, &body);
    }
    show(&plan, &body, output::now_ms())
}

/// The answer as received, re-indented; nothing for an empty body (204).
fn pretty(plan: &Plan, body: &[u8]) -> Result<String, CliError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let text = String::from_utf8_lossy(body);
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|source| CliError::Decode {
        request: format!("{} {}", plan.method, plan.path),
        source,
    })?;
    let mut out = output::reindent_json(&text);
    out.push('\n');
    Ok(out)
}

fn show(plan: &Plan, body: &[u8], now: i64) -> Result<String, CliError> {
    use client::decode;
    let (m, p, bytes) = (&plan.method, plan.path.as_str(), body);
    Ok(match plan.view {
        View::Status => render::status(&decode(m, p, bytes)?, now),
        View::SubCreated => render::sub_created(&decode(m, p, bytes)?, now),
        View::SubList => render::sub_list(&decode(m, p, bytes)?),
        View::Sub => render::sub_block(&decode(m, p, bytes)?, now, render::SecretLine::IfPresent),
        View::SubUpdated => render::sub_updated(&decode(m, p, bytes)?, now),
        View::SubDeleted => format!(
            "Deleted subscription {}.\n",
            plan.id.as_deref().unwrap_or_default()
        ),
        View::SubState => render::sub_state(&decode(m, p, bytes)?),
        View::SubRotated => render::sub_rotated(&decode(m, p, bytes)?, now),
        View::EventList => render::event_list(&decode(m, p, bytes)?, now),
        View::Event => render::event(&decode(m, p, bytes)?, now),
        View::Redelivered => render::requeued(&decode(m, p, bytes)?, "redeliver"),
        View::DeliveryList => render::delivery_list(&decode(m, p, bytes)?, now),
        View::Delivery => render::delivery(&decode(m, p, bytes)?, now),
        View::Replayed => render::requeued(&decode(m, p, bytes)?, "replay"),
        View::Backup => render::backup(&decode(m, p, bytes)?),
    })
}

/// Run one admin command against the daemon on `socket` and print its
/// output to stdout (`json`: the API's JSON answer, pretty-printed).
///
/// A closed stdout (`hookd event list | head`) is not an error. On error,
/// nothing is printed; show it as `error: {e}` and exit with
/// [`CliError::exit_code`], or use [`run_and_report`].
pub async fn run(socket: &Path, json: bool, cmd: AdminCommand) -> Result<(), CliError> {
    let out = execute(&AdminClient::new(socket), json, cmd).await?;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(CliError::Output),
    }
}

/// [`run`], then on error print `error: <message>` to stderr; returns the
/// exit code for `main` (0, or [`CliError::exit_code`]).
pub async fn run_and_report(socket: &Path, json: bool, cmd: AdminCommand) -> ExitCode {
    match run(socket, json, cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests;
