//! The tenant registry: upsert by name, the TenantNameTaken rule, disable, delete.

use crate::fixtures::*;
use keygate_core::ids::TenantId;
use keygate_core::store::*;
use keygate_core::tenant_settings::{Registration, SignIn, TenantSettings};
use std::time::Duration;

pub async fn migrate_twice_and_ping(db: &Db) {
    db.migrate()
        .await
        .expect("re-running migrations is a no-op");
    db.ping().await.unwrap();
    assert!(db.list_tenants().await.unwrap().is_empty());
    // The pool reports its occupancy (the gateway's `/metrics` exports it): the connection
    // the ping used is open (it goes back to the idle set asynchronously).
    let pool = db.pool_stats();
    assert!(pool.size >= 1 && pool.size <= pool.max, "{pool:?}");
    assert!(pool.idle <= pool.size, "{pool:?}");
}

pub async fn tenant_upsert_and_name_taken(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    assert_eq!(acme.owner_uid, "uid-acme");
    assert_eq!(acme.generation, 1);
    assert!(!acme.disabled);
    assert!(acme.settings.sign_in.password);
    assert_eq!(acme.deletion_policy, DeletionPolicy::Retain);

    // Same resource, nothing changed: same row, nothing written.
    let again = tenant(&**db, "acme").await;
    assert_eq!(again, acme);

    // Same resource, new generation: updated in place.
    let mut upsert = TenantUpsert {
        name: "acme".into(),
        namespace: "ns-acme".into(),
        owner_uid: "uid-acme".into(),
        display_name: "Acme Inc".into(),
        settings: TenantSettings {
            sign_in: SignIn {
                password: false,
                ..SignIn::default()
            },
            ..TenantSettings::default()
        },
        deletion_policy: DeletionPolicy::Retain,
        generation: 2,
    };
    let updated = db.upsert_tenant(&upsert).await.unwrap();
    assert_eq!(updated.id, acme.id);
    assert_eq!(updated.generation, 2);
    assert_eq!(updated.display_name, "Acme Inc");
    assert!(!updated.settings.sign_in.password);

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
        groups: vec![],
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

pub async fn tenant_settings_and_deletion_policy_are_typed(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let mut upsert = TenantUpsert {
        name: "acme".into(),
        namespace: acme.namespace.clone(),
        owner_uid: acme.owner_uid.clone(),
        display_name: acme.display_name.clone(),
        settings: TenantSettings::default(),
        deletion_policy: DeletionPolicy::Delete,
        generation: 1,
    };
    upsert.settings.sign_in.registration = Registration::Open;
    upsert.settings.tokens.access_token_ttl = Duration::from_secs(90);
    upsert.settings.network.deny = vec!["10.1.0.0/16".parse().unwrap()];

    // Only settings and policy changed (same generation): still written, and read back typed.
    let written = db.upsert_tenant(&upsert).await.unwrap();
    assert_eq!(written.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(written.settings, upsert.settings);
    let read = db.tenant_by_name("acme").await.unwrap().unwrap();
    assert_eq!(read, written);
    assert_eq!(
        db.list_tenants().await.unwrap(),
        std::slice::from_ref(&written)
    );
    assert_eq!(
        db.raw
            .scalar("SELECT COUNT(*) FROM tenants WHERE deletion_policy = 'delete'")
            .await,
        1,
        "the policy is a column of its own"
    );

    // Settings that break a rule are refused before anything is written.
    let mut invalid = upsert.clone();
    invalid.settings.password_policy.min_length = 200;
    invalid.deletion_policy = DeletionPolicy::Retain;
    let err = db.upsert_tenant(&invalid).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidTenantSettings { tenant, .. } if tenant == "acme"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("passwordPolicy.minLength"),
        "{err}"
    );
    assert_eq!(db.tenant(acme.id).await.unwrap().unwrap(), written);

    // The database refuses a policy it does not know.
    assert!(
        db.raw
            .execute("UPDATE tenants SET deletion_policy = 'shred'")
            .await
            .is_err()
    );

    // A stored value keygate cannot use (edited by hand) is one clear error for every reader.
    db.raw
        .execute(r#"UPDATE tenants SET settings = '{"tokens": {"accessTokenTtl": "soon"}}'"#)
        .await
        .unwrap();
    for result in [
        db.tenant(acme.id).await.map(|_| ()),
        db.tenant_by_name("acme").await.map(|_| ()),
        db.list_tenants().await.map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidTenantSettings { tenant, .. } if tenant == "acme"),
            "{err:?}"
        );
        assert!(err.to_string().contains("(in `tokens`)"), "{err}");
    }
    // The next reconcile repairs it.
    assert_eq!(
        db.upsert_tenant(&upsert).await.unwrap().settings,
        upsert.settings
    );
}

/// Tenants stored before migration 0003 (their `settings` were the Tenant spec itself, with
/// `deletionPolicy` inside): `prepare` wrote them on a database migrated to 0002; `db` is the
/// same database migrated to the newest version.
pub async fn tenants_stored_before_0003_still_read(db: &Db) {
    let old = db.tenant_by_name("old-delete").await.unwrap().unwrap();
    assert_eq!(old.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(old.settings.sign_in.registration, Registration::Open);
    assert_eq!(old.settings.access_token_ttl(), Duration::from_secs(90));
    assert_eq!(
        old.settings.redirects.allowed_origins,
        ["https://app.example"]
    );
    let kept = db.tenant_by_name("old-retain").await.unwrap().unwrap();
    assert_eq!(kept.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(kept.settings, TenantSettings::default());
    assert_eq!(
        db.raw
            .scalar(
                "SELECT COUNT(*) FROM tenants WHERE CAST(settings AS TEXT) LIKE '%deletionPolicy%'"
            )
            .await,
        0,
        "the policy left the JSON for its column"
    );
}

/// Old-shape rows for [`tenants_stored_before_0003_still_read`], in either database's SQL.
pub fn rows_before_0003(postgres: bool) -> [String; 2] {
    let spec = r#"{"displayName": "Old", "deletionPolicy": "Delete", "signIn": {"registration": "open"},
        "tokens": {"accessTokenTtl": "90s"}, "signing": {"algorithm": "ES256"},
        "redirects": {"allowedOrigins": ["https://app.example"]}}"#;
    let (id, now) = if postgres {
        ("gen_random_uuid()", "now()")
    } else {
        ("randomblob(16)", "'2030-01-01T00:00:00+00:00'")
    };
    let row = |name: &str, settings: &str| {
        format!(
            "INSERT INTO tenants (id, name, namespace, owner_uid, display_name, settings, generation, \
                 disabled, created_at, updated_at) \
             VALUES ({id}, '{name}', 'default', 'uid-{name}', '{name}', '{settings}', 1, FALSE, {now}, {now})"
        )
    };
    [
        row("old-delete", spec),
        row("old-retain", r#"{"deletionPolicy": "Retain"}"#),
    ]
}
