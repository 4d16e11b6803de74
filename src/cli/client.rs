//! A small client for the daemon's admin API (HTTP/1.1 + JSON on a Unix socket).
//!
//! Used by the CLI and reusable from tests:
//!
//! ```ignore
//! use crate::cli::client::{with_query, AdminClient};
//!
//! let client = AdminClient::new("/run/hookd/admin.sock");
//! let status: crate::api::Status = client.get_json("/v1/status").await?;
//! let path = with_query("/v1/deliveries", &[("key", Some("order 42")), ("limit", None)]);
//! let (code, body) = client.request(hyper::Method::GET, &path, None).await?;
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use super::error::CliError;
use crate::api::ErrorBody;

/// How long one request may take, connect to last byte, unless changed with
/// [`AdminClient::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers bigger than this are refused (the admin API's lists are bounded).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A client of the admin API. Cheap to clone; opens one connection per request.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
    timeout: Duration,
}

impl AdminClient {
    /// A client of the daemon listening on `socket`, with a 30 s timeout per request.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        AdminClient {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket path this client connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Send one request and return the status and body as received, whatever
    /// the status. `path_and_query` is e.g. `/v1/events?limit=10` (build
    /// queries with [`with_query`]); `body`, when given, is sent as JSON.
    ///
    /// Fails only when the daemon cannot be reached or the exchange breaks,
    /// or after the timeout.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), CliError> {
        let req = build_request(method, path_and_query, body)?;
        match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(answer) => answer,
            Err(_) => Err(CliError::Timeout {
                socket: self.socket.clone(),
                after: self.timeout,
            }),
        }
    }

    /// Like [`request`](Self::request), but a status other than 2xx becomes an
    /// error: [`CliError::Api`] with the API's message when the body is the
    /// usual `{"error":{...}}`, else [`CliError::UnexpectedStatus`].
    pub async fn request_ok(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Bytes, CliError> {
        let (status, bytes) = self.request(method, path_and_query, body).await?;
        check_status(status, bytes)
    }

    /// `GET` a path and decode the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, CliError> {
        let bytes = self.request_ok(Method::GET, path_and_query, None).await?;
        decode(&Method::GET, path_and_query, &bytes)
    }

    /// Send `body` as JSON with `method` (`POST`, `PATCH`, ...) and decode the JSON answer.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, CliError> {
        let value = serde_json::to_value(body)
            .map_err(|e| CliError::InvalidRequest(format!("encoding the request body: {e}")))?;
        let bytes = self
            .request_ok(method.clone(), path_and_query, Some(value))
            .await?;
        decode(&method, path_and_query, &bytes)
    }

    /// `POST` without a body (pause, resume, rotate-secret, redeliver) and
    /// decode the JSON answer.
    pub async fn post_empty<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, CliError> {
        let bytes = self.request_ok(Method::POST, path_and_query, None).await?;
        decode(&Method::POST, path_and_query, &bytes)
    }

    /// `DELETE` a path; any 2xx answer (normally 204) is success.
    pub async fn delete(&self, path_and_query: &str) -> Result<(), CliError> {
        self.request_ok(Method::DELETE, path_and_query, None)
            .await
            .map(drop)
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), CliError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| CliError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let http_err = |source: Box<dyn std::error::Error + Send + Sync>| CliError::Http {
            socket: self.socket.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http_err(e.into()))?;
        // The connection task ends when `sender` is dropped and the exchange is done.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http_err(e.into()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(http_err)?
            .to_bytes();
        Ok((status, body))
    }
}

fn build_request(
    method: Method,
    path_and_query: &str,
    body: Option<serde_json::Value>,
) -> Result<Request<Full<Bytes>>, CliError> {
    if !path_and_query.starts_with('/') {
        return Err(CliError::InvalidRequest(format!(
            "path must start with '/': {path_and_query}"
        )));
    }
    let mut builder = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(HOST, HeaderValue::from_static("hookd"))
        .header(ACCEPT, HeaderValue::from_static("application/json"));
    let payload = match body {
        Some(v) => {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Bytes::from(
                serde_json::to_vec(&v).map_err(|e| {
                    CliError::InvalidRequest(format!("encoding the request body: {e}"))
                })?,
            )
        }
        None => Bytes::new(),
    };
    builder
        .body(Full::new(payload))
        .map_err(|e| CliError::InvalidRequest(format!("{path_and_query}: {e}")))
}

