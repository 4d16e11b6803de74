//! One outbound HTTP delivery attempt, with SSRF protection at connect time.
//!
//! The address policy is enforced inside the connector, after DNS resolution
//! and immediately before `connect(2)`, rather than by inspecting the URL up
//! front: a hostname can resolve to a private address, and a name can resolve
//! differently between a check and the connection (DNS rebinding). Checking the
//! exact `SocketAddr` we are about to dial leaves no such gap.
//!
//! [`Outbound`] owns one pooled hyper client shared by all deliveries; each
//! [`Outbound::send`] is a single attempt (no retries, no redirects) bounded by
//! one overall timeout, and reports what happened as an [`AttemptOutcome`]
//! rather than a `Result`, because a delivery log wants the status code and
//! body excerpt even when the attempt failed half-way.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::RETRY_AFTER;
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::netpolicy::{AddressPolicy, Blocked};

/// The policy cell shared between [`Outbound`] and its connector.
///
/// The inner `Arc` lets a connect snapshot the policy with one cheap clone
/// instead of holding the lock across DNS and TCP handshakes.
pub type SharedPolicy = Arc<RwLock<Arc<AddressPolicy>>>;

fn read_policy(policy: &SharedPolicy) -> Arc<AddressPolicy> {
    // The cell only ever holds a complete Arc, so a panic elsewhere while the
    // lock was held cannot have left it half-written: ignoring poison is safe.
    policy
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Why [`GuardedConnector`] could not produce a connection.
///
/// A concrete type (rather than a boxed `io::Error`) so that
/// [`AttemptError`] classification can find it by downcasting through
/// hyper's error chain and tell DNS, policy and TCP failures apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The URL has no host, or a scheme we cannot derive a port for.
    #[error("invalid url: {0}")]
    InvalidUri(String),
    /// Name resolution failed or returned nothing.
    #[error("dns: {0}")]
    Dns(String),
    /// Every resolved address was refused by the policy; carries the first refusal.
    #[error("blocked: {0}")]
    Blocked(Blocked),
    /// At least one address was permitted but no TCP connection could be made.
    #[error("{0}")]
    Connect(String),
}

/// A `tower_service::Service<Uri>` that resolves, filters through the
/// current [`AddressPolicy`] and dials TCP, for use under hyper-rustls.
///
/// It does its own resolution instead of wrapping hyper-util's
/// `HttpConnector`, because that connector offers no hook between resolving
/// and connecting, which is exactly where the policy has to sit.
#[derive(Clone)]
pub struct GuardedConnector {
    policy: SharedPolicy,
    connect_timeout: Duration,
    resolver: Arc<dyn Resolve>,
    /// An HTTP CONNECT proxy every connection tunnels through: (host, port).
    proxy: Option<(String, u16)>,
}

/// Name resolution, swappable so tests can play DNS tricks (rebinding).
pub trait Resolve: Send + Sync + fmt::Debug + 'static {
    /// The addresses of `host` (a name, never an IP literal) at `port`.
    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;
}

/// The system resolver (getaddrinfo, via tokio).
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

impl GuardedConnector {
    /// A connector reading `policy` afresh for every new connection.
    ///
    /// `connect_timeout` bounds DNS resolution and, separately, each TCP
    /// connect attempt, so one black-holed address does not stop the next
    /// one from being tried (the caller's overall timeout still applies).
    pub fn new(policy: SharedPolicy, connect_timeout: Duration) -> GuardedConnector {
        GuardedConnector {
            policy,
            connect_timeout,
            resolver: Arc::new(SystemResolver),
            proxy: None,
        }
    }

    /// Resolves names with `resolver` instead of the system's.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> GuardedConnector {
        self.resolver = resolver;
        self
    }

    /// Tunnels every connection through the HTTP CONNECT proxy at `host:port`.
    /// The target is still resolved and checked here, and the proxy is asked
    /// for the checked address, so the policy holds behind a proxy too.
    pub fn with_proxy(mut self, proxy: Option<(String, u16)>) -> GuardedConnector {
        self.proxy = proxy;
        self
    }
}

impl fmt::Debug for GuardedConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedConnector")
            .field("policy", &read_policy(&self.policy))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Snapshot now: a policy swapped mid-connect applies to the next one.
        let policy = read_policy(&self.policy);
        let timeout = self.connect_timeout;
        let (resolver, proxy) = (self.resolver.clone(), self.proxy.clone());
        Box::pin(async move {
            let route = Route {
                policy: &policy,
                timeout,
                resolver: resolver.as_ref(),
                proxy: proxy.as_ref(),
            };
            guarded_connect(&dst, route).await
        })
    }
}

/// How one connection is made.
struct Route<'a> {
    policy: &'a AddressPolicy,
    timeout: Duration,
    resolver: &'a dyn Resolve,
    proxy: Option<&'a (String, u16)>,
}

