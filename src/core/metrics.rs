//! Prometheus metrics: request counts and latencies by route and status, and the
//! service's own counters (logins, MFA results, outbox depth, job runs).

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MfaLabels {
    pub method: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

/// All metric families, registered once; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub logins: Family<ResultLabels, Counter>,
    pub mfa: Family<MfaLabels, Counter>,
    pub jobs: Family<JobLabels, Counter>,
    pub outbox_depth: Family<ChannelLabels, Gauge>,
    /// Breached-password checks by result (ok, breached, unavailable).
    pub breached_checks: Family<ResultLabels, Counter>,
    /// Access-log lines the log writer dropped (read from it at each scrape).
    pub log_lines_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        let logins = Family::<ResultLabels, Counter>::default();
        let mfa = Family::<MfaLabels, Counter>::default();
        let jobs = Family::<JobLabels, Counter>::default();
        let outbox_depth = Family::<ChannelLabels, Gauge>::default();
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        registry.register("logins", "Login attempts by result", logins.clone());
        registry.register(
            "mfa",
            "MFA steps by method and result (verified, failed, code_sent, rate_limited)",
            mfa.clone(),
        );
        registry.register("job_runs", "Background job runs by kind and status", jobs.clone());
        registry.register("outbox_depth", "Undelivered notifications by channel", outbox_depth.clone());
        let breached_checks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "breached_password_checks",
            "Breached-password checks by result (ok, breached, unavailable: failed open)",
            breached_checks.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Access-log lines dropped because the log writer fell behind (WARN and ERROR are never dropped)",
            log_lines_dropped.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            latency,
            logins,
            mfa,
            jobs,
            outbox_depth,
            breached_checks,
            log_lines_dropped,
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { method: method.to_owned(), route: route.to_owned(), status })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { method: method.to_owned(), route: route.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count(family: &Family<ResultLabels, Counter>, result: &str) {
        family.get_or_create(&ResultLabels { result: result.to_owned() }).inc();
    }

    /// One MFA step of `method` (`totp`, `backup_code`, `email`, `sms`) and its result.
    pub fn mfa(&self, method: &str, result: &str) {
        self.mfa.get_or_create(&MfaLabels { method: method.to_owned(), result: result.to_owned() }).inc();
    }

    pub fn job(&self, kind: &str, status: &str) {
        self.jobs.get_or_create(&JobLabels { kind: kind.to_owned(), status: status.to_owned() }).inc();
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        self.log_lines_dropped.inc_by(super::telemetry::newly_dropped_lines());
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
