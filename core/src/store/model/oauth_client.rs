//! Registered OAuth clients (OAuthClient resources) and a confidential client's secrets.
//! The rules a request is checked against live here, beside the record, so the gateway's
//! sign-in, token and authorize endpoints all apply the same ones.

use super::UnknownLabel;
use crate::crypto::signing::SigningAlgorithm;
use crate::ids::{ClientSecretId, OAuthClientId, TenantId};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use std::time::Duration;

labelled_enum!(
    /// Whether a client can keep a secret (RFC 6749 §2.1).
    ClientType {
        /// Runs where a secret cannot be kept (a browser app, a native app, kubectl): no
        /// secret, PKCE required.
        Public = "public",
        /// Runs on a server and authenticates with its secret.
        Confidential = "confidential",
    }
);

labelled_enum!(
    /// How a client authenticates at the token endpoint (RFC 7591 §2).
    ClientAuthMethod {
        /// HTTP Basic with `client_id:client_secret` (RFC 6749 §2.3.1).
        ClientSecretBasic = "client_secret_basic",
        /// `client_id` and `client_secret` in the form body.
        ClientSecretPost = "client_secret_post",
        /// No authentication: a public client names itself by `client_id` only.
        None = "none",
    }
);

labelled_enum!(
    /// A grant a client may use at the token endpoint.
    GrantType {
        /// Authorization code (with PKCE).
        AuthorizationCode = "authorization_code",
        /// Refresh token (bound to the client it was issued to).
        RefreshToken = "refresh_token",
        /// Client credentials: the client is the subject; confidential clients only.
        ClientCredentials = "client_credentials",
        /// Device authorization grant (RFC 8628).
        DeviceCode = "device_code",
    }
);

impl GrantType {
    /// The `grant_type` parameter value this grant is asked for with at the token endpoint
    /// (the device grant's is a URN; the others are their labels).
    pub fn parameter(self) -> &'static str {
        match self {
            Self::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
            other => other.as_str(),
        }
    }

    /// The grant a `grant_type` parameter asks for; `None` for one keygate does not know.
    pub fn from_parameter(value: &str) -> Option<Self> {
        [
            Self::AuthorizationCode,
            Self::RefreshToken,
            Self::ClientCredentials,
            Self::DeviceCode,
        ]
        .into_iter()
        .find(|g| g.parameter() == value)
    }
}

labelled_enum!(
    /// Whether a person is asked before a client gets their tokens.
    #[derive(Default)]
    ConsentMode {
        /// No consent page (first-party applications the platform team runs).
        #[default]
        Implicit = "implicit",
        /// A consent page, remembered per person, client and scopes.
        Required = "required",
    }
);

/// A client's own token lifetimes; `None` keeps the tenant's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientLifetimes {
    /// Lifetime of access tokens issued to the client.
    pub access_token: Option<Duration>,
    /// Lifetime of ID tokens issued to the client.
    pub id_token: Option<Duration>,
    /// Absolute lifetime of the client's refresh tokens (their session), at most the tenant's.
    pub refresh_token: Option<Duration>,
}

