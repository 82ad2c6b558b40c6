//! Logging: JSON lines in production, pretty in development; RUST_LOG filters.
//!
//! Lines are written by background threads (`tracing-appender`), never by the request that
//! logs them: a slow or blocked stdout must not slow a request. Two writers share stdout:
//! INFO and below (the access log) go through a bounded, lossy queue whose dropped lines
//! are counted (`log_lines_dropped_total` on /metrics); WARN and ERROR go through a queue
//! that never drops (it would wait instead; those lines are rare). Each JSON line carries
//! the current span's fields once (not again as a span list).

use std::{
    io::IsTerminal,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use tracing::Level;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, fmt::writer::MakeWriterExt, layer::SubscriberExt, util::SubscriberInitExt};

use super::config::LogFormat;

/// Lines the access-log queue holds before it drops (`LOG_QUEUE_LINES`; at about 300
/// bytes a line, the default holds some 30 MB).
const QUEUED_LINES: usize = 100_000;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
/// The access log's writer and format (`access_line` writes through it).
static ACCESS: OnceLock<(NonBlocking, LogFormat)> = OnceLock::new();
/// Dropped lines already reported to the metrics.
static REPORTED: AtomicUsize = AtomicUsize::new(0);

/// Keeps the log writers' threads: dropping it flushes what they hold (keep it until exit).
#[must_use = "dropping the guard stops the log writers"]
pub struct LogGuard {
    _guards: [WorkerGuard; 2],
}

pub fn init(format: LogFormat) -> LogGuard {
    let queued = std::env::var("LOG_QUEUE_LINES").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0);
    let (access, access_guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queued.unwrap_or(QUEUED_LINES))
        .thread_name("gatehouse-log")
        // The worker writes every line it has queued, then flushes: one write(2) per
        // batch instead of one per line (stdout alone flushes at each newline).
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let (alerts, alerts_guard) =
        NonBlockingBuilder::default().lossy(false).thread_name("gatehouse-log-warn").finish(std::io::stdout());
    let _ = DROPPED.set(access.error_counter());
    let _ = ACCESS.set((access.clone(), format));
    // INFO and more verbose through the lossy queue; WARN and ERROR through the other.
    let writer = access.with_min_level(Level::INFO).and(alerts.with_max_level(Level::WARN));

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
        // Colour only on a terminal: a log file or a pipe gets plain text.
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_ansi(std::io::stdout().is_terminal()).with_writer(writer))
            .try_init(),
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
    LogGuard { _guards: [access_guard, alerts_guard] }
}

/// One request's access-log line, written by hand rather than through the JSON formatter
/// (which cost a request a quarter of its time at 40,000 requests a second): the same
/// fields, the same shape (`span` holding the request's fields once).
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub user_id: Option<uuid::Uuid>,
    pub status: u16,
    pub latency_ms: f64,
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    level: &'static str,
    message: &'static str,
    target: &'static str,
    status: u16,
    latency_ms: f64,
    span: JsonSpan<'a>,
}

#[derive(serde::Serialize)]
struct JsonSpan<'a> {
    request_id: &'a str,
    method: &'a str,
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    name: &'static str,
}

/// Whether access lines are wanted (INFO for `gatehouse::access` under RUST_LOG) and a
/// writer is set up (not in tests that build the router in-process).
pub fn access_enabled() -> bool {
    ACCESS.get().is_some() && tracing::enabled!(target: "gatehouse::access", Level::INFO)
}

/// Queues `line` on the access log's lossy writer.
pub fn access_line(line: &AccessLine<'_>) {
    use std::io::Write;
    let Some((writer, format)) = ACCESS.get() else { return };
    let now = chrono::Utc::now();
    let mut out = Vec::with_capacity(256);
    let user = line.user_id.map(|u| u.to_string());
    let written = match format {
        LogFormat::Json => {
            let value = JsonLine {
                timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                level: "INFO",
                message: "request finished",
                target: "gatehouse::access",
                status: line.status,
                latency_ms: line.latency_ms,
                span: JsonSpan {
                    request_id: line.request_id,
                    method: line.method,
                    route: line.route,
                    user_id: user.as_deref(),
                    name: "request",
                },
            };
            serde_json::to_writer(&mut out, &value).is_ok() && out.write_all(b"\n").is_ok()
        }
        LogFormat::Pretty => writeln!(
            out,
            "{}  INFO request{{request_id={} method={} route={}{}}}: gatehouse::access: request finished status={} latency_ms={:.3}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            line.request_id,
            line.method,
            line.route,
            user.map(|u| format!(" user_id={u}")).unwrap_or_default(),
            line.status,
            line.latency_ms,
        )
        .is_ok(),
    };
    if written {
        let _ = writer.clone().write_all(&out);
    }
}

/// Access-log lines dropped since the last call (for the metrics counter).
pub fn newly_dropped_lines() -> u64 {
    let Some(counter) = DROPPED.get() else { return 0 };
    let total = counter.dropped_lines();
    let before = REPORTED.swap(total, Ordering::AcqRel);
    u64::try_from(total.saturating_sub(before)).unwrap_or(0)
}
