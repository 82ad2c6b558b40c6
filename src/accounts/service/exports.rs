//! Data export (seed 003 "Export Requests"): a request row, a background job that writes
//! one JSON file of everything the user's rows hold (no secret, no hash) to `EXPORT_DIR`,
//! and a download for the owner for 24 hours. The file stays out of the database.

use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::account_event;
use crate::{
    accounts::{
        models::{
            Email,
            admin::{ExportStatus, ExportView},
        },
        repo,
    },
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext},
    notifications::{self, Message},
};

/// How long a finished export can be fetched.
pub const EXPORT_TTL: Duration = Duration::hours(24);
/// A `processing` request older than this lost its worker (a crash) and is taken again.
const STALE_SECS: f64 = 600.0;

/// `POST /users/me/export`: a new request, or the one already waiting (one at a time).
/// A copy of everything is what a stolen access token would want most: it takes the
/// password (and a recent second factor while MFA is on), and the owner is told.
pub async fn request_export(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: Option<SecretString>,
) -> AppResult<ExportView> {
    let user = super::reauthenticate(state, client, auth, password).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    super::hold(&mut tx, auth, Some(&user)).await?;
    let export = repo::exports::open_export(&mut *tx, auth.user_id).await?;
    account_event(
        &mut tx,
        Some(auth.user_id),
        "export_requested",
        serde_json::json!({ "export_id": export.id }),
        client,
    )
    .await?;
    let to = Email::from_stored(&user.email);
    let message = Message::ExportRequested { username: user.username.clone() };
    notifications::enqueue_email(&mut tx, &state.data_keys, user.id, &to, message).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(export)
}

/// `GET /users/me/export/{id}`: its status and, while it can be fetched, where.
pub async fn export_status(state: &AppState, auth: &AuthUser, id: Uuid) -> AppResult<ExportStatus> {
    let export = repo::exports::export_of(&state.db, auth.user_id, id).await?.ok_or(AppError::NotFound)?;
    let live = export.status == "complete" && export.expires_at.is_some_and(|at| at > Utc::now());
    let download_url = live.then(|| format!("{}/api/v1/users/me/export/{id}/download", state.config.public_base_url));
    Ok(ExportStatus { export, download_url })
}

/// The file of a complete, unexpired export of the caller's; anyone else's is 404.
pub async fn export_file(state: &AppState, auth: &AuthUser, id: Uuid) -> AppResult<Vec<u8>> {
    let path = repo::exports::export_file(&state.db, auth.user_id, id).await?.ok_or(AppError::NotFound)?;
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
    while let Some((id, user)) = repo::exports::claim_export(&state.db, STALE_SECS).await? {
        match build(state, id, user).await {
            Ok(()) => done += 1,
            Err(e) => {
                tracing::error!(export = %id, error = %e, "data export failed");
                repo::exports::fail_export(&state.db, id, "the export could not be written; ask for a new one").await?;
            }
        }
    }
    Ok(done)
}

async fn build(state: &AppState, id: Uuid, user: Uuid) -> AppResult<()> {
    // The document is a read of many tables: the replica's work when one is in use (at most
    // REPLICA_MAX_LAG_SECONDS behind the request).
    let document = crate::reports!(state, |db| repo::exports::export_document(db, user))?;
    let bytes = serde_json::to_vec_pretty(&document).map_err(AppError::internal)?;
    let path = file_of(state, id);
    // Written beside its final name, then renamed: a reader never sees half a file.
    let partial = path.with_extension("json.partial");
    write_private(&state.config.export_dir, &partial, &bytes).await.map_err(AppError::internal)?;
    tokio::fs::rename(&partial, &path).await.map_err(AppError::internal)?;
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let stored = path.to_string_lossy();
    if !repo::exports::complete_export(&state.db, id, &stored, size, Utc::now() + EXPORT_TTL).await? {
        // Cancelled or deleted with its account while it was being built: nobody may
        // fetch it, so it must not outlive this moment.
        remove_file(&path).await;
    }
    Ok(())
}

/// Writes `bytes` readable by the service's user only (0600, in a 0700 directory): an
/// export is a whole account's personal data.
async fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let (dir, path, bytes) = (dir.to_owned(), path.to_owned(), bytes.to_owned());
    tokio::task::spawn_blocking(move || {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn remove_file(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "an export file could not be deleted");
    }
}

/// Deletes the files of exports whose rows were cancelled or deleted (after the commit
/// that did it): the recorded path, and the file a build in flight is writing.
pub(super) async fn remove_export_files(state: &AppState, exports: &[(Uuid, Option<String>)]) {
    for (id, stored) in exports {
        if let Some(stored) = stored {
            remove_file(Path::new(stored)).await;
        }
        let path = file_of(state, *id);
        remove_file(&path.with_extension("json.partial")).await;
        remove_file(&path).await;
    }
}

/// Expires finished exports past their 24 h and deletes their files; returns how many.
/// The rows change first (committed on their own), so a file is never deleted while its
/// row still offers it for download.
pub async fn expire_exports(db: &sqlx::PgPool) -> AppResult<u64> {
    let paths = repo::exports::expire_exports(db).await?;
    for path in &paths {
        if let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "an expired export file could not be deleted");
        }
    }
    Ok(paths.len() as u64)
}
