//! Random tokens from the operating system's CSPRNG (through aws-lc-rs).

use super::CryptoError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Fills a fixed-size array with secure random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| CryptoError::Primitive("random generator"))?;
    Ok(out)
}

/// A URL-safe token carrying 256 bits of entropy: refresh tokens, reset links, CSRF tokens.
pub fn random_token() -> Result<String, CryptoError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A short random string from an unambiguous alphabet, for identifiers people read (key prefixes).
pub fn random_alphanumeric(len: usize) -> Result<String, CryptoError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut raw = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| CryptoError::Primitive("random generator"))?;
    // 32 symbols divide 256 evenly, so masking keeps the distribution uniform.
    Ok(raw
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn alphanumeric_uses_only_the_alphabet() {
        let s = random_alphanumeric(64).unwrap();
        assert_eq!(s.len(), 64);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert!(!s.contains('l') && !s.contains('0') && !s.contains('1'));
    }
}
