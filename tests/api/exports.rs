//! Data export (everything of the user's, no secret, owner only, gone after 24 h) and the
//! cleanup job's deletions, kind by kind.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, admin, assert_error, json};

/// Every secret or hash the database holds for `user`, as text the way a leak into JSON
/// would spell it.
async fn stored_secrets(pool: &PgPool, user: Uuid) -> Vec<String> {
    let sql = "
        SELECT password_hash FROM auth_user WHERE id = $1
        UNION ALL SELECT password_hash FROM accounts_passwordhistory WHERE user_id = $1
        UNION ALL SELECT access_jti FROM accounts_session WHERE user_id = $1
        UNION ALL SELECT refresh_jti FROM accounts_session WHERE user_id = $1
        UNION ALL SELECT jti FROM accounts_refreshtokenrecord WHERE user_id = $1
        UNION ALL SELECT fingerprint_hash FROM accounts_device WHERE user_id = $1
        UNION ALL SELECT token_hash FROM accounts_onetimetoken WHERE user_id = $1
        UNION ALL SELECT key_hash FROM accounts_apikey WHERE user_id = $1
        UNION ALL SELECT code_hash FROM otp_backupcode WHERE user_id = $1
        UNION ALL SELECT to_jsonb(t) ->> 'secret_encrypted' FROM otp_totpdevice t WHERE user_id = $1
        UNION ALL SELECT encode(secret_encrypted, 'base64') FROM otp_totpdevice WHERE user_id = $1
        UNION ALL SELECT body FROM notifications_emailnotification WHERE user_id = $1
        UNION ALL SELECT html_body FROM notifications_emailnotification WHERE user_id = $1 AND html_body IS NOT NULL";
    sqlx::query_scalar::<_, String>(sql).bind(user).fetch_all(pool).await.unwrap()
}

