//! Passkeys through the real router, driven by a software authenticator written to the
//! spec (`softkey`): registration, a passkey as second factor, sign-in with a passkey alone,
//! step-up; and what must be refused: another origin or RP id, a replayed or expired
//! ceremony, a counter gone backwards, another user's passkey or registration.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    helpers::{PASSWORD, TestApp, Tokens, admin, assert_error, json, jwt_parts, tokens},
    softkey::SoftKey,
};

/// The origin of the test deployment (PUBLIC_BASE_URL in `Config::for_tests`).
const ORIGIN: &str = "http://gatehouse.test";

async fn call(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.with_token(method, path, token).json(&body).send().await.unwrap()
}

/// Starts a registration for `t` (the password given): the ceremony and the options.
async fn start(app: &TestApp, t: &Tokens) -> (String, Value) {
    start_with(app, t, PASSWORD).await
}

async fn start_with(app: &TestApp, t: &Tokens, password: &str) -> (String, Value) {
    let r =
        call(app, Method::POST, "/api/v1/mfa/passkeys/register/start", &t.access, json!({"password": password})).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    (body["ceremony_id"].as_str().unwrap().to_owned(), body["options"].clone())
}

async fn finish(app: &TestApp, t: &Tokens, ceremony: &str, credential: Value) -> reqwest::Response {
    let body = json!({"ceremony_id": ceremony, "name": "Laptop", "credential": credential});
    call(app, Method::POST, "/api/v1/mfa/passkeys/register/finish", &t.access, body).await
}

/// Registers a passkey made by `key` for `t`; returns the stored passkey's JSON.
async fn register(app: &TestApp, t: &Tokens, key: &mut SoftKey) -> Value {
    let (ceremony, options) = start(app, t).await;
    let r = finish(app, t, &ceremony, key.create(&options)).await;
    assert_eq!(r.status(), 201);
    json(r).await
}

/// Sign-in options for a passkey alone: the ceremony and the options.
async fn sign_in_options(app: &TestApp) -> (String, Value) {
    let r = app.post_json("/api/v1/auth/passkey/options", &json!({})).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    (body["ceremony_id"].as_str().unwrap().to_owned(), body["options"].clone())
}

async fn sign_in(app: &TestApp, ceremony: &str, credential: &Value) -> reqwest::Response {
    app.post_json("/api/v1/auth/passkey/login", &json!({"ceremony_id": ceremony, "credential": credential})).await
}

/// A password login that needs its second factor: the challenge id.
async fn challenge(app: &TestApp, email: &str) -> String {
    let body = json(app.login(email, PASSWORD).await).await;
    assert_eq!(body["status"], "mfa_required", "{body}");
    assert!(body["methods"].as_array().unwrap().contains(&json!("passkey")), "{body}");
    body["challenge_id"].as_str().unwrap().to_owned()
}

async fn challenge_options(app: &TestApp, challenge: &str) -> Value {
    let r = app.post_json("/api/v1/auth/mfa/passkey/options", &json!({"challenge_id": challenge})).await;
    assert_eq!(r.status(), 200);
    json(r).await["options"].clone()
}

async fn verify(app: &TestApp, challenge: &str, credential: &Value) -> reqwest::Response {
    let body = json!({"challenge_id": challenge, "method": "passkey", "credential": credential});
    app.post_json("/api/v1/auth/mfa/verify", &body).await
}

