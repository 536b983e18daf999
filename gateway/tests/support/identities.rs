//! A test-only stand-in for the identity service behind the two seams it offers adapters
//! (`Authenticator` for forward-auth, `AccountFlows` for the pages), so forward-auth and the
//! pages can be driven end to end with credentials the test mints itself. JWTs are real RS256 tokens verified with jsonwebtoken;
//! API keys are checked by SHA-256 in constant time; sessions live in memory; sign-out
//! revokes through the shared `Ephemeral` exactly as the real service must.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use async_trait::async_trait;
use chrono::{Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use keygate_core::crypto::signing::{SigningAlgorithm, encoding_key, generate};
use keygate_core::crypto::{constant_time_eq, random::random_token, sha256};
use keygate_core::ephemeral::Ephemeral;
use keygate_core::ids::{ApiKeyId, TenantId};
use keygate_core::store::Tenant;
use keygate_gateway::identity::{
    AccountFlows, AuthError, Authenticator, BrowserSession, BrowserSignIn, CredentialKind,
    FlowError, Identity, LiveTenant, RequestMeta, SignInAttempt, TotpEnrolment, UpstreamGrant,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub sid: String,
    pub tenant: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub auth_time: i64,
    #[serde(default)]
    pub email: Option<String>,
}

/// A person the stand-in knows.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: String,
    pub email: String,
    pub password: String,
    pub roles: Vec<String>,
}

/// A registered key: id, SHA-256 of the raw key, name, roles.
type KeyEntry = (ApiKeyId, [u8; 32], String, Vec<String>);

#[derive(Debug)]
pub struct TestIdentities {
    pub issuer: String,
    pub tenant_id: TenantId,
    pub tenant: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ephemeral: Arc<dyn Ephemeral>,
    people: Vec<Person>,
    /// API keys: raw-key hash → (key id, name, roles).
    keys: Mutex<HashMap<String, KeyEntry>>,
    /// Sessions: cookie value → (session id, person).
    sessions: Mutex<HashMap<String, (String, Person)>>,
}

