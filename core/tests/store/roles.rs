//! Roles with their bindings, identity providers and upstream identity links.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn roles_upsert_and_subject_matching(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let mut upsert = RoleUpsert {
        tenant_id: acme.id,
        name: "admin".into(),
        owner_uid: "uid-admin".into(),
        description: "everything".into(),
        permissions: vec!["orders.read".into(), "orders.write".into()],
        subjects: vec![
            RoleSubject::UserEmail("Ann@Example.com".into()),
            RoleSubject::Group("ops".into()),
            RoleSubject::IdpGroup {
                idp: "corp".into(),
                group: "admins".into(),
            },
            RoleSubject::Group("ops".into()),
        ],
        generation: 1,
    };
    let admin = db.upsert_role(&upsert).await.unwrap();
    assert_eq!(
        admin.subjects,
        [
            RoleSubject::UserEmail("ann@example.com".into()),
            RoleSubject::Group("ops".into()),
            RoleSubject::IdpGroup {
                idp: "corp".into(),
                group: "admins".into()
            },
        ],
        "normalized: lowercased emails, sorted, no duplicates"
    );
    assert_eq!(db.role(acme.id, admin.id).await.unwrap().unwrap(), admin);
    let reader = db
        .upsert_role(&RoleUpsert {
            name: "reader".into(),
            owner_uid: "uid-reader".into(),
            permissions: vec!["orders.read".into()],
            subjects: vec![RoleSubject::Group("staff".into())],
            ..upsert.clone()
        })
        .await
        .unwrap();

    let grants = |email: Option<&str>, groups: &[&str], idp_groups: &[(&str, &str)]| SubjectFacts {
        email: email.map(Into::into),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        idp_groups: idp_groups
            .iter()
            .map(|(i, g)| (i.to_string(), g.to_string()))
            .collect(),
    };
    let names = |v: Vec<RoleGrant>| v.into_iter().map(|g| g.name).collect::<Vec<_>>();
    let by = |f| async move { names(db.roles_for_subject(acme.id, &f).await.unwrap()) };
    assert_eq!(
        by(grants(Some("ANN@example.com"), &[], &[])).await,
        ["admin"]
    );
    assert_eq!(
        by(grants(Some("bob@example.com"), &["staff", "ops"], &[])).await,
        ["admin", "reader"]
    );
    assert_eq!(
        by(grants(None, &[], &[("corp", "admins")])).await,
        ["admin"]
    );
    assert!(
        by(grants(None, &["admins"], &[("other", "admins")]))
            .await
            .is_empty(),
        "an IdP group needs its IdP"
    );
    assert!(by(grants(None, &[], &[])).await.is_empty());
    let granted = db
        .roles_for_subject(acme.id, &grants(None, &["staff"], &[]))
        .await
        .unwrap();
    assert_eq!(
        granted,
        [RoleGrant {
            id: reader.id,
            name: "reader".into(),
            permissions: vec!["orders.read".into()]
        }]
    );

    assert_eq!(
        names(
            db.roles_by_names(acme.id, &["reader".into(), "ghost".into(), "admin".into()])
                .await
                .unwrap()
        ),
        ["admin", "reader"]
    );

    // Unchanged resync: nothing written. A change replaces the subjects atomically.
    assert_eq!(db.upsert_role(&upsert).await.unwrap(), admin);
    upsert.subjects = vec![RoleSubject::Group("sre".into())];
    upsert.generation = 2;
    let changed = db.upsert_role(&upsert).await.unwrap();
    assert_eq!(changed.id, admin.id);
    assert_eq!(changed.subjects, [RoleSubject::Group("sre".into())]);
    assert!(
        by(grants(Some("ann@example.com"), &["ops"], &[]))
            .await
            .is_empty()
    );
    assert_eq!(by(grants(None, &["sre"], &[])).await, ["admin"]);

    let listed = db.list_roles(acme.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.name.as_str(), r.subjects.len()))
            .collect::<Vec<_>>(),
        [("admin", 1), ("reader", 1)]
    );
    assert!(db.delete_role(acme.id, admin.id).await.unwrap());
    assert!(db.role_by_name(acme.id, "admin").await.unwrap().is_none());
    assert_eq!(
        db.raw.count("role_bindings", "role_id", admin.id.0).await,
        0
    );
}

