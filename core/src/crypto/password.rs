//! argon2id password hashing on a fixed pool of hashing threads behind a bounded queue,
//! with a dummy verification for unknown accounts so timing never reveals whether an
//! account exists.
//!
//! Why threads of our own instead of tokio's blocking pool: argon2's `hash_password`
//! allocates its m KiB of memory (19 MiB at OWASP's parameters) on every call, on whichever
//! blocking thread runs it, and tokio starts new blocking threads freely. glibc kept the
//! freed blocks in those threads' arenas: 64 concurrent verifications that way left about
//! 700 MiB resident (docs/decisions.md). Here each of a fixed number of threads allocates its
//! block once (on its first hash) and reuses it through argon2's
//! `hash_password_into_with_memory`, so hashing holds at most `threads × m` KiB; and a hash
//! that finds the queue full is refused with [`CryptoError::Busy`] at once instead of
//! waiting without bound.

use super::CryptoError;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    fn argon2_params(&self) -> Result<Params, CryptoError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| CryptoError::Password(e.to_string()))
    }
}

/// How many hashing threads run and how many hashes may wait for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashPool {
    /// Threads hashing at once, each holding one argon2id memory block (use the cores).
    pub threads: usize,
    /// Hashes that may wait for a thread; one more is refused with [`CryptoError::Busy`].
    pub queue: usize,
}

impl HashPool {
    /// Hashes a waiting sign-in may have in front of it per thread: at OWASP's parameters
    /// (~15 ms a hash) a full queue drains in about a second.
    pub const QUEUE_PER_THREAD: usize = 64;

    /// `threads` threads with a queue of [`Self::QUEUE_PER_THREAD`] per thread.
    pub fn with_threads(threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            threads,
            queue: threads * Self::QUEUE_PER_THREAD,
        }
    }

    /// One thread per core the process may use.
    pub fn per_core() -> Self {
        Self::with_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// The pool's Prometheus series, made with the pool and registered by whoever serves
/// `/metrics` ([`HashMetrics::register`]).
#[derive(Clone, Debug)]
pub struct HashMetrics {
    /// Hashes waiting for a thread.
    pub queue_depth: IntGauge,
    /// Time a hash waited for a thread.
    pub wait_seconds: Histogram,
    /// Hashes refused because the queue was full.
    pub rejected: IntCounter,
    /// Threads in the pool.
    pub threads: IntGauge,
}

impl HashMetrics {
    fn new(threads: usize) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            queue_depth: IntGauge::new(
                "keygate_password_hash_queue_depth",
                "Password hashes waiting for a hashing thread",
            )?,
            wait_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "keygate_password_hash_wait_seconds",
                    "Time a password hash waited for a hashing thread",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )?,
            rejected: IntCounter::new(
                "keygate_password_hash_rejected_total",
                "Password hashes refused (503) because every hashing thread was busy and the queue was full",
            )?,
            threads: IntGauge::new(
                "keygate_password_hash_threads",
                "Hashing threads, each holding one argon2id memory block",
            )?,
        };
        metrics
            .threads
            .set(i64::try_from(threads).unwrap_or(i64::MAX));
        Ok(metrics)
    }

    /// Registers the series in `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.queue_depth.clone()))?;
        registry.register(Box::new(self.wait_seconds.clone()))?;
        registry.register(Box::new(self.rejected.clone()))?;
        registry.register(Box::new(self.threads.clone()))
    }
}

