//! Envoy gRPC ext_authz (`Authorization/Check`) throughput and p99 beside a bare tonic
//! service that answers every check OK, in the same process and run (not a test:
//! `cargo bench -p keygate-gateway --bench ext_authz`).
//!
//! The gateway runs with the real `IdentityService` on SQLite. Load comes from a small tonic
//! client in the same process: `KG_BENCH_CONCURRENCY` tasks (default 64) sending one
//! `CheckRequest` after another over `KG_BENCH_CHANNELS` HTTP/2 connections (default 4), for
//! `KG_BENCH_SECONDS` (default 2) per measurement, `KG_BENCH_ROUNDS` rounds (default 3,
//! medians shown), bare and ours alternating who goes first. Scenarios: an access token the
//! gateway has already seen, and an API key. Client, bare service and gateway share the
//! machine's cores (one runtime), so the ratio, not the absolute rate, is the figure.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::rpc;
use keygate_gateway::forward_auth::grpc::{self, ExtAuthz, GrpcSettings};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{Options, ada, real};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Answers every check OK: the floor of a gRPC check on this machine.
struct Bare;

#[tonic::async_trait]
impl Authorization for Bare {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                message: String::new(),
                details: Vec::new(),
            }),
            ..CheckResponse::default()
        }))
    }
}

fn check_request(requirements: &str, header: (&str, &str)) -> CheckRequest {
    let mut headers = HashMap::new();
    headers.insert(header.0.to_owned(), header.1.to_owned());
    headers.insert("accept".to_owned(), "application/json".to_owned());
    let mut extensions = HashMap::new();
    extensions.insert("keygate".to_owned(), requirements.to_owned());
    CheckRequest {
        attributes: Some(AttributeContext {
            context_extensions: extensions,
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: "app.example.com".into(),
                    path: "/orders?id=1".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/2".into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

struct Run {
    rps: f64,
    p99_ms: f64,
    errors: u64,
}

/// `concurrency` tasks over `channels` connections to `target`, for `seconds`.
async fn load(
    target: &str,
    request: &CheckRequest,
    seconds: u64,
    concurrency: u64,
    channels: u64,
) -> Run {
    let mut clients = Vec::new();
    for _ in 0..channels {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        clients.push(AuthorizationClient::new(channel));
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = clients[(i % channels) as usize].clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                match client.check(request.clone()).await {
                    Ok(r) if r.get_ref().status.as_ref().is_some_and(|s| s.code == 0) => {}
                    _ => errors += 1,
                }
                latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0);
    Run {
        rps: all.len() as f64 / elapsed,
        p99_ms: f64::from(p99) / 1000.0,
        errors,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let seconds = env("KG_BENCH_SECONDS", 2);
    let rounds = env("KG_BENCH_ROUNDS", 3).max(1);
    let concurrency = env("KG_BENCH_CONCURRENCY", 64).max(1);
    let channels = env("KG_BENCH_CHANNELS", 4).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gw = support::start(Options {
            real_identity: true,
            ..Options::default()
        })
        .await;
        let (token, _) = real::sign_in(gw.real(), &gw.tenant, &ada(), false).await;
        let (_, key) = real::api_key(&gw.store, &gw.tenant, "bench", &["reader"]).await;
        let ours_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = ours_listener.local_addr().unwrap().to_string();
        tokio::spawn(grpc::serve(
            ours_listener,
            ExtAuthz::new(gw.state.clone(), GrpcSettings::default()),
            std::future::pending(),
        ));
        let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare = bare_listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AuthorizationServer::new(Bare))
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(bare_listener)
                        .with_nodelay(Some(true)),
                ),
        );
        let requirements = format!("tenant={}&role=reader", gw.tenant.name);
        let bearer = format!("Bearer {token}");
        let scenarios = [
            ("JWT, seen", check_request(&requirements, ("authorization", &bearer))),
            ("API key", check_request(&requirements, ("x-api-key", &key))),
        ];
        println!(
            "gRPC ext_authz Check: {concurrency} tasks over {channels} HTTP/2 connections, {seconds} s x {rounds} rounds (medians), client in the same process"
        );
        println!(
            "| scenario | ours req/s | bare req/s | ratio | ours p99 | bare p99 | errors |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (name, request) in &scenarios {
            // Warm the caches (the first check proves the credential).
            load(&ours, request, 1, 4, 1).await;
            let (mut o_rps, mut b_rps, mut o_p99, mut b_p99, mut errors) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
            for round in 0..rounds {
                let (o, b) = if round % 2 == 0 {
                    let o = load(&ours, request, seconds, concurrency, channels).await;
                    let b = load(&bare, request, seconds, concurrency, channels).await;
                    (o, b)
                } else {
                    let b = load(&bare, request, seconds, concurrency, channels).await;
                    let o = load(&ours, request, seconds, concurrency, channels).await;
                    (o, b)
                };
                errors += o.errors + b.errors;
                o_rps.push(o.rps);
                b_rps.push(b.rps);
                o_p99.push(o.p99_ms);
                b_p99.push(b.p99_ms);
            }
            let (o, b) = (median(o_rps), median(b_rps));
            println!(
                "| {name} | {o:.0} | {b:.0} | {:.2} | {:.2} ms | {:.2} ms | {errors} |",
                o / b,
                median(o_p99),
                median(b_p99)
            );
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}
