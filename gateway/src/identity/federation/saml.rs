//! SAML 2.0 with `samael`: keygate is the service provider. The AuthnRequest goes out with the
//! HTTP-Redirect binding (its ID single-use, kept with the sign-in's state; `ForceAuthn` when
//! a fresh login is asked for); the IdP's answer arrives at the assertion consumer service
//! with the HTTP-POST binding. samael (xmlsec) checks the XML signature against the signing
//! certificates of the IdP's metadata and keeps only what was signed, then the issuer,
//! recipient, destination and `InResponseTo`; keygate checks the times again by its own clock
//! with [`CLOCK_SKEW`], requires an audience restriction naming its entity id, refuses
//! transient name ids, and maps the attributes to a [`FederatedIdentity`]. The flow remembers
//! each assertion's ID (see `flow`) so a replayed one is refused on every replica.

use super::providers::LiveProvider;
use super::{FederatedIdentity, FederationRefusal, chain};
use crate::identity::IdentityError;
use chrono::{DateTime, Utc};
use keygate_core::federation::{ClaimNames, IdpMetadata, Protocol, SamlProtocol};
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::{
    EntityDescriptor, HTTP_POST_BINDING, IndexedEndpoint, NameIdFormat, SpSsoDescriptor,
};
use samael::schema::Assertion;
use samael::service_provider::ServiceProvider;
use samael::traits::ToXml;

/// How far keygate's clock and the IdP's may disagree when `NotBefore`, `NotOnOrAfter` and
/// `AuthnInstant` are compared (the same allowance as for an OpenID provider's `auth_time`).
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);
/// Oldest `IssueInstant` of an assertion accepted: the IdP's form posts it at once.
const MAX_ISSUE_DELAY: chrono::Duration = chrono::Duration::minutes(3);
/// Largest `SAMLResponse` read (base64): far above any real assertion.
const MAX_RESPONSE: usize = 512 * 1024;
/// A name id of this format changes at every sign-in: it cannot find the person again.
const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
/// Signature algorithms accepted: RSA and ECDSA with SHA-2 (never SHA-1).
const ALLOWED_ALGS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

fn invalid(why: impl std::fmt::Display) -> IdentityError {
    IdentityError::Federation(FederationRefusal::InvalidAnswer(why.to_string()))
}

/// The provider's SAML settings and metadata (loaded with the provider).
fn parts(live: &LiveProvider) -> Result<(&SamlProtocol, &IdpMetadata), IdentityError> {
    match (&live.settings.protocol, live.saml.as_ref()) {
        (Protocol::Saml(p), Some(m)) => Ok((p, m)),
        _ => Err(IdentityError::Internal(
            "SAML provider without metadata".into(),
        )),
    }
}

/// samael's service provider for one request or answer.
fn service_provider(
    protocol: &SamlProtocol,
    metadata: &IdpMetadata,
    acs: &str,
    force_authn: bool,
) -> ServiceProvider {
    ServiceProvider {
        entity_id: Some(protocol.entity_id.clone()),
        acs_url: Some(acs.to_owned()),
        metadata_url: None,
        slo_url: None,
        idp_metadata: metadata.descriptor.clone(),
        force_authn,
        allow_idp_initiated: false,
        max_issue_delay: MAX_ISSUE_DELAY,
        max_clock_skew: CLOCK_SKEW,
        allowed_signature_algorithms: Some(ALLOWED_ALGS.to_vec()),
        ..ServiceProvider::default()
    }
}

/// The IdP's URL carrying an AuthnRequest with ID `request_id` (HTTP-Redirect binding) and
/// `relay_state`.
pub(super) fn authn_redirect(
    live: &LiveProvider,
    acs: &str,
    request_id: &str,
    relay_state: &str,
    fresh: bool,
) -> Result<String, IdentityError> {
    let (protocol, metadata) = parts(live)?;
    let sp = service_provider(protocol, metadata, acs, fresh);
    let mut request = sp
        .make_authentication_request(&metadata.sso_redirect)
        .map_err(|e| IdentityError::Internal(format!("AuthnRequest: {e}")))?;
    // samael's own ID carries 32 random bits; this one 256, and the flow keeps it.
    request.id = request_id.to_owned();
    let url = request
        .redirect(relay_state)
        .map_err(|e| IdentityError::Internal(format!("AuthnRequest: {e}")))?
        .ok_or_else(|| IdentityError::Internal("AuthnRequest without destination".into()))?;
    Ok(url.to_string())
}

/// What checking an IdP's answer needs besides the provider.
pub(super) struct Finish<'a> {
    pub provider: &'a str,
    pub acs: &'a str,
    /// The base64 `SAMLResponse` as posted.
    pub response: &'a str,
    /// The ID of the AuthnRequest this sign-in sent.
    pub request_id: &'a str,
    /// When a sign-in that asked for a fresh login started.
    pub fresh_since: Option<DateTime<Utc>>,
    /// keygate's clock now.
    pub now: DateTime<Utc>,
}

/// A checked assertion: the identity, and how long its ID must be remembered.
pub(super) struct Checked {
    pub identity: FederatedIdentity,
    pub assertion_id: String,
    pub valid_until: DateTime<Utc>,
}

