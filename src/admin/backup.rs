//! `POST /v1/backup`: the daemon copies its live store to a new directory.

use super::routes::{bad, internal, json_body, AdminState, Answer, Fail};
use crate::api;
use crate::error::Error;
use crate::http::json_response;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::path::PathBuf;

/// Runs the backup off the async threads; ingest and delivery go on meanwhile.
pub(super) async fn backup(s: &AdminState, req: Request<Incoming>) -> Answer {
    let request: api::BackupRequest = json_body(req).await?;
    let path = PathBuf::from(&request.path);
    tracing::info!(path = %path.display(), "backup started");
    let store = s.store.clone();
    let target = path.clone();
    let done = tokio::task::spawn_blocking(move || store.backup(&target))
        .await
        .map_err(|e| {
            Fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the backup task failed: {e}"),
            )
        })?;
    let summary = match done {
        Ok(summary) => summary,
        Err(e @ Error::Backup { .. }) => {
            tracing::warn!(error = %e, "backup refused");
            return Err(bad(e.to_string()));
        }
        Err(e) => return Err(internal(e)),
    };
    tracing::info!(
        path = %path.display(),
        events = summary.events,
        deliveries = summary.deliveries,
        open = summary.open_deliveries,
        bytes = summary.bytes,
        took_ms = summary.took.as_millis() as u64,
        "backup written"
    );
    Ok(json_response(
        StatusCode::OK,
        &api::Backup {
            path: path.display().to_string(),
            subscriptions: summary.subscriptions,
            events: summary.events,
            deliveries: summary.deliveries,
            open_deliveries: summary.open_deliveries,
            size_bytes: summary.bytes,
            took_ms: summary.took.as_millis() as u64,
        },
    ))
}
