//! Bare argon2id verification rate at the service's parameters on all cores: the ceiling
//! that login throughput is measured against (docs/performance.md).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let (m, t, p) = (env("ARGON2_MEMORY_KIB", 19_456), env("ARGON2_ITERATIONS", 2), env("ARGON2_PARALLELISM", 1));
    let seconds = env("BENCH_SECONDS", 10);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let params = Params::new(m, t, p, None).expect("argon2 parameters");
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let phc = hasher.hash_password(b"Correct-Horse-Battery-9").expect("hash").to_string();
    let done = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let parsed = PasswordHash::new(&phc).expect("phc");
                while Instant::now() < deadline {
                    Argon2::default().verify_password(b"Correct-Horse-Battery-9", &parsed).expect("verify");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "argon2id m={m} t={t} p={p} threads={threads}: {rate:.1} verifies/s ({:.2} ms each per core)",
        1000.0 * threads as f64 / rate
    );
}
