//! Outgoing email (verification links, reset links, security alerts): one small trait so
//! production sends through SMTP, `keygate dev` logs, and tests read what was sent.

use async_trait::async_trait;
use std::sync::Mutex;

/// One message to one recipient, plain text.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body (may carry a one-time link).
    pub body: String,
}

impl std::fmt::Debug for Email {
    /// Leaves the body out: it may carry a live reset or verification link.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("sending email failed: {0}")]
pub struct MailError(pub String);

/// Sends email; implementations must not block the async workers.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Sends `email`.
    async fn send(&self, email: Email) -> Result<(), MailError>;
}

/// Writes messages to the log instead of sending them: `keygate dev` and installations
/// without SMTP (an operator then reads links from the log).
#[derive(Debug, Default)]
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, email: Email) -> Result<(), MailError> {
        tracing::info!(to = %email.to, subject = %email.subject, body = %email.body, "email (not sent: no SMTP configured)");
        Ok(())
    }
}

/// Keeps messages in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryMailer(Mutex<Vec<Email>>);

impl MemoryMailer {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message sent so far, oldest first.
    pub fn sent(&self) -> Vec<Email> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, email: Email) -> Result<(), MailError> {
        if let Ok(mut m) = self.0.lock() {
            m.push(email);
        }
        Ok(())
    }
}

/// Sends through an SMTP relay (`smtp://user:pass@host:587` with STARTTLS, or `smtps://…`).
#[derive(Clone)]
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    /// Leaves the relay URL out: it carries the SMTP password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for the relay at `url`, sending as `from`.
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| MailError(format!("SMTP URL is unusable: {e}")))?
            .build();
        let from = from
            .parse()
            .map_err(|e| MailError(format!("sender address `{from}`: {e}")))?;
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: Email) -> Result<(), MailError> {
        use lettre::AsyncTransport;
        let to = email
            .to
            .parse()
            .map_err(|e| MailError(format!("recipient address: {e}")))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(email.body)
            .map_err(|e| MailError(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError(e.to_string()))?;
        Ok(())
    }
}
