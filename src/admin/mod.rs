//! The admin API: HTTP/1.1 + JSON on a Unix socket, never on the network.

mod backup;
mod routes;
mod views;

pub use routes::AdminState;

use crate::error::{Error, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

/// Binds the admin socket (mode 0660): a stale socket file is replaced, a
/// live one (another hookd answering on it) is refused.
pub fn bind_socket(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    let err = |reason: String| Error::ConfigValue {
        key: "admin.socket".into(),
        reason: format!("{}: {reason}", path.display()),
    };
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(err(
                    "another process is answering on this socket (is hookd already running?)"
                        .into(),
                ))
            }
            Err(_) => std::fs::remove_file(path).map_err(|e| {
                err(format!(
                    "a stale socket is there and cannot be removed: {e}"
                ))
            })?,
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create its directory: {e}")))?;
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| err(format!("cannot bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err(format!("cannot set its mode to 0660: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| err(format!("cannot make it non-blocking: {e}")))?;
    Ok(listener)
}

/// Serves admin requests until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let peer = stream.peer_cred().ok();
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(routes::handle(state, peer, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
