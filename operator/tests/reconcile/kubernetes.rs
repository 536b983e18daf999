//! The Kubernetes source over a mocked API server: each request's method, path and body.

use super::*;
use http::{Method, Request, Response};
use keygate_crds::{ApiKey, Resource as AnyResource, Tenant};
use keygate_operator::kubernetes::{KubeContext, error_policy, reconcile};
use kube::client::Body;
use std::time::Duration as StdDuration;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

struct Api {
    handle: Handle,
}

impl Api {
    /// Takes the next request, checks method and path (with query), returns its JSON body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
    ) -> (
        serde_json::Value,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (request, send) =
            tokio::time::timeout(StdDuration::from_secs(5), self.handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
                .expect("client dropped");
        assert_eq!(request.method(), method, "method of {}", request.uri());
        assert_eq!(request.uri().to_string(), path);
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (body, send)
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
}

fn context(h: &Harness) -> (Arc<KubeContext>, Api) {
    context_with(h, h.revocations.clone())
}

/// A context whose API-key revocations go to `revocations`.
fn context_with(
    h: &Harness,
    revocations: Arc<dyn keygate_core::ephemeral::Ephemeral>,
) -> (Arc<KubeContext>, Api) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let kc = KubeContext::new(
        h.ctx.clone(),
        client,
        Some(revocations),
        StdDuration::from_secs(300),
    );
    (Arc::new(kc), Api { handle })
}

fn parse<T: Clone>(yaml: &str, pick: fn(AnyResource) -> Option<T>) -> T {
    keygate_crds::load_manifests(yaml)
        .unwrap()
        .into_iter()
        .find_map(pick)
        .unwrap()
}

fn kube_api_key(finalized: bool) -> ApiKey {
    let mut key = parse(&api_key("ci", ""), |r| match r {
        AnyResource::ApiKey(k) => Some(k),
        _ => None,
    });
    key.metadata.uid = Some("6f1c8d9e-0000-4000-8000-000000000001".into());
    key.metadata.generation = Some(2);
    key.metadata.resource_version = Some("41".into());
    if finalized {
        key.metadata.finalizers = Some(vec![keygate_crds::FINALIZER.into()]);
    }
    key
}

fn kube_tenant(finalized: bool) -> Tenant {
    let mut tenant = parse(&super::tenant("demo", "default", ""), |r| match r {
        AnyResource::Tenant(t) => Some(t),
        _ => None,
    });
    tenant.metadata.uid = Some("6f1c8d9e-0000-4000-8000-00000000000a".into());
    tenant.metadata.generation = Some(7);
    if finalized {
        tenant.metadata.finalizers = Some(vec![keygate_crds::FINALIZER.into()]);
    }
    tenant
}

const KEYS: &str = "/apis/keygate.dev/v1alpha1/namespaces/default/apikeys";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events?";
const SSA: &str = "?&force=true&fieldManager=keygate-operator";
const SECRET: &str = "/api/v1/namespaces/default/secrets/ci-secret";

impl Api {
    /// The Secret step of an ApiKey reconcile: its name is looked up (answered with
    /// `existing`, or 404), then the Secret is applied; returns the applied Secret.
    async fn secret_applied(&mut self, existing: Option<serde_json::Value>) -> serde_json::Value {
        let (_, send) = self.expect(Method::GET, SECRET).await;
        match existing {
            Some(found) => Api::reply(send, 200, &found),
            None => Api::reply(send, 404, &not_found()),
        }
        let (secret, send) = self.expect(Method::PATCH, &format!("{SECRET}{SSA}")).await;
        Api::reply(send, 200, &secret);
        secret
    }
}

