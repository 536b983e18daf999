//! The Kubernetes source: one kube-runtime `Controller` per kind, each handing its objects
//! through `finalizer()` to the same reconcile core the directory source uses. Status is
//! written by server-side apply, Events go through kube's `Recorder`, ApiKey and OAuthClient
//! Secrets are applied with an ownerReference to their resource and watched (`.owns()`), and the Secrets
//! IdentityProviders reference are watched so a changed client secret is picked up.

use crate::effects::{Effects, Event, EventKind, EventSink, SecretError, SecretSource};
use crate::orphans::{self, LiveSet};
use crate::reconcile::Status;
use crate::{Context, ReconcileError, api_key, identity_provider};
use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use keygate_crds::{
    ApiKey, FINALIZER, IdentityProvider, OAuthClient, Resource as AnyResource, Role, Tenant,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// The field manager of every write, so `kubectl` shows who owns which field.
pub const MANAGER: &str = "keygate-operator";
/// First retry delay after a failed reconcile; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay after failures.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One of the five keygate kinds, as the generic controller code needs it.
pub trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The resource as the reconcile core takes it.
    fn wrap(&self) -> AnyResource;
    /// The status currently published (to keep transition times and skip no-op writes).
    fn published(&self) -> Option<Status>;
}

macro_rules! impl_kind {
    ($kind:ident) => {
        impl Kind for $kind {
            fn wrap(&self) -> AnyResource {
                AnyResource::$kind(self.clone())
            }
            fn published(&self) -> Option<Status> {
                self.status.clone().map(Status::$kind)
            }
        }
    };
}
impl_kind!(Tenant);
impl_kind!(IdentityProvider);
impl_kind!(Role);
impl_kind!(ApiKey);
impl_kind!(OAuthClient);

/// Secrets through the API server.
#[derive(Clone)]
pub struct KubeSecrets {
    client: Client,
}

impl std::fmt::Debug for KubeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeSecrets")
    }
}

fn kube_error(e: kube::Error) -> SecretError {
    SecretError::Kube(Box::new(e))
}

#[async_trait]
impl SecretSource for KubeSecrets {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SecretError> {
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(kube_error)
    }

    async fn apply(&self, secret: &Secret) -> Result<(), SecretError> {
        let namespace = secret.metadata.namespace.as_deref().unwrap_or("default");
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let mut body = secret.clone();
        // Server-side apply needs the type information in the body.
        let mut document = serde_json::to_value(&body).map_err(|e| SecretError::File {
            path: name.into(),
            reason: e.to_string(),
        })?;
        if let Some(object) = document.as_object_mut() {
            object.insert("apiVersion".into(), "v1".into());
            object.insert("kind".into(), "Secret".into());
        }
        body.data = None; // the copy is no longer needed; drop the key from memory early
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&document),
            )
            .await
            .map_err(kube_error)?;
        Ok(())
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), SecretError> {
        match Api::<Secret>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (garbage-collected through the ownerReference): that is done.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(kube_error(e)),
        }
    }
}

/// Events through kube's `Recorder` (events.k8s.io/v1).
#[derive(Clone)]
pub struct KubeEvents {
    recorder: Recorder,
}

impl std::fmt::Debug for KubeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeEvents")
    }
}

#[async_trait]
impl EventSink for KubeEvents {
    async fn publish(&self, regarding: &ObjectReference, event: Event) {
        let kube_event = kube::runtime::events::Event {
            type_: match event.kind {
                EventKind::Normal => kube::runtime::events::EventType::Normal,
                EventKind::Warning => kube::runtime::events::EventType::Warning,
            },
            reason: event.reason.to_owned(),
            note: Some(event.note.clone()),
            action: event.action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&kube_event, regarding).await {
            tracing::warn!(reason = event.reason, error = %e, "could not publish an Event");
        }
    }
}

/// What the controllers share: the reconcile context, the client, the cluster effects and
/// per-object failure counts for backoff.
pub struct KubeContext {
    /// Store, master keys, public URL, clock.
    pub ctx: Context,
    /// The API client.
    pub client: Client,
    /// Secrets, Events and revocations through the API server.
    pub effects: Effects,
    /// How often every object is reconciled again without any change (rotation, expiry, drift).
    pub resync: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for KubeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeContext")
            .field("resync", &self.resync)
            .finish_non_exhaustive()
    }
}

impl KubeContext {
    /// Wires a reconcile context to a cluster reached through `client`; Events name no
    /// reporting instance until [`KubeContext::with_instance`] names one.
    pub fn new(
        ctx: Context,
        client: Client,
        revocations: Option<Arc<dyn keygate_core::ephemeral::Ephemeral>>,
        resync: Duration,
    ) -> Self {
        Self::with_instance(ctx, client, revocations, resync, None)
    }

