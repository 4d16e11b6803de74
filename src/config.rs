//! Configuration: the TOML file, its defaults, and validation.
//!
//! Every key is optional. Without a file (`hookd serve` alone) hookd runs
//! with development defaults: `./hookd-data`, `./hookd.sock`, loopback
//! delivery allowed. With a file, the defaults are the production ones.

use crate::error::{Error, Result};
use crate::netpolicy::Cidr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The systemd credential (`LoadCredential=ingest-tokens:...`) read for
/// ingest tokens when `$CREDENTIALS_DIRECTORY` is set.
pub const TOKENS_CREDENTIAL: &str = "ingest-tokens";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub ingest: IngestConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub delivery: DeliveryConfig,
    pub log: LogConfig,
}

/// `[ingest]`: the HTTP endpoint applications post events to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<Token>,
    /// A file of further tokens, one a line; relative to the config file.
    pub tokens_file: Option<PathBuf>,
    pub max_body: ByteSize,
    /// Request bodies held in memory at once, until the round that writes
    /// their events is answered: requests past it wait, a body of known
    /// length before it is read.
    pub max_in_flight_bytes: ByteSize,
    /// Answered when no request line and headers arrive within this time.
    pub header_timeout: Dur,
    /// The whole request (head and body) must arrive within this time.
    pub request_timeout: Dur,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Dur,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: u32,
    /// Tokens read from `tokens_file` and the credential: filled in at load, not a key.
    #[serde(skip)]
    pub loaded_tokens: Vec<LoadedTokens>,
}

/// Tokens read from one file.
#[derive(Debug, Clone)]
pub struct LoadedTokens {
    /// What the tokens came from, for people: the key or credential and the path.
    pub source: String,
    pub tokens: Vec<Token>,
}

/// A bearer token, optionally limited to one tenant's events. Its `Debug`
/// and `Serialize` never show it, so neither a log line nor `check-config`
/// can leak it. In TOML: `"token"` or `{ token = "...", tenant = "acme" }`;
/// in a tokens file: `token` or `token tenant=acme`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: String,
    tenant: Option<String>,
}

impl Token {
    /// The token itself, for hashing; never for output.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// The one tenant this token may post events for, if it is limited.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
}

impl From<&str> for Token {
    /// `token` or `token tenant=T`.
    fn from(s: &str) -> Token {
        let mut parts = s.split_whitespace();
        let secret = parts.next().unwrap_or_default().to_string();
        let tenant = parts.find_map(|p| p.strip_prefix("tenant=").map(str::to_string));
        Token { secret, tenant }
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Limited { token: String, tenant: String },
        }
        Ok(match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a token is a string, or { token = \"...\", tenant = \"...\" } to limit it to one tenant",
            )
        })? {
            Raw::Plain(secret) => Token { secret, tenant: None },
            Raw::Limited { token, tenant } => Token {
                secret: token,
                tenant: Some(tenant),
            },
        })
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// What a secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// `[admin]`: the Unix socket of the admin API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub socket: PathBuf,
    /// The socket's file mode, in octal (`"0660"`).
    pub mode: String,
    /// Group to give the socket (members may use the CLI); `None`: the daemon's group.
    pub group: Option<String>,
    /// When set, only these uids (and the daemon's own) may use the admin API.
    pub allowed_uids: Vec<u32>,
}

impl AdminConfig {
    /// `mode` parsed: octal, at most 0777, and never world-writable.
    pub fn socket_mode(&self) -> std::result::Result<u32, String> {
        let mode = u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .map_err(|_| format!("{:?} is not an octal file mode such as \"0660\"", self.mode))?;
        if mode > 0o777 {
            return Err(format!("{:?} is more than 0777", self.mode));
        }
        if mode & 0o002 != 0 {
            return Err(format!(
                "{:?} would let every local user change hookd; use 0660 and admin.group",
                self.mode
            ));
        }
        Ok(mode)
    }
}