async fn mfa_actions(pool: &PgPool, username: &str) -> Vec<(String, Option<String>, String)> {
    sqlx::query_as(
        "SELECT a.action, a.mfa_method, a.risk_level FROM audit_log_mfaauditlog a JOIN auth_user u ON u.id = a.user_id
          WHERE u.username = $1 ORDER BY a.created_at, a.id",
    )
    .bind(username)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_first_passkey_turns_mfa_on_and_answers_the_login_challenge(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut key = SoftKey::new(ORIGIN);

    // The options are what a browser needs: this relying party, the user, user verification.
    let (ceremony, options) = start(&app, &ann).await;
    assert_eq!(options["rp"]["id"], "gatehouse.test");
    assert_eq!(options["user"]["name"], "ann@example.com");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    let r = finish(&app, &ann, &ceremony, key.create(&options)).await;
    assert_eq!(r.status(), 201);
    let stored = json(r).await;
    assert_eq!(stored["name"], "Laptop");
    assert_eq!(stored["backup_eligible"], false);
    assert!(stored["last_used_at"].is_null());
    assert_eq!(stored["backup_codes"].as_array().map(Vec::len), Some(10), "the first factor brings backup codes");
    let row: (i64, Vec<String>, Vec<u8>) = sqlx::query_as(
        "SELECT sign_count, transports, public_key FROM otp_webauthncredential WHERE id = $1::text::uuid",
    )
    .bind(stored["id"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((row.0, row.1), (1, vec!["internal".to_owned()]));
    assert!(!row.2.is_empty(), "the COSE public key is kept");
    let status = json(app.with_token(Method::GET, "/api/v1/mfa", &ann.access).send().await.unwrap()).await;
    assert_eq!((status["enabled"].as_bool(), status["primary_method"].as_str()), (Some(true), Some("passkey")));
    // The owner hears of it.
    app.background_settled().await;
    let mails = app.deliver_mail().await;
    assert!(mails.iter().any(|m| m.parsed().subject() == Some("A sign-in factor was added to your account")));

    // The next login asks for a second factor, and the passkey answers it.
    let challenge = challenge(&app, "ann@example.com").await;
    let options = challenge_options(&app, &challenge).await;
    assert_eq!(options["allowCredentials"].as_array().unwrap().len(), 1);
    let r = verify(&app, &challenge, &key.get(&options)).await;
    assert_eq!(r.status(), 200);
    let t = tokens(json(r).await);
    let (_, claims) = jwt_parts(&t.access);
    assert_eq!(claims["aal"], 2);
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "mfa"]));
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert!(used.is_some());
    let actions = mfa_actions(&pool, "ann").await;
    assert!(actions.iter().any(|(a, m, _)| a == "enabled" && m.as_deref() == Some("passkey")), "{actions:?}");
    assert!(actions.iter().any(|(a, m, _)| a == "verified" && m.as_deref() == Some("passkey")), "{actions:?}");

    // Listed, renamed; the list shows no key material.
    let list = json(app.with_token(Method::GET, "/api/v1/mfa/passkeys", &t.access).send().await.unwrap()).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("public_key").is_none() && list[0].get("passkey").is_none());
    let id = list[0]["id"].as_str().unwrap();
    let path = format!("/api/v1/mfa/passkeys/{id}");
    let renamed = call(&app, Method::PATCH, &path, &t.access, json!({"name": "  YubiKey 5  "})).await;
    assert_eq!(json(renamed).await["name"], "YubiKey 5");
    let blank = call(&app, Method::PATCH, &path, &t.access, json!({"name": " "})).await;
    assert_error(blank, 422, "VALIDATION_FAILED").await;
}

#[sqlx::test]
async fn a_passkey_alone_signs_in_at_aal_2_under_the_login_rules(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut key = SoftKey::new(ORIGIN);
    register(&app, &ann, &mut key).await;

    let (ceremony, options) = sign_in_options(&app).await;
    assert_eq!(options["userVerification"], "required");
    assert!(options["allowCredentials"].as_array().is_none_or(Vec::is_empty), "discoverable: {options}");
    let r = sign_in(&app, &ceremony, &key.get(&options)).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["user"]["username"], "ann");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!((claims["aal"].clone(), claims["amr"].clone()), (json!(2), json!(["hwk", "mfa"])));
    let me = app.with_token(Method::GET, "/api/v1/users/me", body["access_token"].as_str().unwrap()).send().await;
    assert_eq!(me.unwrap().status(), 200);
    // A login attempt (success) and a login audit row, as a password login leaves.
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM accounts_loginattempt WHERE identifier = 'ann@example.com'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(outcomes.contains(&"success".to_owned()), "{outcomes:?}");

    // An unknown key is INVALID_CREDENTIALS, as an unknown email is.
    let mut stranger = SoftKey::new(ORIGIN);
    stranger.user_handle = uuid::Uuid::now_v7().as_bytes().to_vec();
    let (ceremony, options) = sign_in_options(&app).await;
    assert_error(sign_in(&app, &ceremony, &stranger.get(&options)).await, 401, "INVALID_CREDENTIALS").await;

    // A deactivated account is refused after the key proved itself.
    sqlx::query("UPDATE auth_user SET is_active = false WHERE username = 'ann'").execute(&pool).await.unwrap();
    let (ceremony, options) = sign_in_options(&app).await;
    assert_error(sign_in(&app, &ceremony, &key.get(&options)).await, 403, "ACCOUNT_DISABLED").await;
}

