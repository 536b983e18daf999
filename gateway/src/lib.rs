//! keygate-gateway: the HTTP face of keygate. Routers are split by area and merged into
//! one app over a shared [`AppState`].
//!
//! Dependencies run one way: the adapters (`routes`, `pages`, `forward_auth`, `oidc`,
//! `health`) → [`identity`] → the store. Adapters never see the store, and `identity`
//! imports no adapter (the tests below check both); adapters do not import each other,
//! only the leaf modules they share ([`client_addr`], [`meta`], [`request_id`], [`cookies`],
//! [`return_url`], [`tenant_path`], [`error`]). Each response format turns errors into HTTP in one place: problem+json ([`error::ApiError`]), OAuth (`routes::oauth2::OAuthError`),
//! forward-auth ([`forward_auth::Denial`]) and the pages (`pages::refusal`).

pub mod client_addr;
pub mod cookies;
pub mod error;
pub mod forward_auth;
mod health;
mod http_metrics;
pub mod identity;
pub mod json_body;
pub mod meta;
mod oidc;
pub mod openapi;
pub mod pages;
pub mod request_id;
pub mod return_url;
pub mod routes;
mod security_headers;
pub mod server;
pub mod state;
pub mod tenant_path;

pub use state::{AppState, AppStateBuilder};

use axum::Router;

/// Largest request body any route accepts; bigger bodies get 413 before a handler runs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a handler may take once the request has arrived; past it the request is
/// answered 503 and its work dropped. Below the shutdown drain
/// (`KEYGATE_SHUTDOWN_DRAIN_SECONDS`, 20 s by default), so a request accepted before
/// SIGTERM ends, one way or the other, before the drain does.
pub const MAX_REQUEST_TIME: std::time::Duration = std::time::Duration::from_secs(15);

/// The whole gateway: every area's router merged over one state.
pub fn app(state: AppState) -> Router {
    let http_metrics = state.http_metrics.clone();
    let routes = Router::new()
        .merge(health::router())
        .merge(oidc::router())
        .merge(routes::router())
        .merge(openapi::router())
        .merge(pages::router());
    security_headers::apply(routes)
        // Forward-auth answers proxies, not browsers: it sets `nosniff` on denials itself and
        // stays outside the page-header layers, which would cost every check on the hot path.
        .merge(forward_auth::router(&state))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            MAX_REQUEST_TIME,
        ))
        // Counts every answer (a 413 from the body limit, a 503 from the time limit too).
        .layer(http_metrics)
        // Outermost: every answer carries the request id and every log line its span.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id::tag,
        ))
        .with_state(state)
}

/// A listener whose connections send at once (`TCP_NODELAY`): every forward-auth answer is
/// one small write a proxy is waiting on, and Nagle's algorithm may hold such writes back.
pub fn listener(
    tcp: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    tcp.tap_io(no_delay as fn(&mut tokio::net::TcpStream))
}

fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `src/{rel}` (or `src/{rel}` itself when it is a file).
    fn sources(rel: &str) -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel);
        if root.is_file() {
            return vec![root];
        }
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files
    }

    fn offenders(areas: &[&str], forbidden: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for area in areas {
            for file in sources(area) {
                let text = std::fs::read_to_string(&file).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if forbidden.iter().any(|f| line.contains(f)) {
                        found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn http_facing_modules_never_name_the_store() {
        let found = offenders(
            &[
                "routes",
                "pages",
                "forward_auth",
                "oidc.rs",
                "health.rs",
                "state.rs",
                "error.rs",
                "openapi.rs",
                "lib.rs",
            ],
            &[
                concat!("keygate_core::", "store"),
                concat!("dyn ", "Store"),
                concat!("Store", "Error"),
            ],
        );
        assert!(
            found.is_empty(),
            "the store seen from HTTP code:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn adapters_do_not_import_each_other() {
        let adapters = ["routes", "pages", "forward_auth", "oidc"];
        for area in adapters {
            let others: Vec<String> = adapters
                .iter()
                .filter(|a| **a != area)
                .map(|a| format!("crate::{a}"))
                .collect();
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            let path = if area == "oidc" { "oidc.rs" } else { area };
            let found = offenders(&[path], &others);
            assert!(
                found.is_empty(),
                "{area} imports another adapter:\n{}",
                found.join("\n")
            );
        }
    }

    #[test]
    fn identity_imports_none_of_its_callers() {
        let found = offenders(
            &["identity"],
            &[
                concat!("crate::", "forward_auth"),
                concat!("crate::", "pages"),
                concat!("crate::", "routes"),
                concat!("crate::", "oidc"),
                concat!("crate::", "state"),
                concat!("crate::", "AppState"),
                concat!("crate::", "error"),
            ],
        );
        assert!(
            found.is_empty(),
            "identity depends on an adapter:\n{}",
            found.join("\n")
        );
    }

    #[tokio::test]
    async fn accepted_connections_send_at_once() {
        use axum::serve::Listener;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = super::listener(tcp);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await;
        assert!(
            stream.nodelay().unwrap(),
            "TCP_NODELAY on the accepted side"
        );
    }
}
