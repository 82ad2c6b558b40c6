//! One user's MFA policy (seed 002's accounts_mfasettings and accounts_mfamethodpreference,
//! which accounts reads and passes in): how long emailed and texted codes are and how long
//! they live, and per method the hourly budget, the wrong answers a challenge survives and
//! how long a method stays locked. The built-in numbers are the limits: a policy may only
//! tighten them, so no staff member can loosen another user's brute-force protection, and a
//! stored value outside them (a row written before this rule) is read as the built-in one.

use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, Utc};

use super::models::MfaMethod;

/// Digits of an emailed or texted code (built-in 6).
pub const CODE_LENGTHS: RangeInclusive<i32> = 6..=8;
/// Life of an emailed or texted code, in seconds (built-in 300).
pub const CODE_VALIDITY_SECONDS: RangeInclusive<i32> = 60..=900;
pub const BUILT_IN_CODE_LENGTH: i32 = 6;
pub const BUILT_IN_CODE_VALIDITY_SECONDS: i32 = 300;
/// Days a new staff account may read the admin API before it enrols MFA.
pub const GRACE_PERIOD_DAYS: RangeInclusive<i32> = 0..=90;
/// What a policy may set per method: at most the built-in 10 per hour and 3 attempts, at
/// least the built-in 30 minutes of lockout.
pub const RATE_LIMITS_PER_HOUR: RangeInclusive<i32> = 1..=10;
pub const MAX_ATTEMPTS: RangeInclusive<i32> = 1..=3;
pub const LOCKOUT_MINUTES: RangeInclusive<i32> = 30..=1440;

/// A method's limits. `per_hour`: codes sent per hour (email, sms) and, for every method,
/// wrong answers per hour before the method locks; `max_attempts`: wrong answers a
/// challenge (and a sent code) survives when answered with this method; `lockout_minutes`:
/// how long a method stays locked after the wrong answer that reached `per_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MethodLimits {
    /// 1..=10 (built-in 10).
    pub rate_limit_per_hour: i32,
    /// 1..=3 (built-in 3).
    pub max_attempts: i32,
    /// 30..=1440 (built-in 30).
    pub lockout_minutes: i32,
}

pub const BUILT_IN_LIMITS: MethodLimits =
    MethodLimits { rate_limit_per_hour: 10, max_attempts: 3, lockout_minutes: 30 };
const MAX_LOCKOUT_MINUTES: i32 = 1440;

impl MethodLimits {
    /// Which field loosens the built-in limit (or leaves the allowed range), if any.
    pub fn loosens(&self) -> Option<(&'static str, &'static str)> {
        if !(1..=BUILT_IN_LIMITS.rate_limit_per_hour).contains(&self.rate_limit_per_hour) {
            return Some((
                "rate_limit_per_hour",
                "must be 1 to 10 (the built-in limit is 10; a policy may only tighten it)",
            ));
        }
        if !(1..=BUILT_IN_LIMITS.max_attempts).contains(&self.max_attempts) {
            return Some(("max_attempts", "must be 1 to 3 (the built-in limit is 3; a policy may only tighten it)"));
        }
        if !(BUILT_IN_LIMITS.lockout_minutes..=MAX_LOCKOUT_MINUTES).contains(&self.lockout_minutes) {
            return Some((
                "lockout_minutes",
                "must be 30 to 1440 (the built-in lockout is 30; a policy may only lengthen it)",
            ));
        }
        None
    }

    /// The stored limits as enforced: a value looser than the built-in one is the built-in one.
    fn tightened(self) -> MethodLimits {
        MethodLimits {
            rate_limit_per_hour: self
                .rate_limit_per_hour
                .clamp(*RATE_LIMITS_PER_HOUR.start(), *RATE_LIMITS_PER_HOUR.end()),
            max_attempts: self.max_attempts.clamp(*MAX_ATTEMPTS.start(), *MAX_ATTEMPTS.end()),
            lockout_minutes: self.lockout_minutes.clamp(*LOCKOUT_MINUTES.start(), *LOCKOUT_MINUTES.end()),
        }
    }
}

/// Why `value` of the per-method limit `field` loosens the built-in limit (or leaves the
/// allowed range), if it does.
pub fn loosens(field: &str, value: Option<i32>) -> Option<&'static str> {
    let value = value?;
    match field {
        "rate_limit_per_hour" if !RATE_LIMITS_PER_HOUR.contains(&value) => {
            Some("must be 1 to 10 (the built-in limit is 10; a policy may only tighten it)")
        }
        "max_attempts" if !MAX_ATTEMPTS.contains(&value) => {
            Some("must be 1 to 3 (the built-in limit is 3; a policy may only tighten it)")
        }
        "lockout_minutes" if !LOCKOUT_MINUTES.contains(&value) => {
            Some("must be 30 to 1440 (the built-in lockout is 30 minutes; a policy may only lengthen it)")
        }
        _ => None,
    }
}

