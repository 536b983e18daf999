//! A provider's settings as the gateway reads them: what the operator maps from an
//! IdentityProvider spec (with the CA bundle it read from the referenced Secret or
//! ConfigMap), stored typed as the provider row's `config`.

use serde::{Deserialize, Serialize};

use super::FederationError;

/// One upstream provider of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSettings {
    /// Label of the sign-in button.
    pub display_name: String,
    /// The protocol and its settings.
    pub protocol: Protocol,
    /// If not empty, only emails in these domains (lowercase) may sign in.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// When a first sign-in may join an existing account.
    #[serde(default)]
    pub linking: Linking,
    /// PEM certificates trusted for this provider besides the platform store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// How a provider is spoken to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Protocol {
    /// Generic OpenID Connect from the issuer's discovery document.
    Oidc(OidcProtocol),
    /// Google: OpenID Connect at Google's issuer, optionally one Workspace domain.
    Google(GoogleProtocol),
    /// GitHub: OAuth 2 plus its REST API for the person, emails and organizations.
    Github(GithubProtocol),
    /// A SAML 2.0 identity provider, keygate its service provider.
    Saml(SamlProtocol),
}

/// A SAML 2.0 identity provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SamlProtocol {
    /// Where the IdP's metadata comes from.
    pub metadata: SamlMetadataSource,
    /// keygate's service-provider entity id at this IdP (the AuthnRequest's `Issuer`, the
    /// audience its assertions must name).
    pub entity_id: String,
    /// Which attributes carry email, name and groups.
    #[serde(default)]
    pub attributes: ClaimNames,
}

/// The IdP metadata document, or where to fetch it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum SamlMetadataSource {
    /// The XML itself.
    Inline(String),
    /// Fetched from this URL (and again when the gateway's copy is older than its refresh
    /// period).
    Url(String),
}

/// A generic OpenID Connect provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OidcProtocol {
    /// Issuer URL (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Client id registered at the provider.
    pub client_id: String,
    /// Scopes asked for (`openid` is always asked for).
    pub scopes: Vec<String>,
    /// Which claims carry email, name and groups.
    #[serde(default)]
    pub claims: ClaimNames,
}

/// Google as a provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GoogleProtocol {
    /// OAuth client id.
    pub client_id: String,
    /// Only accounts of this Workspace domain (the ID token's `hd` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_domain: Option<String>,
}

/// GitHub as a provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GithubProtocol {
    /// OAuth app client id.
    pub client_id: String,
    /// If not empty, only members of one of these organizations (compared case-insensitively).
    #[serde(default)]
    pub allowed_organizations: Vec<String>,
}

/// Claim names of the person's email, name and groups.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimNames {
    /// Email claim (its `_verified` companion is `email_verified`).
    pub email: String,
    /// Display-name claim.
    pub name: String,
    /// Groups claim (a list of strings, or one string).
    pub groups: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
        }
    }
}

/// When a first upstream sign-in may join an existing account with the same email.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Linking {
    /// Never by itself: the person signs in locally and claims the link.
    #[default]
    None,
    /// When the provider says the email is verified and the local account's is verified too.
    VerifiedEmail,
}

/// Where Google and GitHub live. Only tests point them elsewhere (Google at a local OpenID
/// Provider, GitHub at a stand-in answering its documented shapes); nothing user-facing
/// sets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Google's issuer.
    pub google_issuer: String,
    /// GitHub's OAuth and API endpoints.
    pub github: GithubEndpoints,
}

/// GitHub's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubEndpoints {
    /// The authorization page.
    pub authorize: String,
    /// The token endpoint.
    pub token: String,
    /// The REST API root (`/user`, `/user/emails`, `/user/orgs` below it).
    pub api: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            google_issuer: "https://accounts.google.com".into(),
            github: GithubEndpoints {
                authorize: "https://github.com/login/oauth/authorize".into(),
                token: "https://github.com/login/oauth/access_token".into(),
                api: "https://api.github.com".into(),
            },
        }
    }
}