/// Turn a non-2xx answer into the matching error; pass 2xx bodies through.
pub(crate) fn check_status(status: StatusCode, bytes: Bytes) -> Result<Bytes, CliError> {
    if status.is_success() {
        return Ok(bytes);
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(ErrorBody { error }) => Err(CliError::Api {
            status,
            code: error.code,
            message: error.message,
        }),
        Err(_) => Err(CliError::UnexpectedStatus {
            status,
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned(),
        }),
    }
}

/// Decode a JSON answer, naming the request when it does not fit `T`.
pub(crate) fn decode<T: DeserializeOwned>(
    method: &Method,
    path_and_query: &str,
    bytes: &[u8],
) -> Result<T, CliError> {
    serde_json::from_slice(bytes).map_err(|source| CliError::Decode {
        request: format!("{method} {path_and_query}"),
        source,
    })
}

/// Percent-encode a path segment or query value: everything but the RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` of its UTF-8 bytes.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// `path` with a query of the given parameters; `None` values are left out,
/// names and values are percent-encoded.
/// `with_query("/v1/events", &[("type", Some("a b")), ("limit", None)])` is
/// `/v1/events?type=a%20b`.
pub fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut out = path.to_string();
    let mut sep = '?';
    for (name, value) in params {
        if let Some(v) = value {
            out.push(sep);
            out.push_str(&percent_encode(name));
            out.push('=');
            out.push_str(&percent_encode(v));
            sep = '&';
        }
    }
    out
}

