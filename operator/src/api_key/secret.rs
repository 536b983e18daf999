//! The Secrets generated values live in (an ApiKey's key, an OAuthClient's client secret):
//! how the operator builds one (owned by its resource, labelled) and how it tells its own
//! Secret from someone else's of the same name.

use super::{
    ANNOTATION_OWNER_UID, Generated, LABEL_API_KEY, LABEL_MANAGED_BY, LABEL_TENANT, MANAGER,
    SECRET_KEY,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keygate_crds::ApiKey;
use std::collections::BTreeMap;

/// The resource a generated Secret belongs to, as its labels, annotation and
/// ownerReference name it.
#[derive(Clone, Copy, Debug)]
pub struct SecretOwner<'a> {
    /// `ApiKey` or `OAuthClient`.
    pub kind: &'static str,
    /// The label naming the resource (`keygate.dev/api-key`, `keygate.dev/oauth-client`).
    pub label: &'static str,
    /// The resource's metadata (name, namespace, uid).
    pub metadata: &'a ObjectMeta,
    /// The owner uid the store rows carry.
    pub owner_uid: &'a str,
}

/// A Secret named `secret_name` holding `data`: owned by `owner` (garbage-collected with
/// it), labelled so people and the operator can find it.
pub fn owned_secret(
    owner: SecretOwner<'_>,
    tenant: &str,
    secret_name: &str,
    data: BTreeMap<String, ByteString>,
) -> Secret {
    let name = owner.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (owner.label.to_owned(), name.clone()),
        (LABEL_TENANT.to_owned(), tenant.to_owned()),
    ]);
    let annotations =
        BTreeMap::from([(ANNOTATION_OWNER_UID.to_owned(), owner.owner_uid.to_owned())]);
    // Only a resource the API server knows (it has a uid) can own a Secret there.
    let owner_references = owner.metadata.uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: keygate_crds::API_VERSION.to_owned(),
            kind: owner.kind.to_owned(),
            name: name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: owner.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references,
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether an existing Secret is `owner`'s to write: it names the resource as owner (by
/// ownerReference uid or the owner-uid annotation), or keygate wrote it for a resource of
/// this kind and name. Anything else belongs to someone else and is left alone.
pub fn owned_by_resource(secret: &Secret, owner: SecretOwner<'_>) -> bool {
    let meta = &secret.metadata;
    let by_reference = owner.metadata.uid.as_ref().is_some_and(|uid| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|r| &r.uid == uid)
    });
    let by_annotation = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_OWNER_UID))
        .is_some_and(|uid| uid == owner.owner_uid);
    let labels = meta.labels.as_ref();
    let label = |name: &str| labels.and_then(|l| l.get(name)).map(String::as_str);
    let by_label = label(LABEL_MANAGED_BY) == Some(MANAGER)
        && label(owner.label) == owner.metadata.name.as_deref();
    by_reference || by_annotation || by_label
}

fn api_key_owner<'a>(key: &'a ApiKey, owner_uid: &'a str) -> SecretOwner<'a> {
    SecretOwner {
        kind: "ApiKey",
        label: LABEL_API_KEY,
        metadata: &key.metadata,
        owner_uid,
    }
}

/// The Secret holding an API key's raw value.
pub fn secret_for(key: &ApiKey, owner_uid: &str, tenant: &str, generated: &Generated) -> Secret {
    owned_secret(
        api_key_owner(key, owner_uid),
        tenant,
        &key.spec.secret_name,
        BTreeMap::from([(
            SECRET_KEY.to_owned(),
            ByteString(generated.raw.expose().as_bytes().to_vec()),
        )]),
    )
}

/// Whether an existing Secret is this ApiKey's to write.
pub fn owned_by(secret: &Secret, key: &ApiKey, owner_uid: &str) -> bool {
    owned_by_resource(secret, api_key_owner(key, owner_uid))
}

/// What `Ready=False, SecretConflict` tells a person: which Secret, and the ways out.
pub(crate) fn conflict_message(
    namespace: &str,
    secret_name: &str,
    owner: SecretOwner<'_>,
) -> String {
    format!(
        "Secret {namespace}/{secret_name} already exists and is not managed by this {kind} (no ownerReference to it, no {label} label), so it was left untouched and nothing was written; delete or rename that Secret, or set spec.secretName to a name not in use",
        kind = owner.kind,
        label = owner.label,
    )
}

/// [`conflict_message`] for an ApiKey.
pub(super) fn api_key_conflict(
    namespace: &str,
    secret_name: &str,
    key: &ApiKey,
    owner_uid: &str,
) -> String {
    conflict_message(namespace, secret_name, api_key_owner(key, owner_uid))
}
