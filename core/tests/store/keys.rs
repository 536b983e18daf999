//! API keys (prefix lookup, rotation grace, revocation) and signing keys (order, retirement).

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn api_key_lookup_and_rotation(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let k1 = db
        .insert_api_key(&new_api_key(acme.id, "uid-ci", "AbC123"))
        .await
        .unwrap();
    assert_eq!(k1.hash, hash("AbC123"));
    assert_eq!(k1.roles, ["reader"]);
    assert_eq!(k1.scopes, ["api"]);
    assert!(k1.is_usable(t0()));
    assert!(!k1.is_usable(t(30 * 86_400)), "expired");

    let found = db
        .api_key_by_prefix(acme.id, "AbC123")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, k1);
    assert!(
        db.api_key_by_prefix(acme.id, "abc123")
            .await
            .unwrap()
            .is_none(),
        "prefixes are exact"
    );
    assert_conflict(
        db.insert_api_key(&new_api_key(acme.id, "uid-other", "AbC123"))
            .await,
        "api_keys_prefix",
    );

    // Rotation: the old key keeps working until its grace ends.
    let k2 = db
        .insert_api_key(&new_api_key(acme.id, "uid-ci", "Def456"))
        .await
        .unwrap();
    assert!(
        db.supersede_api_key(acme.id, k1.id, t(100), t(400))
            .await
            .unwrap()
    );
    assert!(
        !db.supersede_api_key(acme.id, k1.id, t(101), t(900))
            .await
            .unwrap(),
        "once"
    );
    let old = db.api_key(acme.id, k1.id).await.unwrap().unwrap();
    assert_eq!(
        (old.superseded_at, old.grace_until),
        (Some(t(100)), Some(t(400)))
    );
    assert!(old.is_usable(t(399)));
    assert!(!old.is_usable(t(400)));
    let of_owner = db.api_keys_of_owner(acme.id, "uid-ci").await.unwrap();
    assert_eq!(of_owner.len(), 2);
    assert_eq!(db.list_api_keys(acme.id).await.unwrap().len(), 2);

    assert!(db.touch_api_key(acme.id, k2.id, t(200)).await.unwrap());
    assert_eq!(
        db.api_key(acme.id, k2.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(t(200))
    );

    assert!(db.revoke_api_key(acme.id, k2.id, t(300)).await.unwrap());
    assert!(!db.revoke_api_key(acme.id, k2.id, t(301)).await.unwrap());
    assert!(
        !db.api_key(acme.id, k2.id)
            .await
            .unwrap()
            .unwrap()
            .is_usable(t(302))
    );

    // Deleting the resource revokes whatever is left at once.
    assert_eq!(
        db.revoke_api_keys_of_owner(acme.id, "uid-ci", t(350))
            .await
            .unwrap(),
        1
    );
    assert!(
        db.api_keys_of_owner(acme.id, "uid-ci")
            .await
            .unwrap()
            .iter()
            .all(|k| !k.is_usable(t(351)))
    );
}