/// `/v1/subscriptions/{id}` and the like: `prefix` followed by the
/// percent-encoded `id` and then `suffix` (e.g. `/pause`, or empty).
pub fn item_path(prefix: &str, id: &str, suffix: &str) -> String {
    format!(
        "{}/{}{suffix}",
        prefix.trim_end_matches('/'),
        percent_encode(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    use crate::cli::tests::serve;
    use hyper::body::Incoming;
    use hyper::Response;

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("sub_01H.x-y~z"), "sub_01H.x-y~z");
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_encode("/data/x > 5"), "%2Fdata%2Fx%20%3E%205");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode("a:b"), "a%3Ab");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("?#+"), "%3F%23%2B");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn query_building() {
        assert_eq!(with_query("/v1/events", &[]), "/v1/events");
        assert_eq!(with_query("/v1/events", &[("type", None)]), "/v1/events");
        assert_eq!(
            with_query(
                "/v1/deliveries",
                &[("sub", None), ("key", Some("k 1&2")), ("limit", Some("5"))]
            ),
            "/v1/deliveries?key=k%201%262&limit=5"
        );
        assert_eq!(
            item_path("/v1/subscriptions", "../status", "/pause"),
            "/v1/subscriptions/..%2Fstatus/pause"
        );
        assert_eq!(item_path("/v1/events/", "e1", ""), "/v1/events/e1");
    }

    /// A tiny admin API: echoes the request on `/echo`, answers fixed bodies elsewhere.
    async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let ctype = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let path = req.uri().path().to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let (status, body): (u16, String) = match path.as_str() {
            "/echo" => {
                let v = serde_json::json!({
                    "method": method, "uri": uri, "host": host, "content_type": ctype,
                    "body": String::from_utf8_lossy(&body),
                });
                (200, v.to_string())
            }
            "/v1/status" => (200, r#"{"version":"0.1.0","uptime_secs":5}"#.to_string()),
            "/v1/subscriptions/gone" => (
                404,
                r#"{"error":{"code":"not_found","message":"no subscription gone"}}"#.to_string(),
            ),
            "/v1/subscriptions/s1" => (204, String::new()),
            "/hang" => std::future::pending().await,
            _ => (502, "<html>bad gateway</html>".to_string()),
        };
        Ok(Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    }

    #[derive(serde::Deserialize)]
    struct Echo {
        method: String,
        uri: String,
        host: String,
        content_type: String,
        body: String,
    }

    #[tokio::test]
    async fn ok_json_answer() {
        let (_dir, sock) = serve(handle);
        let client = AdminClient::new(&sock);
        let v: serde_json::Value = client.get_json("/v1/status").await.unwrap();
        assert_eq!(v["version"], "0.1.0");
        let (status, body) = client
            .request(Method::GET, "/v1/status", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], br#"{"version":"0.1.0","uptime_secs":5}"#);
    }

    #[tokio::test]
    async fn sends_host_body_and_encoded_query() {
        let (_dir, sock) = serve(handle);
        let client = AdminClient::new(&sock);
        let path = with_query("/echo", &[("key", Some("a b/c"))]);
        let echo: Echo = client
            .send_json(
                Method::PATCH,
                &path,
                &serde_json::json!({"url": "http://x"}),
            )
            .await
            .unwrap();
        assert_eq!(echo.method, "PATCH");
        assert_eq!(echo.uri, "/echo?key=a%20b%2Fc");
        assert_eq!(echo.host, "hookd");
        assert_eq!(echo.content_type, "application/json");
        assert_eq!(echo.body, r#"{"url":"http://x"}"#);

        let echo: Echo = client.post_empty("/echo").await.unwrap();
        assert_eq!(echo.method, "POST");
        assert_eq!(echo.body, "");
        assert_eq!(echo.content_type, "");
    }

    #[tokio::test]
    async fn api_error_body_becomes_cli_error_with_message() {
        let (_dir, sock) = serve(handle);
        let client = AdminClient::new(&sock);
        let err = client
            .get_json::<serde_json::Value>("/v1/subscriptions/gone")
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no subscription gone");
        assert_eq!(err.api_code(), Some("not_found"));
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(err.exit_code(), 1);
        // the raw call still hands back the status and body
        let (status, body) = client
            .request(Method::GET, "/v1/subscriptions/gone", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.starts_with(b"{\"error\""));
    }

    #[tokio::test]
    async fn non_api_error_body_and_204() {
        let (_dir, sock) = serve(handle);
        let client = AdminClient::new(&sock);
        let err = client
            .get_json::<serde_json::Value>("/nope")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "hookd answered 502 Bad Gateway: <html>bad gateway</html>"
        );
        client.delete("/v1/subscriptions/s1").await.unwrap();
    }

    #[tokio::test]
    async fn undecodable_answer_names_the_request() {
        let (_dir, sock) = serve(handle);
        let client = AdminClient::new(&sock);
        let err = client
            .get_json::<crate::api::Status>("/v1/status")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("could not decode the answer to GET /v1/status: "),
            "{msg}"
        );
        assert!(msg.contains("--json"), "{msg}");
    }

    #[tokio::test]
    async fn missing_socket_gives_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nope.sock");
        let client = AdminClient::new(&sock);
        let err = client
            .get_json::<serde_json::Value>("/v1/status")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CliError::Connect { .. }), "{err:?}");
        assert!(msg.contains(&sock.display().to_string()), "{msg}");
        assert!(msg.contains("--socket"), "{msg}");
        assert!(msg.contains("HOOKD_SOCKET"), "{msg}");
        assert!(msg.contains("is the daemon running?"), "{msg}");
        assert_eq!(err.exit_code(), 3);
    }

    #[tokio::test]
    async fn stale_socket_is_refused_with_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let err = AdminClient::new(&sock)
            .get_json::<serde_json::Value>("/v1/status")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("nothing is listening on"), "{msg}");
        assert!(msg.contains(&sock.display().to_string()), "{msg}");
    }

    #[tokio::test]
    async fn timeout_is_reported() {
        let (_dir, sock) = serve(handle);
        let client = AdminClient::new(&sock).with_timeout(Duration::from_millis(100));
        let err = client
            .request(Method::GET, "/hang", None)
            .await
            .unwrap_err();
        assert!(matches!(err, CliError::Timeout { .. }), "{err:?}");
        assert!(
            err.to_string().contains("did not answer within 100ms"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_path_is_refused_before_connecting() {
        let client = AdminClient::new("/nonexistent/admin.sock");
        let err = client
            .request(Method::GET, "v1/status", None)
            .await
            .unwrap_err();
        assert!(matches!(err, CliError::InvalidRequest(_)), "{err:?}");
    }
}
