//! Forward-auth throughput and latency beside a bare axum handler, in the same process and
//! the same run (not a test: `cargo bench -p keygate-gateway --bench forward_auth`).
//!
//! The gateway runs with the real `IdentityService` on SQLite; load comes from Debian's
//! `wrk` on 127.0.0.1 with `-t1 -c64`. Scenarios: an access token already seen, an API key,
//! a session cookie, and a stream of never-seen RS256 tokens (each request a new token,
//! pre-signed before the run). In each round the bare handler gets the very same requests
//! just before or after ours (alternating), so the ratio is the cost of our work, not of
//! bigger requests or of the machine's drift. Each scenario is measured at full load, then
//! paced to about half its peak rate for the latency at that load (ours and bare at the same
//! pace, every round). A reference row has the bare handler answer with the very headers of
//! our 200, which separates the cost of the answer's size (hyper, the kernel and wrk handle
//! every header) from the cost of our work.
//!
//! Settings: `KG_BENCH_SECONDS` (default 3), `KG_BENCH_ROUNDS` (default 5, medians shown),
//! `KG_BENCH_UNSEEN_TOKENS` (default 50000 per round, more than a second of the stream on a
//! fast host), `KG_BENCH_WORKERS` (default: the cores), `KG_BENCH_SERVE=<seconds>` (keep both
//! servers up and print wrk commands, for trying load settings or profiling by hand),
//! `KG_BENCH_INPROC_ONLY=1` (skip the HTTP runs, for profiling the handler alone),
//! `KG_BENCH_JWKS_ONLY=1` (only the JWKS row, below).
//!
//! A JWKS row puts `/t/{tenant}/jwks.json` and the discovery document beside `/healthz` of
//! the same server, same load: both come from the identity service's tenant and signing-key
//! caches (JWKS as bytes rendered when the keys were loaded), so they should run close to a
//! trivial route (target >= 0.8x `/healthz`).
//!
//! A second table gives the CPU cost per request through the router without HTTP
//! (`tower::ServiceExt::oneshot`, one task), which other load on the machine distorts far
//! less than the HTTP figures. Each row's notes give the host's steal time while it ran
//! (`/proc/stat`): CPU the hypervisor gave other guests, the main source of drift here.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::{Options, ada, real};

struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
}

fn parse_ms(v: &str) -> f64 {
    let v = v.trim();
    if let Some(x) = v.strip_suffix("us") {
        x.parse::<f64>().unwrap_or(f64::NAN) / 1000.0
    } else if let Some(x) = v.strip_suffix("ms") {
        x.parse().unwrap_or(f64::NAN)
    } else if let Some(x) = v.strip_suffix('s') {
        x.parse::<f64>().unwrap_or(f64::NAN) * 1000.0
    } else {
        f64::NAN
    }
}

fn wrk(url: &str, seconds: u64, script: &std::path::Path, args: &[String]) -> Run {
    wrk_with(url, seconds, 64, script, args)
}

/// `wrk` with `connections` open connections (one thread).
fn wrk_with(
    url: &str,
    seconds: u64,
    connections: u32,
    script: &std::path::Path,
    args: &[String],
) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
        "--timeout",
        "5s",
        "-s",
    ])
    .arg(script)
    .arg(url);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    let out = cmd.output().expect("wrk runs (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = Run {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        non_2xx: 0,
    };
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            run.p50_ms = parse_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            run.p99_ms = parse_ms(v);
        } else if t.contains("requests in") {
            run.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            run.non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    run
}