/// `[storage]`: the sled store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    pub max_disk: ByteSize,
    pub retention: Dur,
    /// sled's page cache; real memory use can be a few times this.
    pub cache: ByteSize,
}

/// `[delivery]`: outbound attempts and the retry policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub timeout: Dur,
    pub retry_schedule: Vec<Dur>,
    pub allow_networks: Vec<Cidr>,
    /// Attempts on the wire at once per subscription (unless it sets its own).
    pub max_in_flight: u32,
    /// Attempts on the wire at once across all subscriptions: bounds memory and sockets.
    pub max_in_flight_total: u32,
    /// The longest wait a `Retry-After` header can impose.
    pub max_retry_after: Dur,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_overlap: Dur,
    /// Bytes of each response body kept on the attempt.
    pub response_excerpt: ByteSize,
    /// On shutdown, how long attempts on the wire may take to finish.
    pub shutdown_grace: Dur,
    /// Refuse plain `http://` subscription URLs and deliveries.
    pub require_https: bool,
    /// `http://host:port` of an HTTP CONNECT proxy all deliveries go through.
    pub proxy: Option<String>,
    /// Consecutive failed attempts that open a subscription's circuit breaker.
    pub breaker_failures: u32,
    /// First wait between probes of an open breaker; it doubles up to `breaker_probe_max`.
    pub breaker_probe: Dur,
    pub breaker_probe_max: Dur,
    /// A subscription whose every attempt has failed this long is disabled.
    pub disable_after: Dur,
    /// Connection-level failures to this many distinct hosts within
    /// `uplink_window`, with no success, mean the box's own network is down.
    pub uplink_hosts: u32,
    pub uplink_window: Dur,
    /// First wait between probes while the uplink is down; doubles up to `breaker_probe_max`.
    pub uplink_probe: Dur,
    /// After the uplink comes back, attempts per second across all
    /// subscriptions, for `uplink_drain_for`.
    pub uplink_drain_rate: u32,
    pub uplink_drain_for: Dur,
}

