//! Access tokens (EdDSA JWTs), API keys, and the extractor that authenticates a request:
//! a valid signature from a known key, an unexpired token, and a session that is still
//! active; or an API key that is live and whose scopes cover the route. Both are read on
//! every request, so a revocation is refused at once everywhere.

use axum::{
    extract::{FromRequestParts, MatchedPath},
    http::{Method, request::Parts},
};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

use super::{
    auth_cache::{CachedKey, CachedSession},
    error::AppError,
    jwt::JwtKeys,
    state::AppState,
};

pub mod queries;

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
    keys.sign_jws(&header, claims).map_err(AppError::internal)
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
    /// Set when the request came with an API key instead of a session: `session_id` is
    /// then nil, and the route was one the key's scopes allow.
    pub api_key: Option<KeyGrant>,
}

/// The API key a request was authenticated with.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub id: Uuid,
    pub scopes: Vec<String>,
}

impl AuthUser {
    /// An aal 2 session whose second factor is at most `max_age` old: what actions that
    /// need aal 2 ask for, so an old aal 2 carried through refreshes does not count.
    pub fn has_recent_mfa(&self, max_age: std::time::Duration) -> bool {
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::zero());
        self.aal >= 2 && self.mfa_verified_at.is_some_and(|at| Utc::now() - at <= max_age)
    }
}

/// The credential of a request: `Authorization: Bearer <token>` or `ApiKey <key>`.
enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// The bearer token of a request, for a route where signing in is optional.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    match credential(headers)? {
        Credential::Bearer(token) => Some(token),
        Credential::ApiKey(_) => None,
    }
}

fn credential(headers: &axum::http::HeaderMap) -> Option<Credential<'_>> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credential::Bearer(token.trim()))
    } else if scheme.eq_ignore_ascii_case("apikey") {
        Some(Credential::ApiKey(token.trim()))
    } else {
        None
    }
}

/// The scopes an API key may hold (API.md "API key scopes").
pub const SCOPES: [&str; 3] = ["me:read", "audit:read", "introspect"];

/// Scopes that reach staff data; creating a key with one needs an aal 2 session.
pub fn is_admin_scope(scope: &str) -> bool {
    scope != "me:read"
}

/// The extension by which a route's `#[utoipa::path]` names the API-key scope that may call
/// it (`extensions(("x-api-key-scope" = json!("me:read")))`), beside its path: the signed-in
/// user's read-only routes (`me:read`), the admin audit and summary reads (`audit:read`),
/// introspection (`introspect`). A route that names none takes no key; nothing that
/// changes state names one.
pub const SCOPE_EXTENSION: &str = "x-api-key-scope";

/// The scope an operation's declaration names, if it is one of `SCOPES`.
pub fn declared_scope(op: &utoipa::openapi::path::Operation) -> Option<&'static str> {
    let declared = op.extensions.as_ref()?.get(SCOPE_EXTENSION)?.as_str()?;
    SCOPES.iter().copied().find(|s| *s == declared)
}

/// The scope each route takes a key for, read once from the API document the router was
/// built with (so the table and the routes are the same declarations); the router hands it
/// to every request of the API.
#[derive(Debug, Default)]
pub struct RouteScopes(std::collections::HashMap<(Method, String), &'static str>);

impl RouteScopes {
    pub fn from_document(doc: &utoipa::openapi::OpenApi) -> RouteScopes {
        let mut table = std::collections::HashMap::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, op) in ops {
                if let Some(scope) = op.as_ref().and_then(declared_scope) {
                    table.insert((method, path.clone()), scope);
                }
            }
        }
        RouteScopes(table)
    }

    /// The scope a key needs to call `method route`, or None when no key may.
    pub fn required(&self, method: &Method, route: &str) -> Option<&'static str> {
        self.0.get(&(method.clone(), route.to_owned())).copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The public part of a key (`gh_<prefix>_<secret>`), by which it is looked up.
pub fn key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("gh_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_alphanumeric()) && !secret.is_empty()).then_some(prefix)
}

