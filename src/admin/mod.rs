//! The admin API: HTTP/1.1 + JSON on a Unix socket, never on the network.

mod backup;
mod routes;
mod views;

pub use routes::AdminState;

use crate::config::AdminConfig;
use crate::error::{Error, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// Binds the admin socket with `admin.mode` and `admin.group`: a stale
/// socket file is replaced, a live one (another hookd answering on it) is refused.
pub fn bind_socket(config: &AdminConfig) -> Result<std::os::unix::net::UnixListener> {
    let path = config.socket.as_path();
    let err = |reason: String| Error::ConfigValue {
        key: "admin.socket".into(),
        reason: format!("{}: {reason}", path.display()),
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(err(
                "something that is not a socket is there; hookd will not delete it: move it \
                 or point admin.socket elsewhere"
                    .into(),
            ));
        }
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
    let mode = config.socket_mode().map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| err(format!("cannot set its mode to {mode:o}: {e}")))?;
    if let Some(group) = &config.group {
        let gid = group_id(group).ok_or_else(|| Error::ConfigValue {
            key: "admin.group".into(),
            reason: format!("no group {group:?} in /etc/group"),
        })?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| Error::ConfigValue {
            key: "admin.group".into(),
            reason: format!("cannot give {} to group {group}: {e}", path.display()),
        })?;
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| err(format!("cannot make it non-blocking: {e}")))?;
    Ok(listener)
}

/// The gid of a group name (or a number), from /etc/group.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == group).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// The uid this process runs as (the owner of what it creates).
pub fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
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
        if !state.peer_allowed(peer.as_ref()) {
            tracing::warn!(
                uid = peer.map(|p| p.uid()),
                gid = peer.map(|p| p.gid()),
                "admin connection refused: uid not in admin.allowed_uids"
            );
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(crate::http::error_response(
                        hyper::StatusCode::FORBIDDEN,
                        "forbidden",
                        "your uid is not in admin.allowed_uids",
                    ))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            continue;
        }
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