/// A registered client of one tenant, as an OAuthClient resource declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct OAuthClient {
    /// Row id (secrets refer to it).
    pub id: OAuthClientId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// `metadata.uid` of the OAuthClient resource.
    pub owner_uid: String,
    /// The `client_id` requests name it by, unique in its tenant.
    pub client_id: String,
    /// Name shown to people (consent page).
    pub display_name: String,
    /// Public or confidential.
    pub client_type: ClientType,
    /// How it authenticates at the token endpoint.
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// Redirect URIs, matched exactly (loopback ones on any port, RFC 8252 §7.3).
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grants it may use.
    pub grant_types: Vec<GrantType>,
    /// The most it may be granted: every scope asked for must be one of these.
    pub allowed_scopes: Vec<String>,
    /// Extra `aud` values of its access tokens.
    pub audience: Vec<String>,
    /// Whether people are asked for consent.
    pub consent: ConsentMode,
    /// Its own token lifetimes.
    pub lifetimes: ClientLifetimes,
    /// The algorithm its ID tokens are signed with (`idTokenSignedResponseAlg`); `None`
    /// signs them like the tenant's access tokens.
    pub id_token_signed_response_alg: Option<SigningAlgorithm>,
    /// `metadata.generation` last written.
    pub generation: i64,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl OAuthClient {
    /// Whether the client may use `grant`.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether every scope of `asked` is one the client is allowed.
    pub fn allows_scopes<'a>(&self, asked: impl IntoIterator<Item = &'a str>) -> bool {
        asked
            .into_iter()
            .all(|s| self.allowed_scopes.iter().any(|a| a == s))
    }

    /// Whether `uri` is one of the client's redirect URIs: byte-for-byte, except that a
    /// registered loopback URI (`http://127.0.0.1/…`, `http://[::1]/…`) matches on any port.
    pub fn redirect_uri_allowed(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| redirect_matches(r, uri))
    }

    /// Whether RP-initiated logout may send the browser to `uri` (exact match, loopback on
    /// any port, as for redirect URIs).
    pub fn post_logout_uri_allowed(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris
            .iter()
            .any(|r| redirect_matches(r, uri))
    }
}

/// Whether `uri` is a loopback IP literal URI over plain HTTP (RFC 8252 §7.3). `localhost`
/// is not: RFC 8252 §8.3 advises against it, a resolver may send it elsewhere.
pub fn is_loopback_redirect(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| u.scheme() == "http" && loopback_host(&u))
}

fn loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        _ => false,
    }
}

/// One registered URI against one presented: exact, or the same loopback URI on another port.
fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(r), Ok(p)) = (url::Url::parse(registered), url::Url::parse(presented)) else {
        return false;
    };
    r.scheme() == "http"
        && loopback_host(&r)
        && p.scheme() == "http"
        && r.host() == p.host()
        && r.path() == p.path()
        && r.query() == p.query()
        && p.fragment().is_none()
        && p.username().is_empty()
        && p.password().is_none()
}

/// An `oauth_clients` row as the database returns it, before its labels are read.
#[derive(sqlx::FromRow)]
pub(crate) struct OAuthClientRow {
    id: OAuthClientId,
    tenant_id: TenantId,
    owner_uid: String,
    client_id: String,
    display_name: String,
    client_type: String,
    token_endpoint_auth_method: String,
    #[sqlx(json)]
    redirect_uris: Vec<String>,
    #[sqlx(json)]
    post_logout_redirect_uris: Vec<String>,
    #[sqlx(json)]
    grant_types: Vec<String>,
    #[sqlx(json)]
    allowed_scopes: Vec<String>,
    #[sqlx(json)]
    audience: Vec<String>,
    consent: String,
    access_token_ttl_secs: Option<i64>,
    id_token_ttl_secs: Option<i64>,
    refresh_token_ttl_secs: Option<i64>,
    id_token_signed_response_alg: Option<String>,
    generation: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn seconds(s: Option<i64>) -> Option<Duration> {
    s.and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
}

impl TryFrom<OAuthClientRow> for OAuthClient {
    type Error = StoreError;