#[sqlx::test(migrations = false)]
async fn a_new_object_first_gets_the_finalizer(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    let (kc, mut api) = context(&h);
    let key = kube_api_key(false);
    let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc));
    let (patch, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
    assert_eq!(
        patch,
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": ["keygate.dev/cleanup"] }
        ])
    );
    Api::reply(
        send,
        200,
        &serde_json::to_value(kube_api_key(true)).unwrap(),
    );
    task.await.unwrap().unwrap();
    // Nothing was written to the store before the finalizer was in place.
    h.write("tenant.yaml", &super::tenant("demo", "default", ""));
    h.sync().await;
    assert!(
        h.ctx
            .store
            .list_api_keys(h.tenant_id("demo").await)
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrations = false)]
async fn api_key_secret_events_status_then_cleanup(pool: PgPool) {
    let captured = Captured::start();

    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &super::tenant("demo", "default", ""));
    h.sync().await;
    let (kc, mut api) = context(&h);
    let key = kube_api_key(true);
    let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc.clone()));

    // The Secret name is looked up first (someone else's Secret is never overwritten),
    // then the Secret is applied: server-side apply, owned by the ApiKey, labelled.
    let secret = api.secret_applied(None).await;
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(
        secret["metadata"]["ownerReferences"],
        serde_json::json!([{
            "apiVersion": "keygate.dev/v1alpha1", "kind": "ApiKey", "name": "ci",
            "uid": "6f1c8d9e-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true
        }])
    );
    assert_eq!(secret["metadata"]["labels"]["keygate.dev/api-key"], "ci");
    assert_eq!(secret["metadata"]["labels"]["keygate.dev/tenant"], "demo");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "keygate-operator"
    );
    let raw: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"]["apiKey"].clone()).unwrap();
    let raw = String::from_utf8(raw.0).unwrap();
    assert!(raw.starts_with("kg_"));

    // Event: the key was issued (named by its prefix only).
    let (event, send) = api.expect(Method::POST, EVENTS).await;
    assert_eq!(event["reason"], "KeyIssued");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["kind"], "ApiKey");
    assert_eq!(
        event["regarding"]["uid"],
        "6f1c8d9e-0000-4000-8000-000000000001"
    );
    Api::reply(send, 201, &event);
    // Event: Ready became True.
    let (ready_event, send) = api.expect(Method::POST, EVENTS).await;
    assert_eq!(ready_event["reason"], "Reconciled");
    Api::reply(send, 201, &ready_event);

    // Status by server-side apply, with conditions and observedGeneration.
    let (status, send) = api
        .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
        .await;
    assert_eq!(status["apiVersion"], "keygate.dev/v1alpha1");
    assert_eq!(status["kind"], "ApiKey");
    assert_eq!(status["status"]["observedGeneration"], 2);
    assert_eq!(status["status"]["secretName"], "ci-secret");
    let condition = &status["status"]["conditions"][0];
    assert_eq!(
        (condition["type"].as_str(), condition["status"].as_str()),
        (Some("Ready"), Some("True"))
    );
    assert_eq!(condition["observedGeneration"], 2);
    let mut updated = key.clone();
    updated.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
    Api::reply(send, 200, &serde_json::to_value(&updated).unwrap());
    task.await.unwrap().unwrap();
    assert!(h.accepted("demo", &raw).await);

    // A second reconcile of the same object: the Secret is read, nothing is written.
    let task = tokio::spawn(reconcile(Arc::new(updated.clone()), kc.clone()));
    let (_, send) = api.expect(Method::GET, SECRET).await;
    Api::reply(send, 200, &secret);
    task.await.unwrap().unwrap();

    // Deletion: keys revoked at once, the Secret deleted, the finalizer removed.
    let mut deleting = updated.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_767_225_600).unwrap(),
        ));
    let task = tokio::spawn(reconcile(Arc::new(deleting.clone()), kc.clone()));
    let (_, send) = api
        .expect(
            Method::DELETE,
            "/api/v1/namespaces/default/secrets/ci-secret?",
        )
        .await;
    Api::reply(
        send,
        404,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "gone"}),
    );
    let (patch, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
    assert_eq!(
        patch,
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers/0", "value": "keygate.dev/cleanup" },
            { "op": "remove", "path": "/metadata/finalizers/0" }
        ])
    );
    deleting.metadata.finalizers = None;
    Api::reply(send, 200, &serde_json::to_value(&deleting).unwrap());
    task.await.unwrap().unwrap();
    assert!(
        !h.accepted("demo", &raw).await,
        "deleting the ApiKey revokes its key at once"
    );
    let id = h.lookup("demo", &raw).await.unwrap().id;
    assert!(h.revocations.revocations().contains(&id.to_string()));

    let logs = captured.logs();
    let secret_part = secret_of(&raw);
    assert!(!logs.contains(secret_part), "the raw key is in no log line");
    assert!(!event.to_string().contains(secret_part) && !status.to_string().contains(secret_part));
}

