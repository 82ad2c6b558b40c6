//! Extractors whose rejections are our own error, so malformed input gets the house body.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use utoipa::{IntoParams, ToSchema};

use super::error::{AppError, Problems};

/// JSON body: 415 for another content type, 400 for bad JSON, 422 naming the field for a
/// missing or mistyped one, 413 past the body limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_guess_lite::Mime>().ok())
            .is_some_and(|m| m.is_json());
        if !is_json {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(AppJson)
    }
}

/// A JSON body that may be left out: an empty body (with or without a Content-Type) is
/// `T::default()`; anything else is read as `AppJson` reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await.map_err(body_error)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        AppJson::<T>::from_request(req, state).await.map(|AppJson(v)| OptionalJson(v))
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn body_error(e: BytesRejection) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge
    } else {
        AppError::MalformedRequest("The request body could not be read.".into())
    }
}

/// Parses a JSON document, telling syntax errors (400) from shape errors (422, by field).
/// A string holding NUL (`\u0000`) is a 422 too: PostgreSQL text cannot store it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_at(&doc, "")
    {
        return Err(AppError::validation(
            if field.is_empty() { "body" } else { &field },
            "must not contain NUL characters",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            de.end().map_err(|_| AppError::MalformedRequest("Unexpected data after the JSON body.".into()))?;
            Ok(v)
        }
        Err(e) => {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(AppError::MalformedRequest("The request body is not valid JSON.".into()));
            }
            let message = inner.to_string();
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                // serde names a missing field only in its message: "missing field `email`".
                message
                    .split('`')
                    .nth(1)
                    .filter(|_| message.starts_with("missing field"))
                    .map(str::to_owned)
                    .unwrap_or_else(|| "body".to_owned())
            } else {
                path
            };
            Err(AppError::validation(&field, clean_serde_message(&message)))
        }
    }
}

/// The path (`a.b[2]`) of the first string or key in `v` that holds a NUL character.
fn nul_at(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0').then(|| at.to_owned()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_at(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            if k.contains('\0') { Some(path) } else { nul_at(item, &path) }
        }),
        _ => None,
    }
}

/// serde's messages end with " at line 1 column 9"; clients need only the first part.
fn clean_serde_message(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query string: a value of the wrong type is a 422 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some((k, _)) = form_urlencoded_parse(query).find(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(AppError::validation(&k.replace('\0', ""), "must not contain NUL characters"));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize::<_, T>(de).map(AppQuery).map_err(|e| {
            let message = e.inner().to_string();
            let path = e.path().to_string();
            let field = if path == "." { message.split('`').nth(1).unwrap_or("query").to_owned() } else { path };
            AppError::validation(&field, message)
        })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Path parameters: a malformed id is a 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| AppPath(p.0))
            .map_err(|e| AppError::MalformedRequest(format!("Invalid path parameter: {}", e.body_text())))
    }
}

/// `?page=1&limit=20`; limit outside 1..=100 is a 422, never clamped.
#[derive(Debug, Clone, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number.
    pub page: Option<i64>,
    /// Items per page, 1..=100 (default 20).
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: i64,
    pub limit: i64,
}

impl Page {
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.limit
    }
}

impl PageParams {
    pub fn validate(&self, problems: &mut Problems) -> Page {
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(20);
        if !(1..=100_000).contains(&page) {
            problems.add("page", "must be at least 1");
        }
        if !(1..=100).contains(&limit) {
            problems.add("limit", "must be between 1 and 100");
        }
        Page { page, limit }
    }

    /// The page of a query whose values arrive as text (so every bad parameter is
    /// reported at once); the range rules are `validate`'s.
    pub fn from_text(page: Option<&str>, limit: Option<&str>, problems: &mut Problems) -> Page {
        let mut number = |raw: Option<&str>, field: &str| {
            raw.and_then(|r| problems.check(field, r.parse::<i64>().map_err(|_| "must be a whole number")))
        };
        let params = PageParams { page: number(page, "page"), limit: number(limit, "limit") };
        params.validate(problems)
    }

    pub fn page(&self) -> Result<Page, AppError> {
        let mut problems = Problems::new();
        let page = self.validate(&mut problems);
        problems.finish(page)
    }
}

/// A boolean query value: `true`/`1` or `false`/`0`.
pub fn flag(raw: &str) -> Option<bool> {
    match raw {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `{"items": [...], "pagination": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paginated<T> {
    pub items: Vec<T>,
    pub pagination: Pagination,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub page: i64,
    pub limit: i64,
    pub total: i64,
    pub pages: i64,
}

impl<T> Paginated<T> {
    pub fn new(items: Vec<T>, page: Page, total: i64) -> Self {
        let pages = if total == 0 { 0 } else { (total + page.limit - 1) / page.limit };
        Paginated { items, pagination: Pagination { page: page.page, limit: page.limit, total, pages } }
    }
}

mod mime_guess_lite {
    //! Just enough media-type parsing to accept `application/json` and `application/*+json`.
    use std::str::FromStr;

    pub struct Mime {
        essence: String,
    }

    impl Mime {
        pub fn is_json(&self) -> bool {
            self.essence == "application/json"
                || (self.essence.starts_with("application/") && self.essence.ends_with("+json"))
        }
    }

    impl FromStr for Mime {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s.split(';').next().ok_or(())?.trim().to_ascii_lowercase();
            if essence.contains('/') { Ok(Mime { essence }) } else { Err(()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    #[test]
    fn a_nul_character_is_refused_by_field_before_it_reaches_the_database() {
        let body = br#"{"email": "a\u0000@example.com", "password": "x"}"#;
        match parse_json::<Login>(body) {
            Err(AppError::Validation(fields)) => assert!(fields.contains_key("email"), "{fields:?}"),
            other => panic!("{other:?}"),
        }
        let nested = br#"{"email": "a@example.com", "password": "x", "extra": [{"\u0000": 1}]}"#;
        assert!(matches!(parse_json::<Login>(nested), Err(AppError::Validation(_))));
        // An escaped backslash before "u0000" is ordinary text.
        assert!(parse_json::<Login>(br#"{"email": "a\\u0000", "password": "x"}"#).is_ok());
    }

    #[test]
    fn syntax_error_is_malformed() {
        assert!(matches!(parse_json::<Login>(b"{\"email\":"), Err(AppError::MalformedRequest(_))));
        assert!(matches!(parse_json::<Login>(b"nope"), Err(AppError::MalformedRequest(_))));
    }

    #[test]
    fn missing_field_names_the_field() {
        match parse_json::<Login>(br#"{"email":"a@b.c"}"#) {
            Err(AppError::Validation(f)) => assert!(f.contains_key("password"), "{f:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_type_names_the_field() {
        match parse_json::<Login>(br#"{"email":1,"password":"x"}"#) {
            Err(AppError::Validation(f)) => assert!(f.contains_key("email"), "{f:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