async fn guarded_connect(dst: &Uri, route: Route<'_>) -> Result<TokioIo<TcpStream>, ConnectError> {
    let Route {
        policy,
        timeout,
        resolver,
        proxy,
    } = route;
    let host = dst
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ConnectError::InvalidUri(format!("{dst}: missing host")))?;
    let port = match (dst.port_u16(), dst.scheme_str()) {
        (Some(p), _) => p,
        (None, Some("https")) => 443,
        (None, Some("http")) => 80,
        (None, _) => {
            return Err(ConnectError::InvalidUri(format!(
                "{dst}: scheme must be http or https"
            )))
        }
    };
    // `Uri::host` keeps the brackets of an IPv6 literal.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);

    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(timeout, resolver.resolve(bare.to_string(), port)).await {
                Err(_) => {
                    return Err(ConnectError::Dns(format!(
                        "lookup of {bare} timed out after {}",
                        humantime::format_duration(timeout)
                    )))
                }
                Ok(Err(e)) => return Err(ConnectError::Dns(dns_message(bare, &e))),
                Ok(Ok(found)) => found,
            }
        }
    };
    if addrs.is_empty() {
        return Err(ConnectError::Dns(format!("no such host {bare}")));
    }

    let mut first_blocked: Option<Blocked> = None;
    let mut failures: Vec<String> = Vec::new();
    for addr in addrs {
        if let Err(blocked) = policy.check(addr.ip()) {
            tracing::debug!(%addr, %blocked, "outbound address refused by policy");
            first_blocked.get_or_insert(blocked);
            continue;
        }
        let dial = async {
            match proxy {
                None => TcpStream::connect(addr).await,
                Some((host, port)) => tunnel(host, *port, addr).await,
            }
        };
        match tokio::time::timeout(timeout, dial).await {
            Ok(Ok(stream)) => {
                // Webhook requests are small single writes; Nagle would only add latency.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%addr, error = %e, "could not set TCP_NODELAY");
                }
                return Ok(TokioIo::new(stream));
            }
            Ok(Err(e)) => failures.push(format!("{} to {addr}", describe_io(&e))),
            Err(_) => failures.push(format!(
                "connect to {addr} timed out after {}",
                humantime::format_duration(timeout)
            )),
        }
    }
    match (failures.is_empty(), first_blocked) {
        (true, Some(blocked)) => Err(ConnectError::Blocked(blocked)),
        (false, blocked) => {
            let mut msg = failures.join("; ");
            if let Some(b) = blocked {
                msg.push_str(&format!("; also skipped {} (blocked by policy)", b.ip));
            }
            Err(ConnectError::Connect(msg))
        }
        // Unreachable in practice: `addrs` was non-empty, so each one either
        // failed or was blocked. Kept total rather than panicking.
        (true, None) => Err(ConnectError::Dns(format!("no usable address for {bare}"))),
    }
}

/// Opens a tunnel to `target` through the HTTP CONNECT proxy `host:port`.
async fn tunnel(host: &str, port: u16, target: SocketAddr) -> io::Result<TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect((host, port)).await?;
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // Read the proxy's answer head byte by byte: nothing past it may be consumed.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(io::Error::other(
                "the proxy's answer to CONNECT is too long",
            ));
        }
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::other(
                "the proxy closed the connection during CONNECT",
            ));
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let ok = status_line
        .split(' ')
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    if ok {
        Ok(stream)
    } else {
        Err(io::Error::other(format!(
            "the proxy refused CONNECT {target}: {status_line}"
        )))
    }
}

fn dns_message(host: &str, e: &io::Error) -> String {
    // getaddrinfo only reports strings; these are glibc's and BSD's wording
    // for "the name does not exist", which deserves the short form.
    let text = e.to_string();
    if text.contains("not known")
        || text.contains("No address associated")
        || text.contains("nodename nor servname")
    {
        format!("no such host {host}")
    } else {
        format!("{host}: {text}")
    }
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut => "connection timed out".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        io::ErrorKind::PermissionDenied => "connect not permitted".into(),
        _ => format!("connect failed ({e})"),
    }
}

/// Settings for [`Outbound::new`].
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Initial address policy; replace later with [`Outbound::set_policy`].
    pub policy: AddressPolicy,
    /// Bound on DNS resolution and on each TCP connect attempt.
    pub connect_timeout: Duration,
    /// How long an idle keep-alive connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// Maximum idle connections kept per scheme+host+port.
    pub max_idle_per_host: usize,
    /// `http://host:port` of an HTTP CONNECT proxy for all deliveries.
    pub proxy: Option<Uri>,
    /// Name resolution; `None` is the system resolver.
    pub resolver: Option<Arc<dyn Resolve>>,
}

type HttpClient = Client<HttpsConnector<GuardedConnector>, Full<Bytes>>;

