//! RFC 6238 time-based one-time passwords through `totp-rs`: new seeds, the enrolment the
//! person's authenticator app reads (the `otpauth://` URI and its QR code as SVG), and code
//! checks at a given time (the service's clock) with one step of skew either side. Which
//! step was accepted is returned, so the store's compare-and-set can refuse a replay.

use super::IdentityError;
use keygate_core::crypto::random::random_bytes;
use totp_rs::{Algorithm, Builder, Totp};

/// Seed length: 160 bits, as RFC 4226 recommends.
pub(super) const SEED_BYTES: usize = 20;
/// Seconds per step.
const STEP_SECONDS: u64 = 30;

/// What an authenticator app needs to add the factor.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The factor being enrolled (confirm it with a first code).
    pub factor_id: keygate_core::ids::FactorId,
    /// `otpauth://totp/…` with the seed, issuer and account.
    pub otpauth_uri: String,
    /// The seed in base32, for typing it in by hand.
    pub secret: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolment")
            .field("factor_id", &self.factor_id)
            .finish_non_exhaustive()
    }
}

/// A fresh random seed.
pub(super) fn new_seed() -> Result<[u8; SEED_BYTES], IdentityError> {
    Ok(random_bytes::<SEED_BYTES>()?)
}

/// A label part of the URI: `totp-rs` refuses `:` in issuer and account names.
fn label(s: &str) -> String {
    s.replace(':', " ").trim().to_owned()
}

fn totp(seed: &[u8], issuer: &str, account: &str) -> Result<Totp, IdentityError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(seed.to_vec())
        .with_issuer(Some(label(issuer)))
        .with_account_name(label(account))
        .build()
        .map_err(|e| IdentityError::Internal(format!("TOTP parameters: {e}")))
}

/// The URI, base32 seed and QR code of `seed` for `account` at `issuer`.
pub(super) fn enrolment(
    factor_id: keygate_core::ids::FactorId,
    seed: &[u8],
    issuer: &str,
    account: &str,
) -> Result<TotpEnrolment, IdentityError> {
    let t = totp(seed, issuer, account)?;
    let otpauth_uri = t
        .to_url()
        .map_err(|e| IdentityError::Internal(format!("otpauth URI: {e}")))?;
    let qr = qrcode::QrCode::new(otpauth_uri.as_bytes())
        .map_err(|e| IdentityError::Internal(format!("QR code: {e}")))?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(TotpEnrolment {
        factor_id,
        secret: t.secret().to_base32(),
        otpauth_uri,
        qr_svg,
    })
}

/// Whether `code` is the seed's code within one step of `now` (seconds since the epoch);
/// the step it matched, for the replay guard.
pub(super) fn check(seed: &[u8], code: &str, now: i64) -> Result<Option<i64>, IdentityError> {
    let Ok(now) = u64::try_from(now) else {
        return Ok(None);
    };
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let t = totp(seed, "keygate", "check")?;
    Ok(t.check(code, now).and_then(|step| i64::try_from(step).ok()))
}

/// Whether `code` looks like a TOTP code (six digits) rather than a backup code.
pub(super) fn is_totp_code(code: &str) -> bool {
    let code = code.trim();
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_vector_checks_within_one_step_only() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", T = 59 s → 94287082 (8
        // digits); its last six digits are the 6-digit code.
        let seed = b"12345678901234567890";
        assert_eq!(check(seed, "287082", 59).unwrap(), Some(1));
        assert_eq!(
            check(seed, "287082", 59 + 30).unwrap(),
            Some(1),
            "one step late"
        );
        assert_eq!(
            check(seed, "287082", 59 + 61).unwrap(),
            None,
            "two steps late"
        );
        assert_eq!(check(seed, "28708", 59).unwrap(), None);
        assert_eq!(check(seed, "abcdef", 59).unwrap(), None);
    }

    #[test]
    fn enrolment_names_issuer_and_account_and_draws_an_svg() {
        let e = enrolment(
            keygate_core::ids::FactorId::new(),
            &[7u8; SEED_BYTES],
            "Acme: Inc",
            "ada@example.com",
        )
        .unwrap();
        assert!(
            e.otpauth_uri.starts_with("otpauth://totp/"),
            "{}",
            e.otpauth_uri
        );
        assert!(
            e.otpauth_uri.contains("ada%40example.com"),
            "{}",
            e.otpauth_uri
        );
        assert!(e.otpauth_uri.contains(&format!("secret={}", e.secret)));
        assert!(e.qr_svg.contains("<svg"));
    }
}
