//! Data export (seed 003 "Export Requests"): a request row, a background job that writes
//! one JSON file of everything the user's rows hold (no secret, no hash) to `EXPORT_DIR`,
//! and a download for the owner for 24 hours. The file stays out of the database.

use std::path::PathBuf;

use chrono::{Duration, Utc};
use uuid::Uuid;

use super::account_event;
use crate::{
    accounts::{
        models::{ExportStatus, ExportView},
        repo,
    },
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext},
};

/// How long a finished export can be fetched.
pub const EXPORT_TTL: Duration = Duration::hours(24);
/// A `processing` request older than this lost its worker (a crash) and is taken again.
const STALE_SECS: f64 = 600.0;

/// `POST /users/me/export`: a new request, or the one already waiting (one at a time).
pub async fn request_export(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<ExportView> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let export = repo::open_export(&mut *tx, auth.user_id).await?;
    account_event(
        &mut tx,
        Some(auth.user_id),
        "export_requested",
        serde_json::json!({ "export_id": export.id }),
        client,
    )
    .await?;
    crate::core::db::commit(tx).await?;
    Ok(export)
}

/// `GET /users/me/export/{id}`: its status and, while it can be fetched, where.
pub async fn export_status(state: &AppState, auth: &AuthUser, id: Uuid) -> AppResult<ExportStatus> {
    let export = repo::export_of(&state.db, auth.user_id, id).await?.ok_or(AppError::NotFound)?;
    let live = export.status == "complete" && export.expires_at.is_some_and(|at| at > Utc::now());
    let download_url = live.then(|| format!("{}/api/v1/users/me/export/{id}/download", state.config.public_base_url));
    Ok(ExportStatus { export, download_url })
}

/// The file of a complete, unexpired export of the caller's; anyone else's is 404.
pub async fn export_file(state: &AppState, auth: &AuthUser, id: Uuid) -> AppResult<Vec<u8>> {
    let path = repo::export_file(&state.db, auth.user_id, id).await?.ok_or(AppError::NotFound)?;
    tokio::fs::read(&path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AppError::NotFound,
        _ => AppError::internal(e),
    })
}

fn file_of(state: &AppState, id: Uuid) -> PathBuf {
    state.config.export_dir.join(format!("{id}.json"))
}

/// Builds every waiting export, one at a time; returns how many were finished. Each is
/// claimed first (`FOR UPDATE SKIP LOCKED`), so several instances share the queue. A
/// failure marks that request failed (with the reason, never a secret) and goes on.
pub async fn run_exports_once(state: &AppState) -> AppResult<u64> {
    let mut done = 0;
    while let Some((id, user)) = repo::claim_export(&state.db, STALE_SECS).await? {
        match build(state, id, user).await {
            Ok(()) => done += 1,
            Err(e) => {
                tracing::error!(export = %id, error = %e, "data export failed");
                repo::fail_export(&state.db, id, "the export could not be written; ask for a new one").await?;
            }
        }
    }
    Ok(done)
}

async fn build(state: &AppState, id: Uuid, user: Uuid) -> AppResult<()> {
    // The document is a read of many tables: the replica's work when one is in use (at most
    // REPLICA_MAX_LAG_SECONDS behind the request).
    let document = crate::reports!(state, |db| repo::export_document(db, user))?;
    let bytes = serde_json::to_vec_pretty(&document).map_err(AppError::internal)?;
    let path = file_of(state, id);
    // Written beside its final name, then renamed: a reader never sees half a file.
    let partial = path.with_extension("json.partial");
    tokio::fs::create_dir_all(&state.config.export_dir).await.map_err(AppError::internal)?;
    tokio::fs::write(&partial, &bytes).await.map_err(AppError::internal)?;
    tokio::fs::rename(&partial, &path).await.map_err(AppError::internal)?;
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let path = path.to_string_lossy();
    repo::complete_export(&state.db, id, &path, size, Utc::now() + EXPORT_TTL).await?;
    Ok(())
}

/// Expires finished exports past their 24 h and deletes their files; returns how many.
/// The rows change first (committed on their own), so a file is never deleted while its
/// row still offers it for download.
pub async fn expire_exports(db: &sqlx::PgPool) -> AppResult<u64> {
    let paths = repo::expire_exports(db).await?;
    for path in &paths {
        if let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "an expired export file could not be deleted");
        }
    }
    Ok(paths.len() as u64)
}
