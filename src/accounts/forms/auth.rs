//! Bodies of registration, login, tokens, passwords and the profile.

use chrono::{Datelike, NaiveDate, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::accounts::{
    credentials,
    models::{Email, Profile, Username, parse_name},
};
use crate::core::{
    AppError, AppResult,
    error::Problems,
    types::{Language, Phone, Timezone},
};

/// Request bodies.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    pub username: String,
    #[schema(value_type = String)]
    pub password: SecretString,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A registration that passed every check (seed 000 and the password policy).
#[derive(Debug)]
pub struct Registration {
    pub email: Email,
    pub username: Username,
    pub password: SecretString,
    pub first_name: String,
    pub last_name: String,
}

impl Registration {
    /// Checks every field at once, so the client sees all problems in one 422. The
    /// password may not lean on the user's own words (email, username, names).
    pub fn parse(
        email: &str,
        username: &str,
        password: SecretString,
        first_name: Option<&str>,
        last_name: Option<&str>,
    ) -> AppResult<Registration> {
        let mut problems = Problems::new();
        let parsed_email = problems.check("email", Email::parse(email));
        let parsed_username = problems.check("username", Username::parse(username));
        let first = problems.check("first_name", parse_name(first_name.unwrap_or("")));
        let last = problems.check("last_name", parse_name(last_name.unwrap_or("")));
        let mut context = vec![email, username];
        context.extend(first_name);
        context.extend(last_name);
        for p in credentials::policy_problems(password.expose_secret(), &context) {
            problems.add("password", p);
        }
        problems.into_result()?;
        match (parsed_email, parsed_username, first, last) {
            (Some(email), Some(username), Some(first_name), Some(last_name)) => {
                Ok(Registration { email, username, password, first_name, last_name })
            }
            _ => Err(crate::core::AppError::internal("registration parsed without problems but incomplete")),
        }
    }
}

impl RegisterRequest {
    pub fn parse(self) -> AppResult<Registration> {
        Registration::parse(
            &self.email,
            &self.username,
            self.password,
            self.first_name.as_deref(),
            self.last_name.as_deref(),
        )
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String)]
    pub password: SecretString,
}

// A one-time token from an email link (verification, reset).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(value_type = String)]
    pub token: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChangeRequest {
    #[schema(value_type = String)]
    pub current_password: SecretString,
    #[schema(value_type = String)]
    pub new_password: SecretString,
    /// Also end this session (default false: every other session ends, this one stays).
    #[serde(default)]
    pub sign_out_everywhere: bool,
    /// Also revoke every API key (default false: keys stay and the notice lists them).
    #[serde(default)]
    pub revoke_api_keys: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    pub email: String,
}

/// `POST /auth/magic-link`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MagicLinkRequest {
    pub email: String,
}

/// `POST /auth/magic-link/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MagicLinkConfirm {
    /// The token of the emailed link.
    #[schema(value_type = String)]
    pub token: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetConfirm {
    #[schema(value_type = String)]
    pub token: SecretString,
    #[schema(value_type = String)]
    pub new_password: SecretString,
}

/// `POST /users/me/email`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeRequest {
    #[schema(value_type = String)]
    pub password: SecretString,
    pub new_email: String,
}

impl EmailChangeRequest {
    pub fn parse(self) -> AppResult<(SecretString, Email)> {
        let email = Email::parse(&self.new_email).map_err(|m| AppError::validation("new_email", m))?;
        Ok((self.password, email))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteMeRequest {
    #[schema(value_type = String)]
    pub password: SecretString,
}

/// `PATCH /users/me`: names at the top level, any profile field inside `profile`.
/// A field set to null clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub profile: Option<ProfilePatch>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub date_of_birth: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub state: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub country: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub postal_code: Option<Option<String>>,
    pub timezone: Option<String>,
    pub language: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub preferred_mfa_method: Option<Option<String>>,
}

/// Absent -> None (leave), null -> Some(None) (clear), value -> Some(Some(v)).
fn patch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A checked `PATCH /users/me`: for each field, None leaves it, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct MeChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<Option<Phone>>,
    pub date_of_birth: Option<Option<NaiveDate>>,
    /// The `TEXT_FIELDS`, in their order.
    pub texts: Vec<Option<Option<String>>>,
    pub timezone: Option<Timezone>,
    pub language: Option<Language>,
    pub preferred_mfa_method: Option<Option<String>>,
}

/// The free-text profile fields and their widths.
const TEXT_FIELDS: [(&str, usize); 5] =
    [("address", 1000), ("city", 100), ("state", 100), ("country", 100), ("postal_code", 20)];

/// A free-text profile field: trimmed, empty means cleared, at most `max` characters.
fn text(value: Option<Option<String>>, field: &str, max: usize, problems: &mut Problems) -> Option<Option<String>> {
    value.map(|v| {
        let v = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        if v.as_ref().is_some_and(|s| s.chars().count() > max) {
            problems.add(field, format!("must be at most {max} characters"));
        }
        v
    })
}

