//! Settings of the gateway's identity service beyond the basics: outgoing mail, the
//! breached-password list and the first admin. Read and checked with the rest of the
//! config, so a half-set value stops start-up instead of failing a request later.

use super::{ConfigError, Secret, Sources};
use std::path::PathBuf;

/// Where keygate's emails go (`KEYGATE_SMTP_URL`) and whom they are from
/// (`KEYGATE_SMTP_FROM`): one setting, so a URL without a sender cannot reach the mailer.
#[derive(Clone, Debug)]
pub struct Smtp {
    /// `smtp://user:pass@host:587` or `smtps://…`.
    pub url: Secret,
    /// Sender address.
    pub from: String,
}

/// The first admin account the gateway creates at start-up (`KEYGATE_BOOTSTRAP_*`).
#[derive(Clone, Debug)]
pub struct BootstrapAdmin {
    /// Name of the tenant the account belongs to.
    pub tenant: String,
    /// The admin's email.
    pub email: String,
    /// The initial password; it must be changed at first sign-in.
    pub password: Secret,
}

impl Sources {
    /// `KEYGATE_SMTP_URL` with `KEYGATE_SMTP_FROM`: both or neither.
    pub(super) fn smtp(&self) -> Result<Option<Smtp>, ConfigError> {
        let smtp_url = self.secret("KEYGATE_SMTP_URL", &self.file.smtp_url)?;
        let smtp_from = self.plain("KEYGATE_SMTP_FROM", &self.file.smtp_from);
        if let Some(url) = &smtp_url
            && !(url.expose().starts_with("smtp://") || url.expose().starts_with("smtps://"))
        {
            return Err(ConfigError::new(
                "KEYGATE_SMTP_URL",
                "must start with smtp:// or smtps://",
                "Use smtp://user:password@host:587 or smtps://user:password@host:465 (or leave it unset: then keygate sends no email)",
            ));
        }
        Ok(match (smtp_url, smtp_from) {
            (None, _) => None,
            (Some(url), Some(from)) => Some(Smtp { url, from }),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "KEYGATE_SMTP_FROM",
                    "not set, but KEYGATE_SMTP_URL is; emails need a sender",
                    "Set it to the sender address, e.g. keygate@example.com",
                ));
            }
        })
    }

    /// `KEYGATE_BREACHED_PASSWORDS_FILE`: a replacement list, which must be a readable file.
    pub(super) fn breached_passwords_file(&self) -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = self
            .env("KEYGATE_BREACHED_PASSWORDS_FILE")
            .map(PathBuf::from)
        else {
            return Ok(None);
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(path)),
            Ok(_) => Err(ConfigError::new(
                "KEYGATE_BREACHED_PASSWORDS_FILE",
                format!("{} is not a file", path.display()),
                "Point it at a text file with one password a line, or unset it to use the shipped list",
            )),
            Err(e) => Err(ConfigError::new(
                "KEYGATE_BREACHED_PASSWORDS_FILE",
                format!("cannot read {}: {e}", path.display()),
                "Point it at a text file with one password a line, or unset it to use the shipped list",
            )),
        }
    }

    /// `KEYGATE_BOOTSTRAP_TENANT`, `_EMAIL` and `_PASSWORD` (or `_PASSWORD_FILE`, a mounted
    /// Secret): the first admin the gateway creates; `None` when tenant and email are unset.
    pub(super) fn bootstrap_admin(&self) -> Result<Option<BootstrapAdmin>, ConfigError> {
        let (tenant, email) = match (
            self.env("KEYGATE_BOOTSTRAP_TENANT"),
            self.env("KEYGATE_BOOTSTRAP_EMAIL"),
        ) {
            (None, None) => return Ok(None),
            (Some(tenant), Some(email)) => (tenant, email),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "KEYGATE_BOOTSTRAP_EMAIL",
                    "not set, but KEYGATE_BOOTSTRAP_TENANT is",
                    "Set both to bootstrap the first admin, or neither",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "KEYGATE_BOOTSTRAP_TENANT",
                    "not set, but KEYGATE_BOOTSTRAP_EMAIL is",
                    "Set both to bootstrap the first admin, or neither",
                ));
            }
        };
        // A password file keeps its inner and leading whitespace: only the line end a
        // mounted Secret usually carries is dropped.
        let password = match (
            self.env("KEYGATE_BOOTSTRAP_PASSWORD"),
            self.env("KEYGATE_BOOTSTRAP_PASSWORD_FILE"),
        ) {
            (Some(p), _) => p,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| {
                    ConfigError::new(
                        "KEYGATE_BOOTSTRAP_PASSWORD_FILE",
                        format!("cannot read {path}: {e}"),
                        "Mount the Secret at that path or unset the variable",
                    )
                })?,
            (None, None) => {
                return Err(ConfigError::new(
                    "KEYGATE_BOOTSTRAP_PASSWORD",
                    "not set, but KEYGATE_BOOTSTRAP_EMAIL is",
                    "Set it (or KEYGATE_BOOTSTRAP_PASSWORD_FILE) to the first admin's initial password; it must be changed at first sign-in",
                ));
            }
        };
        Ok(Some(BootstrapAdmin {
            tenant,
            email,
            password: Secret::new(password),
        }))
    }
}
