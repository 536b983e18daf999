//! Leader election on a coordination.k8s.io/v1 Lease, over a mocked API server.

use super::*;
use http::{Method, Request, Response};
use keygate_operator::leader::{LeaderElector, LeaseConfig};
use kube::client::Body;
use std::time::Duration as StdDuration;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/keygate/leases/keygate-operator";

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn elector(identity: &str, clock: Arc<ManualClock>) -> (LeaderElector, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "keygate");
    (
        LeaderElector::new(client, LeaseConfig::new("keygate", identity), clock),
        handle,
    )
}

async fn next(
    handle: &mut Handle,
    method: Method,
    path: &str,
) -> (
    serde_json::Value,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    // Longer than a renew period: under paused time the elector's own sleep must end first.
    let (request, send) = tokio::time::timeout(StdDuration::from_secs(60), handle.next_request())
        .await
        .expect("a request")
        .expect("client alive");
    assert_eq!(request.method(), method);
    assert_eq!(request.uri().to_string(), path);
    let bytes = request.into_body().collect_bytes().await.unwrap();
    (
        if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        },
        send,
    )
}

fn reply(
    send: tower_test::mock::SendResponse<Response<Body>>,
    code: u16,
    body: &serde_json::Value,
) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn not_found() -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn lease(holder: &str, renewed: DateTime<Utc>, transitions: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "keygate-operator", "namespace": "keygate", "resourceVersion": "17"},
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": "2025-12-31T23:00:00.000000Z",
            "renewTime": renewed.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "leaseTransitions": transitions
        }
    })
}

#[tokio::test]
async fn acquires_an_absent_lease_by_creating_it() {
    let clock = Arc::new(ManualClock::new(t0()));
    let (elector, mut api) = elector("pod-a", clock);
    let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 404, &not_found());
    let (body, send) = next(
        &mut api,
        Method::POST,
        "/apis/coordination.k8s.io/v1/namespaces/keygate/leases?",
    )
    .await;
    assert_eq!(body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(body["spec"]["leaseTransitions"], 0);
    assert_eq!(body["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
    reply(send, 201, &body);
    assert!(task.await.unwrap().unwrap());
}

#[tokio::test]
async fn the_holder_renews_with_the_resource_version_it_read() {
    let clock = Arc::new(ManualClock::new(t0()));
    let (elector, mut api) = elector("pod-a", clock.clone());
    clock.advance(Duration::seconds(5));
    let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 200, &lease("pod-a", t0(), 0));
    let (body, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
    assert_eq!(body["metadata"]["resourceVersion"], "17");
    assert_eq!(body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(body["spec"]["renewTime"], "2026-01-01T00:00:05.000000Z");
    assert_eq!(
        body["spec"]["leaseTransitions"], 0,
        "a renewal is not a transition"
    );
    reply(send, 200, &body);
    assert!(task.await.unwrap().unwrap());
}

#[tokio::test]
async fn a_standby_waits_while_the_lease_is_valid_and_takes_it_over_after_expiry() {
    let clock = Arc::new(ManualClock::new(t0()));
    let (elector, mut api) = elector("pod-b", clock.clone());
    // The leader renewed at t0 and then died. 14 s later the Lease is still valid.
    clock.advance(Duration::seconds(14));
    let standby = elector.clone();
    let task = tokio::spawn(async move { standby.try_acquire_or_renew().await });
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 200, &lease("pod-a", t0(), 3));
    assert!(
        !task.await.unwrap().unwrap(),
        "no write while another replica holds a valid Lease"
    );

    // One check later (renew period 5 s) it has expired: pod-b takes over.
    clock.advance(Duration::seconds(5));
    let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 200, &lease("pod-a", t0(), 3));
    let (body, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
    assert_eq!(body["spec"]["holderIdentity"], "pod-b");
    assert_eq!(body["spec"]["leaseTransitions"], 4);
    assert_eq!(body["spec"]["acquireTime"], "2026-01-01T00:00:19.000000Z");
    assert_eq!(body["metadata"]["resourceVersion"], "17");
    reply(send, 200, &body);
    assert!(task.await.unwrap().unwrap());
}

#[tokio::test]
async fn of_two_replicas_racing_for_an_expired_lease_the_conflict_loses() {
    let clock = Arc::new(ManualClock::new(t0()));
    let (elector, mut api) = elector("pod-c", clock.clone());
    clock.advance(Duration::seconds(60));
    let task = tokio::spawn(async move { elector.try_acquire_or_renew().await });
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 200, &lease("pod-a", t0(), 1));
    let (_, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
    reply(
        send,
        409,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
    );
    assert!(!task.await.unwrap().unwrap());
}

#[tokio::test(start_paused = true)]
async fn work_runs_only_while_leading_and_stops_when_the_lease_is_lost() {
    let clock = Arc::new(ManualClock::new(t0()));
    let (elector, mut api) = elector("pod-a", clock.clone());
    let leader = prometheus::IntGauge::new("keygate_operator_leader", "test").unwrap();
    let elector = elector.with_leader_gauge(leader.clone());
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = started.clone();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped_flag = stopped.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(async move {
        elector
            .run(
                move || {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let guard = SetOnDrop(stopped_flag.clone());
                    async move {
                        let _guard = guard;
                        std::future::pending::<()>().await
                    }
                },
                async {
                    let _ = stop_rx.await;
                },
            )
            .await;
    });
    // Round 1: another replica holds a valid Lease: no work.
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 200, &lease("pod-z", t0(), 0));
    // Round 2: it expired; we take over and start the work.
    clock.advance(Duration::seconds(20));
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 200, &lease("pod-z", t0(), 0));
    let (body, send) = next(&mut api, Method::PUT, &format!("{LEASE}?")).await;
    reply(send, 200, &body);
    assert!(!stopped.load(std::sync::atomic::Ordering::SeqCst));
    // Round 3: someone else took it (e.g. we were partitioned): the work stops.
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    assert_eq!(leader.get(), 1, "the leader gauge is set while leading");
    reply(send, 200, &lease("pod-z", clock.now_utc(), 1));
    // Shutdown: the Lease is not ours, so nothing is released.
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    assert_eq!(leader.get(), 0, "the leader gauge drops with the Lease");
    let _ = stop_tx.send(());
    reply(send, 200, &lease("pod-z", clock.now_utc(), 1));
    let (_, send) = next(&mut api, Method::GET, LEASE).await;
    reply(send, 200, &lease("pod-z", clock.now_utc(), 1));
    tokio::time::timeout(StdDuration::from_secs(30), runner)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        stopped.load(std::sync::atomic::Ordering::SeqCst),
        "the work was stopped when the Lease was lost"
    );
}

/// Sets its flag when dropped (an aborted task drops its future).
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
