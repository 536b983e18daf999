//! Token signing keys: generation for RS256, ES256 and EdDSA with an RFC 7638 thumbprint
//! as `kid`, the public JWK, and loading the private part for jsonwebtoken.

use super::CryptoError;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use zeroize::Zeroizing;

/// The algorithms a tenant may sign with; never `none`, never HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SigningAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256, 2048-bit keys: the most widely supported.
    RS256,
    /// ECDSA P-256 with SHA-256: small and fast to sign.
    ES256,
    /// Ed25519: fastest to sign and verify.
    EdDSA,
}

impl SigningAlgorithm {
    /// The JOSE name (`alg` header value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(Self::RS256),
            "ES256" => Ok(Self::ES256),
            "EdDSA" => Ok(Self::EdDSA),
            other => Err(CryptoError::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// A freshly generated key pair: the private part as PKCS#8 PEM (seal it before storing).
pub struct GeneratedKey {
    /// RFC 7638 SHA-256 thumbprint of the public key.
    pub kid: String,
    /// The algorithm the key signs with.
    pub algorithm: SigningAlgorithm,
    /// Public JWK with `kid`, `alg` and `use: sig`, ready for the JWKS document.
    pub public_jwk: Jwk,
    /// PKCS#8 PEM of the private key; zeroed when dropped.
    pub private_pem: Zeroizing<String>,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Generates a new signing key for `algorithm`.
pub fn generate(algorithm: SigningAlgorithm) -> Result<GeneratedKey, CryptoError> {
    let pkcs8: Zeroizing<Vec<u8>> = Zeroizing::new(match algorithm {
        SigningAlgorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| CryptoError::Primitive("RSA key generation"))?;
            let der = pair
                .as_der()
                .map_err(|_| CryptoError::Primitive("RSA key encoding"))?;
            der.as_ref().to_vec()
        }
        SigningAlgorithm::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| CryptoError::Primitive("P-256 key generation"))?;
            pair.to_pkcs8v1()
                .map_err(|_| CryptoError::Primitive("P-256 key encoding"))?
                .as_ref()
                .to_vec()
        }
        SigningAlgorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate()
                .map_err(|_| CryptoError::Primitive("Ed25519 key generation"))?;
            // jsonwebtoken reads the 48-byte PKCS#8 v1 form.
            pair.to_pkcs8v1()
                .map_err(|_| CryptoError::Primitive("Ed25519 key encoding"))?
                .as_ref()
                .to_vec()
        }
    });
    let private_pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.to_vec())));
    let encoding = encoding_key(algorithm, &private_pem)?;
    let mut public_jwk = Jwk::from_encoding_key(&encoding, algorithm.jwt_algorithm())?;
    let kid = public_jwk.thumbprint(ThumbprintHash::SHA256)?;
    public_jwk.common.key_id = Some(kid.clone());
    public_jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(GeneratedKey {
        kid,
        algorithm,
        public_jwk,
        private_pem,
    })
}

/// Loads a stored private key (PKCS#8 PEM, after unsealing) for signing.
pub fn encoding_key(
    algorithm: SigningAlgorithm,
    private_pem: &str,
) -> Result<EncodingKey, CryptoError> {
    Ok(match algorithm {
        SigningAlgorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes())?,
        SigningAlgorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes())?,
        SigningAlgorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Header, Validation, decode, encode};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    #[test]
    fn every_algorithm_signs_and_its_jwk_verifies() {
        for alg in [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
        ] {
            let key = generate(alg).unwrap();
            assert_eq!(
                key.public_jwk.common.key_id.as_deref(),
                Some(key.kid.as_str())
            );
            let jwk_json = serde_json::to_value(&key.public_jwk).unwrap();
            assert!(
                jwk_json.get("d").is_none(),
                "{alg:?} JWK leaks the private part"
            );
            let mut header = Header::new(alg.jwt_algorithm());
            header.kid = Some(key.kid.clone());
            let claims = Claims {
                sub: "u1".into(),
                exp: 4_000_000_000,
            };
            let token = encode(
                &header,
                &claims,
                &encoding_key(alg, &key.private_pem).unwrap(),
            )
            .unwrap();
            let decoding = DecodingKey::from_jwk(&key.public_jwk).unwrap();
            let mut validation = Validation::new(alg.jwt_algorithm());
            validation.validate_aud = false;
            let data = decode::<Claims>(token.as_bytes(), &decoding, &validation).unwrap();
            assert_eq!(data.claims.sub, "u1");
            // Another key of the same algorithm must not verify it.
            let other = DecodingKey::from_jwk(&generate(alg).unwrap().public_jwk).unwrap();
            assert!(decode::<Claims>(token.as_bytes(), &other, &validation).is_err());
        }
    }

    #[test]
    fn only_asymmetric_algorithms_parse() {
        assert_eq!(
            "ES256".parse::<SigningAlgorithm>().unwrap(),
            SigningAlgorithm::ES256
        );
        assert!("HS256".parse::<SigningAlgorithm>().is_err());
        assert!("none".parse::<SigningAlgorithm>().is_err());
    }
}
