//! Access tokens (EdDSA JWTs) and the extractor that authenticates a request: a valid
//! signature from a known key, an unexpired token, and a session that is still active.
//! The session is read on every request, so a revocation is refused at once everywhere.

use axum::{extract::FromRequestParts, http::request::Parts};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{crypto::JwtKeys, error::AppError, state::AppState};

/// Access-token claims (API.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// PUBLIC_BASE_URL of the deployment that issued it.
    #[serde(default)]
    pub iss: String,
    /// Who may accept it: this deployment (PUBLIC_BASE_URL as well).
    #[serde(default)]
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// Authenticator assurance level: 1 (password) or 2 (second factor).
    pub aal: u8,
    /// RFC 8176 methods: `pwd`, `otp`, `sms`, `mfa`.
    pub amr: Vec<String>,
}

impl Claims {
    pub fn new(
        user: Uuid,
        session: Uuid,
        jti: String,
        issued: DateTime<Utc>,
        ttl_secs: i64,
        aal: u8,
        amr: Vec<String>,
    ) -> Self {
        let iat = issued.timestamp();
        Claims {
            iss: String::new(),
            aud: String::new(),
            sub: user,
            sid: session,
            jti,
            iat,
            exp: iat + ttl_secs,
            aal,
            amr,
        }
    }

    /// The claims as `issuer` signs them: it is both the issuer and the audience.
    pub fn issued_by(self, issuer: &str) -> Self {
        Claims { iss: issuer.to_owned(), aud: issuer.to_owned(), ..self }
    }
}

/// Signs `claims` with the current key (header `alg: EdDSA`, `kid`).
pub fn sign(keys: &JwtKeys, claims: &Claims) -> Result<String, AppError> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.kid.clone());
    jsonwebtoken::encode(&header, claims, &keys.encoding).map_err(AppError::internal)
}

/// Checks signature, algorithm, key id, expiry, issuer and audience (`issuer` for both).
/// Any failure is the same 401.
pub fn verify(keys: &JwtKeys, token: &str, issuer: &str) -> Result<Claims, AppError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AppError::Unauthenticated)?;
    if header.alg != Algorithm::EdDSA {
        return Err(AppError::Unauthenticated);
    }
    let key = header.kid.as_deref().and_then(|kid| keys.decoding_key(kid)).ok_or(AppError::Unauthenticated)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub", "iat", "iss", "aud"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[issuer]);
    jsonwebtoken::decode::<Claims>(token, key, &validation).map(|d| d.claims).map_err(|_| AppError::Unauthenticated)
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub aal: u8,
    pub amr: Vec<String>,
    pub is_staff: bool,
    pub is_superuser: bool,
    /// When the session last passed a second factor (login MFA or step-up).
    pub mfa_verified_at: Option<DateTime<Utc>>,
}

impl AuthUser {
    /// An aal 2 session whose second factor is at most `max_age` old: what actions that
    /// need aal 2 ask for, so an old aal 2 carried through refreshes does not count.
    pub fn has_recent_mfa(&self, max_age: std::time::Duration) -> bool {
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::zero());
        self.aal >= 2 && self.mfa_verified_at.is_some_and(|at| Utc::now() - at <= max_age)
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates an access token: signature, expiry, and a still-active session of an
/// active user (read on every call, so a revocation is refused at once everywhere).
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, AppError> {
    let claims = verify(&state.keys, token, &state.config.public_base_url)?;
    let row = sqlx::query!(
        r#"SELECT u.is_staff, u.is_superuser, s.mfa_verified_at
             FROM accounts_session s JOIN auth_user u ON u.id = s.user_id
            WHERE s.id = $1 AND s.user_id = $2 AND s.status = 'active' AND s.expires_at > now()
              AND u.is_active"#,
        claims.sid,
        claims.sub,
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::Unauthenticated)?;
    Ok(AuthUser {
        user_id: claims.sub,
        session_id: claims.sid,
        aal: claims.aal,
        amr: claims.amr,
        is_staff: row.is_staff,
        is_superuser: row.is_superuser,
        mfa_verified_at: row.mfa_verified_at,
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or(AppError::Unauthenticated)?;
        authenticate(state, token).await
    }
}

/// Admits a staff user holding `permission` (`app_label.codename`, Django-style; superusers
/// hold all). When the user's `enforce_for_admin` is on (the default), the session must
/// be aal 2: 403 MFA_REQUIRED otherwise, so staff enrol MFA before they administer.
pub async fn require_permission(state: &AppState, user: &AuthUser, permission: &str) -> Result<(), AppError> {
    if !user.is_staff {
        return Err(AppError::Forbidden);
    }
    let (app_label, codename) = permission.split_once('.').ok_or_else(|| AppError::internal("bad permission name"))?;
    let row = sqlx::query!(
        r#"SELECT COALESCE((SELECT enforce_for_admin FROM accounts_mfasettings WHERE user_id = $1), true) AS "enforce!",
                  EXISTS (SELECT 1 FROM auth_permission p
                           WHERE p.app_label = $2 AND p.codename = $3
                             AND (p.id IN (SELECT permission_id FROM auth_user_user_permissions WHERE user_id = $1)
                                  OR p.id IN (SELECT gp.permission_id FROM auth_group_permissions gp
                                                JOIN auth_user_groups ug ON ug.group_id = gp.group_id
                                               WHERE ug.user_id = $1))) AS "granted!""#,
        user.user_id,
        app_label,
        codename,
    )
    .fetch_one(&state.db)
    .await?;
    if row.enforce && user.aal < 2 {
        return Err(AppError::MfaRequired);
    }
    if user.is_superuser || row.granted { Ok(()) } else { Err(AppError::Forbidden) }
}
