//! The request id: one per request, returned in the response's `X-Request-ID`, carried by a
//! `request` tracing span (so every log line written while serving the request names it)
//! and handed to workflows through [`crate::meta`] (so audit rows name it too).
//!
//! Which id: from a trusted proxy (the rule of [`crate::client_addr`]), the proxy's
//! `X-Request-ID`, else the trace id of its W3C `traceparent`, so keygate's lines join the
//! proxy's; from anyone else, or when neither header is usable, a fresh one. A client that
//! is not a trusted proxy must not choose what audit rows are filed under (nor fill log lines
//! with text of its choosing), so its headers are ignored and a fresh id replaces them before
//! any handler sees the request.

use crate::AppState;
use crate::client_addr::peer;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument as _;

/// The header a request id arrives and leaves in.
pub const HEADER: &str = "x-request-id";
/// Longest id taken from a proxy; longer ones are replaced.
const MAX_LEN: usize = 128;

/// This request's id, in the request's extensions for handlers and extractors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

/// The middleware: settles the id, runs the request inside its span and returns the id.
pub async fn tag(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let from_proxy = peer(request.extensions()).is_some_and(|ip| {
        state
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ip.to_canonical()))
    });
    let headers = request.headers();
    let trace_id = from_proxy
        .then(|| headers.get("traceparent").and_then(trace_id))
        .flatten();
    let id: Arc<str> = from_proxy
        .then(|| headers.get(HEADER).and_then(proxy_id))
        .flatten()
        .or_else(|| trace_id.clone())
        .unwrap_or_else(fresh)
        .into();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = tracing::field::Empty,
        method = %request.method(),
    );
    if let Some(trace) = &trace_id {
        span.record("trace_id", trace.as_str());
    }
    let value = HeaderValue::from_str(&id).ok();
    if let Some(v) = &value {
        request.headers_mut().insert(HEADER, v.clone());
    }
    request.extensions_mut().insert(RequestId(id));
    let mut response = next.run(request).instrument(span).await;
    if let Some(v) = value {
        response.headers_mut().insert(HEADER, v);
    }
    response
}

/// A proxy's `X-Request-ID`, if it is 1–128 characters of letters, digits and `-._:/+=`
/// (what nginx, Envoy and Traefik send: hex strings and UUIDs).
fn proxy_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let usable = !text.is_empty()
        && text.len() <= MAX_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/+=".contains(&b));
    usable.then(|| text.to_owned())
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, lower-case, ids
/// not all zeros); `None` for anything else.
fn trace_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let mut parts = text.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    // Version 00 has exactly four fields; later versions may append more.
    let well_formed = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && !zero(trace)
        && hex(parent, 16)
        && !zero(parent)
        && hex(flags, 2);
    well_formed.then(|| trace.to_owned())
}

/// A fresh id: 32 hex digits, a random per-process half and a counter, so ids are unique
/// across replicas without a random draw per request (and read like a W3C trace id).
fn fresh() -> String {
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| {
        keygate_core::crypto::random::random_bytes::<8>()
            .map(u64::from_le_bytes)
            // Without a random source: the clock, which still differs between replicas.
            .unwrap_or_else(|_| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
    });
    format!(
        "{process:016x}{:016x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_ids_are_taken_only_when_plain() {
        let ok = |s: &str| proxy_id(&HeaderValue::from_str(s).unwrap());
        assert_eq!(
            ok("3f0c9a6e-1b7d-4e55-9a0e-2d6c1c0b9f11").as_deref(),
            Some("3f0c9a6e-1b7d-4e55-9a0e-2d6c1c0b9f11")
        );
        assert_eq!(ok("0123abcd").as_deref(), Some("0123abcd"));
        assert_eq!(ok("a b"), None);
        assert_eq!(ok("x\"y"), None);
        assert_eq!(ok(&"a".repeat(129)), None);
    }

    #[test]
    fn traceparents_give_their_trace_id() {
        let t = |s: &str| trace_id(&HeaderValue::from_str(s).unwrap());
        assert_eq!(
            t("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            t("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            t("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            None
        );
        assert_eq!(
            t("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            t("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            t("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
            None
        );
        assert_eq!(t("garbage"), None);
    }

    #[test]
    fn fresh_ids_differ_and_look_like_trace_ids() {
        let (a, b) = (fresh(), fresh());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
