//! The mixed load of `make bench` (phase 4): a running `serve` (BASE) gets, for
//! MIXED_SECONDS (60), paced traffic of every kind at once: password logins (10/s, well
//! below the hash pool's capacity), MFA sign-ins with TOTP (1/s), whoami (2,000/s),
//! /users/me (500/s), refresh chains (200/s) and the admin audit list (5/s). Reports each
//! kind's answers and latency, every 5xx, and the server's RSS (SERVER_PID) over the run,
//! so growth after warm-up shows. Users are made through the API first (their names
//! prefixed with MIXED_USERS, so a second run on the same database makes its own).

use std::time::{Duration, Instant};

use gatehouse::otp::factors;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;

const PASSWORD: &str = "Correct-Horse-Battery-9";

/// What one request of a kind came to.
struct Sample {
    status: u16,
    took: Duration,
}

struct Api {
    http: Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    async fn get(&self, path: &str, token: &str) -> u16 {
        match self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                status
            }
            Err(_) => 0,
        }
    }

    async fn user(&self, name: &str) -> Value {
        let email = format!("{name}@mixed.test");
        self.post("/api/v1/auth/register", None, json!({"email": email, "username": name, "password": PASSWORD})).await;
        self.login(&email).await.1
    }

    async fn login(&self, email: &str) -> (u16, Value) {
        self.post("/api/v1/auth/login", None, json!({"email": email, "password": PASSWORD})).await
    }
}

fn token(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_default().to_owned()
}

fn unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A user with TOTP on, and the last step a code of theirs was used in.
struct MfaUser {
    email: String,
    totp: totp_rs::Totp,
    used_step: u64,
}

async fn mfa_user(api: &Api, name: &str) -> MfaUser {
    let access = token(&api.user(name).await, "access_token");
    let (_, setup) = api.post("/api/v1/mfa/totp/setup", Some(&access), json!({"password": PASSWORD})).await;
    let secret = totp_rs::Secret::try_from_base32(setup["secret"].as_str().expect("a TOTP secret")).expect("base32");
    let totp = factors::totp(secret.as_bytes().to_vec(), name).expect("totp");
    let now = unix();
    let (status, _) =
        api.post("/api/v1/mfa/totp/confirm", Some(&access), json!({"code": totp.generate(now).to_string()})).await;
    assert_eq!(status, 200, "TOTP confirm");
    MfaUser { email: format!("{name}@mixed.test"), totp, used_step: now / 30 }
}

/// Runs `n` workers, each doing `one` every `period` until `until`; returns every sample
/// (`one` answers None when it had nothing to send at that tick).
async fn paced<F, Fut>(n: usize, period: Duration, until: Instant, one: F) -> Vec<Sample>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Option<u16>> + Send,
{
    let workers: Vec<_> = (0..n)
        .map(|w| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut samples = Vec::new();
                while Instant::now() < until {
                    ticks.tick().await;
                    let started = Instant::now();
                    if let Some(status) = one(w).await {
                        samples.push(Sample { status, took: started.elapsed() });
                    }
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    all
}

fn report(kind: &str, samples: &[Sample], seconds: f64) -> usize {
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for s in samples {
        *statuses.entry(s.status).or_default() += 1;
    }
    let mut took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    took.sort();
    let at = |q: f64| took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1))).copied();
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
    let answers: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} x{n}")).collect();
    println!(
        "  {kind}: {:.1}/s; {}; p50 {:.2} ms, p99 {:.2} ms",
        samples.len() as f64 / seconds,
        answers.join(", "),
        ms(at(0.5)),
        ms(at(0.99))
    );
    samples.iter().filter(|s| s.status >= 500 || s.status == 0).count()
}

