//! CSRF tokens for every form: single-use, kept server-side in the ephemeral store and bound
//! to a browser cookie, so a token an attacker fetched for their own browser is worthless in
//! the victim's (this also stops login CSRF).

use crate::cookies::CookieMode;
use axum_extra::extract::cookie::CookieJar;
use keygate_core::crypto::{constant_time_eq, random::random_token, sha256};
use keygate_core::ephemeral::Ephemeral;
use std::sync::Arc;
use std::time::Duration;

/// How long a rendered form stays submittable.
const TTL: Duration = Duration::from_secs(3600);

fn key(token: &str) -> String {
    format!("csrf:{token}")
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CsrfError {
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
    /// The ephemeral store is down.
    #[error("ephemeral store unavailable")]
    Unavailable,
}

/// Issues and spends the forms' CSRF tokens.
#[derive(Debug)]
pub struct Csrf {
    /// Where issued tokens wait to be spent (shared by every replica with Redis).
    ephemeral: Arc<dyn Ephemeral>,
    /// Names and flags the binding cookie.
    cookies: CookieMode,
}

impl Csrf {
    /// Tokens kept in `ephemeral`, bound by a cookie named and flagged by `cookies`.
    pub fn new(ephemeral: Arc<dyn Ephemeral>, cookies: CookieMode) -> Self {
        Self { ephemeral, cookies }
    }

    /// A fresh token for one form, plus the jar carrying the binding cookie.
    pub async fn issue(&self, jar: CookieJar) -> Result<(String, CookieJar), CsrfError> {
        let name = self.cookies.csrf_cookie();
        let (binding, jar) = match jar
            .get(name)
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() == 43)
        {
            Some(b) => (b, jar),
            None => {
                let b = random_token().map_err(|_| CsrfError::Random)?;
                let cookie = self.cookies.cookie(name, b.clone());
                (b, jar.add(cookie))
            }
        };
        let token = random_token().map_err(|_| CsrfError::Random)?;
        self.ephemeral
            .put(&key(&token), &sha256(binding.as_bytes()), TTL)
            .await
            .map_err(|_| CsrfError::Unavailable)?;
        Ok((token, jar))
    }

    /// Spends `token`; true only if it was issued to the browser holding this jar's binding cookie.
    pub async fn check(&self, jar: &CookieJar, token: &str) -> Result<bool, CsrfError> {
        if token.len() != 43 {
            return Ok(false);
        }
        let Some(binding) = jar.get(self.cookies.csrf_cookie()) else {
            return Ok(false);
        };
        let stored = self
            .ephemeral
            .take(&key(token))
            .await
            .map_err(|_| CsrfError::Unavailable)?;
        Ok(stored.is_some_and(|s| constant_time_eq(&s, &sha256(binding.value().as_bytes()))))
    }
}
