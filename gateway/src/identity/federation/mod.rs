//! Sign-in through upstream identity providers, and the one door every protocol ends at.
//!
//! A protocol module (`oidc`, `github`, `saml`) turns a provider's answer into a
//! [`FederatedIdentity`] it has verified. [`IdentityService::sign_in_federated`] takes it
//! from there and knows nothing of protocols: the provider's allowed email domains, the
//! account the identity is linked to (or a new one, or a link to an existing one under the
//! provider's `linking` policy, or a link token the person claims after signing in
//! locally), the groups the provider asserted (kept on the link for `idpGroups` role
//! subjects), and the session.
//!
//! ```text
//! pages ──► sso_start ──► flow (state, nonce, PKCE in the ephemeral store) ──► provider
//! pages ◄── sso_finish ◄── flow ◄── oidc | github | saml ──► FederatedIdentity ──► sign_in_federated
//! ```
//!
//! A SAML IdP answers at the assertion consumer service (a form POST) instead of the
//! callback; its `RelayState` is the flow's `state`.

mod flow;
mod github;
mod oidc;
mod providers;
mod saml;

pub use flow::{STATE_TTL, SsoCallback, SsoFinished, SsoStart, SsoStarted};
pub(crate) use providers::Providers;

use super::audit::kind;
use super::scopes;
use super::signin::SessionGrant;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, RequestMeta};
use chrono::{DateTime, Utc};
use keygate_core::crypto::{random::random_token, sha256};
use keygate_core::email::EmailAddress;
use keygate_core::federation::{Endpoints, Linking, Protocol, ProviderSettings};
use keygate_core::ids::{IdpId, SessionId, UserId};
use keygate_core::store::{IdentityProvider, NewExternalIdentity, NewUser, User, UserStatus};
use keygate_core::tenant_settings::Registration;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// `acr` of a sign-in through an upstream provider.
pub const ACR_FEDERATED: &str = "urn:keygate:acr:fed";
/// `amr` value of a sign-in through an upstream provider.
pub(crate) const AMR_FEDERATED: &str = "fed";
/// How long a link token (claim an upstream identity after signing in locally) lives.
pub const LINK_TOKEN_TTL: Duration = Duration::from_secs(600);
/// Longest list of upstream groups kept per link; more are cut (a group claim is no
/// database).
const MAX_GROUPS: usize = 256;
/// Longest group name kept.
const MAX_GROUP_BYTES: usize = 256;

/// How the gateway reaches Google and GitHub, and whether plain-HTTP loopback issuers are
/// accepted (`keygate dev`, tests). Production uses the default.
#[derive(Clone, Debug, Default)]
pub struct Federation {
    /// Where Google and GitHub live (tests point them at local peers).
    pub endpoints: Endpoints,
    /// Accept `http://` issuers on loopback hosts.
    pub allow_loopback_http: bool,
}

/// An identity an upstream provider vouched for, already verified by its protocol module:
/// what the door needs, whatever the protocol.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedIdentity {
    /// The IdentityProvider's name in the tenant.
    pub provider: String,
    /// The provider's stable identifier of the person (OIDC `sub`, GitHub user id, SAML NameID).
    pub subject: String,
    /// Email address, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says the person controls that address.
    pub email_verified: bool,
    /// Display name, if given.
    pub name: Option<String>,
    /// Groups the provider asserts now (replacing those of the last sign-in).
    pub groups: Vec<String>,
    /// When the person authenticated at the provider (`auth_time`), if it said.
    pub auth_time: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for FederatedIdentity {
    /// Leaves the email and name out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederatedIdentity")
            .field("provider", &self.provider)
            .field("email_verified", &self.email_verified)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

/// What a federated sign-in came to.
#[derive(Clone, Debug)]
pub enum FederatedOutcome {
    /// A session is open.
    SignedIn(FederatedSession),
    /// An account with the identity's email exists and may not be joined automatically: the
    /// person signs in to it locally and hands over this token to link the identity.
    LinkRequired {
        /// Single-use, [`LINK_TOKEN_TTL`]; only its hash is stored.
        link_token: String,
    },
    /// A step-up: the browser's session was raised by a fresh sign-in at the provider; its
    /// cookie stays as it is.
    SteppedUp,
}

/// A browser session opened by an upstream sign-in.
#[derive(Clone)]
pub struct FederatedSession {
    /// The session.
    pub session_id: SessionId,
    /// The session cookie's value.
    pub cookie_value: String,
    /// Cookie lifetime.
    pub max_age: Duration,
    /// The account.
    pub user_id: UserId,
}

impl std::fmt::Debug for FederatedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederatedSession")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// A provider as the sign-in page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProviderButton {
    /// Name in the tenant (the URL segment).
    pub name: String,
    /// Button label.
    pub display_name: String,
}