/// The live API key `key` (not revoked, not expired, of an active user), from the cache
/// or one statement. `last_used_at` is written at most once a minute per key: in the
/// lookup's own statement on a miss, by a bounded background write on a hit.
pub async fn key_of(state: &AppState, key: &str) -> Result<Arc<CachedKey>, AppError> {
    let prefix = key_prefix(key).ok_or(AppError::Unauthenticated)?;
    let hash = super::crypto::sha256_hex(key);
    if let Some(found) = state.auth_cache.key(&hash) {
        stamp_key_use(state, &found);
        return Ok(found);
    }
    let ticket = state.auth_cache.ticket();
    let row = queries::live_key(&state.db, prefix, &hash).await?.ok_or(AppError::Unauthenticated)?;
    if !super::crypto::constant_time_eq(row.key_hash.as_bytes(), hash.as_bytes()) {
        return Err(AppError::Unauthenticated);
    }
    let found = CachedKey {
        id: row.id,
        user_id: row.user_id,
        session_id: row.session_id,
        scopes: row.scopes,
        is_staff: row.is_staff,
        is_superuser: row.is_superuser,
        expires_at: row.expires_at,
        stamped_at: std::sync::atomic::AtomicI64::new(Utc::now().timestamp()),
    };
    Ok(state.auth_cache.put_key(ticket, &hash, found))
}

/// `last_used_at` for a key served from the cache, at most once a minute per key and
/// instance, after the answer (a bounded background task; refused when the service is
/// saturated, which only delays the stamp).
fn stamp_key_use(state: &AppState, key: &CachedKey) {
    use std::sync::atomic::Ordering;
    let now = Utc::now().timestamp();
    let last = key.stamped_at.load(Ordering::Relaxed);
    if now - last < 60 || key.stamped_at.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return;
    }
    let (db, id) = (state.db.clone(), key.id);
    let _ = state.spawn_bounded(async move {
        let stamped = queries::stamp_key_use(&db, id).await;
        if let Err(e) = stamped {
            tracing::warn!(error = %e, "an API key's last use could not be stamped");
        }
    });
}

/// Authenticates an API key for a call whose route takes `needed` (None: no key may call
/// it): a live key holding that scope, within its rate budget.
pub async fn authenticate_key(state: &AppState, key: &str, needed: Option<&'static str>) -> Result<AuthUser, AppError> {
    let found = key_of(state, key).await?;
    let needed = needed.ok_or(AppError::Forbidden)?;
    if !found.scopes.iter().any(|s| s == needed) {
        return Err(AppError::Forbidden);
    }
    // Introspection is a gateway's hot path, one call per request it serves, by a staff key
    // made at aal 2: the per-key budget, meant for integrations reading user data, would
    // cut its traffic.
    if needed != "introspect" {
        state.key_limits.check(found.id)?;
    }
    if let Some(session) = found.session_id {
        state.auth_cache.count_api_call(session);
    }
    Ok(AuthUser {
        user_id: found.user_id,
        // The key's own session (nil for a key older than API sessions).
        session_id: found.session_id.unwrap_or_else(Uuid::nil),
        aal: 1,
        amr: Vec::new(),
        is_staff: found.is_staff,
        is_superuser: found.is_superuser,
        mfa_verified_at: None,
        api_key: Some(KeyGrant { id: found.id, scopes: found.scopes.clone() }),
    })
}

/// Writes this instance's counted API-key requests (each minute, and at shutdown): one
/// statement, no write per request. Counts a failed write could not store are kept for
/// the next flush. Returns the summary rows touched.
pub async fn flush_api_calls(state: &AppState) -> Result<u64, AppError> {
    let taken = state.auth_cache.take_api_calls();
    if taken.is_empty() {
        return Ok(0);
    }
    let sessions: Vec<Uuid> = taken.iter().map(|(s, _)| *s).collect();
    let counts: Vec<i32> = taken.iter().map(|(_, n)| i32::try_from(*n).unwrap_or(i32::MAX)).collect();
    match queries::flush_api_calls(&state.db, &sessions, &counts).await {
        Ok(rows) => Ok(rows),
        Err(e) => {
            state.auth_cache.return_api_calls(&taken);
            Err(e.into())
        }
    }
}

