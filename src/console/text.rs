//! The console's words, in one file (`templates/console/strings.json`) so that they can be
//! translated: templates read them as `t.<key>`, handlers through `t("key")`.

use std::collections::BTreeMap;

/// Every string of the console, by key (read once).
pub fn strings() -> &'static BTreeMap<String, String> {
    static STRINGS: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    STRINGS.get_or_init(|| {
        serde_json::from_str(include_str!("../../templates/console/strings.json")).unwrap_or_else(|e| {
            tracing::error!(error = %e, "templates/console/strings.json does not parse");
            BTreeMap::new()
        })
    })
}

/// The string `key` (the key itself when missing, which a test forbids).
pub fn t(key: &str) -> String {
    strings().get(key).cloned().unwrap_or_else(|| key.to_owned())
}

/// "Try again in N minutes." for a lockout or a rate limit.
pub fn try_again(retry_after_secs: u64) -> String {
    let minutes = retry_after_secs.div_ceil(60).max(1);
    t("try_again_in").replace("{minutes}", &minutes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strings_parse_and_every_key_used_in_rust_exists() {
        assert!(strings().len() > 50);
        let sources = [
            include_str!("mod.rs"),
            include_str!("sign_in.rs"),
            include_str!("signup.rs"),
            include_str!("account.rs"),
            include_str!("security.rs"),
            include_str!("devices.rs"),
            include_str!("data.rs"),
            include_str!("passkeys.rs"),
            include_str!("notifications.rs"),
            include_str!("social.rs"),
        ];
        for source in sources {
            // `t("key")` as a call of its own (not `get("…")`).
            for (at, _) in source.match_indices("t(\"") {
                let before = source[..at].chars().next_back().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' {
                    continue;
                }
                let rest = &source[at + 3..];
                let key = &rest[..rest.find('"').unwrap()];
                assert!(strings().contains_key(key), "missing console string {key:?}");
            }
        }
        // Keys the templates build from a value: an export's status, a method's name.
        for status in ["pending", "processing", "complete", "failed", "expired"] {
            assert!(strings().contains_key(&format!("export_{status}")), "export_{status}");
        }
        for method in ["totp", "backup_code", "email", "sms", "passkey"] {
            assert!(strings().contains_key(&format!("method_{method}")), "method_{method}");
        }
        for channel in ["email", "sms"] {
            assert!(
                strings().contains_key(&format!("code_sent_{channel}"))
                    && strings().contains_key(&format!("send_code_{channel}"))
            );
        }
        assert_eq!(try_again(61), "Too many attempts. Try again in 2 minutes.");
    }
}