/// Why an upstream sign-in was refused; each is shown to the person as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FederationRefusal {
    /// The provider answered with an OAuth error (the person cancelled, or it refused).
    #[error("the identity provider refused the sign-in: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ProviderError {
        /// OAuth `error` code.
        error: String,
        /// `error_description`, if sent.
        description: Option<String>,
    },
    /// The `state` is unknown, used, expired, or from another browser.
    #[error(
        "this sign-in link is unknown, used or expired, or was started in another browser; start again"
    )]
    InvalidState,
    /// The provider's tokens or answers failed validation (the text says which check).
    #[error("the identity provider's answer failed validation: {0}")]
    InvalidAnswer(String),
    /// The provider could not be reached or misbehaved.
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    /// No email came with the identity, or none verified (GitHub).
    #[error("the identity provider did not share a verified email address")]
    NoEmail,
    /// The email's domain is not allowed by this provider's `allowedEmailDomains`.
    #[error("accounts of this email domain may not sign in here")]
    EmailDomainNotAllowed,
    /// Not a member of any of the provider's `allowedOrganizations`.
    #[error("members of your organizations may not sign in here")]
    OrganizationNotAllowed,
    /// The Google account is not in the provider's `hostedDomain`.
    #[error("accounts of this Google Workspace domain may not sign in here")]
    HostedDomainNotAllowed,
    /// The tenant admits no new people through this provider (invite-only registration).
    #[error("this tenant does not admit new accounts through this provider")]
    NewAccountsClosed,
    /// The provider's settings are unusable (the operator reports why in its status).
    #[error("this identity provider is not usable right now")]
    ProviderUnusable,
    /// A fresh sign-in was needed and the provider did not say when the person authenticated
    /// (GitHub never does), so it proves nothing fresh.
    #[error(
        "this identity provider cannot confirm that you just signed in; use another way to confirm it is you"
    )]
    FreshnessUnknown,
    /// A step-up came back signed in as another account of the provider than the one linked
    /// to the session's person.
    #[error(
        "you signed in at the identity provider as someone else; sign in there with the account linked to this one"
    )]
    NotTheSamePerson,
}

/// What a link token stands for, kept in the ephemeral store under its hash.
#[derive(Serialize, Deserialize)]
struct PendingLink {
    tenant: uuid::Uuid,
    idp: IdpId,
    subject: String,
    groups: Vec<String>,
}