/// What a valid access token stands for: a signature from a known key, an unexpired
/// token, a still-active session of an active user. From the instance's cache when it
/// holds the token (no database, no signature check), else one statement that fills it.
pub async fn session_of(state: &AppState, token: &str) -> Result<Arc<CachedSession>, AppError> {
    if let Some(found) = state.auth_cache.session(token) {
        return Ok(found);
    }
    let claims = verify(&state.keys, token, &state.config.public_base_url)?;
    let ticket = state.auth_cache.ticket();
    let row = queries::live_session(&state.db, claims.sid, claims.sub).await?.ok_or(AppError::Unauthenticated)?;
    let session = CachedSession {
        user_id: claims.sub,
        session_id: claims.sid,
        token_expires_at: claims.exp,
        issued_at: claims.iat,
        aal: claims.aal,
        amr: claims.amr,
        authenticated_at: row.created_at,
        session_expires_at: row.expires_at,
        mfa_verified_at: row.mfa_verified_at,
        device_id: row.device_id,
        is_staff: row.is_staff,
        is_superuser: row.is_superuser,
        email: row.email,
        username: row.username,
        email_verified: row.email_verified,
        whoami: Default::default(),
    };
    Ok(state.auth_cache.put_session(ticket, token, session))
}

/// Authenticates an access token (`session_of`) as the signed-in user of a request.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, AppError> {
    let s = session_of(state, token).await?;
    Ok(AuthUser {
        user_id: s.user_id,
        session_id: s.session_id,
        aal: s.aal,
        amr: s.amr.clone(),
        is_staff: s.is_staff,
        is_superuser: s.is_superuser,
        mfa_verified_at: s.mfa_verified_at,
        api_key: None,
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let user = match credential(&parts.headers).ok_or(AppError::Unauthenticated)? {
            Credential::Bearer(token) => authenticate(state, token).await?,
            Credential::ApiKey(key) => {
                let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
                let scopes = parts.extensions.get::<Arc<RouteScopes>>();
                let needed = route.zip(scopes).and_then(|(route, scopes)| scopes.required(&parts.method, route));
                authenticate_key(state, key, needed).await?
            }
        };
        super::request_id::record_user(user.user_id);
        Ok(user)
    }
}

/// Admits a staff user holding `permission` (`app_label.codename`, Django-style; superusers
/// hold all) to read. When the user's `enforce_for_admin` is on (the default), the session
/// must be aal 2: 403 MFA_REQUIRED otherwise, so staff enrol MFA before they administer;
/// within the account's MFA grace period (`grace_period_days` from being made staff, MFA
/// not yet on) reads are let in without it.
pub async fn require_permission(state: &AppState, user: &AuthUser, permission: &str) -> Result<(), AppError> {
    admit(state, user, permission, false).await
}

/// As `require_permission`, for an admin write: with `enforce_for_admin` on, the second
/// factor must be within `STEP_UP_MAX_AGE_SECONDS` (403 MFA_REQUIRED; `POST
/// /auth/mfa/step-up` renews it), not just an aal 2 session that may be a month old. No
/// API key writes.
pub async fn require_admin_write(state: &AppState, user: &AuthUser, permission: &str) -> Result<(), AppError> {
    if user.api_key.is_some() {
        return Err(AppError::Forbidden);
    }
    admit(state, user, permission, true).await
}

async fn admit(state: &AppState, user: &AuthUser, permission: &str, write: bool) -> Result<(), AppError> {
    if !user.is_staff {
        return Err(AppError::Forbidden);
    }
    let (app_label, codename) = permission.split_once('.').ok_or_else(|| AppError::internal("bad permission name"))?;
    let row = queries::staff_grant(&state.db, user.user_id, app_label, codename).await?;
    // A key with an admin scope was created from an aal 2 session; it stands in for one.
    // Within the grace period a read needs no second factor; a write always does.
    let grace_read = row.in_grace && !write;
    if row.enforce && user.aal < 2 && user.api_key.is_none() && !grace_read {
        return Err(AppError::MfaRequired);
    }
    if row.enforce && write && !user.has_recent_mfa(state.config.step_up_max_age) {
        return Err(AppError::MfaRequired);
    }
    if user.is_superuser || row.granted { Ok(()) } else { Err(AppError::Forbidden) }
}
