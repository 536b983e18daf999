//! Password sign-in: per-IP rate limit, dummy verification for unknown accounts,
//! progressive lockout (or a known device's own budget, `device.rs`), then a session with a
//! refresh-token family, an access token and a new device token.

use super::audit::kind;
use super::challenge::SignInOutcome;
use super::levels::{AMR_PASSWORD, acr_of};
use super::lockout::{lock_duration, time_left};
use super::metrics::Grant;
use super::principal::{ADMIN_GROUP, ADMIN_PERMISSION, ADMIN_ROLE};
use super::scopes;
use super::tenants::LiveTenant;
use super::tokens::{self, AccessClaims};
use super::{
    Credential, IdentityError, IdentityService, PasswordSignIn, Principal, RequestMeta, SignedIn,
    TokenSet, chrono_duration,
};
use chrono::{DateTime, Utc};
use keygate_core::crypto::{random::random_token, sha256};
use keygate_core::email::EmailAddress;
use keygate_core::ids::SessionId;
use keygate_core::store::{NewSession, Session, SubjectFacts, User, UserStatus};
use keygate_core::tenant_settings::EmailVerification;
use serde_json::json;

/// Longest password looked at; longer input is refused before hashing.
pub(crate) const MAX_PASSWORD_BYTES: usize = 4096;
/// Longest email accepted.
pub(crate) const MAX_EMAIL_BYTES: usize = 320;

/// What a new session is opened for.
pub(super) struct SessionGrant {
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// OAuth client its tokens are issued to.
    pub client_id: String,
    /// Scopes granted, space-separated.
    pub scope: String,
    /// A browser session (cookie, session lifetimes) or a token client's.
    pub browser: bool,
    /// When the person authenticated, if earlier than now (a code grant's session keeps
    /// the browser sign-in's time, an upstream provider's `auth_time`); `None` is now.
    pub auth_time: Option<DateTime<Utc>>,
    /// The data of the sign-in's `login.succeeded` audit event (the session id is added),
    /// written in the same transaction as the session: a sign-in is recorded exactly when
    /// its session exists.
    pub login_audit: Option<serde_json::Value>,
}

/// A session just opened, with the secrets that exist only in this answer.
pub(super) struct OpenedSession {
    /// The stored session.
    pub session: Session,
    /// Its first refresh token (raw).
    pub refresh_token: String,
    /// Its cookie token (raw), for browser sessions.
    pub cookie: Option<String>,
}

/// Refuses a client whose address the tenant's `network.allow`/`network.deny` lists exclude
/// (the address by the gateway's one rule, `client_addr`, carried in `meta`).
pub(super) fn admit_network(t: &LiveTenant, meta: &RequestMeta) -> Result<(), IdentityError> {
    if t.settings.network.permits(meta.ip) {
        Ok(())
    } else {
        Err(IdentityError::NetworkDenied)
    }
}

impl IdentityService {
    /// Counts one request in `bucket` for `key`; refuses past `max` in the window.
    pub(super) async fn limit(
        &self,
        bucket: &str,
        key: &str,
        max: u64,
    ) -> Result<(), IdentityError> {
        let window = self.deps().limits.window;
        let hits = self
            .deps()
            .ephemeral
            .hit(&format!("{bucket}:{key}"), window)
            .await?;
        if hits > max {
            return Err(IdentityError::RateLimited {
                retry_after: window,
            });
        }
        Ok(())
    }

    /// Signs a person in with email and password, in steps: admit the attempt, check the
    /// password (with the lockout), check the account, then either issue the session and
    /// tokens or, when a second factor is needed, open its challenge (`challenge.rs`).
    /// Every refusal after admission is audited before it is answered.
    #[tracing::instrument(name = "identity.sign_in", level = "debug", skip_all)]
    pub async fn sign_in(
        &self,
        tenant: &str,
        req: PasswordSignIn,
        meta: &RequestMeta,
    ) -> Result<SignInOutcome, IdentityError> {
        let result = self.password_sign_in(tenant, req, meta).await;
        self.inner.metrics.sign_in(&result);
        if let Ok(SignInOutcome::SignedIn(_)) = result {
            self.inner.metrics.issued(Grant::Password);
        }
        result
    }

