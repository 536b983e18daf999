//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! reconcile at once. The leader renews the Lease every `renew_every`; a standby checks as
//! often and takes the Lease over once `renewTime + leaseDurationSeconds` has passed. Every
//! write carries the `resourceVersion` it read, so of two replicas racing for the Lease the
//! API server lets exactly one win (the other gets 409 Conflict).
//!
//! With the defaults (15 s lease, renewed every 5 s), a leader that dies had renewed at most
//! 5 s before, so its Lease expires at most 10 s after its death and a standby, checking
//! every 5 s, takes over within 15 s: within one lease duration.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use keygate_core::clock::Clock;
use kube::api::{Api, PostParams};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews and a standby checks.
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// The defaults: Lease `keygate-operator`, 15 s duration, renewed every 5 s.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "keygate-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Acquires, renews and releases the Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    clock: Arc<dyn Clock>,
    leading: Option<prometheus::IntGauge>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn micro(at: DateTime<Utc>) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(at.timestamp_micros())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn from_micro(at: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(at.0.as_microsecond())
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

impl LeaderElector {
    /// An elector for `config` through `client`, reading time from `clock`.
    pub fn new(client: kube::Client, config: LeaseConfig, clock: Arc<dyn Clock>) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Self {
            api,
            config,
            clock,
            leading: None,
        }
    }

    /// Sets `gauge` to 1 while this replica runs the work as leader, 0 otherwise
    /// (`keygate_operator_leader`: its changes are leader changes).
    pub fn with_leader_gauge(mut self, gauge: prometheus::IntGauge) -> Self {
        gauge.set(0);
        self.leading = Some(gauge);
        self
    }

    /// One election round: creates the Lease if absent, renews it if held by us, takes it
    /// over if it expired. Returns whether this replica leads now; losing a race is `false`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = self.clock.now();
        let duration = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(micro(now)),
                    renew_time: Some(micro(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became leader (Lease created)");
                    Ok(true)
                }
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if !ours {
            let held_seconds = i64::from(spec.lease_duration_seconds.unwrap_or(duration));
            let valid_until = spec
                .renew_time
                .as_ref()
                .and_then(from_micro)
                .map(|r| r + chrono::Duration::seconds(held_seconds));
            if holder.is_some() && valid_until.is_some_and(|until| until > now) {
                return Ok(false);
            }
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(micro(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.renew_time = Some(micro(now));
        spec.lease_duration_seconds = Some(duration);
        // `replace` sends the resourceVersion we read: a concurrent writer makes it 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                if !ours {
                    tracing::info!(identity = %self.config.identity, previous = ?holder, "became leader (Lease taken over)");
                }
                Ok(true)
            }
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown) so a standby need not wait for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs `work` only while this replica leads: waits for the Lease, starts `work`, renews;
    /// when a renewal fails for longer than the lease (or another replica holds it), stops
    /// `work` and waits again. Returns when `shutdown` resolves, releasing the Lease.
    pub async fn run<W, F>(&self, mut work: W, shutdown: impl Future<Output = ()>)
    where
        W: FnMut() -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::pin!(shutdown);
        let mut running: Option<tokio::task::JoinHandle<()>> = None;
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            let leading = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "Lease not renewed");
                    // Keep leading only while the Lease we last renewed is surely still ours.
                    let margin = self
                        .config
                        .lease_duration
                        .saturating_sub(self.config.renew_every);
                    running.is_some() && last_renewed.is_some_and(|at| at.elapsed() < margin)
                }
            };
            match (leading, running.is_some()) {
                (true, false) => running = Some(tokio::spawn(work())),
                (false, true) => {
                    tracing::warn!(identity = %self.config.identity, "lost the Lease; stopping reconciles");
                    if let Some(task) = running.take() {
                        task.abort();
                    }
                    last_renewed = None;
                }
                _ => {}
            }
            if let Some(gauge) = &self.leading {
                gauge.set(i64::from(running.is_some()));
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.renew_every) => {}
                () = &mut shutdown => break,
            }
        }
        if let Some(task) = running.take() {
            task.abort();
        }
        if let Some(gauge) = &self.leading {
            gauge.set(0);
        }
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "could not release the Lease; a standby takes over when it expires");
        }
    }
}
