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
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, fmt::writer::MakeWriterExt, layer::SubscriberExt, util::SubscriberInitExt};

use super::config::LogFormat;

/// Lines the access-log queue holds before it drops (`LOG_QUEUE_LINES`; at about 300
/// bytes a line, the default holds some 30 MB).
const QUEUED_LINES: usize = 100_000;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
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
        .finish(std::io::stdout());
    let (alerts, alerts_guard) =
        NonBlockingBuilder::default().lossy(false).thread_name("gatehouse-log-warn").finish(std::io::stdout());
    let _ = DROPPED.set(access.error_counter());
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

/// Access-log lines dropped since the last call (for the metrics counter).
pub fn newly_dropped_lines() -> u64 {
    let Some(counter) = DROPPED.get() else { return 0 };
    let total = counter.dropped_lines();
    let before = REPORTED.swap(total, Ordering::AcqRel);
    u64::try_from(total.saturating_sub(before)).unwrap_or(0)
}