#[sqlx::test]
async fn a_locked_account_is_not_opened_by_its_passkey(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut key = SoftKey::new(ORIGIN);
    register(&app, &ann, &mut key).await;
    for _ in 0..6 {
        app.login("ann@example.com", "Wrong-Password-000").await;
    }
    let (ceremony, options) = sign_in_options(&app).await;
    assert_error(sign_in(&app, &ceremony, &key.get(&options)).await, 429, "RATE_LIMITED").await;
}

#[sqlx::test]
async fn a_passkey_renews_the_step_up_window_and_deleting_one_needs_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut laptop = SoftKey::new(ORIGIN);
    let mut phone = SoftKey::synced(ORIGIN);
    register(&app, &ann, &mut laptop).await;
    // MFA is on now and this session never showed a factor: a second passkey needs one.
    let r = call(&app, Method::POST, "/api/v1/mfa/passkeys/register/start", &ann.access, json!({"password": PASSWORD}))
        .await;
    assert_error(r, 403, "MFA_REQUIRED").await;

    let step_up = call(&app, Method::POST, "/api/v1/auth/mfa/step-up", &ann.access, json!({})).await;
    let challenge = json(step_up).await["challenge_id"].as_str().unwrap().to_owned();
    let options = challenge_options(&app, &challenge).await;
    let r = verify(&app, &challenge, &laptop.get(&options)).await;
    assert_eq!(r.status(), 200);
    let raised = tokens(json(r).await);
    assert_eq!(jwt_parts(&raised.access).1["amr"], json!(["pwd", "hwk", "mfa"]));

    let second = register(&app, &raised, &mut phone).await;
    assert_eq!(second["backup_eligible"], true);
    assert!(second.get("backup_codes").is_none(), "not the first factor: {second}");

    // A synced passkey keeps its counter at 0: accepted again and again.
    for _ in 0..2 {
        let (ceremony, options) = sign_in_options(&app).await;
        assert_eq!(sign_in(&app, &ceremony, &phone.get(&options)).await.status(), 200);
    }

    // Deleting needs a recent factor: a fresh aal 1 session cannot; the raised one can.
    let id = second["id"].as_str().unwrap();
    let path = format!("/api/v1/mfa/passkeys/{id}");
    let plain = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(json(plain).await["status"], "mfa_required");
    let r = app.with_token(Method::DELETE, &path, &ann.access).send().await.unwrap();
    assert_error(r, 403, "MFA_REQUIRED").await;
    let r = app.with_token(Method::DELETE, &path, &raised.access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 1);
    let actions = mfa_actions(&pool, "ann").await;
    assert!(actions.iter().any(|(a, m, _)| a == "method_removed" && m.as_deref() == Some("passkey")), "{actions:?}");
    app.background_settled().await;
    let mails = app.deliver_mail().await;
    assert!(mails.iter().any(|m| m.parsed().subject() == Some("A sign-in factor was removed from your account")));

    // A staff member's passkey goes only with another staff member's approval, and the
    // approval removes the passkey named, not the others.
    let mut tablet = SoftKey::new(ORIGIN);
    let third = register(&app, &raised, &mut tablet).await;
    sqlx::query("UPDATE auth_user SET is_staff = true WHERE username = 'ann'").execute(&pool).await.unwrap();
    let path = format!("/api/v1/mfa/passkeys/{}", third["id"].as_str().unwrap());
    let r = app.with_token(Method::DELETE, &path, &raised.access).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let request = json(r).await["change_request_id"].as_str().unwrap().to_owned();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 2, "nothing removed before the approval");
    let root = admin(&app, &pool).await;
    let approve = format!("/api/v1/admin/mfa/change-requests/{request}/approve");
    assert_eq!(app.with_token(Method::POST, &approve, &root.access).send().await.unwrap().status(), 204);
    let kept: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM otp_webauthncredential").fetch_all(&pool).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_ne!(kept[0].to_string(), third["id"].as_str().unwrap(), "the named passkey went, the laptop stayed");
}

