//! Logging: JSON lines in production, pretty in development; RUST_LOG filters.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use super::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_current_span(true)).try_init(),
        // Colour only on a terminal: a log file or a pipe gets plain text.
        LogFormat::Pretty => {
            registry.with(fmt::layer().compact().with_ansi(std::io::stdout().is_terminal())).try_init()
        }
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
}
