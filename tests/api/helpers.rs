//! Typed helpers: a real server on a random loopback port, driven with reqwest.

use std::net::SocketAddr;

use gatehouse::{
    AppState,
    core::{config::Config, crypto::JwtKeys},
};
use serde_json::Value;
use sqlx::PgPool;

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
}

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
        let keys = JwtKeys::ephemeral().expect("ephemeral key");
        let state = AppState::new(pool, config, keys);
        let app = gatehouse::with_layers(routes, state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.ok();
        });
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        TestApp { addr, state, client }
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
