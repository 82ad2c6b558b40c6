//! Email templates (templates/email/<type>.txt and .html), compiled into the binary.

use minijinja::{Environment, Value};

use super::models::NotificationType;

macro_rules! template_pair {
    ($env:ident, $name:literal) => {
        $env.add_template(concat!($name, ".txt"), include_str!(concat!("../../templates/email/", $name, ".txt")))?;
        $env.add_template(concat!($name, ".html"), include_str!(concat!("../../templates/email/", $name, ".html")))?;
    };
}

fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // HTML templates escape their values; text ones must not.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") { minijinja::AutoEscape::Html } else { minijinja::AutoEscape::None }
    });
    template_pair!(env, "email_verification");
    template_pair!(env, "password_reset");
    template_pair!(env, "magic_link");
    template_pair!(env, "mfa_code");
    template_pair!(env, "token_reused");
    template_pair!(env, "password_changed");
    template_pair!(env, "mfa_disabled");
    template_pair!(env, "new_device");
    template_pair!(env, "device_compromised");
    template_pair!(env, "marketing");
    template_pair!(env, "backup_codes_low");
    template_pair!(env, "api_key_created");
    template_pair!(env, "email_change");
    template_pair!(env, "email_change_requested");
    template_pair!(env, "mfa_change_decided");
    template_pair!(env, "device_trusted");
    template_pair!(env, "mfa_method_added");
    template_pair!(env, "mfa_method_removed");
    template_pair!(env, "identity_linked");
    template_pair!(env, "identity_unlinked");
    template_pair!(env, "digest");
    template_pair!(env, "signed_out_everywhere");
    template_pair!(env, "email_changed");
    template_pair!(env, "email_change_undone");
    template_pair!(env, "email_change_reverted");
    template_pair!(env, "api_key_expiring");
    template_pair!(env, "export_requested");
    // What a remediation ended and what it kept, shared by the notices that list them.
    template_pair!(env, "_grants");
    env.add_template("sms/mfa_code.txt", include_str!("../../templates/sms/mfa_code.txt"))?;
    env.add_template("sms/password_changed.txt", include_str!("../../templates/sms/password_changed.txt"))?;
    env.add_template("sms/marketing.txt", include_str!("../../templates/sms/marketing.txt"))?;
    Ok(env)
}

/// Types with an SMS template.
pub fn has_sms(kind: NotificationType) -> bool {
    matches!(kind, NotificationType::MfaCode | NotificationType::PasswordChanged | NotificationType::Marketing)
}

/// A rendered email: subject, text part, HTML part.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn env() -> Result<&'static Environment<'static>, minijinja::Error> {
    static ENV: std::sync::OnceLock<Result<Environment<'static>, String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| environment().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::TemplateNotFound, e.clone()))
}

/// Renders the SMS text of `kind` with `context`.
pub fn render_sms(kind: NotificationType, context: Value) -> Result<String, minijinja::Error> {
    Ok(env()?.get_template(&format!("sms/{}.txt", kind.as_str()))?.render(&context)?.trim().to_owned())
}

/// Renders the template pair of `kind` with `context`.
pub fn render(kind: NotificationType, context: Value) -> Result<Rendered, minijinja::Error> {
    let env = env()?;
    let name = kind.as_str();
    Ok(Rendered {
        subject: kind.subject().to_owned(),
        text: env.get_template(&format!("{name}.txt"))?.render(&context)?,
        html: env.get_template(&format!("{name}.html"))?.render(&context)?,
    })
}

/// A message as a log may show it: every 6-digit number (the only place a code appears,
/// API.md) replaced by `******`.
pub fn mask_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        out.push_str(if digits.len() == 6 { "******" } else { digits.as_str() });
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_masked_for_logs() {
        assert_eq!(mask_codes("Your code: 482913. Valid 5 minutes."), "Your code: ******. Valid 5 minutes.");
        assert_eq!(mask_codes("2026-12-01 1234567 482913"), "2026-12-01 1234567 ******");
    }

    #[test]
    fn every_type_renders_both_parts() {
        for kind in NotificationType::ALL {
            let r = render(
                *kind,
                minijinja::context! { username => "ann", link => "http://x/y?token=t", code => "123456", minutes => 5 },
            )
            .unwrap();
            assert!(!r.text.is_empty() && !r.html.is_empty() && !r.subject.is_empty());
        }
    }

    #[test]
    fn html_escapes_values() {
        let r = render(NotificationType::TokenReused, minijinja::context! { username => "<b>x</b>" }).unwrap();
        assert!(r.html.contains("&lt;b&gt;"));
        assert!(r.text.contains("<b>x</b>"));
    }
}
