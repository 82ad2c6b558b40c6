//! The risk of one login, 0-100, from what is known when the password has been checked.
//! One pure function (`assess`), so every weight is in one place and table-tested;
//! docs/risk.md explains each signal. The facts come from `repo::attempts::login_facts` (one round
//! trip, before the hash) and the client's headers.

use chrono::{DateTime, Utc};

use crate::audit_log::RiskLevel;

/// Faster than this between two logins is not travel but two places at once (an airliner
/// cruises at ~900 km/h).
pub const IMPOSSIBLE_KMH: f64 = 900.0;
/// Failures of the identifier within the lockout window that make a login suspect.
pub const MANY_FAILURES: i64 = 3;

/// What is known about a login. `None` where there is no baseline (a first login, or no
/// coordinates on either side): an unknown is not a signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// The user has never logged in from this device.
    pub new_device: bool,
    /// A country the user's sessions have never come from (Some only with a history).
    pub new_country: bool,
    /// An address range (/16, IPv6 /48) the user's sessions have never come from.
    pub new_ip_range: bool,
    /// The previous login's place and time, and this login's place and time.
    pub travel: Option<Travel>,
    /// Failures of this identifier within the lockout window.
    pub recent_failures: i64,
    /// The device was marked compromised by its owner.
    pub compromised_device: bool,
    /// The user agent is a crawler or a script.
    pub bot: bool,
    /// A device trusted to skip MFA signs in from a country it never signed in from: its
    /// trust does not travel (the second factor comes back).
    pub trusted_device_new_country: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    pub from: (f64, f64),
    pub from_at: DateTime<Utc>,
    pub to: (f64, f64),
    pub to_at: DateTime<Utc>,
}

/// The score, its level and the reasons, in the order of the weights below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub score: i32,
    pub level: RiskLevel,
    pub reasons: Vec<&'static str>,
}

impl Assessment {
    /// Medium or above, with the reasons recorded on the audit rows.
    pub fn is_anomalous(&self) -> bool {
        self.level != RiskLevel::Low
    }

    /// High risk forces a second factor on users who have one, even on a trusted device,
    /// and marks the session suspicious.
    pub fn is_high(&self) -> bool {
        matches!(self.level, RiskLevel::High | RiskLevel::Critical)
    }
}

impl Assessment {
    /// An assessment read back from where it was recorded (a challenge's metadata); names
    /// that are not signals are dropped.
    pub fn recorded(score: i32, reasons: &[String]) -> Assessment {
        let score = score.clamp(0, 100);
        let reasons = WEIGHTS.iter().map(|(name, _)| *name).filter(|n| reasons.iter().any(|r| r == n)).collect();
        Assessment { score, level: RiskLevel::from_score(score), reasons }
    }
}

/// Each signal's weight; the score is their sum, capped at 100.
const WEIGHTS: [(&str, i32); 8] = [
    ("compromised_device", 80),
    ("trusted_device_new_country", 50),
    ("impossible_travel", 55),
    ("new_country", 30),
    ("bot_user_agent", 30),
    ("many_failures", 20),
    ("new_device", 15),
    ("new_ip_range", 10),
];

pub fn assess(s: &Signals) -> Assessment {
    let fired = |name: &str| match name {
        "compromised_device" => s.compromised_device,
        "trusted_device_new_country" => s.trusted_device_new_country,
        "impossible_travel" => s.travel.is_some_and(|t| speed_kmh(&t) > IMPOSSIBLE_KMH),
        "new_country" => s.new_country,
        "bot_user_agent" => s.bot,
        "many_failures" => s.recent_failures >= MANY_FAILURES,
        "new_device" => s.new_device,
        "new_ip_range" => s.new_ip_range,
        _ => false,
    };
    let mut score = 0;
    let mut reasons = Vec::new();
    for (name, weight) in WEIGHTS {
        if fired(name) {
            score += weight;
            reasons.push(name);
        }
    }
    let score = score.min(100);
    Assessment { score, level: RiskLevel::from_score(score), reasons }
}