    /// [`KubeContext::new`] with Events reported by `instance` (the pod name), so
    /// `kubectl describe` tells which replica acted.
    pub fn with_instance(
        ctx: Context,
        client: Client,
        revocations: Option<Arc<dyn keygate_core::ephemeral::Ephemeral>>,
        resync: Duration,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        let effects = Effects {
            secrets: Arc::new(KubeSecrets {
                client: client.clone(),
            }),
            events: Arc::new(KubeEvents {
                recorder: Recorder::new(client.clone(), reporter),
            }),
            revocations,
            cache: None,
        };
        Self {
            ctx,
            client,
            effects,
            resync,
            failures: Mutex::default(),
        }
    }
}

fn object_key<K: Kind>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// The controller's reconcile for any kind: finalizer first, then apply or cleanup.
pub async fn reconcile<K: Kind>(
    obj: Arc<K>,
    kc: Arc<KubeContext>,
) -> Result<Action, ReconcileError> {
    let kind = K::kind(&()).into_owned();
    let key = object_key(&*obj);
    let namespace = obj
        .namespace()
        .ok_or(ReconcileError::MissingObjectKey(".metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(kc.client.clone(), &namespace);
    let span = tracing::info_span!("reconcile", resource = %key);
    let result = crate::metrics::timed(kc.ctx.metrics.as_ref(), &kind, async {
        finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                Finalizer::Apply(o) => apply(&kc, &api, &*o).await,
                Finalizer::Cleanup(o) => cleanup(&kc, &*o).await,
            }
        })
        .await
        .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
    })
    .instrument(span)
    .await;
    if result.is_ok() {
        kc.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
    result
}