/// The shared HTTP client for webhook deliveries.
///
/// Cloning is cheap (one `Arc`); all clones share the connection pool and
/// the policy.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

struct Inner {
    policy: SharedPolicy,
    connector: HttpsConnector<GuardedConnector>,
    pool_idle_timeout: Duration,
    max_idle_per_host: usize,
    client: RwLock<HttpClient>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("policy", &self.policy())
            .field("pool_idle_timeout", &self.inner.pool_idle_timeout)
            .field("max_idle_per_host", &self.inner.max_idle_per_host)
            .finish_non_exhaustive()
    }
}

/// `(host, port)` of a proxy URL (`http://host:port`, port 80 by default).
fn proxy_address(uri: &Uri) -> Option<(String, u16)> {
    Some((uri.host()?.to_string(), uri.port_u16().unwrap_or(80)))
}

impl Outbound {
    /// Builds the client: ring-backed rustls with the webpki (Mozilla) roots,
    /// HTTP/1.1 only, `http` and `https` URLs, keep-alive pooling.
    pub fn new(config: OutboundConfig) -> Outbound {
        let policy: SharedPolicy = Arc::new(RwLock::new(Arc::new(config.policy)));
        // Naming the provider explicitly keeps us independent of whichever
        // process-wide default another dependency might install.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_webpki_roots()
        .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(
                GuardedConnector::new(policy.clone(), config.connect_timeout)
                    .with_resolver(
                        config
                            .resolver
                            .clone()
                            .unwrap_or_else(|| Arc::new(SystemResolver)),
                    )
                    .with_proxy(config.proxy.as_ref().and_then(proxy_address)),
            );
        let client = build_client(
            connector.clone(),
            config.pool_idle_timeout,
            config.max_idle_per_host,
        );
        Outbound {
            inner: Arc::new(Inner {
                policy,
                connector,
                pool_idle_timeout: config.pool_idle_timeout,
                max_idle_per_host: config.max_idle_per_host,
                client: RwLock::new(client),
            }),
        }
    }

    /// The policy currently applied to new connections.
    pub fn policy(&self) -> Arc<AddressPolicy> {
        read_policy(&self.inner.policy)
    }

    /// Replaces the policy (config reload) and starts a fresh connection pool.
    ///
    /// The pool is replaced because a pooled keep-alive connection was vetted
    /// under the old policy: without this, tightening the allow list would not
    /// take effect for hosts with warm connections. Attempts already in flight
    /// finish on the old pool, whose connections then close.
    pub fn set_policy(&self, policy: AddressPolicy) {
        *self
            .inner
            .policy
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        let fresh = build_client(
            self.inner.connector.clone(),
            self.inner.pool_idle_timeout,
            self.inner.max_idle_per_host,
        );
        *self
            .inner
            .client
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    fn client(&self) -> HttpClient {
        self.inner
            .client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes one POST attempt and reports everything observed.
    ///
    /// `req.timeout` covers the whole attempt, body excerpt included, so a
    /// slow-drip server cannot hold a delivery worker longer than that. Never
    /// follows redirects. Reads at most `excerpt_limit` body bytes and then
    /// drops the response, which closes that connection instead of draining it.
    pub async fn send(&self, req: OutboundRequest) -> AttemptOutcome {
        let started = Instant::now();
        let mut seen = Observed::default();
        let result = match check_url(&req.url) {
            Err(e) => Err(e),
            Ok(()) => {
                let timeout = req.timeout;
                match tokio::time::timeout(timeout, attempt(self.client(), req, &mut seen)).await {
                    Ok(r) => r,
                    Err(_) => Err(AttemptError::Timeout(timeout)),
                }
            }
        };
        AttemptOutcome {
            status: seen.status,
            error: result.err(),
            retry_after: seen.retry_after,
            latency: started.elapsed(),
            excerpt: seen.excerpt,
        }
    }
}

fn build_client(
    connector: HttpsConnector<GuardedConnector>,
    idle: Duration,
    max_idle: usize,
) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(max_idle)
        // Without a timer the pool cannot evict idle connections in the background.
        .pool_timer(TokioTimer::new())
        .build(connector)
}

fn check_url(url: &Uri) -> Result<(), AttemptError> {
    match url.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(AttemptError::Url(format!(
                "{url}: scheme {other:?} is not http or https"
            )))
        }
        None => return Err(AttemptError::Url(format!("{url}: not an absolute URL"))),
    }
    if url.host().is_none_or(str::is_empty) {
        return Err(AttemptError::Url(format!("{url}: missing host")));
    }
    Ok(())
}

/// What the attempt learned before it ended; lives outside the timed future
/// so that a timeout during the body read still reports status and excerpt.
#[derive(Default)]
struct Observed {
    status: Option<u16>,
    retry_after: Option<String>,
    excerpt: Vec<u8>,
}