/// Hashes and verifies passwords on a fixed pool of threads behind a bounded queue.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    params: HashParams,
    pool: Arc<Pool>,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher with `threads` hashing threads and the default queue ([`HashPool::with_threads`]).
    pub fn new(params: HashParams, threads: usize) -> Result<Self, CryptoError> {
        Self::with_pool(params, HashPool::with_threads(threads))
    }

    /// A hasher over a pool of the given size; starts its threads and makes the dummy hash.
    pub fn with_pool(params: HashParams, size: HashPool) -> Result<Self, CryptoError> {
        let argon_params = params.argon2_params()?;
        let pool = Arc::new(Pool::start(size, argon_params.block_count())?);
        let dummy = {
            let (tx, rx) = std::sync::mpsc::channel();
            pool.submit(Box::new(move |memory: &mut Memory| {
                let _ = tx.send(hash_with(
                    memory,
                    &argon_params,
                    b"keygate dummy password for unknown accounts",
                ));
            }))?;
            rx.recv()
                .map_err(|_| CryptoError::Primitive("password hashing thread stopped"))??
        };
        Ok(Self {
            params,
            pool,
            dummy_hash: dummy.into(),
        })
    }

    /// The parameters new hashes are made with.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// The pool's series (queue depth, wait, refusals, threads), to register for `/metrics`.
    pub fn metrics(&self) -> &HashMetrics {
        &self.pool.metrics
    }

    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=…`).
    pub async fn hash(&self, password: &str) -> Result<String, CryptoError> {
        let params = self.params.argon2_params()?;
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        self.run(move |memory| hash_with(memory, &params, &password))
            .await
    }

    /// Checks `password` against a stored PHC string; `Ok(false)` on mismatch.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, CryptoError> {
        let phc = phc.to_owned();
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        self.run(move |memory| verify_with(memory, &password, &phc))
            .await
    }

    /// Spends the same work as a real verification and always fails: used for unknown accounts.
    pub async fn verify_dummy(&self, password: &str) -> Result<bool, CryptoError> {
        let dummy = self.dummy_hash.clone();
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        self.run(move |memory| verify_with(memory, &password, &dummy).map(|_| false))
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

    /// Queues `work` for a hashing thread and waits for its answer. A caller that stops
    /// waiting (the client went away) takes its work out of the queue: a thread skips it.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> Result<T, CryptoError> + Send + 'static,
    ) -> Result<T, CryptoError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.submit(Box::new(move |memory: &mut Memory| {
            if !tx.is_closed() {
                let _ = tx.send(work(memory));
            }
        }))?;
        rx.await
            .map_err(|_| CryptoError::Primitive("password hashing thread stopped"))?
    }
}

/// One hashing thread's argon2id memory, kept between hashes.
struct Memory {
    blocks: Vec<Block>,
    /// Blocks kept: those of the configured parameters. A stored hash made with more
    /// memory (older, stronger parameters) gets a block of its own for that verification.
    keep: usize,
}

impl Memory {
    fn with<T>(&mut self, needed: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        if needed > self.keep {
            let mut once = vec![Block::default(); needed];
            return f(&mut once);
        }
        if self.blocks.len() < needed {
            self.blocks.resize(needed, Block::default());
        }
        f(&mut self.blocks[..needed])
    }
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

struct Queued {
    job: Job,
    since: Instant,
}

/// The threads and the bounded queue in front of them. Dropping the last hasher closes
/// the queue, and the threads end after the work already queued.
struct Pool {
    queue: SyncSender<Queued>,
    threads: usize,
    capacity: usize,
    metrics: HashMetrics,
    /// How long the last hash ran, in microseconds: the basis of `Retry-After`.
    last_run_micros: Arc<AtomicU64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Pool {
    fn start(size: HashPool, keep: usize) -> Result<Self, CryptoError> {
        let threads = size.threads.max(1);
        let (queue, receiver) = std::sync::mpsc::sync_channel::<Queued>(size.queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let metrics = HashMetrics::new(threads)
            .map_err(|_| CryptoError::Primitive("password hashing metrics"))?;
        let last_run_micros = Arc::new(AtomicU64::new(15_000));
        for n in 0..threads {
            let receiver = receiver.clone();
            let metrics = metrics.clone();
            let last_run = last_run_micros.clone();
            std::thread::Builder::new()
                .name(format!("keygate-hash-{n}"))
                .spawn(move || hash_thread(&receiver, &metrics, &last_run, keep))
                .map_err(|_| CryptoError::Primitive("cannot start a password hashing thread"))?;
        }
        Ok(Self {
            queue,
            threads,
            capacity: size.queue,
            metrics,
            last_run_micros,
        })
    }

    fn submit(&self, job: Job) -> Result<(), CryptoError> {
        self.metrics.queue_depth.inc();
        match self.queue.try_send(Queued {
            job,
            since: Instant::now(),
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_depth.dec();
                self.metrics.rejected.inc();
                Err(CryptoError::Busy {
                    retry_after: self.drain_time(),
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.dec();
                Err(CryptoError::Primitive("password hashing threads stopped"))
            }
        }
    }

    /// About how long a full queue takes to drain, between 1 and 60 s.
    fn drain_time(&self) -> Duration {
        let per_hash = self.last_run_micros.load(Ordering::Relaxed).max(1);
        let waiting = u64::try_from(self.capacity.div_ceil(self.threads)).unwrap_or(u64::MAX);
        let micros = per_hash.saturating_mul(waiting);
        Duration::from_secs(micros.div_ceil(1_000_000).clamp(1, 60))
    }
}

fn hash_thread(
    receiver: &Mutex<Receiver<Queued>>,
    metrics: &HashMetrics,
    last_run: &AtomicU64,
    keep: usize,
) {
    let mut memory = Memory {
        blocks: Vec::new(),
        keep,
    };
    loop {
        // Holding the lock while waiting is the point: one idle thread waits on the
        // queue, the others on the lock, and each job goes to exactly one thread.
        let next = match receiver.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Queued { job, since }) = next else {
            return;
        };
        metrics.queue_depth.dec();
        metrics.wait_seconds.observe(since.elapsed().as_secs_f64());
        let started = Instant::now();
        // A panic inside argon2 drops the job's answer channel (its caller gets an
        // error); the thread and its memory carry on with the next job.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory)));
        last_run.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

fn password_error(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Password(e.to_string())
}

/// argon2id of `password` under a fresh salt, as a PHC string, in `memory`.
fn hash_with(memory: &mut Memory, params: &Params, password: &[u8]) -> Result<String, CryptoError> {
    let salt = argon2::password_hash::try_generate_salt()
        .map_err(|_| CryptoError::Primitive("random salt"))?;
    let salt = Salt::new(&salt).map_err(password_error)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    memory
        .with(params.block_count(), |blocks| {
            argon.hash_password_into_with_memory(password, &salt, &mut out, blocks)
        })
        .map_err(password_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(password_error)?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(password_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, recomputed in `memory` with the
/// algorithm, version and parameters recorded in the hash (so old hashes keep working)
/// and compared in constant time (`Output`'s equality).
fn verify_with(memory: &mut Memory, password: &[u8], phc: &str) -> Result<bool, CryptoError> {
    let parsed = PasswordHash::new(phc).map_err(password_error)?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(password_error)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(password_error)?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(password_error)?;
    let mut out = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    let argon = Argon2::new(algorithm, version, params.clone());
    memory
        .with(params.block_count(), |blocks| {
            argon.hash_password_into_with_memory(password, salt, &mut out, blocks)
        })
        .map_err(password_error)?;
    Ok(Output::new(&out).map_err(password_error)? == *expected)
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

    #[tokio::test]
    async fn hashes_made_here_verify_with_the_crate_and_the_other_way_round() {
        use argon2::PasswordVerifier as _;
        let h = hasher();
        let ours = h.hash("pw-ours").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"pw-ours", &parsed)
                .is_ok()
        );
        let theirs = {
            use argon2::PasswordHasher as _;
            let params = HashParams::insecure_for_tests().argon2_params().unwrap();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"pw-theirs")
                .unwrap()
                .to_string()
        };
        assert!(h.verify("pw-theirs", &theirs).await.unwrap());
        assert!(!h.verify("pw-ours", &theirs).await.unwrap());
    }

    #[tokio::test]
    async fn a_hash_made_with_more_memory_than_configured_still_verifies() {
        let bigger = PasswordHasher::new(
            HashParams {
                memory_kib: 256,
                iterations: 1,
                parallelism: 2,
            },
            1,
        )
        .unwrap();
        let phc = bigger.hash("pw").await.unwrap();
        assert!(hasher().verify("pw", &phc).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_with_a_retry_time() {
        let h = PasswordHasher::with_pool(
            HashParams::insecure_for_tests(),
            HashPool {
                threads: 1,
                queue: 1,
            },
        )
        .unwrap();
        // Hold the one thread, then fill the one queue slot.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, is_running) = tokio::sync::oneshot::channel::<()>();
        let blocker = {
            let h = h.clone();
            tokio::spawn(async move {
                h.run(move |_| {
                    let _ = started.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
            })
        };
        is_running.await.unwrap();
        let queued = {
            let h = h.clone();
            tokio::spawn(async move { h.verify_dummy("pw").await })
        };
        while h.metrics().queue_depth.get() < 1 {
            tokio::task::yield_now().await;
        }
        let refused = h.hash("pw").await;
        let Err(CryptoError::Busy { retry_after }) = refused else {
            panic!("expected Busy, got {refused:?}");
        };
        assert!(retry_after >= Duration::from_secs(1));
        assert_eq!(h.metrics().rejected.get(), 1);
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        assert!(!queued.await.unwrap().unwrap());
        // The queue drained: hashing works again.
        assert!(h.hash("pw").await.is_ok());
        assert_eq!(h.metrics().queue_depth.get(), 0);
        assert!(h.metrics().wait_seconds.get_sample_count() >= 3);
    }

    #[test]
    fn below_owasp_is_rejected() {
        assert!(HashParams::default().validate().is_ok());
        assert!(HashParams::insecure_for_tests().validate().is_err());
    }
}
