//! Administration: Django-style permissions through groups, the admin users API, and MFA
//! change requests decided by a second staff member.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{PASSWORD, PASSWORD_2, TestApp, Tokens, admin, assert_error, json};

/// A staff member (not a superuser) who may administer without MFA, signed in.
pub(crate) async fn staff(app: &TestApp, pool: &PgPool, name: &str) -> (Uuid, Tokens) {
    let email = format!("{name}@example.com");
    assert_eq!(app.register(&email, name, PASSWORD).await.status(), 201);
    let id: Uuid = sqlx::query_scalar("UPDATE auth_user SET is_staff = true WHERE username = $1 RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    (id, app.login_ok(&email, PASSWORD).await)
}

async fn user_id(pool: &PgPool, name: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM auth_user WHERE username = $1").bind(name).fetch_one(pool).await.unwrap()
}

async fn call(
    app: &TestApp,
    method: Method,
    path: impl AsRef<str>,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.with_token(method, path.as_ref(), token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[sqlx::test]
async fn a_permission_held_through_a_group_goes_when_the_user_leaves_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let (sam_id, sam) = staff(&app, &pool, "sam").await;
    let groups = |names: Value| {
        call(&app, Method::PATCH, format!("/api/v1/admin/users/{sam_id}"), &root.access, Some(json!({"groups": names})))
    };

    // A group of our own holding accounts.view_user.
    sqlx::query(
        "WITH g AS (INSERT INTO auth_group (name) VALUES ('helpdesk') RETURNING id)
         INSERT INTO auth_group_permissions (group_id, permission_id)
         SELECT g.id, p.id FROM g, auth_permission p WHERE p.app_label = 'accounts' AND p.codename = 'view_user'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_error(call(&app, Method::GET, "/api/v1/admin/users", &sam.access, None).await, 403, "FORBIDDEN").await;
    let detail = json(groups(json!(["helpdesk"])).await).await;
    assert_eq!(detail["groups"], json!(["helpdesk"]));
    assert_eq!(call(&app, Method::GET, "/api/v1/admin/users", &sam.access, None).await.status(), 200);
    assert_eq!(json(groups(json!([])).await).await["groups"], json!([]));
    assert_error(call(&app, Method::GET, "/api/v1/admin/users", &sam.access, None).await, 403, "FORBIDDEN").await;

    // The seeded auditors read audit data and change nothing.
    groups(json!(["auditors"])).await;
    for path in ["/api/v1/admin/audit/session", "/api/v1/admin/audit/summaries", "/api/v1/admin/jobs"] {
        assert_eq!(call(&app, Method::GET, path, &sam.access, None).await.status(), 200, "{path}");
    }
    let event: Uuid =
        sqlx::query_scalar("SELECT id FROM audit_log_sessionauditlog LIMIT 1").fetch_one(&pool).await.unwrap();
    let review = json!({"review_status": "dismissed"});
    let refused = [
        (Method::POST, format!("/api/v1/admin/audit/session/{event}/review"), Some(review)),
        (Method::POST, "/api/v1/admin/audit/summaries/run".to_owned(), Some(json!({"date": "2026-01-01"}))),
        (Method::GET, "/api/v1/admin/users".to_owned(), None),
        (Method::PATCH, format!("/api/v1/admin/users/{sam_id}"), Some(json!({"is_active": false}))),
        (Method::POST, format!("/api/v1/admin/users/{sam_id}/logout-all"), None),
        (Method::POST, format!("/api/v1/admin/users/{sam_id}/unlock"), None),
    ];
    for (method, path, body) in refused {
        assert_error(call(&app, method.clone(), &path, &sam.access, body).await, 403, "FORBIDDEN").await;
    }

    // The OpenAPI document names the permission of every admin route.
    let doc = json(app.get("/api/v1/openapi.json").await).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/admin/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let permission = op["x-permission"].as_str().unwrap_or_default();
            assert!(permission.contains('.'), "{method} {path} declares no permission");
        }
    }
}

#[sqlx::test]
async fn staff_find_inspect_unlock_and_deactivate_users(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let root_id = user_id(&pool, "root").await;
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);
    assert_eq!(app.register("bob@example.com", "bob", PASSWORD).await.status(), 201);
    let ann = app.login_ok("ann@example.com", PASSWORD).await;
    let ann_id = user_id(&pool, "ann").await;
    let get = |path: String| call(&app, Method::GET, path, &root.access, None);

    let found = json(get("/api/v1/admin/users?search=ANN".into()).await).await;
    assert_eq!(found["pagination"]["total"], 1, "{found}");
    assert_eq!(found["items"][0]["email"], "ann@example.com");
    let none = json(get("/api/v1/admin/users?search=%25".into()).await).await;
    assert_eq!(none["pagination"]["total"], 0, "% matches itself, not everything");
    let staff_only = json(get("/api/v1/admin/users?is_staff=true".into()).await).await;
    assert_eq!(staff_only["items"].as_array().unwrap().len(), 1);
    assert_eq!(staff_only["items"][0]["username"], "root");
    for bad in ["is_active=yes", "limit=0", "page=x"] {
        assert_error(get(format!("/api/v1/admin/users?{bad}")).await, 422, "VALIDATION_FAILED").await;
    }

    // Five wrong passwords lock ann; the detail says so, unlock lifts it.
    for _ in 0..5 {
        assert_eq!(app.login("ann@example.com", PASSWORD_2).await.status(), 401);
    }
    let detail = json(get(format!("/api/v1/admin/users/{ann_id}")).await).await;
    assert_eq!(detail["lock"]["locked"], true, "{detail}");
    assert_eq!(detail["user"]["username"], "ann");
    assert_eq!(detail["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(detail["devices"].as_array().unwrap().len(), 1);
    assert_eq!(detail["mfa"]["enabled"], false);
    let unlock = call(&app, Method::POST, format!("/api/v1/admin/users/{ann_id}/unlock"), &root.access, None).await;
    assert_eq!(unlock.status(), 204);
    assert_eq!(json(get(format!("/api/v1/admin/users/{ann_id}")).await).await["lock"]["locked"], false);
    assert_error(get(format!("/api/v1/admin/users/{}", Uuid::now_v7())).await, 404, "NOT_FOUND").await;

    // Nobody changes their own account here; unknown groups are named.
    let patch = |id: Uuid, body: Value| {
        call(&app, Method::PATCH, format!("/api/v1/admin/users/{id}"), &root.access, Some(body))
    };
    assert_error(patch(root_id, json!({"is_staff": false})).await, 403, "FORBIDDEN").await;
    let unknown = assert_error(patch(ann_id, json!({"groups": ["nobody"]})).await, 422, "VALIDATION_FAILED").await;
    assert!(unknown.to_string().contains("nobody"), "{unknown}");
    assert_error(patch(ann_id, json!({})).await, 422, "VALIDATION_FAILED").await;

    // Staff with accounts.change_user but not superuser: is_active yes, is_staff no.
    let (_, sam) = staff(&app, &pool, "sam").await;
    sqlx::query(
        "INSERT INTO auth_user_user_permissions (user_id, permission_id)
         SELECT u.id, p.id FROM auth_user u, auth_permission p
          WHERE u.username = 'sam' AND p.app_label = 'accounts' AND p.codename = 'change_user'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let by_sam =
        |body: Value| call(&app, Method::PATCH, format!("/api/v1/admin/users/{ann_id}"), &sam.access, Some(body));
    assert_error(by_sam(json!({"is_staff": true})).await, 403, "FORBIDDEN").await;
    let deactivated = json(by_sam(json!({"is_active": false})).await).await;
    assert_eq!(deactivated["user"]["is_active"], false);
    assert_eq!(deactivated["sessions"], json!([]), "every session revoked");

    assert_error(
        app.with_token(Method::GET, "/api/v1/users/me", &ann.access).send().await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert_error(app.login("ann@example.com", PASSWORD).await, 403, "ACCOUNT_DISABLED").await;
    let record: Value = sqlx::query_scalar(
        "SELECT details FROM accounts_auditlog WHERE user_id = $1 AND action = 'user_changed_by_admin'",
    )
    .bind(ann_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(record["by"], json!(user_id(&pool, "sam").await));
    assert_eq!(record["sessions_revoked"], 1);
    let detail = json(get(format!("/api/v1/admin/users/{ann_id}")).await).await;
    let actions: Vec<&str> =
        detail["recent_events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions[..2], ["user_changed_by_admin", "unlocked"], "{actions:?}");
}

#[sqlx::test]
async fn a_reset_of_every_factor_needs_a_second_staff_member(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let (_, boss) = staff(&app, &pool, "boss").await;
    sqlx::query("UPDATE auth_user SET is_superuser = true WHERE username = 'boss'").execute(&pool).await.unwrap();
    let ann = app.signed_in("ann").await;
    crate::mfa::enrol_totp(&app, &ann).await;
    let ann_id = user_id(&pool, "ann").await;
    let reset = |token: String| {
        app.with_token(Method::POST, &format!("/api/v1/admin/users/{ann_id}/mfa/reset"), &token)
            .json(&json!({"reason": "passport checked on a video call"}))
            .send()
    };
    let decide = |id: &str, verdict: &str, token: &str| {
        app.with_token(Method::POST, &format!("/api/v1/admin/mfa/change-requests/{id}/{verdict}"), token).send()
    };

    // A request that is rejected changes nothing.
    let first = reset(root.access.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first = json(first).await;
    assert_eq!((first["action"].as_str(), first["approval_status"].as_str()), (Some("reset"), Some("pending")));
    let id = first["id"].as_str().unwrap().to_owned();
    assert_error(decide(&id, "reject", &root.access).await.unwrap(), 403, "FORBIDDEN").await;
    assert_eq!(decide(&id, "reject", &boss.access).await.unwrap().status(), 204);
    assert_error(decide(&id, "approve", &boss.access).await.unwrap(), 404, "NOT_FOUND").await;
    assert_eq!(json(app.login("ann@example.com", PASSWORD).await).await["status"], "mfa_required");

    // The one who asked cannot approve; another staff member can, and it applies.
    let second = json(reset(root.access.clone()).await.unwrap()).await;
    let id = second["id"].as_str().unwrap().to_owned();
    let pending =
        json(app.with_token(Method::GET, "/api/v1/admin/mfa/change-requests", &boss.access).send().await.unwrap())
            .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending["items"][0]["id"], id.as_str());
    assert_eq!(pending["items"][0]["requested_by_id"], json!(user_id(&pool, "root").await));
    assert_error(decide(&id, "approve", &root.access).await.unwrap(), 403, "FORBIDDEN").await;
    assert_eq!(decide(&id, "approve", &boss.access).await.unwrap().status(), 204);

    assert_error(
        app.with_token(Method::GET, "/api/v1/users/me", &ann.access).send().await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert_eq!(json(app.login("ann@example.com", PASSWORD).await).await["status"], "authenticated");
    let decided = json(
        app.with_token(Method::GET, "/api/v1/admin/mfa/change-requests?status=all", &boss.access).send().await.unwrap(),
    )
    .await;
    let statuses: Vec<&str> =
        decided["items"].as_array().unwrap().iter().map(|c| c["approval_status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["approved", "rejected"]);
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log_mfaauditlog WHERE user_id = $1 AND action LIKE 'change_%' ORDER BY created_at",
    )
    .bind(ann_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(actions, ["change_requested", "change_rejected", "change_requested", "change_approved"]);
    let mails = app.deliver_mail().await;
    let told = mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == "ann@example.com"))
        .filter(|m| m.parsed().subject() == Some("Your two-step verification change request was decided"))
        .count();
    assert_eq!(told, 2, "one email per decision");
    // Nothing left to reset.
    assert_error(reset(root.access.clone()).await.unwrap(), 409, "MFA_NOT_ENABLED").await;
}