fn not_found() -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

#[sqlx::test(migrations = false)]
async fn a_user_secret_of_the_same_name_is_not_overwritten(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &super::tenant("demo", "default", ""));
    h.sync().await;
    let (kc, mut api) = context(&h);
    let key = kube_api_key(true);
    let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc.clone()));

    // The Secret exists, created by a person: no ownerReference, no keygate labels.
    let (_, send) = api.expect(Method::GET, SECRET).await;
    Api::reply(
        send,
        200,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "ci-secret", "namespace": "default", "uid": "0000-user",
                "labels": { "app": "billing" }
            },
            "data": { "apiKey": "bXktb3duLXZhbHVl" }
        }),
    );

    // A Warning Event naming the Secret, then Ready=False with reason SecretConflict.
    let (event, send) = api.expect(Method::POST, EVENTS).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("SecretConflict"))
    );
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("Secret default/ci-secret"),
        "{event}"
    );
    Api::reply(send, 201, &event);
    let (status, send) = api
        .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
        .await;
    let condition = &status["status"]["conditions"][0];
    assert_eq!(
        (condition["status"].as_str(), condition["reason"].as_str()),
        (Some("False"), Some("SecretConflict"))
    );
    assert!(status["status"].get("keyPrefix").is_none());
    Api::reply(send, 200, &serde_json::to_value(&key).unwrap());
    task.await.unwrap().unwrap();

    // No PUT, PATCH or DELETE of the Secret came, and no key was stored.
    assert!(
        tokio::time::timeout(StdDuration::from_millis(300), api.handle.next_request())
            .await
            .is_err(),
        "no further request"
    );
    assert!(
        h.ctx
            .store
            .list_api_keys(h.tenant_id("demo").await)
            .await
            .unwrap()
            .is_empty()
    );

    // A Secret keygate wrote for this ApiKey (its ownerReference) is taken as its own.
    let mut updated = key.clone();
    updated.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
    let task = tokio::spawn(reconcile(Arc::new(updated), kc.clone()));
    let secret = api
        .secret_applied(Some(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "ci-secret", "namespace": "default",
                "ownerReferences": [{
                    "apiVersion": "keygate.dev/v1alpha1", "kind": "ApiKey", "name": "ci",
                    "uid": "6f1c8d9e-0000-4000-8000-000000000001", "controller": true
                }]
            },
            "data": {}
        })))
        .await;
    assert!(secret["data"]["apiKey"].is_string());
    let (event, send) = api.expect(Method::POST, EVENTS).await;
    assert_eq!(event["reason"], "KeyIssued");
    Api::reply(send, 201, &event);
    let (event, send) = api.expect(Method::POST, EVENTS).await;
    assert_eq!(event["reason"], "Reconciled");
    Api::reply(send, 201, &event);
    let (status, send) = api
        .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
        .await;
    assert_eq!(status["status"]["conditions"][0]["status"], "True");
    Api::reply(send, 200, &serde_json::to_value(&key).unwrap());
    task.await.unwrap().unwrap();
}

