//! Parsed input shared by the apps: handlers turn raw JSON into these before a service
//! sees it, so a service never re-checks an email, a phone number, a language or a zone.
//! Each `parse` returns the message a 422 shows for its field.

use std::fmt;

/// A normalised (trimmed, lowercase) email address that passed seed 000's pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, &'static str> {
        let email = raw.trim().to_lowercase();
        let Some((local, domain)) = email.rsplit_once('@') else { return Err("must be an email address") };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
        if !local_ok || !domain_ok || email.len() > 254 {
            return Err("must be an email address");
        }
        Ok(Email(email))
    }

    /// An address read back from `auth_user.email`, which only ever holds parsed ones.
    pub fn from_stored(stored: impl Into<String>) -> Email {
        Email(stored.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ITU-T E.164 number: `+` then 2 to 15 digits, the first not 0. The one rule for
/// profiles, SMS delivery and SMS MFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub const MESSAGE: &'static str = "must be an E.164 number such as +15551234567";

    pub fn parse(raw: &str) -> Result<Phone, &'static str> {
        let raw = raw.trim();
        let digits = raw.strip_prefix('+').unwrap_or("");
        let ok =
            (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if ok { Ok(Phone(raw.to_owned())) } else { Err(Self::MESSAGE) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A BCP 47 language tag in its common shape: a 2-3 letter language, then subtags of 1-8
/// letters or digits (`en`, `pt-BR`, `zh-Hant-TW`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language(String);

impl Language {
    pub fn parse(raw: &str) -> Result<Language, &'static str> {
        let mut parts = raw.split('-');
        let lang_ok =
            parts.next().is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic()));
        let ok = lang_ok
            && raw.len() <= 35
            && parts.all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        if ok { Ok(Language(raw.to_owned())) } else { Err("must be a BCP 47 language tag such as en or pt-BR") }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An IANA time zone name that chrono-tz knows (`Europe/Paris`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timezone(String);

impl Timezone {
    pub fn parse(raw: &str) -> Result<Timezone, &'static str> {
        match raw.parse::<chrono_tz::Tz>() {
            Ok(_) => Ok(Timezone(raw.to_owned())),
            Err(_) => Err("must be an IANA time zone such as Europe/Paris"),
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ann.Lee+x@Example.COM ").unwrap().as_str(), "ann.lee+x@example.com");
        for bad in ["", "ann", "ann@", "@x.io", "ann@x", "ann@x.c", "a b@x.io", "ann@x..io"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!(Phone::parse("+15551234567").unwrap().as_str(), "+15551234567");
        for bad in ["", "+", "+1", "15551234567", "+05551234567", "+1555123456789012", "555-1234", "+1 555"] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn languages_and_zones() {
        for good in ["en", "pt-BR", "zh-Hant-TW", "gsw"] {
            assert!(Language::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "e", "english", "en_US", "en--US", "12"] {
            assert!(Language::parse(bad).is_err(), "{bad}");
        }
        assert!(Timezone::parse("Europe/Paris").is_ok());
        assert!(Timezone::parse("Mars/Olympus").is_err());
    }
}