impl ProviderSettings {
    /// Whether `email` is in one of the allowed domains (any email when none are listed).
    pub fn email_domain_allowed(&self, email: &str) -> bool {
        if self.allowed_email_domains.is_empty() {
            return true;
        }
        let Some((_, domain)) = email.rsplit_once('@') else {
            return false;
        };
        let domain = domain.to_ascii_lowercase();
        self.allowed_email_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&domain))
    }

    /// The OpenID issuer this provider is discovered from (none for GitHub).
    pub fn issuer<'a>(&'a self, endpoints: &'a Endpoints) -> Option<&'a str> {
        match &self.protocol {
            Protocol::Oidc(o) => Some(&o.issuer),
            Protocol::Google(_) => Some(&endpoints.google_issuer),
            Protocol::Github(_) | Protocol::Saml(_) => None,
        }
    }

    /// The OAuth client id (for SAML, keygate's entity id).
    pub fn client_id(&self) -> &str {
        match &self.protocol {
            Protocol::Oidc(o) => &o.client_id,
            Protocol::Google(g) => &g.client_id,
            Protocol::Github(g) => &g.client_id,
            Protocol::Saml(s) => &s.entity_id,
        }
    }
}

/// The path (below the public URL) a provider redirects back to after sign-in; the status
/// shows the full URL so an administrator can register it at the provider.
pub fn callback_path(tenant: &str, provider: &str) -> String {
    format!("/t/{tenant}/sso/{provider}/callback")
}

/// The path (below the public URL) of a SAML provider's assertion consumer service.
pub fn saml_acs_path(tenant: &str, provider: &str) -> String {
    format!("/t/{tenant}/sso/{provider}/acs")
}

/// The path (below the public URL) of keygate's service-provider metadata for a SAML provider.
pub fn saml_metadata_path(tenant: &str, provider: &str) -> String {
    format!("/t/{tenant}/sso/{provider}/saml/metadata")
}

/// Refuses an issuer that is no absolute `https://` URL; plain `http://` passes only for a
/// loopback host and only when `allow_loopback_http` (`keygate dev`, tests).
pub fn check_issuer(issuer: &str, allow_loopback_http: bool) -> Result<url::Url, FederationError> {
    check_url("issuer", issuer, allow_loopback_http)
}

/// [`check_issuer`] for any upstream URL; `what` names it in the message.
pub fn check_url(
    what: &str,
    raw: &str,
    allow_loopback_http: bool,
) -> Result<url::Url, FederationError> {
    let url = url::Url::parse(raw)
        .map_err(|e| FederationError::BadUrl(format!("{what} `{raw}` is no URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_loopback_http && is_loopback(&url) => Ok(url),
        "http" => Err(FederationError::BadUrl(format!(
            "{what} `{raw}` is plain http://, which only `keygate dev` accepts, and only on loopback"
        ))),
        _ => Err(FederationError::BadUrl(format!(
            "{what} `{raw}` is not an https:// URL"
        ))),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_issuers_pass_only_on_loopback_when_allowed() {
        assert!(check_issuer("https://idp.example.com", false).is_ok());
        assert!(check_issuer("http://127.0.0.1:5556", true).is_ok());
        assert!(check_issuer("http://localhost:5556", true).is_ok());
        assert!(check_issuer("http://127.0.0.1:5556", false).is_err());
        assert!(check_issuer("http://idp.example.com", true).is_err());
        assert!(check_issuer("ftp://idp.example.com", true).is_err());
    }

    #[test]
    fn allowed_domains_compare_the_whole_domain_case_insensitively() {
        let s = ProviderSettings {
            display_name: "x".into(),
            protocol: Protocol::Github(GithubProtocol {
                client_id: "c".into(),
                allowed_organizations: vec![],
            }),
            allowed_email_domains: vec!["example.com".into()],
            linking: Linking::None,
            ca_bundle: None,
        };
        assert!(s.email_domain_allowed("ada@Example.COM"));
        assert!(!s.email_domain_allowed("ada@evil-example.com"));
        assert!(!s.email_domain_allowed("ada@example.com.evil.net"));
        assert!(!s.email_domain_allowed("no-at-sign"));
    }
}
