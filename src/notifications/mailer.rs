//! Email transports: SMTP through lettre, or the console (development without SMTP_URL).

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};

use super::models::{ClaimedEmail, Outcome};
use crate::core::redact;

#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        /// SMTP_URL, kept to scrub it (its password) out of transport errors.
        url: std::sync::Arc<str>,
    },
    /// Writes messages to the log and records them as delivered (Django's console backend).
    Console,
}

impl Mailer {
    /// SMTP when `smtp_url` is given (e.g. `smtp://127.0.0.1:1025`), else the console.
    pub fn new(smtp_url: Option<&str>, from: &str) -> Result<Self, String> {
        let Some(url) = smtp_url else { return Ok(Mailer::Console) };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("SMTP_URL {}: {}", redact::origin(url), redact::scrub(&e.to_string(), url)))?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = from.parse().map_err(|e| format!("EMAIL_FROM: {e}"))?;
        Ok(Mailer::Smtp { transport, from, url: url.into() })
    }

    pub fn provider(&self) -> &'static str {
        match self {
            Mailer::Smtp { .. } => "smtp",
            Mailer::Console => "console",
        }
    }

    pub async fn send(&self, email: &ClaimedEmail) -> Outcome {
        match self {
            Mailer::Console => {
                // Codes are masked; links stay readable, since development signs up through them.
                let body = super::templates::mask_codes(&email.body);
                tracing::info!(to = %email.to_email, subject = %email.subject, %body, "email (console)");
                Outcome::Sent { provider: "console", message_id: None }
            }
            Mailer::Smtp { transport, from, url } => {
                let message = match build(email, from) {
                    Ok(m) => m,
                    Err(error) => return Outcome::Failed { error },
                };
                let message_id = message.headers().get_raw("Message-ID").map(str::to_owned);
                match transport.send(message).await {
                    Ok(_) => Outcome::Sent { provider: "smtp", message_id },
                    Err(e) => Outcome::Failed {
                        error: format!("smtp {}: {}", redact::origin(url), redact::scrub(&e.to_string(), url)),
                    },
                }
            }
        }
    }
}

/// The message, its `Message-ID` made from the outbox id: a send cut off mid-exchange is
/// retried with the same id, so a receiver that got the first copy can drop the second.
fn build(email: &ClaimedEmail, from: &Mailbox) -> Result<Message, String> {
    let to: Mailbox = email.to_email.parse().map_err(|e| format!("bad recipient: {e}"))?;
    let message_id = format!("<{}@{}>", email.id, from.email.domain());
    let builder = Message::builder().from(from.clone()).to(to).subject(&email.subject).message_id(Some(message_id));
    let result = match &email.html_body {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(email.body.clone(), html.clone())),
        None => builder.body(email.body.clone()),
    };
    result.map_err(|e| e.to_string())
}
