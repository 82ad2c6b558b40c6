//! Logging: JSON lines in production, pretty in development; RUST_LOG filters.
//!
//! Lines are written by background threads, never by the request that logs them: a slow
//! or blocked stdout must not slow a request. The access log (one line a request) goes
//! into a bounded buffer that a writer thread takes every `ACCESS_FLUSH_EVERY` and writes
//! in one write(2): a request never wakes a thread (a queue whose writer sleeps until a
//! line arrives was woken some 8,000 times a second at 30,000 requests a second, 13% of
//! the service's CPU). Past `LOG_QUEUE_LINES` lines waiting, access lines are dropped and
//! counted (`log_lines_dropped_total` on /metrics). Other events go through
//! `tracing-appender`: INFO and below through a lossy queue (its drops counted too), WARN
//! and ERROR through one that never drops (it would wait instead; those lines are rare).
//! Each JSON line carries the current span's fields once (not again as a span list).

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tracing::Level;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{
    EnvFilter,
    fmt::{self, FmtContext, FormatEvent, FormatFields, format::Writer, writer::MakeWriterExt},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use super::config::LogFormat;

/// Lines either queue holds before it drops (`LOG_QUEUE_LINES`; at about 300 bytes a
/// line, the default holds some 30 MB).
const QUEUED_LINES: usize = 100_000;
/// How often the access log's writer takes what has queued: lines reach stdout within it.
const ACCESS_FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Lines the INFO events' queue (`tracing-appender`, not the access log) dropped.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
/// The access log's queue and format (`access_line` appends to it).
static ACCESS: OnceLock<(Arc<AccessQueue>, LogFormat)> = OnceLock::new();
/// Dropped lines already reported to the metrics.
static REPORTED: AtomicUsize = AtomicUsize::new(0);

/// Access lines waiting for the writer thread.
struct AccessQueue {
    pending: Mutex<Pending>,
    limit: usize,
    dropped: AtomicUsize,
    stop: AtomicBool,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
}

impl AccessQueue {
    fn push(&self, line: &[u8]) {
        // A poisoned lock only means a writer panicked mid-append; the bytes are whole lines.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.lines >= self.limit {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
    }

    /// The writer thread: every `ACCESS_FLUSH_EVERY`, swaps the buffer for an empty one
    /// (the lock is held for the swap only) and writes what it took.
    fn write_out(&self, out: &mut impl Write) {
        let mut spare = Vec::new();
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let taken = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::swap(&mut pending.bytes, &mut spare);
                std::mem::take(&mut pending.lines)
            };
            if !spare.is_empty() {
                // Nowhere to report a failed write to but the log itself: the lines are
                // lost, and counted as dropped.
                if out.write_all(&spare).and_then(|()| out.flush()).is_err() {
                    self.dropped.fetch_add(taken, Ordering::Relaxed);
                }
                spare.clear();
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(ACCESS_FLUSH_EVERY);
        }
    }
}

