//! Memory per entry of the instance's auth cache (docs/performance.md "Memory"): fills
//! `AUTH_CACHE_ENTRIES` (default 100,000) verified-token entries, then as many `/users/me`
//! bodies, shaped like the real ones (a 300-byte access token with its 340-byte whoami
//! body, a 700-byte JSON body), and reports the process's resident memory growth per entry.

use gatehouse::core::auth_cache::{AuthCache, CachedSession, DEFAULT_ENTRIES};
use uuid::Uuid;

/// A whoami body's size with a 20-character email and username.
const WHOAMI_BODY_BYTES: usize = 340;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let entries: u64 = std::env::var("AUTH_CACHE_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ENTRIES);
    let cache = AuthCache::with_capacity(entries);
    cache.assume_listening();
    let before = rss_kib();
    for i in 0..entries {
        let token = format!("eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.{}.{:0>200}", Uuid::new_v4(), i);
        let session = CachedSession {
            user_id: Uuid::new_v4(),
            session_id: Uuid::now_v7(),
            token_expires_at: chrono::Utc::now().timestamp() + 900,
            aal: 1,
            amr: vec!["pwd".into()],
            authenticated_at: chrono::Utc::now(),
            session_expires_at: chrono::Utc::now() + chrono::Duration::days(30),
            mfa_verified_at: None,
            device_id: Some(Uuid::new_v4()),
            is_staff: false,
            is_superuser: false,
            email: format!("user{i}@example.com"),
            username: format!("user{i}"),
            email_verified: true,
            issued_at: chrono::Utc::now().timestamp(),
            // As after its first whoami: a body of the size that call serializes.
            whoami: std::sync::OnceLock::from(axum::body::Bytes::from(vec![b' '; WHOAMI_BODY_BYTES])),
        };
        cache.put_session(cache.ticket(), &token, session);
    }
    let (tokens, _) = cache.settle();
    let after_tokens = rss_kib();
    for i in 0..entries {
        let body = format!(
            r#"{{"id":"{}","email":"user{i}@example.com","username":"user{i}","first_name":"Ann","last_name":"Lind","is_active":true,"is_staff":false,"is_superuser":false,"email_verified":true,"mfa_enabled":false,"date_joined":"2026-12-05T00:00:00Z","last_login":"2026-12-05T00:00:00Z","profile":{{"phone_number":null,"date_of_birth":null,"address":"","city":"Oslo","state":"","country":"NO","postal_code":"","timezone":"Europe/Oslo","language":"en","preferred_mfa_method":null}}}}"#,
            Uuid::new_v4()
        );
        cache.put_me(cache.ticket(), Uuid::new_v4(), body.into_bytes().into());
    }
    let (_, bodies) = cache.settle();
    let after_me = rss_kib();
    let per = |kib: u64, n: u64| if n == 0 { 0.0 } else { kib as f64 * 1024.0 / n as f64 };
    println!(
        "auth cache, {entries} entries per kind: tokens {tokens} held, {:.0} bytes each ({:.1} MiB); /users/me bodies {bodies} held, {:.0} bytes each ({:.1} MiB)",
        per(after_tokens - before, tokens),
        (after_tokens - before) as f64 / 1024.0,
        per(after_me - after_tokens, bodies),
        (after_me - after_tokens) as f64 / 1024.0,
    );
}
