//! The storage capabilities of credentials issued to software rather than people: API keys,
//! registered OAuth clients with their secrets, and the consents people gave those clients.
//! Part of the capability traits of [`super`] (`traits.rs` holds the rest).

use super::StoreError;
use super::model::*;
use crate::ids::{ApiKeyId, ClientSecretId, OAuthClientId, SessionId, TenantId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// API keys (prefix + SHA-256 only).
#[async_trait]
pub trait ApiKeyStore {
    /// Stores a key; `Conflict { constraint: "api_keys_prefix" }` if the prefix exists.
    async fn insert_api_key(&self, key: &NewApiKey) -> Result<ApiKeyRecord, StoreError>;
    /// Finds a key by the prefix in `kg_<prefix>_<secret>`; the caller compares the hash
    /// in constant time and checks [`ApiKeyRecord::is_usable`].
    async fn api_key_by_prefix(
        &self,
        tenant: TenantId,
        prefix: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Finds a key by id.
    async fn api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Keys issued for one ApiKey resource (current and superseded), newest first.
    async fn api_keys_of_owner(
        &self,
        tenant: TenantId,
        owner_uid: &str,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// The tenant's keys, newest first (resync), at most [`LIST_MAX`](super::LIST_MAX).
    async fn list_api_keys(&self, tenant: TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// A page of the tenant's keys ordered by id, after `after` (keyset pagination), at most
    /// `limit` (capped at [`LIST_MAX`](super::LIST_MAX)): how a resync reads every key of a large tenant.
    async fn list_api_keys_page(
        &self,
        tenant: TenantId,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Replaces what a key grants (roles, permissions, scopes, expiry) in place, keeping its
    /// value; `false` if absent or revoked. Unchanged grants write nothing.
    async fn update_api_key_grants(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        grants: &ApiKeyGrants,
    ) -> Result<bool, StoreError>;
    /// Marks a key replaced by a rotation; it keeps working until `grace_until`.
    async fn supersede_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: DateTime<Utc>,
        grace_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Revokes one key at once; `false` if absent or already revoked.
    async fn revoke_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Revokes every key of an ApiKey resource (resource deleted); returns how many.
    async fn revoke_api_keys_of_owner(
        &self,
        tenant: TenantId,
        owner_uid: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Records a use (the gateway throttles how often it calls this).
    async fn touch_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Registered OAuth clients (OAuthClient resources) and their secrets (SHA-256 only).
#[async_trait]
pub trait OAuthClientStore {
    /// Inserts or updates by (tenant, client id); a row of that client id held by another
    /// `owner_uid` is `Conflict { constraint: "oauth_clients_client_id" }` and nothing
    /// changes. An unchanged declaration writes nothing.
    async fn upsert_oauth_client(&self, c: &OAuthClientUpsert) -> Result<OAuthClient, StoreError>;
    /// Finds a client by the `client_id` requests name it by.
    async fn oauth_client(
        &self,
        tenant: TenantId,
        client_id: &str,
    ) -> Result<Option<OAuthClient>, StoreError>;
    /// The tenant's clients by client id (orphan cleanup, admin), at most [`LIST_MAX`](super::LIST_MAX).
    async fn list_oauth_clients(&self, tenant: TenantId) -> Result<Vec<OAuthClient>, StoreError>;
    /// Removes a client and its secrets; `false` if absent. Its sessions are revoked apart
    /// ([`OAuthClientStore::revoke_client_sessions`]).
    async fn delete_oauth_client(
        &self,
        tenant: TenantId,
        id: OAuthClientId,
    ) -> Result<bool, StoreError>;
    /// Stores a secret; `NotFound` if the client is not in this tenant.
    async fn insert_client_secret(
        &self,
        s: &NewClientSecret,
    ) -> Result<ClientSecretRecord, StoreError>;
    /// A client's secrets (current, in grace, revoked), newest first; the caller compares
    /// hashes in constant time and checks [`ClientSecretRecord::is_usable`].
    async fn client_secrets(
        &self,
        tenant: TenantId,
        client: OAuthClientId,
    ) -> Result<Vec<ClientSecretRecord>, StoreError>;
    /// Marks a secret replaced by a rotation; it keeps working until `grace_until`. `false`
    /// if absent, already superseded or revoked.
    async fn supersede_client_secret(
        &self,
        tenant: TenantId,
        id: ClientSecretId,
        now: DateTime<Utc>,
        grace_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Revokes one secret at once; `false` if absent or already revoked.
    async fn revoke_client_secret(
        &self,
        tenant: TenantId,
        id: ClientSecretId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Revokes every open session (and so refresh family) issued to `client_id`; returns
    /// their ids so the revocations can be pushed to every gateway replica.
    async fn revoke_client_sessions(
        &self,
        tenant: TenantId,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError>;
}

/// What people approved for clients that ask for consent (the consent page's memory).
#[async_trait]
pub trait ConsentStore {
    /// The consent `user` gave `client_id`, if any.
    async fn consent(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError>;
    /// Records an approval of `scopes`: added to the scopes approved before; `granted_at`
    /// moves to `now` when a scope is new. `NotFound` if the person or client is not in
    /// this tenant.
    async fn grant_consent(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        scopes: &[String],
        now: DateTime<Utc>,
    ) -> Result<Consent, StoreError>;
    /// The person's consents, most recently granted first, at most [`LIST_MAX`](super::LIST_MAX).
    async fn consents_of_user(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<Consent>, StoreError>;
    /// Withdraws a consent and, in the same transaction, revokes every open session (and
    /// so refresh family) of the person issued to that client. Answers whether a consent
    /// was forgotten and the revoked sessions' ids, for the revocation set of every replica.
    async fn revoke_consent(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(bool, Vec<SessionId>), StoreError>;
}
