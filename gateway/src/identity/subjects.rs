//! A few seconds' memory of accounts with their roles, so busy refresh and session checks
//! do not read the same rows each time. Safe to be briefly stale: suspension, erasure and
//! logout revoke the sessions themselves (in the store, checked by every rotation, and on
//! every replica's revocation set), and a role change reaches tokens within the TTL.

use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService};
use keygate_core::ids::{TenantId, UserId};
use keygate_core::store::{User, UserStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a loaded account is reused.
const TTL: Duration = Duration::from_secs(5);

/// An account with what it is granted.
#[derive(Debug)]
pub(crate) struct Subject {
    /// The account row.
    pub user: User,
    /// Role names.
    pub roles: Vec<String>,
    /// Permissions from those roles.
    pub permissions: Vec<String>,
}

/// A loaded account and when it was loaded.
type Entry = (Instant, Arc<Subject>);

/// Accounts by (tenant, user).
#[derive(Debug, Default)]
pub(crate) struct SubjectCache(Mutex<HashMap<(TenantId, UserId), Entry>>);

impl SubjectCache {
    fn get(&self, key: (TenantId, UserId)) -> Option<Arc<Subject>> {
        let map = self.0.lock().ok()?;
        map.get(&key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, key: (TenantId, UserId), subject: Arc<Subject>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() > 50_000 {
                map.retain(|_, (at, _)| at.elapsed() < TTL);
            }
            map.insert(key, (Instant::now(), subject));
        }
    }

    /// Drops an account after this replica changed it.
    pub fn forget(&self, tenant: TenantId, user: UserId) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&(tenant, user));
        }
    }
}

impl IdentityService {
    /// The active account `user` with its grants (cached briefly); `None` when absent or suspended.
    pub(super) async fn active_subject(
        &self,
        t: &LiveTenant,
        user: UserId,
    ) -> Result<Option<Arc<Subject>>, IdentityError> {
        let key = (t.row.id, user);
        if let Some(s) = self.inner.subjects.get(key) {
            return Ok(Some(s));
        }
        let Some(user) = self.deps().store.user(t.row.id, user).await? else {
            return Ok(None);
        };
        if user.status != UserStatus::Active {
            return Ok(None);
        }
        let (roles, permissions) = self.grants(t, &user).await?;
        let subject = Arc::new(Subject {
            user,
            roles,
            permissions,
        });
        self.inner.subjects.put(key, subject.clone());
        Ok(Some(subject))
    }
}

/// Sessions by (tenant, id), for the facts a refresh needs that never change (account,
/// `amr`, `acr`, `auth_time`, absolute expiry) and when it was last touched. Whether the
/// session is still live is never read from here: the store's rotation checks that in the
/// same statement that spends the token.
#[derive(Debug, Default)]
pub(crate) struct FamilyCache(
    Mutex<
        HashMap<(TenantId, keygate_core::ids::SessionId), (Instant, keygate_core::store::Session)>,
    >,
);

/// How long a session row is reused by refreshes.
const FAMILY_TTL: Duration = Duration::from_secs(60);

impl FamilyCache {
    /// The cached row, if fresh.
    pub fn get(
        &self,
        tenant: TenantId,
        id: keygate_core::ids::SessionId,
    ) -> Option<keygate_core::store::Session> {
        let map = self.0.lock().ok()?;
        map.get(&(tenant, id))
            .filter(|(at, _)| at.elapsed() < FAMILY_TTL)
            .map(|(_, s)| s.clone())
    }

    /// Remembers a row (also after touching it).
    pub fn put(&self, session: keygate_core::store::Session) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() > 50_000 {
                map.retain(|_, (at, _)| at.elapsed() < FAMILY_TTL);
            }
            map.insert((session.tenant_id, session.id), (Instant::now(), session));
        }
    }
}
