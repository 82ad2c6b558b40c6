//! Account policies (seed 002's MFA policy columns): what a superuser sets on a user is what
//! the service enforces, and no setting loosens a built-in limit.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    helpers::{PASSWORD, TestApp, Tokens, admin, assert_error, json, tokens},
    mfa::{challenge, enrol_totp, fresh_code, verify},
};

async fn user_id(pool: &PgPool, username: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM auth_user WHERE username = $1").bind(username).fetch_one(pool).await.unwrap()
}

async fn patch_user(app: &TestApp, admin: &Tokens, id: uuid::Uuid, body: Value) -> reqwest::Response {
    app.with_token(Method::PATCH, &format!("/api/v1/admin/users/{id}"), &admin.access).json(&body).send().await.unwrap()
}

/// The digits of the newest code mailed to `to`, whatever their number.
async fn mailed_digits(app: &TestApp, to: &str) -> String {
    let mails = app.deliver_mail().await;
    let is_code = |m: &&crate::smtp::CapturedMail| m.parsed().subject().is_some_and(|s| s.contains("code"));
    let mail = mails.iter().rev().filter(is_code).find(|m| m.to.iter().any(|t| t == to)).expect("a code mail");
    let text = mail.parsed().body_text(0).unwrap().into_owned();
    let runs: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|w| w.len() >= 6).collect();
    assert_eq!(runs.len(), 1, "{text}");
    runs[0].to_owned()
}

#[sqlx::test]
async fn a_seven_digit_policy_sends_seven_digit_codes_that_live_as_long_as_set(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let ann = app.signed_in("ann").await;
    let id = user_id(&pool, "ann").await;
    let r =
        patch_user(&app, &root, id, json!({"mfa_settings": {"code_length": 7, "code_validity_seconds": 120}})).await;
    assert_eq!(r.status(), 200);
    let detail = json(r).await;
    assert_eq!(detail["mfa_settings"]["code_length"], 7);
    assert_eq!(detail["mfa_settings"]["code_validity_seconds"], 120);

    let setup = app
        .with_token(Method::POST, "/api/v1/mfa/email/setup", &ann.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.status(), 202);
    let code = mailed_digits(&app, "ann@example.com").await;
    assert_eq!(code.len(), 7, "{code}");
    let confirm =
        app.with_token(Method::POST, "/api/v1/mfa/email/confirm", &ann.access).json(&json!({"code": code})).send();
    assert_eq!(confirm.await.unwrap().status(), 200);

    let challenge_id = challenge(&app, "ann@example.com").await;
    let send = json!({"challenge_id": challenge_id, "method": "email"});
    assert_eq!(app.post_json("/api/v1/auth/mfa/send", &send).await.status(), 202);
    let code = mailed_digits(&app, "ann@example.com").await;
    assert_eq!(code.len(), 7);
    let life: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM otp_otp WHERE purpose = 'login'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!((119.0..=121.0).contains(&life), "{life}");
    let r = verify(&app, &challenge_id, "email", &code).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["status"], "authenticated");
}

#[sqlx::test]
async fn a_setting_looser_than_the_built_in_limit_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    app.signed_in("ann").await;
    let id = user_id(&pool, "ann").await;
    for (settings, field) in [
        (
            json!({"methods": {"totp": {"rate_limit_per_hour": 10, "max_attempts": 5, "lockout_minutes": 30}}}),
            "mfa_settings.methods.totp.max_attempts",
        ),
        (
            json!({"methods": {"sms": {"rate_limit_per_hour": 50, "max_attempts": 3, "lockout_minutes": 30}}}),
            "mfa_settings.methods.sms.rate_limit_per_hour",
        ),
        (
            json!({"methods": {"email": {"rate_limit_per_hour": 5, "max_attempts": 3, "lockout_minutes": 5}}}),
            "mfa_settings.methods.email.lockout_minutes",
        ),
        (json!({"code_length": 5}), "mfa_settings.code_length"),
        (json!({"code_validity_seconds": 3600}), "mfa_settings.code_validity_seconds"),
        (json!({"grace_period_days": -1}), "mfa_settings.grace_period_days"),
    ] {
        let r = assert_error(
            patch_user(&app, &root, id, json!({"mfa_settings": settings})).await,
            422,
            "VALIDATION_FAILED",
        )
        .await;
        assert!(r["error"]["details"].get(field).is_some(), "{field}: {r}");
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_mfamethodpreference").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 0, "nothing of a refused policy is kept");

    // Tighter is accepted, and only a superuser sets it (a staff member with every group is not enough).
    let tight = json!({"mfa_settings": {"methods": {"totp": {"rate_limit_per_hour": 3, "max_attempts": 2, "lockout_minutes": 120}}}});
    let r = patch_user(&app, &root, id, tight.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["mfa_settings"]["methods"]["totp"]["max_attempts"], 2);
    // A partial method setting keeps the rest.
    let partial = json!({"mfa_settings": {"methods": {"totp": {"max_attempts": 1}}}});
    let r = json(patch_user(&app, &root, id, partial).await).await;
    assert_eq!(
        r["mfa_settings"]["methods"]["totp"],
        json!({"rate_limit_per_hour": 3, "max_attempts": 1, "lockout_minutes": 120})
    );
    let unknown = json!({"mfa_settings": {"methods": {"totp": {"max_tries": 1}}}});
    assert!(patch_user(&app, &root, id, unknown).await.status().is_client_error());
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts_auditlog WHERE action = 'user_changed_by_admin' AND details ? 'mfa_settings'
            AND details->'mfa_settings' <> 'null'::jsonb",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 2);
    app.signed_in("sam").await;
    let sam = user_id(&pool, "sam").await;
    assert_eq!(patch_user(&app, &root, sam, json!({"is_staff": true, "groups": ["auditors"]})).await.status(), 200);
    sqlx::query(
        "INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)
                 ON CONFLICT (user_id) DO UPDATE SET enforce_for_admin = false",
    )
    .bind(sam)
    .execute(&pool)
    .await
    .unwrap();
    let s = app.login_ok("sam@example.com", PASSWORD).await;
    assert_error(patch_user(&app, &s, id, tight).await, 403, "FORBIDDEN").await;
}

