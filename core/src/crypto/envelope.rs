//! Envelope encryption of secrets at rest (signing keys, TOTP seeds, IdP client secrets)
//! with AES-256-GCM under a master key that has an id, so the master key can be rotated.
//!
//! Sealed format: `b"kg1"` ‖ id length (1 byte) ‖ key id ‖ 96-bit nonce ‖ ciphertext+tag.
//! The caller's `context` (e.g. `signing_key:<kid>`) is bound as associated data, so a
//! ciphertext copied into another row does not open.

use super::CryptoError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

const MAGIC: &[u8] = b"kg1";

/// HKDF salt for keys derived from a master key; changing it changes every derived key.
const DERIVATION_SALT: &[u8] = b"keygate master-key derivation v1";

/// Every purpose's MAC key from the raw bytes of a master key (HKDF-SHA256; the `info` of
/// each purpose is fixed: changing it changes the key).
fn derive_macs(raw: &[u8]) -> Result<DerivedMacs, CryptoError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVATION_SALT).extract(raw);
    let derive = |info: &'static [u8]| {
        let info = [info];
        prk.expand(&info, hmac::HMAC_SHA256)
            .map(|okm| super::mac::Mac::new(hmac::Key::from(okm)))
            .map_err(|_| CryptoError::Primitive("HKDF expand"))
    };
    Ok(DerivedMacs {
        page_forms: derive(b"keygate page forms v1")?,
        device_cookies: derive(b"keygate device cookies v1")?,
    })
}

/// The configured master keys: the first encrypts, every one decrypts.
#[derive(Clone)]
pub struct MasterKeys {
    active: Arc<str>,
    keys: Arc<HashMap<String, LessSafeKey>>,
    /// MAC keys derived from the active master key with HKDF-SHA256, one per purpose (the AES
    /// key itself is never used for anything but sealing).
    macs: Arc<DerivedMacs>,
}

/// What a MAC key derived from the master key is for; each purpose gets its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacPurpose {
    /// The pages' stateless CSRF tokens.
    PageForms,
    /// Device cookies (and API clients' device tokens): proof that a browser or client
    /// signed in to an account before, so it is judged by its own failure budget.
    DeviceCookies,
}

/// One MAC key per [`MacPurpose`].
struct DerivedMacs {
    page_forms: super::mac::Mac,
    device_cookies: super::mac::Mac,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("MasterKeys")
            .field("active", &self.active)
            .field("ids", &ids)
            .finish()
    }
}

impl MasterKeys {
    /// Parses `id:base64[,id:base64…]` (commas or newlines); each key must be 32 bytes.
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let mut active = None;
        let mut macs = None;
        let mut keys = HashMap::new();
        for entry in spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, b64) = entry.split_once(':').ok_or_else(|| {
                CryptoError::MasterKeySpec(
                    "each master key must be written `id:base64`, e.g. `k1:<32 random bytes in base64>`".into(),
                )
            })?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(CryptoError::MasterKeySpec(format!(
                    "master key id `{id}` must be 1-32 characters of letters, digits, `-` or `_`"
                )));
            }
            let raw = zeroize::Zeroizing::new(STANDARD.decode(b64.trim()).map_err(|_| {
                CryptoError::MasterKeySpec(format!("master key `{id}` is not valid base64"))
            })?);
            if raw.len() != 32 {
                return Err(CryptoError::MasterKeySpec(format!(
                    "master key `{id}` is {} bytes; it must be exactly 32 (generate one with `head -c32 /dev/urandom | base64`)",
                    raw.len()
                )));
            }
            let key = UnboundKey::new(&AES_256_GCM, &raw)
                .map_err(|_| CryptoError::Primitive("AES-256-GCM key"))?;
            if keys.insert(id.to_owned(), LessSafeKey::new(key)).is_some() {
                return Err(CryptoError::MasterKeySpec(format!(
                    "master key id `{id}` appears twice"
                )));
            }
            if active.is_none() {
                active = Some(id.to_owned());
                macs = Some(derive_macs(&raw)?);
            }
        }
        let (Some(active), Some(macs)) = (active, macs) else {
            return Err(CryptoError::MasterKeySpec("no master key given".into()));
        };
        Ok(Self {
            active: active.into(),
            keys: Arc::new(keys),
            macs: Arc::new(macs),
        })
    }

    /// Makes a fresh random key spec `id:base64`, for `keygate dev` and documentation.
    pub fn generate_spec(id: &str) -> Result<String, CryptoError> {
        let raw = zeroize::Zeroizing::new(super::random::random_bytes::<32>()?);
        Ok(format!("{id}:{}", STANDARD.encode(raw.as_slice())))
    }

    /// The MAC key of `purpose`, derived from the active master key (HKDF-SHA256), so every
    /// replica has the same key and no further secret needs distributing.
    pub fn mac(&self, purpose: MacPurpose) -> &super::mac::Mac {
        match purpose {
            MacPurpose::PageForms => &self.macs.page_forms,
            MacPurpose::DeviceCookies => &self.macs.device_cookies,
        }
    }

    /// The id of the key new ciphertexts are sealed with.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Encrypts `plaintext` bound to `context` under the active key.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .keys
            .get(&*self.active)
            .ok_or_else(|| CryptoError::UnknownMasterKey(self.active.to_string()))?;
        let nonce_bytes = super::random::random_bytes::<NONCE_LEN>()?;
        let mut out = Vec::with_capacity(
            MAGIC.len() + 1 + self.active.len() + NONCE_LEN + plaintext.len() + 16,
        );
        out.extend_from_slice(MAGIC);
        out.push(self.active.len() as u8);
        out.extend_from_slice(self.active.as_bytes());
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(context.as_bytes()),
            &mut body,
        )
        .map_err(|_| CryptoError::Primitive("AES-256-GCM seal"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts what [`seal`](Self::seal) produced for the same `context`.
    pub fn open(
        &self,
        sealed: &[u8],
        context: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
        let (id, nonce, body) = split(sealed)?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| CryptoError::UnknownMasterKey(id.to_owned()))?;
        let mut body = zeroize::Zeroizing::new(body.to_vec());
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let len = key
            .open_in_place(nonce, Aad::from(context.as_bytes()), body.as_mut_slice())
            .map_err(|_| CryptoError::Open)?
            .len();
        body.truncate(len);
        Ok(body)
    }

    /// Whether a ciphertext was sealed with a key other than the active one (re-encrypt it).
    pub fn needs_reseal(&self, sealed: &[u8]) -> bool {
        split(sealed)
            .map(|(id, _, _)| id != &*self.active)
            .unwrap_or(true)
    }
}

