//! The mails keygate sends, rendered from templates (a text and an HTML part each) with the
//! tenant's display name and branding (logo, main colour), and the one way they go out:
//! [`IdentityService::send_later`], which keeps each recipient within its mail budget.

use super::mailer::Email;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService};
use keygate_core::crypto::sha256;
use minijinja::{Environment, context};
use std::sync::LazyLock;

/// One mail keygate sends, with what its template needs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Mail<'a> {
    /// Confirm an address: the link and the code it carries.
    Verify {
        /// The page that spends the code.
        link: &'a str,
        /// The one-time code.
        code: &'a str,
    },
    /// Reset a password.
    Reset {
        /// The page that spends the code.
        link: &'a str,
        /// The one-time code.
        code: &'a str,
    },
    /// Join an invite-only tenant.
    Invite {
        /// The sign-up page with the invite.
        link: &'a str,
        /// The one-time code.
        code: &'a str,
    },
    /// Unlock an account locked by failed sign-ins.
    Unlock {
        /// The page that spends the code.
        link: &'a str,
        /// The one-time code.
        code: &'a str,
    },
    /// Someone signed up with an address that already has an account.
    RegistrationAttempt,
    /// A reused refresh token ended a session.
    SessionEnded,
    /// The account's security settings changed (the person is told, so a change they did
    /// not make does not go unnoticed).
    SecurityAlert(SecurityChange),
}

/// A change to an account's security that its owner is told about by mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityChange {
    /// A second factor (an authenticator app) was added.
    FactorAdded,
    /// A second factor (an authenticator app, security key or passkey) was removed.
    FactorRemoved,
    /// A passkey or security key was registered.
    PasskeyAdded,
    /// A new set of backup codes replaced the old one.
    BackupCodesRegenerated,
    /// The password was changed.
    PasswordChanged,
    /// A sign-in through an upstream identity provider was unlinked.
    IdentityUnlinked,
}

impl SecurityChange {
    /// A stable short name (the mail budget's bucket, so one change's alerts cannot use up
    /// another's).
    fn label(self) -> &'static str {
        match self {
            Self::FactorAdded => "factor-added",
            Self::FactorRemoved => "factor-removed",
            Self::PasskeyAdded => "passkey-added",
            Self::BackupCodesRegenerated => "backup-codes",
            Self::PasswordChanged => "password-changed",
            Self::IdentityUnlinked => "identity-unlinked",
        }
    }

    /// What happened, as the mail's subject says it.
    fn subject(self) -> &'static str {
        match self {
            Self::FactorAdded => "an authenticator app was added to your account",
            Self::FactorRemoved => "a second factor was removed from your account",
            Self::PasskeyAdded => "a passkey or security key was added to your account",
            Self::BackupCodesRegenerated => "new backup codes were created for your account",
            Self::PasswordChanged => "your password was changed",
            Self::IdentityUnlinked => "a linked sign-in was removed from your account",
        }
    }
}

impl Mail<'_> {
    /// The template name (without extension) and the subject after the tenant's name.
    fn parts(&self) -> (&'static str, &'static str) {
        match self {
            Self::Verify { .. } => ("verify", "confirm your email address"),
            Self::Reset { .. } => ("reset", "reset your password"),
            Self::Invite { .. } => ("invite", "you are invited"),
            Self::Unlock { .. } => ("unlock", "unlock your account"),
            Self::RegistrationAttempt => (
                "registration_attempt",
                "someone tried to register with your address",
            ),
            Self::SessionEnded => ("session_ended", "a session was ended for your safety"),
            Self::SecurityAlert(change) => ("security_alert", change.subject()),
        }
    }

    fn link_and_code(&self) -> (&str, &str) {
        match self {
            Self::Verify { link, code }
            | Self::Reset { link, code }
            | Self::Invite { link, code }
            | Self::Unlock { link, code } => (link, code),
            Self::RegistrationAttempt | Self::SessionEnded | Self::SecurityAlert(_) => ("", ""),
        }
    }
}

