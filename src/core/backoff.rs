//! The pause of a background loop after failed passes: it doubles from the loop's own
//! period up to a ceiling while the failures last, and it logs the first failure and the
//! recovery, so a database outage of minutes is two lines rather than one per pass.

use std::time::Duration;

pub struct Backoff {
    what: &'static str,
    ceiling: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(what: &'static str, ceiling: Duration) -> Backoff {
        Backoff { what, ceiling, failures: 0 }
    }

    /// A failed pass: logs it when it is the first of a run of failures (later ones at
    /// debug) and returns the pause before the next, `period` doubled per failure.
    pub fn failed(&mut self, period: Duration, error: &dyn std::fmt::Display) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::error!(job = self.what, error = %error, "background pass failed; backing off until it succeeds");
        } else {
            tracing::debug!(job = self.what, error = %error, failures = self.failures, "background pass failed again");
        }
        let doubled = period.saturating_mul(2u32.saturating_pow(self.failures.min(16)));
        doubled.min(self.ceiling).max(period)
    }

    /// A pass that worked: logs the recovery after failures.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(job = self.what, failed_passes = self.failures, "background pass succeeded again");
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_to_the_ceiling_and_resets() {
        let mut b = Backoff::new("test", Duration::from_secs(30));
        let second = Duration::from_secs(1);
        let pauses: Vec<u64> = (0..7).map(|_| b.failed(second, &"down").as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 30, 30, 30]);
        b.succeeded();
        assert_eq!(b.failed(second, &"down"), Duration::from_secs(2));
        // A period longer than the ceiling is never shortened.
        assert_eq!(b.failed(Duration::from_secs(600), &"down"), Duration::from_secs(600));
    }
}
