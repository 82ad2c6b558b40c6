//! Password policy (seed 000 plus a strength estimate) and argon2id hashing, which always
//! runs on the CPU pool (`AppState::run_cpu`), never on the async workers. Each pool thread
//! keeps one argon2 memory buffer and reuses it: a fresh 19 MiB per call would cost page
//! faults and a malloc arena per thread (measured: +30% CPU per login).

use std::{cell::RefCell, sync::OnceLock};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};

use secrecy::{ExposeSecret, SecretString};

use crate::core::{AppError, AppState, config::Argon2Params, crypto};

thread_local! {
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 with this thread's reusable memory.
fn argon2_into(argon: &Argon2<'_>, blocks: usize, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    BLOCKS.with_borrow_mut(|memory| {
        if memory.len() != blocks {
            memory.resize(blocks, Block::new());
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut memory[..]).is_ok()
    })
}

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

/// The PHC string (`$argon2id$v=19$m=...`) of `password` under `params`, with a random salt.
fn hash_blocking(params: Argon2Params, password: &str) -> Result<String, AppError> {
    let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
        .map_err(|e| AppError::internal(format!("argon2 parameters: {e}")))?;
    let salt = crypto::random_bytes::<16>();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    if !argon2_into(&argon, params.block_count(), password.as_bytes(), &salt, &mut out) {
        return Err(AppError::internal("argon2 hashing failed"));
    }
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(AppError::internal)?,
        salt: Some(Salt::new(&salt).map_err(AppError::internal)?),
        hash: Some(Output::new(&out).map_err(AppError::internal)?),
    };
    Ok(phc.to_string())
}

/// The PHC string of `password` with the configured cost.
pub async fn hash(state: &AppState, password: SecretString) -> Result<String, AppError> {
    let params = state.config.argon2;
    state.run_cpu(move || hash_blocking(params, password.expose_secret())).await?
}

/// The stored hash of an account whose password no longer works (Django's unusable
/// password): no PHC string starts with `!`, so nothing matches it.
pub const UNUSABLE_PASSWORD: &str = "!unusable";

/// Whether a stored hash can ever match a password (not an unusable one).
pub fn is_usable(phc: &str) -> bool {
    !phc.starts_with('!')
}

/// Whether `password` matches `phc`. A malformed stored hash never matches; an unusable
/// password costs a real verify (against the dummy hash), so the time taken does not tell
/// such an account apart.
pub async fn verify(state: &AppState, password: SecretString, phc: String) -> Result<bool, AppError> {
    if phc.starts_with('!') {
        let dummy = dummy_hash(state).await?;
        state.run_cpu(move || verify_blocking(password.expose_secret(), &dummy)).await?;
        return Ok(false);
    }
    state.run_cpu(move || verify_blocking(password.expose_secret(), &phc)).await
}

/// Checks `password` against several hashes in one blocking call (password history).
pub async fn matches_any(state: &AppState, password: SecretString, hashes: Vec<String>) -> Result<bool, AppError> {
    state.run_cpu(move || hashes.iter().any(|h| verify_blocking(password.expose_secret(), h))).await
}

/// Recomputes the stored hash with its own algorithm, version, cost and salt, and compares
/// in constant time. A malformed stored hash never matches.
fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else { return false };
    let Ok(version) = parsed.version.map(Version::try_from).unwrap_or(Ok(Version::V0x13)) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    argon2_into(&argon, params.block_count(), password.as_bytes(), salt.as_ref(), &mut out)
        && crypto::constant_time_eq(&out, expected.as_bytes())
}

/// A hash with the configured cost that no password is known to match: verifying an
/// unknown account's login against it costs what a real verify costs.
pub async fn dummy_hash(state: &AppState) -> Result<String, AppError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let made = hash(state, SecretString::from(crypto::random_token())).await?;
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
        let h =
            hash_blocking(Argon2Params { memory_kib: 1024, iterations: 1, parallelism: 1 }, "Secret-Pass-1").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{h}");
        assert!(verify_blocking("Secret-Pass-1", &h));
        assert!(!verify_blocking("Secret-Pass-2", &h));
    }

    #[test]
    fn verifies_hashes_made_by_the_reference_api() {
        use argon2::password_hash::PasswordHasher;
        let params = Params::new(2048, 2, 1, None).unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"Secret-Pass-1")
            .unwrap()
            .to_string();
        assert!(verify_blocking("Secret-Pass-1", &reference));
        assert!(!verify_blocking("Secret-Pass-1x", &reference));
    }
}