impl TestIdentities {
    pub fn new(
        issuer: &str,
        tenant: &Tenant,
        ephemeral: Arc<dyn Ephemeral>,
        people: Vec<Person>,
    ) -> Self {
        let key = generate(SigningAlgorithm::RS256).unwrap();
        let encoding = encoding_key(SigningAlgorithm::RS256, &key.private_pem).unwrap();
        let decoding = DecodingKey::from_jwk(&key.public_jwk).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.leeway = 0;
        Self {
            issuer: issuer.to_owned(),
            tenant_id: tenant.id,
            tenant: tenant.name.clone(),
            encoding,
            decoding,
            validation,
            ephemeral,
            people,
            keys: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// A signed access token for `who` with session `sid`, valid `ttl` seconds.
    pub fn token(&self, who: &Person, sid: &str, ttl: i64, amr: &[&str]) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: who.id.clone(),
            exp: now + ttl,
            iat: now,
            jti: random_token().unwrap(),
            sid: sid.to_owned(),
            tenant: self.tenant.clone(),
            roles: who.roles.clone(),
            scope: "openid".into(),
            amr: amr.iter().map(|s| s.to_string()).collect(),
            auth_time: now,
            email: Some(who.email.clone()),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }

    /// Registers an API key with `roles`; returns the raw `kg_<prefix>_<secret>`.
    pub fn api_key(&self, name: &str, roles: &[&str]) -> (ApiKeyId, String) {
        let prefix = keygate_core::crypto::random::random_alphanumeric(8).unwrap();
        let raw = format!("kg_{prefix}_{}", random_token().unwrap());
        let id = ApiKeyId::new();
        self.keys.lock().unwrap().insert(
            prefix,
            (
                id,
                sha256(raw.as_bytes()),
                name.to_owned(),
                roles.iter().map(|s| s.to_string()).collect(),
            ),
        );
        (id, raw)
    }

    /// Opens a session for `who` directly; returns (cookie value, session id).
    pub fn open_session(&self, who: &Person) -> (String, String) {
        let cookie = random_token().unwrap();
        let sid = uuid::Uuid::now_v7().to_string();
        self.sessions
            .lock()
            .unwrap()
            .insert(cookie.clone(), (sid.clone(), who.clone()));
        (cookie, sid)
    }

    fn person_identity(
        &self,
        who: &Person,
        sid: &str,
        kind: CredentialKind,
        amr: Vec<String>,
        exp: chrono::DateTime<Utc>,
    ) -> Identity {
        Identity {
            tenant_id: self.tenant_id,
            tenant: self.tenant.clone(),
            subject: who.id.clone(),
            username: who.email.clone(),
            email: Some(who.email.clone()),
            email_verified: Some(true),
            roles: who.roles.clone(),
            permissions: Vec::new(),
            scopes: vec!["openid".into()],
            amr,
            acr: None,
            auth_time: Some(Utc::now()),
            kind,
            revocation_ids: vec![sid.to_owned()],
            session_id: None,
            expires_at: exp,
            api_key: None,
        }
    }
}

#[async_trait]
impl Authenticator for TestIdentities {
    async fn access_token(&self, tenant: &LiveTenant, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        let c = data.claims;
        if c.tenant != tenant.row.name || tenant.row.id != self.tenant_id {
            return Err(AuthError::Invalid);
        }
        let exp = chrono::DateTime::from_timestamp(c.exp, 0).ok_or(AuthError::Invalid)?;
        Ok(Identity {
            tenant_id: tenant.row.id,
            tenant: tenant.row.name.clone(),
            subject: c.sub,
            username: c.email.clone().unwrap_or_default(),
            email_verified: c.email.as_ref().map(|_| true),
            email: c.email,
            roles: c.roles,
            permissions: Vec::new(),
            scopes: c
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            amr: c.amr,
            acr: None,
            auth_time: chrono::DateTime::from_timestamp(c.auth_time, 0),
            kind: CredentialKind::AccessToken,
            revocation_ids: vec![c.sid, c.jti],
            session_id: None,
            expires_at: exp,
            api_key: None,
        })
    }

    async fn api_key(&self, tenant: &LiveTenant, key: &str) -> Result<Identity, AuthError> {
        if tenant.row.id != self.tenant_id {
            return Err(AuthError::Invalid);
        }
        let prefix = key
            .strip_prefix("kg_")
            .and_then(|r| r.split_once('_'))
            .map(|(p, _)| p)
            .ok_or(AuthError::Invalid)?;
        let keys = self.keys.lock().unwrap();
        let (id, hash, name, roles) = keys.get(prefix).ok_or(AuthError::Invalid)?;
        if !constant_time_eq(hash, &sha256(key.as_bytes())) {
            return Err(AuthError::Invalid);
        }
        Ok(Identity {
            tenant_id: tenant.row.id,
            tenant: tenant.row.name.clone(),
            subject: format!("apikey:{name}"),
            username: name.clone(),
            email: None,
            email_verified: None,
            roles: roles.clone(),
            permissions: Vec::new(),
            scopes: Vec::new(),
            amr: Vec::new(),
            acr: None,
            auth_time: None,
            kind: CredentialKind::ApiKey,
            revocation_ids: vec![id.to_string()],
            session_id: None,
            expires_at: Utc::now() + Duration::days(365),
            api_key: Some(*id),
        })
    }

    async fn session(
        &self,
        tenant: &LiveTenant,
        cookie_value: &str,
    ) -> Result<Identity, AuthError> {
        if tenant.row.id != self.tenant_id {
            return Err(AuthError::Invalid);
        }
        let sessions = self.sessions.lock().unwrap();
        let (sid, who) = sessions.get(cookie_value).ok_or(AuthError::Invalid)?;
        Ok(self.person_identity(
            who,
            sid,
            CredentialKind::Session,
            vec!["pwd".into()],
            Utc::now() + Duration::hours(1),
        ))
    }

    async fn host_session(&self, _: &LiveTenant, _: &str) -> Result<Identity, AuthError> {
        // The stand-in has no handoff; the real service's is tested in edge.rs and identity/.
        Err(AuthError::Invalid)
    }

