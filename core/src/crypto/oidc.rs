//! The two digests OAuth and OpenID Connect define over token strings: the PKCE `S256`
//! code challenge (RFC 7636 §4.2) and an ID token's `at_hash` (OpenID Connect Core §3.1.3.6),
//! both base64url without padding over aws-lc-rs digests.

use super::signing::SigningAlgorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `BASE64URL(SHA256(verifier))`: the `S256` challenge a PKCE verifier answers.
pub fn pkce_s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(super::sha256(verifier.as_bytes()))
}

/// Whether `verifier` is an RFC 7636 §4.1 code verifier: 43 to 128 characters of
/// `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub fn is_pkce_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An ID token's `at_hash` for `access_token`: the left half of the hash the signing
/// algorithm uses (SHA-256 for RS256 and ES256; SHA-512 for EdDSA with Ed25519, as the
/// OpenID Foundation's 2023 errata settled), base64url.
pub fn access_token_hash(algorithm: SigningAlgorithm, access_token: &str) -> String {
    let digest = match algorithm {
        SigningAlgorithm::RS256 | SigningAlgorithm::ES256 => &aws_lc_rs::digest::SHA256,
        SigningAlgorithm::EdDSA => &aws_lc_rs::digest::SHA512,
    };
    let full = aws_lc_rs::digest::digest(digest, access_token.as_bytes());
    let bytes = full.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_challenge() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_pkce_verifier(verifier));
        assert_eq!(
            pkce_s256_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(!is_pkce_verifier("short"));
        assert!(!is_pkce_verifier(&"a".repeat(129)));
        assert!(!is_pkce_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn at_hash_is_half_the_algorithms_digest() {
        let token = "ya29.example";
        let rs = access_token_hash(SigningAlgorithm::RS256, token);
        let ed = access_token_hash(SigningAlgorithm::EdDSA, token);
        assert_eq!(rs.len(), 22, "16 bytes base64url");
        assert_eq!(ed.len(), 43, "32 bytes base64url");
        let full = URL_SAFE_NO_PAD.encode(crate::crypto::sha256(token.as_bytes()));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&rs).unwrap(),
            URL_SAFE_NO_PAD.decode(full).unwrap()[..16]
        );
    }
}
