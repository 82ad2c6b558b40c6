//! Recovery (API.md "Recovery: what ends an attacker's hold"): each finding of the security
//! review, replayed as the attacker did it, now fails; each remediation ends what its row of
//! the table says, and tells the owner what it kept.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    helpers::{
        PASSWORD, PASSWORD_2, TestApp, Tokens, admin, assert_error, create_superuser, json, test_config, tokens,
    },
    mfa::{Enrolled, enrol_totp, fresh_code},
    smtp::CapturedMail,
};

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// A server that trusts loopback as its proxy, so a request may name its address and place.
async fn behind_proxy(pool: &PgPool) -> TestApp {
    let mut config = test_config(pool);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await
}

/// POST `body` to `path` with `headers`.
async fn post(app: &TestApp, path: &str, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// A password login with `headers`, answered with a fresh TOTP code (and `trust`) when MFA
/// is asked for; the tokens and whether MFA was asked.
async fn sign_in(
    app: &TestApp,
    email: &str,
    e: &mut Enrolled,
    headers: &[(&str, &str)],
    trust: bool,
) -> (Tokens, bool) {
    let body =
        json(post(app, "/api/v1/auth/login", json!({"email": email, "password": PASSWORD}), headers).await).await;
    if body["status"] == "authenticated" {
        return (tokens(body), false);
    }
    assert_eq!(body["status"], "mfa_required", "{body}");
    let code = fresh_code(&e.secret, &mut e.used_step);
    let verify = json!({"challenge_id": body["challenge_id"], "method": "totp", "code": code, "trust_device": trust});
    let r = post(app, "/api/v1/auth/mfa/verify", verify, headers).await;
    assert_eq!(r.status(), 200);
    (tokens(json(r).await), true)
}

fn mails_to<'a>(mails: &'a [CapturedMail], to: &str, subject: &str) -> Vec<&'a CapturedMail> {
    mails.iter().filter(|m| m.to.iter().any(|t| t == to) && m.parsed().subject() == Some(subject)).collect()
}

fn text(mail: &CapturedMail) -> String {
    mail.parsed().body_text(0).unwrap().into_owned()
}

fn keyed(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).header("Authorization", format!("ApiKey {key}"))
}

async fn user_id(pool: &PgPool, username: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM auth_user WHERE username = $1").bind(username).fetch_one(pool).await.unwrap()
}

async fn current_device(app: &TestApp, t: &Tokens) -> Value {
    let devices = json(app.with_token(Method::GET, "/api/v1/devices", &t.access).send().await.unwrap()).await;
    devices.as_array().unwrap().iter().find(|d| d["current"] == true).cloned().expect("the session's device")
}

