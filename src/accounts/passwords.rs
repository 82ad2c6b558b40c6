//! Password policy (seed 000 plus a strength estimate) and argon2id hashing, which always
//! runs on the bounded blocking pool (`AppState::run_cpu`), never on the async workers.

use std::sync::OnceLock;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

use crate::core::{AppError, AppState, config::Argon2Params};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;
/// zxcvbn scores 0-4; 0 and 1 ("too guessable", "very guessable") are refused.
pub const MIN_STRENGTH: u8 = 2;

/// Every reason `password` breaks the policy; empty when it is acceptable.
/// `context` holds the user's own words (email, username, names) that make a password weak.
pub fn policy_problems(password: &str, context: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let length = password.chars().count();
    if length < MIN_LENGTH {
        problems.push(format!("must be at least {MIN_LENGTH} characters"));
    }
    if length > MAX_LENGTH {
        problems.push(format!("must be at most {MAX_LENGTH} characters"));
    }
    if !password.chars().any(char::is_uppercase) {
        problems.push("must contain an uppercase letter".to_owned());
    }
    if !password.chars().any(char::is_lowercase) {
        problems.push("must contain a lowercase letter".to_owned());
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        problems.push("must contain a digit".to_owned());
    }
    // zxcvbn's cost grows with length; the length check above bounds it.
    if problems.is_empty() && u8::from(zxcvbn::zxcvbn(password, context).score()) < MIN_STRENGTH {
        problems.push("is too easy to guess".to_owned());
    }
    problems
}

fn hasher(params: Argon2Params) -> Result<Argon2<'static>, AppError> {
    let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
        .map_err(|e| AppError::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string of `password` with the configured cost.
pub async fn hash(state: &AppState, password: String) -> Result<String, AppError> {
    let params = state.config.argon2;
    state
        .run_cpu(move || {
            let hash = hasher(params)?.hash_password(password.as_bytes()).map_err(AppError::internal)?;
            Ok::<_, AppError>(hash.to_string())
        })
        .await?
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub async fn verify(state: &AppState, password: String, phc: String) -> Result<bool, AppError> {
    state.run_cpu(move || verify_blocking(&password, &phc)).await
}

/// Checks `password` against several hashes in one blocking call (password history).
pub async fn matches_any(state: &AppState, password: String, hashes: Vec<String>) -> Result<bool, AppError> {
    state.run_cpu(move || hashes.iter().any(|h| verify_blocking(&password, h))).await
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash with the configured cost that no password is known to match: verifying an
/// unknown account's login against it costs what a real verify costs.
pub async fn dummy_hash(state: &AppState) -> Result<String, AppError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let secret = crate::core::crypto::random_token();
    let made = hash(state, secret).await?;
    Ok(DUMMY.get_or_init(|| made).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_follows_seed_000() {
        assert!(policy_problems("Correct-Horse-Battery-9", &[]).is_empty());
        assert!(!policy_problems("Sh0rt", &[]).is_empty());
        assert!(!policy_problems("alllowercase1", &[]).is_empty());
        assert!(!policy_problems("ALLUPPERCASE1", &[]).is_empty());
        assert!(!policy_problems("NoDigitsHere", &[]).is_empty());
        assert!(!policy_problems(&format!("Aa1{}", "x".repeat(130)), &[]).is_empty());
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert_eq!(policy_problems("Password1", &[]), ["is too easy to guess"]);
        assert_eq!(policy_problems("Annlee2024", &["annlee"]), ["is too easy to guess"]);
    }

    #[test]
    fn verify_rejects_garbage_hashes() {
        assert!(!verify_blocking("x", "not a hash"));
        let h = hasher(Argon2Params { memory_kib: 1024, iterations: 1, parallelism: 1 })
            .unwrap()
            .hash_password(b"Secret-Pass-1")
            .unwrap()
            .to_string();
        assert!(verify_blocking("Secret-Pass-1", &h));
        assert!(!verify_blocking("Secret-Pass-2", &h));
    }
}