    /// The steps of [`IdentityService::sign_in`], which counts how they ended.
    async fn password_sign_in(
        &self,
        tenant: &str,
        req: PasswordSignIn,
        meta: &RequestMeta,
    ) -> Result<SignInOutcome, IdentityError> {
        let t = self.tenant(tenant).await?;
        self.admit_sign_in(&t, &req, meta).await?;
        let (user, counted) = self.check_password(&t, &req, meta).await?;
        let user = self
            .check_account(&t, user, req.new_password.as_deref(), meta)
            .await?;
        if counted {
            self.deps().store.reset_lockout(t.row.id, user.id).await?;
        }
        if let Some(enrol) = self.second_factor_needed(&t, &user).await? {
            let challenge = self.open_challenge(&t, &user, &req, enrol).await?;
            return Ok(SignInOutcome::SecondFactor(challenge));
        }
        let amr = vec![AMR_PASSWORD.to_owned()];
        let done = self.issue_sign_in(&t, &user, req, meta, amr).await?;
        Ok(SignInOutcome::SignedIn(Box::new(done)))
    }

    /// Whether the tenant takes password sign-ins from this network, the input is of sane
    /// size and the address is within its rate limit.
    async fn admit_sign_in(
        &self,
        t: &LiveTenant,
        req: &PasswordSignIn,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        // Before any password is looked at: a refused network learns nothing about accounts
        // and moves no lockout counter.
        admit_network(t, meta)?;
        if !t.settings.sign_in.password {
            return Err(IdentityError::PasswordSignInDisabled);
        }
        if req.email.len() > MAX_EMAIL_BYTES || req.password.len() > MAX_PASSWORD_BYTES {
            return Err(IdentityError::InvalidRequest(
                "email or password too long".into(),
            ));
        }
        // An unknown client is refused before any password is looked at.
        self.registered_client(t, req.client_id.as_deref()).await?;
        if let Some(ip) = meta.ip {
            self.limit(
                "signin-ip",
                &format!("{}:{ip}", t.row.id),
                self.deps().limits.sign_in_per_ip,
            )
            .await?;
        }
        Ok(())
    }

    /// Writes the audit row of a failed sign-in for `reason`.
    pub(super) async fn audit_failure(
        &self,
        t: &LiveTenant,
        user: Option<keygate_core::ids::UserId>,
        meta: &RequestMeta,
        reason: &str,
    ) -> Result<(), IdentityError> {
        self.audit(t, kind::LOGIN_FAILED, user, meta, json!({"reason": reason}))
            .await
    }

    /// Audits a failed sign-in for `reason`, then refuses it with `error`.
    pub(super) async fn refuse<T>(
        &self,
        t: &LiveTenant,
        user: &User,
        meta: &RequestMeta,
        reason: &str,
        error: IdentityError,
    ) -> Result<T, IdentityError> {
        self.audit_failure(t, Some(user.id), meta, reason).await?;
        Err(error)
    }

    /// The account behind the email if the password is right and it is not locked, and
    /// whether its lockout counter is to be reset after success. Unknown accounts cost the
    /// same hashing and get the same answers as wrong passwords; a device that signed in to
    /// the account before is judged by its own budget ([`super::device`]), every other
    /// client by the account's lockout.
    async fn check_password(
        &self,
        t: &LiveTenant,
        req: &PasswordSignIn,
        meta: &RequestMeta,
    ) -> Result<(User, bool), IdentityError> {
        let d = self.deps();
        // An address outside the accepted syntax has no account: the unknown-account answer.
        let user = match EmailAddress::parse(&req.email) {
            Ok(address) => d.store.user_by_email(t.row.id, address.as_str()).await?,
            Err(_) => None,
        };
        let Some(user) = user else {
            d.hasher.verify_dummy(&req.password).await?;
            self.audit_failure(t, None, meta, "unknown_account").await?;
            return Err(self.unknown_account_failure(t, &req.email).await);
        };
        // Device tokens name an account, so one never validates for an unknown address:
        // those always take the ghost lockout above.
        if t.settings.lockout.enabled
            && let Some(device) = self.known_device(t, &user, req.device.as_deref())
        {
            return self
                .check_password_on_device(t, req, user, &device, meta)
                .await;
        }
        self.check_password_on_account(t, req, user, meta).await
    }

