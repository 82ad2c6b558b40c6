//! The OpenAPI 3.1 document (`/api/v1/openapi.json`) and the self-hosted docs (`/docs`).
//! Its paths come from the routers (each handler's `#[utoipa::path]`, the one place a route
//! is written); here are the document's own parts: info, shared schemas, tags, the security
//! schemes and the answers every operation of a kind can give.

use std::sync::Arc;

use axum::{Extension, Json, Router};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    audit_log,
    core::{self, AppState},
    notifications,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        version = "1",
        description = "Authentication, MFA and device trust. Every error is \
            `{\"error\": {\"code\", \"message\", \"details\", \"request_id\", \"timestamp\"}}`: \
            400 MALFORMED_REQUEST (bad JSON, bad path value), 415 UNSUPPORTED_MEDIA_TYPE (a body that is not \
            application/json), \
            422 VALIDATION_FAILED (details: field -> messages; also a bad query value or `limit` \
            outside 1..100, never clamped), 404 NOT_FOUND, 405 METHOD_NOT_ALLOWED, \
            413 PAYLOAD_TOO_LARGE (bodies over 1 MiB), 429 RATE_LIMITED with Retry-After, \
            503 UNAVAILABLE, 500 INTERNAL. Every response carries X-Request-Id. Access tokens are EdDSA JWTs \
            whose iss and aud are both the deployment's PUBLIC_BASE_URL."
    ),
    components(schemas(
        core::error::ErrorBody, core::error::ErrorObject, core::extract::Pagination,
        audit_log::models::review::AuditEvent, audit_log::models::review::Summary, notifications::models::Delivery,
    )),
    tags(
        (name = "service", description = "Health, readiness and keys"),
        (name = "auth", description = "Registration, login, tokens and passwords"),
        (name = "users", description = "The signed-in user"),
        (name = "mfa", description = "The signed-in user's second factors: TOTP, email and SMS codes, passkeys \
            (WebAuthn; the RP id is WEBAUTHN_RP_ID or PUBLIC_BASE_URL's host, and with an IP address there \
            passkeys are off: 503 UNAVAILABLE), backup codes. \
            MFA turns on with the first confirmed factor. While it is on, changing factors needs the password and a \
            second factor within STEP_UP_MAX_AGE_SECONDS (POST /auth/mfa/step-up renews it); a staff user's removal \
            answers 202 approval_required until another staff member approves."),
        (name = "sessions", description = "The signed-in user's sessions"),
        (name = "devices", description = "The signed-in user's devices: found or created at each login by the \
            hashed X-Device-Fingerprint (is_verified) or, without one, by the user agent. Each login's risk (0-100, \
            docs/risk.md) is kept on its device; a first login from a device sends a security email. Another \
            user's device id is 404."),
        (name = "audit", description = "The signed-in user's own security events"),
        (name = "admin", description = "Staff only, with the Django-style permission each route names \
            (audit_log.view_auditlog, review_auditlog, view_auditlogsummary, run_auditlogsummary, view_jobrun, \
            view_retentionpolicy, change_retentionpolicy; superusers hold all). When the staff user's \
            enforce_for_admin is on (the default) the session must be aal 2: 403 MFA_REQUIRED otherwise."),
        (name = "notifications", description = "Notification settings and delivery history. Security \
            notifications (codes, links, token reuse, and every notice that the account changed: password \
            changed or reset, MFA turned off) always go, whatever the settings; only marketing is optional, and \
            it needs consent. Every delivery decision is logged."),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer <access token>`: an EdDSA JWT (claims sub, sid, jti, iat, exp, aal, amr).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`ApiKey gh_<prefix>_<secret>`; only on operations whose x-api-key-scope the key holds",
            ))),
        );
    }
}

/// The answers every operation of a kind can give, declared once here rather than on each
/// handler: what the extractors and layers answer before a handler runs (a body that is
/// not JSON, a path value of the wrong form), a missing token, and load shedding.
/// An operation's own declaration of the same status wins.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, path::ParameterIn, security::SecurityRequirement};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = matches!(path.as_str(), "/healthz" | "/readyz" | "/.well-known/jwks.json");
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                // The routes an API key may call: those whose declaration names a scope.
                if let Some(scope) = crate::core::auth::declared_scope(op) {
                    op.security.get_or_insert_with(Vec::new).push(SecurityRequirement::new("api_key", [scope]));
                }
                let params: Vec<ParameterIn> = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        RefOr::T(p) => Some(p.parameter_in.clone()),
                        RefOr::Ref(_) => None,
                    })
                    .collect();
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = op.request_body.is_some();
                let responses = &mut op.responses.responses;
                let mut add = |status: &str, text: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| error_response(text));
                };
                if has_body {
                    add("400", "MALFORMED_REQUEST: the body is not valid JSON, or a field has the wrong type");
                    add("413", "PAYLOAD_TOO_LARGE: a body over 1 MiB");
                    add("415", "UNSUPPORTED_MEDIA_TYPE: the body is not application/json");
                    add("422", "VALIDATION_FAILED: details name each field and what is wrong with it");
                }
                if params.contains(&ParameterIn::Path) {
                    add("400", "MALFORMED_REQUEST: a path value of the wrong form (e.g. not a UUID)");
                    add("404", "NOT_FOUND: no such item of yours");
                }
                if params.contains(&ParameterIn::Query) {
                    add("422", "VALIDATION_FAILED: a query value out of range or of the wrong form");
                }
                if secured {
                    add("401", "UNAUTHENTICATED: no access token, or an expired, forged or revoked one");
                }
                if !public {
                    add("503", "UNAVAILABLE with Retry-After: the database is out of reach or the service sheds load");
                }
                // OpenAPI requires a description on every response.
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(r) = response
                        && r.description.is_empty()
                    {
                        let reason = status.parse::<u16>().ok().and_then(|s| axum::http::StatusCode::from_u16(s).ok());
                        r.description = reason.and_then(|s| s.canonical_reason()).unwrap_or("Response").to_owned();
                    }
                }
            }
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    ResponseBuilder::new().description(description).content("application/json", content).build().into()
}

/// The served document: the routers' paths in `ApiDoc`'s frame, with the security schemes
/// and the common answers added.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(paths);
    BearerAuth.modify(&mut doc);
    CommonResponses.modify(&mut doc);
    doc
}

/// `GET /api/v1/openapi.json`: the document the router was built with.
pub async fn openapi_json(Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>) -> Json<utoipa::openapi::OpenApi> {
    Json(doc.as_ref().clone())
}

/// Swagger UI at `/docs`, its assets compiled into the binary (no CDN).
pub fn docs_router() -> Router<AppState> {
    Router::from(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/api/v1/openapi.json")))
}