impl DeliveryConfig {
    /// `proxy` parsed: `http://host:port`.
    pub fn proxy_uri(&self) -> std::result::Result<Option<hyper::Uri>, String> {
        let Some(text) = &self.proxy else {
            return Ok(None);
        };
        let uri: hyper::Uri = text.parse().map_err(|e| {
            format!("{text:?} is not a URL ({e}); write it like http://proxy.internal:3128")
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "{text:?} must be http://host:port (an HTTP CONNECT proxy)"
            ));
        }
        Ok(Some(uri))
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `hookd=debug`, ...; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: Vec::new(),
            tokens_file: None,
            max_body: ByteSize(1 << 20),
            max_in_flight_bytes: ByteSize(8 << 20),
            header_timeout: Dur(Duration::from_secs(10)),
            request_timeout: Dur(Duration::from_secs(30)),
            idle_timeout: Dur(Duration::from_secs(60)),
            max_connections: 1024,
            loaded_tokens: Vec::new(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: PathBuf::from("/run/hookd/admin.sock"),
            mode: "0660".into(),
            group: None,
            allowed_uids: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("/var/lib/hookd"),
            max_disk: ByteSize(10 << 30),
            retention: Dur(Duration::from_secs(7 * 86400)),
            cache: ByteSize(4 << 20),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let schedule = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];
        DeliveryConfig {
            timeout: Dur(Duration::from_secs(30)),
            retry_schedule: schedule
                .iter()
                .map(|s| Dur(humantime::parse_duration(s).expect("valid default")))
                .collect(),
            allow_networks: Vec::new(),
            max_in_flight: 16,
            max_in_flight_total: 512,
            max_retry_after: Dur(Duration::from_secs(3600)),
            secret_overlap: Dur(Duration::from_secs(86400)),
            response_excerpt: ByteSize(4096),
            shutdown_grace: Dur(Duration::from_secs(10)),
            require_https: false,
            proxy: None,
            breaker_failures: 10,
            breaker_probe: Dur(Duration::from_secs(5)),
            breaker_probe_max: Dur(Duration::from_secs(600)),
            disable_after: Dur(Duration::from_secs(5 * 86400)),
            uplink_hosts: 3,
            uplink_window: Dur(Duration::from_secs(30)),
            uplink_probe: Dur(Duration::from_secs(5)),
            uplink_drain_rate: 200,
            uplink_drain_for: Dur(Duration::from_secs(120)),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Development defaults: everything under the current directory, loopback delivery allowed.
    pub fn development() -> Config {
        let mut config = Config::default();
        config.storage.path = PathBuf::from("./hookd-data");
        config.admin.socket = PathBuf::from("./hookd.sock");
        config.delivery.allow_networks = ["127.0.0.0/8", "::1/128"]
            .iter()
            .map(|c| c.parse().expect("valid default"))
            .collect();
        config
    }

    /// Reads, parses and validates a config file, with the token files it
    /// names (relative to its directory) and, when `$CREDENTIALS_DIRECTORY`
    /// is set, the `ingest-tokens` credential.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
        let sources = TokenSources {
            base_dir: path.parent().unwrap_or(Path::new(".")),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        };
        Config::parse_with(&text, &sources).map_err(|reason| Error::Config {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses and validates config text (a `tokens_file` is read relative to
    /// the current directory); the error names the key and the reason.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let sources = TokenSources {
            base_dir: Path::new("."),
            credentials_dir: None,
        };
        Config::parse_with(text, &sources)
    }

    /// Parses config text, reads the token files `sources` points at, validates.
    pub fn parse_with(
        text: &str,
        sources: &TokenSources<'_>,
    ) -> std::result::Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        config.ingest.loaded_tokens = load_token_files(&config.ingest, sources)?;
        config.validate()?;
        Ok(config)
    }

    /// The effective values as TOML, tokens redacted, with a comment on
    /// where the tokens came from.
    pub fn render_effective(&self) -> String {
        let mut out = String::new();
        let mut counts = vec![format!("{} in ingest.tokens", self.ingest.tokens.len())];
        for loaded in &self.ingest.loaded_tokens {
            counts.push(format!("{} in {}", loaded.tokens.len(), loaded.source));
        }
        out.push_str(&format!(
            "# ingest tokens: {} ({}), shown as {REDACTED:?}\n",
            self.ingest.all_tokens().count(),
            counts.join(", ")
        ));
        out.push_str(&toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n")));
        out
    }

    /// Checks what serde cannot: ranges and cross-key rules.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let key_err = |key: &str, reason: &str| Err(format!("key {key}: {reason}"));
        if !self.ingest.listen.ip().is_loopback() && self.ingest.all_tokens().next().is_none() {
            return key_err(
                "ingest.tokens",
                &format!(
                    "ingest listens on {} (not loopback) but no tokens are set (in ingest.tokens, \
                     ingest.tokens_file or the {TOKENS_CREDENTIAL} credential); \
                     add at least one token or listen on 127.0.0.1",
                    self.ingest.listen
                ),
            );
        }
        if self
            .ingest
            .tokens
            .iter()
            .any(|t| t.expose().trim().is_empty())
        {
            return key_err("ingest.tokens", "a token is empty");
        }
        if let Err(e) = self.admin.socket_mode() {
            return key_err("admin.mode", &e);
        }
        if self.ingest.max_connections == 0 {
            return key_err("ingest.max_connections", "must be at least 1");
        }
        if self.ingest.max_body.0 == 0 {
            return key_err("ingest.max_body", "must be more than 0");
        }
        if self.ingest.max_in_flight_bytes.0 < 1024 {
            return key_err("ingest.max_in_flight_bytes", "must be at least 1KiB");
        }
        if self.delivery.retry_schedule.len() > 100 {
            return key_err("delivery.retry_schedule", "at most 100 retries");
        }
        if self.delivery.timeout.0.is_zero() {
            return key_err("delivery.timeout", "must be more than 0");
        }
        if self.delivery.max_in_flight_total == 0 || self.delivery.max_in_flight_total > 100_000 {
            return key_err("delivery.max_in_flight_total", "must be 1 to 100000");
        }
        if self.delivery.max_in_flight == 0 || self.delivery.max_in_flight > 10_000 {
            return key_err("delivery.max_in_flight", "must be 1 to 10000");
        }
        if self.delivery.response_excerpt.0 > 1 << 20 {
            return key_err("delivery.response_excerpt", "at most 1MiB");
        }
        if let Err(e) = self.delivery.proxy_uri() {
            return key_err("delivery.proxy", &e);
        }
        if self.delivery.breaker_failures == 0 {
            return key_err("delivery.breaker_failures", "must be at least 1");
        }
        if self.delivery.uplink_hosts < 2 {
            return key_err(
                "delivery.uplink_hosts",
                "must be at least 2 (one failing host is that host's problem, not the uplink's)",
            );
        }
        if self.delivery.uplink_drain_rate == 0 {
            return key_err("delivery.uplink_drain_rate", "must be at least 1");
        }
        if self.delivery.breaker_probe.0.is_zero() || self.delivery.uplink_probe.0.is_zero() {
            return key_err(
                "delivery.breaker_probe",
                "probe intervals must be more than 0",
            );
        }
        if self.storage.cache.0 < 1 << 20 {
            return key_err("storage.cache", "at least 1MiB");
        }
        Ok(())
    }
}

impl IngestConfig {
    /// Every accepted token: `tokens`, then those read from files.
    pub fn all_tokens(&self) -> impl Iterator<Item = &Token> {
        self.tokens
            .iter()
            .chain(self.loaded_tokens.iter().flat_map(|l| &l.tokens))
    }
}

/// One line naming the key (`delivery.timeout`) and the place, then toml's
/// reason: fit for a log line, unlike toml's own multi-line report.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let reason = e.message().trim();
    let Some(span) = e.span() else {
        return reason.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let header = |l: &str| {
        l.trim()
            .strip_prefix('[')
            .and_then(|l| l.split(']').next())
            .map(|name| name.trim().to_string())
    };
    let key = match header(line) {
        Some(table) => table,
        None => {
            let section = before.lines().rev().find_map(header);
            let name = line.split('=').next().unwrap_or("").trim();
            match section {
                Some(section) if !name.is_empty() => format!("{section}.{name}"),
                _ => name.to_string(),
            }
        }
    };
    if key.is_empty() {
        format!("line {line_no}, column {column}: {reason}")
    } else {
        format!("key {key} (line {line_no}, column {column}): {reason}")
    }
}

/// Where token files are found.
#[derive(Debug, Clone)]
pub struct TokenSources<'a> {
    /// A relative `ingest.tokens_file` is taken from here (the config file's directory).
    pub base_dir: &'a Path,
    /// systemd's `$CREDENTIALS_DIRECTORY`; its `ingest-tokens` is read if present.
    pub credentials_dir: Option<PathBuf>,
}