pub async fn idps_and_identity_links(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let bob = user(&**db, acme.id, "bob@example.com").await;
    let mut upsert = IdpUpsert {
        tenant_id: acme.id,
        name: "corp".into(),
        owner_uid: "uid-corp".into(),
        kind: IdpKind::Oidc,
        config: serde_json::json!({ "issuer": "https://idp.example", "scopes": ["openid"] }),
        client_secret: Some(vec![0xde, 0xad]),
        generation: 1,
    };
    let corp = db.upsert_idp(&upsert).await.unwrap();
    assert_eq!(corp.kind, IdpKind::Oidc);
    assert_eq!(corp.client_secret.as_deref(), Some(&[0xde, 0xad][..]));
    assert_eq!(
        db.upsert_idp(&upsert).await.unwrap(),
        corp,
        "unchanged: nothing written"
    );
    upsert.owner_uid = "uid-recreated".into();
    upsert.client_secret = None;
    upsert.generation = 1;
    let recreated = db.upsert_idp(&upsert).await.unwrap();
    assert_eq!(
        recreated.id, corp.id,
        "the row (and its links) survive a re-created resource"
    );
    assert_eq!(recreated.client_secret, None);
    assert_eq!(
        db.idp_by_name(acme.id, "corp").await.unwrap().unwrap(),
        recreated
    );
    let gh = db
        .upsert_idp(&IdpUpsert {
            name: "github".into(),
            kind: IdpKind::Github,
            ..upsert.clone()
        })
        .await
        .unwrap();
    assert_eq!(db.list_idps(acme.id).await.unwrap().len(), 2);

    let link = db
        .link_identity(&NewExternalIdentity {
            tenant_id: acme.id,
            user_id: ann.id,
            idp_id: corp.id,
            subject: "sub-1".into(),
            groups: vec![],
        })
        .await
        .unwrap();
    let same_subject = NewExternalIdentity {
        tenant_id: acme.id,
        user_id: bob.id,
        idp_id: corp.id,
        subject: "sub-1".into(),
        groups: vec![],
    };
    assert_conflict(
        db.link_identity(&same_subject).await,
        "external_identities_subject",
    );
    let second_at_idp = NewExternalIdentity {
        tenant_id: acme.id,
        user_id: ann.id,
        idp_id: corp.id,
        subject: "sub-2".into(),
        groups: vec![],
    };
    assert_conflict(
        db.link_identity(&second_at_idp).await,
        "external_identities_user_idp",
    );
    db.link_identity(&NewExternalIdentity {
        tenant_id: acme.id,
        user_id: ann.id,
        idp_id: gh.id,
        subject: "sub-1".into(),
        groups: vec![],
    })
    .await
    .unwrap();

    assert_eq!(
        db.identity_by_subject(acme.id, corp.id, "sub-1")
            .await
            .unwrap()
            .unwrap(),
        link
    );
    assert!(
        db.touch_identity(acme.id, link.id, t(60), &[])
            .await
            .unwrap()
    );
    assert_eq!(
        db.identity_by_subject(acme.id, corp.id, "sub-1")
            .await
            .unwrap()
            .unwrap()
            .last_login_at,
        Some(t(60))
    );
    assert_eq!(
        db.identities_of_user(acme.id, ann.id).await.unwrap().len(),
        2
    );

    assert!(db.unlink_identity(acme.id, ann.id, gh.id).await.unwrap());
    assert!(!db.unlink_identity(acme.id, ann.id, gh.id).await.unwrap());
    assert!(db.delete_idp(acme.id, corp.id).await.unwrap());
    assert!(
        db.identities_of_user(acme.id, ann.id)
            .await
            .unwrap()
            .is_empty(),
        "links go with their IdP"
    );
    assert!(
        db.user(acme.id, ann.id).await.unwrap().is_some(),
        "the account stays"
    );
}
