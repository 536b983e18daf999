//! One entry point per event for any kind, so both sources dispatch the same way, and the
//! typed status a reconcile returns. Status becomes JSON only at the edges: the
//! server-side-apply patch of the Kubernetes source and `status.yaml` of the directory
//! source.

use crate::effects::Effects;
use crate::{Context, ReconcileError, api_key, identity_provider, oauth_client, role, tenant};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use keygate_crds::{
    ApiKeyStatus, ConditionsStatus, IdentityProviderStatus, OAuthClientStatus, Resource,
    RoleStatus, TenantStatus,
};

/// The status one reconcile produced, of the resource's own kind.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Status {
    /// A Tenant's status (issuer and JWKS URLs, signing key).
    Tenant(TenantStatus),
    /// An IdentityProvider's status.
    IdentityProvider(IdentityProviderStatus),
    /// A Role's status.
    Role(RoleStatus),
    /// An ApiKey's status (key prefix and the Secret holding the key, never the key).
    ApiKey(ApiKeyStatus),
    /// An OAuthClient's status (client id and the Secret holding its secret, never the secret).
    OAuthClient(OAuthClientStatus),
}

impl Status {
    fn conditions_status(&self) -> &dyn ConditionsStatus {
        match self {
            Self::Tenant(s) => s,
            Self::IdentityProvider(s) => s,
            Self::Role(s) => s,
            Self::ApiKey(s) => s,
            Self::OAuthClient(s) => s,
        }
    }

    fn conditions_status_mut(&mut self) -> &mut dyn ConditionsStatus {
        match self {
            Self::Tenant(s) => s,
            Self::IdentityProvider(s) => s,
            Self::Role(s) => s,
            Self::ApiKey(s) => s,
            Self::OAuthClient(s) => s,
        }
    }

    /// The `Ready` condition every reconcile sets.
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions_status().ready()
    }

    /// Every condition, `Ready` first.
    pub fn conditions(&self) -> &[Condition] {
        self.conditions_status().conditions()
    }

    /// Whether `Ready` is `True`.
    pub fn is_ready(&self) -> bool {
        self.ready().is_some_and(|c| c.status == "True")
    }

    /// Keeps the `lastTransitionTime` of every condition whose status did not change since
    /// `before` (through [`keygate_crds::set_condition`], the one rule for it), so an
    /// unchanged resource does not look changed and its status write does not wake the
    /// watch again.
    pub fn keep_transition_times(&mut self, before: &Status) {
        let after = self.conditions_status_mut();
        let fresh = std::mem::take(after.conditions_mut());
        let mut merged: Vec<Condition> = before
            .conditions_status()
            .conditions()
            .iter()
            .filter(|old| fresh.iter().any(|c| c.type_ == old.type_))
            .cloned()
            .collect();
        for condition in fresh {
            keygate_crds::set_condition(&mut merged, condition);
        }
        *after.conditions_mut() = merged;
    }
}

/// Reconciles one resource of any kind; returns its status.
pub async fn apply(
    ctx: &Context,
    effects: &Effects,
    resource: &Resource,
    uid: &str,
) -> Result<Status, ReconcileError> {
    Ok(match resource {
        Resource::Tenant(t) => Status::Tenant(tenant::reconcile(ctx, t, uid).await?),
        Resource::IdentityProvider(i) => {
            Status::IdentityProvider(identity_provider::reconcile(ctx, effects, i, uid).await?)
        }
        Resource::Role(r) => Status::Role(role::reconcile(ctx, effects, r, uid).await?),
        Resource::ApiKey(k) => Status::ApiKey(api_key::reconcile(ctx, effects, k, uid).await?),
        Resource::OAuthClient(c) => {
            Status::OAuthClient(oauth_client::reconcile(ctx, effects, c, uid).await?)
        }
    })
}

/// Removes or retires what a deleted resource owns.
pub async fn cleanup(
    ctx: &Context,
    effects: &Effects,
    resource: &Resource,
    uid: &str,
) -> Result<(), ReconcileError> {
    match resource {
        Resource::Tenant(t) => tenant::cleanup(ctx, t, uid).await,
        Resource::IdentityProvider(i) => identity_provider::cleanup(ctx, effects, i, uid).await,
        Resource::Role(r) => role::cleanup(ctx, effects, r, uid).await,
        Resource::ApiKey(k) => api_key::cleanup(ctx, effects, k, uid).await,
        Resource::OAuthClient(c) => oauth_client::cleanup(ctx, effects, c, uid).await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn role(ready: bool, reason: &str, time: i64) -> Status {
        Status::Role(RoleStatus {
            conditions: vec![keygate_crds::ready_condition(
                ready,
                reason,
                "",
                Some(1),
                at(time),
            )],
            ..RoleStatus::default()
        })
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let mut after = role(false, "StillPending", 20);
        after.keep_transition_times(&role(false, "Pending", 10));
        let ready = after.ready().unwrap();
        assert_eq!(ready.reason, "StillPending");
        assert_eq!(ready.last_transition_time, at(10));
        let mut flipped = role(true, "Reconciled", 30);
        flipped.keep_transition_times(&after);
        assert_eq!(flipped.ready().unwrap().last_transition_time, at(30));
        assert!(flipped.is_ready());
    }
}