/// Reads `ingest.tokens_file` (which must exist when set) and the credential
/// (only if present). Both are one token a line; `#` comments and blank lines are skipped.
fn load_token_files(
    ingest: &IngestConfig,
    sources: &TokenSources<'_>,
) -> std::result::Result<Vec<LoadedTokens>, String> {
    let mut loaded = Vec::new();
    if let Some(file) = &ingest.tokens_file {
        let path = sources.base_dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "key ingest.tokens_file: cannot read {}: {e}",
                path.display()
            )
        })?;
        loaded.push(LoadedTokens {
            source: format!("ingest.tokens_file {}", path.display()),
            tokens: parse_token_lines(&text),
        });
    }
    if let Some(dir) = &sources.credentials_dir {
        let path = dir.join(TOKENS_CREDENTIAL);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "credential {TOKENS_CREDENTIAL}: cannot read {}: {e}",
                    path.display()
                )
            })?;
            loaded.push(LoadedTokens {
                source: format!("credential {TOKENS_CREDENTIAL} {}", path.display()),
                tokens: parse_token_lines(&text),
            });
        }
    }
    Ok(loaded)
}

/// One token a line; surrounding whitespace, blank lines and `#` comment lines are skipped.
pub fn parse_token_lines(text: &str) -> Vec<Token> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Token::from)
        .collect()
}

