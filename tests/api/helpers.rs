//! Typed helpers: a real server on a random loopback port, driven with reqwest.

use std::net::SocketAddr;

use gatehouse::{
    AppState,
    core::{config::Config, jwt::JwtKeys},
    notifications::{
        delivery::{self, DeliveryConfig},
        mailer::Mailer,
    },
};
use serde_json::Value;
use sqlx::PgPool;

use crate::smtp::{CapturedMail, SmtpCapture};

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    /// Where this app's mail goes when `deliver_mail` runs the outbox.
    pub smtp: SmtpCapture,
    /// Stops the replica's watcher (`core::replica::watch`) when the app is dropped.
    _replica_watch: Option<tokio::sync::watch::Sender<bool>>,
}

/// A signed-in session's tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
}

/// Test passwords: strong enough for the policy, distinct from each other.
pub const PASSWORD: &str = "Correct-Horse-Battery-9";
pub const PASSWORD_2: &str = "Tangerine-Lighthouse-42";

/// The database URL of a pool, so a test can build a second app instance on it.
pub fn test_config(pool: &PgPool) -> Config {
    let options = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    );
    Config::for_tests(&url)
}

impl TestApp {
    /// The whole service over `pool`.
    pub async fn spawn(pool: PgPool) -> TestApp {
        let config = test_config(&pool);
        Self::spawn_with(pool, config, gatehouse::routes()).await
    }

    /// The service with a custom configuration and route set (the layers stay the real ones).
    pub async fn spawn_with(pool: PgPool, config: Config, routes: axum::Router<AppState>) -> TestApp {
        Self::spawn_keyed(pool, config, routes, JwtKeys::ephemeral().expect("ephemeral key")).await
    }

    /// Another instance of the same deployment: same database, same signing keys.
    pub async fn another_instance(&self) -> TestApp {
        let config = (*self.state.config).clone();
        let keys = (*self.state.keys).clone();
        Self::spawn_keyed(self.state.db.clone(), config, gatehouse::routes(), keys).await
    }

