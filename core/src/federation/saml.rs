//! SAML 2.0 identity-provider metadata, as both roles need it: the operator fetches and parses
//! it to say whether a provider is Ready, the gateway to send AuthnRequests and check the
//! assertions' signatures. Metadata comes inline or from a URL (through the provider's
//! [`UpstreamHttp`], so its CA bundle applies); a document without an entity id, without an
//! HTTP-Redirect single sign-on service or without a signing certificate is refused, because
//! keygate could not send a request to it or could not check what it answers.

use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};
use samael::service_provider::ServiceProvider;

use super::settings::SamlMetadataSource;
use super::{FederationError, UpstreamHttp, check_url};

/// An IdP's metadata, checked to be usable.
#[derive(Clone, Debug)]
pub struct IdpMetadata {
    /// The parsed document.
    pub descriptor: EntityDescriptor,
    /// The IdP's entity id (its assertions' `Issuer`).
    pub entity_id: String,
    /// Where AuthnRequests go (the HTTP-Redirect single sign-on service).
    pub sso_redirect: String,
    /// How many signing certificates it publishes (at least one).
    pub signing_certs: usize,
}

/// Reads the metadata `source` names: inline, or fetched from its URL (`https://`, or plain
/// `http://` on loopback when `allow_loopback_http`).
pub async fn load_metadata(
    http: &UpstreamHttp,
    source: &SamlMetadataSource,
    allow_loopback_http: bool,
) -> Result<IdpMetadata, FederationError> {
    let xml = match source {
        SamlMetadataSource::Inline(xml) => xml.clone(),
        SamlMetadataSource::Url(url) => {
            check_url("SAML metadata URL", url, allow_loopback_http)?;
            let request = http::Request::get(url.as_str())
                .header(
                    "accept",
                    "application/samlmetadata+xml, application/xml, text/xml",
                )
                .body(Vec::new())
                .map_err(|e| FederationError::BadUrl(format!("metadata URL `{url}`: {e}")))?;
            let answer = http
                .execute(request)
                .await
                .map_err(|e| FederationError::Metadata(format!("{url}: {e}")))?;
            if !answer.status().is_success() {
                return Err(FederationError::Metadata(format!(
                    "{url} answered {}",
                    answer.status()
                )));
            }
            String::from_utf8(answer.into_body())
                .map_err(|_| FederationError::Metadata(format!("{url}: not UTF-8 text")))?
        }
    };
    parse_metadata(&xml)
}

/// Parses an `EntityDescriptor` and checks it names the IdP, its redirect endpoint and at
/// least one signing certificate.
pub fn parse_metadata(xml: &str) -> Result<IdpMetadata, FederationError> {
    let descriptor = xml
        .parse::<EntityDescriptor>()
        .map_err(|e| FederationError::Metadata(format!("not a SAML EntityDescriptor: {e}")))?;
    let entity_id = descriptor
        .entity_id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| FederationError::Metadata("the metadata names no entityID".into()))?;
    let sp = ServiceProvider {
        idp_metadata: descriptor.clone(),
        ..ServiceProvider::default()
    };
    let sso_redirect = sp
        .sso_binding_location(HTTP_REDIRECT_BINDING)
        .ok_or_else(|| {
            FederationError::Metadata(
                "the IdP metadata has no SingleSignOnService with the HTTP-Redirect binding".into(),
            )
        })?;
    let signing_certs = sp
        .idp_signing_certs()
        .map_err(|e| FederationError::Metadata(format!("IdP certificate: {e}")))?
        .map(|certs| certs.len())
        .unwrap_or(0);
    if signing_certs == 0 {
        return Err(FederationError::Metadata(
            "the IdP metadata publishes no signing certificate, so its assertions could not be checked".into(),
        ));
    }
    Ok(IdpMetadata {
        descriptor,
        entity_id,
        sso_redirect,
        signing_certs,
    })
}