#[sqlx::test]
async fn assertions_for_another_origin_or_rp_id_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;

    // A registration relayed from a phishing site: its origin is the phisher's.
    let mut phished = SoftKey::new("http://gatehouse.test.evil.example");
    let (ceremony, options) = start(&app, &ann).await;
    assert_error(finish(&app, &ann, &ceremony, phished.create(&options)).await, 422, "VALIDATION_FAILED").await;

    let mut key = SoftKey::new(ORIGIN);
    register(&app, &ann, &mut key).await;
    // Signed for another origin: the assertion a phishing page relays.
    key.origin = "http://evil.example".into();
    let (ceremony, options) = sign_in_options(&app).await;
    assert_error(sign_in(&app, &ceremony, &key.get(&options)).await, 401, "INVALID_CREDENTIALS").await;
    // The right origin, but authenticator data bound to another relying party.
    key.origin = ORIGIN.into();
    key.rp_id_override = Some("evil.example".into());
    let (ceremony, options) = sign_in_options(&app).await;
    assert_error(sign_in(&app, &ceremony, &key.get(&options)).await, 401, "INVALID_CREDENTIALS").await;
    // As a second factor, the same costs the challenge an attempt.
    let challenge = challenge(&app, "ann@example.com").await;
    let options = challenge_options(&app, &challenge).await;
    let r = verify(&app, &challenge, &key.get(&options)).await;
    let body = assert_error(r, 401, "MFA_CODE_INVALID").await;
    assert_eq!(body["error"]["details"]["attempts_remaining"], 2);
    // Each refusal counted against the account's lockout.
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts_loginattempt WHERE identifier = 'ann@example.com' AND outcome = 'failure'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failures, 3);
    // Back to honest: it works.
    key.rp_id_override = None;
    let (ceremony, options) = sign_in_options(&app).await;
    assert_eq!(sign_in(&app, &ceremony, &key.get(&options)).await.status(), 200);
}

#[sqlx::test]
async fn a_ceremony_answers_once_even_under_concurrency(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut key = SoftKey::synced(ORIGIN);
    register(&app, &ann, &mut key).await;

    // The same assertion sent four times at once: one session, three CHALLENGE_EXPIRED.
    let (ceremony, options) = sign_in_options(&app).await;
    let assertion = key.get(&options);
    let answers = futures_join4(
        sign_in(&app, &ceremony, &assertion),
        sign_in(&app, &ceremony, &assertion),
        sign_in(&app, &ceremony, &assertion),
        sign_in(&app, &ceremony, &assertion),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3, "{statuses:?}");
    for r in answers.into_iter().filter(|r| r.status() == 401) {
        assert_error(r, 401, "CHALLENGE_EXPIRED").await;
    }
    // Replayed later: the ceremony is gone.
    assert_error(sign_in(&app, &ceremony, &assertion).await, 401, "CHALLENGE_EXPIRED").await;

    // A second factor's assertion is taken with its challenge: replaying it is refused.
    let challenge = challenge(&app, "ann@example.com").await;
    let options = challenge_options(&app, &challenge).await;
    let answer = key.get(&options);
    assert_eq!(verify(&app, &challenge, &answer).await.status(), 200);
    assert_error(verify(&app, &challenge, &answer).await, 401, "CHALLENGE_EXPIRED").await;
    // Without options asked for, there is nothing to answer.
    let fresh = challenge_fresh(&app).await;
    assert_error(verify(&app, &fresh, &answer).await, 401, "CHALLENGE_EXPIRED").await;
}

async fn challenge_fresh(app: &TestApp) -> String {
    challenge(app, "ann@example.com").await
}

