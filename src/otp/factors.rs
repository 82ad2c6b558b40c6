//! The pure rules of second factors: TOTP (RFC 6238 through totp-rs), its QR code, backup
//! codes that are easy to type, and emailed or texted codes.

use qrcode::{QrCode, render::svg};
use totp_rs::{Algorithm, Builder, Totp};

use crate::core::crypto::random_bytes;

/// The issuer authenticator apps show.
pub const ISSUER: &str = "Gatehouse";
/// Backup codes per generation.
pub const BACKUP_CODES: usize = 10;
/// Letters and digits that cannot be mistaken for one another (no 0/O, 1/I/L, U/V).
const BACKUP_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTWXYZ";

/// A new 160-bit TOTP secret (RFC 4226's recommended length).
pub fn new_totp_secret() -> Vec<u8> {
    random_bytes::<20>().to_vec()
}

/// RFC 6238 as every authenticator does it: SHA-1, 6 digits, 30 s steps, one step of skew.
pub fn totp(secret: Vec<u8>, account: &str) -> Result<Totp, String> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| e.to_string())
}

/// The time step a code matches at `now` (within one step either side), if any.
pub fn totp_step(totp: &Totp, code: &str, now: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp.check(code, now).and_then(|step| i64::try_from(step).ok())
}

/// The otpauth URI as an SVG QR code.
pub fn qr_svg(uri: &str) -> Result<String, String> {
    let code = QrCode::new(uri.as_bytes()).map_err(|e| e.to_string())?;
    Ok(code.render::<svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

/// One backup code, `XXXX-XXXX` from the unambiguous alphabet (about 38.9 bits).
pub fn new_backup_code() -> String {
    let mut code = String::with_capacity(9);
    for (i, byte) in random_bytes::<8>().iter().enumerate() {
        if i == 4 {
            code.push('-');
        }
        // 256 % 29 leaves a bias below 0.5% per character; acceptable for a 39-bit code
        // that is also rate limited by the challenge and the lockout.
        code.push(BACKUP_ALPHABET[usize::from(*byte) % BACKUP_ALPHABET.len()] as char);
    }
    code
}

/// A typed backup code in its stored form: case, spaces and dashes do not matter.
pub fn normalise_backup_code(typed: &str) -> String {
    typed.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect()
}

/// A code of `digits` digits to email or text (the user's policy: 6 to 8).
pub fn new_delivery_code(digits: u32) -> String {
    crate::core::crypto::random_digits(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_codes_are_easy_to_type_and_normalise() {
        let code = new_backup_code();
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        assert!(code.bytes().filter(|b| *b != b'-').all(|b| BACKUP_ALPHABET.contains(&b)));
        assert_eq!(normalise_backup_code(" abcd-2345 "), "ABCD2345");
    }

    #[test]
    fn totp_matches_rfc_6238_and_reports_the_step() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8 digits there; the
        // last 6 digits are the 6-digit code.
        let t = totp(b"12345678901234567890".to_vec(), "ann@example.com").unwrap();
        assert_eq!(totp_step(&t, "287082", 59), Some(1));
        assert_eq!(totp_step(&t, "081804", 1_111_111_109), Some(1_111_111_109 / 30));
        assert_eq!(totp_step(&t, "081804", 1_111_111_109 + 30), Some(1_111_111_109 / 30), "one step late");
        assert_eq!(totp_step(&t, "081804", 1_111_111_109 + 90), None, "three steps late");
        assert_eq!(totp_step(&t, "08180", 1_111_111_109), None);
        let uri = t.to_url().unwrap();
        assert!(uri.starts_with("otpauth://totp/Gatehouse:ann%40example.com?secret="), "{uri}");
        assert!(uri.ends_with("&issuer=Gatehouse"), "{uri}");
        assert!(qr_svg(&uri).unwrap().starts_with("<?xml"));
    }
}