/// Checks the IdP's answer and maps the assertion to an identity.
pub(super) fn check(live: &LiveProvider, f: Finish<'_>) -> Result<Checked, IdentityError> {
    let (protocol, metadata) = parts(live)?;
    if f.response.len() > MAX_RESPONSE {
        return Err(invalid("the SAMLResponse is too large"));
    }
    // Some IdPs wrap the base64 text in lines.
    let compact: String = f
        .response
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let sp = service_provider(protocol, metadata, f.acs, false);
    let assertion = sp
        .parse_base64_response(&compact, Some(&[f.request_id][..]))
        .map_err(|e| invalid(chain(e.as_ref())))?;
    let valid_until = check_times_and_audience(&assertion, &protocol.entity_id, f.now)?;
    let auth_time = assertion
        .authn_statements
        .iter()
        .flatten()
        .find_map(|s| s.authn_instant);
    if let Some(since) = f.fresh_since {
        let fresh = auth_time.is_some_and(|at| at + CLOCK_SKEW >= since);
        if !fresh {
            return Err(invalid(
                "a fresh login was asked for (ForceAuthn), and the assertion's AuthnInstant is older or missing",
            ));
        }
    }
    let name_id = assertion
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .filter(|n| !n.value.trim().is_empty())
        .ok_or_else(|| invalid("the assertion names no subject (NameID)"))?;
    if name_id.format.as_deref() == Some(TRANSIENT) {
        return Err(invalid(
            "the IdP sent a transient NameID, which cannot identify the person at the next sign-in; configure a persistent one",
        ));
    }
    let identity = mapped(
        f.provider,
        name_id.value.trim().to_owned(),
        auth_time,
        &assertion,
        &protocol.attributes,
    );
    Ok(Checked {
        identity,
        assertion_id: assertion.id.clone(),
        valid_until,
    })
}

/// The times of `assertion` by keygate's clock (samael checked them by the system clock) and
/// its audience (samael accepts an assertion without one); answers until when it is valid.
fn check_times_and_audience(
    assertion: &Assertion,
    entity_id: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, IdentityError> {
    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or_else(|| invalid("the assertion has no Conditions"))?;
    let addressed = conditions
        .audience_restrictions
        .iter()
        .flatten()
        .any(|r| r.audience.iter().any(|a| a == entity_id));
    if !addressed {
        return Err(invalid(format!(
            "the assertion's audience is not this service provider ({entity_id})"
        )));
    }
    if conditions
        .not_before
        .is_some_and(|nb| now + CLOCK_SKEW < nb)
    {
        return Err(invalid("the assertion is not valid yet (NotBefore)"));
    }
    let confirmed_until = assertion
        .subject
        .iter()
        .flat_map(|s| s.subject_confirmations.iter().flatten())
        .filter_map(|c| c.subject_confirmation_data.as_ref())
        .filter_map(|d| d.not_on_or_after)
        .max()
        .ok_or_else(|| invalid("the assertion's SubjectConfirmationData has no NotOnOrAfter"))?;
    let until = match conditions.not_on_or_after {
        Some(c) => c.min(confirmed_until),
        None => confirmed_until,
    };
    if until + CLOCK_SKEW <= now {
        return Err(invalid("the assertion has expired (NotOnOrAfter)"));
    }
    if assertion.issue_instant + MAX_ISSUE_DELAY + CLOCK_SKEW < now {
        return Err(invalid("the assertion has expired (issued too long ago)"));
    }
    Ok(until + CLOCK_SKEW)
}

/// The identity the assertion's attributes describe under the provider's attribute names
/// (matched by `Name` or `FriendlyName`). The IdP is the directory of record for the address
/// it signs, so it counts as verified (see docs/security.md).
fn mapped(
    provider: &str,
    subject: String,
    auth_time: Option<DateTime<Utc>>,
    assertion: &Assertion,
    names: &ClaimNames,
) -> FederatedIdentity {
    let values = |wanted: &str| -> Vec<String> {
        assertion
            .attribute_statements
            .iter()
            .flatten()
            .flat_map(|s| s.attributes.iter())
            .filter(|a| {
                a.name.as_deref() == Some(wanted) || a.friendly_name.as_deref() == Some(wanted)
            })
            .flat_map(|a| a.values.iter())
            .filter_map(|v| v.value.as_deref())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let email = values(&names.email).into_iter().next();
    FederatedIdentity {
        provider: provider.to_owned(),
        subject,
        email_verified: email.is_some(),
        email,
        name: values(&names.name).into_iter().next(),
        groups: values(&names.groups),
        auth_time,
    }
}

/// keygate's service-provider metadata for one provider: its entity id and the assertion
/// consumer service (HTTP-POST); it wants assertions signed and sends unsigned requests.
pub(super) fn sp_metadata(entity_id: &str, acs: &str) -> Result<String, IdentityError> {
    let descriptor = EntityDescriptor {
        entity_id: Some(entity_id.to_owned()),
        sp_sso_descriptors: Some(vec![SpSsoDescriptor {
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            authn_requests_signed: Some(false),
            want_assertions_signed: Some(true),
            name_id_formats: Some(vec![
                NameIdFormat::PersistentNameIDFormat.value().to_owned(),
                NameIdFormat::EmailAddressNameIDFormat.value().to_owned(),
            ]),
            assertion_consumer_services: vec![IndexedEndpoint {
                binding: HTTP_POST_BINDING.to_owned(),
                location: acs.to_owned(),
                response_location: None,
                index: 0,
                is_default: Some(true),
            }],
            ..SpSsoDescriptor::default()
        }]),
        ..EntityDescriptor::default()
    };
    descriptor
        .to_string()
        .map_err(|e| IdentityError::Internal(format!("SP metadata: {e}")))
}
