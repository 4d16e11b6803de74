//! The loopback HTTP/1.1 server under both test receivers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A server on 127.0.0.1:0; stops accepting when dropped.
pub struct Serving {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Serves every request with `answer(shared, request)`.
pub async fn serve<S, F, Fut>(shared: Arc<S>, answer: F) -> Serving
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the receiver binds 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(shared.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Serving { addr, accept }
}