    /// [`Self::check_password`] for a client without a device token for the account: the
    /// account's lockout holds, and a wrong password is audited before it is counted, so a
    /// counter outage cannot hide the attempt.
    pub(super) async fn check_password_on_account(
        &self,
        t: &LiveTenant,
        req: &PasswordSignIn,
        user: User,
        meta: &RequestMeta,
    ) -> Result<(User, bool), IdentityError> {
        let now = self.now();
        let d = self.deps();
        let counter = if t.settings.lockout.enabled {
            d.store.lockout(t.row.id, user.id).await?
        } else {
            None
        };
        if let Some(left) = counter
            .as_ref()
            .and_then(|c| c.locked_until)
            .and_then(|until| time_left(until, now))
        {
            d.hasher.verify_dummy(&req.password).await?;
            let locked = IdentityError::AccountLocked { retry_after: left };
            return self.refuse(t, &user, meta, "locked", locked).await;
        }
        if !self.password_matches(&user, &req.password).await? {
            self.audit_failure(t, Some(user.id), meta, "bad_password")
                .await?;
            self.count_failure(t, &user, meta, now).await?;
            return Err(IdentityError::InvalidCredentials);
        }
        Ok((user, counter.is_some()))
    }

    /// Whether `password` is the account's (the same hashing cost when it has none).
    pub(super) async fn password_matches(
        &self,
        user: &User,
        password: &str,
    ) -> Result<bool, IdentityError> {
        let d = self.deps();
        Ok(match &user.password_hash {
            Some(hash) => d.hasher.verify(password, hash).await?,
            None => d.hasher.verify_dummy(password).await?,
        })
    }

    /// Counts a wrong password against the account and locks it when the schedule says so.
    pub(super) async fn count_failure(
        &self,
        t: &LiveTenant,
        user: &User,
        meta: &RequestMeta,
        now: DateTime<Utc>,
    ) -> Result<(), IdentityError> {
        if !t.settings.lockout.enabled {
            return Ok(());
        }
        let d = self.deps();
        let state = d.store.record_failure(t.row.id, user.id, now).await?;
        if let Some(lock) = lock_duration(state.failures) {
            d.store.lock_until(t.row.id, user.id, now + lock).await?;
            self.inner.metrics.lockout();
            self.audit(
                t,
                kind::LOCKED,
                Some(user.id),
                meta,
                json!({"failures": state.failures, "seconds": lock.num_seconds()}),
            )
            .await?;
        }
        Ok(())
    }