#[sqlx::test(migrations = false)]
async fn a_deleted_api_key_is_refused_by_a_gateway_replica_through_redis(pool: PgPool) {
    use keygate_core::ephemeral::RedisEphemeral;
    let url =
        std::env::var("KEYGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // One Redis, a prefix of this test's own; the operator and a gateway replica each
    // hold their own connection, as in a cluster.
    let prefix = format!("kgtest:{}:", uuid::Uuid::new_v4());
    let operator_side = Arc::new(RedisEphemeral::connect(&url, &prefix).await.unwrap());
    let gateway = RedisEphemeral::connect(&url, &prefix).await.unwrap();

    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &super::tenant("demo", "default", ""));
    h.sync().await;
    let (kc, mut api) = context_with(&h, operator_side);
    let key = kube_api_key(true);

    // Issue the key (the Secret is new).
    let task = tokio::spawn(reconcile(Arc::new(key.clone()), kc.clone()));
    let secret = api.secret_applied(None).await;
    let raw: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"]["apiKey"].clone()).unwrap();
    let raw = String::from_utf8(raw.0).unwrap();
    for _ in 0..2 {
        let (event, send) = api.expect(Method::POST, EVENTS).await;
        Api::reply(send, 201, &event);
    }
    let (_, send) = api
        .expect(Method::PATCH, &format!("{KEYS}/ci/status{SSA}"))
        .await;
    Api::reply(send, 200, &serde_json::to_value(&key).unwrap());
    task.await.unwrap().unwrap();
    let id = h.lookup("demo", &raw).await.unwrap().id.to_string();
    assert!(!gateway.revocations().contains(&id));

    // Delete the ApiKey: the revocation reaches the gateway replica's local set.
    let mut deleting = key.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_767_225_600).unwrap(),
        ));
    let task = tokio::spawn(reconcile(Arc::new(deleting.clone()), kc.clone()));
    let (_, send) = api
        .expect(
            Method::DELETE,
            "/api/v1/namespaces/default/secrets/ci-secret?",
        )
        .await;
    Api::reply(send, 404, &not_found());
    let (_, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
    deleting.metadata.finalizers = None;
    Api::reply(send, 200, &serde_json::to_value(&deleting).unwrap());
    task.await.unwrap().unwrap();
    let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
    while !gateway.revocations().contains(&id) {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway replica never heard of the revocation"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn tenant_status_patch_carries_issuer_and_generation(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    let (kc, mut api) = context(&h);
    let tenant = kube_tenant(true);
    let task = tokio::spawn(reconcile(Arc::new(tenant.clone()), kc));
    let (event, send) = api.expect(Method::POST, EVENTS).await;
    assert_eq!(
        (
            event["reason"].as_str(),
            event["regarding"]["kind"].as_str()
        ),
        (Some("Reconciled"), Some("Tenant"))
    );
    Api::reply(send, 201, &event);
    let (status, send) = api
        .expect(
            Method::PATCH,
            &format!("/apis/keygate.dev/v1alpha1/namespaces/default/tenants/demo/status{SSA}"),
        )
        .await;
    assert_eq!(
        status["status"]["issuerUrl"],
        "https://auth.example.com/t/demo"
    );
    assert_eq!(status["status"]["observedGeneration"], 7);
    assert_eq!(status["status"]["conditions"][0]["reason"], "Reconciled");
    Api::reply(send, 200, &serde_json::to_value(&tenant).unwrap());
    task.await.unwrap().unwrap();
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert_eq!(stored.owner_uid, "6f1c8d9e-0000-4000-8000-00000000000a");
    assert_eq!(stored.generation, 7);
}

#[sqlx::test(migrations = false)]
async fn a_missing_idp_secret_is_a_warning_and_a_status_not_an_error(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &super::tenant("demo", "default", ""));
    h.sync().await;
    let (kc, mut api) = context(&h);
    let mut idp = parse(IDP, |r| match r {
        AnyResource::IdentityProvider(i) => Some(i),
        _ => None,
    });
    idp.metadata.uid = Some("6f1c8d9e-0000-4000-8000-0000000000b1".into());
    idp.metadata.generation = Some(1);
    idp.metadata.finalizers = Some(vec![keygate_crds::FINALIZER.into()]);
    let task = tokio::spawn(reconcile(Arc::new(idp.clone()), kc));
    let (_, send) = api
        .expect(Method::GET, "/api/v1/namespaces/default/secrets/corp-oidc")
        .await;
    Api::reply(
        send,
        404,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    );
    let (event, send) = api.expect(Method::POST, EVENTS).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("SecretNotFound"))
    );
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("default/corp-oidc")
    );
    Api::reply(send, 201, &event);
    let (status, send) = api
        .expect(
            Method::PATCH,
            &format!(
                "/apis/keygate.dev/v1alpha1/namespaces/default/identityproviders/corp/status{SSA}"
            ),
        )
        .await;
    let condition = &status["status"]["conditions"][0];
    assert_eq!(
        (condition["status"].as_str(), condition["reason"].as_str()),
        (Some("False"), Some("SecretNotFound"))
    );
    Api::reply(send, 200, &serde_json::to_value(&idp).unwrap());
    // Not an error: no crash loop, the Secret watch brings it back when it appears.
    task.await.unwrap().unwrap();
}