#[sqlx::test]
async fn an_export_holds_all_of_the_users_data_and_no_secret(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    let ann_id: Uuid =
        sqlx::query_scalar("SELECT id FROM auth_user WHERE username = 'ann'").fetch_one(&pool).await.unwrap();
    let key = json(
        app.with_token(Method::POST, "/api/v1/api-keys", &ann.access)
            .json(&json!({"name": "reader", "scopes": ["me:read"], "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    app.deliver_mail().await;

    let ask = || {
        app.with_token(Method::POST, "/api/v1/users/me/export", &ann.access).json(&json!({"password": PASSWORD})).send()
    };
    let first = ask().await.unwrap();
    assert_eq!(first.status(), 202);
    let first = json(first).await;
    assert_eq!(first["status"], "pending");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(json(ask().await.unwrap()).await["id"], id.as_str(), "one waiting export at a time");
    let status = |token: String| app.with_token(Method::GET, &format!("/api/v1/users/me/export/{id}"), &token).send();
    let waiting = json(status(ann.access.clone()).await.unwrap()).await;
    assert_eq!((waiting["status"].as_str(), waiting["download_url"].is_null()), (Some("pending"), true));
    // Asked for before MFA went on (after, it would need a recent second factor); built after.
    let totp = crate::mfa::enrol_totp(&app, &ann).await;

    assert_eq!(
        gatehouse::jobs::run_exports_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap(),
        1
    );
    let done = json(status(ann.access.clone()).await.unwrap()).await;
    assert_eq!(done["status"], "complete", "{done}");
    let url = done["download_url"].as_str().unwrap();
    assert!(url.ends_with(&format!("/api/v1/users/me/export/{id}/download")), "{url}");
    let path = format!("/api/v1/users/me/export/{id}/download");
    let file = app.with_token(Method::GET, &path, &ann.access).send().await.unwrap();
    assert_eq!(file.status(), 200);
    let text = file.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();

    assert_eq!(doc["user"]["email"], "ann@example.com");
    assert!(doc["devices"].as_array().is_some_and(|d| !d.is_empty()), "devices");
    assert!(doc["sessions"].as_array().is_some_and(|s| !s.is_empty()), "sessions");
    assert_eq!(doc["mfa"]["settings"]["is_enabled"], true);
    assert_eq!(doc["mfa"]["backup_codes"].as_array().map(Vec::len), Some(10));
    assert_eq!(doc["api_keys"].as_array().map(Vec::len), Some(1));
    assert!(doc["audit"]["session"].as_array().is_some_and(|a| !a.is_empty()), "audit events");
    assert!(doc["audit"]["mfa"].as_array().is_some_and(|a| !a.is_empty()), "MFA audit events");
    assert!(doc["notifications"]["emails"].as_array().is_some_and(|e| !e.is_empty()), "messages");
    assert!(doc["notifications"]["preferences"].is_object() || doc["notifications"]["preferences"].is_null());

    let mut secrets = stored_secrets(&pool, ann_id).await;
    secrets.extend(totp.backup_codes.iter().cloned());
    secrets.push(totp.secret_base32.clone());
    secrets.push(key.clone());
    secrets.push(ann.access.clone());
    secrets.push(ann.refresh.clone());
    assert!(secrets.len() > 20, "{} secrets", secrets.len());
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(!text.contains(secret.as_str()), "the export holds a secret or hash: {secret:.12}...");
    }

    // Bob, and ann's own API key, get nothing.
    assert_error(status(bob.access.clone()).await.unwrap(), 404, "NOT_FOUND").await;
    assert_error(app.with_token(Method::GET, &path, &bob.access).send().await.unwrap(), 404, "NOT_FOUND").await;
    let by_key = app.client.get(app.url(&path)).header("Authorization", format!("ApiKey {key}")).send();
    assert_error(by_key.await.unwrap(), 403, "FORBIDDEN").await;

    // After 24 h the cleanup expires it and deletes the file.
    let file_path: String =
        sqlx::query_scalar("UPDATE accounts_dataexportrequest SET expires_at = now() - interval '1 second' WHERE id = $1::uuid RETURNING file_path")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(std::path::Path::new(&file_path).exists());
    gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    assert!(!std::path::Path::new(&file_path).exists(), "the file is deleted");
    assert_eq!(json(status(ann.access.clone()).await.unwrap()).await["status"], "expired");
    assert_error(app.with_token(Method::GET, &path, &ann.access).send().await.unwrap(), 404, "NOT_FOUND").await;
}

#[sqlx::test]
async fn a_cleanup_run_removes_exactly_the_expired_rows_of_each_kind(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    // Three sessions for ann: one live, one revoked 31 days ago, one expired 31 days ago.
    let live = app.signed_in("ann").await;
    for _ in 0..2 {
        app.login_ok("ann@example.com", PASSWORD).await;
    }
    let exec = |sql: &'static str| sqlx::query(sql).execute(&pool);
    exec(
        "WITH old AS (SELECT s.id FROM accounts_session s JOIN auth_user u ON u.id = s.user_id
                       WHERE u.username = 'ann' ORDER BY s.created_at DESC LIMIT 2)
         UPDATE accounts_session SET status = CASE WHEN id = (SELECT max(id::text)::uuid FROM old) THEN 'revoked' ELSE status END,
                revoked_at = CASE WHEN id = (SELECT max(id::text)::uuid FROM old) THEN now() - interval '31 days' END,
                expires_at = CASE WHEN id = (SELECT max(id::text)::uuid FROM old) THEN expires_at ELSE now() - interval '31 days' END
          WHERE id IN (SELECT id FROM old)",
    )
    .await
    .unwrap();
    // One refresh record of the live session expired two days ago (its session stays).
    exec(
        "INSERT INTO accounts_refreshtokenrecord (user_id, session_id, jti, family_id, created_at, expires_at)
         SELECT s.user_id, s.id, 'old-jti', gen_random_uuid(), now() - interval '40 days', now() - interval '2 days'
           FROM accounts_session s WHERE s.status = 'active' AND s.expires_at > now() ORDER BY s.created_at LIMIT 1",
    )
    .await
    .unwrap();
    // One-time tokens: ann's verification token is live; one expired two days ago.
    exec(
        "INSERT INTO accounts_onetimetoken (user_id, purpose, token_hash, expires_at)
         SELECT id, 'password_reset', 'old-hash', now() - interval '2 days' FROM auth_user WHERE username = 'ann'",
    )
    .await
    .unwrap();
    // Login attempts: three from two hours ago, the logins above are recent.
    exec(
        "INSERT INTO accounts_loginattempt (identifier, outcome, failure_reason, created_at)
         SELECT 'x@example.com', 'failure', 'invalid_credentials', now() - interval '2 hours' FROM generate_series(1, 3)",
    )
    .await
    .unwrap();
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool);
    let attempts_before = count("SELECT count(*) FROM accounts_loginattempt").await.unwrap();
    let tokens_before = count("SELECT count(*) FROM accounts_onetimetoken").await.unwrap();

    let rows =
        gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap().unwrap();
    let run =
        json(app.with_token(Method::GET, "/api/v1/admin/jobs?kind=cleanup", &root.access).send().await.unwrap()).await;
    let details = &run["items"][0]["details"];
    assert_eq!(details["sessions"], 2, "{details}");
    assert_eq!(details["refresh_records"], 1, "{details}");
    assert_eq!(details["one_time_tokens"], 1, "{details}");
    assert_eq!(details["login_attempts"], 3, "{details}");
    assert_eq!(run["items"][0]["rows_affected"], rows);

    assert_eq!(
        count(
            "SELECT count(*) FROM accounts_session WHERE user_id = (SELECT id FROM auth_user WHERE username = 'ann')"
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(count("SELECT count(*) FROM accounts_loginattempt").await.unwrap(), attempts_before - 3);
    assert_eq!(count("SELECT count(*) FROM accounts_onetimetoken").await.unwrap(), tokens_before - 1);
    assert_eq!(count("SELECT count(*) FROM accounts_refreshtokenrecord WHERE jti = 'old-jti'").await.unwrap(), 0);
    // The live session still works; a second run finds nothing more of these kinds.
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &live.access).send().await.unwrap().status(), 200);
    gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let again = json(
        app.with_token(Method::GET, "/api/v1/admin/jobs?kind=cleanup&limit=1", &root.access).send().await.unwrap(),
    )
    .await;
    for kind in ["sessions", "refresh_records", "one_time_tokens", "login_attempts"] {
        assert_eq!(again["items"][0]["details"][kind], 0, "{kind}");
    }

    // The latest run of every kind that has run, one row each.
    let latest =
        json(app.with_token(Method::GET, "/api/v1/admin/jobs?latest=true", &root.access).send().await.unwrap()).await;
    let kinds: Vec<&str> = latest["items"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "cleanup").count(), 1, "{kinds:?}");
    assert_error(
        app.with_token(Method::GET, "/api/v1/admin/jobs?latest=maybe", &root.access).send().await.unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;
}