    fn try_from(row: OAuthClientRow) -> Result<Self, StoreError> {
        // A label this build does not know reads as a decode error, as enum columns do.
        let label = |e: UnknownLabel| StoreError::Database(sqlx::Error::Decode(Box::new(e)));
        Ok(Self {
            id: row.id,
            tenant_id: row.tenant_id,
            owner_uid: row.owner_uid,
            client_id: row.client_id,
            display_name: row.display_name,
            client_type: row.client_type.parse().map_err(label)?,
            token_endpoint_auth_method: row.token_endpoint_auth_method.parse().map_err(label)?,
            redirect_uris: row.redirect_uris,
            post_logout_redirect_uris: row.post_logout_redirect_uris,
            grant_types: row
                .grant_types
                .iter()
                .map(|g| g.parse())
                .collect::<Result<_, _>>()
                .map_err(label)?,
            allowed_scopes: row.allowed_scopes,
            audience: row.audience,
            consent: row.consent.parse().map_err(label)?,
            lifetimes: ClientLifetimes {
                access_token: seconds(row.access_token_ttl_secs),
                id_token: seconds(row.id_token_ttl_secs),
                refresh_token: seconds(row.refresh_token_ttl_secs),
            },
            id_token_signed_response_alg: row
                .id_token_signed_response_alg
                .map(|a| a.parse::<SigningAlgorithm>())
                .transpose()
                .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?,
            generation: row.generation,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// What an OAuthClient resource declares: inserted or updated by (tenant, client id).
#[derive(Clone, Debug, PartialEq)]
pub struct OAuthClientUpsert {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// `metadata.uid` of the resource; another uid under the same client id is a conflict.
    pub owner_uid: String,
    /// The client id.
    pub client_id: String,
    /// Name shown to people.
    pub display_name: String,
    /// Public or confidential.
    pub client_type: ClientType,
    /// Token-endpoint authentication.
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grants.
    pub grant_types: Vec<GrantType>,
    /// Allowed scopes.
    pub allowed_scopes: Vec<String>,
    /// Extra audiences.
    pub audience: Vec<String>,
    /// Consent mode.
    pub consent: ConsentMode,
    /// Token lifetimes.
    pub lifetimes: ClientLifetimes,
    /// ID-token algorithm, if the client chose one.
    pub id_token_signed_response_alg: Option<SigningAlgorithm>,
    /// `metadata.generation`.
    pub generation: i64,
}

/// One secret of a confidential client: a lookup prefix and the SHA-256 of the raw value.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ClientSecretRecord {
    /// Row id.
    pub id: ClientSecretId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The client it authenticates.
    pub oauth_client_id: OAuthClientId,
    /// Public part of the raw secret, for status and Events (never enough to use it).
    pub prefix: String,
    /// SHA-256 of the raw secret; compare in constant time.
    pub hash: Vec<u8>,
    /// Issued at.
    pub created_at: DateTime<Utc>,
    /// Replaced by a rotated secret at.
    pub superseded_at: Option<DateTime<Utc>>,
    /// A superseded secret still works until then.
    pub grace_until: Option<DateTime<Utc>>,
    /// Revoked (Secret lost, client made public).
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ClientSecretRecord {
    /// Whether the secret may authenticate at `now`: not revoked, not past its rotation grace.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        super::rotation_allows(self.revoked_at, self.superseded_at, self.grace_until, now)
    }
}

/// A new client secret row.
#[derive(Clone, Debug, PartialEq)]
pub struct NewClientSecret {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The client it authenticates.
    pub oauth_client_id: OAuthClientId,
    /// Public part of the raw secret.
    pub prefix: String,
    /// SHA-256 of the raw secret.
    pub hash: Vec<u8>,
}

/// What a person approved for a client with `consent: required` on the consent page: the
/// union of the scopes of every approval, so a request within them skips the page.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Consent {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The person.
    pub user_id: crate::ids::UserId,
    /// The client's `client_id`.
    pub client_id: String,
    /// The client's display name (read with the consent, for the person's list).
    pub display_name: String,
    /// Every scope approved, in the order first approved.
    #[sqlx(json)]
    pub scopes: Vec<String>,
    /// When the person last approved a scope not approved before.
    pub granted_at: DateTime<Utc>,
}

impl Consent {
    /// Whether every scope of `scope` (space-separated) was approved.
    pub fn covers(&self, scope: &str) -> bool {
        scope
            .split_whitespace()
            .all(|s| self.scopes.iter().any(|a| a == s))
    }
}
