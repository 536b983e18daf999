//! Requests counted by route template, method and status code, and their latency, as one
//! tower layer around every route ([`crate::app`]). The route label is axum's
//! [`MatchedPath`] (`/t/{tenant}/login`, never the raw path; `unmatched` for a 404 that no
//! route took) and the method one of a fixed set, so the series stay bounded whatever
//! clients send.
//!
//! Forward-auth runs through this layer on every protected request, so the per-request
//! cost is kept to two clock reads, one map lookup under a read lock, one counter increment
//! and one histogram observation: the label children of a route are resolved the first time
//! it is seen and kept, never built from strings per request.

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Response};
use pin_project_lite::pin_project;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// Label of a request no route matched.
const UNMATCHED: &str = "unmatched";
/// Method labels; any other method counts as `other`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
];
/// Latency buckets (seconds): forward-auth answers in well under a millisecond, a sign-in
/// (argon2id) in tens to hundreds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The layer; cheap to clone (one shared table).
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer(Option<Arc<Families>>);

#[derive(Debug)]
struct Families {
    requests: IntCounterVec,
    duration: HistogramVec,
    routes: RwLock<HashMap<Box<str>, Arc<RouteChildren>>>,
}

/// One route's resolved children: its histogram, and a counter per (method, code) seen.
#[derive(Debug)]
struct RouteChildren {
    route: Box<str>,
    duration: Histogram,
    counters: RwLock<Vec<(u8, u16, IntCounter)>>,
}

impl HttpMetricsLayer {
    /// The layer, counting in `registry` (`keygate_http_requests_total`,
    /// `keygate_http_request_duration_seconds`). A registry that already holds them keeps
    /// its own and this layer counts nothing: metrics never stop a request.
    pub fn new(registry: &prometheus::Registry) -> Self {
        match Families::new(registry) {
            Ok(f) => Self(Some(Arc::new(f))),
            Err(e) => {
                tracing::warn!(error = %e, "HTTP metrics not registered");
                Self(None)
            }
        }
    }
}

impl Families {
    fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "keygate_http_requests_total",
                "HTTP requests answered, by route template, method and status code",
            ),
            &["route", "method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "keygate_http_request_duration_seconds",
                "Time to answer an HTTP request (until the response head), by route template",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            requests,
            duration,
            routes: RwLock::default(),
        })
    }

    /// The children of `route`, made the first time it is seen.
    fn route(&self, route: &str) -> Option<Arc<RouteChildren>> {
        if let Some(found) = self.routes.read().ok()?.get(route) {
            return Some(found.clone());
        }
        let mut routes = self.routes.write().ok()?;
        let made = routes.entry(route.into()).or_insert_with(|| {
            Arc::new(RouteChildren {
                route: route.into(),
                duration: self.duration.with_label_values(&[route]),
                counters: RwLock::default(),
            })
        });
        Some(made.clone())
    }
}

impl RouteChildren {
    /// Counts one answer with `code` to a `method` request, taking `seconds`.
    fn observe(&self, requests: &IntCounterVec, method: u8, code: u16, seconds: f64) {
        self.duration.observe(seconds);
        let hit = self.counters.read().ok().and_then(|c| {
            c.iter()
                .find(|(m, s, _)| *m == method && *s == code)
                .map(|(_, _, counter)| counter.inc())
        });
        if hit.is_some() {
            return;
        }
        if let Ok(mut counters) = self.counters.write() {
            let method_label = METHODS.get(usize::from(method)).copied().unwrap_or("other");
            let counter =
                requests.with_label_values(&[&*self.route, method_label, &code.to_string()]);
            counter.inc();
            counters.push((method, code, counter));
        }
    }
}

fn method_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            families: self.0.clone(),
        }
    }
}

/// The service [`HttpMetricsLayer`] wraps each route in.
#[derive(Clone, Debug)]
pub struct HttpMetrics<S> {
    inner: S,
    families: Option<Arc<Families>>,
}

impl<S, B> tower::Service<Request> for HttpMetrics<S>
where
    S: tower::Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let seen = self.families.as_ref().and_then(|f| {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or(UNMATCHED, MatchedPath::as_str);
            Some(Seen {
                families: f.clone(),
                route: f.route(route)?,
                method: method_index(request.method()),
                started: Instant::now(),
            })
        });
        Measured {
            inner: self.inner.call(request),
            seen,
        }
    }
}

/// What a request needs counted once its answer is ready.
#[derive(Debug)]
struct Seen {
    families: Arc<Families>,
    route: Arc<RouteChildren>,
    method: u8,
    started: Instant,
}

pin_project! {
    /// The inner service's future, counted when it resolves.
    #[derive(Debug)]
    pub struct Measured<F> {
        #[pin]
        inner: F,
        seen: Option<Seen>,
    }
}

impl<F, B, E> Future for Measured<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(seen)) = (&output, this.seen.take()) {
            seen.route.observe(
                &seen.families.requests,
                seen.method,
                response.status().as_u16(),
                seen.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(output)
    }
}

/// The sum of a counter (or a histogram's sample count, for `_seconds`) over the series of
/// `name` carrying `labels`: what unit tests of metrics read back from their registry.
#[cfg(test)]
pub(crate) fn sample(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| {
            if name.ends_with("_seconds") {
                m.get_histogram().get_sample_count() as f64
            } else {
                m.get_counter().get_value()
            }
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{HttpMetricsLayer, sample};
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_never_by_raw_path() {
        let registry = prometheus::Registry::new();
        let app = Router::new()
            .route("/t/{tenant}/x", get(|| async { "ok" }))
            .layer(HttpMetricsLayer::new(&registry));
        for uri in ["/t/acme/x", "/t/other/x", "/nowhere/1", "/nowhere/2"] {
            let request = Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let requests = "keygate_http_requests_total";
        let ok = [
            ("route", "/t/{tenant}/x"),
            ("method", "GET"),
            ("code", "200"),
        ];
        assert_eq!(sample(&registry, requests, &ok), 2.0);
        let missed = [("route", "unmatched"), ("code", "404")];
        assert_eq!(sample(&registry, requests, &missed), 2.0);
        let seconds = "keygate_http_request_duration_seconds";
        assert_eq!(
            sample(&registry, seconds, &[("route", "/t/{tenant}/x")]),
            2.0
        );
        // Four requests, two series: no raw path became a label.
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            !text.contains("acme") && !text.contains("nowhere"),
            "{text}"
        );
    }
}