/// The policy that applies to one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub code_length: i32,
    pub code_validity_seconds: i32,
    methods: Vec<(MfaMethod, MethodLimits)>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            code_length: BUILT_IN_CODE_LENGTH,
            code_validity_seconds: BUILT_IN_CODE_VALIDITY_SECONDS,
            methods: Vec::new(),
        }
    }
}

impl Policy {
    /// The policy from stored values, each kept within its bounds.
    pub fn from_stored(code_length: i32, code_validity_seconds: i32, methods: Vec<(MfaMethod, MethodLimits)>) -> Self {
        Policy {
            code_length: code_length.clamp(*CODE_LENGTHS.start(), *CODE_LENGTHS.end()),
            code_validity_seconds: code_validity_seconds
                .clamp(*CODE_VALIDITY_SECONDS.start(), *CODE_VALIDITY_SECONDS.end()),
            methods: methods.into_iter().map(|(m, l)| (m, l.tightened())).collect(),
        }
    }

    pub fn limits(&self, method: MfaMethod) -> MethodLimits {
        self.methods.iter().find(|(m, _)| *m == method).map_or(BUILT_IN_LIMITS, |(_, l)| *l)
    }

    pub fn code_ttl(&self) -> Duration {
        Duration::seconds(i64::from(self.code_validity_seconds))
    }
}

/// Until when a method is locked, given the times of its wrong answers (oldest first): it
/// locks when `rate_limit_per_hour` of them fall within one hour, for `lockout_minutes`
/// after the one that reached the count.
pub fn locked_until(failures: &[DateTime<Utc>], limits: MethodLimits, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let n = usize::try_from(limits.rate_limit_per_hour).ok().filter(|n| *n > 0)?;
    let lockout = Duration::minutes(i64::from(limits.lockout_minutes));
    failures
        .windows(n)
        .filter(|w| w[n - 1] - w[0] < Duration::hours(1))
        .map(|w| w[n - 1] + lockout)
        .max()
        .filter(|until| *until > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tighter_limits_pass() {
        assert_eq!(BUILT_IN_LIMITS.loosens(), None);
        let tight = MethodLimits { rate_limit_per_hour: 3, max_attempts: 1, lockout_minutes: 120 };
        assert_eq!(tight.loosens(), None);
        for (loose, field) in [
            (MethodLimits { rate_limit_per_hour: 11, ..tight }, "rate_limit_per_hour"),
            (MethodLimits { rate_limit_per_hour: 0, ..tight }, "rate_limit_per_hour"),
            (MethodLimits { max_attempts: 4, ..tight }, "max_attempts"),
            (MethodLimits { lockout_minutes: 29, ..tight }, "lockout_minutes"),
            (MethodLimits { lockout_minutes: 1441, ..tight }, "lockout_minutes"),
        ] {
            assert_eq!(loose.loosens().map(|(f, _)| f), Some(field));
        }
    }

    #[test]
    fn stored_values_never_loosen() {
        let loose = MethodLimits { rate_limit_per_hour: 50, max_attempts: 9, lockout_minutes: 0 };
        let policy = Policy::from_stored(12, 5, vec![(MfaMethod::Totp, loose)]);
        assert_eq!((policy.code_length, policy.code_validity_seconds), (8, 60));
        assert_eq!(policy.limits(MfaMethod::Totp), BUILT_IN_LIMITS);
        assert_eq!(policy.limits(MfaMethod::Sms), BUILT_IN_LIMITS);
    }

    #[test]
    fn a_method_locks_when_its_hourly_failures_are_reached() {
        let now = Utc::now();
        let limits = MethodLimits { rate_limit_per_hour: 3, max_attempts: 3, lockout_minutes: 60 };
        let at = |mins: i64| now - Duration::minutes(mins);
        // Three within the hour, the last 10 minutes ago: locked for 50 more minutes.
        assert_eq!(locked_until(&[at(40), at(20), at(10)], limits, now), Some(at(10) + Duration::minutes(60)));
        // Three spread over more than an hour: never reached.
        assert_eq!(locked_until(&[at(100), at(50), at(10)], limits, now), None);
        // Reached, but the lockout has run out.
        assert_eq!(locked_until(&[at(95), at(92), at(90)], limits, now), None);
        assert_eq!(locked_until(&[at(2), at(1)], limits, now), None);
    }
}
