//! argon2id password hashing on a bounded blocking pool, with a dummy verification for
//! unknown accounts so timing never reveals whether an account exists.

use super::CryptoError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// argon2id cost parameters; the defaults are OWASP's minimum (19 MiB, t=2, p=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// Cheap parameters for tests only; never valid in a config (validate rejects them).
    pub const fn insecure_for_tests() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// Rejects parameters below OWASP's argon2id minimum.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_kib < 19 * 1024 || self.iterations < 2 || self.parallelism < 1 {
            return Err(format!(
                "argon2id parameters m={} KiB t={} p={} are below OWASP's minimum (m=19456 t=2 p=1)",
                self.memory_kib, self.iterations, self.parallelism
            ));
        }
        Ok(())
    }

    fn argon2(&self) -> Result<Argon2<'static>, CryptoError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| CryptoError::Password(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashes and verifies passwords off the async workers, at most `permits` at a time.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    params: HashParams,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher allowing `concurrency` hashes at once (use the number of cores).
    pub fn new(params: HashParams, concurrency: usize) -> Result<Self, CryptoError> {
        let dummy_hash = hash_sync(&params, b"keygate dummy password for unknown accounts")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The parameters new hashes are made with.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=…`).
    pub async fn hash(&self, password: &str) -> Result<String, CryptoError> {
        let params = self.params;
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        self.run(move || hash_sync(&params, &password)).await
    }

    /// Checks `password` against a stored PHC string; `Ok(false)` on mismatch.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, CryptoError> {
        let phc = phc.to_owned();
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        self.run(move || verify_sync(&password, &phc)).await
    }

    /// Spends the same work as a real verification and always fails: used for unknown accounts.
    pub async fn verify_dummy(&self, password: &str) -> Result<bool, CryptoError> {
        let dummy = self.dummy_hash.clone();
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        self.run(move || verify_sync(&password, &dummy).map(|_| false))
            .await
    }

    /// Whether a stored hash was made with other parameters and should be redone at next sign-in.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(stored) = Params::try_from(&parsed) else {
            return true;
        };
        stored.m_cost() != self.params.memory_kib
            || stored.t_cost() != self.params.iterations
            || stored.p_cost() != self.params.parallelism
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
    ) -> Result<T, CryptoError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CryptoError::Primitive("password hashing pool closed"))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| CryptoError::Primitive("password hashing task panicked"))?
    }
}

fn hash_sync(params: &HashParams, password: &[u8]) -> Result<String, CryptoError> {
    params
        .argon2()?
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::Password(e.to_string()))
}

fn verify_sync(password: &[u8], phc: &str) -> Result<bool, CryptoError> {
    let parsed = PasswordHash::new(phc).map_err(|e| CryptoError::Password(e.to_string()))?;
    // Verification uses the parameters recorded in the hash, so old hashes keep working.
    match Argon2::default().verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(CryptoError::Password(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(HashParams::insecure_for_tests(), 2).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hasher();
        let phc = h.hash("correct horse battery staple").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(
            h.verify("correct horse battery staple", &phc)
                .await
                .unwrap()
        );
        assert!(
            !h.verify("correct horse battery stapler", &phc)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn same_password_gets_distinct_salts() {
        let h = hasher();
        assert_ne!(
            h.hash("pw-pw-pw-pw").await.unwrap(),
            h.hash("pw-pw-pw-pw").await.unwrap()
        );
    }

    #[tokio::test]
    async fn dummy_never_verifies() {
        assert!(
            !hasher()
                .verify_dummy("keygate dummy password for unknown accounts")
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn rehash_is_asked_when_parameters_change() {
        let old = hasher().hash("pw").await.unwrap();
        let new = PasswordHasher::new(
            HashParams {
                memory_kib: 128,
                iterations: 1,
                parallelism: 1,
            },
            1,
        )
        .unwrap();
        assert!(new.needs_rehash(&old));
        assert!(!hasher().needs_rehash(&old));
        assert!(hasher().needs_rehash("not a hash"));
    }

    #[test]
    fn below_owasp_is_rejected() {
        assert!(HashParams::default().validate().is_ok());
        assert!(HashParams::insecure_for_tests().validate().is_err());
    }
}