#[sqlx::test]
async fn a_device_known_only_by_its_user_agent_is_never_trusted_nor_a_way_past_mfa(pool: PgPool) {
    let app = behind_proxy(&pool).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let home = [("User-Agent", CHROME), ("X-Forwarded-For", "203.0.113.5")];

    // The owner signs in without a fingerprint and asks to trust the browser: nothing is
    // trusted, at verify or through the device API.
    let (owner, asked) = sign_in(&app, "ann@example.com", &mut e, &home, true).await;
    assert!(asked);
    let device = current_device(&app, &owner).await;
    assert_eq!((device["is_verified"].as_bool(), device["is_trusted"].as_bool()), (Some(false), Some(false)));
    let id = device["id"].as_str().unwrap();
    let r = app
        .with_token(Method::POST, &format!("/api/v1/devices/{id}/trust"), &owner.access)
        .json(&json!({"days": 30}))
        .send()
        .await
        .unwrap();
    assert_error(r, 409, "DEVICE_NOT_VERIFIED").await;

    // Even a user-agent device left trusted by the old code does not skip MFA: the borrowed
    // User-Agent from another address still meets the second factor.
    sqlx::query(
        "UPDATE accounts_device SET is_trusted = true, can_skip_mfa = true,
                trust_expires_at = now() + interval '30 days', mfa_skip_until = now() + interval '30 days'
          WHERE id = $1::uuid",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let attacker = [("User-Agent", CHROME), ("X-Forwarded-For", "198.51.100.7")];
    let body = json(
        post(&app, "/api/v1/auth/login", json!({"email": "ann@example.com", "password": PASSWORD}), &attacker).await,
    )
    .await;
    assert_eq!(body["status"], "mfa_required", "{body}");

    // The fingerprint `ua:<User-Agent>` names a device of its own, not the browser's.
    let spoof = format!("ua:{CHROME}");
    let forged =
        [("User-Agent", CHROME), ("X-Forwarded-For", "198.51.100.7"), ("X-Device-Fingerprint", spoof.as_str())];
    let (forger, asked) = sign_in(&app, "ann@example.com", &mut e, &forged, false).await;
    assert!(asked, "a new device meets MFA");
    let other = current_device(&app, &forger).await;
    assert_ne!(other["id"], device["id"]);
    assert_eq!(other["is_verified"], true);
    let (verified, key): (bool, String) =
        sqlx::query_as("SELECT is_verified, fingerprint_hash FROM accounts_device WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!verified && key.starts_with("ua:"), "{key}");
}

#[sqlx::test]
async fn a_device_is_trusted_from_its_own_session_with_a_fresh_factor_and_not_abroad(pool: PgPool) {
    let app = behind_proxy(&pool).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let laptop = [("X-Device-Fingerprint", "ann-laptop"), ("User-Agent", CHROME), ("X-Geo-Country", "FR")];
    let phone = [("X-Device-Fingerprint", "ann-phone"), ("X-Geo-Country", "FR")];
    let (on_laptop, _) = sign_in(&app, "ann@example.com", &mut e, &laptop, false).await;
    let (on_phone, _) = sign_in(&app, "ann@example.com", &mut e, &phone, false).await;
    let laptop_id = current_device(&app, &on_laptop).await["id"].as_str().unwrap().to_owned();
    let trust = |t: &Tokens| {
        app.with_token(Method::POST, &format!("/api/v1/devices/{laptop_id}/trust"), &t.access)
            .json(&json!({"days": 30}))
            .send()
    };

    // Not from another device's session, and not on a second factor older than
    // STEP_UP_MAX_AGE_SECONDS.
    assert_error(trust(&on_phone).await.unwrap(), 403, "FORBIDDEN").await;
    sqlx::query("UPDATE accounts_session SET mfa_verified_at = now() - interval '1 hour' WHERE id = $1::uuid")
        .bind(&on_laptop.session_id)
        .execute(&pool)
        .await
        .unwrap();
    assert_error(trust(&on_laptop).await.unwrap(), 403, "MFA_REQUIRED").await;
    sqlx::query("UPDATE accounts_session SET mfa_verified_at = now() WHERE id = $1::uuid")
        .bind(&on_laptop.session_id)
        .execute(&pool)
        .await
        .unwrap();
    let trusted = trust(&on_laptop).await.unwrap();
    assert_eq!(trusted.status(), 200);
    assert_eq!(json(trusted).await["is_trusted"], true);
    let mails = app.deliver_mail().await;
    let notices = mails_to(&mails, "ann@example.com", "A device may now sign in without two-step verification");
    assert_eq!(notices.len(), 1, "trusting a device is a security notice");

    // The trusted laptop skips MFA where it has signed in before, not from a new country.
    let (_, asked) = sign_in(&app, "ann@example.com", &mut e, &laptop, false).await;
    assert!(!asked, "the trusted device skips MFA at home");
    let abroad = [("X-Device-Fingerprint", "ann-laptop"), ("User-Agent", CHROME), ("X-Geo-Country", "BR")];
    let body = json(
        post(&app, "/api/v1/auth/login", json!({"email": "ann@example.com", "password": PASSWORD}), &abroad).await,
    )
    .await;
    assert_eq!(body["status"], "mfa_required", "trust does not travel: {body}");
    let reasons: Value =
        sqlx::query_scalar("SELECT metadata -> 'risk_reasons' FROM otp_mfachallenge WHERE challenge_id = $1::uuid")
            .bind(body["challenge_id"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(reasons.as_array().unwrap().contains(&json!("trusted_device_new_country")), "{reasons}");
}

#[sqlx::test]
async fn a_password_reset_ends_every_grant_but_a_gateways_introspect_key(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    create_superuser(&app.state, "ann@example.com", "ann", PASSWORD.into()).await.unwrap();
    let first = app.login_ok("ann@example.com", PASSWORD).await;
    let mut e = enrol_totp(&app, &first).await;
    let (aal2, _) = sign_in(&app, "ann@example.com", &mut e, &[("X-Device-Fingerprint", "ann-laptop")], true).await;
    let key = |name: &str, scopes: Value| {
        app.with_token(Method::POST, "/api/v1/api-keys", &aal2.access)
            .json(&json!({"name": name, "scopes": scopes, "password": PASSWORD}))
            .send()
    };
    let gateway = json(key("edge gateway", json!(["introspect"])).await.unwrap()).await;
    let reader = json(key("crm sync", json!(["me:read"])).await.unwrap()).await;
    let (gateway_key, reader_key) = (gateway["secret"].as_str().unwrap(), reader["secret"].as_str().unwrap());
    // What the attacker leaves behind: an email change link to their address, an export.
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/email", &aal2.access)
        .json(&json!({"password": PASSWORD, "new_email": "thief@example.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let change = app.mailed_token("thief@example.net", "/confirm-email-change").await;
    let export = app
        .with_token(Method::POST, "/api/v1/users/me/export", &aal2.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 202);
    assert_eq!(
        gatehouse::jobs::run_exports_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap(),
        1
    );
    let file: String =
        sqlx::query_scalar("SELECT file_path FROM accounts_dataexportrequest").fetch_one(&pool).await.unwrap();
    assert!(std::path::Path::new(&file).exists());

    assert_eq!(app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await.status(), 202);
    let reset = app.mailed_token("ann@example.com", "/reset-password").await;
    let r = app
        .post_json("/api/v1/auth/password/reset/confirm", &json!({"token": reset, "new_password": PASSWORD_2}))
        .await;
    assert_eq!(r.status(), 204);

    // Sessions, refresh tokens, the reader key, the email link, trust and the export end.
    for t in [&first, &aal2] {
        let me = app.with_token(Method::GET, "/api/v1/users/me", &t.access).send().await.unwrap();
        assert_error(me, 401, "UNAUTHENTICATED").await;
        assert_error(app.refresh(&t.refresh).await, 401, "TOKEN_INVALID").await;
    }
    assert_error(
        keyed(&app, Method::GET, "/api/v1/users/me", reader_key).send().await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    let confirm = app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": change})).await;
    assert_error(confirm, 400, "TOKEN_INVALID").await;
    let email: String = sqlx::query_scalar("SELECT email FROM auth_user").fetch_one(&pool).await.unwrap();
    assert_eq!(email, "ann@example.com");
    let trusted: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_device WHERE is_trusted OR can_skip_mfa")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(trusted, 0);
    let status: String =
        sqlx::query_scalar("SELECT status FROM accounts_dataexportrequest").fetch_one(&pool).await.unwrap();
    assert_eq!(status, "expired");
    assert!(!std::path::Path::new(&file).exists(), "the export file is deleted");

    // The gateway's introspect-only key still answers, and the notice names it.
    let introspect = keyed(&app, Method::POST, "/api/v1/auth/introspect", gateway_key)
        .json(&json!({"token": aal2.access}))
        .send()
        .await
        .unwrap();
    assert_eq!(introspect.status(), 200);
    assert_eq!(json(introspect).await, json!({"active": false}));
    let mails = app.deliver_mail().await;
    let notice = mails_to(&mails, "ann@example.com", "Your password was changed");
    let body = text(notice.last().expect("the reset notice"));
    assert!(body.contains("edge gateway") && body.contains(gateway["prefix"].as_str().unwrap()), "{body}");
    assert!(body.contains("API keys revoked: crm sync"), "{body}");
    assert!(body.contains("authenticator app"), "the remaining factors are listed: {body}");
    let details: Value = sqlx::query_scalar(
        "SELECT details FROM accounts_auditlog WHERE action = 'password_reset' ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(details["sessions_revoked"], 2, "{details}");
    assert_eq!(details["links_revoked"], 1, "{details}");
    assert_eq!(details["exports_cancelled"], 1, "{details}");
}

#[sqlx::test]
async fn an_email_change_link_from_before_a_password_change_is_dead_after_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/email", &ann.access)
        .json(&json!({"password": PASSWORD, "new_email": "thief@example.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let change = app.mailed_token("thief@example.net", "/confirm-email-change").await;
    let r = app
        .with_token(Method::POST, "/api/v1/auth/password/change", &ann.access)
        .json(&json!({"current_password": PASSWORD, "new_password": PASSWORD_2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": change})).await,
        400,
        "TOKEN_INVALID",
    )
    .await;
    // Even a link no remediation revoked dies once the password changed after it was asked.
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/email", &ann.access)
        .json(&json!({"password": PASSWORD_2, "new_email": "thief@example.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let change = app.mailed_token("thief@example.net", "/confirm-email-change").await;
    sqlx::query(
        "INSERT INTO accounts_passwordhistory (user_id, password_hash, changed_at)
         SELECT id, password_hash, now() + interval '1 second' FROM auth_user",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_error(
        app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": change})).await,
        400,
        "TOKEN_INVALID",
    )
    .await;
    let email: String = sqlx::query_scalar("SELECT email FROM auth_user").fetch_one(&pool).await.unwrap();
    assert_eq!(email, "ann@example.com");
}

#[sqlx::test]
async fn signing_out_everywhere_keeps_the_keys_names_them_and_cancels_exports(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let other = app.login_ok("ann@example.com", PASSWORD).await;
    let key = json(
        app.with_token(Method::POST, "/api/v1/api-keys", &ann.access)
            .json(&json!({"name": "nightly backup", "scopes": ["me:read"], "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let secret = key["secret"].as_str().unwrap();
    let export = app
        .with_token(Method::POST, "/api/v1/users/me/export", &ann.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 202);
    gatehouse::jobs::run_exports_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let file: String =
        sqlx::query_scalar("SELECT file_path FROM accounts_dataexportrequest").fetch_one(&pool).await.unwrap();
    // A pending reset link and a trusted device, as a past sign-in may have left them.
    assert_eq!(app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await.status(), 202);
    app.background_settled().await;
    trust_every_device(&pool).await;

    let r = app.with_token(Method::POST, "/api/v1/auth/logout-all", &other.access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(live_links(&pool).await, 0, "the reset link is dead");
    assert_eq!(trusted_devices(&pool).await, 0, "device trust ended");
    for t in [&ann, &other] {
        assert_error(
            app.with_token(Method::GET, "/api/v1/users/me", &t.access).send().await.unwrap(),
            401,
            "UNAUTHENTICATED",
        )
        .await;
    }
    assert_eq!(
        keyed(&app, Method::GET, "/api/v1/users/me", secret).send().await.unwrap().status(),
        200,
        "keys are kept"
    );
    assert!(!std::path::Path::new(&file).exists(), "the export file is deleted");
    let mails = app.deliver_mail().await;
    let notice = mails_to(&mails, "ann@example.com", "Your account was signed out everywhere");
    let body = text(notice.first().expect("the notice"));
    assert!(body.contains("nightly backup") && body.contains(key["prefix"].as_str().unwrap()), "{body}");
    assert!(body.contains("no second factor"), "{body}");
}

/// Marks every device trusted, as a trust grant would (the tests' shortcut).
async fn trust_every_device(pool: &PgPool) {
    sqlx::query(
        "UPDATE accounts_device SET is_trusted = true, can_skip_mfa = true,
                trust_expires_at = now() + interval '30 days', mfa_skip_until = now() + interval '30 days'",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn trusted_devices(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM accounts_device WHERE is_trusted OR can_skip_mfa")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Pending email-change and reset links.
async fn live_links(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM accounts_onetimetoken
          WHERE purpose IN ('email_change', 'password_reset') AND used_at IS NULL AND revoked_at IS NULL",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_password_change_ends_the_other_grants_and_more_when_asked(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);
    let on = |fingerprint: &'static str| [("X-Device-Fingerprint", fingerprint)];
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    let ann = tokens(json(post(&app, "/api/v1/auth/login", body.clone(), &on("ann-laptop")).await).await);
    let other = tokens(json(post(&app, "/api/v1/auth/login", body, &on("ann-phone")).await).await);
    trust_every_device(&pool).await;
    let key = json(
        app.with_token(Method::POST, "/api/v1/api-keys", &ann.access)
            .json(&json!({"name": "reader", "scopes": ["me:read"], "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let secret = key["secret"].as_str().unwrap();
    let change = |t: &Tokens, from: &str, to: &str, everywhere: bool| {
        app.with_token(Method::POST, "/api/v1/auth/password/change", &t.access)
            .json(&json!({"current_password": from, "new_password": to,
                          "sign_out_everywhere": everywhere, "revoke_api_keys": everywhere}))
            .send()
    };
    assert_eq!(change(&ann, PASSWORD, PASSWORD_2, false).await.unwrap().status(), 204);
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &ann.access).send().await.unwrap().status(), 200);
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &other.access).send().await.unwrap().status(), 401);
    assert_eq!(keyed(&app, Method::GET, "/api/v1/users/me", secret).send().await.unwrap().status(), 200);
    assert!(current_device(&app, &ann).await["is_trusted"] == true, "this session's device keeps its trust");
    assert_eq!(trusted_devices(&pool).await, 1, "the other device's trust ended");

    assert_eq!(change(&ann, PASSWORD_2, "Orchard-Compass-815", true).await.unwrap().status(), 204);
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &ann.access).send().await.unwrap().status(), 401);
    assert_eq!(keyed(&app, Method::GET, "/api/v1/users/me", secret).send().await.unwrap().status(), 401);
}

/// A staff member who is not a superuser, with `accounts.change_user` and the MFA approval
/// permissions, allowed to administer without MFA (`enforce_for_admin` off).
async fn staff_member(app: &TestApp, pool: &PgPool) -> Tokens {
    assert_eq!(app.register("ops@example.com", "ops", PASSWORD).await.status(), 201);
    let ops = user_id(pool, "ops").await;
    sqlx::query("UPDATE auth_user SET is_staff = true WHERE id = $1").bind(ops).execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO auth_user_user_permissions (user_id, permission_id)
         SELECT $1, id FROM auth_permission
          WHERE (app_label, codename) IN (('accounts', 'change_user'), ('accounts', 'view_user'),
                 ('accounts', 'add_mfachangelog'), ('accounts', 'approve_mfachangelog'))",
    )
    .bind(ops)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(ops)
        .execute(pool)
        .await
        .unwrap();
    app.login_ok("ops@example.com", PASSWORD).await
}

#[sqlx::test]
async fn only_a_superuser_acts_on_a_superuser(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let root_id = user_id(&pool, "root").await;
    let ops = staff_member(&app, &pool).await;
    let act = |method: Method, path: String, body: Value| app.with_token(method, &path, &ops.access).json(&body).send();

    for (method, path, body) in [
        (Method::PATCH, format!("/api/v1/admin/users/{root_id}"), json!({"is_active": false})),
        (Method::POST, format!("/api/v1/admin/users/{root_id}/logout-all"), json!({})),
        (Method::POST, format!("/api/v1/admin/users/{root_id}/unlock"), json!({})),
        (Method::POST, format!("/api/v1/admin/users/{root_id}/mfa/reset"), json!({})),
    ] {
        assert_error(act(method, path.clone(), body).await.unwrap(), 403, "FORBIDDEN").await;
    }
    let me = app.with_token(Method::GET, "/api/v1/users/me", &root.access).send().await.unwrap();
    assert_eq!(me.status(), 200, "the superuser is untouched");
    let active: bool = sqlx::query_scalar("SELECT is_active FROM auth_user WHERE id = $1")
        .bind(root_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(active);

    // A change request about a superuser is decided by a superuser only.
    enrol_totp(&app, &root).await;
    let boss = create_superuser(&app.state, "boss@example.com", "boss", PASSWORD.into()).await.unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(boss.id)
        .execute(&pool)
        .await
        .unwrap();
    let boss_t = app.login_ok("boss@example.com", PASSWORD).await;
    let r = app
        .with_token(Method::POST, &format!("/api/v1/admin/users/{root_id}/mfa/reset"), &boss_t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let request = json(r).await["id"].as_str().unwrap().to_owned();
    let approve = format!("/api/v1/admin/mfa/change-requests/{request}/approve");
    assert_error(act(Method::POST, approve.clone(), json!({})).await.unwrap(), 403, "FORBIDDEN").await;
    let enabled: bool = sqlx::query_scalar("SELECT is_enabled FROM accounts_mfasettings WHERE user_id = $1")
        .bind(root_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(enabled, "the superuser keeps their factor");

    // Below a superuser, staff act as before; losing staff ends the keys with staff scopes.
    let ann = app.signed_in("ann").await;
    let ann_id = user_id(&pool, "ann").await;
    sqlx::query(
        "INSERT INTO accounts_apikey (user_id, name, prefix, key_hash, scopes, expires_at)
                 VALUES ($1, 'siem', 'annsiemkey01', 'x', '{audit:read}', now() + interval '1 day'),
                        ($1, 'mine', 'annreadkey01', 'y', '{me:read}', now() + interval '1 day')",
    )
    .bind(ann_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE auth_user SET is_staff = true WHERE id = $1").bind(ann_id).execute(&pool).await.unwrap();
    let r = app
        .with_token(Method::PATCH, &format!("/api/v1/admin/users/{ann_id}"), &root.access)
        .json(&json!({"is_staff": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let live: Vec<String> =
        sqlx::query_scalar("SELECT name FROM accounts_apikey WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(ann_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(live, ["mine"]);
    assert_eq!(app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await.status(), 202);
    app.background_settled().await;
    trust_every_device(&pool).await;
    sqlx::query("INSERT INTO accounts_dataexportrequest (user_id) VALUES ($1)")
        .bind(ann_id)
        .execute(&pool)
        .await
        .unwrap();
    let r = act(Method::PATCH, format!("/api/v1/admin/users/{ann_id}"), json!({"is_active": false})).await.unwrap();
    assert_eq!(r.status(), 200);
    let (links, trusted, exports): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM accounts_onetimetoken WHERE user_id = $1 AND purpose = 'password_reset'
                    AND used_at IS NULL AND revoked_at IS NULL),
                (SELECT count(*) FROM accounts_device WHERE user_id = $1 AND (is_trusted OR can_skip_mfa)),
                (SELECT count(*) FROM accounts_dataexportrequest WHERE user_id = $1 AND status <> 'expired')",
    )
    .bind(ann_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((links, trusted, exports), (0, 0, 0), "deactivation ends links, trust and exports");
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &ann.access).send().await.unwrap().status(), 401);
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_apikey WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(ann_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 0, "deactivation ends every key");

    // A superuser approves the reset of the superuser's MFA: it ends the sessions, the keys
    // with staff scopes (a read key stays), pending links and device trust.
    sqlx::query(
        "INSERT INTO accounts_apikey (user_id, name, prefix, key_hash, scopes, expires_at)
         VALUES ($1, 'siem', 'rootsiemkey1', 'x', '{audit:read}', now() + interval '1 day'),
                ($1, 'mine', 'rootreadkey1', 'y', '{me:read}', now() + interval '1 day')",
    )
    .bind(root_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO accounts_device (user_id, fingerprint_hash, is_verified, is_trusted, can_skip_mfa, mfa_skip_until)
         VALUES ($1, 'root-laptop', true, true, true, now() + interval '1 day')",
    )
    .bind(root_id)
    .execute(&pool)
    .await
    .unwrap();
    let chief = create_superuser(&app.state, "chief@example.com", "chief", PASSWORD.into()).await.unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(chief.id)
        .execute(&pool)
        .await
        .unwrap();
    let chief_t = app.login_ok("chief@example.com", PASSWORD).await;
    let r = app.with_token(Method::POST, &approve, &chief_t.access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &root.access).send().await.unwrap().status(), 401);
    let live: Vec<String> =
        sqlx::query_scalar("SELECT name FROM accounts_apikey WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(root_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(live, ["mine"]);
    let trusted: bool =
        sqlx::query_scalar("SELECT bool_or(is_trusted OR can_skip_mfa) FROM accounts_device WHERE user_id = $1")
            .bind(root_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!trusted);
}

#[sqlx::test]
async fn admin_writes_need_a_second_factor_from_the_last_minutes(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    create_superuser(&app.state, "root@example.com", "root", PASSWORD.into()).await.unwrap();
    let first = app.login_ok("root@example.com", PASSWORD).await;
    let mut e = enrol_totp(&app, &first).await;
    let (root, _) = sign_in(&app, "root@example.com", &mut e, &[], false).await;
    app.signed_in("ann").await;
    let ann_id = user_id(&pool, "ann").await;
    let patch = || {
        app.with_token(Method::PATCH, &format!("/api/v1/admin/users/{ann_id}"), &root.access)
            .json(&json!({"groups": ["auditors"]}))
            .send()
    };
    assert_eq!(patch().await.unwrap().status(), 200);
    // The same aal 2 session an hour later: it still reads, it no longer writes.
    sqlx::query("UPDATE accounts_session SET mfa_verified_at = now() - interval '1 hour' WHERE id = $1::uuid")
        .bind(&root.session_id)
        .execute(&pool)
        .await
        .unwrap();
    assert_error(patch().await.unwrap(), 403, "MFA_REQUIRED").await;
    let read =
        app.with_token(Method::GET, &format!("/api/v1/admin/users/{ann_id}"), &root.access).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let run = app
        .with_token(Method::POST, "/api/v1/admin/audit/summaries/run", &root.access)
        .json(&json!({"date": "2026-01-01"}))
        .send()
        .await
        .unwrap();
    assert_error(run, 403, "MFA_REQUIRED").await;
}

#[sqlx::test]
async fn every_factor_key_and_export_asks_for_the_password_and_is_announced(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let post_as = |path: &'static str, body: Option<Value>| {
        let request = app.with_token(Method::POST, path, &ann.access);
        match body {
            Some(body) => request.json(&body).send(),
            None => request.send(),
        }
    };
    for path in ["/api/v1/mfa/totp/setup", "/api/v1/mfa/email/setup", "/api/v1/users/me/export"] {
        assert_error(post_as(path, None).await.unwrap(), 422, "VALIDATION_FAILED").await;
        assert_error(
            post_as(path, Some(json!({"password": "Wrong-Password-77"}))).await.unwrap(),
            403,
            "PASSWORD_INCORRECT",
        )
        .await;
    }
    let sms = json!({"phone_number": "+15551234567"});
    assert_error(post_as("/api/v1/mfa/sms/setup", Some(sms)).await.unwrap(), 422, "VALIDATION_FAILED").await;
    let key = json!({"name": "k", "scopes": ["me:read"]});
    assert_error(post_as("/api/v1/api-keys", Some(key)).await.unwrap(), 422, "VALIDATION_FAILED").await;
    let key = json!({"name": "k", "scopes": ["me:read"], "password": "Wrong-Password-77"});
    assert_error(post_as("/api/v1/api-keys", Some(key)).await.unwrap(), 403, "PASSWORD_INCORRECT").await;

    // Keys live 90 days unless asked otherwise, and never past 365.
    let key = json!({"name": "k", "scopes": ["me:read"], "password": PASSWORD});
    let created = json(post_as("/api/v1/api-keys", Some(key)).await.unwrap()).await;
    let expires: chrono::DateTime<chrono::Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((89.9..=90.0).contains(&days), "{days}");
    let far = (chrono::Utc::now() + chrono::Duration::days(366)).to_rfc3339();
    let key = json!({"name": "k", "scopes": ["me:read"], "password": PASSWORD, "expires_at": far});
    assert_error(post_as("/api/v1/api-keys", Some(key)).await.unwrap(), 422, "VALIDATION_FAILED").await;
    let r = post_as("/api/v1/users/me/export", Some(json!({"password": PASSWORD}))).await.unwrap();
    assert_eq!(r.status(), 202);

    // The first factor needs the password too, and is announced.
    let _ = enrol_totp(&app, &ann).await;
    let mails = app.deliver_mail().await;
    for subject in [
        "A sign-in factor was added to your account",
        "A copy of your account's data was requested",
        "A new API key was created for your account",
    ] {
        assert_eq!(mails_to(&mails, "ann@example.com", subject).len(), 1, "{subject}");
    }
    // With MFA on, the same aal 1 session makes no key and asks no export.
    let key = json!({"name": "k2", "scopes": ["me:read"], "password": PASSWORD});
    assert_error(post_as("/api/v1/api-keys", Some(key)).await.unwrap(), 403, "MFA_REQUIRED").await;
    let r = post_as("/api/v1/users/me/export", Some(json!({"password": PASSWORD}))).await.unwrap();
    assert_error(r, 403, "MFA_REQUIRED").await;
}

#[sqlx::test]
async fn a_keys_owner_hears_seven_days_before_it_expires_once(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let soon = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let r = app
        .with_token(Method::POST, "/api/v1/api-keys", &ann.access)
        .json(&json!({"name": "short-lived", "scopes": ["me:read"], "password": PASSWORD, "expires_at": soon}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let r = app
        .with_token(Method::POST, "/api/v1/api-keys", &ann.access)
        .json(&json!({"name": "long-lived", "scopes": ["me:read"], "password": PASSWORD, "expires_at": later}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for _ in 0..2 {
        let ran =
            gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
        assert!(ran.is_some(), "the cleanup ran");
    }
    let mails = app.deliver_mail().await;
    let notices = mails_to(&mails, "ann@example.com", "An API key of your account expires soon");
    assert_eq!(notices.len(), 1);
    assert!(text(notices[0]).contains("short-lived"));
}

#[sqlx::test]
async fn the_old_address_takes_the_account_back_after_a_takeover(pool: PgPool) {
    let app = Arc::new(TestApp::spawn(pool.clone()).await);
    let stolen = app.signed_in("ann").await;
    // The attacker, holding a session, moves the address to theirs and resets the password.
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/email", &stolen.access)
        .json(&json!({"password": PASSWORD, "new_email": "thief@example.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let change = app.mailed_token("thief@example.net", "/confirm-email-change").await;
    assert_eq!(app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": change})).await.status(), 200);
    let undo = app.mailed_token("ann@example.com", "/undo-email-change").await;
    assert_eq!(
        app.post_json("/api/v1/auth/password/reset", &json!({"email": "thief@example.net"})).await.status(),
        202
    );
    let reset = app.mailed_token("thief@example.net", "/reset-password").await;
    let r = app
        .post_json("/api/v1/auth/password/reset/confirm", &json!({"token": reset, "new_password": PASSWORD_2}))
        .await;
    assert_eq!(r.status(), 204);
    let thief = app.login_ok("thief@example.net", PASSWORD_2).await;

    // The undo link survived the reset; its page changes nothing on GET.
    let page = app.get(&format!("/undo-email-change?token={undo}")).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // Used at once from several places: exactly one wins.
    let tries: Vec<_> = (0..5)
        .map(|_| {
            let (app, undo) = (app.clone(), undo.clone());
            tokio::spawn(async move {
                app.post_json("/api/v1/auth/email/change/undo", &json!({"token": undo})).await.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tries {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 400, 400, 400, 400]);

    let email: String = sqlx::query_scalar("SELECT email FROM auth_user").fetch_one(&pool).await.unwrap();
    assert_eq!(email, "ann@example.com");
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &thief.access).send().await.unwrap().status(), 401);
    assert_error(app.login("thief@example.net", PASSWORD_2).await, 401, "INVALID_CREDENTIALS").await;
    assert_error(app.login("ann@example.com", PASSWORD_2).await, 401, "INVALID_CREDENTIALS").await;
    // The owner chooses a new password from the link sent to the restored address.
    let reset = app.mailed_token("ann@example.com", "/reset-password").await;
    let r = app
        .post_json(
            "/api/v1/auth/password/reset/confirm",
            &json!({"token": reset, "new_password": "Orchard-Compass-815"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    app.login_ok("ann@example.com", "Orchard-Compass-815").await;
    let mails = app.deliver_mail().await;
    assert_eq!(mails_to(&mails, "ann@example.com", "Your email address is restored: choose a new password").len(), 1);
    let told = mails_to(&mails, "thief@example.net", "This address no longer signs in to a Gatehouse account");
    assert_eq!(told.len(), 1, "the replaced address is told");
    let audit: Vec<Value> = sqlx::query_scalar("SELECT details FROM accounts_auditlog WHERE details IS NOT NULL")
        .fetch_all(&pool)
        .await
        .unwrap();
    for details in &audit {
        let text = details.to_string();
        assert!(!text.contains("@example"), "an address in the audit trail: {text}");
    }
}

#[sqlx::test]
async fn a_later_undo_link_dies_when_an_earlier_one_is_used(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut undos = Vec::new();
    for (from, to) in [("ann@example.com", "thief@example.net"), ("thief@example.net", "thief2@example.net")] {
        let r = app
            .with_token(Method::POST, "/api/v1/users/me/email", &ann.access)
            .json(&json!({"password": PASSWORD, "new_email": to}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let change = app.mailed_token(to, "/confirm-email-change").await;
        assert_eq!(app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": change})).await.status(), 200);
        undos.push(app.mailed_token(from, "/undo-email-change").await);
    }
    // The owner's (the first address's) undo wins; the attacker's later one is dead.
    assert_eq!(app.post_json("/api/v1/auth/email/change/undo", &json!({"token": undos[0]})).await.status(), 200);
    assert_error(
        app.post_json("/api/v1/auth/email/change/undo", &json!({"token": undos[1]})).await,
        400,
        "TOKEN_INVALID",
    )
    .await;
    let email: String = sqlx::query_scalar("SELECT email FROM auth_user").fetch_one(&pool).await.unwrap();
    assert_eq!(email, "ann@example.com");
}

/// Every row of every table, as text, that contains `needle` (case-insensitive).
async fn rows_holding(pool: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let sql = format!("SELECT t::text FROM {table} t WHERE t::text ILIKE '%' || $1 || '%'");
        let rows: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(needle).fetch_all(pool).await.unwrap();
        found.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    found
}

#[sqlx::test]
async fn a_deleted_account_leaves_no_address_name_or_export_file_behind(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann_departing").await;
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/email", &t.access)
        .json(&json!({"password": PASSWORD, "new_email": "ann.new@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let change = app.mailed_token("ann.new@example.org", "/confirm-email-change").await;
    assert_eq!(app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": change})).await.status(), 200);
    let r = app
        .with_token(Method::PATCH, "/api/v1/users/me", &t.access)
        .json(&json!({"first_name": "Annabel", "profile": {"phone_number": "+15557654321"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A failed login under the new address (kept for the lockout), and a built export.
    assert_eq!(app.login("ann.new@example.org", "Wrong-Password-77").await.status(), 401);
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/export", &t.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    gatehouse::jobs::run_exports_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let file: String =
        sqlx::query_scalar("SELECT file_path FROM accounts_dataexportrequest").fetch_one(&pool).await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an export is readable by the service alone");
    assert!(!rows_holding(&pool, "ann.new@example.org").await.is_empty(), "the scan finds what is there");

    let r = app
        .with_token(Method::DELETE, "/api/v1/users/me", &t.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!std::path::Path::new(&file).exists(), "the export file went with the account");
    for needle in ["ann_departing@example.com", "ann.new@example.org", "ann_departing", "Annabel", "5557654321"] {
        assert_eq!(rows_holding(&pool, needle).await, Vec::<String>::new(), "{needle} outlived the account");
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_auditlog WHERE action = 'deleted'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1, "the deletion itself is on record");
}

#[sqlx::test]
async fn an_export_cancelled_while_it_was_built_is_not_completed(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/export", &ann.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (id, user) = gatehouse::accounts::repo::exports::claim_export(&pool, 600.0).await.unwrap().expect("claimed");
    let cancelled = gatehouse::accounts::repo::exports::cancel_exports(&pool, user).await.unwrap();
    assert_eq!(cancelled.len(), 1);
    let completed =
        gatehouse::accounts::repo::exports::complete_export(&pool, id, "/nonexistent", 1, chrono::Utc::now())
            .await
            .unwrap();
    assert!(!completed, "a build that lost its row reports it, and deletes its file");
    let status: String =
        sqlx::query_scalar("SELECT status FROM accounts_dataexportrequest").fetch_one(&pool).await.unwrap();
    assert_eq!(status, "expired");
}

#[sqlx::test]
async fn the_link_pages_and_admin_refuse_to_be_framed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for path in [
        "/verify-email?token=x",
        "/reset-password?token=x",
        "/confirm-email-change",
        "/undo-email-change?token=x",
        "/admin",
    ] {
        let r = app.get(path).await;
        let csp = r.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned());
        assert!(csp.as_deref().is_some_and(|c| c.contains("frame-ancestors 'none'")), "{path}: {csp:?}");
        assert_eq!(r.headers().get("x-frame-options").unwrap(), "DENY", "{path}");
    }
}

#[sqlx::test(migrations = false)]
async fn the_migration_ends_user_agent_trust_quietly_and_keeps_every_device(pool: PgPool) {
    use gatehouse::core::{crypto::sha256_hex, db::MIGRATOR};
    MIGRATOR.run_to(20261205000001, &pool).await.unwrap();
    // Rows as the earlier code wrote them: a trusted device named by its user agent, a
    // trusted device with a fingerprint, one reached through the `ua:<User-Agent>`
    // collision, a key without an expiry, and addresses in the audit trail.
    let user: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO auth_user (email, username, password_hash, email_verified) VALUES ('ann@example.com', 'ann', $1, true)
         RETURNING id",
    )
    .bind(gatehouse::accounts::credentials::hash(&TestApp::spawn(pool.clone()).await.state, PASSWORD.into()).await.unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    let device = |hash: String, agent: &'static str, verified: bool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "INSERT INTO accounts_device (user_id, fingerprint_hash, user_agent, is_verified, is_trusted,
                        trust_expires_at, can_skip_mfa, mfa_skip_until)
                 VALUES ($1, $2, $3, $4, true, now() + interval '20 days', true, now() + interval '20 days') RETURNING id",
            )
            .bind(user)
            .bind(hash)
            .bind(agent)
            .bind(verified)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    const OTHER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    let by_agent = device(sha256_hex(&format!("ua:{CHROME}")), CHROME, false).await;
    let by_fingerprint = device(sha256_hex("ann-laptop"), CHROME, true).await;
    let collided = device(sha256_hex(&format!("ua:{OTHER}")), OTHER, true).await;
    sqlx::query("INSERT INTO accounts_apikey (user_id, name, prefix, key_hash, scopes) VALUES ($1, 'old', 'oldkey000001', 'h', '{me:read}')")
        .bind(user)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        r#"INSERT INTO accounts_auditlog (user_id, action, details)
           VALUES ($1, 'email_changed', '{"old_email": "ann@example.com", "new_email": "ann@example.org"}')"#,
    )
    .bind(user)
    .execute(&pool)
    .await
    .unwrap();

    MIGRATOR.run(&pool).await.unwrap();

    let rows: Vec<(uuid::Uuid, String, bool, bool, bool)> =
        sqlx::query_as("SELECT id, fingerprint_hash, is_verified, is_trusted, can_skip_mfa FROM accounts_device")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 3, "every device keeps its row and id");
    for (id, key, verified, trusted, skips) in rows {
        // Trust ends everywhere: a verified device may hide an undetectable collision.
        assert!(!trusted && !skips, "{key}");
        if id == by_fingerprint {
            assert!(verified && !key.starts_with("ua:"), "a fingerprint's device stays in its namespace");
        } else {
            assert!(id == by_agent || id == collided);
            assert!(key.starts_with("ua:") && !verified, "{key}");
        }
    }
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_trusteddevice WHERE is_trusted")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(grants, 0, "no trust grant stays live");
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications_emailnotification").fetch_one(&pool).await.unwrap();
    assert_eq!(queued, 0, "quietly: no email");
    let expires: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM expires_at - now())::float8 / 86400 FROM accounts_apikey")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!((364.9..=365.0).contains(&expires), "{expires}");
    let details: Value = sqlx::query_scalar("SELECT details FROM accounts_auditlog").fetch_one(&pool).await.unwrap();
    assert!(!details.to_string().contains("@"), "{details}");

    // The same browser signs in: the same device, no new-device email.
    let app = TestApp::spawn(pool.clone()).await;
    let r = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "ann@example.com", "password": PASSWORD}),
        &[("User-Agent", CHROME)],
    )
    .await;
    let t = tokens(json(r).await);
    assert_eq!(current_device(&app, &t).await["id"], json!(by_agent));
    let mails = app.deliver_mail().await;
    assert!(mails_to(&mails, "ann@example.com", "A new device signed in to your account").is_empty());
}

#[sqlx::test]
async fn a_login_half_done_before_a_reset_cannot_be_finished_after_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    // The attacker has the password and a factor of their own; a challenge waits.
    let waiting = crate::mfa::challenge(&app, "ann@example.com").await;
    assert_eq!(app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await.status(), 202);
    let reset = app.mailed_token("ann@example.com", "/reset-password").await;
    let r = app
        .post_json("/api/v1/auth/password/reset/confirm", &json!({"token": reset, "new_password": PASSWORD_2}))
        .await;
    assert_eq!(r.status(), 204);
    let code = fresh_code(&e.secret, &mut e.used_step);
    assert_error(crate::mfa::verify(&app, &waiting, "totp", &code).await, 401, "CHALLENGE_EXPIRED").await;
    let details: Value = sqlx::query_scalar("SELECT details FROM accounts_auditlog WHERE action = 'password_reset'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(details["challenges_ended"], 1, "{details}");
}

#[sqlx::test]
async fn trust_given_while_mfa_was_off_ends_when_it_turns_on(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);
    let laptop = [("X-Device-Fingerprint", "someone-elses-laptop")];
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    let t = tokens(json(post(&app, "/api/v1/auth/login", body.clone(), &laptop).await).await);
    let id = current_device(&app, &t).await["id"].as_str().unwrap().to_owned();
    let r = app.with_token(Method::POST, &format!("/api/v1/devices/{id}/trust"), &t.access).send().await.unwrap();
    assert_eq!(r.status(), 200, "with MFA off there is no factor to ask for");
    let _ = enrol_totp(&app, &t).await;
    assert_eq!(trusted_devices(&pool).await, 0);
    let again = json(post(&app, "/api/v1/auth/login", body, &laptop).await).await;
    assert_eq!(again["status"], "mfa_required", "{again}");
}

#[sqlx::test]
async fn a_key_whose_password_check_raced_a_reset_is_not_made(pool: PgPool) {
    let app = Arc::new(TestApp::spawn(pool.clone()).await);
    let ann = app.signed_in("ann").await;
    // A reset (here its first statement) holds the account's row while the key request,
    // which checked the old password before, reaches its transaction.
    let mut reset = pool.begin().await.unwrap();
    sqlx::query("UPDATE auth_user SET password_hash = '!reset-in-flight' WHERE username = 'ann'")
        .execute(&mut *reset)
        .await
        .unwrap();
    let request = {
        let (app, access) = (app.clone(), ann.access.clone());
        tokio::spawn(async move {
            app.with_token(Method::POST, "/api/v1/api-keys", &access)
                .json(&json!({"name": "late", "scopes": ["me:read"], "password": PASSWORD}))
                .send()
                .await
                .unwrap()
        })
    };
    // Long enough for the hash check to pass and the request to wait on the row.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    reset.commit().await.unwrap();
    assert_error(request.await.unwrap(), 401, "UNAUTHENTICATED").await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_apikey").fetch_one(&pool).await.unwrap();
    assert_eq!(keys, 0, "no key outlives the remediation it raced");
}
