//! SMS providers behind one trait: `log` (development: the message goes to the log and is
//! recorded as sent, cost 0) and `webhook` (POST `{"to", "message"}` to SMS_WEBHOOK_URL;
//! a non-2xx answer, a timeout or a refused connection is a failure that is retried).

use std::{future::Future, time::Duration};

use rust_decimal::Decimal;

use crate::core::redact;

/// How one SMS attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsOutcome {
    Sent { message_id: Option<String>, cost: Option<Decimal> },
    Failed { error: String },
}

pub trait SmsProvider: Send + Sync {
    /// Recorded in `notifications_smsnotification.provider`.
    fn name(&self) -> &'static str;
    fn send(&self, to: &str, message: &str) -> impl Future<Output = SmsOutcome> + Send;
}

pub struct LogSms;

impl SmsProvider for LogSms {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&self, to: &str, message: &str) -> SmsOutcome {
        // A log is no place for a code: development sees the message with its code masked.
        let message = super::templates::mask_codes(message);
        tracing::info!(%to, %message, "sms (log provider)");
        SmsOutcome::Sent { message_id: None, cost: Some(Decimal::ZERO) }
    }
}

pub struct WebhookSms {
    client: reqwest::Client,
    url: String,
    /// `scheme://host:port` of the URL: all of it an error may show.
    origin: String,
}

impl WebhookSms {
    pub fn new(url: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // A redirect would carry the request (and the code in it) somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("SMS webhook client: {}", redact::scrub(&e.to_string(), url)))?;
        Ok(WebhookSms { client, url: url.to_owned(), origin: redact::origin(url) })
    }

    /// A transport error as logs and rows may hold it: reqwest's text names the URL, with
    /// whatever secret its path or query carries, so the URL goes and the origin stays.
    fn failure(&self, e: reqwest::Error) -> String {
        let detail = redact::scrub(&e.without_url().to_string(), &self.url);
        format!("webhook {} unreachable: {detail}", self.origin)
    }
}

/// What a webhook may answer; both fields are optional.
#[derive(serde::Deserialize, Default)]
struct WebhookAnswer {
    id: Option<serde_json::Value>,
    cost: Option<Decimal>,
}

impl SmsProvider for WebhookSms {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, to: &str, message: &str) -> SmsOutcome {
        let response =
            self.client.post(&self.url).json(&serde_json::json!({ "to": to, "message": message })).send().await;
        match response {
            Ok(r) if r.status().is_success() => {
                let answer: WebhookAnswer = r.json().await.unwrap_or_default();
                let message_id = answer.id.map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
                SmsOutcome::Sent { message_id, cost: answer.cost }
            }
            Ok(r) => SmsOutcome::Failed { error: format!("webhook {} answered {}", self.origin, r.status()) },
            Err(e) => SmsOutcome::Failed { error: self.failure(e) },
        }
    }
}

/// The provider chosen by SMS_PROVIDER.
pub enum AnySms {
    Log(LogSms),
    Webhook(WebhookSms),
}

impl AnySms {
    pub fn from_config(config: &crate::core::config::Config) -> Result<Self, String> {
        use crate::core::config::SmsProviderKind;
        match (&config.sms_provider, &config.sms_webhook_url) {
            (SmsProviderKind::Webhook, Some(url)) => Ok(AnySms::Webhook(WebhookSms::new(url.expose())?)),
            (SmsProviderKind::Webhook, None) => Err("SMS_WEBHOOK_URL is required with SMS_PROVIDER=webhook".into()),
            (SmsProviderKind::Log, _) => Ok(AnySms::Log(LogSms)),
        }
    }
}

impl SmsProvider for AnySms {
    fn name(&self) -> &'static str {
        match self {
            AnySms::Log(p) => p.name(),
            AnySms::Webhook(p) => p.name(),
        }
    }

    async fn send(&self, to: &str, message: &str) -> SmsOutcome {
        match self {
            AnySms::Log(p) => p.send(to, message).await,
            AnySms::Webhook(p) => p.send(to, message).await,
        }
    }
}
