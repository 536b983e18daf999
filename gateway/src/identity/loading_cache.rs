//! A small by-name cache of values read from the store (tenants, for forward-auth and the
//! identity service). A value is fresh for `ttl`; once it is stale, one caller reloads it
//! while the others keep answering from the stale value, so an expiry never sends a burst
//! of identical queries (and a burst of slow answers) from a busy replica.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long past its expiry a value loaded from the store is still served while the store
/// is unreachable (forward-auth, discovery and token checks keep working through an outage
/// this long; past it they answer 503 like the rest).
pub const OUTAGE_STALE_LIMIT: Duration = Duration::from_secs(15 * 60);

struct Slot<V> {
    loaded_at: Instant,
    value: V,
    /// A caller is reloading this slot; the others may use the stale value meanwhile.
    reloading: AtomicBool,
    /// A reload failed for an outage: serve the last value without trying again until then,
    /// so an outage costs one wait per `ttl`, not one per request.
    retry_at: Mutex<Option<Instant>>,
}

/// Values by name, loaded on demand and reloaded by one caller at a time.
pub(crate) struct LoadingCache<V> {
    ttl: Duration,
    cap: usize,
    slots: RwLock<HashMap<String, Slot<V>>>,
}

impl<V> std::fmt::Debug for LoadingCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadingCache")
            .field("ttl", &self.ttl)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

/// What a read of the cache found.
enum Found<V> {
    /// Fresh, or stale while another caller reloads it.
    Use(V),
    /// Absent, too old to serve, or this caller is the one to reload.
    Load { claimed: bool },
}

/// Clears a slot's reload claim when the reload fails or its caller is dropped half-way (the
/// request was cancelled), so the next caller reloads instead of serving stale until `2 × ttl`.
struct Claim<'a, V> {
    cache: &'a LoadingCache<V>,
    name: &'a str,
    armed: bool,
}

impl<V> Drop for Claim<'_, V> {
    fn drop(&mut self) {
        if self.armed
            && let Ok(slots) = self.cache.slots.read()
            && let Some(slot) = slots.get(self.name)
        {
            slot.reloading.store(false, Ordering::Release);
        }
    }
}

impl<V: Clone> LoadingCache<V> {
    /// A cache whose values are fresh for `ttl`, holding at most about `cap` names.
    pub(crate) fn new(ttl: Duration, cap: usize) -> Self {
        Self {
            ttl,
            cap,
            slots: RwLock::default(),
        }
    }

    /// The value for `name`: cached, or from `load` (whose errors are passed on and not
    /// cached). A stale value is served for at most one more `ttl`, and only while another
    /// caller's reload is under way.
    #[cfg(test)]
    pub(crate) async fn get<E, F, Fut>(&self, name: &str, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.get_through_outage(name, load, |_| false).await
    }

    /// [`LoadingCache::get`], except that when the reload fails with an error `outage`
    /// calls an outage (the store unreachable), the last value loaded is served for up to
    /// [`OUTAGE_STALE_LIMIT`] past its expiry: nothing can change it while the store is
    /// down, and serving it keeps working the requests that need nothing else.
    pub(crate) async fn get_through_outage<E, F, Fut>(
        &self,
        name: &str,
        load: F,
        outage: impl Fn(&E) -> bool,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let claimed = match self.find(name) {
            Found::Use(v) => return Ok(v),
            Found::Load { claimed } => claimed,
        };
        let mut claim = Claim {
            cache: self,
            name,
            armed: claimed,
        };
        let loaded = load().await;
        match &loaded {
            Ok(value) => {
                // The new slot starts unclaimed; a failed load leaves the claim to `Drop`.
                claim.armed = false;
                self.store(name, value.clone());
            }
            Err(e) if outage(e) => {
                if let Some(stale) = self.last_known(name) {
                    return Ok(stale);
                }
            }
            Err(_) => {}
        }
        loaded
    }

