//! Queueing messages inside the caller's transaction: a message exists if and only if the
//! change that caused it commits. Wake the worker after commit (`AppState::outbox_wakeup`).

use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    models::NotificationType,
    repo::{self, NewEmail},
    templates,
};

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<EnqueueError> for crate::core::AppError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Db(db) => db.into(),
            EnqueueError::Template(t) => crate::core::AppError::internal(t),
        }
    }
}

/// Renders `kind` with `context` and queues it for `to`; logs the decision.
pub async fn enqueue_email(
    tx: &mut PgConnection,
    user_id: Uuid,
    to: &str,
    kind: NotificationType,
    context: minijinja::Value,
) -> Result<Uuid, EnqueueError> {
    let rendered = templates::render(kind, context)?;
    let id = repo::insert_email(
        &mut *tx,
        &NewEmail {
            user_id,
            to_email: to,
            subject: &rendered.subject,
            email_type: kind.as_str(),
            body: &rendered.text,
            html_body: &rendered.html,
            priority: kind.priority().as_str(),
        },
    )
    .await?;
    repo::insert_log(&mut *tx, user_id, kind.as_str(), "email", to, "queued", None).await?;
    Ok(id)
}
