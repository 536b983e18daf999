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
