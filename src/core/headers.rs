//! Security headers on every response: no sniffing, no referrer, no caching of anything
//! the API answers (tokens, codes and personal data all travel in those bodies), and on
//! every HTML page (`/admin`, the emailed links' pages, `/docs`, any page to come) a
//! Content-Security-Policy that also forbids framing (`frame-ancestors 'none'`).

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::Response,
};

/// The server-rendered pages (`/admin`, the link pages) run no script at all; their styles
/// are inline.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
                         frame-ancestors 'none'; base-uri 'none'";
/// The staff console: as the pages, plus its one script file (passkeys), which calls the API.
const ADMIN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
                          script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The account console (`/account`, `/magic-link`): no inline style or script at all; one
/// served stylesheet and one served script (the WebAuthn calls).
const CONSOLE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                           script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Swagger UI's own files, served by the service; it styles elements inline and draws icons as data URIs.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                        script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn middleware(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    let csp = if path == "/docs" || path.starts_with("/docs/") {
        Some(DOCS_CSP)
    } else if path == "/admin" || path.starts_with("/admin/") {
        Some(ADMIN_CSP)
    } else if path == "/account" || path.starts_with("/account/") || path == "/magic-link" {
        Some(CONSOLE_CSP)
    } else if html {
        Some(PAGE_CSP)
    } else {
        None
    };
    if let Some(csp) = csp {
        set(header::CONTENT_SECURITY_POLICY, csp);
        set(header::X_FRAME_OPTIONS, "DENY");
    }
    // Everything but the static documentation assets: nothing the API or /admin answers
    // (tokens, codes, personal data) may be stored by a cache or the browser.
    if !path.starts_with("/docs") && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