    /// The value last loaded for `name`, if it is younger than `ttl` + [`OUTAGE_STALE_LIMIT`];
    /// the slot is served without a reload for another `ttl`.
    fn last_known(&self, name: &str) -> Option<V> {
        let slots = self.slots.read().ok()?;
        let slot = slots.get(name)?;
        if slot.loaded_at.elapsed() >= self.ttl + OUTAGE_STALE_LIMIT {
            return None;
        }
        *slot.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + self.ttl);
        Some(slot.value.clone())
    }

    /// Whether a failed reload said to serve the slot as it is for now.
    fn waiting_out_outage(&self, slot: &Slot<V>) -> bool {
        let retry_at = slot.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        retry_at.is_some_and(|at| Instant::now() < at)
            && slot.loaded_at.elapsed() < self.ttl + OUTAGE_STALE_LIMIT
    }

    fn find(&self, name: &str) -> Found<V> {
        let Ok(slots) = self.slots.read() else {
            return Found::Load { claimed: false };
        };
        let Some(slot) = slots.get(name) else {
            return Found::Load { claimed: false };
        };
        let age = slot.loaded_at.elapsed();
        if age < self.ttl || self.waiting_out_outage(slot) {
            return Found::Use(slot.value.clone());
        }
        let someone_else = slot.reloading.swap(true, Ordering::AcqRel);
        if someone_else && age < self.ttl * 2 {
            return Found::Use(slot.value.clone());
        }
        Found::Load {
            claimed: !someone_else,
        }
    }

    fn store(&self, name: &str, value: V) {
        let Ok(mut slots) = self.slots.write() else {
            return;
        };
        if slots.len() >= self.cap && !slots.contains_key(name) {
            let ttl = self.ttl;
            slots.retain(|_, s| s.loaded_at.elapsed() < ttl);
            if slots.len() >= self.cap {
                slots.clear();
            }
        }
        slots.insert(
            name.to_owned(),
            Slot {
                loaded_at: Instant::now(),
                value,
                reloading: AtomicBool::new(false),
                retry_at: Mutex::new(None),
            },
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_stale_value_is_reloaded_by_one_caller_while_the_others_use_it() {
        let cache = Arc::new(LoadingCache::<u32>::new(Duration::from_millis(200), 10));
        let loads = Arc::new(AtomicUsize::new(0));
        let first: Result<u32, ()> = cache.get("acme", || async { Ok(1) }).await;
        assert_eq!(first, Ok(1));
        tokio::time::sleep(Duration::from_millis(250)).await;

        // One slow reload in flight; twenty callers meanwhile get the stale value at once.
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let reloader = {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .get("acme", || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.await;
                        Ok::<u32, ()>(2)
                    })
                    .await
            })
        };
        while loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..20 {
            let loads = loads.clone();
            let v = cache
                .get("acme", || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<u32, ()>(3)
                })
                .await;
            assert_eq!(v, Ok(1), "stale value while the reload runs");
        }
        release.send(()).unwrap();
        assert_eq!(reloader.await.unwrap(), Ok(2));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "exactly one query");
        assert_eq!(
            cache.get("acme", || async { Ok::<u32, ()>(9) }).await,
            Ok(2)
        );
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_a_cancelled_reload_lets_the_next_caller_reload() {
        let cache = LoadingCache::<u32>::new(Duration::from_millis(100), 10);
        assert_eq!(
            cache.get("a", || async { Err::<u32, &str>("down") }).await,
            Err("down")
        );
        assert_eq!(cache.get("a", || async { Ok::<u32, &str>(1) }).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(120)).await;

        // The reloading request is cancelled mid-query (client went away).
        let cancelled = tokio::time::timeout(
            Duration::from_millis(5),
            cache.get("a", std::future::pending::<Result<u32, &str>>),
        )
        .await;
        assert!(cancelled.is_err());
        assert_eq!(cache.get("a", || async { Ok::<u32, &str>(2) }).await, Ok(2));

        // A failed reload: the next caller retries rather than being served the stale value.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            cache.get("a", || async { Err::<u32, &str>("down") }).await,
            Err("down")
        );
        assert_eq!(cache.get("a", || async { Ok::<u32, &str>(3) }).await, Ok(3));
    }

    #[tokio::test]
    async fn an_outage_serves_the_last_value_and_other_errors_do_not() {
        let cache = LoadingCache::<u32>::new(Duration::from_millis(20), 10);
        let outage = |e: &&str| *e == "down";
        assert_eq!(cache.get("a", || async { Ok::<u32, &str>(1) }).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            cache
                .get_through_outage("a", || async { Err::<u32, &str>("down") }, outage)
                .await,
            Ok(1),
            "the store is down: the last value is served"
        );
        assert_eq!(
            cache
                .get_through_outage("a", || async { Err::<u32, &str>("corrupt") }, outage)
                .await,
            Ok(1),
            "within a ttl of the failed reload nobody tries again"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            cache
                .get_through_outage("a", || async { Err::<u32, &str>("corrupt") }, outage)
                .await,
            Err("corrupt"),
            "any other error is passed on"
        );
        assert_eq!(
            cache
                .get_through_outage("b", || async { Err::<u32, &str>("down") }, outage)
                .await,
            Err("down"),
            "nothing known: the outage is passed on"
        );
    }

    #[tokio::test]
    async fn too_old_to_serve_means_everyone_loads() {
        let cache = LoadingCache::<u32>::new(Duration::from_millis(10), 10);
        assert_eq!(cache.get("a", || async { Ok::<u32, ()>(1) }).await, Ok(1));
        tokio::time::sleep(Duration::from_millis(25)).await;
        // A reload claimed and never finished (its caller hangs on a dead connection).
        cache.slots.read().unwrap()["a"]
            .reloading
            .store(true, Ordering::SeqCst);
        // Past 2 × ttl nobody gets the stale value, even with a reload claimed.
        assert_eq!(cache.get("a", || async { Ok::<u32, ()>(2) }).await, Ok(2));
    }

    #[tokio::test]
    async fn a_full_cache_drops_old_names_first() {
        let cache = LoadingCache::<u32>::new(Duration::from_millis(200), 2);
        let _ = cache.get("old", || async { Ok::<u32, ()>(1) }).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _ = cache.get("fresh", || async { Ok::<u32, ()>(2) }).await;
        let _ = cache.get("new", || async { Ok::<u32, ()>(3) }).await;
        let slots = cache.slots.read().unwrap();
        let mut names: Vec<&str> = slots.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["fresh", "new"],
            "the expired name made room, the fresh one stayed"
        );
    }
}
