//! Authentication levels: the `acr` values keygate issues and the `amr` methods behind them
//! (RFC 8176), and the one rule for whether a session's level satisfies a requested one.
//! Sessions store them, access tokens carry them, forward-auth (`mfa=1`, `acr=`) and
//! discovery (`acr_values_supported`) read them from here.
//!
//! | acr | when |
//! |---|---|
//! | [`ACR_PASSWORD`] | one factor: a password |
//! | [`ACR_MFA`] | a password and a second factor (TOTP code or backup code) |
//! | [`ACR_PHISHING_RESISTANT`] | reserved for a phishing-resistant authenticator (WebAuthn); not issued yet |
//!
//! The levels are ordered: a request for [`ACR_MFA`] is met by [`ACR_MFA`] or
//! [`ACR_PHISHING_RESISTANT`]. An `acr` keygate does not know is met only by itself.

/// `acr` of a password-only sign-in.
pub const ACR_PASSWORD: &str = "urn:keygate:acr:pwd";
/// `acr` of a sign-in with a password and a second factor.
pub const ACR_MFA: &str = "urn:keygate:acr:mfa";
/// `acr` of a phishing-resistant sign-in (WebAuthn); defined so requests can name it, issued
/// once keygate has such an authenticator.
pub const ACR_PHISHING_RESISTANT: &str = "urn:keygate:acr:phr";
/// The `acr` values a session can reach today (discovery's `acr_values_supported`).
pub const ACR_VALUES_SUPPORTED: &[&str] = &[ACR_PASSWORD, ACR_MFA];

/// `amr`: a password (RFC 8176).
pub const AMR_PASSWORD: &str = "pwd";
/// `amr`: a one-time password from an RFC 6238 authenticator (RFC 8176).
pub const AMR_OTP: &str = "otp";
/// `amr`: more than one factor was used (RFC 8176); a backup code counts as the second.
pub const AMR_MFA: &str = "mfa";

/// Methods that prove a second factor.
const SECOND_FACTOR_METHODS: &[&str] = &["otp", "hwk", "swk", "sc", AMR_MFA];

/// Whether `amr` includes a second factor.
pub fn has_second_factor(amr: &[String]) -> bool {
    amr.iter()
        .any(|m| SECOND_FACTOR_METHODS.contains(&m.as_str()))
}

/// The `acr` a session with methods `amr` is at.
pub fn acr_of(amr: &[String]) -> &'static str {
    if has_second_factor(amr) {
        ACR_MFA
    } else {
        ACR_PASSWORD
    }
}

/// `amr` after a further proof by `method`: the union, with [`AMR_MFA`] once a second
/// factor joined a first one.
pub fn amr_with(amr: &[String], method: &str) -> Vec<String> {
    let mut out = amr.to_vec();
    push_unique(&mut out, method);
    let first_factor = out
        .iter()
        .any(|m| !SECOND_FACTOR_METHODS.contains(&m.as_str()));
    if first_factor && has_second_factor(&out) {
        push_unique(&mut out, AMR_MFA);
    }
    out
}

fn push_unique(out: &mut Vec<String>, m: &str) {
    if !out.iter().any(|x| x == m) {
        out.push(m.to_owned());
    }
}

fn rank(acr: &str) -> Option<u8> {
    match acr {
        ACR_PASSWORD => Some(1),
        ACR_MFA => Some(2),
        ACR_PHISHING_RESISTANT => Some(3),
        _ => None,
    }
}

/// Whether a session at `have` meets a request for `want`.
pub fn acr_satisfies(have: Option<&str>, want: &str) -> bool {
    let Some(have) = have else { return false };
    match (rank(have), rank(want)) {
        (Some(h), Some(w)) => h >= w,
        _ => have == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn levels_are_ordered_and_unknown_values_match_only_themselves() {
        assert!(acr_satisfies(Some(ACR_MFA), ACR_PASSWORD));
        assert!(acr_satisfies(Some(ACR_MFA), ACR_MFA));
        assert!(!acr_satisfies(Some(ACR_PASSWORD), ACR_MFA));
        assert!(!acr_satisfies(Some(ACR_MFA), ACR_PHISHING_RESISTANT));
        assert!(!acr_satisfies(None, ACR_PASSWORD));
        assert!(acr_satisfies(Some("urn:other"), "urn:other"));
        assert!(!acr_satisfies(Some(ACR_MFA), "urn:other"));
    }

    #[test]
    fn a_second_factor_raises_the_level_and_adds_mfa() {
        let pwd = v(&["pwd"]);
        assert_eq!(acr_of(&pwd), ACR_PASSWORD);
        let otp = amr_with(&pwd, AMR_OTP);
        assert_eq!(otp, v(&["pwd", "otp", "mfa"]));
        assert_eq!(acr_of(&otp), ACR_MFA);
        // A backup code is a second factor of no RFC 8176 kind: `mfa` alone says so.
        assert_eq!(amr_with(&pwd, AMR_MFA), v(&["pwd", "mfa"]));
        // A password again adds nothing.
        assert_eq!(amr_with(&pwd, AMR_PASSWORD), pwd);
        assert_eq!(amr_with(&otp, AMR_PASSWORD), otp);
    }
}
