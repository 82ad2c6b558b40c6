//! Push through a provider chosen by PUSH_PROVIDER: `log` (development: the title goes to
//! the log) or `webhook` (PUSH_WEBHOOK_URL receives `POST {"user_id", "title", "body"}`,
//! as a push gateway or the app's own backend would).

use std::time::Duration;

use uuid::Uuid;

use crate::core::redact;

pub enum Push {
    Log,
    Webhook {
        client: reqwest::Client,
        url: String,
        /// `scheme://host:port` of the URL: all of it an error may show.
        origin: String,
    },
}

impl Push {
    pub fn webhook(url: &str) -> Result<Push, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("push webhook client: {}", redact::scrub(&e.to_string(), url)))?;
        Ok(Push::Webhook { client, url: url.to_owned(), origin: redact::origin(url) })
    }

    pub fn from_config(config: &crate::core::config::Config) -> Result<Push, String> {
        use crate::core::config::SmsProviderKind;
        match (&config.push_provider, &config.push_webhook_url) {
            (SmsProviderKind::Webhook, Some(url)) => Push::webhook(url.expose()),
            (SmsProviderKind::Webhook, None) => Err("PUSH_WEBHOOK_URL is required with PUSH_PROVIDER=webhook".into()),
            (SmsProviderKind::Log, _) => Ok(Push::Log),
        }
    }

    pub async fn send(&self, user_id: Uuid, title: &str, body: &str) -> Result<(), String> {
        match self {
            Push::Log => {
                tracing::info!(%user_id, title, "push (PUSH_PROVIDER=log)");
                Ok(())
            }
            Push::Webhook { client, url, origin } => {
                let payload = serde_json::json!({ "user_id": user_id, "title": title, "body": body });
                match client.post(url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("webhook {origin} answered {}", r.status())),
                    Err(e) => Err(format!(
                        "webhook {origin} unreachable: {}",
                        redact::scrub(&e.without_url().to_string(), url)
                    )),
                }
            }
        }
    }
}