async fn apply<K: Kind>(kc: &KubeContext, api: &Api<K>, obj: &K) -> Result<Action, ReconcileError> {
    let uid = obj
        .uid()
        .ok_or(ReconcileError::MissingObjectKey(".metadata.uid"))?;
    let resource = obj.wrap();
    let mut status = crate::reconcile::apply(&kc.ctx, &kc.effects, &resource, &uid).await?;
    let previous = obj.published();
    if let Some(before) = &previous {
        status.keep_transition_times(before);
    }
    if previous.as_ref() != Some(&status) {
        announce(kc, obj, previous.as_ref(), &status).await;
        let patch = serde_json::json!({
            "apiVersion": keygate_crds::API_VERSION,
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| ReconcileError::Kube(Box::new(e)))?;
    }
    Ok(Action::requeue(kc.resync))
}

/// Publishes an Event when the `Ready` outcome changes (not on every pass).
async fn announce<K: Kind>(kc: &KubeContext, obj: &K, before: Option<&Status>, after: &Status) {
    let Some(ready) = after.ready() else {
        return;
    };
    if before
        .and_then(Status::ready)
        .is_some_and(|b| b.status == ready.status && b.reason == ready.reason)
    {
        return;
    }
    let event = Event {
        kind: if ready.status == "True" {
            EventKind::Normal
        } else {
            EventKind::Warning
        },
        reason: crate::status::Reason::parse(&ready.reason).map_or("Reconciled", |r| r.as_str()),
        action: "Reconcile",
        note: ready.message.clone(),
    };
    kc.effects.events.publish(&obj.object_ref(&()), event).await;
}

async fn cleanup<K: Kind>(kc: &KubeContext, obj: &K) -> Result<Action, ReconcileError> {
    let uid = obj
        .uid()
        .ok_or(ReconcileError::MissingObjectKey(".metadata.uid"))?;
    crate::reconcile::cleanup(&kc.ctx, &kc.effects, &obj.wrap(), &uid).await?;
    Ok(Action::await_change())
}

/// Retries a failed reconcile with exponential backoff per object (5 s doubling up to
/// 5 min); the failure itself was counted by the metrics.
pub fn error_policy<K: Kind>(obj: Arc<K>, error: &ReconcileError, kc: Arc<KubeContext>) -> Action {
    let key = object_key(&*obj);
    let mut failures = kc.failures.lock().unwrap_or_else(|e| e.into_inner());
    let count = failures.entry(key.clone()).or_insert(0);
    *count = count.saturating_add(1);
    let delay = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(count.saturating_sub(1).min(16)))
        .min(BACKOFF_MAX);
    tracing::warn!(resource = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The IdentityProviders that reference a Secret, for re-reconciling them when it changes.
fn idps_referencing(
    store: &Store<IdentityProvider>,
    secret: &Secret,
) -> Vec<ObjectRef<IdentityProvider>> {
    let namespace = secret.metadata.namespace.as_deref();
    let name = secret.metadata.name.as_deref();
    store
        .state()
        .iter()
        .filter(|idp| idp.metadata.namespace.as_deref() == namespace)
        .filter(|idp| identity_provider::secret_ref(idp).map(|r| r.name.as_str()) == name)
        .map(|idp| ObjectRef::from_obj(&**idp))
        .collect()
}

/// The API of a kind in the watched namespace, or in all namespaces.
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// How the operator runs in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// This replica's identity (the pod name); a random one when unset.
    pub pod_name: Option<String>,
    /// Namespace of the Lease; the client's default namespace when unset.
    pub pod_namespace: Option<String>,
    /// The namespaces to watch; empty for all.
    pub watch_namespaces: Vec<String>,
    /// Periodic resync of every object.
    pub resync: Duration,
    /// Where API-key revocations are pushed so gateway replicas refuse a key at once
    /// (the gateways' Redis); `None` leaves them to the gateways' periodic re-check.
    pub revocations: Option<Arc<dyn keygate_core::ephemeral::Ephemeral>>,
}

/// Runs the operator against the cluster the environment points at (in-cluster service
/// account or kubeconfig): the controllers run only while this replica holds the Lease.
/// Returns when `shutdown` resolves.
pub async fn run_in_cluster(
    ctx: Context,
    options: ClusterOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), kube::Error> {
    let client = Client::try_default().await?;
    let lease_namespace = options
        .pod_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let identity = match options.pod_name.clone() {
        Some(name) => name,
        None => format!("keygate-operator-{}", uuid::Uuid::new_v4().simple()),
    };
    let clock = ctx.clock.clone();
    let leader_gauge = ctx.metrics.as_ref().map(|m| m.leader.clone());
    let kc = Arc::new(KubeContext::with_instance(
        ctx,
        client.clone(),
        options.revocations.clone(),
        options.resync,
        options.pod_name.clone(),
    ));
    let config = crate::leader::LeaseConfig {
        name: options.lease_name.clone(),
        ..crate::leader::LeaseConfig::new(lease_namespace, identity)
    };
    let mut elector = crate::leader::LeaderElector::new(client, config, clock);
    if let Some(gauge) = leader_gauge {
        elector = elector.with_leader_gauge(gauge);
    }
    let namespaces = options.watch_namespaces.clone();
    let watching = if namespaces.is_empty() {
        "all namespaces".to_owned()
    } else {
        namespaces.join(",")
    };
    tracing::info!(watch = %watching, "operator waiting for the Lease");
    elector
        .run(
            move || run(kc.clone(), namespaces.clone(), std::future::pending()),
            shutdown,
        )
        .await;
    Ok(())
}

/// The watch caches of one scope's controllers, read by the orphan sweep.
#[derive(Clone)]
struct Caches {
    tenants: Store<Tenant>,
    idps: Store<IdentityProvider>,
    roles: Store<Role>,
    keys: Store<ApiKey>,
    clients: Store<OAuthClient>,
}

/// The five controllers of one watch scope (a namespace, or all of them when `ns` is
/// `None`): their caches, and the future that runs them until `stop` turns true.
fn controllers(
    kc: &Arc<KubeContext>,
    ns: Option<&str>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> (Caches, futures::future::BoxFuture<'static, ()>) {
    let client = kc.client.clone();
    let stopped = || {
        let mut rx = stop.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let watch_config = watcher::Config::default().any_semantic();
    let owned_secrets = watcher::Config::default().labels(&format!(
        "{}={}",
        api_key::LABEL_MANAGED_BY,
        api_key::MANAGER
    ));

    let tenants = Controller::new(api::<Tenant>(&client, ns), watch_config.clone())
        .graceful_shutdown_on(stopped());
    let idps = Controller::new(api::<IdentityProvider>(&client, ns), watch_config.clone());
    let idp_store = idps.store();
    let idp_lookup = idp_store.clone();
    let idps = idps
        .watches(
            api::<Secret>(&client, ns),
            watcher::Config::default(),
            move |secret| idps_referencing(&idp_lookup, &secret),
        )
        .graceful_shutdown_on(stopped());
    let roles = Controller::new(api::<Role>(&client, ns), watch_config.clone())
        .graceful_shutdown_on(stopped());
    let keys = Controller::new(api::<ApiKey>(&client, ns), watch_config.clone())
        .owns(api::<Secret>(&client, ns), owned_secrets.clone())
        .graceful_shutdown_on(stopped());
    let clients = Controller::new(api::<OAuthClient>(&client, ns), watch_config)
        .owns(api::<Secret>(&client, ns), owned_secrets)
        .graceful_shutdown_on(stopped());
    let caches = Caches {
        tenants: tenants.store(),
        idps: idp_store,
        roles: roles.store(),
        keys: keys.store(),
        clients: clients.store(),
    };
    let running = futures::future::join5(
        drain(tenants.run(reconcile::<Tenant>, error_policy::<Tenant>, kc.clone())),
        drain(idps.run(
            reconcile::<IdentityProvider>,
            error_policy::<IdentityProvider>,
            kc.clone(),
        )),
        drain(roles.run(reconcile::<Role>, error_policy::<Role>, kc.clone())),
        drain(keys.run(reconcile::<ApiKey>, error_policy::<ApiKey>, kc.clone())),
        drain(clients.run(
            reconcile::<OAuthClient>,
            error_policy::<OAuthClient>,
            kc.clone(),
        )),
    );
    (
        caches,
        Box::pin(async move {
            running.await;
        }),
    )
}

/// Runs the five controllers in each of `namespaces` (all namespaces when empty) and the
/// orphan sweep until `shutdown` resolves.
pub async fn run(
    kc: Arc<KubeContext>,
    namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // kube-runtime watches one namespace or all: a set of namespaces is one scope each.
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    };
    let (caches, running): (Vec<_>, Vec<_>) = scopes
        .into_iter()
        .map(|ns| controllers(&kc, ns, &stop_rx))
        .unzip();
    let in_view = (!namespaces.is_empty()).then(|| namespaces.iter().cloned().collect());
    let controllers = futures::future::join_all(running);
    let sweep = sweep_orphans(kc.clone(), caches, in_view);
    tokio::pin!(shutdown);
    tokio::select! {
        _ = controllers => {},
        () = sweep => {},
        () = &mut shutdown => {
            let _ = stop_tx.send(true);
        },
    }
}

/// Runs a controller's output stream to its end (results are logged by the error policy).
async fn drain<S: futures::Stream>(stream: S) {
    stream.for_each(|_| futures::future::ready(())).await;
}

/// Every resync, once all watch caches are complete, cleans rows whose resource is gone
/// (deletions whose finalizer never ran: removed by hand, or the CRD deleted). Only rows of
/// tenants in `in_view` are looked at (`None`: all), so an operator watching some
/// namespaces never cleans what it cannot see.
async fn sweep_orphans(
    kc: Arc<KubeContext>,
    caches: Vec<Caches>,
    in_view: Option<std::collections::HashSet<String>>,
) {
    // An incomplete cache would make every row look orphaned.
    for c in &caches {
        for ready in [
            c.tenants.wait_until_ready().await,
            c.idps.wait_until_ready().await,
            c.roles.wait_until_ready().await,
            c.keys.wait_until_ready().await,
            c.clients.wait_until_ready().await,
        ] {
            if ready.is_err() {
                return;
            }
        }
    }
    loop {
        tokio::time::sleep(kc.resync).await;
        let mut live = LiveSet {
            namespaces: in_view.clone(),
            ..LiveSet::default()
        };
        for c in &caches {
            live.tenants.extend(uids(c.tenants.state()));
            live.identity_providers.extend(uids(c.idps.state()));
            live.roles.extend(uids(c.roles.state()));
            live.api_keys.extend(uids(c.keys.state()));
            live.oauth_clients.extend(uids(c.clients.state()));
        }
        match orphans::clean(&kc.ctx, &kc.effects, &live).await {
            Ok(cleaned) if cleaned != orphans::Cleaned::default() => {
                tracing::info!(?cleaned, "rows of deleted resources cleaned")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "orphan sweep failed; retried on the next resync"),
        }
    }
}

/// The uids of a watch cache's objects.
fn uids<K: Kind>(objects: Vec<Arc<K>>) -> impl Iterator<Item = String> {
    objects.into_iter().filter_map(|o| o.meta().uid.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use kube::runtime::reflector;

    fn idp(name: &str, namespace: &str, secret: &str) -> IdentityProvider {
        let yaml = format!(
            "apiVersion: keygate.dev/v1alpha1\nkind: IdentityProvider\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  tenantRef:\n    name: demo\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n    clientId: keygate\n    clientSecretRef:\n      name: {secret}\n      key: clientSecret\n"
        );
        match keygate_crds::load_manifests(&yaml).unwrap().pop().unwrap() {
            AnyResource::IdentityProvider(i) => i,
            _ => unreachable!("an IdentityProvider manifest"),
        }
    }

    #[test]
    fn a_changed_secret_wakes_the_identity_providers_that_name_it() {
        let (store, mut writer) = reflector::store::<IdentityProvider>();
        for i in [
            idp("corp", "team-a", "corp-oidc"),
            idp("other", "team-a", "other-oidc"),
            idp("corp", "team-b", "corp-oidc"),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(i));
        }
        let mut secret = Secret::default();
        secret.metadata.name = Some("corp-oidc".into());
        secret.metadata.namespace = Some("team-a".into());
        let woken = idps_referencing(&store, &secret);
        assert_eq!(woken, vec![ObjectRef::new("corp").within("team-a")]);
    }
}
