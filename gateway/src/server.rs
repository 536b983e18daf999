//! Serving the gateway's router on a TCP listener with the limits a public server needs: a
//! client must send its request head within [`ClientTimeouts::header_read`] and its body
//! within [`ClientTimeouts::body`], so half-sent requests cannot hold connections (and the
//! memory behind them) open; a request head (line and headers) larger than
//! [`MAX_HEAD_BYTES`] is answered 431 before any handler runs. axum's own `serve` sets none
//! of these, hence this loop over hyper's connection builder. On shutdown it stops
//! accepting, lets requests in flight finish for [`ClientTimeouts::drain`], then returns.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyDeadlineLayer;

/// Largest request head (request line and headers) read, HTTP/1 and HTTP/2 alike: far above
/// what browsers and proxies send (nginx's default buffers hold 32 KiB), far below hyper's
/// ~400 KiB default. Bigger heads are answered 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long a client may take to send a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// To send the request head (line and headers), counted from the connection's start or
    /// the previous response. Also ends idle keep-alive connections.
    pub header_read: Duration,
    /// To send the whole body (every body keygate reads is at most 64 KiB).
    pub body: Duration,
    /// After shutdown was asked for, how long requests in flight may finish before their
    /// connections are closed (`KEYGATE_SHUTDOWN_DRAIN_SECONDS`).
    pub drain: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body: Duration::from_secs(10),
            drain: Duration::from_secs(20),
        }
    }
}

/// Serves `app` on `tcp` until `shutdown` resolves, then stops accepting and lets requests
/// in flight finish for up to `timeouts.drain`. Each request carries its peer address as
/// axum's `ConnectInfo<SocketAddr>`; accepted connections send at once (`TCP_NODELAY`).
pub async fn serve(
    tcp: TcpListener,
    app: Router,
    timeouts: ClientTimeouts,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(RequestBodyDeadlineLayer::new(timeouts.body));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let service = app
            .clone()
            .map_request(move |request: axum::http::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that stalls or resets ends its own connection: nothing to report.
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    // The listener closes here: new connections are refused while the others drain.
    drop(tcp);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(timeouts.drain) => {
            tracing::warn!("requests still in flight after {}s of shutdown; closing their connections", timeouts.drain.as_secs());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{ClientTimeouts, serve};
    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::{get, post};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const LIMIT: Duration = Duration::from_millis(600);

    async fn server() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let app = Router::new()
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route("/echo", post(|body: axum::body::Bytes| async move { body }));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let timeouts = ClientTimeouts {
            header_read: LIMIT,
            body: LIMIT,
            drain: LIMIT,
        };
        tokio::spawn(serve(tcp, app, timeouts, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Sends `bytes`, then reads until the server closes; returns what it said and when it
    /// closed (a server that never closes fails the test after 5 s).
    async fn send_and_wait_for_close(addr: SocketAddr, bytes: &[u8]) -> (String, Duration) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the server closes a connection whose client stalls")
            .ok();
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn a_half_sent_request_head_is_dropped_after_the_header_timeout() {
        let (addr, _stop) = server().await;
        let (answer, after) =
            send_and_wait_for_close(addr, b"GET /peer HTTP/1.1\r\nHost: gateway\r\nX-Slow: 1")
                .await;
        assert!(!answer.contains(" 200 "), "{answer}");
        assert!(after < LIMIT * 4, "closed after {after:?}");
    }

    #[tokio::test]
    async fn a_body_sent_two_bytes_of_a_hundred_is_refused_after_the_body_timeout() {
        let (addr, _stop) = server().await;
        let (answer, after) = send_and_wait_for_close(
            addr,
            b"POST /echo HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\nab",
        )
        .await;
        assert!(!answer.contains(" 200 "), "{answer}");
        assert!(
            after >= LIMIT / 2 && after < LIMIT * 4,
            "closed after {after:?}"
        );
    }

    #[tokio::test]
    async fn a_request_head_over_the_limit_is_answered_431() {
        let (addr, _stop) = server().await;
        let big = "a".repeat(super::MAX_HEAD_BYTES);
        let request = format!("GET /peer HTTP/1.1\r\nHost: gateway\r\nX-Big: {big}\r\n\r\n");
        let (answer, _) = send_and_wait_for_close(addr, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{}",
            answer.lines().next().unwrap_or_default()
        );
        // A head well under the limit still passes.
        let fine = format!(
            "GET /peer HTTP/1.1\r\nHost: gateway\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(16 * 1024)
        );
        let (answer, _) = send_and_wait_for_close(addr, fine.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn on_shutdown_a_request_in_flight_finishes_and_new_connections_are_refused() {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let timeouts = ClientTimeouts {
            drain: Duration::from_secs(5),
            ..ClientTimeouts::default()
        };
        let server = tokio::spawn(serve(tcp, app, timeouts, async {
            let _ = stopped.await;
        }));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: gateway\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once the request in flight is done")
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[tokio::test]
    async fn a_complete_request_is_served_with_its_peer_address() {
        let (addr, stop) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with(&stream.local_addr().unwrap().to_string()),
            "{answer}"
        );
        stop.send(()).unwrap();
    }
}
