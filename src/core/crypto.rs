//! Crypto helpers: random secrets from the OS, plain hashes of high-entropy tokens, and a
//! constant-time comparison. Access-token keys are `core::jwt`; keys for data at rest and
//! keyed hashes are `core::data_keys`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing is unrecoverable; nothing secure can be made without it.
    getrandom::fill(&mut buf).expect("operating system random number generator failed");
    buf
}

/// A 256-bit random token, URL-safe base64.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A uniformly random decimal code of `digits` digits (rejection sampling, no modulo bias).
pub fn random_digits(digits: u32) -> String {
    let bound = 10u64.pow(digits);
    let limit = u64::MAX - (u64::MAX % bound);
    loop {
        let n = u64::from_le_bytes(random_bytes::<8>());
        if n < limit {
            return format!("{:0width$}", n % bound, width = digits as usize);
        }
    }
}

/// SHA-256 hex: for high-entropy tokens, where a plain hash is enough.
pub fn sha256_hex(input: &str) -> String {
    hex_encode(&Sha256::digest(input.as_bytes()))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hex_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_have_the_right_length() {
        for _ in 0..100 {
            let code = random_digits(6);
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