fn link_key(token: &str) -> String {
    format!("fed-link:{}", hex(&sha256(token.as_bytes())))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Groups as kept: non-empty, bounded in number and length, without repeats.
fn kept_groups(groups: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = groups
        .iter()
        .filter(|g| !g.is_empty() && g.len() <= MAX_GROUP_BYTES)
        .take(MAX_GROUPS)
        .cloned()
        .collect();
    kept.sort();
    kept.dedup();
    kept
}

impl IdentityService {
    /// The tenant's providers for the sign-in page (those whose settings this gateway can use).
    pub async fn federated_providers(
        &self,
        tenant: &str,
    ) -> Result<Vec<ProviderButton>, IdentityError> {
        let t = self.tenant(tenant).await?;
        let rows = self.deps().store.list_idps(t.row.id).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let settings: ProviderSettings = serde_json::from_value(row.config).ok()?;
                Some(ProviderButton {
                    name: row.name,
                    display_name: settings.display_name,
                })
            })
            .collect())
    }

    /// keygate's SAML service-provider metadata for provider `provider` of `tenant` (its entity
    /// id and assertion consumer service), to register at the IdP; `NotFound` for a provider
    /// that is not SAML. Needs no IdP metadata, so it can be registered first.
    pub async fn saml_sp_metadata(
        &self,
        tenant: &str,
        provider: &str,
    ) -> Result<String, IdentityError> {
        let t = self.tenant(tenant).await?;
        let (row, settings) = self.provider_row(&t, provider).await?;
        let Protocol::Saml(saml) = &settings.protocol else {
            return Err(IdentityError::NotFound);
        };
        saml::sp_metadata(&saml.entity_id, &self.saml_acs_url(&t.row.name, &row.name))
    }

    /// The provider `name` of `t` with its settings; `NotFound` when absent, refused when its
    /// stored settings are not ones this gateway reads.
    pub(super) async fn provider_row(
        &self,
        t: &LiveTenant,
        name: &str,
    ) -> Result<(IdentityProvider, ProviderSettings), IdentityError> {
        let row = self
            .deps()
            .store
            .idp_by_name(t.row.id, name)
            .await?
            .ok_or(IdentityError::NotFound)?;
        let settings: ProviderSettings = serde_json::from_value(row.config.clone())
            .map_err(|_| IdentityError::Federation(FederationRefusal::ProviderUnusable))?;
        Ok((row, settings))
    }

    /// The door every upstream protocol ends at: signs in the person `identity` names (its
    /// protocol module verified it), creating or linking the account as the provider's
    /// policy allows, and opens a browser session.
    pub async fn sign_in_federated(
        &self,
        tenant: &str,
        identity: FederatedIdentity,
        meta: &RequestMeta,
    ) -> Result<FederatedOutcome, IdentityError> {
        let t = self.tenant(tenant).await?;
        super::signin::admit_network(&t, meta)?;
        let (idp, settings) = self.provider_row(&t, &identity.provider).await?;
        let result = self.federated_account(&t, &idp, &settings, &identity).await;
        let (user, linked) = match result {
            Ok(Some(found)) => found,
            Ok(None) => return self.offer_link(&t, &idp, &identity).await,
            Err(e) => {
                let reason = match &e {
                    IdentityError::Federation(r) => refusal_code(r),
                    IdentityError::AccountSuspended => "suspended",
                    _ => "error",
                };
                self.audit(
                    &t,
                    kind::LOGIN_FAILED,
                    None,
                    meta,
                    json!({"reason": reason, "provider": idp.name}),
                )
                .await?;
                return Err(e);
            }
        };
        if linked {
            self.audit(
                &t,
                kind::IDENTITY_LINKED,
                Some(user.id),
                meta,
                json!({"provider": idp.name}),
            )
            .await?;
        }
        let session = self
            .open_federated_session(&t, &user, &idp, identity.auth_time, meta)
            .await?;
        Ok(FederatedOutcome::SignedIn(session))
    }

    /// The account `identity` signs in to, and whether it was linked just now; `None` when an
    /// account with its email exists that it may not join by itself.
    async fn federated_account(
        &self,
        t: &LiveTenant,
        idp: &IdentityProvider,
        settings: &ProviderSettings,
        identity: &FederatedIdentity,
    ) -> Result<Option<(User, bool)>, IdentityError> {
        let d = self.deps();
        let refuse = |r| Err(IdentityError::Federation(r));
        let Some(email) = identity.email.as_deref() else {
            return refuse(FederationRefusal::NoEmail);
        };
        let email = EmailAddress::parse(email)
            .map_err(|_| IdentityError::Federation(FederationRefusal::NoEmail))?;
        // A domain list admits addresses the provider vouches for, never a claimed one.
        let admitted = settings.allowed_email_domains.is_empty()
            || identity.email_verified && settings.email_domain_allowed(email.as_str());
        if !admitted {
            return refuse(FederationRefusal::EmailDomainNotAllowed);
        }
        let groups = kept_groups(&identity.groups);
        let now = self.now();
        if let Some(link) = d
            .store
            .identity_by_subject(t.row.id, idp.id, &identity.subject)
            .await?
        {
            let user = d
                .store
                .user(t.row.id, link.user_id)
                .await?
                .ok_or(IdentityError::InvalidCredentials)?;
            if user.status != UserStatus::Active {
                return Err(IdentityError::AccountSuspended);
            }
            d.store
                .touch_identity(t.row.id, link.id, now, &groups)
                .await?;
            self.inner.subjects.forget(t.row.id, user.id);
            return Ok(Some((user, false)));
        }
        if let Some(user) = d.store.user_by_email(t.row.id, email.as_str()).await? {
            // Joining needs both sides to vouch for the address: the provider's word alone
            // would hand an unverified local account (anyone may register any address) to
            // whoever holds the upstream identity, and the reverse.
            let joins = settings.linking == Linking::VerifiedEmail
                && identity.email_verified
                && user.email_verified;
            if !joins {
                return Ok(None);
            }
            if user.status != UserStatus::Active {
                return Err(IdentityError::AccountSuspended);
            }
            self.link(t, idp, &user, &identity.subject, groups).await?;
            return Ok(Some((user, true)));
        }
        if t.settings.sign_in.registration == Registration::Invite {
            return refuse(FederationRefusal::NewAccountsClosed);
        }
        let display_name = identity
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| email.as_str().split('@').next().unwrap_or("").to_owned())
            .chars()
            .take(200)
            .collect();
        let user = d
            .store
            .insert_user(&NewUser {
                tenant_id: t.row.id,
                email: email.as_str().to_owned(),
                display_name,
                status: UserStatus::Active,
                email_verified: identity.email_verified,
                must_change_password: false,
                password_hash: None,
                groups: Vec::new(),
            })
            .await?;
        if let Err(e) = self.link(t, idp, &user, &identity.subject, groups).await {
            // Nothing half-written: an account without the link that made it goes again.
            let _ = d.store.erase_user(t.row.id, user.id).await;
            return Err(e);
        }
        Ok(Some((user, true)))
    }

    /// Links `subject` at `idp` to `user`; a second link answers `Conflict` (409).
    async fn link(
        &self,
        t: &LiveTenant,
        idp: &IdentityProvider,
        user: &User,
        subject: &str,
        groups: Vec<String>,
    ) -> Result<(), IdentityError> {
        self.deps()
            .store
            .link_identity(&NewExternalIdentity {
                tenant_id: t.row.id,
                user_id: user.id,
                idp_id: idp.id,
                subject: subject.to_owned(),
                groups,
            })
            .await?;
        self.inner.subjects.forget(t.row.id, user.id);
        Ok(())
    }

    /// Keeps the identity for a person to claim after signing in locally.
    async fn offer_link(
        &self,
        t: &LiveTenant,
        idp: &IdentityProvider,
        identity: &FederatedIdentity,
    ) -> Result<FederatedOutcome, IdentityError> {
        let token = random_token()?;
        let pending = PendingLink {
            tenant: t.row.id.0,
            idp: idp.id,
            subject: identity.subject.clone(),
            groups: kept_groups(&identity.groups),
        };
        let bytes = serde_json::to_vec(&pending)
            .map_err(|e| IdentityError::Internal(format!("link token: {e}")))?;
        self.deps()
            .ephemeral
            .put(&link_key(&token), &bytes, LINK_TOKEN_TTL)
            .await?;
        Ok(FederatedOutcome::LinkRequired { link_token: token })
    }

    /// Links the identity a link token stands for to `user` (who just signed in locally).
    /// The token is spent whatever happens; `Conflict` (409) when the identity or the
    /// account is linked already.
    pub async fn claim_federated_link(
        &self,
        tenant: &str,
        user: UserId,
        link_token: &str,
        meta: &RequestMeta,
    ) -> Result<String, IdentityError> {
        let t = self.tenant(tenant).await?;
        let d = self.deps();
        let raw = d
            .ephemeral
            .take(&link_key(link_token))
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        let pending: PendingLink =
            serde_json::from_slice(&raw).map_err(|_| IdentityError::InvalidLink)?;
        if pending.tenant != t.row.id.0 {
            return Err(IdentityError::InvalidLink);
        }
        let idp = d
            .store
            .idp(t.row.id, pending.idp)
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        let user = d
            .store
            .user(t.row.id, user)
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        self.link(&t, &idp, &user, &pending.subject, pending.groups)
            .await?;
        self.audit(
            &t,
            kind::IDENTITY_LINKED,
            Some(user.id),
            meta,
            json!({"provider": idp.name, "claimed": true}),
        )
        .await?;
        Ok(idp.name)
    }

    /// Opens the browser session of an upstream sign-in.
    async fn open_federated_session(
        &self,
        t: &LiveTenant,
        user: &User,
        idp: &IdentityProvider,
        auth_time: Option<DateTime<Utc>>,
        meta: &RequestMeta,
    ) -> Result<FederatedSession, IdentityError> {
        let (_, permissions) = self.grants(t, user).await?;
        let opened = self
            .open_session(
                t,
                user,
                SessionGrant {
                    amr: vec![AMR_FEDERATED.into()],
                    acr: Some(ACR_FEDERATED.into()),
                    client_id: scopes::DEFAULT_CLIENT_ID.to_owned(),
                    scope: scopes::grant_for_sign_in(None, &permissions)?,
                    browser: true,
                    auth_time,
                    login_audit: Some(json!({"amr": [AMR_FEDERATED], "provider": idp.name})),
                },
                meta,
            )
            .await?;
        let cookie_value = opened.cookie.ok_or_else(|| {
            IdentityError::Internal("a browser sign-in opened a session without a cookie".into())
        })?;
        let max_age = (opened.session.absolute_expires_at - self.now())
            .to_std()
            .unwrap_or_default();
        Ok(FederatedSession {
            session_id: opened.session.id,
            cookie_value,
            max_age,
            user_id: user.id,
        })
    }
}

/// The audit reason of a refusal.
fn refusal_code(r: &FederationRefusal) -> &'static str {
    match r {
        FederationRefusal::ProviderError { .. } => "provider_error",
        FederationRefusal::InvalidState => "invalid_state",
        FederationRefusal::InvalidAnswer(_) => "invalid_answer",
        FederationRefusal::Unreachable(_) => "provider_unreachable",
        FederationRefusal::NoEmail => "no_email",
        FederationRefusal::EmailDomainNotAllowed => "email_domain",
        FederationRefusal::OrganizationNotAllowed => "organization",
        FederationRefusal::HostedDomainNotAllowed => "hosted_domain",
        FederationRefusal::NewAccountsClosed => "new_accounts_closed",
        FederationRefusal::ProviderUnusable => "provider_unusable",
        FederationRefusal::FreshnessUnknown => "freshness_unknown",
        FederationRefusal::NotTheSamePerson => "not_the_same_person",
    }
}

/// An error with its causes, for messages that say what failed ("certificate unknown").
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The code of an OAuth error response (`error`), as the provider sent it.
pub(super) fn oauth_error_code<T: Serialize>(code: &T) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "error".into())
}
