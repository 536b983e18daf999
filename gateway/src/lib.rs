//! keygate-gateway: the HTTP face of keygate. Routers are split by area and merged into
//! one app over a shared [`AppState`]; errors become RFC 9457 problems in one place
//! ([`error::ApiError`]).

pub mod client_addr;
pub mod error;
pub mod forward_auth;
mod health;
pub mod identity;
pub mod keys;
mod loading_cache;
mod oidc;
pub mod openapi;
pub mod pages;
pub mod routes;
mod security_headers;
pub mod server;
pub mod state;

pub use state::AppState;

use axum::Router;

/// Largest request body any route accepts; bigger bodies get 413 before a handler runs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole gateway: every area's router merged over one state.
pub fn app(state: AppState) -> Router {
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
