//! Keyed MACs (HMAC-SHA256) derived from the master key, for values the gateway hands out and
//! must recognise later without storing them (the pages' CSRF tokens, device cookies).

use aws_lc_rs::hmac;

/// One purpose's MAC key; see [`super::envelope::MasterKeys::mac`].
#[derive(Clone)]
pub struct Mac(hmac::Key);

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mac(..)")
    }
}

impl Mac {
    pub(super) fn new(key: hmac::Key) -> Self {
        Self(key)
    }

    /// The 32-byte tag of `data`.
    pub fn tag(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.0, data).as_ref().to_vec()
    }

    /// Whether `tag` is the tag of `data` (compared in constant time).
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, data, tag).is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::envelope::{MacPurpose, MasterKeys};

    #[test]
    fn tags_verify_only_under_the_same_master_key() {
        let spec = MasterKeys::generate_spec("k1").unwrap();
        let keys = MasterKeys::parse(&spec).unwrap();
        let csrf = keys.mac(MacPurpose::PageForms);
        let tag = csrf.tag(b"form");
        assert_eq!(tag.len(), 32);
        assert!(csrf.verify(b"form", &tag));
        assert!(!csrf.verify(b"forn", &tag));
        // Another replica given the same master keys derives the same key; other keys do not.
        let replica = MasterKeys::parse(&spec).unwrap();
        assert!(replica.mac(MacPurpose::PageForms).verify(b"form", &tag));
        let other = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
        assert!(!other.mac(MacPurpose::PageForms).verify(b"form", &tag));
        // Each purpose has its own key: a page-form tag is nothing to device cookies.
        assert!(!keys.mac(MacPurpose::DeviceCookies).verify(b"form", &tag));
    }
}
