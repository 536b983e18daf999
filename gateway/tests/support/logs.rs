//! Log capture for tests that search what the gateway logged. tracing's thread-local
//! `set_default` loses events when tests run in parallel (callsite interest is cached
//! across threads), so the binary has one global subscriber, at TRACE for every crate, that
//! writes each event to every live capture (the pattern of
//! `operator/tests/reconcile/support.rs`). Lines of concurrent tests appear too, which only
//! makes a search for secrets stricter.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};

/// Everything logged while it lives.
pub struct Captured(Arc<Mutex<Vec<u8>>>);

static LIVE_CAPTURES: Mutex<Vec<Arc<Mutex<Vec<u8>>>>> = Mutex::new(Vec::new());
static INSTALL: std::sync::Once = std::sync::Once::new();

impl Captured {
    /// Starts capturing; installs the binary's one subscriber on first use.
    pub fn start() -> Self {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::{Layer, filter};
        INSTALL.call_once(|| {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| FanOut)
                .with_filter(filter::LevelFilter::TRACE)
                .with_filter(filter::filter_fn(|_| {
                    !LIVE_CAPTURES.lock().unwrap().is_empty()
                }));
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        LIVE_CAPTURES.lock().unwrap().push(buffer.clone());
        Self(buffer)
    }

    /// What was logged so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        LIVE_CAPTURES
            .lock()
            .unwrap()
            .retain(|b| !Arc::ptr_eq(b, &self.0));
    }
}

/// Writes one formatted event to every live capture.
struct FanOut;

impl std::io::Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for buffer in LIVE_CAPTURES.lock().unwrap().iter() {
            buffer.lock().unwrap().extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