    async fn upstream_token(
        &self,
        _: &LiveTenant,
        identity: &Identity,
        _: &UpstreamGrant,
    ) -> Result<String, AuthError> {
        let who = Person {
            id: identity.subject.clone(),
            email: identity.username.clone(),
            password: String::new(),
            roles: identity.roles.clone(),
        };
        Ok(self.token(
            &who,
            identity
                .revocation_ids
                .first()
                .map(String::as_str)
                .unwrap_or(""),
            60,
            &[],
        ))
    }
}

#[async_trait]
impl AccountFlows for TestIdentities {
    async fn sign_in(
        &self,
        tenant: &LiveTenant,
        attempt: &SignInAttempt,
        _: &RequestMeta,
    ) -> Result<BrowserSignIn, FlowError> {
        if tenant.row.id != self.tenant_id {
            return Err(FlowError::InvalidCredentials);
        }
        let who = self
            .people
            .iter()
            .find(|p| {
                p.email.eq_ignore_ascii_case(&attempt.email)
                    && constant_time_eq(p.password.as_bytes(), attempt.password.as_bytes())
            })
            .ok_or(FlowError::InvalidCredentials)?;
        let (cookie_value, _) = self.open_session(who);
        Ok(BrowserSignIn::Session(
            BrowserSession {
                cookie_value,
                max_age: std::time::Duration::from_secs(3600),
                device_cookie: None,
            },
            None,
        ))
    }
    async fn begin_sign_in_enrolment(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &RequestMeta,
    ) -> Result<TotpEnrolment, FlowError> {
        Err(FlowError::SignInExpired)
    }
    async fn complete_sign_in(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &str,
        _: &RequestMeta,
    ) -> Result<BrowserSignIn, FlowError> {
        Err(FlowError::SignInExpired)
    }
    async fn sign_up(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(())
    }
    async fn verify_email(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Err(FlowError::InvalidLink)
    }
    async fn request_password_reset(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(())
    }
    async fn reset_password(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Err(FlowError::InvalidLink)
    }
    async fn request_unlock(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        Ok(())
    }
    async fn unlock(
        &self,
        _: &LiveTenant,
        _: &str,
        _: Option<&str>,
        _: &RequestMeta,
    ) -> Result<String, FlowError> {
        Err(FlowError::InvalidLink)
    }
    async fn sign_out(
        &self,
        _: &LiveTenant,
        cookie_value: &str,
        _: &RequestMeta,
    ) -> Result<(), FlowError> {
        let removed = self.sessions.lock().unwrap().remove(cookie_value);
        if let Some((sid, _)) = removed {
            self.ephemeral
                .revoke(&sid, std::time::Duration::from_secs(3600))
                .await
                .map_err(|_| FlowError::Unavailable)?;
        }
        Ok(())
    }
    // The edge tests' tenant has no upstream providers.
    async fn providers(
        &self,
        _: &LiveTenant,
    ) -> Result<Vec<keygate_gateway::identity::ProviderButton>, FlowError> {
        Ok(Vec::new())
    }
    async fn sso_start(
        &self,
        _: &LiveTenant,
        _: keygate_gateway::identity::SsoStart,
        _: &RequestMeta,
    ) -> Result<keygate_gateway::identity::SsoStarted, FlowError> {
        Err(FlowError::UnknownProvider)
    }
    async fn saml_metadata(&self, _: &LiveTenant, _: &str) -> Result<String, FlowError> {
        Err(FlowError::UnknownProvider)
    }
    async fn sso_finish(
        &self,
        _: &LiveTenant,
        _: &str,
        _: keygate_gateway::identity::SsoCallback,
        _: Option<&str>,
        _: &RequestMeta,
    ) -> Result<keygate_gateway::identity::SsoFinished, FlowError> {
        Err(FlowError::UnknownProvider)
    }
    async fn claim_link(
        &self,
        _: &LiveTenant,
        _: &str,
        _: &str,
        _: &RequestMeta,
    ) -> Result<String, FlowError> {
        Err(FlowError::InvalidLink)
    }
}
