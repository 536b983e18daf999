//! CSRF tokens for every form: stateless, an HMAC (keyed from the master key) over a browser
//! cookie and the time the form was rendered, so a token an attacker fetched for their own
//! browser is worthless in the victim's (this also stops login CSRF), and rendering a page
//! stores nothing: anonymous page views cannot grow the ephemeral store.

use crate::cookies::CookieMode;
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keygate_core::clock::Clock;
use keygate_core::crypto::mac::Mac;
use keygate_core::crypto::random::random_token;
use std::sync::Arc;

/// How long a rendered form stays submittable, in seconds.
const TTL_SECS: i64 = 3600;

/// Clock skew between replicas tolerated for a form rendered "in the future".
const SKEW_SECS: i64 = 60;

/// Length of the binding cookie's value (a 32-byte random token in base64url).
const BINDING_LEN: usize = 43;

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CsrfError {
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
}

/// Issues and checks the forms' CSRF tokens.
#[derive(Debug)]
pub struct Csrf {
    /// Keyed from the master key, so every replica checks what any replica issued.
    mac: Mac,
    /// When a form was rendered, and so whether it is too old.
    clock: Arc<dyn Clock>,
    /// Names and flags the binding cookie.
    cookies: CookieMode,
}

impl Csrf {
    /// Tokens tagged with `mac` and dated by `clock`, bound by a cookie named and flagged by
    /// `cookies`.
    pub fn new(mac: Mac, clock: Arc<dyn Clock>, cookies: CookieMode) -> Self {
        Self {
            mac,
            clock,
            cookies,
        }
    }

    /// A fresh token for one form, plus the jar carrying the binding cookie.
    pub fn issue(&self, jar: CookieJar) -> Result<(String, CookieJar), CsrfError> {
        let name = self.cookies.csrf_cookie();
        let (binding, jar) = match jar
            .get(name)
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() == BINDING_LEN)
        {
            Some(b) => (b, jar),
            None => {
                let b = random_token().map_err(|_| CsrfError::Random)?;
                let cookie = self.cookies.cookie(name, b.clone());
                (b, jar.add(cookie))
            }
        };
        let issued = self.clock.now().timestamp().to_be_bytes();
        let tag = self.mac.tag(&signed_text(&binding, &issued));
        Ok((URL_SAFE_NO_PAD.encode([&issued[..], &tag].concat()), jar))
    }

    /// True only if `token` was issued, within the last hour, to the browser holding this
    /// jar's binding cookie.
    pub fn check(&self, jar: &CookieJar, token: &str) -> bool {
        let Some(binding) = jar.get(self.cookies.csrf_cookie()) else {
            return false;
        };
        let Ok(raw) = URL_SAFE_NO_PAD.decode(token.as_bytes()) else {
            return false;
        };
        let Some((issued, tag)) = raw.split_first_chunk::<8>() else {
            return false;
        };
        let age = self.clock.now().timestamp() - i64::from_be_bytes(*issued);
        (-SKEW_SECS..=TTL_SECS).contains(&age)
            && self.mac.verify(&signed_text(binding.value(), issued), tag)
    }
}

/// What a token's tag covers: the binding cookie and the issue time, with a label so the
/// tag cannot be taken for any other MAC of the same key.
fn signed_text(binding: &str, issued: &[u8; 8]) -> Vec<u8> {
    [
        b"keygate page form\0".as_slice(),
        binding.as_bytes(),
        b"\0",
        issued,
    ]
    .concat()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum_extra::extract::cookie::Cookie;
    use keygate_core::clock::ManualClock;
    use keygate_core::crypto::envelope::{MacPurpose, MasterKeys};

    fn csrf(spec: &str, clock: Arc<ManualClock>) -> Csrf {
        let keys = MasterKeys::parse(spec).unwrap();
        let mac = keys.mac(MacPurpose::PageForms).clone();
        Csrf::new(mac, clock, CookieMode::Host)
    }

    #[test]
    fn a_token_serves_only_its_browser_for_an_hour_and_only_under_its_key() {
        let spec = MasterKeys::generate_spec("k1").unwrap();
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let pages = csrf(&spec, clock.clone());
        let (token, jar) = pages.issue(CookieJar::new()).unwrap();
        assert!(pages.check(&jar, &token));
        // Another replica with the same master keys accepts it.
        assert!(csrf(&spec, clock.clone()).check(&jar, &token));
        // Another browser (another binding cookie), or none, does not.
        let (_, other) = pages.issue(CookieJar::new()).unwrap();
        assert!(!pages.check(&other, &token));
        assert!(!pages.check(&CookieJar::new(), &token));
        // A tampered token, junk, another installation's key.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[7] ^= 1;
        assert!(!pages.check(&jar, &URL_SAFE_NO_PAD.encode(&bytes)));
        assert!(!pages.check(&jar, "not a token"));
        assert!(!pages.check(&jar, ""));
        let other_key = MasterKeys::generate_spec("k1").unwrap();
        assert!(!csrf(&other_key, clock.clone()).check(&jar, &token));
        // An hour later it is still good; a moment after, it is not.
        clock.advance(chrono::Duration::seconds(TTL_SECS));
        assert!(pages.check(&jar, &token));
        clock.advance(chrono::Duration::seconds(1));
        assert!(!pages.check(&jar, &token));
    }

    #[test]
    fn the_binding_cookie_is_kept_once_set() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let pages = csrf(&MasterKeys::generate_spec("k1").unwrap(), clock);
        let (_, jar) = pages.issue(CookieJar::new()).unwrap();
        let binding = jar
            .get(CookieMode::Host.csrf_cookie())
            .unwrap()
            .value()
            .to_owned();
        let browser =
            CookieJar::new().add(Cookie::new(CookieMode::Host.csrf_cookie(), binding.clone()));
        let (token, jar) = pages.issue(browser).unwrap();
        assert_eq!(
            jar.get(CookieMode::Host.csrf_cookie()).unwrap().value(),
            binding
        );
        assert!(pages.check(&jar, &token));
    }
}
