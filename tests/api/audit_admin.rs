//! The admin review API: access rules, filters, reviews, summaries, jobs, retention, the
//! user's own events, and partition pruning of the lists.

use chrono::{Datelike, Months, Utc};
use gatehouse::audit_log::{self, models::events::AuditKind};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, Tokens, admin, assert_error, json};

async fn get(app: &TestApp, t: &Tokens, path: &str) -> reqwest::Response {
    app.with_token(Method::GET, path, &t.access).send().await.unwrap()
}

async fn id_of(pool: &PgPool, username: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM auth_user WHERE username = $1").bind(username).fetch_one(pool).await.unwrap()
}

#[sqlx::test]
async fn only_staff_with_the_permission_and_mfa_may_administer(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    assert_error(get(&app, &ann, "/api/v1/admin/audit/session").await, 403, "FORBIDDEN").await;

    // A superuser with the default enforce_for_admin must come with an aal 2 session.
    crate::helpers::create_superuser(&app.state, "boss@example.com", "boss", PASSWORD.into()).await.unwrap();
    let boss = app.login_ok("boss@example.com", PASSWORD).await;
    assert_error(get(&app, &boss, "/api/v1/admin/audit/session").await, 403, "MFA_REQUIRED").await;

    // Staff without the permission: forbidden; with it (directly or through a group): allowed.
    let bob = app.signed_in("bob").await;
    let bob_id = id_of(&pool, "bob").await;
    sqlx::query("UPDATE auth_user SET is_staff = true WHERE id = $1").bind(bob_id).execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(bob_id)
        .execute(&pool)
        .await
        .unwrap();
    assert_error(get(&app, &bob, "/api/v1/admin/audit/session").await, 403, "FORBIDDEN").await;
    sqlx::query(
        "WITH g AS (INSERT INTO auth_group (name) VALUES ('log-readers') RETURNING id)
         INSERT INTO auth_group_permissions (group_id, permission_id)
         SELECT g.id, p.id FROM g, auth_permission p WHERE p.app_label = 'audit_log' AND p.codename = 'view_auditlog'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO auth_user_groups (user_id, group_id) SELECT $1, id FROM auth_group WHERE name = 'log-readers'",
    )
    .bind(bob_id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(get(&app, &bob, "/api/v1/admin/audit/session").await.status(), 200);
    assert_error(get(&app, &bob, "/api/v1/admin/jobs").await, 403, "FORBIDDEN").await;
}

#[sqlx::test]
async fn recorded_events_are_listed_filtered_and_reviewed(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    app.signed_in("ann").await;
    let ann = id_of(&pool, "ann").await;
    app.login("ann@example.com", "Wrong-Password-123").await;

    let page = json(get(&app, &root, &format!("/api/v1/admin/audit/session?user_id={ann}")).await).await;
    let actions: Vec<&str> = page["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["login_failed", "login", "registered"], "newest first");
    assert_eq!(page["pagination"]["total"], 3);
    let failed = json(
        get(&app, &root, &format!("/api/v1/admin/audit/session?user_id={ann}&action=login_failed&risk_level=medium"))
            .await,
    )
    .await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    let event = failed["items"][0].clone();
    assert_eq!((event["kind"].as_str(), event["ip_address"].as_str()), (Some("session"), Some("127.0.0.1/32")));

    for bad in [
        "/api/v1/admin/audit/session?risk_level=severe",
        "/api/v1/admin/audit/session?user_id=nope",
        "/api/v1/admin/audit/session?from=yesterday",
        "/api/v1/admin/audit/session?action=teleported",
        "/api/v1/admin/audit/session?is_anomalous=maybe",
        "/api/v1/admin/audit/session?limit=0",
        "/api/v1/admin/audit/session?limit=101",
        "/api/v1/admin/audit/device?min_risk_score=101",
        "/api/v1/admin/audit/session?from=2026-02-01&to=2026-01-01",
    ] {
        assert_error(get(&app, &root, bad).await, 422, "VALIDATION_FAILED").await;
    }
    assert_error(get(&app, &root, "/api/v1/admin/audit/everything").await, 400, "MALFORMED_REQUEST").await;

    let id = event["id"].as_str().unwrap();
    let review = |body: Value| {
        app.with_token(Method::POST, &format!("/api/v1/admin/audit/session/{id}/review"), &root.access)
            .json(&body)
            .send()
    };
    assert_error(review(json!({"review_status": "maybe"})).await.unwrap(), 422, "VALIDATION_FAILED").await;
    let done = review(json!({"review_status": "dismissed", "review_notes": "a typo"})).await.unwrap();
    assert_eq!(done.status(), 200);
    let after =
        json(get(&app, &root, &format!("/api/v1/admin/audit/session?user_id={ann}&action=login_failed")).await).await;
    assert_eq!(after["items"][0]["review_status"], "dismissed");
    assert_eq!(after["items"][0]["review_notes"], "a typo");
    let reviewed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log_sessionauditlog WHERE action = 'audit_reviewed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reviewed, 1, "the review is itself audited");
    let missing = app
        .with_token(Method::POST, &format!("/api/v1/admin/audit/session/{}/review", Uuid::new_v4()), &root.access)
        .json(&json!({"review_status": "confirmed"}))
        .send()
        .await
        .unwrap();
    assert_error(missing, 404, "NOT_FOUND").await;
}

#[sqlx::test]
async fn summaries_daily_totals_runs_jobs_and_retention(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    app.signed_in("ann").await;
    let today = Utc::now().date_naive();

    let run = app
        .with_token(Method::POST, "/api/v1/admin/audit/summaries/run", &root.access)
        .json(&json!({"date": today}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200);
    let run = json(run).await;
    assert_eq!(
        (run["status"].as_str(), run["triggered_by"].as_str(), run["rows_affected"].as_i64()),
        (Some("succeeded"), Some("admin"), Some(2))
    );
    let future = app
        .with_token(Method::POST, "/api/v1/admin/audit/summaries/run", &root.access)
        .json(&json!({"date": "2999-01-01"}))
        .send()
        .await
        .unwrap();
    assert_error(future, 422, "VALIDATION_FAILED").await;

    let rows = json(get(&app, &root, &format!("/api/v1/admin/audit/summaries?date={today}")).await).await;
    assert_eq!(rows["pagination"]["total"], 2);
    let ann = id_of(&pool, "ann").await;
    let mine = json(get(&app, &root, &format!("/api/v1/admin/audit/summaries?date={today}&user_id={ann}")).await).await;
    assert_eq!(mine["items"][0]["total_sessions"], 1);

    let from = today - chrono::Days::new(2);
    let daily =
        json(get(&app, &root, &format!("/api/v1/admin/audit/summaries/daily?from={from}&to={today}")).await).await;
    let days = daily.as_array().unwrap();
    assert_eq!(days.len(), 3, "zeros for days without rows");
    assert_eq!(days[0]["total_events"], 0);
    assert_eq!(days[2]["users"], 2);
    assert_error(
        get(&app, &root, "/api/v1/admin/audit/summaries/daily?from=2026-13-01").await,
        422,
        "VALIDATION_FAILED",
    )
    .await;

    let jobs = json(get(&app, &root, "/api/v1/admin/jobs?kind=audit_summary").await).await;
    assert_eq!(jobs["items"][0]["id"], run["id"]);
    assert_error(get(&app, &root, "/api/v1/admin/jobs?kind=laundry").await, 422, "VALIDATION_FAILED").await;

    let retention = json(get(&app, &root, "/api/v1/admin/audit/retention").await).await;
    assert!(retention.as_array().unwrap().iter().all(|r| r["months_kept"] == 13 && r["is_default"] == true));
    let put = app
        .with_token(Method::PUT, "/api/v1/admin/audit/retention", &root.access)
        .json(&json!({"mfa": 24}))
        .send()
        .await
        .unwrap();
    let updated = json(put).await;
    let mfa = updated.as_array().unwrap().iter().find(|r| r["kind"] == "mfa").unwrap().clone();
    assert_eq!((mfa["months_kept"].as_i64(), mfa["is_default"].as_bool()), (Some(24), Some(false)));
    let bad = app
        .with_token(Method::PUT, "/api/v1/admin/audit/retention", &root.access)
        .json(&json!({"mfa": 0}))
        .send()
        .await
        .unwrap();
    assert_error(bad, 422, "VALIDATION_FAILED").await;
    let bad = app
        .with_token(Method::PUT, "/api/v1/admin/audit/retention", &root.access)
        .json(&json!({"weather": 3}))
        .send()
        .await
        .unwrap();
    assert_error(bad, 422, "VALIDATION_FAILED").await;
}

#[sqlx::test]
async fn users_see_their_own_events_only(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let ann = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    app.with_token(Method::POST, "/api/v1/auth/logout", &bob.access).send().await.unwrap();
    let page = json(get(&app, &ann, "/api/v1/audit/events").await).await;
    // Her registration and login, the device the login created and the session's link to
    // it (one instant, so sorted here); nothing of bob's.
    let mut events: Vec<(&str, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    events.sort();
    assert_eq!(events, [("device", "registered"), ("link", "linked"), ("session", "login"), ("session", "registered")]);
    let tomorrow = Utc::now().date_naive() + chrono::Days::new(1);
    let empty = json(get(&app, &ann, &format!("/api/v1/audit/events?from={tomorrow}")).await).await;
    assert_eq!(empty["items"], json!([]));
    assert_eq!(empty["pagination"]["total"], 0);
    assert_error(get(&app, &ann, "/api/v1/audit/events?to=soon").await, 422, "VALIDATION_FAILED").await;
}

#[sqlx::test]
async fn a_one_month_list_scans_only_that_months_partition(pool: PgPool) {
    let month = Utc::now().date_naive().with_day(1).unwrap();
    let from = month.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let to = (month + Months::new(1)).and_hms_opt(0, 0, 0).unwrap().and_utc();
    // Both plans the lists run: a custom one (pruned as it is made) and the generic one
    // (pruned as the executor starts: the other months never appear in it).
    for (kind, generic) in AuditKind::ALL.iter().flat_map(|k| [(k, false), (k, true)]) {
        let plan =
            audit_log::repo::review::explain_list(&pool, *kind, from, to, None, generic).await.unwrap().join("\n");
        // The relation each scan reads: the word after " on " (not its alias, not the index).
        let scanned: Vec<&str> = plan
            .lines()
            .filter_map(|l| l.split(" on ").nth(1)?.split_whitespace().next())
            .filter(|w| w.starts_with(&format!("{}_", kind.table())))
            .collect();
        let this_month = format!("{}_p{}", kind.table(), month.format("%Y_%m"));
        assert!(!scanned.is_empty(), "{plan}");
        assert!(scanned.iter().all(|p| *p == this_month), "only {this_month}: {plan}");
    }
}

#[sqlx::test]
async fn own_events_hide_staff_notes_and_nobody_reviews_themselves(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let ann = app.signed_in("ann").await;
    let ann_id = id_of(&pool, "ann").await;
    let root_id = id_of(&pool, "root").await;
    let event_of = |user: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "SELECT id FROM audit_log_sessionauditlog WHERE user_id = $1 ORDER BY created_at LIMIT 1",
            )
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let review = |id: Uuid| {
        app.with_token(Method::POST, &format!("/api/v1/admin/audit/session/{id}/review"), &root.access)
            .json(&json!({"review_status": "confirmed", "review_notes": "looks like the usual laptop"}))
            .send()
    };
    assert_eq!(review(event_of(ann_id).await).await.unwrap().status(), 200);
    let own = json(get(&app, &ann, "/api/v1/audit/events").await).await;
    let reviewed = own["items"].as_array().unwrap().iter().find(|e| e["review_status"] == "confirmed").unwrap();
    assert_eq!(reviewed["review_notes"], Value::Null);
    assert_eq!(reviewed["reviewed_by_id"], Value::Null);
    // Staff still see their notes.
    let listed = json(get(&app, &root, &format!("/api/v1/admin/audit/session?user_id={ann_id}")).await).await;
    assert!(listed["items"].as_array().unwrap().iter().any(|e| e["review_notes"] == "looks like the usual laptop"));

    let own_event = event_of(root_id).await;
    assert_error(review(own_event).await.unwrap(), 403, "FORBIDDEN").await;
    let status: Option<String> =
        sqlx::query_scalar("SELECT review_status FROM audit_log_sessionauditlog WHERE id = $1")
            .bind(own_event)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, None, "the refused review left no trace");
}

#[sqlx::test]
async fn retention_has_a_floor_every_change_is_audited_and_partition_runs_are_listed(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let put =
        |body: Value| app.with_token(Method::PUT, "/api/v1/admin/audit/retention", &root.access).json(&body).send();
    // Below AUDIT_RETENTION_MIN_MONTHS (12): refused, and nothing of the request applies.
    let low = assert_error(put(json!({"session": 6, "mfa": 24})).await.unwrap(), 422, "VALIDATION_FAILED").await;
    assert!(low["error"]["details"]["session"].is_array(), "{low}");
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log_retentionpolicy").fetch_one(&pool).await.unwrap();
    assert_eq!(kept, 0);
    assert_eq!(put(json!({"session": 18})).await.unwrap().status(), 200);
    let (by, metadata): (Uuid, Value) =
        sqlx::query_as("SELECT user_id, metadata FROM audit_log_sessionauditlog WHERE action = 'retention_changed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(by, id_of(&pool, "root").await);
    assert_eq!(metadata["old_months"], 13);
    assert_eq!(metadata["new_months"], 18);
    assert_eq!(metadata["table"], "audit_log_sessionauditlog");

    gatehouse::jobs::run_partitions_once(&app.state, gatehouse::audit_log::jobs::Trigger::Scheduler).await.unwrap();
    let jobs = json(get(&app, &root, "/api/v1/admin/jobs?kind=partitions").await).await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs["items"][0]["status"], "succeeded");
}

/// Every id of an admin list, following `pagination.next` from its first page; `insert`
/// runs after each page is read.
async fn walk(app: &TestApp, root: &Tokens, first: &str, insert: impl AsyncFn()) -> (Vec<Uuid>, Vec<Value>) {
    let (mut ids, mut pages) = (Vec::new(), Vec::new());
    let mut path = Some(first.to_owned());
    while let Some(p) = path {
        let page = json(get(app, root, &p).await).await;
        for item in page["items"].as_array().unwrap() {
            ids.push(Uuid::parse_str(item["id"].as_str().unwrap()).unwrap());
        }
        assert_eq!(page["pagination"]["has_more"], page["pagination"]["next"].is_string());
        path = page["pagination"]["next"].as_str().map(str::to_owned);
        pages.push(page["pagination"].clone());
        insert().await;
        assert!(pages.len() < 100, "the walk ends");
    }
    (ids, pages)
}

#[sqlx::test]
async fn keyset_pages_never_repeat_a_row_nor_miss_one_while_rows_are_inserted(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    app.signed_in("ann").await;
    let ann = id_of(&pool, "ann").await;
    // 250 rows, three to a timestamp (the id breaks the ties).
    sqlx::query(
        "INSERT INTO audit_log_sessionauditlog (user_id, action, created_at)
         SELECT $1, 'login', now() - ((g / 3) * interval '1 second') FROM generate_series(1, 250) g",
    )
    .bind(ann)
    .execute(&pool)
    .await
    .unwrap();
    // What the walk must return: every login committed before its first page, in order
    // (newest first, ties by id).
    let before: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM audit_log_sessionauditlog WHERE action = 'login' ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(before.len() >= 250);

    // New logins arrive between the pages (newer than any read: with offsets, each batch
    // would push rows already read onto the next page).
    let insert = || async {
        sqlx::query(
            "INSERT INTO audit_log_sessionauditlog (user_id, action) SELECT $1, 'login' FROM generate_series(1, 7)",
        )
        .bind(ann)
        .execute(&pool)
        .await
        .unwrap();
    };
    let (ids, pages) = walk(&app, &root, "/api/v1/admin/audit/session?limit=40&action=login", insert).await;
    let unique: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no row twice");
    assert_eq!(ids, before, "none missed, in order");
    assert_eq!(pages.len(), ids.len().div_ceil(40));
    assert_eq!(
        (pages[0]["total"].as_i64(), pages[0]["total_exact"].as_bool()),
        (Some(before.len() as i64), Some(true))
    );
    let last = pages.last().unwrap();
    assert_eq!((last["has_more"].as_bool(), last["cursor"].is_null()), (Some(false), true));

    // Device events by risk page the same way, riskiest first.
    sqlx::query(
        "INSERT INTO audit_log_deviceauditlog (user_id, action, risk_score, created_at)
         SELECT $1, 'seen', (g % 7) * 15, now() - ((g / 4) * interval '1 second') FROM generate_series(1, 130) g",
    )
    .bind(ann)
    .execute(&pool)
    .await
    .unwrap();
    let (ids, _) = walk(&app, &root, "/api/v1/admin/audit/device?order=risk&action=seen&limit=25", || async {}).await;
    let by_risk: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM audit_log_deviceauditlog WHERE action = 'seen' ORDER BY risk_score DESC, created_at DESC, id DESC",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ids, by_risk);

    // A cursor is the list's own: forged, or from the other order, it is refused.
    let first = json(get(&app, &root, "/api/v1/admin/audit/session?limit=5").await).await;
    let cursor = first["pagination"]["cursor"].as_str().unwrap();
    let wrong = format!("/api/v1/admin/audit/device?order=risk&cursor={cursor}");
    assert_error(get(&app, &root, &wrong).await, 422, "VALIDATION_FAILED").await;
    assert_error(
        get(&app, &root, "/api/v1/admin/audit/session?cursor=bm90LWEtY3Vyc29y").await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    // A cursor from the year -200000 is well formed but outside PostgreSQL's range: 422 too.
    assert_error(
        get(&app, &root, "/api/v1/admin/audit/session?cursor=djE6Oi02MzExNDMzNjAwMDAwMDAwMDAwOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA").await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
}

#[sqlx::test]
async fn the_total_is_counted_up_to_a_thousand_and_says_so_beyond(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    app.signed_in("ann").await;
    let ann = id_of(&pool, "ann").await;
    sqlx::query(
        "INSERT INTO audit_log_mfaauditlog (user_id, action) SELECT $1, 'verified' FROM generate_series(1, 1050)",
    )
    .bind(ann)
    .execute(&pool)
    .await
    .unwrap();
    let page = json(get(&app, &root, "/api/v1/admin/audit/mfa?action=verified&limit=100").await).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    let p = &page["pagination"];
    assert_eq!(
        (p["total"].as_i64(), p["total_exact"].as_bool(), p["has_more"].as_bool()),
        (Some(1_000), Some(false), Some(true))
    );
    let page = json(
        get(
            &app,
            &root,
            "/api/v1/admin/audit/mfa?action=verified&limit=100&user_id=00000000-0000-0000-0000-000000000000",
        )
        .await,
    )
    .await;
    let p = &page["pagination"];
    assert_eq!(
        (p["total"].as_i64(), p["total_exact"].as_bool(), p["has_more"].as_bool()),
        (Some(0), Some(true), Some(false))
    );
}