#[sqlx::test(migrations = false)]
async fn a_refused_call_is_an_error_with_backoff_and_a_metric(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    let (kc, mut api) = context(&h);
    let key = Arc::new(kube_api_key(false));
    let errors = || {
        h.ctx
            .metrics
            .as_ref()
            .unwrap()
            .errors
            .with_label_values(&["apikey", "finalizer"])
            .get()
    };
    let before = errors();
    let task = tokio::spawn(reconcile(key.clone(), kc.clone()));
    let (_, send) = api.expect(Method::PATCH, &format!("{KEYS}/ci?")).await;
    Api::reply(
        send,
        500,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "boom"}),
    );
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(errors(), before + 1);
    let delays: Vec<_> = (0..4)
        .map(|_| error_policy(key.clone(), &error, kc.clone()))
        .collect();
    assert_eq!(
        delays,
        [5, 10, 20, 40]
            .map(|s| kube::runtime::controller::Action::requeue(StdDuration::from_secs(s)))
    );
}

const CLIENTS: &str = "/apis/keygate.dev/v1alpha1/namespaces/default/oauthclients";
const CLIENT_SECRET: &str = "/api/v1/namespaces/default/secrets/grafana-oidc";

fn kube_oauth_client() -> keygate_crds::OAuthClient {
    let yaml = "apiVersion: keygate.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: grafana\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  type: confidential\n  secretName: grafana-oidc\n  redirectUris: [\"https://grafana.example.com/login/generic_oauth\"]\n  rotation:\n    every: 24h\n    gracePeriod: 1h\n";
    let mut client = parse(yaml, |r| match r {
        AnyResource::OAuthClient(c) => Some(c),
        _ => None,
    });
    client.metadata.uid = Some("6f1c8d9e-0000-4000-8000-0000000000c1".into());
    client.metadata.generation = Some(3);
    client.metadata.finalizers = Some(vec![keygate_crds::FINALIZER.into()]);
    client
}

impl Api {
    /// Answers every request up to and including the status patch of `status_path`: Events
    /// are recorded (their reasons returned), the status is echoed back onto `object`.
    async fn events_then_status(
        &mut self,
        status_path: &str,
        object: &mut keygate_crds::OAuthClient,
    ) -> (Vec<String>, serde_json::Value) {
        let mut reasons = Vec::new();
        loop {
            let (request, send) =
                tokio::time::timeout(StdDuration::from_secs(5), self.handle.next_request())
                    .await
                    .expect("a request")
                    .expect("client dropped");
            let uri = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            if uri.starts_with(EVENTS) {
                reasons.push(body["reason"].as_str().unwrap().to_owned());
                Api::reply(send, 201, &body);
                continue;
            }
            assert_eq!(uri, status_path, "after the Events, the status");
            object.status = Some(serde_json::from_value(body["status"].clone()).unwrap());
            Api::reply(send, 200, &serde_json::to_value(&*object).unwrap());
            return (reasons, body);
        }
    }
}

