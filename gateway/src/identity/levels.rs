//! Authentication levels: the `acr` values keygate issues and the `amr` methods behind them
//! (RFC 8176), and the one rule for whether a session's level satisfies a requested one.
//! Sessions store them, access tokens carry them, forward-auth (`mfa=1`, `acr=`) and
//! discovery (`acr_values_supported`) read them from here.
//!
//! | acr | when |
//! |---|---|
//! | [`ACR_PASSWORD`] | one factor: a password |
//! | [`ACR_MFA`] | a password and a second factor (TOTP code or backup code) |
//! | [`ACR_PHISHING_RESISTANT`] | a WebAuthn credential (security key or passkey) within a multi-factor proof: a password and the key, or a passkey verified on the device |
//!
//! The levels are ordered: a request for [`ACR_MFA`] is met by [`ACR_MFA`] or
//! [`ACR_PHISHING_RESISTANT`]. An `acr` keygate does not know is met only by itself.

/// `acr` of a password-only sign-in.
pub const ACR_PASSWORD: &str = "urn:keygate:acr:pwd";
/// `acr` of a sign-in with a password and a second factor.
pub const ACR_MFA: &str = "urn:keygate:acr:mfa";
/// `acr` of a phishing-resistant sign-in: a WebAuthn assertion, bound to keygate's origin,
/// within a multi-factor proof.
pub const ACR_PHISHING_RESISTANT: &str = "urn:keygate:acr:phr";
/// The `acr` values a session can reach (discovery's `acr_values_supported`).
pub const ACR_VALUES_SUPPORTED: &[&str] = &[ACR_PASSWORD, ACR_MFA, ACR_PHISHING_RESISTANT];

/// `amr`: a password (RFC 8176).
pub const AMR_PASSWORD: &str = "pwd";
/// `amr`: a one-time password from an RFC 6238 authenticator (RFC 8176).
pub const AMR_OTP: &str = "otp";
/// `amr`: proof of possession of a hardware-bound key (RFC 8176): a WebAuthn credential
/// that cannot leave its authenticator (not backup-eligible).
pub const AMR_HWK: &str = "hwk";
/// `amr`: proof of possession of a software-secured key (RFC 8176): a WebAuthn credential
/// that may be synced between devices (backup-eligible passkeys).
pub const AMR_SWK: &str = "swk";
/// `amr`: the authenticator verified the person (PIN or biometrics; WebAuthn UV).
pub const AMR_USER: &str = "user";
/// `amr`: more than one factor was used (RFC 8176); a backup code counts as the second.
pub const AMR_MFA: &str = "mfa";

/// Methods that prove a second factor.
const SECOND_FACTOR_METHODS: &[&str] = &["otp", "hwk", "swk", "sc", AMR_MFA];
/// Methods that are phishing-resistant: proofs bound to keygate's origin.
const PHISHING_RESISTANT_METHODS: &[&str] = &[AMR_HWK, AMR_SWK];

/// Whether `amr` includes a second factor.
pub fn has_second_factor(amr: &[String]) -> bool {
    amr.iter()
        .any(|m| SECOND_FACTOR_METHODS.contains(&m.as_str()))
}

/// The `acr` a session with methods `amr` is at.
pub fn acr_of(amr: &[String]) -> &'static str {
    let multi_factor = amr.iter().any(|m| m == AMR_MFA);
    let phishing_resistant = amr
        .iter()
        .any(|m| PHISHING_RESISTANT_METHODS.contains(&m.as_str()));
    if multi_factor && phishing_resistant {
        ACR_PHISHING_RESISTANT
    } else if has_second_factor(amr) {
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
        assert!(acr_satisfies(Some(ACR_PHISHING_RESISTANT), ACR_MFA));
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

    #[test]
    fn a_webauthn_key_in_a_multi_factor_proof_is_phishing_resistant() {
        // A password and a security key.
        let key = amr_with(&v(&["pwd"]), AMR_HWK);
        assert_eq!(key, v(&["pwd", "hwk", "mfa"]));
        assert_eq!(acr_of(&key), ACR_PHISHING_RESISTANT);
        // A passkey alone, verified on the device: possession and inherence or knowledge.
        let passkey = amr_with(&[AMR_USER.to_owned()], AMR_SWK);
        assert_eq!(passkey, v(&["user", "swk", "mfa"]));
        assert_eq!(acr_of(&passkey), ACR_PHISHING_RESISTANT);
    }
}
