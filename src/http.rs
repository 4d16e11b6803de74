//! Small HTTP helpers shared by the ingest and admin servers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::StatusCode;
use serde::Serialize;

/// Every response hookd sends.
pub type Response = hyper::Response<Full<Bytes>>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Full<Bytes> {
    Full::new(bytes.into())
}

/// A JSON response.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("API values always serialize");
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body))
        .expect("static headers are valid")
}

/// `{"error": {"code": ..., "message": ...}}` with `status`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Read(String),
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use hyper::body::Body;
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// A stream that notes when bytes last moved, for the idle timeout.
pub struct Tracked<S> {
    inner: S,
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: std::time::Instant,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; the returned clock reads milliseconds since the wrap.
    pub fn new(inner: S) -> (Tracked<S>, IdleClock) {
        let last = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let started = std::time::Instant::now();
        let clock = IdleClock {
            last: last.clone(),
            started,
        };
        (
            Tracked {
                inner,
                last,
                started,
            },
            clock,
        )
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }
}

/// When a [`Tracked`] stream last moved bytes.
pub struct IdleClock {
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: std::time::Instant,
}

/// Resolves once `clock`'s stream has moved no bytes for `limit`.
pub async fn idle(clock: &IdleClock, limit: std::time::Duration) {
    let limit_ms = limit.as_millis() as u64;
    loop {
        let now = clock.started.elapsed().as_millis() as u64;
        let last = clock.last.load(std::sync::atomic::Ordering::Relaxed);
        let quiet = now.saturating_sub(last);
        if quiet >= limit_ms {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(limit_ms - quiet)).await;
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