#[sqlx::test]
async fn a_method_policy_limits_attempts_and_locks_the_method(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let ann = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &ann).await;
    let id = user_id(&pool, "ann").await;
    let policy = json!({"mfa_settings": {"methods": {"totp": {"rate_limit_per_hour": 2, "max_attempts": 1, "lockout_minutes": 60}}}});
    assert_eq!(patch_user(&app, &root, id, policy).await.status(), 200);

    // One wrong TOTP code ends the challenge (built-in: three), and its end is audited.
    let first = challenge(&app, "ann@example.com").await;
    let wrong = assert_error(verify(&app, &first, "totp", "000000").await, 401, "MFA_CODE_INVALID").await;
    assert_eq!(wrong["error"]["details"]["attempts_remaining"], 0);
    let code = fresh_code(&e.secret, &mut e.used_step);
    assert_error(verify(&app, &first, "totp", &code).await, 401, "CHALLENGE_EXPIRED").await;
    let expired: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log_mfaauditlog WHERE action = 'challenge_expired' AND user_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(expired, 1);

    // A second wrong answer within the hour reaches the method's hourly limit: TOTP locks for
    // an hour, even for the right code; another method still works.
    let second = challenge(&app, "ann@example.com").await;
    assert_error(verify(&app, &second, "totp", "000000").await, 401, "MFA_CODE_INVALID").await;
    let third = challenge(&app, "ann@example.com").await;
    let code = fresh_code(&e.secret, &mut e.used_step);
    let locked = verify(&app, &third, "totp", &code).await;
    let retry: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&retry), "{retry}");
    assert_error(locked, 429, "RATE_LIMITED").await;
    let r = verify(&app, &third, "backup_code", &e.backup_codes[0]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["status"], "authenticated");
}

#[sqlx::test]
async fn a_staff_account_within_its_grace_period_reads_admin_lists_and_cannot_write(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    app.signed_in("ann").await;
    app.signed_in("bob").await;
    app.signed_in("cat").await;
    let (ann, bob, cat) = (user_id(&pool, "ann").await, user_id(&pool, "bob").await, user_id(&pool, "cat").await);
    let staff = json!({"is_staff": true, "groups": ["auditors"], "mfa_settings": {"grace_period_days": 7}});
    assert_eq!(patch_user(&app, &root, bob, staff).await.status(), 200);
    assert_eq!(patch_user(&app, &root, cat, json!({"is_staff": true, "groups": ["auditors"]})).await.status(), 200);

    let b = app.login_ok("bob@example.com", PASSWORD).await;
    let read = |t: &Tokens| app.with_token(Method::GET, "/api/v1/admin/audit/session", &t.access).send();
    assert_eq!(read(&b).await.unwrap().status(), 200, "a read within the grace period");
    let mfa_log = app.with_token(Method::GET, "/api/v1/admin/audit/mfa", &b.access).send().await.unwrap();
    assert_eq!(mfa_log.status(), 200);
    let unlock = app.with_token(Method::POST, &format!("/api/v1/admin/users/{ann}/unlock"), &b.access).send();
    assert_error(unlock.await.unwrap(), 403, "MFA_REQUIRED").await;

    // No grace set: MFA first, as before.
    let c = app.login_ok("cat@example.com", PASSWORD).await;
    assert_error(read(&c).await.unwrap(), 403, "MFA_REQUIRED").await;
    // The grace period runs out.
    sqlx::query("UPDATE accounts_mfasettings SET grace_started_at = now() - interval '8 days' WHERE user_id = $1")
        .bind(bob)
        .execute(&pool)
        .await
        .unwrap();
    assert_error(read(&b).await.unwrap(), 403, "MFA_REQUIRED").await;
}

#[sqlx::test]
async fn keys_of_an_account_that_turns_mfa_off_stop_with_a_notice(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &ann).await;
    let id = challenge(&app, "ann@example.com").await;
    let aal2 = tokens(json(verify(&app, &id, "totp", &fresh_code(&e.secret, &mut e.used_step)).await).await);
    let created = app
        .with_token(Method::POST, "/api/v1/api-keys", &aal2.access)
        .json(&json!({"name": "CI reader", "scopes": ["me:read"], "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let key = json(created).await["secret"].as_str().unwrap().to_owned();
    let me = || app.client.get(app.url("/api/v1/users/me")).header("Authorization", format!("ApiKey {key}")).send();
    assert_eq!(me().await.unwrap().status(), 200);
    let removed = app
        .with_token(Method::DELETE, "/api/v1/mfa/totp", &aal2.access)
        .json(&json!({"password": PASSWORD, "code": fresh_code(&e.secret, &mut e.used_step)}))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(me().await.unwrap().status(), 401, "the key stopped with MFA");
    let mails = app.deliver_mail().await;
    let notice = mails.iter().find(|m| m.parsed().subject() == Some("Two-step verification was turned off")).unwrap();
    assert!(notice.parsed().body_text(0).unwrap().contains("CI reader"));
}