/// Keeps the log writers' threads: dropping it writes out what they hold (keep it until
/// exit).
#[must_use = "dropping the guard stops the log writers"]
pub struct LogGuard {
    _guards: [WorkerGuard; 2],
    access: Option<(Arc<AccessQueue>, JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((queue, thread)) = self.access.take() {
            queue.stop.store(true, Ordering::Release);
            thread.thread().unpark();
            // At most a second, as tracing-appender's guards: a stdout nobody reads must not
            // keep a stopping process alive (the thread is left to the exit).
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

pub fn init(format: LogFormat) -> LogGuard {
    let queued = std::env::var("LOG_QUEUE_LINES").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0);
    let limit = queued.unwrap_or(QUEUED_LINES);
    let (info, info_guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(limit)
        .thread_name("gatehouse-log")
        .finish(std::io::stdout());
    let (alerts, alerts_guard) =
        NonBlockingBuilder::default().lossy(false).thread_name("gatehouse-log-warn").finish(std::io::stdout());
    let _ = DROPPED.set(info.error_counter());
    let queue = Arc::new(AccessQueue {
        pending: Mutex::new(Pending::default()),
        limit,
        dropped: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    // A second init (tests, embedded use) keeps the first queue and starts no writer.
    let access = if ACCESS.set((queue.clone(), format)).is_ok() {
        let writer = queue.clone();
        std::thread::Builder::new()
            .name("gatehouse-access".into())
            .spawn(move || writer.write_out(&mut std::io::stdout()))
            .ok()
            .map(|thread| (queue, thread))
    } else {
        None
    };
    // INFO and more verbose through the lossy queue; WARN and ERROR through the other.
    let writer = info.with_min_level(Level::INFO).and(alerts.with_max_level(Level::WARN));

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
                    .map_event_format(|f| WithRequestId { inner: f, json: true })
                    .with_writer(writer),
            )
            .try_init(),
        // Colour only on a terminal: a log file or a pipe gets plain text.
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .compact()
                    .with_ansi(std::io::stdout().is_terminal())
                    .map_event_format(|f| WithRequestId { inner: f, json: false })
                    .with_writer(writer),
            )
            .try_init(),
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
    LogGuard { _guards: [info_guard, alerts_guard], access }
}

/// Adds the request's id to each event logged inside a request (as `request_id`, the
/// key that joins it to the request's access line). Requests have no span to carry it
/// (see `request_id::middleware`): the id comes from the request's task-local, and costs
/// only the events that are written.
struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = super::request_id::current() else { return self.inner.format_event(ctx, writer, event) };
        // Formatted apart (without colour) so the id can go inside the line.
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        match body.strip_suffix('}') {
            Some(object) if self.json => {
                let id = serde_json::to_string(&id).map_err(|_| std::fmt::Error)?;
                writeln!(writer, "{object},\"request_id\":{id}}}")
            }
            _ => writeln!(writer, "{body} request_id={id}"),
        }
    }
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
    timestamp: &'a str,
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

/// Queues `line` for the access log's writer (dropped and counted when the queue is full).
pub fn access_line(line: &AccessLine<'_>) {
    thread_local! {
        /// Each request thread formats its lines in one buffer, kept between requests.
        static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
    }
    let Some((queue, format)) = ACCESS.get() else { return };
    let timestamp = Timestamp::now();
    let mut uuid = uuid::Uuid::encode_buffer();
    let user = line.user_id.map(|u| &*u.hyphenated().encode_lower(&mut uuid));
    LINE.with_borrow_mut(|out| {
        out.clear();
        let written = match format {
            LogFormat::Json => {
                let value = JsonLine {
                    timestamp: timestamp.as_str(),
                    level: "INFO",
                    message: "request finished",
                    target: "gatehouse::access",
                    status: line.status,
                    latency_ms: line.latency_ms,
                    span: JsonSpan {
                        request_id: line.request_id,
                        method: line.method,
                        route: line.route,
                        user_id: user,
                        name: "request",
                    },
                };
                serde_json::to_writer(&mut *out, &value).is_ok() && out.write_all(b"\n").is_ok()
            }
            LogFormat::Pretty => writeln!(
                out,
                "{}  INFO request{{request_id={} method={} route={}{}{}}}: gatehouse::access: request finished status={} latency_ms={:.3}",
                timestamp.as_str(),
                line.request_id,
                line.method,
                line.route,
                if user.is_some() { " user_id=" } else { "" },
                user.unwrap_or_default(),
                line.status,
                line.latency_ms,
            )
            .is_ok(),
        };
        if written {
            queue.push(out);
        }
    });
}

/// Now as RFC 3339 in UTC with microseconds (`2026-12-05T10:37:56.123456Z`), formatted on
/// the stack: the access line's timestamp without an allocation.
struct Timestamp {
    bytes: [u8; 27],
}

impl Timestamp {
    fn now() -> Self {
        use chrono::{Datelike, Timelike};
        let now = chrono::Utc::now();
        let mut bytes = [b'0'; 27];
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                bytes[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        // Years past 9999 do not occur in a log line's lifetime; they would wrap to 4 digits.
        put(0, 4, u32::try_from(now.year()).unwrap_or(0));
        put(5, 2, now.month());
        put(8, 2, now.day());
        put(11, 2, now.hour());
        put(14, 2, now.minute());
        put(17, 2, now.second());
        // A leap second shows as :59.999999+ in chrono's nanoseconds; keep six digits.
        put(20, 6, now.nanosecond().min(999_999_999) / 1000);
        for (at, b) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (26, b'Z')] {
            bytes[at] = b;
        }
        Timestamp { bytes }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

/// Log lines dropped since the last call (for the metrics counter): access lines and
/// INFO events.
pub fn newly_dropped_lines() -> u64 {
    let events = DROPPED.get().map_or(0, ErrorCounter::dropped_lines);
    let access = ACCESS.get().map_or(0, |(queue, _)| queue.dropped.load(Ordering::Relaxed));
    let total = events + access;
    let before = REPORTED.swap(total, Ordering::AcqRel);
    u64::try_from(total.saturating_sub(before)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt;

    use super::WithRequestId;

    /// Lines formatted by a subscriber like `init`'s, for `json` or the compact format.
    fn lines(json: bool, f: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let writer = move || Sink(sink.clone());
        let layer = fmt::layer().with_writer(writer).with_ansi(false);
        let subscriber = tracing_subscriber::registry();
        if json {
            let layer = layer.json().flatten_event(true).map_event_format(|f| WithRequestId { inner: f, json });
            tracing::subscriber::with_default(tracing_subscriber::layer::SubscriberExt::with(subscriber, layer), f);
        } else {
            let layer = layer.compact().map_event_format(|f| WithRequestId { inner: f, json });
            tracing::subscriber::with_default(tracing_subscriber::layer::SubscriberExt::with(subscriber, layer), f);
        }
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_access_timestamp_is_rfc3339_with_microseconds() {
        let before = chrono::Utc::now();
        let stamp = super::Timestamp::now();
        let parsed = chrono::DateTime::parse_from_rfc3339(stamp.as_str()).unwrap();
        assert_eq!(stamp.as_str().len(), 27);
        assert!(parsed >= before - chrono::Duration::microseconds(1), "{}", stamp.as_str());
        assert!(parsed <= chrono::Utc::now(), "{}", stamp.as_str());
    }

    #[test]
    fn an_event_inside_a_request_names_the_request() {
        let text = lines(true, || {
            tracing::warn!(reason = "x", "outside");
            crate::core::request_id::within("req-\"7", || tracing::warn!(reason = "y", "inside"));
        });
        let parsed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("request_id").is_none());
        assert_eq!((parsed[1]["message"].as_str(), parsed[1]["reason"].as_str()), (Some("inside"), Some("y")));
        assert_eq!(parsed[1]["request_id"], "req-\"7");

        let text = lines(false, || crate::core::request_id::within("req-8", || tracing::warn!("inside")));
        assert!(text.trim_end().ends_with("inside request_id=req-8"), "{text}");
    }
}
