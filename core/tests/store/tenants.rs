//! The tenant registry: upsert by name, the TenantNameTaken rule, disable, delete.

use crate::fixtures::*;
use keygate_core::ids::TenantId;
use keygate_core::store::*;

pub async fn migrate_twice_and_ping(db: &Db) {
    db.migrate()
        .await
        .expect("re-running migrations is a no-op");
    db.ping().await.unwrap();
    assert!(db.list_tenants().await.unwrap().is_empty());
}

pub async fn tenant_upsert_and_name_taken(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    assert_eq!(acme.owner_uid, "uid-acme");
    assert_eq!(acme.generation, 1);
    assert!(!acme.disabled);
    assert_eq!(acme.settings["signIn"]["password"], true);

    // Same resource, nothing changed: same row, nothing written.
    let again = tenant(&**db, "acme").await;
    assert_eq!(again, acme);

    // Same resource, new generation: updated in place.
    let mut upsert = TenantUpsert {
        name: "acme".into(),
        namespace: "ns-acme".into(),
        owner_uid: "uid-acme".into(),
        display_name: "Acme Inc".into(),
        settings: serde_json::json!({ "signIn": { "password": false } }),
        generation: 2,
    };
    let updated = db.upsert_tenant(&upsert).await.unwrap();
    assert_eq!(updated.id, acme.id);
    assert_eq!(updated.generation, 2);
    assert_eq!(updated.display_name, "Acme Inc");
    assert_eq!(updated.settings["signIn"]["password"], false);

    // Another namespace declares the same name: refused, and nothing of the first changes.
    let intruder = TenantUpsert {
        namespace: "ns-other".into(),
        owner_uid: "uid-other".into(),
        display_name: "Intruder".into(),
        generation: 7,
        ..upsert.clone()
    };
    assert_conflict(db.upsert_tenant(&intruder).await, "tenants_name");
    let kept = db.tenant_by_name("acme").await.unwrap().unwrap();
    assert_eq!(kept, updated);

    // Disabling survives upserts; only set_tenant_disabled changes it.
    db.set_tenant_disabled(acme.id, true).await.unwrap();
    upsert.generation = 3;
    assert!(db.upsert_tenant(&upsert).await.unwrap().disabled);
    db.set_tenant_disabled(acme.id, false).await.unwrap();
    assert!(!db.tenant(acme.id).await.unwrap().unwrap().disabled);

    // Deliberate adoption by a new resource uid.
    db.set_tenant_owner(acme.id, "uid-other").await.unwrap();
    assert_eq!(db.upsert_tenant(&intruder).await.unwrap().id, acme.id);

    tenant(&**db, "beta").await;
    let names: Vec<_> = db
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["acme", "beta"]);

    let missing = TenantId::new();
    assert!(db.tenant(missing).await.unwrap().is_none());
    assert!(db.tenant_by_name("nope").await.unwrap().is_none());
    assert!(matches!(
        db.set_tenant_disabled(missing, true).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        db.set_tenant_owner(missing, "x").await,
        Err(StoreError::NotFound)
    ));
}

pub async fn tenant_delete_cascades_but_keeps_audit(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let other = tenant(&**db, "other").await;
    let u = user(&**db, acme.id, "ann@acme.test").await;
    let keep = user(&**db, other.id, "ann@acme.test").await;
    let s = session(&**db, acme.id, u.id).await;
    refresh(&**db, &s, "r0").await;
    db.insert_api_key(&new_api_key(acme.id, "uid-key", "pfx1"))
        .await
        .unwrap();
    db.insert_signing_key(&signing_key(acme.id, "kid-1", t0()))
        .await
        .unwrap();
    let idp = db
        .upsert_idp(&IdpUpsert {
            tenant_id: acme.id,
            name: "corp".into(),
            owner_uid: "uid-idp".into(),
            kind: IdpKind::Oidc,
            config: serde_json::json!({}),
            client_secret: None,
            generation: 1,
        })
        .await
        .unwrap();
    db.link_identity(&NewExternalIdentity {
        tenant_id: acme.id,
        user_id: u.id,
        idp_id: idp.id,
        subject: "sub-1".into(),
    })
    .await
    .unwrap();
    db.upsert_role(&RoleUpsert {
        tenant_id: acme.id,
        name: "admin".into(),
        owner_uid: "uid-role".into(),
        description: String::new(),
        permissions: vec!["*".into()],
        subjects: vec![RoleSubject::Group("staff".into())],
        generation: 1,
    })
    .await
    .unwrap();
    db.record_failure(acme.id, u.id, t0()).await.unwrap();
    db.append_audit(&event(acme.id, "login.ok", Some(u.id), t0()))
        .await
        .unwrap();
    db.append_audit(&event(acme.id, "tenant.deleted", None, t(1)))
        .await
        .unwrap();

    assert!(db.delete_tenant(acme.id).await.unwrap());
    assert!(
        !db.delete_tenant(acme.id).await.unwrap(),
        "second delete finds nothing"
    );
    assert!(db.tenant(acme.id).await.unwrap().is_none());
    for table in [
        "users",
        "password_history",
        "identity_providers",
        "external_identities",
        "roles",
        "role_bindings",
        "api_keys",
        "signing_keys",
        "sessions",
        "refresh_tokens",
        "lockout",
    ] {
        assert_eq!(
            db.raw.count(table, "tenant_id", acme.id.0).await,
            0,
            "{table} cascaded"
        );
    }
    let trail = db
        .query_audit(acme.id, &AuditFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(trail.len(), 2, "the audit trail outlives the tenant");
    assert_eq!(trail[1].actor_user_id, Some(u.id));

    // The other tenant is untouched.
    assert_eq!(
        db.user(other.id, keep.id).await.unwrap().unwrap().id,
        keep.id
    );
}
