//! The real `gatehouse` binary as its own process: a signing key from `keys generate`, and
//! `serve` on a port of its own, killed when dropped so a failing test leaves none behind.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A scratch directory holding a fresh EdDSA signing key; removed when dropped.
pub struct SigningKey {
    dir: PathBuf,
    pub path: PathBuf,
}

impl SigningKey {
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-key-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let path = dir.join("jwt.pem");
        let made = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["keys", "generate", "--out"])
            .arg(&path)
            .env("APP_ENV", "development")
            .stdout(Stdio::null())
            .status()
            .expect("gatehouse keys generate runs");
        assert!(made.success(), "gatehouse keys generate failed");
        SigningKey { dir, path }
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A `gatehouse serve` process and its base URL.
pub struct Serve {
    child: Child,
    pub base: String,
}

impl Serve {
    /// SIGKILL: no shutdown, no drain.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `gatehouse serve` on `port` over `database_url` (development keys, no replica or admin
/// pool from the environment), with `envs` on top; returns once `/readyz` answers 200.
pub async fn serve(database_url: &str, key: &SigningKey, port: u16, envs: &[(&str, &str)]) -> Serve {
    serve_logged(database_url, key, port, envs, None).await
}

/// `serve`, with its standard output and error written to `log` when given.
pub async fn serve_logged(
    database_url: &str,
    key: &SigningKey,
    port: u16,
    envs: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> Serve {
    let output = || match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new().create(true).append(true).open(path).expect("the service's log file"),
        ),
        None => Stdio::null(),
    };
    serve_with_output(database_url, key, port, envs, output(), output()).await
}

/// `serve` with its standard output and error going where the caller says (a pipe nobody
/// reads, say).
pub async fn serve_with_output(
    database_url: &str,
    key: &SigningKey,
    port: u16,
    envs: &[(&str, &str)],
    stdout: Stdio,
    stderr: Stdio,
) -> Serve {
    let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("serve")
        .env("APP_ENV", "development")
        .env("DATABASE_URL", database_url)
        .env("JWT_SIGNING_KEY_FILE", &key.path)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("DATABASE_REPLICA_URL")
        .env_remove("DATABASE_ADMIN_URL")
        .envs(envs.iter().copied())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("gatehouse serve starts");
    let server = Serve { child, base: format!("http://127.0.0.1:{port}") };
    let ready = format!("{}/readyz", server.base);
    let started = Instant::now();
    while reqwest::get(&ready).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(30), "gatehouse serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}
