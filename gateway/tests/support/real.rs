//! The real identity service behind the edge: accounts, roles, a signing key and API keys in
//! the store, sign-in through `IdentityService`, exactly as production wires it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::identities::Person;
use chrono::{Duration, Utc};
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, PasswordHasher};
use keygate_core::crypto::random::{random_alphanumeric, random_token};
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::{self, SigningAlgorithm};
use keygate_core::ids::{ApiKeyId, SessionId};
use keygate_core::store::{
    NewApiKey, NewUser, RoleSubject, RoleUpsert, SigningKeyRecord, Store, Tenant, UserStatus,
};
use keygate_gateway::identity::{IdentityService, PasswordSignIn, RequestMeta};
use std::sync::Arc;

pub fn hasher() -> PasswordHasher {
    PasswordHasher::new(HashParams::insecure_for_tests(), 2).unwrap()
}

/// An RS256 signing key active now, accounts for `people`, and one Role per role name
/// granted to the people who hold it. Returns the signing key (benchmarks mint with it).
pub async fn provision(
    store: &Arc<dyn Store>,
    master: &MasterKeys,
    tenant: &Tenant,
    people: &[Person],
) -> signing::GeneratedKey {
    let key = signing::generate(SigningAlgorithm::RS256).unwrap();
    let now = Utc::now();
    store
        .insert_signing_key(&SigningKeyRecord {
            kid: key.kid.clone(),
            tenant_id: tenant.id,
            algorithm: "RS256".into(),
            public_jwk: serde_json::to_value(&key.public_jwk).unwrap(),
            private_key: master
                .seal(
                    key.private_pem.as_bytes(),
                    &format!("signing_key:{}", key.kid),
                )
                .unwrap(),
            created_at: now - Duration::hours(1),
            activates_at: now - Duration::hours(1),
            retires_at: None,
        })
        .await
        .unwrap();
    let hasher = hasher();
    let mut roles: std::collections::BTreeMap<String, Vec<RoleSubject>> = Default::default();
    for p in people {
        let user = store
            .insert_user(&NewUser {
                tenant_id: tenant.id,
                email: p.email.clone(),
                display_name: p.email.clone(),
                status: UserStatus::Active,
                email_verified: true,
                must_change_password: false,
                password_hash: None,
                groups: vec![],
            })
            .await
            .unwrap();
        let hash = hasher.hash(&p.password).await.unwrap();
        store
            .set_password(tenant.id, user.id, Some(&hash), 5, false)
            .await
            .unwrap();
        for r in &p.roles {
            roles
                .entry(r.clone())
                .or_default()
                .push(RoleSubject::UserEmail(p.email.clone()));
        }
    }
    for (name, subjects) in roles {
        store
            .upsert_role(&RoleUpsert {
                tenant_id: tenant.id,
                name: name.clone(),
                owner_uid: uuid::Uuid::now_v7().to_string(),
                description: String::new(),
                permissions: vec![format!("{name}.all")],
                subjects,
                generation: 1,
            })
            .await
            .unwrap();
    }
    key
}

/// Signs `who` in through the service: (access token, session id).
pub async fn sign_in(
    identity: &IdentityService,
    tenant: &Tenant,
    who: &Person,
    browser: bool,
) -> (String, SessionId) {
    let done = identity
        .sign_in(
            &tenant.name,
            PasswordSignIn {
                email: who.email.clone(),
                password: who.password.clone(),
                browser,
                ..PasswordSignIn::default()
            },
            &RequestMeta::default(),
        )
        .await
        .unwrap()
        .signed_in()
        .expect("no second factor asked");
    (done.tokens.access_token, done.session_id)
}

/// Signs `who` in through the service as a browser: (access token, session id, the session
/// cookie's value).
pub async fn sign_in_browser(
    identity: &IdentityService,
    tenant: &Tenant,
    who: &Person,
) -> (String, SessionId, String) {
    let done = identity
        .sign_in(
            &tenant.name,
            PasswordSignIn {
                email: who.email.clone(),
                password: who.password.clone(),
                browser: true,
                ..PasswordSignIn::default()
            },
            &RequestMeta::default(),
        )
        .await
        .unwrap()
        .signed_in()
        .expect("no second factor asked");
    let cookie = done
        .session_cookie
        .expect("a browser sign-in sets a cookie");
    (done.tokens.access_token, done.session_id, cookie)
}

/// Stores an API key as the operator does (prefix + SHA-256); returns its id and raw value.
pub async fn api_key(
    store: &Arc<dyn Store>,
    tenant: &Tenant,
    name: &str,
    roles: &[&str],
) -> (ApiKeyId, String) {
    let prefix = random_alphanumeric(12).unwrap();
    let raw = format!("kg_{prefix}_{}", random_token().unwrap());
    let record = store
        .insert_api_key(&NewApiKey {
            tenant_id: tenant.id,
            owner_uid: uuid::Uuid::now_v7().to_string(),
            name: name.into(),
            prefix,
            hash: sha256(raw.as_bytes()).to_vec(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            permissions: vec![],
            scopes: vec![],
            expires_at: None,
        })
        .await
        .unwrap();
    (record.id, raw)
}