/// A duration written like `30s`, `5m`, `2h 30m`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// Parses `30s`, `5m`, `2h 30m`, `7d` (humantime syntax) with a clear error.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write it like 30s, 5m, 2h or 7d"))
}

/// A size written like `1MiB`, `10GiB`, `512KB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => parse_size(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let n = self.0;
        let unit = [
            (1u64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ]
        .into_iter()
        .find(|(size, _)| n >= *size && n % size == 0);
        match unit {
            Some((size, name)) => s.serialize_str(&format!("{}{name}", n / size)),
            None => s.serialize_u64(n),
        }
    }
}

/// Parses `1MiB`, `10GiB`, `512KB`, `100` (bytes) with a clear error.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let bad = || format!("{s:?} is not a size; write it like 512KiB, 1MiB, 10GiB or 1000000");
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../config.example.toml");
        let config = Config::parse(text).expect("config.example.toml must parse");
        let defaults = Config::default();
        assert_eq!(config.ingest.max_body, defaults.ingest.max_body);
        assert_eq!(
            config.delivery.retry_schedule,
            defaults.delivery.retry_schedule
        );
        assert_eq!(config.delivery.timeout, defaults.delivery.timeout);
        assert_eq!(config.storage.retention, defaults.storage.retention);
    }

    #[test]
    fn empty_file_is_production_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.storage.path, PathBuf::from("/var/lib/hookd"));
        assert!(config.delivery.allow_networks.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Config::parse("[ingest]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(err.contains("listen_on"), "{err}");
        let err = Config::parse("[storag]\n").unwrap_err();
        assert!(err.contains("storag"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Config::parse("[delivery]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(err.contains("timeout") && err.contains("soon"), "{err}");
        let err = Config::parse("[ingest]\nmax_body = \"lots\"\n").unwrap_err();
        assert!(err.contains("max_body"), "{err}");
        let err = Config::parse("[ingest]\nmax_in_flight_bytes = 100\n").unwrap_err();
        assert!(
            err.contains("ingest.max_in_flight_bytes") && err.contains("1KiB"),
            "{err}"
        );
        let err = Config::parse("[delivery]\nallow_networks = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert!(err.contains("allow_networks"), "{err}");
    }

    #[test]
    fn parse_errors_are_one_line_with_the_key() {
        let err =
            Config::parse("[ingest]\nmax_body = \"1MiB\"\n\n[delivery]\ntimeout = \"soon\"\n")
                .unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.starts_with("key delivery.timeout (line 5, column 11): "),
            "{err}"
        );
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
        let err = Config::parse("[ingest]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(err.starts_with("key ingest.listen_on (line 2"), "{err}");
        let err = Config::parse("[storag]\n").unwrap_err();
        assert!(err.starts_with("key storag (line 1"), "{err}");
    }

    #[test]
    fn public_listen_needs_tokens() {
        let err = Config::parse("[ingest]\nlisten = \"0.0.0.0:8080\"\n").unwrap_err();
        assert!(err.contains("ingest.tokens"), "{err}");
        Config::parse("[ingest]\nlisten = \"0.0.0.0:8080\"\ntokens = [\"t\"]\n").unwrap();
    }

    #[test]
    fn admin_socket_mode_is_checked() {
        let err = Config::parse("[admin]\nmode = \"0666\"\n").unwrap_err();
        assert!(
            err.contains("admin.mode") && err.contains("every local user"),
            "{err}"
        );
        let err = Config::parse("[admin]\nmode = \"rw\"\n").unwrap_err();
        assert!(err.contains("octal"), "{err}");
        let c = Config::parse("[admin]\nmode = \"0600\"\n").unwrap();
        assert_eq!(c.admin.socket_mode(), Ok(0o600));
    }

    #[test]
    fn tokens_come_from_the_file_and_the_credential_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokens"),
            "# rotated 2026-12\n\n  file-token-1  \nfile-token-2\n",
        )
        .unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join(TOKENS_CREDENTIAL), "cred-token\n").unwrap();
        let text = "[ingest]\nlisten = \"0.0.0.0:8080\"\ntokens = [\"inline\"]\ntokens_file = \"tokens\"\n";
        let sources = TokenSources {
            base_dir: dir.path(),
            credentials_dir: Some(creds),
        };
        let config = Config::parse_with(text, &sources).unwrap();
        let all: Vec<&str> = config.ingest.all_tokens().map(Token::expose).collect();
        assert_eq!(
            all,
            ["inline", "file-token-1", "file-token-2", "cred-token"]
        );

        // The credential alone is enough for a public listen address.
        let text = "[ingest]\nlisten = \"0.0.0.0:8080\"\n";
        assert!(Config::parse_with(text, &sources).is_ok());
        let no_creds = TokenSources {
            base_dir: dir.path(),
            credentials_dir: Some(dir.path().join("absent")),
        };
        assert!(Config::parse_with(text, &no_creds).is_err());

        let missing = "[ingest]\ntokens_file = \"nope\"\n";
        let err = Config::parse_with(missing, &sources).unwrap_err();
        assert!(
            err.contains("ingest.tokens_file") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn tokens_may_be_limited_to_a_tenant() {
        let text = "[ingest]\ntokens = [\"open\", { token = \"acme-only\", tenant = \"acme\" }]\n";
        let config = Config::parse(text).unwrap();
        let tenants: Vec<Option<&str>> = config.ingest.all_tokens().map(Token::tenant).collect();
        assert_eq!(tenants, [None, Some("acme")]);
        let lines = parse_token_lines("t1\nt2 tenant=globex\n");
        assert_eq!(lines[1].expose(), "t2");
        assert_eq!(lines[1].tenant(), Some("globex"));
        let err = Config::parse("[ingest]\ntokens = [{ tenant = \"x\" }]\n").unwrap_err();
        assert!(err.contains("tenant"), "{err}");
    }

    #[test]
    fn tokens_never_show() {
        let config = Config::parse("[ingest]\ntokens = [\"s3cret-token\"]\n").unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
        let shown = config.render_effective();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");
    }

    #[test]
    fn effective_values_render_as_toml_that_parses_back() {
        let text = "[ingest]\nmax_body = \"512KiB\"\nheader_timeout = \"1m 30s\"\n\
                    [storage]\nmax_disk = 123456789\nretention = \"3d\"\n\
                    [delivery]\nretry_schedule = [\"1s\", \"2h\"]\nallow_networks = [\"10.0.0.0/8\"]\n\
                    [log]\nlevel = \"hookd=debug\"\n";
        let config = Config::parse(text).unwrap();
        let rendered = config.render_effective();
        assert!(rendered.contains("max_body = \"512KiB\""), "{rendered}");
        assert!(rendered.contains("retention = \"3days\""), "{rendered}");
        let again = Config::parse(&rendered).unwrap();
        assert_eq!(format!("{again:?}"), format!("{config:?}"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("512KB"), Ok(512_000));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("soon").unwrap_err().contains("30s"));
    }
}