async fn attempt(
    client: HttpClient,
    req: OutboundRequest,
    seen: &mut Observed,
) -> Result<(), AttemptError> {
    let mut request = Request::new(Full::new(req.body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = req.url;
    *request.headers_mut() = req.headers;

    let response = client
        .request(request)
        .await
        .map_err(|e| classify_request_error(&e))?;
    seen.status = Some(response.status().as_u16());
    seen.retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    let limit = req.excerpt_limit;
    let mut body = response.into_body();
    // Keep polling while the excerpt is not yet over the limit: a body that is
    // exactly `limit` long is then read to its end, which lets the connection
    // go back to the pool. Each frame is bounded by hyper's read buffer, so
    // memory stays flat whatever the server sends.
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| AttemptError::Body(error_message(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let room = limit - seen.excerpt.len();
        if data.len() > room {
            seen.excerpt.extend_from_slice(&data[..room]);
            break;
        }
        seen.excerpt.extend_from_slice(&data);
    }
    Ok(())
}

/// One delivery attempt to make with [`Outbound::send`].
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Absolute `http` or `https` URL.
    pub url: Uri,
    /// Sent as-is; hyper adds only `Host` and `content-length`.
    pub headers: HeaderMap,
    /// The POST body.
    pub body: Bytes,
    /// Bound on the whole attempt: connect, TLS, request, headers and excerpt.
    pub timeout: Duration,
    /// Most response-body bytes to keep.
    pub excerpt_limit: usize,
}

/// Everything observed during one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// Response status, set whenever response headers arrived, even if the
    /// body read afterwards failed or timed out.
    pub status: Option<u16>,
    /// Why the attempt did not complete cleanly; `None` means a response was
    /// received (any status, 3xx/4xx/5xx included) and the excerpt read.
    pub error: Option<AttemptError>,
    /// The raw `Retry-After` header value (seconds or HTTP date), unparsed.
    pub retry_after: Option<String>,
    /// From the start of `send` until the attempt ended (excerpt included).
    pub latency: Duration,
    /// The first `excerpt_limit` bytes of the response body.
    pub excerpt: Vec<u8>,
}

/// Why an attempt failed, with a short human-readable Display for delivery logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// The URL cannot be delivered to (wrong scheme, no host).
    #[error("invalid url: {0}")]
    Url(String),
    /// Name resolution failed.
    #[error("dns: {0}")]
    Dns(String),
    /// TCP connection could not be established.
    #[error("{0}")]
    Connect(String),
    /// TLS handshake or certificate verification failed.
    #[error("tls: {0}")]
    Tls(String),
    /// Every address of the target was refused by the [`AddressPolicy`].
    #[error("blocked: {0}")]
    Blocked(String),
    /// The overall attempt timeout expired.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The server sent something that is not HTTP/1.1, or closed/reset the
    /// connection before the response headers were complete.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The response headers arrived but reading the body then failed.
    #[error("reading response body: {0}")]
    Body(String),
}

impl AttemptError {
    /// Whether the failure says "could not reach the network/host at all".
    ///
    /// Used to detect an outage of our own uplink (many endpoints failing at
    /// once this way). `Blocked` is excluded: it is a local decision and says
    /// nothing about connectivity.
    pub fn is_connection_level(&self) -> bool {
        matches!(
            self,
            AttemptError::Dns(_) | AttemptError::Connect(_) | AttemptError::Tls(_)
        )
    }
}

impl From<&ConnectError> for AttemptError {
    fn from(e: &ConnectError) -> AttemptError {
        match e {
            ConnectError::InvalidUri(m) => AttemptError::Url(m.clone()),
            ConnectError::Dns(m) => AttemptError::Dns(m.clone()),
            ConnectError::Blocked(b) => AttemptError::Blocked(b.to_string()),
            ConnectError::Connect(m) => AttemptError::Connect(m.clone()),
        }
    }
}