    /// The account may sign in: active, verified when the tenant requires it, and with a
    /// new password set when it must change its password.
    pub(super) async fn check_account(
        &self,
        t: &LiveTenant,
        user: User,
        new_password: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<User, IdentityError> {
        if user.status != UserStatus::Active {
            let e = IdentityError::AccountSuspended;
            return self.refuse(t, &user, meta, "suspended", e).await;
        }
        if t.settings.sign_in.email_verification == EmailVerification::Required
            && !user.email_verified
        {
            let e = IdentityError::EmailNotVerified;
            return self.refuse(t, &user, meta, "email_not_verified", e).await;
        }
        if !user.must_change_password {
            return Ok(user);
        }
        let Some(new_password) = new_password else {
            return Err(IdentityError::PasswordChangeRequired);
        };
        // Storing the new password also clears `must_change_password`.
        self.set_new_password(t, &user, new_password, meta).await?;
        Ok(User {
            must_change_password: false,
            ..user
        })
    }

    /// Opens the session of a successful sign-in by methods `amr`, signs its access token
    /// and audits it.
    pub(super) async fn issue_sign_in(
        &self,
        t: &LiveTenant,
        user: &User,
        req: PasswordSignIn,
        meta: &RequestMeta,
        amr: Vec<String>,
    ) -> Result<SignedIn, IdentityError> {
        let client = self.registered_client(t, req.client_id.as_deref()).await?;
        let client_id = client.client_id().to_owned();
        let (roles, permissions) = self.grants(t, user).await?;
        // Within the client's allowedScopes, and of those only what the person may have.
        let scope = match scopes::grant_for_sign_in(req.scope.as_deref(), &permissions)
            .and_then(|granted| client.check_scopes(Some(&granted)).map(|()| granted))
        {
            Ok(scope) => scope,
            Err(e) => return self.refuse(t, user, meta, "invalid_scope", e).await,
        };
        let opened = self
            .open_session(
                t,
                user,
                SessionGrant {
                    acr: Some(acr_of(&amr).into()),
                    amr: amr.clone(),
                    client_id: client_id.clone(),
                    scope: scope.clone(),
                    browser: req.browser,
                    auth_time: None,
                    login_audit: Some(json!({"amr": amr})),
                },
                meta,
            )
            .await?;
        let session = opened.session;
        // A new device token on every sign-in, merged into the browser's device cookie.
        let device_token = self.new_device_token(t, user.id)?;
        let device_cookie =
            self.device_cookie_after(t, user.id, req.device.as_deref(), &device_token);
        let (access_token, expires_in) = self
            .access_token(t, user, &session, &client_id, &scope, &roles, &permissions)
            .await?;
        Ok(SignedIn {
            tokens: TokenSet {
                access_token,
                token_type: "Bearer".into(),
                expires_in,
                refresh_token: opened.refresh_token,
                scope: scope.clone(),
                id_token: None,
            },
            session_id: session.id,
            session_cookie: opened.cookie,
            device_token,
            device_cookie,
            session_expires_at: session.absolute_expires_at,
            backup_codes: None,
            principal: Principal::person(
                t,
                user,
                (roles, permissions),
                scope.split_whitespace().map(str::to_owned).collect(),
                Credential::Password {
                    session_id: session.id,
                    auth_time: session.auth_time,
                },
            ),
        })
    }

    /// Opens a session with its first refresh token (returned raw; only its hash is stored)
    /// and, for a browser, its cookie token (likewise). Browser sessions live by the
    /// tenant's session lifetimes, token clients' by its refresh-token lifetimes.
    pub(super) async fn open_session(
        &self,
        t: &LiveTenant,
        user: &User,
        grant: SessionGrant,
        meta: &RequestMeta,
    ) -> Result<OpenedSession, IdentityError> {
        let now = self.now();
        let (idle, absolute) = if grant.browser {
            (
                t.settings.session_idle_timeout(),
                t.settings.session_absolute_lifetime(),
            )
        } else {
            // A registered client's own (shorter) refresh lifetime bounds the family: every
            // token rotated from it expires with the session.
            let client = self.registered_client(t, Some(&grant.client_id)).await?;
            (
                t.settings.refresh_idle_ttl(),
                super::relying_party::refresh_absolute_ttl(t, client.registration()),
            )
        };
        let absolute_expires_at = now + chrono_duration(absolute);
        let cookie = if grant.browser {
            Some(random_token()?)
        } else {
            None
        };
        let id = SessionId::new();
        let raw = random_token()?;
        let audit = grant.login_audit.map(|mut data| {
            if let Some(map) = data.as_object_mut() {
                map.insert("session".into(), json!(id));
            }
            self.audit_event(t, kind::LOGIN_OK, Some(user.id), meta, data)
        });
        let refresh_expires_at =
            (now + chrono_duration(t.settings.refresh_idle_ttl())).min(absolute_expires_at);
        let new = NewSession {
            tenant_id: t.row.id,
            user_id: user.id,
            user_agent: meta
                .user_agent
                .as_ref()
                .map(|u| u.chars().take(512).collect()),
            ip: meta.ip.map(|ip| ip.to_string()),
            amr: grant.amr,
            acr: grant.acr,
            // Never in the future: a provider's clock ahead of ours proves no fresher login.
            auth_time: grant.auth_time.map_or(now, |at| at.min(now)),
            created_at: now,
            idle_expires_at: (now + chrono_duration(idle)).min(absolute_expires_at),
            absolute_expires_at,
            token_hash: cookie.as_ref().map(|c| sha256(c.as_bytes()).to_vec()),
            client_id: grant.client_id,
            scope: grant.scope,
        };
        // One transaction: the session, its first refresh token and the sign-in's audit event
        // exist together or not at all (the store gone mid-way leaves nothing behind).
        let session = self
            .deps()
            .store
            .open_session(
                id,
                &new,
                &sha256(raw.as_bytes()),
                refresh_expires_at,
                audit.as_ref(),
            )
            .await?;
        self.put_hot_session(t, &session).await;
        Ok(OpenedSession {
            session,
            refresh_token: raw,
            cookie,
        })
    }

    /// The account's roles and permissions: Role bindings matching its verified email and groups,
    /// plus the built-in admin role for members of [`ADMIN_GROUP`].
    pub(super) async fn grants(
        &self,
        t: &LiveTenant,
        user: &User,
    ) -> Result<(Vec<String>, Vec<String>), IdentityError> {
        // Only an address the person proved they read binds roles: anyone can sign up as
        // an unverified `admin@…` where verification is optional.
        let facts = SubjectFacts {
            email: user.email_verified.then(|| user.email.clone()),
            groups: user.groups.clone(),
            // As the providers asserted them at the person's last sign-in through each link.
            idp_groups: self
                .deps()
                .store
                .idp_groups_of_user(t.row.id, user.id)
                .await?,
        };
        let grants = self
            .deps()
            .store
            .roles_for_subject(t.row.id, &facts)
            .await?;
        let mut roles: Vec<String> = grants.iter().map(|g| g.name.clone()).collect();
        let mut permissions: Vec<String> = grants
            .iter()
            .flat_map(|g| g.permissions.iter().cloned())
            .collect();
        if user.groups.iter().any(|g| g == ADMIN_GROUP) {
            roles.push(ADMIN_ROLE.into());
            permissions.push(ADMIN_PERMISSION.into());
        }
        roles.sort();
        roles.dedup();
        permissions.sort();
        permissions.dedup();
        Ok((roles, permissions))
    }

    /// Mints an access token for `user` in `session`; returns it with its lifetime in seconds.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn access_token(
        &self,
        t: &LiveTenant,
        user: &User,
        session: &Session,
        client_id: &str,
        scope: &str,
        roles: &[String],
        permissions: &[String],
    ) -> Result<(String, u64), IdentityError> {
        let mut claims = self.person_claims(t, user, session, client_id, scope, roles, permissions);
        // The client's overrides, as its first grant applied them (a refresh mints here).
        let client = self.registered_client(t, Some(client_id)).await?;
        let ttl = super::relying_party::access_token_ttl(t, client.registration());
        claims.aud = super::relying_party::audience(t, client.registration());
        claims.exp = claims.iat + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        Ok((
            tokens::mint(&self.inner.signer, t, &claims).await?,
            ttl.as_secs(),
        ))
    }