fn split(sealed: &[u8]) -> Result<(&str, &[u8], &[u8]), CryptoError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(CryptoError::Open)?;
    let (&id_len, rest) = rest.split_first().ok_or(CryptoError::Open)?;
    let id_len = usize::from(id_len);
    if rest.len() < id_len + NONCE_LEN + 16 {
        return Err(CryptoError::Open);
    }
    let (id, rest) = rest.split_at(id_len);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let id = std::str::from_utf8(id).map_err(|_| CryptoError::Open)?;
    Ok((id, nonce, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: &str) -> MasterKeys {
        MasterKeys::parse(spec).unwrap()
    }

    #[test]
    fn seal_open_round_trip_with_context() {
        let k = keys(&MasterKeys::generate_spec("k1").unwrap());
        let sealed = k.seal(b"secret", "signing_key:a").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            k.open(&sealed, "signing_key:a").unwrap().as_slice(),
            b"secret"
        );
        assert!(matches!(
            k.open(&sealed, "signing_key:b"),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let k = keys(&MasterKeys::generate_spec("k1").unwrap());
        let mut sealed = k.seal(b"secret", "c").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(k.open(&sealed, "c"), Err(CryptoError::Open)));
        assert!(matches!(k.open(&sealed[..10], "c"), Err(CryptoError::Open)));
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable() {
        let old_spec = MasterKeys::generate_spec("old").unwrap();
        let old = keys(&old_spec);
        let sealed = old.seal(b"seed", "totp").unwrap();
        let rotated = keys(&format!(
            "{},{old_spec}",
            MasterKeys::generate_spec("new").unwrap()
        ));
        assert_eq!(rotated.active_id(), "new");
        assert!(rotated.needs_reseal(&sealed));
        assert_eq!(rotated.open(&sealed, "totp").unwrap().as_slice(), b"seed");
        let resealed = rotated.seal(b"seed", "totp").unwrap();
        assert!(!rotated.needs_reseal(&resealed));
        // A process that lost the old key says which one is missing.
        let only_new = keys(&MasterKeys::generate_spec("new").unwrap());
        assert!(
            matches!(only_new.open(&sealed, "totp"), Err(CryptoError::UnknownMasterKey(id)) if id == "old")
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |s: &str| MasterKeys::parse(s).unwrap_err().to_string();
        assert!(err("").contains("no master key"));
        assert!(err("nocolon").contains("id:base64"));
        assert!(err("k1:c2hvcnQ=").contains("exactly 32"));
        assert!(err("k1:!!!").contains("base64"));
        let spec = MasterKeys::generate_spec("k1").unwrap();
        assert!(err(&format!("{spec},{spec}")).contains("twice"));
    }

    #[test]
    fn debug_never_prints_key_material() {
        let spec = MasterKeys::generate_spec("k1").unwrap();
        let printed = format!("{:?}", keys(&spec));
        assert!(printed.contains("k1"));
        assert!(!printed.contains(spec.split_once(':').unwrap().1));
    }
}