/// wrk script: fixed headers, optional per-request token from a file, optional pacing (a
/// random wait after each answer, `pause` ms on average).
const SCRIPT: &str = r#"
local tokens = nil
local i = 0
local pause = 0
local extra = {}
function init(args)
  for k, v in pairs(wrk.headers) do extra[k] = v end
  pause = tonumber(args[1] or "0") or 0
  if args[2] and args[2] ~= "" then
    tokens = {}
    for line in io.lines(args[2]) do tokens[#tokens + 1] = line end
  end
  -- Without pacing or a token stream wrk sends its pre-built request: no Lua per request,
  -- so the client takes as little of the shared CPU as it can.
  if pause == 0 then delay = nil end
  if not tokens then request = nil end
end
-- A random wait (whole ms, as wrk's timers are, mean `pause`): with one fixed wait the
-- connections fall into step and fire in bursts, which measures the bursts, not the server.
function delay()
  return math.random(0, 2 * pause)
end
function request()
  if tokens then
    i = i + 1
    if i > #tokens then i = 1 end
    extra["Authorization"] = "Bearer " .. tokens[i]
  end
  return wrk.format("GET", nil, extra)
end
"#;

struct Scenario {
    name: &'static str,
    /// Where the measured requests go.
    url: String,
    /// Where the very same requests go for the baseline.
    bare_url: String,
    /// A reference row (the bare handler with our answer's headers), not a keygate figure.
    reference: bool,
    headers: Vec<(String, String)>,
    /// A never-seen token stream: one pre-signed pool per round (empty: fixed headers).
    token_files: Vec<std::path::PathBuf>,
}

/// The machine's CPU time counters (`/proc/stat`, first line), to report how much CPU the
/// hypervisor gave to other guests (steal) while a scenario ran: on a shared host that is
/// what moves the figures most from run to run. `None` where there is no `/proc/stat`.
#[derive(Clone, Copy)]
struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        Some(Self {
            total: fields.iter().sum(),
            steal: *fields.get(7)?,
        })
    }

    /// Steal as a percentage of all CPU time since `earlier`.
    fn steal_since(self, earlier: Self) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.steal.saturating_sub(earlier.steal) as f64 / total as f64
    }
}

