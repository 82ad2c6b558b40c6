//! Multi-factor authentication driven as a client and an authenticator would: TOTP codes
//! come from this file's own RFC 6238 (checked against the RFC's vectors), never from the
//! crate the service uses; emailed codes come out of the SMTP capture.

use std::{collections::HashSet, sync::Arc};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha1::Sha1;
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, Tokens, assert_error, json, jwt_parts, tokens};

// An authenticator of our own: RFC 4226 HOTP over RFC 6238 time steps.

fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let binary = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    format!("{:0width$}", binary % 10u32.pow(digits), width = digits as usize)
}

fn totp_at(secret: &[u8], unix: u64, digits: u32) -> String {
    hotp(secret, unix / 30, digits)
}

fn now_step() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30
}

/// The code of the first step after `used` that the server still accepts (it allows one
/// step either side of now), so no test code is ever a replay by accident.
pub(crate) fn fresh_code(secret: &[u8], used: &mut u64) -> String {
    let step = (*used + 1).max(now_step().saturating_sub(1));
    assert!(step <= now_step() + 1, "no fresh step left in the window; the test used too many");
    *used = step;
    hotp(secret, step, 6)
}

/// RFC 4648 base32 without padding, as otpauth URIs carry secrets.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let index = ALPHABET.iter().position(|a| *a == c).expect("base32 character") as u32;
        value = (value << 5) | index;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

#[test]
fn our_authenticator_matches_the_rfc_6238_vectors() {
    let secret = b"12345678901234567890";
    for (time, code) in [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ] {
        assert_eq!(totp_at(secret, time, 8), code, "T = {time}");
    }
    assert_eq!(base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), secret);
}

/// A user with TOTP on: the secret (from the otpauth URI), the backup codes, the step used.
pub(crate) struct Enrolled {
    pub(crate) secret: Vec<u8>,
    pub(crate) secret_base32: String,
    pub(crate) backup_codes: Vec<String>,
    pub(crate) used_step: u64,
}