/// The templates compiled into the binary; `.html` ones are auto-escaped by minijinja.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("layout.html", include_str!("mail/layout.html")),
        ("link.html", include_str!("mail/link.html")),
        ("verify.html", include_str!("mail/verify.html")),
        ("verify.txt", include_str!("mail/verify.txt")),
        ("reset.html", include_str!("mail/reset.html")),
        ("reset.txt", include_str!("mail/reset.txt")),
        ("invite.html", include_str!("mail/invite.html")),
        ("invite.txt", include_str!("mail/invite.txt")),
        ("unlock.html", include_str!("mail/unlock.html")),
        ("unlock.txt", include_str!("mail/unlock.txt")),
        (
            "registration_attempt.html",
            include_str!("mail/registration_attempt.html"),
        ),
        (
            "registration_attempt.txt",
            include_str!("mail/registration_attempt.txt"),
        ),
        (
            "session_ended.html",
            include_str!("mail/session_ended.html"),
        ),
        ("session_ended.txt", include_str!("mail/session_ended.txt")),
        (
            "security_alert.html",
            include_str!("mail/security_alert.html"),
        ),
        (
            "security_alert.txt",
            include_str!("mail/security_alert.txt"),
        ),
    ] {
        if let Err(e) = env.add_template(name, source) {
            // Covered by the unit tests below; a broken template fails the mail, logged.
            tracing::error!(template = name, error = %e, "mail template does not compile");
        }
    }
    env
});