/// "steal x.y %" between two readings, or "steal unknown".
fn steal_note(start: Option<CpuTimes>, end: Option<CpuTimes>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => format!("steal {:.1} %", e.steal_since(s)),
        _ => "steal unknown".to_owned(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn script_with_headers(
    dir: &std::path::Path,
    name: &str,
    headers: &[(String, String)],
) -> std::path::PathBuf {
    let mut s = String::new();
    for (k, v) in headers {
        s.push_str(&format!("wrk.headers[\"{k}\"] = \"{v}\"\n"));
    }
    s.push_str(SCRIPT);
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, s).unwrap();
    path
}

/// Re-signs copies of `template` (a real access token) with fresh `jti`s and an hour of
/// life (the whole run takes longer than an access token lives): tokens the gateway has
/// never seen, each needing a full RS256 verification.
fn mint_unseen(
    template: &str,
    key: &keygate_core::crypto::signing::GeneratedKey,
    n: usize,
    label: &str,
    path: &std::path::Path,
) {
    let mut parts = template.split('.');
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jwt_header.kid = header["kid"].as_str().map(str::to_owned);
    jwt_header.typ = header["typ"].as_str().map(str::to_owned);
    let encoding =
        keygate_core::crypto::signing::encoding_key(key.algorithm, &key.private_pem).unwrap();
    let mut claims = claims;
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = now.into();
    claims["nbf"] = now.into();
    claims["exp"] = (now + 3600).into();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (claims, header, encoding) =
                    (claims.clone(), jwt_header.clone(), encoding.clone());
                s.spawn(move || {
                    (0..n / threads + usize::from(t < n % threads))
                        .map(|i| {
                            let mut c = claims.clone();
                            c["jti"] = serde_json::Value::String(format!("bench-{label}-{t}-{i}"));
                            jsonwebtoken::encode(&header, &c, &encoding).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for t in chunks.iter().flatten() {
        writeln!(f, "{t}").unwrap();
    }
}

/// Mean microseconds per request through `router` (no sockets), after a warm-up.
async fn in_process(
    router: &axum::Router,
    path: &str,
    headers: &[(String, String)],
    n: u32,
) -> f64 {
    use tower::ServiceExt;
    let build = || {
        let mut req = axum::http::Request::builder().uri(path);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req.body(axum::body::Body::empty()).unwrap()
    };
    for _ in 0..1000 {
        let r = router.clone().oneshot(build()).await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let started = std::time::Instant::now();
    for _ in 0..n {
        let r = router.clone().oneshot(build()).await.unwrap();
        std::hint::black_box(r);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let seconds: u64 = std::env::var("KG_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let unseen: usize = std::env::var("KG_BENCH_UNSEEN_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let rounds: usize = std::env::var("KG_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let workers: usize = std::env::var("KG_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: apt-get install -y wrk");
        std::process::exit(1);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    if std::env::var("KG_BENCH_JWKS_ONLY").is_ok() {
        let gw = rt.block_on(support::start(Options {
            real_identity: true,
            ..Options::default()
        }));
        jwks_rows(&gw, dir.path(), seconds, rounds);
        drop(gw);
        rt.shutdown_timeout(Duration::from_secs(1));
        return;
    }
    let (gw, scenarios, inproc_tokens) = rt.block_on(async {
        let gw = support::start(Options {
            real_identity: true,
            ..Options::default()
        })
        .await;
        let (issued, _) = real::sign_in(gw.real(), &gw.tenant, &ada(), false).await;
        // The issued token, re-signed to outlive the run (the same claims and key otherwise).
        let token = {
            let file = dir.path().join("seen.txt");
            mint_unseen(&issued, gw.signing_key.as_ref().unwrap(), 1, "seen", &file);
            std::fs::read_to_string(&file).unwrap().trim().to_owned()
        };
        let (_, key) = real::api_key(&gw.store, &gw.tenant, "bench", &["reader"]).await;
        let (_, _, session) = real::sign_in_browser(gw.real(), &gw.tenant, &ada()).await;
        // The headers of our 200 for the API key, which the reference row answers with.
        let identity_headers = {
            use tower::ServiceExt;
            let request = axum::http::Request::builder()
                .uri(format!(
                    "/forward-auth?tenant={}&role=reader",
                    gw.tenant.name
                ))
                .header("x-api-key", &key)
                .body(axum::body::Body::empty())
                .unwrap();
            let answer = keygate_gateway::app(gw.state.clone())
                .oneshot(request)
                .await
                .unwrap();
            assert!(answer.status().is_success());
            answer.headers().clone()
        };
        // The bare handler: same runtime, same axum::serve, same listener set-up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_url = format!("http://{}", listener.local_addr().unwrap());
        let bare = axum::Router::new()
            .route(
                "/identity-headers",
                axum::routing::any(move || {
                    let headers = identity_headers.clone();
                    async move { (headers, axum::http::StatusCode::OK) }
                }),
            )
            .fallback(|| async { axum::http::StatusCode::OK });
        tokio::spawn(async move {
            let _ = axum::serve(
                keygate_gateway::listener(listener),
                bare.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        let nginx_headers = vec![
            (
                "X-Original-URL".to_owned(),
                "https://app.example.com/orders".to_owned(),
            ),
            ("X-Original-Method".to_owned(), "GET".to_owned()),
        ];
        let with = |k: &str, v: String| {
            let mut h = nginx_headers.clone();
            h.push((k.to_owned(), v));
            h
        };
        let inproc_tokens = dir.path().join("unseen-inproc.txt");
        let started = std::time::Instant::now();
        let pools: Vec<std::path::PathBuf> = (0..rounds)
            .map(|r| {
                let pool = dir.path().join(format!("unseen-{r}.txt"));
                mint_unseen(
                    &token,
                    gw.signing_key.as_ref().unwrap(),
                    unseen,
                    &format!("http{r}"),
                    &pool,
                );
                pool
            })
            .collect();
        mint_unseen(
            &token,
            gw.signing_key.as_ref().unwrap(),
            2000,
            "inproc",
            &inproc_tokens,
        );
        eprintln!(
            "signed {rounds} x {unseen} never-seen RS256 tokens in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let query = format!("/forward-auth?tenant={}&role=reader", gw.tenant.name);
        let (url, bare) = (format!("{}{query}", gw.url), format!("{bare_url}{query}"));
        let scenario = |name, headers, token_files| Scenario {
            name,
            url: url.clone(),
            bare_url: bare.clone(),
            reference: false,
            headers,
            token_files,
        };
        let scenarios = vec![
            Scenario {
                name: "bare + our headers",
                url: format!("{bare_url}/identity-headers"),
                reference: true,
                ..scenario("", with("X-API-Key", key.clone()), Vec::new())
            },
            scenario(
                "JWT, seen",
                with("Authorization", format!("Bearer {token}")),
                Vec::new(),
            ),
            scenario("API key", with("X-API-Key", key), Vec::new()),
            scenario(
                "session cookie",
                with("Cookie", format!("__Host-keygate_session={session}")),
                Vec::new(),
            ),
            scenario("JWT RS256, never seen", nginx_headers.clone(), pools),
        ];
        (gw, scenarios, inproc_tokens)
    });
    // KG_BENCH_SERVE=<seconds> keeps both servers up and prints the wrk commands instead of
    // running them (for trying load settings or profiling by hand).
    if let Some(serve) = std::env::var("KG_BENCH_SERVE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        for sc in scenarios.iter().filter(|s| s.token_files.is_empty()) {
            let script = script_with_headers(
                dir.path(),
                &sc.name.replace([' ', ',', '+'], "_"),
                &sc.headers,
            );
            let bare = &sc.bare_url;
            println!("{}:", sc.name);
            println!(
                "  ours: wrk -t1 -c64 -d3s --latency -s {} '{}' -- 0",
                script.display(),
                sc.url
            );
            println!(
                "  bare: wrk -t1 -c64 -d3s --latency -s {} '{bare}' -- 0",
                script.display()
            );
        }
        std::thread::sleep(Duration::from_secs(serve));
        return;
    }
    println!("keygate forward-auth benchmark");
    println!(
        "load: wrk -t1 -c64 -d{seconds}s --latency, 127.0.0.1 only, {rounds} rounds (medians shown); server: release build, tokio multi-thread runtime ({workers} workers) in this process, real IdentityService on SQLite, in-process ephemeral store"
    );
    println!(
        "baseline: a bare axum handler returning 200 on its own listener in the same runtime, sent the very same requests (headers, token stream, wrk script) in each round, just before or just after ours (alternating)"
    );
    println!(
        "'half load': each connection waits a random 0-4 ms (mean 2) after every answer, with as many connections as make about half the scenario's peak rate (one trial run sets the count); ours then bare at that same pace, every round"
    );
    println!(
        "'bare + our headers': the bare handler answering with the very headers of our 200 for the API key, to tell the cost of the answer's size from the cost of our work"
    );
    println!();
    println!(
        "{:<24} {:>9} {:>9} {:>8} {:>8} {:>9} | {:>9} {:>8} {:>8} {:>10} | notes",
        "scenario",
        "bare r/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "vs bare",
        "half r/s",
        "p50 ms",
        "p99 ms",
        "bare p99",
    );
    // KG_BENCH_INPROC_ONLY=1 skips the HTTP runs (for profiling the handler alone).
    let http_runs = std::env::var("KG_BENCH_INPROC_ONLY").is_err();
    let cpu_all = CpuTimes::now();
    for sc in scenarios.iter().filter(|_| http_runs) {
        let script = script_with_headers(
            dir.path(),
            &sc.name.replace([' ', ',', '+'], "_"),
            &sc.headers,
        );
        let stream = !sc.token_files.is_empty();
        let bare_url = &sc.bare_url;
        // The never-seen stream runs 1 s so each pre-signed pool lasts (see the notes column).
        let secs = if stream { 1 } else { seconds };
        let (mut bare_runs, mut runs) = (Vec::new(), Vec::new());
        let cpu_start = CpuTimes::now();
        for round in 0..rounds {
            let file = sc
                .token_files
                .get(round)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let args = ["0".to_owned(), file];
            // Warm-up (cache fill, connections), not counted; pools are not spent on it.
            if !stream {
                let _ = wrk(bare_url, 1, &script, &args);
                let _ = wrk(&sc.url, 1, &script, &args);
            }
            // Which goes first alternates by round, so a drift of the shared machine within a
            // round does not always favour the same side.
            if round % 2 == 0 {
                bare_runs.push(wrk(bare_url, secs, &script, &args));
                runs.push(wrk(&sc.url, secs, &script, &args));
            } else {
                runs.push(wrk(&sc.url, secs, &script, &args));
                bare_runs.push(wrk(bare_url, secs, &script, &args));
            }
        }
        let ratio = median(
            bare_runs
                .iter()
                .zip(&runs)
                .map(|(b, r)| r.rps / b.rps)
                .collect(),
        );
        let rps = median(runs.iter().map(|r| r.rps).collect());
        let bare_rps = median(bare_runs.iter().map(|r| r.rps).collect());
        let mut notes = Vec::new();
        let failed: u64 = runs.iter().map(|r| r.non_2xx).sum();
        if failed > 0 {
            notes.push(format!("{failed} non-2xx!"));
        }
        if stream {
            let most = runs.iter().map(|r| r.requests).max().unwrap_or(0);
            notes.push(if most <= unseen as u64 {
                format!("every request carried a never-seen token (busiest run: {most} requests, pool {unseen})")
            } else {
                format!("pool of {unseen} ran out: {most} requests in the busiest run, the rest were cached")
            });
        }
        if sc.reference {
            notes.push("reference: no keygate code runs".to_owned());
        }
        // Half load: every connection waits PACE_MS on average after each answer, and the
        // number of connections is set so that together they send half the peak rate (one
        // 1 s trial corrects the estimate); then each round runs ours and bare at that very
        // pace, and the medians are shown. A paced never-seen stream would reuse tokens (measuring the
        // cache), so it is skipped, as is the reference row.
        let half = (!stream && !sc.reference).then(|| {
            const PACE_MS: f64 = 2.0;
            let target = rps / 2.0;
            let p50 = median(runs.iter().map(|r| r.p50_ms).collect());
            let estimate = |per_connection_ms: f64| {
                ((target * per_connection_ms / 1000.0).round() as u32).clamp(4, 1000)
            };
            let args = [format!("{PACE_MS}"), String::new()];
            let guess = estimate(PACE_MS + p50.min(1.0));
            let trial = wrk_with(&sc.url, 1, guess, &script, &args);
            let connections = if trial.rps > 0.0 {
                ((f64::from(guess) * target / trial.rps).round() as u32).clamp(4, 1000)
            } else {
                guess
            };
            let (ours, bare): (Vec<Run>, Vec<Run>) = (0..rounds)
                .map(|round| {
                    let ours = || wrk_with(&sc.url, seconds, connections, &script, &args);
                    let bare = || wrk_with(bare_url, seconds, connections, &script, &args);
                    if round % 2 == 0 {
                        let o = ours();
                        (o, bare())
                    } else {
                        let b = bare();
                        (ours(), b)
                    }
                })
                .unzip();
            let of = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
            (
                of(&ours, |r| r.rps),
                of(&ours, |r| r.p50_ms),
                of(&ours, |r| r.p99_ms),
                of(&bare, |r| r.p99_ms),
            )
        });
        notes.push(steal_note(cpu_start, CpuTimes::now()));
        let (hr, h50, h99, b99) = half.map_or(
            ("-".into(), "-".into(), "-".into(), "-".into()),
            |(rps, p50, p99, bare_p99)| {
                (
                    format!("{rps:.0}"),
                    format!("{p50:.2}"),
                    format!("{p99:.2}"),
                    format!("{bare_p99:.2}"),
                )
            },
        );
        println!(
            "{:<24} {:>9.0} {:>9.0} {:>8.2} {:>8.2} {:>8.2}x | {:>9} {:>8} {:>8} {:>10} | {}",
            sc.name,
            bare_rps,
            rps,
            median(runs.iter().map(|r| r.p50_ms).collect()),
            median(runs.iter().map(|r| r.p99_ms).collect()),
            ratio,
            hr,
            h50,
            h99,
            b99,
            notes.join("; ")
        );
    }
    if http_runs {
        println!(
            "host: {} of all CPU time over the HTTP runs (time the hypervisor gave other guests: with steal the ratios drift, see docs/forward-auth.md)",
            steal_note(cpu_all, CpuTimes::now())
        );
    }
    println!();
    println!(
        "in-process cost per request through the router (oneshot, no sockets, one task; request building included):"
    );
    let app = keygate_gateway::app(gw.state.clone());
    let bare = axum::Router::new().fallback(|| async { axum::http::StatusCode::OK });
    rt.block_on(async {
        let nginx = &scenarios.iter().find(|s| !s.reference).unwrap().headers[..2];
        let bare_us = in_process(&bare, "/forward-auth", nginx, 50_000).await;
        println!("  {:<24} {:>8.2} µs", "bare axum handler", bare_us);
        for sc in scenarios
            .iter()
            .filter(|s| s.token_files.is_empty() && !s.reference)
        {
            let path = sc
                .url
                .split_once("127.0.0.1")
                .and_then(|(_, r)| r.split_once('/'))
                .map(|(_, p)| format!("/{p}"))
                .unwrap_or_default();
            let us = in_process(&app, &path, &sc.headers, 50_000).await;
            println!(
                "  {:<24} {:>8.2} µs  (+{:.2} µs over bare)",
                sc.name,
                us,
                us - bare_us
            );
        }
        // Never-seen tokens, each used once: the cost of one full verification per request.
        let tokens: Vec<String> = std::fs::read_to_string(&inproc_tokens)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let unseen_scenario = scenarios
            .iter()
            .find(|s| !s.token_files.is_empty())
            .unwrap();
        let path = format!(
            "/{}",
            unseen_scenario
                .url
                .splitn(4, '/')
                .nth(3)
                .unwrap_or_default()
        );
        let started = std::time::Instant::now();
        for t in &tokens {
            use tower::ServiceExt;
            let mut req = axum::http::Request::builder().uri(path.as_str());
            for (k, v) in &unseen_scenario.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req
                .header("authorization", format!("Bearer {t}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let r = app.clone().oneshot(req).await.unwrap();
            assert!(
                r.status().is_success(),
                "unseen token refused: {}",
                r.status()
            );
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64;
        println!(
            "  {:<24} {:>8.2} µs  (+{:.2} µs over bare; {} tokens, each once)",
            unseen_scenario.name,
            us,
            us - bare_us,
            tokens.len()
        );
    });
    if http_runs {
        println!();
        jwks_rows(&gw, dir.path(), seconds, rounds);
    }
    println!();
    println!(
        "targets (issue 5): >= 0.8x bare for API keys and seen JWTs, >= 0.3x for never-seen RS256, p99 < 2 ms at half the peak rate; JWKS >= 0.8x /healthz"
    );
    drop(gw);
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// JWKS and discovery beside `/healthz` of the same gateway, same load, alternating which
/// goes first each round; prints req/s and the median ratio.
fn jwks_rows(gw: &support::Gateway, dir: &std::path::Path, seconds: u64, rounds: usize) {
    let script = script_with_headers(dir, "plain", &[]);
    let args = ["0".to_owned(), String::new()];
    let healthz = format!("{}/healthz", gw.url);
    println!(
        "JWKS and discovery beside /healthz of the same server (wrk -t1 -c64 -d{seconds}s, {rounds} rounds, medians):"
    );
    println!(
        "{:<24} {:>12} {:>9} {:>10}",
        "route", "/healthz r/s", "req/s", "vs healthz"
    );
    for (name, path) in [
        ("JWKS", format!("/t/{}/jwks.json", gw.tenant.name)),
        (
            "metadata",
            format!(
                "/.well-known/oauth-authorization-server/t/{}",
                gw.tenant.name
            ),
        ),
    ] {
        let url = format!("{}{path}", gw.url);
        let _ = wrk(&healthz, 1, &script, &args);
        let _ = wrk(&url, 1, &script, &args);
        let (mut base, mut ours) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                base.push(wrk(&healthz, seconds, &script, &args));
                ours.push(wrk(&url, seconds, &script, &args));
            } else {
                ours.push(wrk(&url, seconds, &script, &args));
                base.push(wrk(&healthz, seconds, &script, &args));
            }
        }
        let failed: u64 = ours.iter().map(|r| r.non_2xx).sum();
        assert_eq!(failed, 0, "{name} answered non-2xx under load");
        let ratio = median(base.iter().zip(&ours).map(|(b, r)| r.rps / b.rps).collect());
        println!(
            "{:<24} {:>12.0} {:>9.0} {:>9.2}x",
            name,
            median(base.iter().map(|r| r.rps).collect()),
            median(ours.iter().map(|r| r.rps).collect()),
            ratio
        );
    }
}