pub(crate) async fn enrol_totp(app: &TestApp, t: &Tokens) -> Enrolled {
    let setup = app
        .with_token(Method::POST, "/api/v1/mfa/totp/setup", &t.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.status(), 200);
    let setup = json(setup).await;
    let uri = setup["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("otpauth://totp/Gatehouse:"), "{uri}");
    assert!(uri.ends_with("&issuer=Gatehouse"), "{uri}");
    assert!(setup["qr_svg"].as_str().unwrap().contains("<svg"));
    let secret_base32 = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    assert_eq!(secret_base32, setup["secret"].as_str().unwrap());
    let secret = base32_decode(&secret_base32);
    assert_eq!(secret.len(), 20);

    // Not active before its confirmation.
    let status = json(app.with_token(Method::GET, "/api/v1/mfa", &t.access).send().await.unwrap()).await;
    assert_eq!(status["enabled"], false);

    let mut used_step = 0;
    let code = fresh_code(&secret, &mut used_step);
    let confirm = app
        .with_token(Method::POST, "/api/v1/mfa/totp/confirm", &t.access)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let codes: Vec<String> = json(confirm).await["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 10);
    Enrolled { secret, secret_base32, backup_codes: codes, used_step }
}

/// A password login of an account with MFA on: its challenge id.
pub(crate) async fn challenge(app: &TestApp, email: &str) -> String {
    let r = app.login(email, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["status"], "mfa_required", "{body}");
    assert!(body.get("access_token").is_none());
    body["challenge_id"].as_str().unwrap().to_owned()
}

pub(crate) async fn verify(app: &TestApp, challenge: &str, method: &str, code: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/mfa/verify", &json!({"challenge_id": challenge, "method": method, "code": code})).await
}

fn claims(access: &str) -> Value {
    jwt_parts(access).1
}

#[sqlx::test]
async fn totp_from_setup_to_an_aal2_login(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let status = json(app.with_token(Method::GET, "/api/v1/mfa", &t.access).send().await.unwrap()).await;
    assert_eq!(status["enabled"], true);
    assert_eq!(status["primary_method"], "totp");
    assert_eq!(status["backup_codes_remaining"], 10);
    assert_eq!(app.with_token(Method::POST, "/api/v1/auth/logout", &t.access).send().await.unwrap().status(), 204);

    let r = app.login("ann@example.com", PASSWORD).await;
    let body = json(r).await;
    assert_eq!(body["status"], "mfa_required");
    assert_eq!(body["methods"], json!(["totp", "backup_code"]));
    assert_eq!(body["expires_in"], 300);
    let challenge_id = body["challenge_id"].as_str().unwrap().to_owned();

    let code = fresh_code(&e.secret, &mut e.used_step);
    let r = verify(&app, &challenge_id, "totp", &code).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert!(body.get("backup_codes_remaining").is_none(), "only a backup code's answer counts them");
    let signed = tokens(body);
    let c = claims(&signed.access);
    assert_eq!(c["aal"], 2);
    assert_eq!(c["amr"], json!(["pwd", "otp", "mfa"]));
    let me = app.with_token(Method::GET, "/api/v1/users/me", &signed.access).send().await.unwrap();
    assert_eq!(json(me).await["mfa_enabled"], true);
    let (verified, method): (bool, Option<String>) =
        sqlx::query_as("SELECT mfa_verified, mfa_method_used FROM accounts_session WHERE id = $1::uuid")
            .bind(&signed.session_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((verified, method.as_deref()), (true, Some("totp")));

    // The challenge is spent, and the same code is a replay for any other challenge.
    assert_error(verify(&app, &challenge_id, "totp", &code).await, 401, "CHALLENGE_EXPIRED").await;
    let other = challenge(&app, "ann@example.com").await;
    let replay = assert_error(verify(&app, &other, "totp", &code).await, 401, "MFA_CODE_INVALID").await;
    assert_eq!(replay["error"]["details"]["attempts_remaining"], 2);
    let next = fresh_code(&e.secret, &mut e.used_step);
    assert_eq!(verify(&app, &other, "totp", &next).await.status(), 200);

    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log_mfaauditlog ORDER BY created_at")
        .fetch_all(&pool)
        .await
        .unwrap();
    for expected in ["setup_started", "enabled", "challenge_created", "verified", "failed"] {
        assert!(actions.iter().any(|a| a == expected), "no {expected} in {actions:?}");
    }
    let failed: i32 =
        sqlx::query_scalar("SELECT verification_attempts FROM audit_log_mfaauditlog WHERE action = 'failed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(failed, 1);
}

#[sqlx::test]
async fn a_challenge_dies_after_three_wrong_codes_and_when_it_expires(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let id = challenge(&app, "ann@example.com").await;
    for left in [2, 1, 0] {
        let wrong = assert_error(verify(&app, &id, "totp", "000000").await, 401, "MFA_CODE_INVALID").await;
        assert_eq!(wrong["error"]["details"]["attempts_remaining"], left);
    }
    let right = fresh_code(&e.secret, &mut e.used_step);
    assert_error(verify(&app, &id, "totp", &right).await, 401, "CHALLENGE_EXPIRED").await;

    let expired = challenge(&app, "ann@example.com").await;
    sqlx::query("UPDATE otp_mfachallenge SET expires_at = now() - interval '1 second' WHERE challenge_id = $1::uuid")
        .bind(&expired)
        .execute(&pool)
        .await
        .unwrap();
    assert_error(verify(&app, &expired, "totp", &right).await, 401, "CHALLENGE_EXPIRED").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(verify(&app, &unknown, "totp", &right).await, 401, "CHALLENGE_EXPIRED").await;

    // Wrong second factors count against the account's lockout: with the three above, two
    // more make five, and then even the right code is refused, and so is the password.
    let id = challenge(&app, "ann@example.com").await;
    for _ in 0..2 {
        assert_error(verify(&app, &id, "backup_code", "WRONG-CODE").await, 401, "MFA_CODE_INVALID").await;
    }
    let code = fresh_code(&e.secret, &mut e.used_step);
    let locked = verify(&app, &id, "totp", &code).await;
    assert!(locked.headers().contains_key("retry-after"));
    assert_error(locked, 429, "RATE_LIMITED").await;
    assert_error(app.login("ann@example.com", PASSWORD).await, 429, "RATE_LIMITED").await;
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts_loginattempt WHERE outcome = 'failure' AND failure_reason = 'mfa_failed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failures, 5);
}

#[sqlx::test]
async fn twenty_concurrent_uses_of_one_backup_code_make_one_session(pool: PgPool) {
    let app = Arc::new(TestApp::spawn(pool.clone()).await);
    let t = app.signed_in("ann").await;
    let e = enrol_totp(&app, &t).await;
    let mut challenges = Vec::new();
    for _ in 0..20 {
        challenges.push(challenge(&app, "ann@example.com").await);
    }
    let code = e.backup_codes[0].to_lowercase();
    let calls = challenges.into_iter().map(|id| (id, "backup_code", code.clone())).collect();
    let statuses = concurrent_verifies(&app, calls).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 401, 429].contains(s)), "{statuses:?}");
    let (used, recoveries): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM otp_backupcode WHERE used_at IS NOT NULL),
                (SELECT count(*) FROM otp_mfarecovery WHERE recovery_method = 'backup_code')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((used, recoveries), (1, 1));
    let status = json(app.with_token(Method::GET, "/api/v1/mfa", &t.access).send().await.unwrap()).await;
    assert_eq!(status["backup_codes_remaining"], 9);
}