async fn futures_join4<F: std::future::Future<Output = reqwest::Response>>(
    a: F,
    b: F,
    c: F,
    d: F,
) -> Vec<reqwest::Response> {
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    vec![a, b, c, d]
}

#[sqlx::test]
async fn a_counter_that_goes_backwards_is_a_clone_refused_and_audited(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut key = SoftKey::new(ORIGIN);
    register(&app, &ann, &mut key).await;
    for _ in 0..3 {
        let (ceremony, options) = sign_in_options(&app).await;
        assert_eq!(sign_in(&app, &ceremony, &key.get(&options)).await.status(), 200);
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT sign_count FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 4);

    // A copy of the key that has signed less: its counter is behind the stored one.
    let (ceremony, options) = sign_in_options(&app).await;
    let behind = key.assert_with(options["challenge"].as_str().unwrap(), "gatehouse.test", 2);
    assert_error(sign_in(&app, &ceremony, &behind).await, 401, "INVALID_CREDENTIALS").await;
    // The same counter again is no better (it must move forward).
    let (ceremony, options) = sign_in_options(&app).await;
    let same = key.assert_with(options["challenge"].as_str().unwrap(), "gatehouse.test", 4);
    assert_error(sign_in(&app, &ceremony, &same).await, 401, "INVALID_CREDENTIALS").await;
    let clones = mfa_actions(&pool, "ann").await;
    let clones: Vec<_> = clones.iter().filter(|(a, _, _)| a == "clone_suspected").collect();
    assert_eq!(clones.len(), 2, "{clones:?}");
    assert!(clones.iter().all(|(_, m, risk)| m.as_deref() == Some("passkey") && risk == "critical"));
    let stored: i64 =
        sqlx::query_scalar("SELECT sign_count FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 4, "a refused assertion moves nothing");
}

#[sqlx::test]
async fn an_expired_ceremony_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut key = SoftKey::new(ORIGIN);
    let (ceremony, options) = start(&app, &ann).await;
    let created = key.create(&options);
    let age = "UPDATE otp_webauthnceremony SET expires_at = now() - interval '1 second'";
    sqlx::query(age).execute(&pool).await.unwrap();
    assert_error(finish(&app, &ann, &ceremony, created).await, 401, "CHALLENGE_EXPIRED").await;

    let mut key = SoftKey::new(ORIGIN);
    register(&app, &ann, &mut key).await;
    let (ceremony, options) = sign_in_options(&app).await;
    sqlx::query(age).execute(&pool).await.unwrap();
    assert_error(sign_in(&app, &ceremony, &key.get(&options)).await, 401, "CHALLENGE_EXPIRED").await;
    // The cleanup job deletes what expired.
    gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_webauthnceremony").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test]
async fn passkeys_and_registrations_are_their_owners_only(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    let mut key = SoftKey::new(ORIGIN);

    // Bob cannot finish the registration Ann started, and trying does not spend it.
    let (ceremony, options) = start(&app, &ann).await;
    let credential = key.create(&options);
    assert_error(finish(&app, &bob, &ceremony, credential.clone()).await, 401, "CHALLENGE_EXPIRED").await;
    // Nor can Ann from another session of hers.
    let other = app.login_ok("ann@example.com", PASSWORD).await;
    assert_error(finish(&app, &other, &ceremony, credential.clone()).await, 401, "CHALLENGE_EXPIRED").await;
    let r = finish(&app, &ann, &ceremony, credential).await;
    assert_eq!(r.status(), 201);
    let id = json(r).await["id"].as_str().unwrap().to_owned();

    // Bob cannot see, rename or delete it: 404, as for an id that does not exist.
    let list = json(app.with_token(Method::GET, "/api/v1/mfa/passkeys", &bob.access).send().await.unwrap()).await;
    assert_eq!(list, json!([]));
    let path = format!("/api/v1/mfa/passkeys/{id}");
    assert_error(call(&app, Method::PATCH, &path, &bob.access, json!({"name": "mine"})).await, 404, "NOT_FOUND").await;
    let r = app.with_token(Method::DELETE, &path, &bob.access).send().await.unwrap();
    assert_error(r, 404, "NOT_FOUND").await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 1);
}

