//! The cache's rules without a database: eviction, epochs, the eviction record.

use super::*;

fn session(user: Uuid, id: Uuid) -> CachedSession {
    CachedSession {
        user_id: user,
        session_id: id,
        token_expires_at: Utc::now().timestamp() + 600,
        aal: 1,
        amr: vec!["pwd".into()],
        authenticated_at: Utc::now(),
        session_expires_at: Utc::now() + chrono::Duration::hours(1),
        mfa_verified_at: None,
        device_id: None,
        is_staff: false,
        is_superuser: false,
        email: "a@b.io".into(),
        username: "a".into(),
        email_verified: true,
        issued_at: Utc::now().timestamp(),
        whoami: Default::default(),
    }
}

#[test]
fn a_cache_without_a_listener_answers_nothing() {
    let cache = AuthCache::default();
    let (user, id) = (Uuid::now_v7(), Uuid::now_v7());
    cache.put_session(cache.ticket(), "t", session(user, id));
    assert!(cache.session("t").is_none());
}

#[test]
fn eviction_by_session_or_user_and_a_new_epoch_each_end_an_entry() {
    let cache = AuthCache::default();
    cache.new_epoch(true);
    let (user, id) = (Uuid::now_v7(), Uuid::now_v7());
    cache.put_session(cache.ticket(), "t", session(user, id));
    assert!(cache.session("t").is_some());
    cache.apply(&format!("s:{id}"));
    assert!(cache.session("t").is_none(), "evicted by session");

    cache.put_session(cache.ticket(), "t", session(user, id));
    assert!(cache.session("t").is_some(), "reloaded after the eviction");
    cache.apply(&format!("u:{user}"));
    assert!(cache.session("t").is_none(), "evicted by user");

    // A read that started before an eviction brings back nothing usable.
    let ticket = cache.ticket();
    std::thread::sleep(Duration::from_millis(2));
    cache.evict(id);
    cache.put_session(ticket, "t", session(user, id));
    assert!(cache.session("t").is_none());

    cache.put_session(cache.ticket(), "t", session(user, id));
    let stale = cache.ticket();
    cache.new_epoch(false);
    assert!(cache.session("t").is_none(), "a lost listener bypasses the cache");
    cache.new_epoch(true);
    cache.put_session(stale, "t", session(user, id));
    assert!(cache.session("t").is_none(), "a read from the old epoch is discarded");
    cache.apply("nonsense");
    cache.apply("s:not-a-uuid");
}

#[test]
fn an_overflowing_record_of_evictions_ends_every_entry_instead_of_forgetting_one() {
    let cache = AuthCache::default();
    cache.new_epoch(true);
    let (user, id) = (Uuid::now_v7(), Uuid::now_v7());
    cache.put_session(cache.ticket(), "t", session(user, id));
    let in_flight = cache.ticket();
    assert!(cache.session("t").is_some());
    // Evictions of other ids, more than the record holds, all within the entry TTL.
    for _ in 0..=MAX_EVICTIONS {
        cache.evict(Uuid::now_v7());
    }
    assert!(cache.session("t").is_none(), "no entry survives an overflow");
    assert!(cache.is_healthy(), "the listener is still up");
    // A read that started before the overflow brings back nothing usable.
    cache.put_session(in_flight, "t", session(user, id));
    assert!(cache.session("t").is_none());
    cache.put_session(cache.ticket(), "t", session(user, id));
    assert!(cache.session("t").is_some(), "the cache serves again after the overflow");
    cache.evict(id);
    assert!(cache.session("t").is_none(), "and evictions work as before");
}
