//! A minimal HTTP/1.1 client for the ingest endpoint: one connection per request.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// An answer as received.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; `Null` when it is not JSON (the test then shows it).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text, for failure messages and `/metrics`.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `addr` and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    exchange(addr, method, path, headers, body.into())
        .await
        .unwrap_or_else(|e| panic!("ingest request {path} to {addr}: {e}"))
}

/// One request on a fresh connection; a refused or cut connection is an `Err`.
pub async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Answer, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body)).expect("a valid request");
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("answer body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Writes `bytes` on a fresh connection to `addr`, then reads until the
/// server closes it. Returns what was read and when the close came; `None`
/// if the connection is still open after `deadline`.
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    deadline: std::time::Duration,
) -> Option<(String, std::time::Instant)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to ingest at {addr}: {e}"));
    stream.write_all(bytes).await.expect("writing the request");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| {
        (
            String::from_utf8_lossy(&answer).into_owned(),
            std::time::Instant::now(),
        )
    })
}
