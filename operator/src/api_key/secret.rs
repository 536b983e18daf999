//! The Secret an ApiKey's raw value lives in: how the operator builds it (owned by the
//! ApiKey, labelled) and how it tells its own Secret from someone else's of the same name.

use super::{
    ANNOTATION_OWNER_UID, Generated, LABEL_API_KEY, LABEL_MANAGED_BY, LABEL_TENANT, MANAGER,
    SECRET_KEY,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keygate_crds::ApiKey;
use std::collections::BTreeMap;

/// The Secret holding a raw key: owned by the ApiKey (garbage-collected with it), labelled
/// so people and the operator can find it.
pub fn secret_for(key: &ApiKey, owner_uid: &str, tenant: &str, generated: &Generated) -> Secret {
    let name = key.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (LABEL_API_KEY.to_owned(), name.clone()),
        (LABEL_TENANT.to_owned(), tenant.to_owned()),
    ]);
    let annotations = BTreeMap::from([(ANNOTATION_OWNER_UID.to_owned(), owner_uid.to_owned())]);
    // Only a resource the API server knows (it has a uid) can own a Secret there.
    let owner_references = key.metadata.uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: keygate_crds::API_VERSION.to_owned(),
            kind: "ApiKey".to_owned(),
            name: name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    Secret {
        metadata: ObjectMeta {
            name: Some(key.spec.secret_name.clone()),
            namespace: key.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references,
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            SECRET_KEY.to_owned(),
            ByteString(generated.raw.expose().as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// Whether an existing Secret is this ApiKey's to write: it names the ApiKey as owner (by
/// ownerReference uid or the owner-uid annotation), or keygate wrote it for an ApiKey of
/// this name. Anything else belongs to someone else and is left alone.
pub fn owned_by(secret: &Secret, key: &ApiKey, owner_uid: &str) -> bool {
    let meta = &secret.metadata;
    let by_reference = key.metadata.uid.as_ref().is_some_and(|uid| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|r| &r.uid == uid)
    });
    let by_annotation = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_OWNER_UID))
        .is_some_and(|uid| uid == owner_uid);
    let labels = meta.labels.as_ref();
    let label = |name: &str| labels.and_then(|l| l.get(name)).map(String::as_str);
    let by_label = label(LABEL_MANAGED_BY) == Some(MANAGER)
        && label(LABEL_API_KEY) == key.metadata.name.as_deref();
    by_reference || by_annotation || by_label
}

/// What `Ready=False, SecretConflict` tells a person: which Secret, and the ways out.
pub(super) fn conflict_message(namespace: &str, secret_name: &str) -> String {
    format!(
        "Secret {namespace}/{secret_name} already exists and is not managed by this ApiKey (no ownerReference to it, no {LABEL_API_KEY} label), so it was left untouched and no key was written; delete or rename that Secret, or set spec.secretName to a name not in use"
    )
}