    async fn spawn_keyed(pool: PgPool, config: Config, routes: axum::Router<AppState>, keys: JwtKeys) -> TestApp {
        let mut state = AppState::new(pool, config, keys);
        state.edit().replica = gatehouse::core::replica::Replica::from_config(&state.config).expect("replica URL");
        let replica_watch = state.replica.clone().map(|replica| {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(gatehouse::core::replica::watch(replica, stopped));
            stop
        });
        let app = gatehouse::with_layers(routes, state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.ok();
        });
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let smtp = SmtpCapture::start().await;
        TestApp { addr, state, client, smtp, _replica_watch: replica_watch }
    }

    /// Starts this instance's session-cache listener (as `serve` does) and waits until the
    /// cache is in use; keep the returned sender alive for as long as it should run.
    pub async fn start_auth_listener(&self) -> tokio::sync::watch::Sender<bool> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (db, cache) = (self.state.db.clone(), self.state.auth_cache.clone());
        tokio::spawn(gatehouse::core::auth_cache::run_listener(
            db,
            cache,
            format!("test-listener {}", self.addr),
            stopped,
        ));
        for _ in 0..200 {
            if self.state.auth_cache.is_healthy() {
                return stop;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the auth cache listener did not come up in 2 s");
    }

    /// Waits for the work this app does after answering (a reset email) to finish.
    pub async fn background_settled(&self) {
        for _ in 0..500 {
            if self.state.background_in_flight() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("background work did not finish in 5 s");
    }

    /// Runs the outbox once against this app's SMTP capture server; returns every mail so far.
    pub async fn deliver_mail(&self) -> Vec<CapturedMail> {
        self.background_settled().await;
        let mailer = Mailer::new(Some(&self.smtp.url()), "Gatehouse <no-reply@gatehouse.test>").expect("mailer");
        let config = DeliveryConfig { backoff_base: std::time::Duration::ZERO, ..DeliveryConfig::default() };
        delivery::deliver_once(&self.state.db, &self.state.data_keys, &mailer, &config).await.expect("deliver");
        self.smtp.mails()
    }

    /// The token of the newest link to `path` (e.g. `/verify-email`) mailed to `to`.
    pub async fn mailed_token(&self, to: &str, path: &str) -> String {
        let marker = format!("{path}?token=");
        let texts: Vec<String> = self
            .deliver_mail()
            .await
            .iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .filter_map(|m| m.parsed().body_text(0).map(|t| t.into_owned()))
            .collect();
        let text =
            texts.iter().rev().find(|t| t.contains(&marker)).unwrap_or_else(|| panic!("no {marker} mailed to {to}"));
        let start = text.find(&marker).unwrap_or_default() + marker.len();
        text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
    }

    pub async fn register(&self, email: &str, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/register",
            &serde_json::json!({"email": email, "username": username, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json("/api/v1/auth/login", &serde_json::json!({"email": email, "password": password})).await
    }

    /// Registers `name@example.com` and signs in.
    pub async fn signed_in(&self, name: &str) -> Tokens {
        let email = format!("{name}@example.com");
        assert_eq!(self.register(&email, name, PASSWORD).await.status(), 201);
        self.login_ok(&email, PASSWORD).await
    }

    pub async fn login_ok(&self, email: &str, password: &str) -> Tokens {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200);
        tokens(json(response).await)
    }

    pub async fn refresh(&self, refresh: &str) -> reqwest::Response {
        self.post_json("/api/v1/auth/refresh", &serde_json::json!({"refresh_token": refresh})).await
    }

    pub fn with_token(&self, method: reqwest::Method, path: &str, access: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(access)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }
}

/// Reads a JSON body, failing the test with the raw text when it is not JSON.
pub async fn json(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts the house error body and returns it.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let request_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap_or("").to_owned());
    let body = json(response).await;
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(error.get("details").is_some(), "{body}");
    assert!(error["timestamp"].as_str().is_some(), "{body}");
    assert_eq!(error["request_id"].as_str().map(str::to_owned), request_id, "{body}");
    body
}

/// The tokens of an Authenticated body.
pub fn tokens(body: Value) -> Tokens {
    assert_eq!(body["status"], "authenticated", "{body}");
    Tokens {
        access: body["access_token"].as_str().expect("access_token").to_owned(),
        refresh: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
        session_id: body["session_id"].as_str().expect("session_id").to_owned(),
    }
}

/// The decoded (unverified) header and claims of a JWT.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::Engine;
    let decode = |part: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    };
    let mut parts = token.split('.');
    let header = decode(parts.next().expect("header"));
    let claims = decode(parts.next().expect("claims"));
    (header, claims)
}

/// `gatehouse createsuperuser` as the CLI does it: parse the registration, then create.
pub async fn create_superuser(
    state: &AppState,
    email: &str,
    username: &str,
    password: String,
) -> Result<gatehouse::accounts::models::User, gatehouse::AppError> {
    let registration =
        gatehouse::accounts::forms::auth::Registration::parse(email, username, password.into(), None, None)?;
    gatehouse::accounts::service::create_superuser(state, registration).await
}

pub fn email(raw: &str) -> gatehouse::core::types::Email {
    gatehouse::core::types::Email::parse(raw).expect("a valid test email")
}

pub fn phone(raw: &str) -> gatehouse::core::types::Phone {
    gatehouse::core::types::Phone::parse(raw).expect("a valid test phone")
}

/// The data keys of `Config::for_tests`, for tests that queue or deliver without an app.
pub fn keys() -> std::sync::Arc<gatehouse::core::data_keys::DataKeys> {
    std::sync::Arc::new(gatehouse::core::data_keys::DataKeys::new(&[7u8; 32], &[]))
}

/// A superuser who may administer without MFA (`enforce_for_admin` off), signed in.
pub async fn admin(app: &TestApp, pool: &PgPool) -> Tokens {
    let user = create_superuser(&app.state, "root@example.com", "root", PASSWORD.into()).await.unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(user.id)
        .execute(pool)
        .await
        .unwrap();
    app.login_ok("root@example.com", PASSWORD).await
}

pub const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// A password login from Chrome with a device fingerprint and extra headers (geo, proxy).
pub async fn login_from(app: &TestApp, email: &str, fingerprint: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("User-Agent", CHROME)
        .header("X-Device-Fingerprint", fingerprint)
        .json(&serde_json::json!({"email": email, "password": PASSWORD}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    json(r).await
}