pub async fn api_keys_paged_past_the_list_cap(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let other = tenant(&**db, "other").await;
    let total = LIST_MAX as usize + 5;
    for i in 0..total {
        db.insert_api_key(&new_api_key(
            acme.id,
            &format!("uid-{i}"),
            &format!("acme{i:05}"),
        ))
        .await
        .unwrap();
    }
    db.insert_api_key(&new_api_key(other.id, "uid-x", "other00001"))
        .await
        .unwrap();
    assert_eq!(
        db.list_api_keys(acme.id).await.unwrap().len(),
        LIST_MAX as usize,
        "the plain listing is capped"
    );

    // Pages of 400 (a larger limit is capped at LIST_MAX) in id order, no gaps, no repeats,
    // nothing of the other tenant.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = db.list_api_keys_page(acme.id, after, 400).await.unwrap();
        assert!(page.len() <= 400);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page);
    }
    assert_eq!(seen.len(), total);
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
    assert!(seen.iter().all(|k| k.tenant_id == acme.id));
    let owners: std::collections::HashSet<_> = seen.iter().map(|k| k.owner_uid.clone()).collect();
    assert_eq!(owners.len(), total, "every key exactly once");
    assert_eq!(
        db.list_api_keys_page(acme.id, None, 5000)
            .await
            .unwrap()
            .len(),
        LIST_MAX as usize,
        "a page holds at most LIST_MAX"
    );
    assert!(
        db.list_api_keys_page(acme.id, after, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn api_key_grants_change_in_place(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let other = tenant(&**db, "other").await;
    let key = db
        .insert_api_key(&new_api_key(acme.id, "uid-ci", "Grant1"))
        .await
        .unwrap();
    let grants = ApiKeyGrants {
        roles: vec!["admin".into()],
        permissions: vec![],
        scopes: vec!["api".into(), "write".into()],
        expires_at: Some(t(60 * 86_400)),
    };
    assert!(
        !db.update_api_key_grants(other.id, key.id, &grants)
            .await
            .unwrap(),
        "another tenant's key is not found"
    );
    assert!(
        db.update_api_key_grants(acme.id, key.id, &grants)
            .await
            .unwrap()
    );
    let updated = db
        .api_key_by_prefix(acme.id, "Grant1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.roles, ["admin"]);
    assert!(
        updated.permissions.is_empty(),
        "a removed permission is gone"
    );
    assert_eq!(updated.scopes, ["api", "write"]);
    assert_eq!(updated.expires_at, Some(t(60 * 86_400)));
    assert_eq!(
        (updated.id, &updated.hash, updated.created_at),
        (key.id, &key.hash, key.created_at),
        "same key, same value"
    );

    // A revoked key stays as it was revoked.
    assert!(db.revoke_api_key(acme.id, key.id, t(10)).await.unwrap());
    assert!(
        !db.update_api_key_grants(acme.id, key.id, &ApiKeyGrants::default())
            .await
            .unwrap()
    );
    assert_eq!(
        db.api_key(acme.id, key.id).await.unwrap().unwrap().roles,
        ["admin"]
    );
}

pub async fn signing_keys_order_and_retirement(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let other = tenant(&**db, "other").await;
    let next = signing_key(acme.id, "kid-next", t(3600));
    let active = signing_key(acme.id, "kid-active", t0());
    let mut old = signing_key(acme.id, "kid-old", t(-86_400));
    old.retires_at = Some(t(-60));
    for k in [&next, &active, &old] {
        db.insert_signing_key(k).await.unwrap();
    }
    db.insert_signing_key(&signing_key(other.id, "kid-other", t0()))
        .await
        .unwrap();
    assert_conflict(
        db.insert_signing_key(&signing_key(other.id, "kid-next", t0()))
            .await,
        "signing_keys_kid",
    );

    let keys = db.signing_keys(acme.id).await.unwrap();
    assert_eq!(
        keys,
        [old.clone(), active.clone(), next.clone()],
        "ordered by activates_at, round-tripped"
    );

    // Microseconds survive both backends alike.
    let precise = signing_key(
        acme.id,
        "kid-precise",
        t(7200) + chrono::Duration::nanoseconds(123_456_789),
    );
    db.insert_signing_key(&precise).await.unwrap();
    let stored = db.signing_keys(acme.id).await.unwrap().pop().unwrap();
    assert_eq!(
        stored.activates_at,
        t(7200) + chrono::Duration::microseconds(123_456)
    );

    // Master-key rotation re-seals the private part, only over the value it read.
    let resealed = b"sealed under the next master key".to_vec();
    assert!(
        db.reseal_signing_key(acme.id, "kid-active", &active.private_key, &resealed)
            .await
            .unwrap()
    );
    assert!(
        !db.reseal_signing_key(acme.id, "kid-active", &active.private_key, b"lost race")
            .await
            .unwrap(),
        "a stale read does not overwrite"
    );
    assert!(
        !db.reseal_signing_key(other.id, "kid-active", &resealed, b"x")
            .await
            .unwrap(),
        "another tenant's key is not touched"
    );
    let stored = db.signing_keys(acme.id).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .find(|k| k.kid == "kid-active")
            .unwrap()
            .private_key,
        resealed
    );

    db.set_signing_key_retires_at(acme.id, "kid-active", t(7200))
        .await
        .unwrap();
    assert!(matches!(
        db.set_signing_key_retires_at(acme.id, "kid-missing", t0())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        db.set_signing_key_retires_at(other.id, "kid-active", t0())
            .await,
        Err(StoreError::NotFound)
    ));

    // The janitor removes only keys whose retirement has come.
    assert_eq!(db.delete_retired_signing_keys(t0()).await.unwrap(), 1);
    let kids: Vec<_> = db
        .signing_keys(acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["kid-active", "kid-next", "kid-precise"]);
    assert_eq!(db.delete_retired_signing_keys(t(7200)).await.unwrap(), 1);
    let kids: Vec<_> = db
        .signing_keys(acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["kid-next", "kid-precise"]);
    assert_eq!(db.signing_keys(other.id).await.unwrap().len(), 1);
}
