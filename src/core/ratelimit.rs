//! Per-address limits on unauthenticated work that costs a hash or sends a message
//! (register, password reset, email resend, MFA send) or keeps a row (passkey sign-in
//! options): a token bucket per client address
//! (IPv6 per /64, as one host usually holds the whole /64) refilling over the hour.
//! Counted in this instance's memory, so N instances let an address through N times as
//! often; the limits that must hold across instances (per email, per user) live in
//! PostgreSQL next to the work they limit.

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use super::{AppError, AppResult, config::RateLimits};

/// The unauthenticated actions with a per-address budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Register,
    PasswordReset,
    EmailResend,
    MfaSend,
    PasskeyOptions,
    OidcStart,
}

/// Past this many tracked addresses, idle ones (a full bucket again) are forgotten.
const TIDY_ABOVE: usize = 10_000;

type Limiter = DefaultKeyedRateLimiter<IpAddr>;

pub struct AddressLimits {
    register: Option<Limiter>,
    password_reset: Option<Limiter>,
    email_resend: Option<Limiter>,
    mfa_send: Option<Limiter>,
    passkey_options: Option<Limiter>,
    oidc_start: Option<Limiter>,
    clock: DefaultClock,
}

fn per_hour(n: u32) -> Option<Limiter> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_hour(n)))
}

/// The key of an address: IPv4 (and IPv4-mapped IPv6) as is, other IPv6 by its /64.
pub fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl AddressLimits {
    pub fn new(limits: &RateLimits) -> Self {
        AddressLimits {
            register: per_hour(limits.register),
            password_reset: per_hour(limits.password_reset),
            email_resend: per_hour(limits.email_resend),
            mfa_send: per_hour(limits.mfa_send),
            passkey_options: per_hour(limits.passkey_options),
            oidc_start: per_hour(limits.oidc_start),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `ip`'s budget for `action`: 429 with `Retry-After` when it
    /// is spent. A request without an address (not over TCP) is not limited here.
    pub fn check(&self, action: Action, ip: Option<IpAddr>) -> AppResult<()> {
        let limiter = match action {
            Action::Register => &self.register,
            Action::PasswordReset => &self.password_reset,
            Action::EmailResend => &self.email_resend,
            Action::MfaSend => &self.mfa_send,
            Action::PasskeyOptions => &self.passkey_options,
            Action::OidcStart => &self.oidc_start,
        };
        let (Some(limiter), Some(ip)) = (limiter, ip) else {
            return Ok(());
        };
        let verdict = limiter.check_key(&bucket(ip));
        if limiter.len() > TIDY_ABOVE {
            limiter.retain_recent();
        }
        verdict.map_err(|not_until| AppError::RateLimited {
            retry_after_secs: not_until.wait_time_from(self.clock.now()).as_secs().max(1),
        })
    }
}

/// Requests per minute for each API key (`RATE_LIMIT_API_KEY_PER_MINUTE`), so a leaked or
/// runaway integration cannot take the service for itself. Per instance, like the above.
pub struct KeyLimits {
    per_key: Option<DefaultKeyedRateLimiter<uuid::Uuid>>,
    clock: DefaultClock,
}

impl KeyLimits {
    pub fn new(per_minute: u32) -> Self {
        KeyLimits {
            per_key: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `key`'s budget: 429 with `Retry-After` when it is spent.
    pub fn check(&self, key: uuid::Uuid) -> AppResult<()> {
        let Some(limiter) = &self.per_key else {
            return Ok(());
        };
        let verdict = limiter.check_key(&key);
        if limiter.len() > TIDY_ABOVE {
            limiter.retain_recent();
        }
        verdict.map_err(|not_until| AppError::RateLimited {
            retry_after_secs: not_until.wait_time_from(self.clock.now()).as_secs().max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn each_api_key_has_its_own_budget_per_minute() {
        let limits = KeyLimits::new(2);
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        limits.check(a).unwrap();
        limits.check(a).unwrap();
        assert!(matches!(limits.check(a), Err(AppError::RateLimited { .. })));
        limits.check(b).unwrap();
        let off = KeyLimits::new(0);
        for _ in 0..10 {
            off.check(a).unwrap();
        }
    }

    #[test]
    fn an_address_gets_its_budget_then_429_with_a_retry_time() {
        let limits = AddressLimits::new(&RateLimits { register: 3, ..RateLimits::default() });
        for _ in 0..3 {
            limits.check(Action::Register, ip("203.0.113.7")).unwrap();
        }
        match limits.check(Action::Register, ip("203.0.113.7")) {
            Err(AppError::RateLimited { retry_after_secs }) => assert!((1..=1200).contains(&retry_after_secs)),
            other => panic!("{other:?}"),
        }
        // Another address and another action have their own budgets.
        limits.check(Action::Register, ip("203.0.113.8")).unwrap();
        limits.check(Action::PasswordReset, ip("203.0.113.7")).unwrap();
    }

    #[test]
    fn ipv6_shares_a_budget_per_64_and_zero_turns_a_limit_off() {
        let limits = AddressLimits::new(&RateLimits { mfa_send: 1, register: 0, ..RateLimits::default() });
        limits.check(Action::MfaSend, ip("2001:db8:1:2::1")).unwrap();
        assert!(limits.check(Action::MfaSend, ip("2001:db8:1:2:ffff::9")).is_err());
        limits.check(Action::MfaSend, ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(bucket("::ffff:198.51.100.4".parse().unwrap()), "198.51.100.4".parse::<IpAddr>().unwrap());
        for _ in 0..100 {
            limits.check(Action::Register, ip("198.51.100.4")).unwrap();
        }
    }
}