/// All errors in a chain, looking *inside* `io::Error`s as well: its
/// `source()` returns the wrapped error's source, skipping the wrapped error
/// itself, and hyper-rustls/tokio-rustls put the `rustls::Error` exactly there.
fn error_chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        if out.len() >= 32 {
            break; // defensive: chains are short, but never loop forever
        }
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// "a: b: c" from an error chain, without hyper-util's uninformative
/// "client error (Connect)" wrapper and without the repeats that `io::Error`
/// wrappers produce by displaying their inner error.
fn error_message(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in error_chain(err) {
        if e.is::<hyper_util::client::legacy::Error>() {
            continue;
        }
        let text = e.to_string();
        if parts.last().is_some_and(|prev| prev.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

fn classify_request_error(err: &hyper_util::client::legacy::Error) -> AttemptError {
    let chain = error_chain(err);
    for e in &chain {
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            return c.into();
        }
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return AttemptError::Tls(t.to_string());
        }
    }
    for e in &chain {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::AddrNotAvailable
            ) {
                return AttemptError::Connect(error_message(err));
            }
        }
    }
    if err.is_connect() {
        // Our connector reports every TCP-level failure as ConnectError, and
        // the URL scheme was checked before sending, so whatever else failed
        // while connecting is the TLS layer (e.g. the peer closing mid-handshake).
        return AttemptError::Tls(error_message(err));
    }
    AttemptError::Protocol(error_message(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netpolicy::Cidr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    fn allow_loopback() -> AddressPolicy {
        AddressPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1".parse::<Cidr>().unwrap(),
        ])
    }

    fn outbound(policy: AddressPolicy) -> Outbound {
        Outbound::new(config(policy))
    }

    fn config(policy: AddressPolicy) -> OutboundConfig {
        OutboundConfig {
            policy,
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(30),
            max_idle_per_host: 4,
            proxy: None,
            resolver: None,
        }
    }

    /// Answers a name with `first` once, then `later` (DNS rebinding).
    #[derive(Debug)]
    struct Rebinding {
        first: SocketAddr,
        later: SocketAddr,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Resolve for Rebinding {
        fn resolve(
            &self,
            _host: String,
            _port: u16,
        ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let addr = if n == 0 { self.first } else { self.later };
            Box::pin(async move { Ok(vec![addr]) })
        }
    }

    #[tokio::test]
    async fn a_name_that_rebinds_to_a_blocked_address_is_not_connected_to() {
        // The allowed host answers; the blocked one counts every connection it gets.
        let allowed = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let allowed_addr = allowed.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = allowed.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        let blocked = TcpListener::bind("127.0.0.3:0").await.unwrap();
        let blocked_addr = SocketAddr::new(blocked.local_addr().unwrap().ip(), allowed_addr.port());
        let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = reached.clone();
        let blocked = TcpListener::bind(blocked_addr).await.unwrap_or(blocked);
        tokio::spawn(async move {
            while blocked.accept().await.is_ok() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let mut config = config(AddressPolicy::new(vec!["127.0.0.2/32".parse().unwrap()]));
        config.max_idle_per_host = 0;
        config.resolver = Some(Arc::new(Rebinding {
            first: allowed_addr,
            later: blocked_addr,
            calls: Default::default(),
        }));
        let outbound = Outbound::new(config);
        let url = format!("http://rebind.test:{}/hook", allowed_addr.port());
        let first = outbound.send(request(&url)).await;
        assert_eq!(first.status, Some(200), "{first:?}");
        let second = outbound.send(request(&url)).await;
        let error = second
            .error
            .expect("the rebound name is refused")
            .to_string();
        assert!(
            error.contains("blocked") && error.contains("127.0.0.3"),
            "{error}"
        );
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn deliveries_tunnel_through_a_connect_proxy_to_the_checked_address() {
        // A CONNECT proxy that records what it was asked for and splices bytes.
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = proxy.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    log.lock().unwrap().push(line.clone());
                    let target = line.split(' ').nth(1).unwrap_or_default().to_string();
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = server.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                });
            }
        });
        let mut with_proxy = config(allow_loopback());
        with_proxy.proxy = Some(format!("http://{proxy_addr}").parse().unwrap());
        let outbound = Outbound::new(with_proxy);
        let ok = outbound
            .send(request(&format!(
                "http://localhost:{}/hook",
                server_addr.port()
            )))
            .await;
        assert_eq!(ok.status, Some(204), "{ok:?}");
        let asked_for = asked.lock().unwrap().clone();
        assert_eq!(asked_for.len(), 1);
        assert!(
            asked_for[0].starts_with(&format!("CONNECT 127.0.0.1:{}", server_addr.port()))
                || asked_for[0].starts_with(&format!("CONNECT [::1]:{}", server_addr.port())),
            "the proxy is asked for the checked address, not the name: {asked_for:?}"
        );
        // Behind the proxy the policy still holds: a blocked target never reaches it.
        let mut strict = config(AddressPolicy::new(vec![]));
        strict.proxy = Some(format!("http://{proxy_addr}").parse().unwrap());
        let refused = Outbound::new(strict)
            .send(request(&format!(
                "http://127.0.0.1:{}/",
                server_addr.port()
            )))
            .await;
        assert!(refused.error.unwrap().to_string().contains("blocked"));
        assert_eq!(asked.lock().unwrap().len(), 1);
    }

    fn request(url: &str) -> OutboundRequest {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        OutboundRequest {
            url: url.parse().unwrap(),
            headers,
            body: Bytes::from_static(b"{\"hello\":1}"),
            timeout: Duration::from_secs(2),
            excerpt_limit: 1024,
        }
    }

    /// A server-side connection that can read whole HTTP/1.1 requests.
    struct Conn {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Conn {
        /// Reads one request (head + content-length body); None on EOF.
        async fn next_request(&mut self) -> Option<Vec<u8>> {
            loop {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    let total = end + 4 + len;
                    if self.buf.len() >= total {
                        return Some(self.buf.drain(..total).collect());
                    }
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// Resolves when the client closes (or resets) the connection.
        async fn wait_closed(&mut self) {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = self.stream.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
            }
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    struct Server {
        port: u16,
        accepts: Arc<AtomicUsize>,
        /// (connection number, raw request) for every request received.
        requests: mpsc::UnboundedReceiver<(usize, Vec<u8>)>,
    }

    /// Runs `handler` for every accepted connection on 127.0.0.1.
    async fn serve<F, Fut>(handler: F) -> Server
    where
        F: Fn(Conn, usize, mpsc::UnboundedSender<(usize, Vec<u8>)>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let (tx, requests) = mpsc::unbounded_channel();
        let counter = accepts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let conn = Conn {
                    stream,
                    buf: Vec::new(),
                };
                tokio::spawn(handler(conn, n, tx.clone()));
            }
        });
        Server {
            port,
            accepts,
            requests,
        }
    }

    /// Answers every request on a connection with `response` (keep-alive).
    async fn respond_with(response: &'static [u8]) -> Server {
        serve(move |mut conn, n, tx| async move {
            while let Some(req) = conn.next_request().await {
                let _ = tx.send((n, req));
                if conn.stream.write_all(response).await.is_err() {
                    break;
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn ok_response_records_status_excerpt_and_sends_request_as_given() {
        let mut server =
            respond_with(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nretry-after: 7\r\n\r\nthanx")
                .await;
        let out = outbound(allow_loopback());
        let res = out
            .send(request(&format!(
                "http://127.0.0.1:{}/hook?x=1",
                server.port
            )))
            .await;
        assert_eq!(res.error, None);
        assert_eq!(res.status, Some(200));
        assert_eq!(res.excerpt, b"thanx");
        assert_eq!(res.retry_after.as_deref(), Some("7"));
        assert!(res.latency < Duration::from_secs(1), "{:?}", res.latency);

        let (_, raw) = server.requests.recv().await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{raw}");
        let lower = raw.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "{raw}"
        );
        assert!(lower.contains("webhook-id: msg_1\r\n"), "{raw}");
        assert!(
            lower.contains(&format!("host: 127.0.0.1:{}\r\n", server.port)),
            "{raw}"
        );
        assert!(lower.contains("content-length: 11\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\n{\"hello\":1}"), "{raw}");
    }

    #[tokio::test]
    async fn server_error_is_a_status_not_an_error() {
        let server =
            respond_with(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops")
                .await;
        let res = outbound(allow_loopback())
            .send(request(&format!("http://127.0.0.1:{}/", server.port)))
            .await;
        assert_eq!(res.status, Some(500));
        assert_eq!(res.error, None);
        assert_eq!(res.excerpt, b"oops");
        assert_eq!(res.retry_after, None);
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let mut server = respond_with(
            b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let res = outbound(allow_loopback())
            .send(request(&format!("http://127.0.0.1:{}/", server.port)))
            .await;
        assert_eq!(res.status, Some(302));
        assert_eq!(res.error, None);
        assert!(res.excerpt.is_empty());
        assert!(server.requests.recv().await.is_some());
        assert!(server.requests.try_recv().is_err(), "exactly one request");
    }

    #[tokio::test]
    async fn excerpt_is_capped_and_large_body_is_not_read() {
        const SIZE: usize = 10 * 1024 * 1024;
        let server = serve(|mut conn, _, _| async move {
            if conn.next_request().await.is_none() {
                return;
            }
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
            if conn.stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..SIZE / chunk.len() {
                // Fails with a reset once the client drops the body.
                if conn.stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let mut req = request(&format!("http://127.0.0.1:{}/", server.port));
        req.excerpt_limit = 100;
        let res = outbound(allow_loopback()).send(req).await;
        assert_eq!(res.error, None);
        assert_eq!(res.status, Some(200));
        assert_eq!(res.excerpt, vec![b'x'; 100]);
        assert!(
            res.latency < Duration::from_millis(500),
            "{:?}",
            res.latency
        );
    }

    #[tokio::test]
    async fn excerpt_limit_zero_keeps_nothing() {
        let server = respond_with(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let mut req = request(&format!("http://127.0.0.1:{}/", server.port));
        req.excerpt_limit = 0;
        let res = outbound(allow_loopback()).send(req).await;
        assert_eq!((res.status, res.error), (Some(200), None));
        assert!(res.excerpt.is_empty());
    }

    #[tokio::test]
    async fn hanging_server_times_out() {
        let server = serve(|mut conn, _, _| async move {
            let _ = conn.next_request().await;
            conn.wait_closed().await;
        })
        .await;
        let mut req = request(&format!("http://127.0.0.1:{}/", server.port));
        req.timeout = Duration::from_millis(300);
        let res = outbound(allow_loopback()).send(req).await;
        assert_eq!(res.status, None);
        assert_eq!(
            res.error,
            Some(AttemptError::Timeout(Duration::from_millis(300)))
        );
        assert_eq!(
            res.error.as_ref().unwrap().to_string(),
            "timed out after 300ms"
        );
        assert!(!res.error.unwrap().is_connection_level());
        assert!(res.latency >= Duration::from_millis(300));
        assert!(
            res.latency < Duration::from_millis(1000),
            "{:?}",
            res.latency
        );
    }

    #[tokio::test]
    async fn timeout_during_body_keeps_status_and_partial_excerpt() {
        let server = serve(|mut conn, _, _| async move {
            let _ = conn.next_request().await;
            let _ = conn
                .stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 120\r\ncontent-length: 100\r\n\r\npart")
                .await;
            conn.wait_closed().await;
        })
        .await;
        let mut req = request(&format!("http://127.0.0.1:{}/", server.port));
        req.timeout = Duration::from_millis(300);
        let res = outbound(allow_loopback()).send(req).await;
        assert_eq!(res.status, Some(503));
        assert_eq!(res.retry_after.as_deref(), Some("120"));
        assert_eq!(res.excerpt, b"part");
        assert_eq!(
            res.error,
            Some(AttemptError::Timeout(Duration::from_millis(300)))
        );
    }

    #[tokio::test]
    async fn truncated_body_is_a_body_error_with_status() {
        let server = serve(|mut conn, _, _| async move {
            let _ = conn.next_request().await;
            let _ = conn
                .stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
                .await;
            // Dropping the stream closes it 95 bytes early.
        })
        .await;
        let res = outbound(allow_loopback())
            .send(request(&format!("http://127.0.0.1:{}/", server.port)))
            .await;
        assert_eq!(res.status, Some(200));
        assert_eq!(res.excerpt, b"short");
        match res.error {
            Some(AttemptError::Body(ref msg)) => assert!(!msg.is_empty()),
            ref other => panic!("expected Body error, got {other:?}"),
        }
        assert!(res
            .error
            .unwrap()
            .to_string()
            .starts_with("reading response body: "));
    }

    #[tokio::test]
    async fn connection_refused() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let res = outbound(allow_loopback())
            .send(request(&format!("http://127.0.0.1:{port}/")))
            .await;
        assert_eq!(res.status, None);
        let err = res.error.unwrap();
        assert_eq!(
            err,
            AttemptError::Connect(format!("connection refused to 127.0.0.1:{port}"))
        );
        assert_eq!(
            err.to_string(),
            format!("connection refused to 127.0.0.1:{port}")
        );
        assert!(err.is_connection_level());
    }

    #[tokio::test]
    async fn garbage_response_is_a_protocol_error() {
        let server = serve(|mut conn, _, _| async move {
            let _ = conn.next_request().await;
            let _ = conn
                .stream
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n")
                .await;
        })
        .await;
        let res = outbound(allow_loopback())
            .send(request(&format!("http://127.0.0.1:{}/", server.port)))
            .await;
        assert_eq!(res.status, None);
        let err = res.error.unwrap();
        assert!(matches!(err, AttemptError::Protocol(_)), "{err:?}");
        assert!(err.to_string().starts_with("protocol error: "), "{err}");
        assert!(!err.is_connection_level());
    }

    #[tokio::test]
    async fn close_before_response_is_a_protocol_error() {
        let server = serve(|mut conn, _, _| async move {
            let _ = conn.next_request().await;
        })
        .await;
        let res = outbound(allow_loopback())
            .send(request(&format!("http://127.0.0.1:{}/", server.port)))
            .await;
        let err = res.error.unwrap();
        assert!(matches!(err, AttemptError::Protocol(_)), "{err:?}");
    }

    #[tokio::test]
    async fn loopback_is_blocked_without_allow_and_never_dialled() {
        let server = respond_with(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let out = outbound(AddressPolicy::default());
        for host in [
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            // getaddrinfo's inet_aton accepts this as 127.0.0.1.
            "2130706433".to_string(),
            "[::1]".to_string(),
            "[::ffff:127.0.0.1]".to_string(),
        ] {
            let res = out
                .send(request(&format!("http://{host}:{}/", server.port)))
                .await;
            assert_eq!(res.status, None, "{host}");
            let err = res.error.unwrap();
            match &err {
                AttemptError::Blocked(msg) => {
                    assert!(msg.contains("loopback"), "{host}: {msg}");
                    assert!(msg.contains("delivery.allow_networks"), "{host}: {msg}");
                }
                other => panic!("{host}: expected Blocked, got {other:?}"),
            }
            assert!(err.to_string().starts_with("blocked: "), "{err}");
            assert!(!err.is_connection_level());
        }
        assert_eq!(server.accepts.load(Ordering::SeqCst), 0);

        let res = out
            .send(request("https://169.254.169.254/latest/meta-data"))
            .await;
        assert_eq!(
            res.error.unwrap().to_string(),
            "blocked: 169.254.169.254 is in a link-local (cloud metadata) range; \
             add it to delivery.allow_networks to allow it"
        );
    }

    #[tokio::test]
    async fn allow_list_permits_loopback_by_ip_and_by_name() {
        let server = respond_with(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let out = outbound(allow_loopback());
        for host in ["127.0.0.1", "localhost"] {
            let res = out
                .send(request(&format!("http://{host}:{}/", server.port)))
                .await;
            assert_eq!((res.status, &res.error), (Some(204), &None), "{host}");
        }
        // Only 127.0.0.0/8 allowed: localhost must still work via its IPv4
        // address even if ::1 comes first in the resolver's answer.
        let out = outbound(AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]));
        let res = out
            .send(request(&format!("http://localhost:{}/", server.port)))
            .await;
        assert_eq!((res.status, res.error), (Some(204), None));
    }

    #[tokio::test]
    async fn ipv6_literal_is_connected_when_allowed() {
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            eprintln!("no IPv6 loopback here; skipping");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = Conn {
                stream,
                buf: Vec::new(),
            };
            conn.next_request().await.unwrap();
            let _ = conn
                .stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nv6")
                .await;
        });
        let res = outbound(allow_loopback())
            .send(request(&format!("http://[::1]:{port}/")))
            .await;
        assert_eq!((res.status, res.error), (Some(200), None));
        assert_eq!(res.excerpt, b"v6");
    }

    #[tokio::test]
    async fn set_policy_applies_to_warm_hosts_too() {
        let server = respond_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let out = outbound(allow_loopback());
        let url = format!("http://127.0.0.1:{}/", server.port);
        let res = out.send(request(&url)).await;
        assert_eq!((res.status, res.error), (Some(200), None));

        // A clone shares the swap.
        out.clone().set_policy(AddressPolicy::default());
        assert!(out.policy().allow().is_empty());
        let res = out.send(request(&url)).await;
        assert!(
            matches!(res.error, Some(AttemptError::Blocked(_))),
            "{res:?}"
        );

        out.set_policy(allow_loopback());
        let res = out.send(request(&url)).await;
        assert_eq!((res.status, res.error), (Some(200), None));
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection() {
        let mut server = respond_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let out = outbound(allow_loopback());
        let url = format!("http://127.0.0.1:{}/", server.port);
        for _ in 0..3 {
            let res = out.send(request(&url)).await;
            assert_eq!((res.status, res.error), (Some(200), None));
        }
        let mut conns = Vec::new();
        while let Ok((n, _)) = server.requests.try_recv() {
            conns.push(n);
        }
        assert_eq!(conns, vec![0, 0, 0], "all requests on the first connection");
        assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalid_urls_are_rejected_before_connecting() {
        let out = outbound(allow_loopback());
        for url in ["ftp://127.0.0.1/x", "/relative/only"] {
            let res = out.send(request(url)).await;
            assert!(
                matches!(res.error, Some(AttemptError::Url(_))),
                "{url}: {res:?}"
            );
        }
    }

    #[test]
    fn outbound_and_send_future_can_move_between_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>(_: &T) {}
        fn assert_send<T: Send>(_: &T) {}
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let out = outbound(AddressPolicy::default());
        assert_send_sync(&out);
        let fut = out.send(request("http://127.0.0.1:9/"));
        assert_send(&fut);
    }

    #[test]
    fn classification_of_error_chains() {
        // rustls errors are found even when wrapped twice in io::Error, as
        // tokio-rustls and hyper-rustls do.
        let tls = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let chain = error_chain(&tls);
        assert!(chain.iter().any(|e| e.is::<rustls::Error>()));
        assert_eq!(
            error_message(&tls),
            "invalid peer certificate: UnknownIssuer"
        );

        let dns = ConnectError::Dns("no such host example.invalid".into());
        assert_eq!(
            AttemptError::from(&dns).to_string(),
            "dns: no such host example.invalid"
        );
        assert!(AttemptError::from(&dns).is_connection_level());
        assert!(AttemptError::Tls("x".into()).is_connection_level());
        assert!(!AttemptError::Protocol("x".into()).is_connection_level());
        assert!(!AttemptError::Body("x".into()).is_connection_level());
        assert!(!AttemptError::Url("x".into()).is_connection_level());
        assert_eq!(
            AttemptError::Timeout(Duration::from_secs(30)).to_string(),
            "timed out after 30s"
        );
        assert_eq!(
            dns_message(
                "example.invalid",
                &io::Error::other(
                    "failed to lookup address information: Name or service not known"
                )
            ),
            "no such host example.invalid"
        );
    }
}
