//! accounts_dataexportrequest, and the export document itself: every row of every table
//! that holds the user's data, in one statement, with each secret or hash column left
//! out (password and token hashes, TOTP secrets, sealed message bodies, fingerprint
//! hashes). The one query of accounts that reads the other apps' tables: an export is
//! all of a user's data by definition (docs/architecture.md lists it).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::accounts::models::admin::ExportView;

/// A request that waits, or the user's one still waiting or running.
pub async fn open_export(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<ExportView> {
    sqlx::query_as!(
        ExportView,
        r#"WITH running AS (
               SELECT id, status, file_size, error_message, completed_at, expires_at, created_at
                 FROM accounts_dataexportrequest WHERE user_id = $1 AND status IN ('pending', 'processing')
                ORDER BY created_at DESC LIMIT 1
           ), created AS (
               INSERT INTO accounts_dataexportrequest (user_id)
               SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM running)
               RETURNING id, status, file_size, error_message, completed_at, expires_at, created_at
           )
           SELECT id AS "id!", status AS "status!", file_size, error_message, completed_at, expires_at,
                  created_at AS "created_at!"
             FROM running UNION ALL SELECT * FROM created"#,
        user
    )
    .fetch_one(db)
    .await
}

/// One of the user's requests; anyone else's is None.
pub async fn export_of(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<Option<ExportView>> {
    sqlx::query_as!(
        ExportView,
        "SELECT id, status, file_size, error_message, completed_at, expires_at, created_at
           FROM accounts_dataexportrequest WHERE id = $1 AND user_id = $2",
        id,
        user
    )
    .fetch_optional(db)
    .await
}

/// Where a complete, unexpired export of the user's lies.
pub async fn export_file(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<Option<String>> {
    let path = sqlx::query_scalar!(
        "SELECT file_path FROM accounts_dataexportrequest
          WHERE id = $1 AND user_id = $2 AND status = 'complete' AND expires_at > now()",
        id,
        user
    )
    .fetch_optional(db)
    .await?;
    Ok(path.flatten())
}

/// Claims the oldest waiting request (or one whose worker died: `processing` for over
/// `stale_secs`), so instances never build the same export at once.
pub async fn claim_export(db: impl PgExecutor<'_>, stale_secs: f64) -> sqlx::Result<Option<(Uuid, Uuid)>> {
    let row = sqlx::query!(
        "UPDATE accounts_dataexportrequest SET status = 'processing', started_at = now()
          WHERE id = (SELECT id FROM accounts_dataexportrequest
                       WHERE status = 'pending'
                          OR (status = 'processing' AND started_at < now() - make_interval(secs => $1))
                       ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
        RETURNING id, user_id",
        stale_secs
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.user_id)))
}

/// Completes a request still being built; false when it is gone or was cancelled meanwhile
/// (the account deleted or secured), and the caller deletes the file it wrote.
pub async fn complete_export(
    db: impl PgExecutor<'_>,
    id: Uuid,
    path: &str,
    size: i64,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE accounts_dataexportrequest
            SET status = 'complete', file_path = $2, file_size = $3, completed_at = now(), expires_at = $4
          WHERE id = $1 AND status = 'processing'",
        id,
        path,
        size,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn fail_export(db: impl PgExecutor<'_>, id: Uuid, error: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_dataexportrequest SET status = 'failed', error_message = $2, completed_at = now()
          WHERE id = $1 AND status = 'processing'",
        id,
        error
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Complete exports past their 24 h: marked expired; their files for the caller to delete.
pub async fn expire_exports(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    let paths = sqlx::query_scalar!(
        "UPDATE accounts_dataexportrequest SET status = 'expired'
          WHERE status = 'complete' AND expires_at <= now()
        RETURNING file_path"
    )
    .fetch_all(db)
    .await?;
    Ok(paths.into_iter().flatten().collect())
}

/// The export document of `user`.
pub async fn export_document(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<serde_json::Value> {
    sqlx::query_scalar!(
        r#"SELECT jsonb_build_object(
             'format', 'gatehouse-export/1',
             'exported_at', now(),
             'user', (SELECT to_jsonb(u) - 'password_hash' FROM auth_user u WHERE u.id = $1),
             'groups', (SELECT COALESCE(jsonb_agg(g.name ORDER BY g.name), '[]') FROM auth_group g
                          JOIN auth_user_groups ug ON ug.group_id = g.id WHERE ug.user_id = $1),
             'profile', (SELECT to_jsonb(p) FROM accounts_profile p WHERE p.user_id = $1),
             'connections', (SELECT COALESCE(jsonb_agg(to_jsonb(sc) - 'access_token' ORDER BY sc.created_at), '[]')
                               FROM accounts_socialconnection sc WHERE sc.user_id = $1),
             'password_changes', (SELECT COALESCE(jsonb_agg(to_jsonb(h) - 'password_hash' ORDER BY h.changed_at), '[]')
                                    FROM accounts_passwordhistory h WHERE h.user_id = $1),
             'sessions', (SELECT COALESCE(jsonb_agg(to_jsonb(s) - 'access_jti' - 'refresh_jti' ORDER BY s.created_at), '[]')
                            FROM accounts_session s WHERE s.user_id = $1),
             'refresh_tokens', (SELECT COALESCE(jsonb_agg(to_jsonb(r) - 'jti' - 'parent_jti' - 'child_sealed'
                                                          ORDER BY r.created_at), '[]')
                                  FROM accounts_refreshtokenrecord r
                                 WHERE r.session_id IN (SELECT s.id FROM accounts_session s WHERE s.user_id = $1)),
             'devices', (SELECT COALESCE(jsonb_agg(to_jsonb(d) - 'fingerprint_hash' ORDER BY d.created_at), '[]')
                           FROM accounts_device d WHERE d.user_id = $1),
             'trusted_devices', (SELECT COALESCE(jsonb_agg(to_jsonb(t) ORDER BY t.created_at), '[]')
                                   FROM accounts_trusteddevice t WHERE t.user_id = $1),
             'mfa', jsonb_build_object(
                 'settings', (SELECT to_jsonb(m) FROM accounts_mfasettings m WHERE m.user_id = $1),
                 'methods', (SELECT COALESCE(jsonb_agg(to_jsonb(p) ORDER BY p.mfa_method), '[]')
                               FROM accounts_mfamethodpreference p WHERE p.user_id = $1),
                 'changes', (SELECT COALESCE(jsonb_agg(to_jsonb(c) ORDER BY c.created_at), '[]')
                               FROM accounts_mfachangelog c WHERE c.user_id = $1),
                 'totp', (SELECT COALESCE(jsonb_agg(to_jsonb(t) - 'secret_encrypted'), '[]')
                            FROM otp_totpdevice t WHERE t.user_id = $1),
                 'passkeys', (SELECT COALESCE(jsonb_agg(to_jsonb(w) - 'passkey' - 'public_key' - 'credential_id'
                                                       ORDER BY w.created_at), '[]')
                                FROM otp_webauthncredential w WHERE w.user_id = $1),
                 'email_method', (SELECT to_jsonb(e) FROM otp_emailmfamethod e WHERE e.user_id = $1),
                 'sms_method', (SELECT to_jsonb(s) FROM otp_smsmfamethod s WHERE s.user_id = $1),
                 'backup_codes', (SELECT COALESCE(jsonb_agg(to_jsonb(b) - 'code_hash' ORDER BY b.created_at), '[]')
                                    FROM otp_backupcode b WHERE b.user_id = $1),
                 'challenges', (SELECT COALESCE(jsonb_agg(to_jsonb(c) ORDER BY c.created_at), '[]')
                                  FROM otp_mfachallenge c WHERE c.user_id = $1),
                 'codes', (SELECT COALESCE(jsonb_agg(to_jsonb(o) - 'code_hash' ORDER BY o.created_at), '[]')
                             FROM otp_otp o WHERE o.user_id = $1),
                 'recoveries', (SELECT COALESCE(jsonb_agg(to_jsonb(r) ORDER BY r.created_at), '[]')
                                  FROM otp_mfarecovery r WHERE r.user_id = $1)),
             'api_keys', (SELECT COALESCE(jsonb_agg(to_jsonb(k) - 'key_hash' ORDER BY k.created_at), '[]')
                            FROM accounts_apikey k WHERE k.user_id = $1),
             'one_time_tokens', (SELECT COALESCE(jsonb_agg(to_jsonb(o) - 'token_hash' ORDER BY o.created_at), '[]')
                                   FROM accounts_onetimetoken o WHERE o.user_id = $1),
             'login_attempts', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.created_at), '[]')
                                  FROM accounts_loginattempt a WHERE a.user_id = $1),
             'exports', (SELECT COALESCE(jsonb_agg(to_jsonb(x) - 'file_path' ORDER BY x.created_at), '[]')
                           FROM accounts_dataexportrequest x WHERE x.user_id = $1),
             'notifications', jsonb_build_object(
                 'preferences', (SELECT to_jsonb(p) FROM notifications_notificationpreference p WHERE p.user_id = $1),
                 'type_preferences', (SELECT COALESCE(jsonb_agg(to_jsonb(p) ORDER BY p.notification_type), '[]')
                                        FROM notifications_detailednotificationpreference p WHERE p.user_id = $1),
                 'quiet_hours', (SELECT COALESCE(jsonb_agg(to_jsonb(q) ORDER BY q.day_of_week), '[]')
                                   FROM notifications_quiethours q WHERE q.user_id = $1),
                 'blocklist', (SELECT COALESCE(jsonb_agg(to_jsonb(b) ORDER BY b.created_at), '[]')
                                 FROM notifications_notificationblocklist b WHERE b.user_id = $1),
                 'consents', (SELECT COALESCE(jsonb_agg(to_jsonb(c) ORDER BY c.consent_type), '[]')
                                FROM notifications_notificationconsent c WHERE c.user_id = $1),
                 'log', (SELECT COALESCE(jsonb_agg(to_jsonb(l) ORDER BY l.created_at), '[]')
                           FROM notifications_notificationlog l WHERE l.user_id = $1),
                 'emails', (SELECT COALESCE(jsonb_agg(to_jsonb(e) - 'body' - 'html_body' - 'click_url'
                                                      ORDER BY e.created_at), '[]')
                              FROM notifications_emailnotification e WHERE e.user_id = $1),
                 'sms', (SELECT COALESCE(jsonb_agg(to_jsonb(s) - 'message' ORDER BY s.created_at), '[]')
                           FROM notifications_smsnotification s WHERE s.user_id = $1),
                 'mfa_messages', (SELECT COALESCE(jsonb_agg(to_jsonb(m) - 'otp_code_hash' ORDER BY m.created_at), '[]')
                                    FROM notifications_mfanotification m WHERE m.user_id = $1)),
             'audit', jsonb_build_object(
                 'account', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.created_at), '[]')
                               FROM accounts_auditlog a WHERE a.user_id = $1),
                 'session', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.created_at), '[]')
                               FROM audit_log_sessionauditlog a WHERE a.user_id = $1),
                 'device', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.created_at), '[]')
                              FROM audit_log_deviceauditlog a WHERE a.user_id = $1),
                 'mfa', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.created_at), '[]')
                           FROM audit_log_mfaauditlog a WHERE a.user_id = $1),
                 'session_device_link', (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.created_at), '[]')
                                           FROM audit_log_sessiondevicelinkauditlog a WHERE a.user_id = $1),
                 'daily_summaries', (SELECT COALESCE(jsonb_agg(to_jsonb(s) ORDER BY s.date), '[]')
                                       FROM audit_log_auditlogsummary s WHERE s.user_id = $1))
           ) AS "document!""#,
        user
    )
    .fetch_one(db)
    .await
}

/// Cancels the user's exports that are waiting, being built or downloadable: they become
/// `expired`. Returns their ids and files, for the caller to delete after commit (a build
/// still running finds its row gone from `processing` and deletes its own file).
pub async fn cancel_exports(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<(Uuid, Option<String>)>> {
    let rows = sqlx::query!(
        "UPDATE accounts_dataexportrequest SET status = 'expired', expires_at = LEAST(expires_at, now()),
                error_message = 'cancelled: the account was secured'
          WHERE user_id = $1 AND status IN ('pending', 'processing', 'complete')
        RETURNING id, file_path",
        user
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.file_path)).collect())
}

/// The user's export requests and their files, locked (an account about to be deleted).
pub async fn lock_exports(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<(Uuid, Option<String>)>> {
    let rows = sqlx::query!("SELECT id, file_path FROM accounts_dataexportrequest WHERE user_id = $1 FOR UPDATE", user)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.file_path)).collect())
}
