//! GitHub: OAuth 2 with the `oauth2` crate (PKCE S256, `state`), then GitHub's REST API for
//! the person (`/user`: the numeric id is the subject, as logins can be renamed), the primary
//! verified email (`/user/emails`) and organizations (`/user/orgs`: checked against
//! `allowedOrganizations` and kept as the person's upstream groups).

use super::providers::LiveProvider;
use super::{FederatedIdentity, FederationRefusal};
use crate::identity::IdentityError;
use keygate_core::federation::{GithubEndpoints, Protocol};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

/// The scopes keygate asks GitHub for: the profile, the email addresses, organizations.
const SCOPES: [&str; 3] = ["read:user", "user:email", "read:org"];
/// Most organizations read (one page).
const ORGS_PER_PAGE: u32 = 100;

fn invalid(why: impl std::fmt::Display) -> IdentityError {
    IdentityError::Federation(FederationRefusal::InvalidAnswer(why.to_string()))
}

fn unreachable(why: impl std::fmt::Display) -> IdentityError {
    IdentityError::Federation(FederationRefusal::Unreachable(why.to_string()))
}

type GithubClient = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn client(
    live: &LiveProvider,
    endpoints: &GithubEndpoints,
    redirect: &str,
) -> Result<GithubClient, IdentityError> {
    let url = |what: &str, e: oauth2::url::ParseError| {
        IdentityError::Internal(format!("GitHub {what} URL: {e}"))
    };
    let mut client = BasicClient::new(ClientId::new(live.settings.client_id().to_owned()))
        .set_auth_uri(AuthUrl::new(endpoints.authorize.clone()).map_err(|e| url("authorize", e))?)
        .set_token_uri(TokenUrl::new(endpoints.token.clone()).map_err(|e| url("token", e))?)
        .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(|e| url("redirect", e))?);
    if let Some(secret) = &live.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    Ok(client)
}

/// GitHub's authorization URL for one sign-in.
pub(super) fn authorize_url(
    live: &LiveProvider,
    endpoints: &GithubEndpoints,
    redirect: &str,
    state: String,
    pkce: PkceCodeChallenge,
) -> Result<String, IdentityError> {
    let (url, _) = client(live, endpoints, redirect)?
        .authorize_url(move || CsrfToken::new(state))
        .add_scopes(SCOPES.map(|s| Scope::new(s.into())))
        .set_pkce_challenge(pkce)
        .url();
    Ok(url.to_string())
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct GithubOrg {
    login: String,
}

/// Exchanges the code and reads the person, their primary verified email and organizations.
pub(super) async fn identity(
    live: &LiveProvider,
    endpoints: &GithubEndpoints,
    provider: &str,
    redirect: &str,
    code: String,
    pkce_verifier: String,
) -> Result<FederatedIdentity, IdentityError> {
    let Protocol::Github(settings) = &live.settings.protocol else {
        return Err(IdentityError::Internal("not a GitHub provider".into()));
    };
    let token = client(live, endpoints, redirect)?
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
        .request_async(&live.http)
        .await
        .map_err(|e| match e {
            oauth2::RequestTokenError::ServerResponse(r) => {
                IdentityError::Federation(FederationRefusal::ProviderError {
                    error: super::oauth_error_code(r.error()),
                    description: r.error_description().cloned(),
                })
            }
            other => unreachable(super::chain(&other)),
        })?;
    let bearer = token.access_token().secret().clone();
    let api = endpoints.api.trim_end_matches('/');
    let user: GithubUser = get(live, &format!("{api}/user"), &bearer).await?;
    let emails: Vec<GithubEmail> = get(live, &format!("{api}/user/emails"), &bearer).await?;
    let orgs: Vec<GithubOrg> = get(
        live,
        &format!("{api}/user/orgs?per_page={ORGS_PER_PAGE}"),
        &bearer,
    )
    .await?;
    let email = emails
        .into_iter()
        .find(|e| e.primary && e.verified)
        .map(|e| e.email)
        .ok_or(IdentityError::Federation(FederationRefusal::NoEmail))?;
    let groups: Vec<String> = orgs.into_iter().map(|o| o.login).collect();
    if !settings.allowed_organizations.is_empty()
        && !groups.iter().any(|g| {
            settings
                .allowed_organizations
                .iter()
                .any(|a| a.eq_ignore_ascii_case(g))
        })
    {
        return Err(IdentityError::Federation(
            FederationRefusal::OrganizationNotAllowed,
        ));
    }
    Ok(FederatedIdentity {
        provider: provider.to_owned(),
        subject: user.id.to_string(),
        email: Some(email),
        email_verified: true,
        name: user.name.filter(|n| !n.is_empty()).or(Some(user.login)),
        groups,
        auth_time: None,
    })
}

/// A GET of GitHub's REST API as its documentation asks for it.
async fn get<T: serde::de::DeserializeOwned>(
    live: &LiveProvider,
    url: &str,
    bearer: &str,
) -> Result<T, IdentityError> {
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "application/vnd.github+json")
        .header(http::header::AUTHORIZATION, format!("Bearer {bearer}"))
        .header("X-GitHub-Api-Version", "2022-11-28")
        .body(Vec::new())
        .map_err(|e| IdentityError::Internal(format!("GitHub request: {e}")))?;
    let response = live
        .http
        .execute(request)
        .await
        .map_err(|e| unreachable(super::chain(&e)))?;
    if !response.status().is_success() {
        return Err(invalid(format!(
            "GitHub answered {} for {url}",
            response.status()
        )));
    }
    serde_json::from_slice(response.body()).map_err(|e| invalid(format!("GitHub {url}: {e}")))
}
