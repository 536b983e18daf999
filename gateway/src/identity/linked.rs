//! The caller's links to upstream identity providers (`GET`/`DELETE /t/{tenant}/me/identities`
//! and the account page): which providers they can sign in through, and removing one.
//! Removing a link is a sensitive change (a recent authentication, a mail to the owner), and
//! the last way into an account cannot be removed.

use super::audit::kind;
use super::mail::SecurityChange;
use super::{IdentityError, IdentityService, Principal, RequestMeta};
use chrono::{DateTime, Utc};
use keygate_core::federation::ProviderSettings;
use serde_json::json;

/// One upstream identity linked to the caller's account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LinkedIdentity {
    /// The IdentityProvider's name in the tenant (the path segment to remove it by).
    pub provider: String,
    /// The provider's label on the sign-in page.
    pub display_name: String,
    /// Linked at.
    pub linked_at: DateTime<Utc>,
    /// Last sign-in through this link.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

impl IdentityService {
    /// The upstream identities linked to the caller's account, oldest first.
    pub async fn linked_identities(
        &self,
        p: &Principal,
    ) -> Result<Vec<LinkedIdentity>, IdentityError> {
        let (t, user) = self.person_of(p).await?;
        let d = self.deps();
        let idps = d.store.list_idps(t.row.id).await?;
        let mut links = d.store.identities_of_user(t.row.id, user.id).await?;
        links.sort_by_key(|l| l.created_at);
        Ok(links
            .into_iter()
            .filter_map(|l| {
                let idp = idps.iter().find(|i| i.id == l.idp_id)?;
                let display_name = serde_json::from_value::<ProviderSettings>(idp.config.clone())
                    .map(|s| s.display_name)
                    .unwrap_or_else(|_| idp.name.clone());
                Some(LinkedIdentity {
                    provider: idp.name.clone(),
                    display_name,
                    linked_at: l.created_at,
                    last_sign_in_at: l.last_login_at,
                })
            })
            .collect())
    }

    /// Removes the caller's link to `provider`; needs a recent authentication. Refused with
    /// [`IdentityError::LastSignInMethod`] when the account has no password and no other
    /// link, so nobody unlinks themselves out of their account.
    pub async fn unlink_identity(
        &self,
        p: &Principal,
        provider: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let (t, user) = self.person_of(p).await?;
        let d = self.deps();
        let idp = d
            .store
            .idp_by_name(t.row.id, provider)
            .await?
            .ok_or(IdentityError::NotFound)?;
        let links = d.store.identities_of_user(t.row.id, user.id).await?;
        if !links.iter().any(|l| l.idp_id == idp.id) {
            return Err(IdentityError::NotFound);
        }
        self.require_recent_authentication(p, &t, user.id).await?;
        if user.password_hash.is_none() && links.len() == 1 {
            return Err(IdentityError::LastSignInMethod);
        }
        if !d.store.unlink_identity(t.row.id, user.id, idp.id).await? {
            return Err(IdentityError::NotFound);
        }
        self.inner.subjects.forget(t.row.id, user.id);
        self.audit(
            &t,
            kind::IDENTITY_UNLINKED,
            Some(user.id),
            meta,
            json!({"provider": idp.name}),
        )
        .await?;
        self.alert(&t, &user.email, SecurityChange::IdentityUnlinked);
        Ok(())
    }
}