fn rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let base = std::env::var("BASE").expect("BASE: the server's URL (make bench sets it)");
    let pid = std::env::var("SERVER_PID").unwrap_or_default();
    let seconds: u64 = std::env::var("MIXED_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let http = Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let api = std::sync::Arc::new(Api { http, base });
    let p = std::env::var("MIXED_USERS").unwrap_or_default();

    // Staff for the audit list: the gateway superuser, allowed at aal 1 (enforce_for_admin
    // off, as an operator may set it) so the bench needs no authenticator for it.
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let db = sqlx::PgPool::connect(&url).await.expect("database");
    sqlx::query(
        "INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) SELECT id, false FROM auth_user
          WHERE email = 'gateway@example.com' ON CONFLICT (user_id) DO UPDATE SET enforce_for_admin = false",
    )
    .execute(&db)
    .await
    .expect("gateway's MFA settings");
    db.close().await;
    let admin = token(&api.login("gateway@example.com").await.1, "access_token");
    assert!(!admin.is_empty(), "the gateway superuser could not sign in");

    let mut readers = Vec::new();
    for i in 0..8 {
        readers.push(token(&api.user(&format!("{p}reader{i}")).await, "access_token"));
    }
    let mut chains = Vec::new();
    for i in 0..4 {
        chains.push(token(&api.user(&format!("{p}chain{i}")).await, "refresh_token"));
    }
    for i in 0..4 {
        api.user(&format!("{p}login{i}")).await;
    }
    // 40 MFA users at one sign-in a second: each is back after 40 s, at a new TOTP step.
    let mut mfa = Vec::new();
    for i in 0..40 {
        mfa.push(mfa_user(&api, &format!("{p}mfa{i}")).await);
    }
    println!("mixed load for {seconds} s (users made through the API: 8 readers, 4 chains, 4 logins, 40 with TOTP)");

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let readers = std::sync::Arc::new(readers);
    let chains = std::sync::Arc::new(tokio::sync::Mutex::new(chains));
    let mfa = std::sync::Arc::new(tokio::sync::Mutex::new((mfa, 0usize)));

    let rss_sampler = tokio::spawn({
        let pid = pid.clone();
        async move {
            let mut series = Vec::new();
            while Instant::now() < until {
                series.push((started.elapsed().as_secs(), rss_mib(&pid)));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            series.push((started.elapsed().as_secs(), rss_mib(&pid)));
            series
        }
    });

    let (a, prefix) = (api.clone(), p.clone());
    let logins = paced(2, Duration::from_millis(200), until, move |w| {
        let (a, prefix) = (a.clone(), prefix.clone());
        async move { Some(a.login(&format!("{prefix}login{}@mixed.test", w * 2 + unix() as usize % 2)).await.0) }
    });
    let a = api.clone();
    let mfa_signins = paced(1, Duration::from_secs(1), until, move |_| {
        let (a, mfa) = (a.clone(), mfa.clone());
        async move {
            let mut users = mfa.lock().await;
            let (list, next) = &mut *users;
            // The server takes a code of the step before or after now, each step once per
            // user: the first step after the user's last that it still accepts.
            let now = unix() / 30;
            let i = (0..list.len()).map(|k| (*next + k) % list.len()).find(|&i| list[i].used_step <= now)?;
            *next = (i + 1) % list.len();
            let step = (list[i].used_step + 1).max(now.saturating_sub(1));
            list[i].used_step = step;
            let (email, code) = (list[i].email.clone(), list[i].totp.generate(step * 30).to_string());
            drop(users);
            let (status, body) = a.login(&email).await;
            if status != 200 || body["challenge_id"].is_null() {
                return Some(status);
            }
            let verify = json!({"challenge_id": body["challenge_id"], "method": "totp", "code": code});
            Some(a.post("/api/v1/auth/mfa/verify", None, verify).await.0)
        }
    });
    let (a, r) = (api.clone(), readers.clone());
    let whoami = paced(8, Duration::from_millis(4), until, move |w| {
        let (a, r) = (a.clone(), r.clone());
        async move { Some(a.get("/api/v1/auth/whoami", &r[w]).await) }
    });
    let (a, r) = (api.clone(), readers.clone());
    let me = paced(4, Duration::from_millis(8), until, move |w| {
        let (a, r) = (a.clone(), r.clone());
        async move { Some(a.get("/api/v1/users/me", &r[w + 4]).await) }
    });
    let a = api.clone();
    let refresh = paced(4, Duration::from_millis(20), until, move |w| {
        let (a, chains) = (a.clone(), chains.clone());
        async move {
            let current = chains.lock().await[w].clone();
            let (status, body) = a.post("/api/v1/auth/refresh", None, json!({"refresh_token": current})).await;
            if status == StatusCode::OK.as_u16() {
                chains.lock().await[w] = token(&body, "refresh_token");
            }
            Some(status)
        }
    });
    let a = api.clone();
    let audit = paced(1, Duration::from_millis(200), until, move |_| {
        let (a, admin) = (a.clone(), admin.clone());
        async move { Some(a.get("/api/v1/admin/audit/session", &admin).await) }
    });
    let (logins, mfa_signins, whoami, me, refresh, audit) =
        tokio::join!(logins, mfa_signins, whoami, me, refresh, audit);
    let elapsed = started.elapsed().as_secs_f64();
    let mut bad = 0;
    for (kind, samples) in [
        ("login", &logins),
        ("MFA sign-in (login + TOTP verify)", &mfa_signins),
        ("whoami", &whoami),
        ("users/me", &me),
        ("refresh", &refresh),
        ("admin audit list", &audit),
    ] {
        bad += report(kind, samples, elapsed);
    }
    let series = rss_sampler.await.unwrap_or_default();
    let after_warmup: Vec<f64> = series.iter().filter(|(t, _)| *t >= 10).map(|(_, m)| *m).collect();
    let (low, high) = after_warmup.iter().fold((f64::MAX, 0.0f64), |(l, h), m| (l.min(*m), h.max(*m)));
    let points: Vec<String> = series.iter().map(|(t, m)| format!("{t}s {m:.1}")).collect();
    println!("  RSS (MiB) over the run: {}", points.join(", "));
    println!(
        "mixed load: {bad} answers 5xx or failed; RSS after warm-up (10 s on) {low:.1}-{high:.1} MiB ({:+.1}%)",
        if low > 0.0 { 100.0 * (high - low) / low } else { 0.0 }
    );
}