    /// The claims of an access token for `user` in `session`, by the tenant's lifetime and
    /// audience (a registered client's overrides are applied by its grant).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn person_claims(
        &self,
        t: &LiveTenant,
        user: &User,
        session: &Session,
        client_id: &str,
        scope: &str,
        roles: &[String],
        permissions: &[String],
    ) -> AccessClaims {
        let now = self.now();
        let ttl = t.settings.access_token_ttl();
        AccessClaims {
            iss: t.issuer.clone(),
            sub: user.id.to_string(),
            aud: t.audience.clone(),
            exp: (now + chrono_duration(ttl)).timestamp(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: uuid::Uuid::now_v7().to_string(),
            client_id: client_id.to_owned(),
            sid: Some(session.id.to_string()),
            tenant: t.row.name.clone(),
            roles: roles.to_vec(),
            permissions: permissions.to_vec(),
            scope: scope.to_owned(),
            amr: session.amr.clone(),
            acr: session.acr.clone(),
            auth_time: session.auth_time.timestamp(),
            email: Some(user.email.clone()),
            email_verified: Some(user.email_verified),
        }
    }

    /// How long a revocation must be remembered so every token it covers has expired.
    pub(super) fn revocation_ttl(&self, t: &LiveTenant) -> std::time::Duration {
        t.settings.access_token_ttl() + std::time::Duration::from_secs(120)
    }

    /// Revokes a session in the store and on every replica.
    pub(super) async fn end_session(
        &self,
        t: &LiveTenant,
        session: keygate_core::ids::SessionId,
        now: DateTime<Utc>,
    ) -> Result<bool, IdentityError> {
        let d = self.deps();
        let revoked = d.store.revoke_session(t.row.id, session, now).await?;
        d.ephemeral
            .revoke(&session.to_string(), self.session_revocation_ttl(t))
            .await?;
        if let Some(row) = d.store.session(t.row.id, session).await? {
            self.forget_hot_session(t, &row).await?;
        }
        Ok(revoked)
    }

    /// Session revocations must outlive access tokens and session cookies.
    pub(super) fn session_revocation_ttl(&self, t: &LiveTenant) -> std::time::Duration {
        self.revocation_ttl(t).max(
            t.settings
                .session_idle_timeout()
                .min(std::time::Duration::from_secs(86_400)),
        )
    }
}