/// A password reset through the mailed link (past the one-email-a-minute cap).
async fn reset_password(app: &TestApp, pool: &PgPool, new_password: &str) {
    sqlx::query("UPDATE accounts_onetimetoken SET created_at = created_at - interval '5 minutes'")
        .execute(pool)
        .await
        .unwrap();
    let r = app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    assert_eq!(r.status(), 202);
    app.background_settled().await;
    let token = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    let body = json!({"token": token, "new_password": new_password});
    assert_eq!(app.post_json("/api/v1/auth/password/reset/confirm", &body).await.status(), 204);
}

#[sqlx::test]
async fn remediations_remove_passkeys_as_the_recovery_table_says(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut key = SoftKey::new(ORIGIN);
    register(&app, &ann, &mut key).await;

    // A reset proves the mailbox, nothing more: it never turns MFA off. The only factor,
    // though added after the last password sign-in, stays (and the notice lists it).
    reset_password(&app, &pool, crate::helpers::PASSWORD_2).await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 1);
    let login = json(app.login("ann@example.com", crate::helpers::PASSWORD_2).await).await;
    assert_eq!(login["status"], "mfa_required", "{login}");

    // Signed in with the password and the first passkey, ann adds a second one; a reset
    // removes that one (added after the last password sign-in, another factor remains).
    let challenge_id = login["challenge_id"].as_str().unwrap().to_owned();
    let options = challenge_options(&app, &challenge_id).await;
    let r = verify(&app, &challenge_id, &key.get(&options)).await;
    assert_eq!(r.status(), 200);
    let t = tokens(json(r).await);
    let mut later = SoftKey::new(ORIGIN);
    let (ceremony, options) = start_with(&app, &t, crate::helpers::PASSWORD_2).await;
    assert_eq!(finish(&app, &t, &ceremony, later.create(&options)).await.status(), 201);
    reset_password(&app, &pool, "Marmalade-Octopus-77").await;
    let names: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM otp_webauthncredential").fetch_all(&pool).await.unwrap();
    assert_eq!(names.len(), 1, "the later passkey is gone, the first stays");
    let login = json(app.login("ann@example.com", "Marmalade-Octopus-77").await).await;
    assert_eq!(login["status"], "mfa_required", "{login}");

    // An approved MFA reset removes every passkey: they are factors.
    let root = admin(&app, &pool).await;
    let (_, boss) = crate::administration::staff(&app, &pool, "boss").await;
    sqlx::query("UPDATE auth_user SET is_superuser = true WHERE username = 'boss'").execute(&pool).await.unwrap();
    let ann_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM auth_user WHERE username = 'ann'").fetch_one(&pool).await.unwrap();
    let request = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/users/{ann_id}/mfa/reset"),
        &root.access,
        json!({"reason": "lost every device"}),
    )
    .await;
    let request = json(request).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/admin/mfa/change-requests/{request}/approve");
    assert_eq!(app.with_token(Method::POST, &path, &boss.access).send().await.unwrap().status(), 204);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_webauthncredential").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test]
async fn reached_by_ip_address_the_service_runs_with_passkeys_off(pool: PgPool) {
    let mut config = crate::helpers::test_config(&pool);
    config.public_base_url = "http://127.0.0.1:8080".into();
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    assert!(app.state.relying_party.off_reason().is_some());
    let ann = app.signed_in("ann").await;
    let r = call(&app, Method::POST, "/api/v1/mfa/passkeys/register/start", &ann.access, json!({"password": PASSWORD}))
        .await;
    assert_error(r, 503, "UNAVAILABLE").await;
    assert_error(app.post_json("/api/v1/auth/passkey/options", &json!({})).await, 503, "UNAVAILABLE").await;
    // Everything else works.
    assert_eq!(app.with_token(Method::GET, "/api/v1/mfa/passkeys", &ann.access).send().await.unwrap().status(), 200);
}