#[sqlx::test(migrations = false)]
async fn oauth_client_secret_owned_rotated_and_deletion_revokes_its_sessions(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &super::tenant("demo", "default", ""));
    h.sync().await;
    let tenant = h.tenant_id("demo").await;
    let (kc, mut api) = context(&h);
    let mut object = kube_oauth_client();
    let status_path = format!("{CLIENTS}/grafana/status{SSA}");
    let secret_patch = format!("{CLIENT_SECRET}{SSA}");

    // First reconcile: the Secret name is looked up, then the owned Secret applied.
    let task = tokio::spawn(reconcile(Arc::new(object.clone()), kc.clone()));
    let (_, send) = api.expect(Method::GET, CLIENT_SECRET).await;
    Api::reply(send, 404, &not_found());
    let (secret, send) = api.expect(Method::PATCH, &secret_patch).await;
    Api::reply(send, 200, &secret);
    assert_eq!(
        secret["metadata"]["ownerReferences"],
        serde_json::json!([{
            "apiVersion": "keygate.dev/v1alpha1", "kind": "OAuthClient", "name": "grafana",
            "uid": "6f1c8d9e-0000-4000-8000-0000000000c1", "controller": true, "blockOwnerDeletion": true
        }])
    );
    assert_eq!(
        secret["metadata"]["labels"]["keygate.dev/oauth-client"],
        "grafana"
    );
    let value = |secret: &serde_json::Value, key: &str| {
        let raw: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"][key].clone()).unwrap();
        String::from_utf8(raw.0).unwrap()
    };
    assert_eq!(value(&secret, "clientId"), "grafana");
    let first = value(&secret, "clientSecret");
    assert!(first.starts_with("kgcs_"));
    let (reasons, status) = api.events_then_status(&status_path, &mut object).await;
    assert_eq!(reasons, ["SecretIssued", "Reconciled"]);
    assert_eq!(status["status"]["clientId"], "grafana");
    assert_eq!(status["status"]["secretName"], "grafana-oidc");
    assert_eq!(status["status"]["observedGeneration"], 3);
    assert!(
        !status
            .to_string()
            .contains(first.splitn(3, '_').nth(2).unwrap())
    );
    task.await.unwrap().unwrap();

    // Rotation due: a new secret in the Secret, the previous one accepted for the grace period.
    h.clock.advance(Duration::hours(24));
    let task = tokio::spawn(reconcile(Arc::new(object.clone()), kc.clone()));
    let (_, send) = api.expect(Method::GET, CLIENT_SECRET).await;
    Api::reply(send, 200, &secret);
    let (rotated, send) = api.expect(Method::PATCH, &secret_patch).await;
    Api::reply(send, 200, &rotated);
    let second = value(&rotated, "clientSecret");
    assert_ne!(second, first);
    let (reasons, _) = api.events_then_status(&status_path, &mut object).await;
    assert_eq!(reasons, ["SecretRotated"]);
    task.await.unwrap().unwrap();
    let stored = h
        .ctx
        .store
        .oauth_client(tenant, "grafana")
        .await
        .unwrap()
        .unwrap();
    let secrets = h.ctx.store.client_secrets(tenant, stored.id).await.unwrap();
    let usable = |raw: &str, at| {
        let hash = keygate_core::crypto::sha256(raw.as_bytes());
        secrets.iter().any(|s| s.is_usable(at) && s.hash == hash)
    };
    let now = h.clock.now_utc();
    assert!(usable(&first, now) && usable(&second, now));
    assert!(!usable(&first, now + Duration::hours(1)) && usable(&second, now + Duration::hours(1)));

    // A session issued to the client; deletion revokes it everywhere and removes the Secret.
    let user = h
        .ctx
        .store
        .insert_user(&keygate_core::store::NewUser {
            tenant_id: tenant,
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            status: keygate_core::store::UserStatus::Active,
            email_verified: true,
            must_change_password: false,
            password_hash: None,
            groups: Vec::new(),
        })
        .await
        .unwrap();
    let session = h
        .ctx
        .store
        .insert_session(&keygate_core::store::NewSession {
            tenant_id: tenant,
            user_id: user.id,
            user_agent: None,
            ip: None,
            amr: vec!["pwd".into()],
            acr: None,
            auth_time: now,
            created_at: now,
            idle_expires_at: now + Duration::hours(1),
            absolute_expires_at: now + Duration::hours(8),
            token_hash: None,
            client_id: "grafana".into(),
            scope: "openid".into(),
        })
        .await
        .unwrap();
    let mut deleting = object.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_767_225_600).unwrap(),
        ));
    let task = tokio::spawn(reconcile(Arc::new(deleting.clone()), kc.clone()));
    let (_, send) = api.expect(Method::GET, CLIENT_SECRET).await;
    Api::reply(send, 200, &rotated);
    let (_, send) = api
        .expect(Method::DELETE, &format!("{CLIENT_SECRET}?"))
        .await;
    Api::reply(send, 200, &rotated);
    let (patch, send) = api
        .expect(Method::PATCH, &format!("{CLIENTS}/grafana?"))
        .await;
    assert_eq!(patch[1]["op"], "remove", "{patch}");
    deleting.metadata.finalizers = None;
    Api::reply(send, 200, &serde_json::to_value(&deleting).unwrap());
    task.await.unwrap().unwrap();
    assert!(
        h.ctx
            .store
            .oauth_client(tenant, "grafana")
            .await
            .unwrap()
            .is_none()
    );
    let revoked = h
        .ctx
        .store
        .session(tenant, session.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!revoked.is_active(h.clock.now_utc()));
    assert!(
        h.revocations
            .revocations()
            .contains(&session.id.to_string())
    );
}