impl UpdateMeRequest {
    pub fn parse(self) -> AppResult<MeChanges> {
        let mut problems = Problems::new();
        let mut changes = MeChanges {
            first_name: self.first_name.map(|f| problems.check("first_name", parse_name(&f)).unwrap_or_default()),
            last_name: self.last_name.map(|l| problems.check("last_name", parse_name(&l)).unwrap_or_default()),
            ..MeChanges::default()
        };
        let p = self.profile.unwrap_or_default();
        changes.phone_number = text(p.phone_number, "phone_number", 16, &mut problems)
            .map(|v| v.and_then(|raw| problems.check("phone_number", Phone::parse(&raw))));
        changes.date_of_birth = p.date_of_birth.map(|v| {
            v.and_then(|raw| match NaiveDate::parse_from_str(&raw, "%Y-%m-%d") {
                Ok(d) if d <= Utc::now().date_naive() && d.year_ce().1 >= 1900 => Some(d),
                _ => {
                    problems.add("date_of_birth", "must be a past date, YYYY-MM-DD");
                    None
                }
            })
        });
        let texts = [p.address, p.city, p.state, p.country, p.postal_code];
        changes.texts =
            texts.into_iter().zip(TEXT_FIELDS).map(|(v, (field, max))| text(v, field, max, &mut problems)).collect();
        changes.timezone = p.timezone.and_then(|tz| problems.check("timezone", Timezone::parse(&tz)));
        changes.language = p.language.and_then(|l| problems.check("language", Language::parse(&l)));
        if let Some(m) = &p.preferred_mfa_method
            && m.as_deref().is_some_and(|m| !["totp", "email", "sms"].contains(&m))
        {
            problems.add("preferred_mfa_method", "must be totp, email or sms");
        }
        changes.preferred_mfa_method = p.preferred_mfa_method;
        problems.finish(changes)
    }
}

impl MeChanges {
    /// Writes the changes into `profile`; returns the names of the fields touched, in a
    /// fixed order (names first), for the audit trail.
    pub fn apply(self, first: &mut String, last: &mut String, profile: &mut Profile) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if let Some(f) = self.first_name {
            *first = f;
            changed.push("first_name");
        }
        if let Some(l) = self.last_name {
            *last = l;
            changed.push("last_name");
        }
        if let Some(v) = self.phone_number {
            profile.phone_number = v.map(Phone::into_string);
            changed.push("phone_number");
        }
        if let Some(v) = self.date_of_birth {
            profile.date_of_birth = v;
            changed.push("date_of_birth");
        }
        let slots = [
            &mut profile.address,
            &mut profile.city,
            &mut profile.state,
            &mut profile.country,
            &mut profile.postal_code,
        ];
        for ((field, _), (value, slot)) in TEXT_FIELDS.into_iter().zip(self.texts.into_iter().zip(slots)) {
            if let Some(value) = value {
                *slot = value;
                changed.push(field);
            }
        }
        if let Some(tz) = self.timezone {
            profile.timezone = tz.into_string();
            changed.push("timezone");
        }
        if let Some(lang) = self.language {
            profile.language = lang.into_string();
            changed.push("language");
        }
        if let Some(m) = self.preferred_mfa_method {
            profile.preferred_mfa_method = m;
            changed.push("preferred_mfa_method");
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::{
        accounts::models::{Authenticated, User, UserRow},
        core::{auth::AuthUser, extract::parse_json},
    };

    const SECRET: &str = "Sup3r-Secret-Value-4242";

    fn assert_hidden(what: &str, debug: String) {
        assert!(!debug.contains(SECRET), "{what} leaks its secret: {debug}");
    }

    #[test]
    fn no_debug_prints_a_password_token_or_hash() {
        let body = format!(
            r#"{{"email":"a@b.io","username":"ann","password":"{SECRET}","token":"{SECRET}","refresh_token":"{SECRET}",
                "current_password":"{SECRET}","new_password":"{SECRET}"}}"#
        );
        let json = body.as_bytes();
        assert_hidden("RegisterRequest", format!("{:?}", parse_json::<RegisterRequest>(json).ok()));
        assert_hidden("LoginRequest", format!("{:?}", parse_json::<LoginRequest>(json).ok()));
        assert_hidden("TokenRequest", format!("{:?}", parse_json::<TokenRequest>(json).ok()));
        assert_hidden("RefreshRequest", format!("{:?}", parse_json::<RefreshRequest>(json).ok()));
        assert_hidden("PasswordChangeRequest", format!("{:?}", parse_json::<PasswordChangeRequest>(json).ok()));
        assert_hidden("PasswordResetConfirm", format!("{:?}", parse_json::<PasswordResetConfirm>(json).ok()));
        assert_hidden("DeleteMeRequest", format!("{:?}", parse_json::<DeleteMeRequest>(json).ok()));
        // They do parse, so the checks above are not vacuous.
        assert!(parse_json::<LoginRequest>(json).is_ok() && parse_json::<PasswordChangeRequest>(json).is_ok());

        let registration =
            Registration::parse("ann@example.com", "ann", SecretString::from(SECRET), None, None).expect("valid");
        assert_hidden("Registration", format!("{registration:?}"));

        let row = UserRow {
            id: Uuid::nil(),
            email: "ann@example.com".into(),
            username: "ann".into(),
            password_hash: SECRET.into(),
            first_name: String::new(),
            last_name: String::new(),
            is_active: true,
            is_staff: false,
            is_superuser: false,
            email_verified: true,
            mfa_enabled: false,
            date_joined: Utc::now(),
            last_login: None,
        };
        assert_hidden("UserRow", format!("{row:?}"));
        let user: User = row.into();
        let authenticated = Authenticated {
            status: "authenticated",
            access_token: SECRET.into(),
            refresh_token: SECRET.into(),
            token_type: "Bearer",
            expires_in: 900,
            session_id: Uuid::nil(),
            user,
            backup_codes_remaining: None,
        };
        assert_hidden("Authenticated", format!("{authenticated:?}"));
        let auth = AuthUser {
            user_id: Uuid::nil(),
            session_id: Uuid::nil(),
            aal: 1,
            amr: vec!["pwd".into()],
            is_staff: false,
            is_superuser: false,
            mfa_verified_at: None,
            api_key: None,
        };
        assert_hidden("AuthUser", format!("{auth:?}"));
    }
}