/// Renders `mail` to `to` for tenant `t`.
pub(super) fn render(t: &LiveTenant, to: &str, mail: Mail<'_>) -> Result<Email, IdentityError> {
    let (name, subject_tail) = mail.parts();
    let (link, code) = mail.link_and_code();
    let branding = &t.settings.branding;
    // Only an https logo: mail clients fetch it, and a plain-http image is mixed content.
    let logo_url = branding
        .logo_url
        .as_deref()
        .filter(|u| u.starts_with("https://"));
    let primary = branding
        .primary_color
        .as_deref()
        .filter(|c| {
            c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .unwrap_or("#1f6feb");
    // One line, whatever the display name holds, so it cannot add headers.
    let tenant_name: String = t
        .row
        .display_name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let subject = format!("{tenant_name}: {subject_tail}");
    let account_url = format!("{}/account", t.issuer);
    let change = subject_tail;
    let ctx = context! { tenant_name, logo_url, primary, link, code, subject, change, account_url };
    let part = |ext: &str| {
        TEMPLATES
            .get_template(&format!("{name}.{ext}"))
            .and_then(|tpl| tpl.render(&ctx))
            .map_err(|e| IdentityError::Internal(format!("mail template {name}.{ext}: {e}")))
    };
    Ok(Email {
        to: to.to_owned(),
        subject,
        body: part("txt")?,
        html: part("html")?,
    })
}

impl IdentityService {
    /// Whether this installation can send mail at all; flows that hand out a link by mail
    /// refuse with [`IdentityError::MailUnavailable`] when it cannot, instead of answering
    /// as if a link went out.
    pub(super) fn require_mail(&self) -> Result<(), IdentityError> {
        if self.deps().mailer.can_send() {
            Ok(())
        } else {
            Err(IdentityError::MailUnavailable)
        }
    }

    /// Renders `mail` and sends it in the background, so timing does not tell whether one
    /// was sent. Each recipient gets at most `limits.emails_per_address` mails of each kind
    /// per window; the rest are dropped (logged without address or content). Budgets are per
    /// kind so that a stranger's sign-ups with an address cannot use up the mails its owner
    /// needs (a reset link).
    pub(super) fn send_later(&self, t: &LiveTenant, to: &str, mail: Mail<'_>) {
        let bucket = match mail {
            Mail::SecurityAlert(change) => format!("mail-to-alert-{}", change.label()),
            _ => format!("mail-to-{}", mail.parts().0),
        };
        let email = match render(t, to, mail) {
            Ok(email) => email,
            Err(e) => {
                tracing::error!(error = %e, "email not rendered");
                return;
            }
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let service = self.clone();
        let key = recipient_key(t, to);
        handle.spawn(async move {
            let d = service.deps();
            if !d.mailer.can_send() {
                tracing::debug!("email not sent: no mail transport is configured");
                return;
            }
            // Fails closed: when the budget cannot be read, nothing is sent.
            if let Err(e) = service
                .limit(&bucket, &key, d.limits.emails_per_address)
                .await
            {
                tracing::info!(reason = %e, "email to a recipient over its mail budget not sent");
                return;
            }
            if let Err(e) = d.mailer.send(email).await {
                tracing::warn!(error = %e, "email not sent");
            }
        });
    }
}

impl IdentityService {
    /// Tells the account's owner, by mail, that its security settings changed.
    pub(super) fn alert(&self, t: &LiveTenant, to: &str, change: SecurityChange) {
        self.send_later(t, to, Mail::SecurityAlert(change));
    }
}

/// Rate-limit key of a recipient within a tenant, without the address itself.
pub(super) fn recipient_key(t: &LiveTenant, email: &str) -> String {
    format!(
        "{}:{}",
        t.row.id,
        super::hex(&sha256(email.to_lowercase().as_bytes())[..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::store::Tenant;

    fn tenant(display_name: &str, branding: serde_json::Value) -> LiveTenant {
        let settings = serde_json::from_value(serde_json::json!({ "branding": branding })).unwrap();
        let row = Tenant {
            id: keygate_core::ids::TenantId::new(),
            name: "acme".into(),
            namespace: "default".into(),
            owner_uid: "uid".into(),
            display_name: display_name.into(),
            settings,
            deletion_policy: Default::default(),
            disabled: false,
            generation: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        LiveTenant::new(row, "https://id.example")
    }

    #[test]
    fn every_mail_renders_with_the_tenant_name_and_logo() {
        let t = tenant(
            "Acme <Corp>",
            serde_json::json!({"logoUrl": "https://acme.example/logo.png", "primaryColor": "#112233"}),
        );
        let link = "https://id.example/t/acme/reset-password?token=abc&x=1";
        for mail in [
            Mail::Verify { link, code: "abc" },
            Mail::Reset { link, code: "abc" },
            Mail::Invite { link, code: "abc" },
            Mail::Unlock { link, code: "abc" },
            Mail::RegistrationAttempt,
            Mail::SessionEnded,
            Mail::SecurityAlert(SecurityChange::PasswordChanged),
        ] {
            let e = render(&t, "ada@example.com", mail).unwrap();
            assert!(e.subject.starts_with("Acme <Corp>: "), "{}", e.subject);
            assert!(e.body.contains("Acme <Corp>"), "{mail:?}: {}", e.body);
            assert!(e.html.contains("Acme &lt;Corp&gt;"), "{mail:?}: {}", e.html);
            assert!(!e.html.contains("<Corp>"), "escaped: {}", e.html);
            assert!(
                e.html
                    .contains("src=\"https:&#x2f;&#x2f;acme.example&#x2f;logo.png\""),
                "{}",
                e.html
            );
            if matches!(
                mail,
                Mail::Reset { .. }
                    | Mail::Verify { .. }
                    | Mail::Invite { .. }
                    | Mail::Unlock { .. }
            ) {
                assert!(
                    e.body.contains(link),
                    "the text link is not escaped: {}",
                    e.body
                );
                assert!(e.html.contains("#112233"), "{}", e.html);
            }
        }
    }

    #[test]
    fn a_plain_http_logo_and_control_characters_are_left_out() {
        let t = tenant(
            "Evil\r\nBcc: x@y",
            serde_json::json!({"logoUrl": "http://acme.example/l.png"}),
        );
        let e = render(&t, "ada@example.com", Mail::SessionEnded).unwrap();
        assert!(!e.subject.contains('\n') && !e.subject.contains('\r'));
        assert!(!e.html.contains("<img"), "{}", e.html);
    }
}