/// Great-circle distance in km (haversine, mean earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// The speed the move implies; a minute at least, so clock skew does not divide by zero.
pub fn speed_kmh(t: &Travel) -> f64 {
    let hours = ((t.to_at - t.from_at).num_seconds().max(60)) as f64 / 3600.0;
    distance_km(t.from, t.to) / hours
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    const PARIS: (f64, f64) = (48.8566, 2.3522);
    const SYDNEY: (f64, f64) = (-33.8688, 151.2093);
    const LYON: (f64, f64) = (45.764, 4.8357);

    fn travel(to: (f64, f64), minutes: i64) -> Option<Travel> {
        let from_at = Utc::now() - Duration::minutes(minutes);
        Some(Travel { from: PARIS, from_at, to, to_at: Utc::now() })
    }

    #[test]
    fn distances_are_great_circle() {
        assert!((distance_km(PARIS, SYDNEY) - 16_960.0).abs() < 50.0, "{}", distance_km(PARIS, SYDNEY));
        assert!((distance_km(PARIS, LYON) - 392.0).abs() < 5.0);
        assert_eq!(distance_km(PARIS, PARIS), 0.0);
    }

    #[test]
    fn every_signal_has_its_weight_and_level() {
        let none = Signals::default();
        let cases: Vec<(&str, Signals, i32, RiskLevel, Vec<&str>)> = vec![
            ("nothing new", none.clone(), 0, RiskLevel::Low, vec![]),
            ("new device", Signals { new_device: true, ..none.clone() }, 15, RiskLevel::Low, vec!["new_device"]),
            ("new range", Signals { new_ip_range: true, ..none.clone() }, 10, RiskLevel::Low, vec!["new_ip_range"]),
            ("new country", Signals { new_country: true, ..none.clone() }, 30, RiskLevel::Medium, vec!["new_country"]),
            ("bot", Signals { bot: true, ..none.clone() }, 30, RiskLevel::Medium, vec!["bot_user_agent"]),
            ("two failures", Signals { recent_failures: 2, ..none.clone() }, 0, RiskLevel::Low, vec![]),
            (
                "three failures",
                Signals { recent_failures: 3, ..none.clone() },
                20,
                RiskLevel::Low,
                vec!["many_failures"],
            ),
            (
                "Paris to Sydney in 10 minutes",
                Signals { travel: travel(SYDNEY, 10), ..none.clone() },
                55,
                RiskLevel::High,
                vec!["impossible_travel"],
            ),
            (
                "Paris to Lyon in 2 hours",
                Signals { travel: travel(LYON, 120), ..none.clone() },
                0,
                RiskLevel::Low,
                vec![],
            ),
            (
                "Paris to Lyon in 10 minutes",
                Signals { travel: travel(LYON, 10), ..none.clone() },
                55,
                RiskLevel::High,
                vec!["impossible_travel"],
            ),
            (
                "compromised",
                Signals { compromised_device: true, ..none.clone() },
                80,
                RiskLevel::Critical,
                vec!["compromised_device"],
            ),
            (
                "a trusted device abroad",
                Signals { trusted_device_new_country: true, ..none.clone() },
                50,
                RiskLevel::High,
                vec!["trusted_device_new_country"],
            ),
            (
                "everything, capped",
                Signals {
                    new_device: true,
                    new_country: true,
                    new_ip_range: true,
                    travel: travel(SYDNEY, 1),
                    recent_failures: 9,
                    compromised_device: true,
                    bot: true,
                    trusted_device_new_country: true,
                },
                100,
                RiskLevel::Critical,
                vec![
                    "compromised_device",
                    "trusted_device_new_country",
                    "impossible_travel",
                    "new_country",
                    "bot_user_agent",
                    "many_failures",
                    "new_device",
                    "new_ip_range",
                ],
            ),
        ];
        for (name, signals, score, level, reasons) in cases {
            let a = assess(&signals);
            assert_eq!((a.score, a.level, a.reasons), (score, level, reasons), "{name}");
        }
    }

    #[test]
    fn clock_skew_does_not_divide_by_zero() {
        let now = Utc::now();
        let t = Travel { from: PARIS, from_at: now, to: SYDNEY, to_at: now - Duration::seconds(5) };
        assert!(speed_kmh(&t).is_finite() && speed_kmh(&t) > IMPOSSIBLE_KMH);
    }
}