#[sqlx::test]
async fn malformed_passkey_answers_are_422_not_500(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let (ceremony, _) = start(&app, &ann).await;
    for credential in [json!({}), json!("x"), json!({"id": "a", "rawId": "%%", "type": "public-key"})] {
        let r = finish(&app, &ann, &ceremony, credential.clone()).await;
        assert_error(r, 422, "VALIDATION_FAILED").await;
        let body = json!({"ceremony_id": ceremony, "credential": credential});
        assert_error(app.post_json("/api/v1/auth/passkey/login", &body).await, 422, "VALIDATION_FAILED").await;
    }
    let challenge = json!({"challenge_id": uuid::Uuid::new_v4(), "method": "passkey"});
    assert_error(app.post_json("/api/v1/auth/mfa/verify", &challenge).await, 422, "VALIDATION_FAILED").await;
    let unknown = json!({"challenge_id": uuid::Uuid::new_v4()});
    let r = app.post_json("/api/v1/auth/mfa/passkey/options", &unknown).await;
    assert_error(r, 401, "CHALLENGE_EXPIRED").await;
}

#[sqlx::test]
async fn a_passkey_opens_the_console_through_its_form(pool: PgPool) {
    use crate::admin_page::{csrf, set_cookie};
    use reqwest::header;

    let app = TestApp::spawn(pool.clone()).await;
    crate::helpers::create_superuser(&app.state, "root@example.com", "root", PASSWORD.into()).await.unwrap();
    let root = app.login_ok("root@example.com", PASSWORD).await;
    let mut key = SoftKey::new(ORIGIN);
    register(&app, &root, &mut key).await;

    // The sign-in page offers the passkey under a CSP that lets its own script run.
    let page = app.get("/admin").await;
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    let (cookie, _) = set_cookie(&page, "gh_admin_csrf").expect("csrf cookie");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"action="/admin/login/passkey""#));
    let token = csrf(&html);
    let script = app.get("/admin/passkey.js").await;
    assert_eq!(script.status(), 200);
    assert!(script.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    assert!(script.text().await.unwrap().contains("navigator.credentials.get"));

    let post = |csrf: String, ceremony: String, credential: String| {
        app.client
            .post(app.url("/admin/login/passkey"))
            .header(header::COOKIE, format!("gh_admin_csrf={cookie}"))
            .form(&[("csrf", csrf), ("ceremony_id", ceremony), ("credential", credential)])
            .send()
    };
    let (ceremony, options) = sign_in_options(&app).await;
    let credential = key.get(&options).to_string();
    // A forged form, or an answer that is not a credential: refused, and the ceremony is
    // not spent by them.
    let forged = post("x".into(), ceremony.clone(), credential.clone()).await.unwrap();
    assert_eq!(forged.status(), 403);
    assert!(set_cookie(&forged, "gh_admin").is_none());
    let garbage = post(token.clone(), ceremony.clone(), "{not json".into()).await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert!(garbage.text().await.unwrap().contains("could not be read"));

    let signed = post(token.clone(), ceremony.clone(), credential.clone()).await.unwrap();
    assert_eq!(signed.status(), 303);
    let (session, _) = set_cookie(&signed, "gh_admin").expect("the console's session cookie");
    let dashboard =
        app.client.get(app.url("/admin")).header(header::COOKIE, format!("gh_admin={session}")).send().await.unwrap();
    let html = dashboard.text().await.unwrap();
    assert!(html.contains(r#"id="chart""#) && html.contains(r#"id="passkeys""#) && html.contains("Laptop"));
    // The same answer again: the ceremony is spent.
    let again = post(token, ceremony, credential).await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(set_cookie(&again, "gh_admin").is_none());

    // Adding a passkey from the console needs its session and its form token.
    let start = |cookie: String, csrf: &str| {
        app.client
            .post(app.url("/admin/passkeys/start"))
            .header(header::COOKIE, cookie)
            .form(&[("csrf", csrf), ("password", PASSWORD)])
            .send()
    };
    assert_eq!(start(String::new(), "x").await.unwrap().status(), 303, "no session: back to sign-in");
    let cookie = format!("gh_admin={session}");
    assert_eq!(start(cookie.clone(), "x").await.unwrap().status(), 403);
    let options = start(cookie, &crate::admin_page::csrf(&html)).await.unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(json(options).await["options"]["excludeCredentials"].as_array().map(Vec::len), Some(1));
}
