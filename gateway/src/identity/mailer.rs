//! Outgoing email (verification links, reset links, invites, security alerts): one small
//! trait so production sends through SMTP, tests read what was sent, and an installation
//! without SMTP sends nothing at all. No implementation here writes a message to the log:
//! a logged reset link is an account takeover for anyone who reads the logs.

use async_trait::async_trait;
use std::sync::Mutex;

/// One message to one recipient, rendered from the mail templates ([`super::mail`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body (may carry a one-time link).
    pub body: String,
    /// HTML body, the same content as `body`.
    pub html: String,
}

impl std::fmt::Debug for Email {
    /// Leaves the bodies out: they may carry a live reset or verification link.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// This installation has no mail transport (no SMTP configured).
    #[error("no mail transport is configured")]
    NoTransport,
    /// The SMTP settings cannot be used (the text says why; it never holds the password).
    #[error("SMTP settings: {0}")]
    Config(String),
    /// A recipient or sender address does not parse.
    #[error("address: {0}")]
    Address(String),
    /// The relay refused the message or could not be reached.
    #[error("sending email failed: {0}")]
    Send(String),
}

/// Sends email; implementations must not block the async workers and must never log a
/// message's bodies.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Sends `email`.
    async fn send(&self, email: Email) -> Result<(), MailError>;

    /// Whether messages can reach anyone; flows that cannot work without email (reset,
    /// verification, invites) refuse up front when this is false.
    fn can_send(&self) -> bool {
        true
    }
}

/// The mailer of an installation without SMTP: sends nothing, and says so through
/// [`Mailer::can_send`] so mail-dependent flows answer "this installation cannot send
/// email" instead of pretending a link went out.
#[derive(Debug, Default)]
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(&self, _email: Email) -> Result<(), MailError> {
        Err(MailError::NoTransport)
    }

    fn can_send(&self) -> bool {
        false
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

/// Sends through an SMTP relay: `smtps://user:pass@host:465` (TLS from the first byte),
/// `smtp://user:pass@host:587` (STARTTLS required), or `smtp://host:25?tls=none` for a
/// relay on the same host or pod that speaks no TLS. Messages carry a text and an HTML part.
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

/// How the connection to the relay is protected, read from the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsMode {
    /// `smtps://`: TLS from the first byte.
    Wrapper,
    /// `smtp://` (or `?tls=required`): STARTTLS, and the message is not sent without it.
    StartTls,
    /// `?tls=opportunistic`: STARTTLS when the relay offers it.
    Opportunistic,
    /// `?tls=none`: plain text, for a relay on the same host.
    None,
}

impl SmtpMailer {
    /// A mailer for the relay at `url`, sending as `from`, trusting the system's web PKI
    /// roots.
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        Self::with_root_certificate(url, from, None)
    }

    /// A mailer for the relay at `url`, sending as `from`, that also trusts the CA in
    /// `root_pem` (a relay with a private CA; the tests' relay).
    pub fn with_root_certificate(
        url: &str,
        from: &str,
        root_pem: Option<&[u8]>,
    ) -> Result<Self, MailError> {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let (url, mode, host) = normalized_url(url)?;
        let mut builder = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url)
            .map_err(|e| MailError::Config(format!("the SMTP URL is unusable: {e}")))?;
        if let Some(pem) = root_pem {
            let cert = Certificate::from_pem(pem)
                .map_err(|e| MailError::Config(format!("the relay's CA certificate: {e}")))?;
            let params = TlsParameters::builder(host)
                .add_root_certificate(cert)
                .build()
                .map_err(|e| MailError::Config(format!("TLS settings: {e}")))?;
            builder = builder.tls(match mode {
                TlsMode::Wrapper => Tls::Wrapper(params),
                TlsMode::StartTls => Tls::Required(params),
                TlsMode::Opportunistic => Tls::Opportunistic(params),
                TlsMode::None => Tls::None,
            });
        }
        let from = from
            .parse()
            .map_err(|e| MailError::Address(format!("sender `{from}`: {e}")))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

/// The relay URL as lettre reads it, with STARTTLS required when an `smtp://` URL names no
/// `tls` mode (lettre would otherwise send the password and every link in clear text), and
/// `tls=none` turned into lettre's plain-text form.
fn normalized_url(raw: &str) -> Result<(String, TlsMode, String), MailError> {
    // The parse error never quotes the URL: it carries the password.
    let mut url = url::Url::parse(raw)
        .map_err(|e| MailError::Config(format!("the SMTP URL does not parse: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| MailError::Config("the SMTP URL names no host".into()))?
        .to_owned();
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "tls")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mode = match (url.scheme(), tls.as_deref()) {
        ("smtps", _) => TlsMode::Wrapper,
        ("smtp", None | Some("required")) => TlsMode::StartTls,
        ("smtp", Some("opportunistic")) => TlsMode::Opportunistic,
        ("smtp", Some("none")) => TlsMode::None,
        (scheme, tls) => {
            return Err(MailError::Config(format!(
                "scheme `{scheme}` with tls={} is not supported: use smtps://, smtp:// (STARTTLS), smtp://…?tls=opportunistic or smtp://…?tls=none",
                tls.unwrap_or("")
            )));
        }
    };
    url.set_query(None);
    if mode != TlsMode::Wrapper {
        let mut q = url.query_pairs_mut();
        q.extend_pairs(others.iter());
        match mode {
            TlsMode::StartTls => {
                q.append_pair("tls", "required");
            }
            TlsMode::Opportunistic => {
                q.append_pair("tls", "opportunistic");
            }
            TlsMode::None | TlsMode::Wrapper => {}
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok((url.into(), mode, host))
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: Email) -> Result<(), MailError> {
        use lettre::AsyncTransport;
        use lettre::message::MultiPart;
        let to = email
            .to
            .parse()
            .map_err(|e| MailError::Address(format!("recipient: {e}")))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            .multipart(MultiPart::alternative_plain_html(email.body, email.html))
            .map_err(|e| MailError::Send(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError::Send(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_without_a_tls_mode_requires_starttls() {
        let (url, mode, host) = normalized_url("smtp://u:p%40ss@relay.example:587").unwrap();
        assert_eq!(mode, TlsMode::StartTls);
        assert_eq!(host, "relay.example");
        assert_eq!(url, "smtp://u:p%40ss@relay.example:587?tls=required");
    }

    #[test]
    fn explicit_modes_are_kept_and_none_means_plain_text() {
        let (url, mode, _) = normalized_url("smtp://relay:25?tls=none").unwrap();
        assert_eq!((url.as_str(), mode), ("smtp://relay:25", TlsMode::None));
        let (_, mode, _) = normalized_url("smtp://relay?tls=opportunistic").unwrap();
        assert_eq!(mode, TlsMode::Opportunistic);
        let (_, mode, _) = normalized_url("smtps://relay").unwrap();
        assert_eq!(mode, TlsMode::Wrapper);
        assert!(normalized_url("smtp://relay?tls=maybe").is_err());
        assert!(normalized_url("http://relay").is_err());
    }

    #[test]
    fn errors_never_quote_the_password() {
        let e =
            SmtpMailer::new("smtp://user:hunter2@relay?tls=bogus", "a@example.com").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