/// Sends the verifications at once, each from its own task; their statuses in order.
async fn concurrent_verifies(app: &Arc<TestApp>, calls: Vec<(String, &'static str, String)>) -> Vec<u16> {
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|(challenge, method, code)| {
            let app = app.clone();
            tokio::spawn(async move { verify(&app, &challenge, method, &code).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

/// The newest 6-digit code mailed to `to` (the outbox sends by priority, so a code may
/// arrive before an older, less urgent message of the same batch).
pub(crate) async fn mailed_code(app: &TestApp, to: &str) -> String {
    let mails = app.deliver_mail().await;
    let is_code = |m: &&crate::smtp::CapturedMail| m.parsed().subject().is_some_and(|s| s.contains("code"));
    let mail = mails.iter().rev().filter(is_code).find(|m| m.to.iter().any(|t| t == to)).expect("a mail");
    let text = mail.parsed().body_text(0).unwrap().into_owned();
    let codes: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|w| w.len() == 6).collect();
    assert_eq!(codes.len(), 1, "{text}");
    codes[0].to_owned()
}

pub(crate) async fn enrol_email(app: &TestApp, t: &Tokens) -> Vec<String> {
    let setup = app
        .with_token(Method::POST, "/api/v1/mfa/email/setup", &t.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.status(), 202);
    let code = mailed_code(app, "ann@example.com").await;
    let wrong = app
        .with_token(Method::POST, "/api/v1/mfa/email/confirm", &t.access)
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_error(wrong, 401, "MFA_CODE_INVALID").await;
    let confirm = app
        .with_token(Method::POST, "/api/v1/mfa/email/confirm", &t.access)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    json(confirm).await["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
}

#[sqlx::test]
async fn emailed_codes_are_single_use_and_capped_per_hour(pool: PgPool) {
    let app = Arc::new(TestApp::spawn(pool.clone()).await);
    let t = app.signed_in("ann").await;
    let backup = enrol_email(&app, &t).await;
    assert_eq!(backup.len(), 10);

    let id = challenge(&app, "ann@example.com").await;
    let send = json!({"challenge_id": id, "method": "email"});
    assert_eq!(app.post_json("/api/v1/auth/mfa/send", &send).await.status(), 202);
    let code = mailed_code(&app, "ann@example.com").await;
    let calls = (0..20).map(|_| (id.clone(), "email", code.clone())).collect();
    let statuses = concurrent_verifies(&app, calls).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 401].contains(s)), "{statuses:?}");

    // Setup sent one code and the login one more: eight more fit in the hour, the next is refused.
    let id = challenge(&app, "ann@example.com").await;
    let send = json!({"challenge_id": id, "method": "email"});
    for _ in 0..8 {
        assert_eq!(app.post_json("/api/v1/auth/mfa/send", &send).await.status(), 202);
    }
    let refused = app.post_json("/api/v1/auth/mfa/send", &send).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, 429, "RATE_LIMITED").await;
    let limited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log_mfaauditlog WHERE action = 'rate_limited'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(limited, 1);
    // An SMS needs a phone set up first.
    let sms = json!({"challenge_id": id, "method": "sms"});
    assert_error(app.post_json("/api/v1/auth/mfa/send", &sms).await, 422, "VALIDATION_FAILED").await;
}

#[sqlx::test]
async fn a_trusted_device_skips_mfa_and_others_do_not(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let login = |fingerprint: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Device-Fingerprint", fingerprint)
            .json(&json!({"email": "ann@example.com", "password": PASSWORD}))
            .send()
    };
    let body = json(login("laptop-1").await.unwrap()).await;
    let id = body["challenge_id"].as_str().unwrap();
    let code = fresh_code(&e.secret, &mut e.used_step);
    let r = app
        .client
        .post(app.url("/api/v1/auth/mfa/verify"))
        .header("X-Device-Fingerprint", "laptop-1")
        .json(&json!({"challenge_id": id, "method": "totp", "code": code, "trust_device": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let skipped = json(login("laptop-1").await.unwrap()).await;
    assert_eq!(skipped["status"], "authenticated", "{skipped}");
    assert_eq!(claims(skipped["access_token"].as_str().unwrap())["aal"], 1);
    let note: Value = sqlx::query_scalar(
        "SELECT metadata FROM audit_log_sessionauditlog WHERE action = 'login' ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(note["mfa"], "skipped");
    assert_eq!(json(login("phone-2").await.unwrap()).await["status"], "mfa_required");
    assert_eq!(json(app.login("ann@example.com", PASSWORD).await).await["status"], "mfa_required");

    // Expired trust is not honoured.
    sqlx::query("UPDATE accounts_device SET mfa_skip_until = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(json(login("laptop-1").await.unwrap()).await["status"], "mfa_required");

    // A device marked compromised: its sessions' tokens are refused at once, it never
    // skips MFA again, and it cannot be trusted again.
    let id = json(login("phone-2").await.unwrap()).await["challenge_id"].as_str().unwrap().to_owned();
    let code = fresh_code(&e.secret, &mut e.used_step);
    let aal2 = tokens(json(verify(&app, &id, "totp", &code).await).await);
    let client = &app;
    let trust_as = |device: String, t: Tokens| async move {
        client
            .with_token(Method::POST, &format!("/api/v1/devices/{device}/trust"), &t.access)
            .json(&json!({"days": 7}))
            .send()
            .await
    };
    let trust = |device: String| trust_as(device, aal2.clone());
    let devices = json(app.with_token(Method::GET, "/api/v1/devices", &aal2.access).send().await.unwrap()).await;
    let laptop =
        devices.as_array().unwrap().iter().find(|d| d["current"] == false && d["is_verified"] == true).unwrap();
    let laptop = laptop["id"].as_str().unwrap().to_owned();
    // Only from a session opened on the laptop itself.
    assert_error(trust(laptop.clone()).await.unwrap(), 403, "FORBIDDEN").await;
    let id = json(login("laptop-1").await.unwrap()).await["challenge_id"].as_str().unwrap().to_owned();
    // A backup code: the TOTP steps the server accepts right now are spent.
    let on_laptop = app
        .client
        .post(app.url("/api/v1/auth/mfa/verify"))
        .header("X-Device-Fingerprint", "laptop-1")
        .json(&json!({"challenge_id": id, "method": "backup_code", "code": e.backup_codes[0]}))
        .send()
        .await
        .unwrap();
    let on_laptop = tokens(json(on_laptop).await);
    assert_eq!(trust_as(laptop.clone(), on_laptop).await.unwrap().status(), 200);
    let skipped = tokens(json(login("laptop-1").await.unwrap()).await);
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &skipped.access).send().await.unwrap().status(), 200);
    // Trusting a device needs an aal 2 session while MFA is on; the skip gave aal 1.
    let r = app
        .with_token(Method::POST, &format!("/api/v1/devices/{laptop}/trust"), &skipped.access)
        .json(&json!({"days": 7}))
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "MFA_REQUIRED").await;
    let r = app
        .with_token(Method::POST, &format!("/api/v1/devices/{laptop}/compromised"), &aal2.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        app.with_token(Method::GET, "/api/v1/users/me", &skipped.access).send().await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert_eq!(json(login("laptop-1").await.unwrap()).await["status"], "mfa_required");
    assert_error(trust(laptop.clone()).await.unwrap(), 409, "DEVICE_COMPROMISED").await;
    let level: String =
        sqlx::query_scalar("SELECT risk_level FROM audit_log_deviceauditlog WHERE action = 'compromised'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(level, "critical");
    let mails = app.deliver_mail().await;
    assert!(mails.iter().any(|m| m.parsed().subject() == Some("A device was marked compromised")));
}

#[sqlx::test]
async fn factor_changes_need_a_recent_second_factor_and_step_up_renews_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let regenerate = |access: String| {
        app.with_token(Method::POST, "/api/v1/mfa/backup-codes", &access).json(&json!({"password": PASSWORD})).send()
    };
    // The enrolling session is aal 1: changes need a step-up first.
    assert_error(regenerate(t.access.clone()).await.unwrap(), 403, "MFA_REQUIRED").await;
    let step_up = app.with_token(Method::POST, "/api/v1/auth/mfa/step-up", &t.access).send().await.unwrap();
    assert_eq!(step_up.status(), 200);
    let id = json(step_up).await["challenge_id"].as_str().unwrap().to_owned();
    let code = fresh_code(&e.secret, &mut e.used_step);
    let raised = verify(&app, &id, "totp", &code).await;
    assert_eq!(raised.status(), 200);
    let raised = tokens(json(raised).await);
    assert_eq!(raised.session_id, t.session_id, "the same session, raised");
    assert_eq!(claims(&raised.access)["aal"], 2);
    // The old refresh token of the session is retired; the new one works.
    assert_eq!(app.refresh(&t.refresh).await.status(), 401);

    let r = regenerate(raised.access.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let fresh: Vec<String> =
        json(r).await["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    // The old set died.
    let id = challenge(&app, "ann@example.com").await;
    assert_error(verify(&app, &id, "backup_code", &e.backup_codes[0]).await, 401, "MFA_CODE_INVALID").await;
    assert_eq!(verify(&app, &id, "backup_code", &fresh[0]).await.status(), 200);

    let wrong = app
        .with_token(Method::POST, "/api/v1/mfa/backup-codes", &raised.access)
        .json(&json!({"password": "Not-The-Password-1"}))
        .send()
        .await
        .unwrap();
    assert_error(wrong, 403, "PASSWORD_INCORRECT").await;

    // A second factor older than STEP_UP_MAX_AGE_SECONDS no longer counts.
    sqlx::query("UPDATE accounts_session SET mfa_verified_at = now() - interval '16 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_error(regenerate(raised.access.clone()).await.unwrap(), 403, "MFA_REQUIRED").await;
}

#[sqlx::test]
async fn removing_the_last_factor_turns_mfa_off_and_staff_need_approval(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let id = challenge(&app, "ann@example.com").await;
    let aal2 = tokens(json(verify(&app, &id, "totp", &fresh_code(&e.secret, &mut e.used_step)).await).await);
    let remove = |code: String| {
        app.with_token(Method::DELETE, "/api/v1/mfa/totp", &aal2.access)
            .json(&json!({"password": PASSWORD, "code": code}))
            .send()
    };
    assert_error(remove("000000".into()).await.unwrap(), 401, "MFA_CODE_INVALID").await;
    assert_eq!(remove(fresh_code(&e.secret, &mut e.used_step)).await.unwrap().status(), 204);
    let status = json(app.with_token(Method::GET, "/api/v1/mfa", &aal2.access).send().await.unwrap()).await;
    assert_eq!((status["enabled"].clone(), status["backup_codes_remaining"].clone()), (json!(false), json!(0)));
    assert_eq!(json(app.login("ann@example.com", PASSWORD).await).await["status"], "authenticated");
    let log: Vec<String> = sqlx::query_scalar("SELECT action FROM accounts_mfachangelog ORDER BY created_at")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(log, ["enabled", "disabled"]);
    // The owner hears of it, whatever their settings: a takeover's first move.
    let mails = app.deliver_mail().await;
    let notice = mails.iter().find(|m| m.parsed().subject() == Some("Two-step verification was turned off"));
    assert!(notice.is_some_and(|m| m.to.iter().any(|t| t == "ann@example.com")));

    // A staff user's removal waits for another staff member.
    let boss = crate::helpers::create_superuser(&app.state, "boss@example.com", "boss", PASSWORD.into()).await.unwrap();
    let b = app.login_ok("boss@example.com", PASSWORD).await;
    let mut be = enrol_totp(&app, &b).await;
    let id = challenge(&app, "boss@example.com").await;
    let b2 = tokens(json(verify(&app, &id, "totp", &fresh_code(&be.secret, &mut be.used_step)).await).await);
    let r = app
        .with_token(Method::DELETE, "/api/v1/mfa/totp", &b2.access)
        .json(&json!({"password": PASSWORD, "code": be.backup_codes[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body = json(r).await;
    assert_eq!(body["status"], "approval_required");
    let request: uuid::Uuid = body["change_request_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(json(app.login("boss@example.com", PASSWORD).await).await["status"], "mfa_required");

    let client = gatehouse::core::client::ClientContext::default();
    let as_boss = gatehouse::core::auth::authenticate(&app.state, &b2.access).await.unwrap();
    assert_eq!(as_boss.user_id, boss.id);
    let own = gatehouse::accounts::service::approve_mfa_change(&app.state, &client, request, Some(&as_boss)).await;
    assert!(matches!(own, Err(gatehouse::AppError::Forbidden)), "self-approval is refused");
    gatehouse::accounts::service::approve_mfa_change(&app.state, &client, request, None).await.unwrap();
    assert_eq!(json(app.login("boss@example.com", PASSWORD).await).await["status"], "authenticated");
    let status: String = sqlx::query_scalar("SELECT approval_status FROM accounts_mfachangelog WHERE id = $1")
        .bind(request)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "approved");
}

#[sqlx::test]
async fn a_staff_user_reaches_the_admin_api_only_with_mfa(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    crate::helpers::create_superuser(&app.state, "root@example.com", "root", PASSWORD.into()).await.unwrap();
    let t = app.login_ok("root@example.com", PASSWORD).await;
    let audit = |access: String| app.with_token(Method::GET, "/api/v1/admin/audit/session", &access).send();
    assert_error(audit(t.access.clone()).await.unwrap(), 403, "MFA_REQUIRED").await;
    let mut e = enrol_totp(&app, &t).await;
    let id = challenge(&app, "root@example.com").await;
    let aal2 = tokens(json(verify(&app, &id, "totp", &fresh_code(&e.secret, &mut e.used_step)).await).await);
    assert_eq!(audit(aal2.access).await.unwrap().status(), 200);
}

#[sqlx::test]
async fn no_mfa_secret_or_code_is_stored_in_clear(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &t).await;
    let id = challenge(&app, "ann@example.com").await;
    assert_eq!(verify(&app, &id, "backup_code", &e.backup_codes[1]).await.status(), 200);
    let setup = app.with_token(Method::POST, "/api/v1/mfa/email/setup", &t.access).send().await.unwrap();
    // MFA is on and this session is aal 1: the email method needs a step-up first.
    assert_error(setup, 403, "MFA_REQUIRED").await;
    let id = challenge(&app, "ann@example.com").await;
    let aal2 = tokens(json(verify(&app, &id, "totp", &fresh_code(&e.secret, &mut e.used_step)).await).await);
    let setup = app
        .with_token(Method::POST, "/api/v1/mfa/email/setup", &aal2.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.status(), 202);
    // While they wait, the code mail and the verification link mail are sealed.
    let waiting: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT email_type, body, html_body FROM notifications_emailnotification
          WHERE status = 'pending' AND email_type NOT IN ('new_device', 'mfa_method_added')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let kinds: HashSet<&str> = waiting.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, HashSet::from(["email_verification", "mfa_code"]));
    for (kind, body, html) in &waiting {
        assert!(body.starts_with("sealed:v1:") && html.starts_with("sealed:v1:"), "{kind} waits in clear");
    }
    let emailed = mailed_code(&app, "ann@example.com").await;
    app.deliver_mail().await;

    let mut secrets: Vec<String> = vec![e.secret_base32.clone(), emailed.clone()];
    for code in &e.backup_codes {
        secrets.push(code.clone());
        secrets.push(code.replace('-', ""));
    }
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema
          WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            AND c.data_type IN ('text', 'character varying', 'jsonb', 'ARRAY', 'json', 'bytea')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (table, column, kind) in columns {
        if kind == "bytea" {
            let sql = format!("SELECT \"{column}\" FROM \"{table}\" WHERE \"{column}\" IS NOT NULL");
            let values: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap();
            for value in values {
                assert!(
                    !value.windows(e.secret.len()).any(|w| w == e.secret),
                    "{table}.{column} holds the TOTP secret"
                );
                assert!(!value.windows(e.secret_base32.len()).any(|w| w == e.secret_base32.as_bytes()));
            }
            continue;
        }
        let sql = format!("SELECT \"{column}\"::text FROM \"{table}\" WHERE \"{column}\" IS NOT NULL");
        let values: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap();
        for value in values {
            for secret in &secrets {
                // A 6-digit code could occur by chance inside a UUID; look for it as a word.
                let found = if secret.len() == 6 {
                    value.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == secret)
                } else {
                    value.contains(secret.as_str())
                };
                assert!(!found, "{table}.{column} holds {secret} in clear");
            }
        }
    }
}

#[sqlx::test]
async fn using_a_backup_code_warns_by_email_when_two_or_fewer_are_left(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let e = enrol_totp(&app, &t).await;
    let warnings = |mails: &[crate::smtp::CapturedMail]| {
        mails.iter().filter(|m| m.parsed().subject() == Some("You are running out of backup codes")).count()
    };
    for (used, code) in e.backup_codes.iter().enumerate().take(8) {
        let id = challenge(&app, "ann@example.com").await;
        let r = verify(&app, &id, "backup_code", code).await;
        assert_eq!(r.status(), 200);
        assert_eq!(json(r).await["backup_codes_remaining"], 9 - used as i64, "the answer says how many remain");
        let expected = (used + 1).saturating_sub(7);
        assert_eq!(warnings(&app.deliver_mail().await), expected, "after {} codes", used + 1);
    }
    let mails = app.deliver_mail().await;
    let warning = mails.iter().rfind(|m| m.parsed().subject() == Some("You are running out of backup codes")).unwrap();
    assert!(warning.parsed().body_text(0).unwrap().contains("2 of your backup codes are left"));
}

#[sqlx::test]
async fn the_cleanup_job_deletes_only_expired_challenges_and_codes(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    enrol_email(&app, &t).await;
    let live = challenge(&app, "ann@example.com").await;
    let old = challenge(&app, "ann@example.com").await;
    for id in [&old, &live] {
        let send = json!({"challenge_id": id, "method": "email"});
        assert_eq!(app.post_json("/api/v1/auth/mfa/send", &send).await.status(), 202);
    }
    sqlx::query("UPDATE otp_mfachallenge SET expires_at = now() - interval '2 hours' WHERE challenge_id = $1::uuid")
        .bind(&old)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE otp_otp SET expires_at = now() - interval '2 hours'
          WHERE challenge_id = (SELECT id FROM otp_mfachallenge WHERE challenge_id = $1::uuid)",
    )
    .bind(&old)
    .execute(&pool)
    .await
    .unwrap();
    let counts = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT count(*) FROM otp_mfachallenge), (SELECT count(*) FROM otp_otp)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // Two challenges; three codes (the setup's, used, and one per challenge).
    assert_eq!(counts().await, (2, 3));
    let removed =
        gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    assert_eq!(removed, Some(2), "the old challenge and its code");
    assert_eq!(counts().await, (1, 2));
    let (kind, rows): (String, i64) = sqlx::query_as(
        "SELECT kind, rows_affected FROM audit_log_jobrun WHERE kind = 'cleanup' ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((kind.as_str(), rows), ("cleanup", 2));
    // The live challenge and its code still work.
    let code = mailed_code(&app, "ann@example.com").await;
    assert_eq!(verify(&app, &live, "email", &code).await.status(), 200);
}

/// The newest text to `phone`, read as the phone would: the outbox holds it sealed, so the
/// test opens it with the deployment's data key.
async fn texted_code(pool: &PgPool, phone: &str) -> String {
    let sealed: String = sqlx::query_scalar(
        "SELECT message FROM notifications_smsnotification WHERE phone_number = $1 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(phone)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(sealed.starts_with("sealed:v1:"), "an SMS with a code waits sealed");
    let keys = crate::helpers::keys();
    let text = keys.open_text(gatehouse::core::data_keys::Purpose::OutboxBody, &sealed).unwrap();
    let codes: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|w| w.len() == 6).collect();
    assert_eq!(codes.len(), 1, "{text}");
    codes[0].to_owned()
}

#[sqlx::test]
async fn sms_as_a_second_factor_from_setup_to_login(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let bad = app
        .with_token(Method::POST, "/api/v1/mfa/sms/setup", &t.access)
        .json(&json!({"phone_number": "555-1234"}))
        .send()
        .await
        .unwrap();
    assert_error(bad, 422, "VALIDATION_FAILED").await;
    let setup = app
        .with_token(Method::POST, "/api/v1/mfa/sms/setup", &t.access)
        .json(&json!({"phone_number": "+15551234567", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(setup.status(), 202);
    let code = texted_code(&pool, "+15551234567").await;
    let confirm = app
        .with_token(Method::POST, "/api/v1/mfa/sms/confirm", &t.access)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    assert_eq!(json(confirm).await["backup_codes"].as_array().unwrap().len(), 10);
    let status = json(app.with_token(Method::GET, "/api/v1/mfa", &t.access).send().await.unwrap()).await;
    assert_eq!(status["primary_method"], "sms");

    let body = json(app.login("ann@example.com", PASSWORD).await).await;
    assert_eq!(body["methods"], json!(["backup_code", "sms"]));
    let id = body["challenge_id"].as_str().unwrap();
    let send = json!({"challenge_id": id, "method": "sms"});
    assert_eq!(app.post_json("/api/v1/auth/mfa/send", &send).await.status(), 202);
    let code = texted_code(&pool, "+15551234567").await;
    let r = verify(&app, id, "sms", &code).await;
    assert_eq!(r.status(), 200);
    assert_eq!(claims(&tokens(json(r).await).access)["amr"], json!(["pwd", "sms", "mfa"]));
}
